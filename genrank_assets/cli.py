"""`genrank` command line: demo data, and looking into what the pipeline built."""
from __future__ import annotations

import argparse
import logging
import sys

COMMANDS = {}


def command(name: str, help: str):
    def register(fn):
        COMMANDS[name] = (fn, help)
        return fn

    return register


@command("demo-data", "write the deterministic synthetic dataset (seed format) to a folder")
def _demo_data(argv: list[str]) -> int:
    from genrank_assets.ml import demo_data

    return demo_data.main(argv) or 0


@command("similar", "nearest songs to a song by cosine of its word2vec vector")
def _similar(argv: list[str]) -> int:
    from genrank_assets.ml.song_vectors import from_frame

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


def _song_label(songs, song_id: str) -> str:
    if song_id in songs.index:
        row = songs.loc[song_id]
        return f"{row['song_name']} - {row['singer']}"
    return "(no song info)"


def _load_table(name: str, home: str | None):
    """Read a table of the DuckDB warehouse (read-only), with a clear error when it was never built."""
    import duckdb

    from genrank_assets import paths

    db = paths.warehouse_path(home)
    if not db.exists():
        raise SystemExit(f"no warehouse at {db}: run `make demo` or materialise the assets first")
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"select * from genrank.{name}").fetchdf()
    except duckdb.CatalogException:
        raise SystemExit(f"table genrank.{name} is not in {db}: materialise the `{name}` asset first") from None
    finally:
        con.close()


@command("status", "list what the pipeline has built: warehouse tables and registered models")
def _status(argv: list[str]) -> int:
    import duckdb

    from genrank_assets import paths

    parser = argparse.ArgumentParser(prog="genrank status")
    parser.add_argument("--home", default=None, help="GENRANK_HOME (default: env or ./.genrank)")
    args = parser.parse_args(argv)
    db = paths.warehouse_path(args.home)
    print(f"GENRANK_HOME: {paths.genrank_home(args.home)}")
    if not db.exists():
        print(f"no warehouse yet at {db}")
        return 1
    con = duckdb.connect(str(db), read_only=True)
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
    from genrank_assets import paths

    db = paths.genrank_home(home) / "mlflow.db"
    if not db.exists() and not __import__("os").environ.get("MLFLOW_TRACKING_URI"):
        return
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(paths.mlflow_tracking_uri(home))
    client = MlflowClient()
    models = client.search_registered_models()
    if models:
        print("MLflow registry:")
    for m in models:
        aliases = ", ".join(f"{a}=v{v}" for a, v in (m.aliases or {}).items()) or "no alias"
        latest = max((int(v.version) for v in client.search_model_versions(f"name='{m.name}'")), default=0)
        print(f"  {m.name:<22} latest v{latest} ({aliases})")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: genrank COMMAND [ARGS]\n\ncommands:")
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:<12} {help_}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"genrank: unknown command {name!r}; try `genrank --help`", file=sys.stderr)
        return 2
    return COMMANDS[name][0](rest) or 0


if __name__ == "__main__":
    sys.exit(main())
