import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from genrank_assets.ml.generator.tiger import CodeTable  # noqa: E402
from genrank_assets.ml.generator.tokenizer import build_tokenizer  # noqa: E402
from genrank_assets_tests.ml.generator.world import LEVELS, TITLES  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def generator_tests_on_one_thread(one_torch_thread):
    """Every generator test runs on one torch thread (genrank_assets_tests/ml/conftest.py)."""


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(TITLES * 10, LEVELS, vocab_size=320, max_length=32)


@pytest.fixture(scope="module")
def code_table():
    rng = np.random.default_rng(0)
    n = 40
    codes = np.stack([rng.integers(0, k, n) for k in LEVELS], axis=1)
    codes[1] = codes[0]  # two songs share a code
    return CodeTable([f"song{i}" for i in range(n)], codes, rng.integers(1, 100, n))
