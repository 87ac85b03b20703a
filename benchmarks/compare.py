"""A paired A/B on VAL only: two materialised GENRANK_HOMEs, or a preset and a variant of it built here, compared
by the LTR ranker as ``ltr_ranker`` trains it (each home's holdout + val rows of ``ranking_features``, rounds by
query-fold CV, LightGBM settings of the run config's ``ltr_ranker``): its out-of-fold NDCG@10 on the val
queries, and a paired bootstrap (2,000 resamples, seed 0) of the per-query difference, variant minus baseline.
For a change judged before it is kept; test rows are never read.

Two homes:
    python -m benchmarks.compare --homes /tmp/base_home /tmp/variant_home [--preset cpu-real]

A preset and a variant (``--variant KEY=VALUE``, repeatable; KEY is ``<op>.<field>`` for an op's config, e.g.
``ranker_model.epochs=3``, or a dotted path into the run config such as ``resources.compute.config.threads``;
VALUE is YAML). The baseline home (--base-home, default /tmp/genrank_mpd7k, the home end_to_end leaves) is used
as it is when it holds ``ranking_features``, otherwise built from the preset up to ``ltr_tables``. The variant's
home is a copy of it (MLflow paths relocated) rerun from the first step the variant changes up to ``ltr_tables``
(evaluation_report, which reads test, never runs), so that everything upstream is the same models. A variant of
``ltr_ranker`` alone changes only the LightGBM settings and reuses the baseline's features.
    python -m benchmarks.compare --variant ranker_model.epochs=3          # the default variant
    python -m benchmarks.compare --quick   # test preset on a 10% sample of mpd7k, ranker_model.epochs=2

Writes benchmarks/results/compare.json (or --out).
"""
from __future__ import annotations

import re
import shutil
from dataclasses import asdict, fields
from pathlib import Path

from benchmarks._common import (
    CORPUS,
    DEFAULT_HOME,
    FOLD_FEATURE_QUERIES,
    NOT_TEST_FEATURES,
    OP_STEP,
    PRESETS,
    QUICK_HOME,
    QUICK_PRESET,
    QUICK_ROOT,
    STEPS,
    add_output_args,
    argument_parser,
    home_env,
    in_process_preset,
    load_preset,
    output_path,
    quick_data,
    require_mpd7k,
    run_step,
    warehouse_frames,
    write_json,
)

DEFAULT_VARIANT = ["ranker_model.epochs=3"]  # the cross-encoder for 3 epochs (docs/findings.md)
QUICK_VARIANT = ["ranker_model.epochs=2"]  # the test preset trains it for 4
LAST_STEP = "ltr_tables"  # what the comparison reads; evaluation_report (test) never runs
STEP_NAMES = [name for name, _ in STEPS]
TOP_LEVEL = ("ops", "resources", "execution")


# -------------------------------------------------------------------------------------------- run configs
def parse_override(text: str) -> tuple[list[str], object]:
    """``KEY=VALUE`` -> (path into the run config, YAML value); ``op.field`` means ``ops.op.config.field``."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise SystemExit(f"--variant {text!r}: expected KEY=VALUE")
    parts = key.strip().split(".")
    if parts[0] not in TOP_LEVEL:
        if len(parts) < 2:
            raise SystemExit(f"--variant {text!r}: KEY is <op>.<field> or a path starting with {'/'.join(TOP_LEVEL)}")
        parts = ["ops", parts[0], "config", *parts[1:]]
    return parts, yaml.safe_load(value)


def with_overrides(config: dict, overrides: list[tuple[list[str], object]]) -> dict:
    import copy

    out = copy.deepcopy(config)
    for path, value in overrides:
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def first_step(overrides: list[tuple[list[str], object]]) -> str | None:
    """The earliest step a variant changes (resources / execution: every step); None when it changes no step up to
    LAST_STEP (an ltr_ranker or evaluation setting only)."""
    found = []
    for path, _ in overrides:
        if path[0] != "ops":
            return STEP_NAMES[0]
        step = OP_STEP.get(path[1], path[1])
        if step not in STEP_NAMES:
            raise SystemExit(f"--variant: no step runs the op {path[1]!r} (steps: {', '.join(STEP_NAMES)})")
        # the fold chains run the served op's config (defs/folds.py): their copies change with it
        found += [i for i, name in enumerate(STEP_NAMES) if name.split("/")[-1] == step]
    first = min(found)
    return STEP_NAMES[first] if first <= STEP_NAMES.index(LAST_STEP) else None


def ltr_params(config: dict):
    """LTRParams of a run config's ``ltr_ranker`` (its fields that are LightGBM settings; the rest default)."""
    from genrank_assets.ml.ranking.ltr.ranker import LTRParams

    given = (config.get("ops", {}).get("ltr_ranker") or {}).get("config") or {}
    names = {f.name for f in fields(LTRParams)}
    return LTRParams(**{k: v for k, v in given.items() if k in names})


# ------------------------------------------------------------------------------------------------- homes
def has_features(home: Path) -> bool:
    if not (home / "warehouse.duckdb").exists():
        return False
    try:
        (count,) = warehouse_frames(home, "select count(*) as n from genrank.ranking_features where split = 'val'")
    except Exception:  # noqa: BLE001 - no such table yet
        return False
    return int(count["n"].iloc[0]) > 0


def build(home: Path, config: dict, data: Path, start: str, label: str) -> list[dict]:
    """Run the steps from ``start`` through LAST_STEP in ``home`` with ``config``; their timings."""
    preset = in_process_preset(config, home, name=label)
    env = home_env(home, data)
    timings = []
    for selection, what in STEPS[STEP_NAMES.index(start): STEP_NAMES.index(LAST_STEP) + 1]:
        print(f"== {label} {selection}: {what}", flush=True)
        timings.append({**run_step(selection, preset, env), "what": what})
        print(f"   {timings[-1]['wall_s']} s, peak {timings[-1]['peak_rss_mib']} MiB", flush=True)
    return timings


def variant_home(base: Path, work: Path, name: str) -> Path:
    """A fresh copy of ``base`` under ``work``, its MLflow store's absolute paths moved to the copy."""
    from genrank_assets.ml.serving.relocate import relocate_home

    home = work / f"variant-{name}"
    if home.exists():
        shutil.rmtree(home)
    shutil.copytree(base, home, symlinks=True)
    relocate_home(home, base)
    return home


# ----------------------------------------------------------------------------------------------- measure
def val_per_query(home: Path, params) -> tuple[dict, int]:
    """The LTR ranker trained as ltr_ranker trains it on ``home``'s rows (the folds', the holdout's, val's); its out-of-fold val
    figures (per query) and its rounds. Test rows are not read."""
    from genrank_assets.defs.folds import ltr_cross_encoder
    from genrank_assets.ml.baselines.classical import benchmark_queries
    from genrank_assets.ml.evaluation.metrics import evaluate_rankings
    from genrank_assets.ml.ranking.ltr.features import ltr_features
    from genrank_assets.ml.ranking.ltr.tables import fit_ranker, oof_frame, rankings, training_rows, with_fold_rows

    features, corpus, *folds = warehouse_frames(home, NOT_TEST_FEATURES, CORPUS, *FOLD_FEATURE_QUERIES)
    _, _, truths = benchmark_queries(corpus, "val")
    rows = training_rows(with_fold_rows(features, folds))
    model = fit_ranker(rows, ltr_features(ltr_cross_encoder()), params)
    ordered = oof_frame(rows)
    val = (ordered["split"] == "val").to_numpy()
    return evaluate_rankings(rankings(ordered[val].reset_index(drop=True), model.oof_scores[val]), truths), \
        model.n_rounds


def compare(homes: tuple[Path, Path], params: tuple) -> dict:
    from genrank_assets.ml.evaluation.metrics import paired_bootstrap

    (base, base_rounds), (variant, variant_rounds) = (val_per_query(h, p) for h, p in zip(homes, params))
    diff = paired_bootstrap(variant["per_query"]["ndcg@10"], base["per_query"]["ndcg@10"], n=2000, seed=0)
    return {"homes": [str(h) for h in homes], "split": "val", "queries": len(base["per_query"]["ndcg@10"]),
            "what": "LTR out-of-fold NDCG@10 on val, trained on each home's holdout + val rows; test not read",
            "baseline": {"val_ndcg@10": round(base["ndcg@10"], 4), "rounds": base_rounds},
            "variant": {"val_ndcg@10": round(variant["ndcg@10"], 4), "rounds": variant_rounds},
            "variant_minus_baseline": {k: round(float(diff[k]), 4)
                                       for k in ("mean_diff", "ci_low", "ci_high", "p_value")}}


def preset_path(name: str | None, quick: bool) -> Path:
    if name is None:
        return QUICK_PRESET if quick else PRESETS / "cpu-real.yaml"
    path = Path(name)
    return path if path.suffix in (".yaml", ".yml") else PRESETS / f"{name}.yaml"


def main() -> None:
    ap = argument_parser(__doc__, "compare")
    ap.add_argument("--homes", type=Path, nargs=2, default=None, help="baseline home, then the variant's")
    ap.add_argument("--preset", default=None, help="a preset name or YAML (default cpu-real; --quick: test): the "
                    "LightGBM settings and, with --variant, the run config of both builds")
    ap.add_argument("--variant", action="append", default=None, metavar="KEY=VALUE",
                    help=f"a change to the preset (repeatable; default {' '.join(DEFAULT_VARIANT)})")
    ap.add_argument("--base-home", type=Path, default=None,
                    help=f"the baseline's home (default {DEFAULT_HOME}; --quick: {QUICK_HOME}); built when it holds "
                         "no ranking_features")
    ap.add_argument("--data", type=Path, default=None, help="the data folder of a build (default mpd7k; --quick: "
                    "a seeded 10%% sample of it)")
    ap.add_argument("--work", type=Path, default=None, help="where the variant's home goes (default "
                    f"/tmp/genrank_compare; --quick: {QUICK_ROOT / 'compare'})")
    add_output_args(ap, "the test preset on a seeded 10%% sample of mpd7k, variant ranker_model.epochs=2")
    args = ap.parse_args()
    preset = preset_path(args.preset, args.quick)
    base_config = load_preset(preset)
    if args.homes:
        if args.variant:
            ap.error("--homes compares two homes as they are; --variant builds one (give one or the other)")
        params = (ltr_params(base_config),) * 2
        result = compare(tuple(args.homes), params)
        result.update({"preset": str(preset), "ltr_params": asdict(params[0])})
    else:
        texts = args.variant or (QUICK_VARIANT if args.quick else DEFAULT_VARIANT)
        overrides = [parse_override(t) for t in texts]
        variant_config = with_overrides(base_config, overrides)
        data = args.data or (quick_data() if args.quick else require_mpd7k())
        base = args.base_home or (QUICK_HOME if args.quick else DEFAULT_HOME)
        work = args.work or (QUICK_ROOT / "compare" if args.quick else Path("/tmp/genrank_compare"))
        built = {}
        if not has_features(base):
            built["baseline"] = build(base, base_config, data, STEP_NAMES[0], "baseline")
        start = first_step(overrides)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", "_".join(texts))
        home = base
        if start is not None:
            home = variant_home(base, work, name)
            built["variant"] = build(home, variant_config, data, start, "variant")
        params = (ltr_params(base_config), ltr_params(variant_config))
        result = compare((base, home), params)
        result.update({"preset": str(preset), "variant_overrides": texts, "rebuilt_from": start, "data": str(data),
                       "ltr_params": {"baseline": asdict(params[0]), "variant": asdict(params[1])}, "steps": built})
    result["quick"] = args.quick
    print(result)
    write_json(output_path(args, "compare"), result)


if __name__ == "__main__":
    main()
