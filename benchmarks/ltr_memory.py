"""Peak memory of the LTR ranker's data path (issue 24 §4): what the ``ltr_ranker`` step and the LTR part of the
``evaluation_report`` step hold, phase by phase, on a materialised warehouse with the cross-fitting folds.

Each step is replayed outside Dagster in a process of its own, which first imports ``genrank_assets.definitions``
(as a step's process does, so its figures include what such a process holds before it reads anything):

``ltr_ranker``, with the ltr_ranker config of ``--preset`` (cpu-real's, which end_to_end runs) — ``read``: the
served ranking_features' training splits and every fold's rows, batched (``io_managers.read_batched``), and the
corpus; ``combine``: ``training_rows(with_fold_rows(...))`` (the inputs stay referenced, as Dagster holds a step's
inputs until it returns; with ``consume=True`` where the code has it, as the steps call it); ``fit``:
``fit_ranker`` (query-fold CV for the rounds, then the refit); ``val figure``: the out-of-fold NDCG@10 on the val
queries (``val_ndcg_at_10``).

``evaluation`` — ``read``: every split of ranking_features and every fold's rows, and the corpus; ``combine``:
``with_fold_rows`` as above; ``val figure``: the ranker's out-of-fold val rankings as ``procedure._evaluate_ltr``
takes them; ``ablation``: ``ltr_ablation`` (each variant refit at the ranker's rounds on the training rows, scored
on test; no fill and a zero baseline here, which cost no memory of the features). It uses the model its own
tree's ``ltr_ranker`` replay fitted, and none of the models the real step also holds (generator, cross-encoder,
catalogue, classical baselines, the served recommenders: ~1.8 GiB of the step's peak on mpd7k before this work).

A phase's figure is the process's peak RSS during that phase (VmHWM, reset at the phase's start through
/proc/self/clear_refs), beside the RSS at its start. ``--before REV`` replays the same steps with the code of git
revision REV too (``git archive`` into a temporary folder), in the same run, so the two sets of figures come from
one machine at one time; the outputs (rounds, out-of-fold NDCG, the refit's model text, the ablation table) are
compared.

The warehouse: ``python -m benchmarks.end_to_end`` (mpd7k through the cpu-real preset, with cross-fitting) leaves
one at /tmp/genrank_mpd7k/warehouse.duckdb; it is opened read-only. Without ``--warehouse`` the script says so and
measures nothing (``make bench`` runs it that way).

    python -m benchmarks.ltr_memory --warehouse /tmp/genrank_mpd7k/warehouse.duckdb --before REV
    python -m benchmarks.ltr_memory --quick --warehouse ...   # max_rounds 20: the memory in minutes
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STEPS = ("ltr_ranker", "evaluation")
SERVED = "select * from genrank.ranking_features"
CORPUS = "select * from genrank.playlist_corpus"


# ------------------------------------------------------------------------------ inside a replay's process
class Phases:
    """Peak RSS (VmHWM, reset at each phase's start), RSS at the start and wall seconds of each phase."""

    def __init__(self) -> None:
        self.figures: dict[str, dict] = {}
        self._name, self._t0, self._start = None, 0.0, 0

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) // 1024 for line in status if line.startswith(key))

    def start(self, name: str) -> None:
        self.stop()
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets the peak (VmHWM) to the current RSS
        self._name, self._t0, self._start = name, time.perf_counter(), self._status("VmRSS:")

    def stop(self) -> None:
        if self._name is not None:
            self.figures[self._name] = {"peak_rss_mib": self._status("VmHWM:"), "rss_at_start_mib": self._start,
                                        "wall_s": round(time.perf_counter() - self._t0, 1)}
            print(f"  {self._name}: peak {self.figures[self._name]['peak_rss_mib']} MiB", file=sys.stderr, flush=True)
        self._name = None


def _read(warehouse: str, fold_queries: list[str], splits) -> tuple:
    import duckdb

    from genrank_assets.defs.io_managers import read_batched

    con = duckdb.connect(warehouse, read_only=True)
    try:
        served = read_batched(con, SERVED, splits)
        folds = [read_batched(con, query) for query in fold_queries]
        corpus = con.execute(CORPUS).fetchdf()
    finally:
        con.close()
    return served, folds, corpus


def _joined(served, folds):
    """``with_fold_rows`` as the steps call it: emptying their inputs as it joins them where the code can (the
    code before this benchmark could not: there the inputs stay beside the joined table)."""
    import inspect

    from genrank_assets.ml.ranking.ltr.tables import with_fold_rows

    if "consume" in inspect.signature(with_fold_rows).parameters:
        return with_fold_rows(served, folds, consume=True)
    return with_fold_rows(served, folds)


def replay_ranker(warehouse: str, fold_queries: list[str], model_dir: str, params: dict) -> dict:
    """The ltr_ranker step's data path (defs/assets/ranking.py) with the LTRParams fields ``params``; the model is
    saved to ``model_dir``."""
    import hashlib

    from genrank_assets.ml.baselines.classical import benchmark_queries
    from genrank_assets.ml.evaluation.ablation import val_ndcg_at_10
    from genrank_assets.ml.ranking.ltr.features import FEATURES
    from genrank_assets.ml.ranking.ltr.ranker import LTRParams
    from genrank_assets.ml.ranking.ltr.tables import TRAINING_SPLITS, fit_ranker, training_rows

    phases = Phases()
    phases.start("read")
    served, folds, corpus = _read(warehouse, fold_queries, TRAINING_SPLITS)
    phases.start("combine")
    rows = training_rows(_joined(served, folds))
    phases.start("fit")
    model = fit_ranker(rows, FEATURES, LTRParams(**params))
    phases.start("val figure")
    _, _, truths = benchmark_queries(corpus, split="val")
    val_ndcg = val_ndcg_at_10(model, rows, truths)
    phases.stop()
    model.save(model_dir)
    return {"phases": phases.figures, "training_rows": len(rows), "n_rounds": model.n_rounds,
            "cv_best_rounds": model.cv["best_rounds"], "cv_oof_rounds": model.cv["oof_rounds"],
            "val_oof_ndcg@10": val_ndcg,
            "model_sha1": hashlib.sha1(model.booster.model_to_string().encode()).hexdigest()}


def replay_evaluation(warehouse: str, fold_queries: list[str], model_dir: str) -> dict:
    """The LTR part of the evaluation_report step (defs/assets/evaluation.py, procedure._evaluate_ltr's
    ``ltr ablation`` phase), with the model ``replay_ranker`` saved."""
    from genrank_assets.ml.baselines.classical import benchmark_queries
    from genrank_assets.ml.evaluation import ablation
    from genrank_assets.ml.evaluation.metrics import ndcg_at_10_of
    from genrank_assets.ml.ranking.ltr import tables
    from genrank_assets.ml.ranking.ltr.ranker import LTRRanker

    model = LTRRanker.load(model_dir)
    phases = Phases()
    phases.start("read")
    served, folds, corpus = _read(warehouse, fold_queries, None)
    phases.start("combine")
    features = _joined(served, folds)
    phases.start("val figure")
    _, _, val_truths = benchmark_queries(corpus, split="val")
    if hasattr(tables, "training_mask"):
        train_rows = None
        tune = ablation.val_rankings(model, features, val_truths, tables.training_mask(features))
    else:  # the code before the training rows were masked: _evaluate_ltr held a copy of them through the ablation
        train_rows = tables.training_rows(features)
        tune = ablation.val_rankings(model, train_rows, val_truths)
    val_ndcg = ndcg_at_10_of(tune, val_truths)
    phases.start("ablation")
    _, _, truths = benchmark_queries(corpus, split="test")
    baseline = ablation.result_of("none", {q: [] for q in truths}, truths, catalogue=1)
    _, table = ablation.ltr_ablation(features, model, truths, {}, baseline, 1, 100, val_truths=val_truths)
    phases.stop()
    del train_rows
    columns = ["variant", "n_rounds", "ndcg@10", "recall@100", "val_ndcg@10"]
    return {"phases": phases.figures, "rows": len(features), "val_oof_ndcg@10": val_ndcg,
            "ablation": table[columns].to_dict("records")}


def worker(argv: list[str]) -> None:
    """``--worker STEP WAREHOUSE FOLD_QUERIES_JSON MODEL_DIR PARAMS_JSON``: one replay; its JSON on the last line."""
    step, warehouse, fold_queries, model_dir, params = argv
    import genrank_assets.definitions  # noqa: F401  (what a step's process holds before its inputs)

    if step == "ltr_ranker":
        out = replay_ranker(warehouse, json.loads(fold_queries), model_dir, json.loads(params))
    else:
        out = replay_evaluation(warehouse, json.loads(fold_queries), model_dir)
    print(json.dumps(out, default=float))


# ------------------------------------------------------------------------------------------ the benchmark
def replay(script: Path, tree: Path, step: str, warehouse: Path, fold_queries: list[str], model_dir: Path,
           params: dict) -> dict:
    """One replay in a fresh process running ``script`` (this file) with ``tree``'s genrank_assets."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, str(script), "--worker", step, str(warehouse), json.dumps(fold_queries), str(model_dir),
           json.dumps(params)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tree, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the {step} replay of {tree} failed (exit {proc.returncode})")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall_s": round(time.perf_counter() - t0, 1)}


def code_tree(rev: str, into: Path) -> Path:
    """The files of git revision ``rev`` of this repository, under ``into``."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, stdout=subprocess.PIPE).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def compare(before: dict, after: dict) -> dict:
    """Which outputs the two code versions share (NaN equal to NaN: the figures as their JSON)."""
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # noqa: E731
    keys = ("training_rows", "n_rounds", "cv_best_rounds", "cv_oof_rounds", "val_oof_ndcg@10", "model_sha1")
    out = {k: same(before["ltr_ranker"][k], after["ltr_ranker"][k]) for k in keys}
    out["ablation"] = same(before["evaluation"]["ablation"], after["evaluation"]["ablation"])
    return out


def revision() -> str:
    """This checkout's commit, with ``+changes`` when its working tree differs from it."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "genrank_assets"],
                           stdout=subprocess.PIPE, text=True).stdout.strip()
    return head + ("+changes" if dirty else "")


def main(argv: list[str] | None = None) -> None:
    import shutil

    from benchmarks._common import (
        FOLD_FEATURE_QUERIES,
        PRESETS,
        add_output_args,
        argument_parser,
        load_preset,
        output_path,
        parse_args,
        write_json,
    )

    parser = argument_parser(__doc__, "ltr_memory")
    parser.add_argument("--warehouse", type=Path, default=None,
                        help="a materialised DuckDB warehouse with the cross-fitting folds (opened read-only); "
                             "without it the benchmark says how to make one and measures nothing")
    parser.add_argument("--before", default=None, help="also replay git revision REV's code, in the same run")
    parser.add_argument("--preset", type=Path, default=PRESETS / "cpu-real.yaml",
                        help="the preset whose ltr_ranker config the ranker is fitted with (end_to_end's)")
    parser.add_argument("--max-rounds", type=int, default=None, help="the ranker's max_rounds (default: the preset's)")
    add_output_args(parser, "the ranker's max_rounds 20 (its CV stops at 20 rounds: the memory, not the model)")
    args = parse_args(parser, {"max_rounds": 20}, argv)
    if args.warehouse is None or not args.warehouse.is_file():
        print(f"ltr_memory: no warehouse {args.warehouse or '(--warehouse)'}: `python -m benchmarks.end_to_end` "
              "leaves one with the cross-fitting folds at /tmp/genrank_mpd7k/warehouse.duckdb; nothing measured")
        return
    params = dict(load_preset(args.preset)["ops"].get("ltr_ranker", {}).get("config", {}))
    if args.max_rounds is not None:
        params["max_rounds"] = args.max_rounds
    with tempfile.TemporaryDirectory(prefix="ltr_memory_") as tmp:
        script = Path(shutil.copy(Path(__file__).resolve(), Path(tmp) / "ltr_memory.py"))
        trees = {"after": REPO}
        if args.before:
            trees = {"before": code_tree(args.before, Path(tmp) / "before"), **trees}
        results = {}
        for label, tree in trees.items():
            model_dir = Path(tmp) / f"model_{label}"
            results[label] = {}
            for step in STEPS:
                print(f"== {label}: {step}", flush=True)
                results[label][step] = replay(script, tree, step, args.warehouse, FOLD_FEATURE_QUERIES, model_dir,
                                              params)
    print(f"{'phase':<24}" + "".join(f"{label:>12}" for label in results) + "  (peak RSS, MiB)")
    for step in STEPS:
        for phase in results["after"][step]["phases"]:
            print(f"{step + ' ' + phase:<24}" + "".join(f"{r[step]['phases'][phase]['peak_rss_mib']:>12}"
                                                      for r in results.values()))
    payload = {"warehouse": str(args.warehouse), "before_rev": args.before, "after_rev": revision(),
               "ltr_params": params, "results": results}
    if "before" in results:
        payload["same_outputs"] = compare(results["before"], results["after"])
        print("same outputs:", payload["same_outputs"])
    write_json(output_path(args, "ltr_memory"), payload)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":  # a replay's process (run as a file, not as the package)
        worker(sys.argv[2:])
    else:
        main()
