"""`genrank` command line: demo data, and looking into what the pipeline built."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import numpy as np

COMMANDS = {}
# How long a read waits while a materialisation holds the DuckDB file (it writes a table at a time).
WAREHOUSE_LOCK_WAIT_S = float(os.environ.get("GENRANK_WAREHOUSE_LOCK_WAIT_S", "10"))


class CliError(Exception):
    """A user error: printed as one line (`genrank CMD: message`), exit status 2, no traceback."""


def command(name: str, help: str):
    def register(fn):
        COMMANDS[name] = (fn, help)
        return fn

    return register


@command("demo-data", "write the deterministic synthetic dataset (seed format) to a folder")
def _demo_data(argv: list[str]) -> int:
    from genrank_assets.ml.data import demo_data

    return demo_data.main(argv) or 0


@command("materialize", "materialise the asset graph with a preset: one line per asset, full logs in a file (-v: all)")
def _materialize(argv: list[str]) -> int:
    import genrank_assets.tools.demo_run as demo_run

    verbose = logging.getLogger().getEffectiveLevel() <= logging.INFO  # main() took -v off argv and set INFO
    return demo_run.main(argv + (["-v"] if verbose else []))


@command("similar", "nearest songs to a song by cosine of its word2vec vector")
def _similar(argv: list[str]) -> int:
    from genrank_assets.ml.vectors.song_vectors import from_frame

    parser = argparse.ArgumentParser(prog="genrank similar")
    parser.add_argument("song_id")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--home", default=None)
    args = parser.parse_args(argv)
    sv = from_frame(_load_table("song_vectors", args.home))
    songs = _load_table("raw_songs", args.home).set_index("song_id")
    try:
        neighbours = sv.most_similar(args.song_id, args.k)
    except KeyError as e:
        print(f"genrank similar: {e.args[0]}", file=sys.stderr)
        return 1
    print(f"{_song_label(songs, args.song_id)} (ID: {args.song_id})")
    for rank, (other, sim) in enumerate(neighbours, start=1):
        print(f"{rank:>3}. {_song_label(songs, other)} (ID: {other})  cos={sim:.3f}")
    return 0


@command("codes", "semantic IDs: `codes song ID`, `codes code 45 67 [123]`, `codes collisions [--top 20]`")
def _codes(argv: list[str]) -> int:
    from genrank_assets.ml.semantic_ids.codes import codes_from_frame

    parser = argparse.ArgumentParser(prog="genrank codes")
    parser.add_argument("--home", default=None)
    sub = parser.add_subparsers(dest="what", required=True)
    p_song = sub.add_parser("song", help="a song's code and the songs sharing it")
    p_song.add_argument("song_id")
    p_code = sub.add_parser("code", help="songs under a code or a code prefix")
    p_code.add_argument("code", nargs="+", type=int)
    p_col = sub.add_parser("collisions", help="the codes shared by the most songs")
    p_col.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    song_ids, codes = codes_from_frame(_load_table("semantic_ids", args.home))
    songs = _load_table("raw_songs", args.home).set_index("song_id")
    index = {s: i for i, s in enumerate(song_ids)}

    def show(rows, limit=50):
        for i in rows[:limit]:
            print(f"  {tuple(int(v) for v in codes[i])}  {_song_label(songs, song_ids[i])} (ID: {song_ids[i]})")
        if len(rows) > limit:
            print(f"  ... and {len(rows) - limit} more")

    if args.what == "song":
        if args.song_id not in index:
            print(f"genrank codes: song {args.song_id!r} has no semantic ID (no vector)", file=sys.stderr)
            return 1
        code = codes[index[args.song_id]]
        same = [i for i in range(len(song_ids)) if (codes[i] == code).all()]
        print(f"{_song_label(songs, args.song_id)} (ID: {args.song_id}) -> code {tuple(int(v) for v in code)}")
        print(f"{len(same)} song(s) share this code:")
        show(same)
    elif args.what == "code":
        prefix = args.code
        if len(prefix) > codes.shape[1]:
            print(f"genrank codes: codes have {codes.shape[1]} levels, got {len(prefix)} numbers", file=sys.stderr)
            return 2
        rows = [i for i in range(len(song_ids)) if list(codes[i, : len(prefix)]) == prefix]
        print(f"{len(rows)} song(s) under {tuple(prefix)}:")
        show(rows)
    else:
        keys, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        order = np.argsort(-counts, kind="stable")[: args.top]
        print(f"{len(keys)} distinct codes for {len(song_ids)} songs; largest collision sets:")
        for j in order:
            if counts[j] < 2:
                break
            members = np.flatnonzero(inverse == j)
            names = ", ".join(_song_label(songs, song_ids[i]) for i in members[:3])
            print(f"  {tuple(int(v) for v in keys[j])}: {counts[j]} songs — {names}{' ...' if counts[j] > 3 else ''}")
    return 0


def _setup_mlflow(home: str | None) -> None:
    from genrank_assets.ml.serving import registry

    registry.connect(home)


def _model_uri(name: str, alias: str | None, version: int | None) -> str:
    """models:/name/version when a version is asked for, else models:/name@alias. An alias that does not exist
    is an error, never a fall-back to another version: only the promotion gate decides what `champion` serves,
    and an unpromoted version is served only when asked for by number."""
    from mlflow import MlflowClient

    from genrank_assets.ml.serving import registry

    versions = sorted(int(v.version) for v in MlflowClient().search_model_versions(f"name='{name}'"))
    if not versions:
        raise CliError(f"no registered model {name!r}: run `make demo` or materialise the graph first")
    if version is not None:
        if version not in versions:
            raise CliError(f"{name} has no version {version} (registered: {', '.join(map(str, versions))})")
        return f"models:/{name}/{version}"
    if registry.alias_version(name, alias) is None:
        aliases = MlflowClient().get_registered_model(name).aliases or {}
        known = ", ".join(f"{a}=v{v}" for a, v in aliases.items()) or "none"
        raise CliError(f"{name} has no alias {alias!r} (aliases: {known}); pass --version N to load a version "
                       "the promotion gate has not promoted")
    return f"models:/{name}@{alias}"


def _registry_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alias", default="champion", help="MLflow alias to load (default: champion)")
    parser.add_argument("--version", type=int, default=None, help="a registered version instead of the alias")
    parser.add_argument("--home", default=None)


@command("generate", "TIGER candidates for a text: the generated codes and their songs")
def _generate(argv: list[str]) -> int:
    from genrank_assets.ml.serving import registry

    parser = argparse.ArgumentParser(prog="genrank generate")
    parser.add_argument("text")
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--beams", type=int, default=None)
    _registry_args(parser)
    args = parser.parse_args(argv)
    _check_query(args.text)
    _setup_mlflow(args.home)
    t0 = time.perf_counter()
    generator = registry.load_python_model(_model_uri(registry.TIGER_NAME, args.alias, args.version)).generator
    t1 = time.perf_counter()
    try:
        cands = generator.generate_candidates(args.text, n=args.n, num_beams=args.beams)
    except ValueError as e:
        print(f"genrank generate: {e}", file=sys.stderr)
        return 2
    _print_latency(t1 - t0, time.perf_counter() - t1)
    table = generator.code_table
    names = _song_names(args.home)
    print(f"{len(cands.codes)} codes generated (invalid-code rate {generator.invalid_code_rate:.3f}); "
          f"{len(cands)} candidate songs{f' ({cands.shortfall} short of {args.n})' if cands.shortfall else ''}")
    shown = set(cands)
    unused = 0
    for code, score in cands.codes:
        members = [table.song_ids[i] for i in table.songs_by_code.get(tuple(code), []) if table.song_ids[i] in shown]
        if not members:  # the first n songs were filled before this code's turn
            unused += 1
            continue
        print(f"{tuple(code)}  score {score:.3f}")
        for sid in members:
            name, singer = names.get(sid, ("?", "?"))
            print(f"    {name} - {singer} (ID: {sid})")
    if unused:
        print(f"({unused} further codes were generated beyond the first {args.n} songs)")
    return 0


def _connect_warehouse(db):
    """A read-only DuckDB connection, retried while a materialisation holds the write lock."""
    import time

    import duckdb

    deadline = time.monotonic() + WAREHOUSE_LOCK_WAIT_S
    while True:
        try:
            return duckdb.connect(str(db), read_only=True)
        except duckdb.IOException as err:
            if "lock" not in str(err).lower():
                raise
            if time.monotonic() > deadline:
                raise CliError(f"the warehouse {db} is locked by another process (a materialisation writing "
                               f"it?) for over {WAREHOUSE_LOCK_WAIT_S:.0f} s: try again when that run ends") from None
            time.sleep(0.25)


def _song_names(home: str | None) -> dict[str, tuple[str, str]]:
    """song_id -> (name, singer) from the warehouse's raw_songs ({} when it was never built)."""
    import duckdb

    import genrank_assets.paths as paths

    db = paths.warehouse_path(home)
    if not db.exists():
        return {}
    con = _connect_warehouse(db)
    try:
        df = con.execute("select song_id, song_name, singer from genrank.raw_songs").fetchdf()
        return dict(zip(df.song_id, zip(df.song_name, df.singer)))
    except duckdb.CatalogException:
        return {}
    finally:
        con.close()


def _check_query(text: str) -> None:
    from genrank_assets.ml.serving.recommender import check_text

    try:
        check_text(text)
    except ValueError as e:
        raise CliError(str(e)) from None


def _load_recommender(args):
    return _load_recommender_uri(args)[0]


def _load_recommender_uri(args):
    from genrank_assets.ml.serving import registry

    _setup_mlflow(args.home)
    uri = _model_uri(registry.RECOMMENDER_NAME, args.alias, args.version)
    return registry.load_python_model(uri).recommender, uri


def _print_latency(load_s: float, query_s: float, stages: dict[str, float] | None = None) -> None:
    """On stderr, so that stdout holds the answer only."""
    detail = f" ({', '.join(f'{k} {v:.0f} ms' for k, v in stages.items())})" if stages else ""
    print(f"latency: model load {load_s:.2f} s, query {query_s * 1000:.0f} ms{detail}", file=sys.stderr)


@command("recommend", "ranked songs for a free-text query (--explain: why each one; --json), from the registry")
def _recommend(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="genrank recommend")
    parser.add_argument("text")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--scores", action="store_true", help="print the score of each song")
    parser.add_argument("--explain", action="store_true",
                        help="per song: the candidate sources that proposed it and the parts of its score")
    parser.add_argument("--json", action="store_true", help="one JSON object: the results with sources and scores")
    _registry_args(parser)
    args = parser.parse_args(argv)
    _check_query(args.text)  # before the model load, which takes seconds
    t0 = time.perf_counter()
    rec, uri = _load_recommender_uri(args)
    t1 = time.perf_counter()
    rec.reset_stage_times()
    try:
        results = rec.explain(args.text, args.k) if args.explain or args.json else rec.recommend(args.text, args.k)
    except ValueError as e:
        print(f"genrank recommend: {e}", file=sys.stderr)
        return 2
    query_s = time.perf_counter() - t1
    stages = rec.stage_times.medians()
    _print_latency(t1 - t0, query_s, stages)
    if args.json:
        print(json.dumps({
            "query": args.text, "k": args.k, "model": uri, "config": rec.describe(),
            "results": [r.to_dict() for r in results],
            "latency_ms": {"model_load": round((t1 - t0) * 1000, 3), "query": round(query_s * 1000, 3),
                           **{k: round(v, 3) for k, v in stages.items()}},
        }, ensure_ascii=False, indent=2))
    elif args.explain:
        for r in results:
            print("\n".join(r.lines()))
    else:
        for r in results:
            print(f"{r}{f'  score={r.score:.3f}' if args.scores else ''}")
    return 0


@command("demo", "interactive loop: type a mood or a playlist title, get songs (exit / quit / Ctrl-D to leave)")
def _demo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="genrank demo")
    parser.add_argument("-k", type=int, default=10)
    _registry_args(parser)
    args = parser.parse_args(argv)
    rec = _load_recommender(args)
    print("genrank demo — type a playlist title or a mood (e.g. 适合深夜听的抒情歌曲, gym running bgm); "
          "'exit' or 'quit' to leave.")
    while True:
        try:
            text = input("> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if text.strip().lower() in ("exit", "quit"):
            return 0
        if not text.strip():
            continue
        try:
            for r in rec.recommend(text, args.k):
                print(f"  {r}")
        except ValueError as e:
            print(f"  {e}")


def _song_label(songs, song_id: str) -> str:
    if song_id in songs.index:
        row = songs.loc[song_id]
        return f"{row['song_name']} - {row['singer']}"
    return "(no song info)"


def _load_table(name: str, home: str | None):
    """Read a table of the DuckDB warehouse (read-only), with a clear error when it was never built."""
    import duckdb

    import genrank_assets.paths as paths

    db = paths.warehouse_path(home)
    if not db.exists():
        raise CliError(f"no warehouse at {db}: run `make demo` or materialise the assets first")
    con = _connect_warehouse(db)
    try:
        return con.execute(f"select * from genrank.{name}").fetchdf()
    except duckdb.CatalogException:
        raise CliError(f"table genrank.{name} is not in {db}: materialise the `{name}` asset first") from None
    finally:
        con.close()


@command("relocate-home", "after moving or restoring GENRANK_HOME: rewrite the old absolute paths in its MLflow store")
def _relocate_home(argv: list[str]) -> int:
    import genrank_assets.paths as paths
    from genrank_assets.ml.serving.relocate import recorded_home, relocate_home

    parser = argparse.ArgumentParser(prog="genrank relocate-home")
    parser.add_argument("--home", default=None, help="the home where it is now (default: GENRANK_HOME)")
    parser.add_argument("--from", dest="old", default=None,
                        help="where it was (default: read from the store)")
    args = parser.parse_args(argv)
    home = paths.genrank_home(args.home)
    old = args.old or recorded_home(home)
    if old is None:
        raise CliError(f"no MLflow store with a genrank experiment under {home}: nothing to relocate")
    try:
        changed = relocate_home(home, old)
    except (FileNotFoundError, ValueError) as e:
        raise CliError(str(e)) from None
    print(f"{home}: paths under {old} rewritten ({changed['rows']} store rows, {changed['mlmodel_files']} MLmodel files)")
    return 0


@command("status", "list what the pipeline has built: warehouse tables and registered models")
def _status(argv: list[str]) -> int:

    import genrank_assets.paths as paths

    parser = argparse.ArgumentParser(prog="genrank status")
    parser.add_argument("--home", default=None, help="GENRANK_HOME (default: env or ./.genrank)")
    args = parser.parse_args(argv)
    db = paths.warehouse_path(args.home)
    print(f"GENRANK_HOME: {paths.genrank_home(args.home)}")
    if not db.exists():
        print(f"no warehouse yet at {db}")
        return 1
    con = _connect_warehouse(db)
    rows = con.execute(
        "select table_name, estimated_size from duckdb_tables() where schema_name = 'genrank' order by table_name"
    ).fetchall()
    print(f"warehouse {db}:")
    for table, _ in rows:
        n = con.execute(f'select count(*) from genrank."{table}"').fetchone()[0]
        print(f"  {table:<28} {n:>10,} rows")
    con.close()
    _print_registered_models(args.home)
    return 0


def _print_registered_models(home: str | None) -> None:
    import genrank_assets.paths as paths

    if not paths.mlflow_store_exists(home):
        return
    from mlflow import MlflowClient

    _setup_mlflow(home)
    client = MlflowClient()
    models = client.search_registered_models()
    if models:
        print("MLflow registry:")
    for m in models:
        aliases = ", ".join(f"{a}=v{v}" for a, v in (m.aliases or {}).items()) or "no alias"
        latest = max((int(v.version) for v in client.search_model_versions(f"name='{m.name}'")), default=0)
        print(f"  {m.name:<22} latest v{latest} ({aliases})")
    _print_champion(client)


def _print_champion(client) -> None:
    """The champion recommender: when it was promoted, what its evaluation measured (version tags and run)."""
    import mlflow

    from genrank_assets.ml.serving import registry

    try:
        mv = client.get_model_version_by_alias(registry.RECOMMENDER_NAME, registry.CHAMPION)
    except mlflow.exceptions.MlflowException:
        print(f"no {registry.RECOMMENDER_NAME}@{registry.CHAMPION} yet (the promotion gate has not promoted one)")
        return
    t = mv.tags or {}
    promoted = t.get("genrank.promoted_at") or "at an unrecorded time (promoted before promoted_at tags)"
    print(f"champion: {registry.RECOMMENDER_NAME} v{mv.version}, promoted {promoted}")
    if "genrank.ndcg_at_10" in t:
        print(f"  serves {t.get('genrank.method', '?')} (tiger v{t.get('genrank.tiger_version', '?')}, ranker "
              f"v{t.get('genrank.ranker_version', '?')}); NDCG@10 {float(t['genrank.ndcg_at_10']):.4f} on "
              f"{t.get('genrank.queries', '?')} {t.get('genrank.split', '?')} queries")
    try:
        run = client.get_run(mv.run_id) if mv.run_id else None
    except mlflow.exceptions.MlflowException:
        run = None
    if run is None:
        return
    metrics = run.data.metrics
    method = t.get("genrank.method")
    own = {k.split(".", 1)[1]: v for k, v in metrics.items() if method and k.startswith(f"{method}.")}
    if own:
        print("  evaluation: " + ", ".join(f"{k.replace('_at_', '@')} {v:.4f}" for k, v in sorted(own.items())))
    others = {k.split(".", 1)[0]: v for k, v in metrics.items()
              if k.endswith(".ndcg_at_10") and not k.startswith(f"{method}.")}
    if others:
        print("  NDCG@10 of the other methods: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(others.items())))
    print(f"  evaluation run {run.info.run_id} ({run.info.run_name})")


def main(argv: list[str] | None = None) -> int:
    import warnings

    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    argv = [a for a in argv if a not in ("-v", "--verbose")]
    # Query commands print answers, not progress: library chatter only with -v.
    quiet = bool(argv) and argv[0] != "demo-data" and not verbose
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if quiet:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        warnings.filterwarnings("ignore")
        logging.getLogger("mlflow").setLevel(logging.ERROR)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: genrank COMMAND [ARGS]\n\ncommands:")
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:<12} {help_}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"genrank: unknown command {name!r}; try `genrank --help`", file=sys.stderr)
        return 2
    try:
        return COMMANDS[name][0](rest) or 0
    except CliError as e:
        print(f"genrank {name}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
