"""LightGBM settings of the pipeline's LTR ranker, judged on val only: the out-of-fold NDCG@10 (query folds, as
``ltr_ranker`` trains) over a materialised GENRANK_HOME's ranking_features (holdout + val rows), per setting of a
small grid, and once on the val rows alone (what the holdout's rows add). Test rows are never read.

    python benchmarks/ltr_params.py --home /tmp/genrank_mpd7k_holdout    # -> benchmarks/results/ltr_params_val.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CORPUS, NOT_TEST_FEATURES, warehouse_frames, write_json  # noqa: E402

from genrank_assets.ml.baselines.classical import benchmark_queries  # noqa: E402
from genrank_assets.ml.evaluation.ablation import val_ndcg_at_10  # noqa: E402
from genrank_assets.ml.ranking.ltr.features import FEATURES  # noqa: E402
from genrank_assets.ml.ranking.ltr.ranker import LTRParams  # noqa: E402
from genrank_assets.ml.ranking.ltr.tables import fit_ranker, training_rows  # noqa: E402

GRID = [dict(objective=o, num_leaves=leaves, min_data_in_leaf=m)
        for o in ("lambdarank", "rank_xendcg") for leaves in (7, 15, 31) for m in (50, 200)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, required=True, help="a GENRANK_HOME the pipeline materialised")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    features, corpus = warehouse_frames(args.home, NOT_TEST_FEATURES, CORPUS)
    _, _, truths = benchmark_queries(corpus, "val")
    rows = training_rows(features)
    val_only = rows[rows["split"] == "val"].reset_index(drop=True)
    results = []
    for i, setting in enumerate(GRID):
        for name, data in [("holdout+val", rows)] + ([("val only", val_only)] if i == 0 else []):
            t0 = time.perf_counter()
            model = fit_ranker(data, FEATURES, LTRParams(**setting, num_threads=args.threads))
            results.append({**setting, "rows": name, "val_oof_ndcg@10": round(val_ndcg_at_10(model, data, truths), 4),
                            "rounds": model.n_rounds, "s": round(time.perf_counter() - t0, 1)})
            print(results[-1], flush=True)
    write_json("ltr_params_val", {"home": str(args.home), "what": "val out-of-fold NDCG@10 per LightGBM setting; "
                                  "test not read", "grid": results})


if __name__ == "__main__":
    main()
