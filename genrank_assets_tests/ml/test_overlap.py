"""The side thread changes when work runs, never what it gives: same values, same errors, on or off."""
import threading

import pytest

from genrank_assets.ml.overlap import DISABLE_ENV, beside


def _thread_name(x: int) -> tuple[int, str]:
    return x * 2, threading.current_thread().name


def _fails(message: str) -> None:
    raise ValueError(message)


@pytest.mark.parametrize("disabled", ["", "1"])
def test_values_and_errors_are_the_callers(monkeypatch, disabled):
    monkeypatch.setenv(DISABLE_ENV, disabled)
    value, thread = beside(_thread_name, 21).result()
    assert value == 42
    assert (thread == threading.current_thread().name) == (disabled == "1")
    with pytest.raises(ValueError, match="planted"):
        beside(_fails, "planted").result()


def test_the_side_thread_uses_the_callers_torch_threads(monkeypatch):
    import torch

    monkeypatch.setenv(DISABLE_ENV, "")
    previous = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            assert beside(torch.get_num_threads).result() == n
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("threads", [1, 2])
def test_features_are_the_same_with_and_without_the_side_thread(monkeypatch, threads):
    import pandas as pd
    import torch

    from genrank_assets.ml.ranking.ltr.candidates import CandidateSources, PoolConfig, build_pool
    from genrank_assets.ml.ranking.ltr.features import FeatureBuilder
    from genrank_assets_tests.ml.ltr_world import (
        make_corpus,
        song_info,
        song_vectors,
        tiny_generator,
        tiny_ranker,
    )

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)  # the caller's setting, which the side thread must follow
    corpus, vectors = make_corpus(), song_vectors()
    generator = tiny_generator(corpus, vectors)
    sources = CandidateSources.fit(corpus, generator)
    builder = FeatureBuilder(sources, corpus, song_info(), vectors, tiny_ranker(generator))
    config = PoolConfig(generator_songs=12, num_beams=6, per_source=8, rank_depth=20)
    frames = {}
    for disabled in ("", "1"):
        monkeypatch.setenv(DISABLE_ENV, disabled)
        frames[disabled] = pd.concat([builder.features(build_pool(t, sources, config)) for t in ("rock", "深夜 歌")])
    torch.set_num_threads(previous)
    pd.testing.assert_frame_equal(frames[""], frames["1"])
