"""The LTR ablation on a planted feature table: rankers trained on val rows, scored once on test rows, every row
with a paired CI against the baseline; the pool oracle bounds them all."""
import numpy as np
import pandas as pd
import pytest

from genrank_assets.ml.evaluation.ablation import CEILING, ablation_markdown, ltr_ablation, result_of, val_rankings
from genrank_assets.ml.ranking.ltr.features import CROSS_ENCODER_FEATURES, FEATURES, ltr_features
from genrank_assets.ml.ranking.ltr.ranker import LTRParams
from genrank_assets.ml.ranking.ltr.tables import (
    VARIANTS,
    fit_ranker,
    training_mask,
    variant_rows,
    variant_view,
    variants,
    with_fold_rows,
    without_generator,
)


def planted(seed: int = 0, queries: int = 40, pool: int = 30):
    """Feature rows whose label follows the generator's log-probability (and a little the ridge score)."""
    rng = np.random.default_rng(seed)
    parts, truths = [], {}
    for split in ("val", "test"):
        for q in range(queries):
            qid = f"{split}{q}"
            frame = pd.DataFrame(rng.normal(size=(pool, len(FEATURES))), columns=list(FEATURES))
            frame["generator_proposed"] = (rng.random(pool) < 0.3).astype(float)
            frame["knn_proposed"] = 1.0 - frame["generator_proposed"]
            frame[["knn_cooc_proposed", "ridge_cooc_proposed"]] = 0.0
            signal = 2 * frame["gen_logp_code_eos"] + 0.5 * frame["ridge_cooc_score"] + rng.normal(size=pool)
            frame["label"] = (signal > 1.5).astype(float)
            frame.insert(0, "song_id", [f"{qid}-s{i}" for i in range(pool)])
            frame.insert(0, "playlist_id", qid)
            frame.insert(0, "split", split)
            parts.append(frame)
            truths[qid] = set(frame.loc[frame["label"] > 0, "song_id"]) | {f"{qid}-outside"}
    return pd.concat(parts, ignore_index=True), truths


def test_ablation_rows_with_intervals_against_the_baseline():
    features, truths = planted()
    params = LTRParams(num_leaves=4, min_data_in_leaf=5, max_rounds=30, early_stopping_rounds=5, folds=3)
    model = fit_ranker(features[features["split"] == "val"], FEATURES, params)
    test_truths = {q: t for q, t in truths.items() if q.startswith("test")}
    val_truths = {q: t for q, t in truths.items() if q.startswith("val")}
    # the baseline / fill ranks the pool by the ridge score only
    test = features[features["split"] == "test"]
    fills = {q: f.sort_values("ridge_cooc_score", ascending=False)["song_id"].tolist()
             for q, f in test.groupby("playlist_id")}
    baseline = result_of("ridge", fills, test_truths, catalogue=10_000)
    results, table = ltr_ablation(features, model, test_truths, fills, baseline, 10_000, 100, val_truths)
    assert table["variant"].tolist() == [*VARIANTS, CEILING] == [r.name for r in results]
    by = table.set_index("variant")
    assert by.loc["ltr", "ci_low"] > 0  # the planted signal beats ridge alone, significantly
    assert by.loc["ltr_no_generator", "ndcg@10"] < by.loc["ltr", "ndcg@10"]  # its planted feature is gone
    assert (by["ndcg@10"] <= by.loc[CEILING, "ndcg@10"] + 1e-12).all()
    assert 0 < by.loc[CEILING, "recall_ceiling"] < 1  # one true song per query lies outside the pool
    # the full ranker's out-of-fold val figure; each variant is one fit at its CV rounds, so it has none
    assert np.isfinite(by.loc["ltr", "val_ndcg@10"]) and np.isnan(by.loc["ltr_no_classical", "val_ndcg@10"])
    assert (by.loc[list(VARIANTS), "n_rounds"] == model.n_rounds).all()
    md = "\n".join(ablation_markdown(table, "ridge"))
    assert "95% CI" in md and "ltr_no_cross_encoder" in md


def test_without_generator_drops_its_candidates_and_recounts():
    features, _ = planted(queries=3)
    out = without_generator(features)
    assert (out["generator_proposed"] == 0).all() and len(out) < len(features)
    assert (out.groupby("playlist_id")["q_pool_size"].first() == out.groupby("playlist_id").size()).all()


def test_without_mention_drops_the_rows_only_mention_proposed_and_its_features():
    features, _ = planted(queries=3)
    features[["mention_proposed", "cold_neighbours_proposed"]] = 0.0
    features.loc[features.index % 5 == 0, "mention_proposed"] = 1.0  # named songs some other source also proposed
    only = features.index % 7 == 0  # ... and songs only mention proposed
    features.loc[only, ["mention_proposed", "generator_proposed", "knn_proposed"]] = (1.0, 0.0, 0.0)
    out = variant_rows("ltr_no_mention", features)
    assert len(out) == (~only).sum() and set(out["song_id"]) == set(features.loc[~only, "song_id"])
    kept = features[~only].reset_index(drop=True)
    assert (out["n_sources"] == kept["n_sources"] - kept["mention_proposed"]).all()
    assert (out.groupby("playlist_id")["q_pool_size"].first() == out.groupby("playlist_id").size()).all()
    assert not {f for f in VARIANTS["ltr"] if f.startswith(("mention_", "q_mention"))} & set(VARIANTS["ltr_no_mention"])


def test_a_masked_fit_is_the_fit_on_the_variants_own_rows():
    """fit_ranker on a view (a row mask and the recounted columns, ``variant_view``) trains on exactly the rows
    and values of the variant's own table (``variant_rows``), with the cross-validation and with given rounds;
    and the out-of-fold val rankings of a masked fit are those of the fit on the copy."""
    features, truths = planted(queries=20)
    params = LTRParams(num_leaves=4, min_data_in_leaf=5, max_rounds=20, early_stopping_rounds=5, folds=3)
    val = (features["split"] == "val").to_numpy()
    val_truths = {q: t for q, t in truths.items() if q.startswith("val")}
    for name in ("ltr", "ltr_no_generator"):
        keep, columns = variant_view(name, features)
        rows = val if keep is None else val & keep
        copy = variant_rows(name, features[val].reset_index(drop=True))
        masked = fit_ranker(features, VARIANTS[name], params, rows=rows, columns=columns)
        plain = fit_ranker(copy, VARIANTS[name], params)
        assert masked.booster.model_to_string() == plain.booster.model_to_string() and masked.cv == plain.cv
        np.testing.assert_array_equal(masked.oof_scores, plain.oof_scores)
        assert val_rankings(masked, features, val_truths, rows) == val_rankings(plain, copy, val_truths)
        given = fit_ranker(features, VARIANTS[name], params, rounds=7, rows=rows, columns=columns)
        again = fit_ranker(copy, VARIANTS[name], params, rounds=7)
        assert given.booster.model_to_string() == again.booster.model_to_string()


@pytest.mark.filterwarnings("error::FutureWarning")  # a categorical groupby without observed= warns (pandas < 3)
def test_categorical_keys_give_the_figures_of_string_keys():
    """read_batched gives split / playlist_id / song_id as Categoricals (their categories: each table's own values,
    joined by with_fold_rows): the ranker, its val rankings and the ablation come out as with plain strings."""
    features, truths = planted(queries=20)
    keys = {k: "category" for k in ("split", "playlist_id", "song_id")}
    half = len(features) // 2
    categorical = with_fold_rows(features.iloc[:half].astype(keys), [features.iloc[half:].astype(keys)])
    assert isinstance(categorical["playlist_id"].dtype, pd.CategoricalDtype)
    params = LTRParams(num_leaves=4, min_data_in_leaf=5, max_rounds=20, early_stopping_rounds=5, folds=3)
    test_truths = {q: t for q, t in truths.items() if q.startswith("test")}
    val_truths = {q: t for q, t in truths.items() if q.startswith("val")}
    baseline = result_of("none", {q: [] for q in test_truths}, test_truths, catalogue=10)
    figures = []
    for frame in (features, categorical):
        train = training_mask(frame)
        model = fit_ranker(frame, FEATURES, params, rows=train)
        _, table = ltr_ablation(frame, model, test_truths, {}, baseline, 10, 100, val_truths)
        figures.append((table.to_json(), val_rankings(model, frame, val_truths, train)))
    assert figures[0] == figures[1]


def test_a_ranker_without_the_cross_encoder_has_no_cross_encoder_row():
    """The variants follow the ranker's own features: without the cross-encoder's (features.ltr_features, the
    default) there is nothing for `ltr_no_cross_encoder` to remove, so the table leaves it out; the other variants
    drop their group from what the ranker has."""
    assert variants(FEATURES) == VARIANTS
    served = ltr_features(cross_encoder=False)
    assert not set(CROSS_ENCODER_FEATURES) & set(served) and ltr_features(cross_encoder=True) == FEATURES
    assert list(variants(served)) == [v for v in VARIANTS if v != "ltr_no_cross_encoder"]
    assert all(set(names) < set(served) for v, names in variants(served).items() if v != "ltr")
    features, truths = planted(queries=20)
    params = LTRParams(num_leaves=4, min_data_in_leaf=5, max_rounds=20, early_stopping_rounds=5, folds=3)
    model = fit_ranker(features[features["split"] == "val"], served, params)
    test_truths = {q: t for q, t in truths.items() if q.startswith("test")}
    test = features[features["split"] == "test"]
    fills = {q: f.sort_values("ridge_cooc_score", ascending=False)["song_id"].tolist()
             for q, f in test.groupby("playlist_id")}
    baseline = result_of("ridge", fills, test_truths, catalogue=10_000)
    _, table = ltr_ablation(features, model, test_truths, fills, baseline, 10_000, 100)
    assert table["variant"].tolist() == [*variants(served), CEILING]
