"""Two materialised GENRANK_HOMEs compared on VAL only: the LTR ranker as ``ltr_ranker`` trains it (the holdout +
val rows of each home's ``ranking_features``, rounds by query-fold CV), its out-of-fold NDCG@10 on the 720 val
queries, and a paired bootstrap of the per-query difference (the second home minus the first). For an upstream
change (e.g. the cross-encoder's training) judged before it is kept; test rows are never read.

    python benchmarks/ltr_compare.py --homes /tmp/base_home /tmp/variant_home --name cross_encoder_listwise
    # -> benchmarks/results/ltr_compare_<name>.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CORPUS, NOT_TEST_FEATURES, warehouse_frames, write_json  # noqa: E402

from genrank_assets.ml.baselines.classical import benchmark_queries  # noqa: E402
from genrank_assets.ml.evaluation.metrics import evaluate_rankings, paired_bootstrap  # noqa: E402
from genrank_assets.ml.ranking.ltr.features import FEATURES  # noqa: E402
from genrank_assets.ml.ranking.ltr.ranker import LTRParams  # noqa: E402
from genrank_assets.ml.ranking.ltr.tables import fit_ranker, oof_frame, rankings, training_rows  # noqa: E402


def val_per_query(home: Path, params: LTRParams) -> tuple[dict, int]:
    features, corpus = warehouse_frames(home, NOT_TEST_FEATURES, CORPUS)
    _, _, truths = benchmark_queries(corpus, "val")
    rows = training_rows(features)
    model = fit_ranker(rows, FEATURES, params)
    ordered = oof_frame(rows)
    val = (ordered["split"] == "val").to_numpy()
    return evaluate_rankings(rankings(ordered[val].reset_index(drop=True), model.oof_scores[val]), truths), \
        model.n_rounds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--homes", type=Path, nargs=2, required=True, help="baseline home, then the variant's")
    ap.add_argument("--name", required=True, help="what the variant changes (the results file's suffix)")
    ap.add_argument("--min-data-in-leaf", type=int, default=200, help="presets/cpu-real.yaml's ltr_ranker")
    args = ap.parse_args()
    params = LTRParams(min_data_in_leaf=args.min_data_in_leaf)
    (base, base_rounds), (variant, variant_rounds) = (val_per_query(h, params) for h in args.homes)
    diff = paired_bootstrap(variant["per_query"]["ndcg@10"], base["per_query"]["ndcg@10"], n=2000, seed=0)
    result = {"homes": [str(h) for h in args.homes], "split": "val", "queries": len(base["per_query"]["ndcg@10"]),
              "what": "LTR out-of-fold NDCG@10 on val, trained on each home's holdout + val rows; test not read",
              "baseline": {"val_ndcg@10": round(base["ndcg@10"], 4), "rounds": base_rounds},
              "variant": {"val_ndcg@10": round(variant["ndcg@10"], 4), "rounds": variant_rounds},
              "variant_minus_baseline": {k: round(float(diff[k]), 4)
                                         for k in ("mean_diff", "ci_low", "ci_high", "p_value")}}
    print(result)
    write_json(f"ltr_compare_{args.name}", result)


if __name__ == "__main__":
    main()
