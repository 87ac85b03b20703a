"""benchmarks/named_singer.py's figures on the planted learning-to-rank world (no build, no MLflow): the
most played singers, the shares of the top 10 per template for both systems, the system without the mention
source, and the paired comparison on ordinary titles."""
import pytest

from benchmarks.named_singer import (
    TEMPLATES,
    TOP_COOCCURRING,
    K,
    measure,
    most_played_singers,
    singer_shares,
    without_mention,
)
from genrank_assets.ml.ranking.ltr.features import MENTION_FEATURES
from genrank_assets_tests.ml.conftest import one_torch_thread  # noqa: F401 (a fixture of the fixtures below)
from genrank_assets_tests.ml.serving.test_ltr_recommender import served, trained  # noqa: F401 (fixtures)


def test_measure_reports_both_systems_per_template_and_on_ordinary_titles(trained, served):  # noqa: F811
    corpus, features = trained["corpus"], trained["features"]
    # every planted singer has 10 train playlists of 5 of its songs: ties go to the key
    named = most_played_singers(corpus, served.sources.mentions, served.song_info, 3)
    assert named == [("singer 0", "singer 0"), ("singer 1", "singer 1"), ("singer 2", "singer 2")]
    payload = measure(served, corpus, features, singers=3, test_queries=5)
    assert payload["singers"] == ["singer 0", "singer 1", "singer 2"] and payload["k"] == K
    for system in ("mention", "no_mention"):
        for template in TEMPLATES:
            row = payload["shares"][system][template]
            assert 0 <= row["own"] <= row["own_or_cooccurring"] <= 1
            assert [q["query"] for q in row["queries"]] == [template.format(singer=s) for s in payload["singers"]]
            assert row["singers_with_none_own"] == sum(q["own"] == 0 for q in row["queries"])
    ordinary = payload["ordinary_titles"]
    assert ordinary["queries"] == 5 and 0 <= ordinary["mention.ndcg@10"] <= 1
    assert ordinary["not_lower"] == (ordinary["mention_minus_no_mention"]["ci_high"] >= 0)
    assert set(payload["targets_met"]) == {"share_own_or_cooccurring", "ordinary_ndcg_not_lower"}


def test_shares_count_the_named_singers_songs_in_the_top_ten(served):  # noqa: F811
    shares = singer_shares(served, [("singer 4", "singer 4")])
    mentions = served.sources.mentions
    for template in TEMPLATES:
        top = served.recommend(template.format(singer="singer 4"), K)
        own = sum(mentions.singer_of(r.song_id) == "singer 4" for r in top) / K
        assert shares[template]["own"] == pytest.approx(own)
    # the planted singers never share a playlist: no co-occurring singer counts beside the named one
    assert mentions.cooccurring("singer 4")[:TOP_COOCCURRING] == []
    assert shares[TEMPLATES[0]]["own_or_cooccurring"] == shares[TEMPLATES[0]]["own"]


def test_the_system_without_mentions_neither_proposes_nor_reads_them(trained, served):  # noqa: F811
    baseline = without_mention(served, trained["features"])
    assert "mention" not in baseline.pool_config.sources and "mention" in served.pool_config.sources
    assert not set(MENTION_FEATURES) & set(baseline.ltr.feature_names)
    ranked = baseline.rank("songs like singer 2", K)
    assert not ranked.pool.proposed["mention"].any()
    assert baseline.sources is served.sources  # the same sources and features otherwise
