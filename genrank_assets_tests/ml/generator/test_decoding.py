"""Trie-constrained decoding: whatever the model does, only codes that exist come out."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LogitsProcessor, LogitsProcessorList

from genrank_assets.ml.generator.decoding import CodeTrie, TrieConstraint, TrieLogitsProcessor
from genrank_assets.ml.generator.model import build_model
from genrank_assets.ml.generator.tiger import TigerGenerator
from genrank_assets.ml.generator.tokenizer import SemanticIdVocab, TextEncoder
from genrank_assets_tests.ml.generator.world import LEVELS

codes_strategy = st.lists(
    st.tuples(*(st.integers(0, k - 1) for k in LEVELS)), min_size=1, max_size=40
).map(lambda rows: np.asarray(rows, dtype=np.int64))


@settings(max_examples=60, deadline=None)
@given(codes=codes_strategy, seed=st.integers(0, 2**16), mode=st.sampled_from(["single", "sequence"]))
def test_trie_constraint_only_allows_existing_codes(tokenizer, codes, seed, mode):
    """Random walks over whatever the constraint allows end in eos with only existing, non-repeated codes."""
    vocab = SemanticIdVocab(tokenizer)
    trie = CodeTrie(codes)
    constraint = TrieConstraint(trie, vocab, mode=mode, max_codes=5)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        sent = [vocab.pad_id]
        for _ in range(constraint.max_new_tokens()):
            allowed = constraint(0, torch.tensor(sent))
            assert allowed and len(set(allowed)) == len(allowed)
            sent.append(int(rng.choice(allowed)))
            if sent[-1] == vocab.eos_id:
                break
        assert sent[-1] == vocab.eos_id
        assert constraint(0, torch.tensor(sent)) == [vocab.pad_id]  # finished beams get pad
        parsed = vocab.parse(sent[1:])
        assert parsed.n_malformed == 0 and all(c in trie for c in parsed.codes)
        assert len(parsed.codes) == len(set(parsed.codes))
        assert len(parsed.codes) == 1 if mode == "single" else 1 <= len(parsed.codes) <= 5


class _DiscourageEos(LogitsProcessor):
    """Pushes beams to keep emitting codes so that repeat blocking is exercised."""

    def __init__(self, eos_id):
        self.eos_id = eos_id

    def __call__(self, input_ids, scores):
        scores[:, self.eos_id] -= 20.0
        return scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_constrained_generation_with_random_model_is_always_valid(tokenizer, code_table, seed):
    model = build_model(tokenizer, preset="tiny", seed=seed).eval()
    vocab = SemanticIdVocab(tokenizer)
    small_trie = CodeTrie(code_table.codes[:6])  # 5 distinct codes: blocking runs out before max_codes
    constraint = TrieConstraint(small_trie, vocab, mode="sequence", max_codes=8)
    inputs = TextEncoder(tokenizer).encode_batch(["深夜 emo", "gym running"])
    out = model.generate(
        **inputs, num_beams=8, num_return_sequences=8, max_new_tokens=constraint.max_new_tokens(),
        prefix_allowed_tokens_fn=constraint, logits_processor=LogitsProcessorList([_DiscourageEos(vocab.eos_id)]),
    )  # fmt: skip
    longest = 0
    for seq in out[:, 1:].tolist():
        parsed = vocab.parse(seq)
        assert parsed.finished and parsed.n_malformed == 0
        assert all(c in small_trie for c in parsed.codes)
        assert len(parsed.codes) == len(set(parsed.codes))  # no repeated code
        longest = max(longest, len(parsed.codes))
    assert longest == len(small_trie)  # every code emitted once, then blocking forced eos
    # The generator's vectorised processor applies exactly the same rules.
    fast = model.generate(
        **inputs, num_beams=8, num_return_sequences=8, max_new_tokens=constraint.max_new_tokens(),
        logits_processor=LogitsProcessorList([_DiscourageEos(vocab.eos_id), TrieLogitsProcessor(constraint)]),
    )  # fmt: skip
    assert torch.equal(fast, out)

    for mode in ("single", "sequence"):
        generator = TigerGenerator(model, tokenizer, code_table, target_mode=mode, max_codes=4, num_beams=16)
        for codes in generator.generate_codes_batch(["深夜emo伤感情歌", "party 派对 <id_l1_2>"]):
            assert codes and all(code in generator.trie for code, _ in codes)
            assert len({c for c, _ in codes}) == len(codes)
            scores = [s for _, s in codes]
            assert scores == sorted(scores, reverse=True)
        assert generator.codes_generated > 0 and generator.invalid_code_rate == 0.0
        # The counter does count: unconstrained, a random model emits non-codes.
        generator.generate_codes("深夜emo伤感情歌", num_beams=8, constrained=False)
        assert generator.invalid_codes > 0


def test_trie_mass_sums_weights_under_each_prefix():
    codes = np.array([[0, 1, 0], [0, 1, 0], [0, 2, 1], [3, 0, 0]])
    trie = CodeTrie(codes, weights=np.array([5.0, 1.0, 2.0, 10.0]))
    assert trie.mass(()) == 18 and trie.mass((0,)) == 8 and trie.mass((0, 1, 0)) == 6 and trie.mass((3,)) == 10
    assert trie.mass((7,)) == 0 and CodeTrie(codes).mass((0,)) == 3  # default: one per row (song)
    assert trie.subtree_size((0,)) == 2  # distinct codes, unchanged by weights
    with pytest.raises(ValueError, match="weights"):
        CodeTrie(codes, weights=np.array([1.0, -1.0, 1.0, 1.0]))


def test_prior_adds_the_gain_in_log_mass_and_telescopes(tokenizer):
    """Each step gains w (log(1 + m(prefix + k)) - log(1 + m(prefix))); over a code they sum to w log(1 + m(code))
    - w log(1 + m(root)), and the mask is unchanged."""
    vocab = SemanticIdVocab(tokenizer)
    codes = np.array([[0, 1, 0], [0, 2, 1], [3, 0, 0]])
    trie = CodeTrie(codes, weights=np.array([1.0, 20.0, 3.0]))
    constraint = TrieConstraint(trie, vocab, mode="single")
    plain, prior = TrieLogitsProcessor(constraint), TrieLogitsProcessor(constraint, prior_weight=0.5)
    code = (0, 2, 1)
    sent, total = [vocab.pad_id], 0.0
    for level in range(3):
        scores = torch.zeros(1, len(tokenizer))
        a, b = plain(torch.tensor([sent]), scores.clone()), prior(torch.tensor([sent]), scores.clone())
        assert torch.equal(torch.isinf(a), torch.isinf(b))
        tid = int(vocab.level_token_ids[level][code[level]])
        total += float(b[0, tid] - a[0, tid])
        sent.append(tid)
    expected = 0.5 * (np.log1p(trie.mass(code)) - np.log1p(trie.mass(())))
    assert total == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="prior_weight"):
        TrieLogitsProcessor(constraint, prior_weight=-1.0)


def test_popularity_prior_changes_beam_order_on_a_planted_catalogue(tokenizer):
    """An untrained model ranks codes by noise; a strong prior puts the code of the most popular songs first and
    orders the rest by their popularity mass."""
    from genrank_assets.ml.generator.tiger import CodeTable

    rng = np.random.default_rng(1)
    codes = np.unique(np.stack([rng.integers(0, k, 30) for k in LEVELS], axis=1), axis=0)
    popularity = np.ones(len(codes))
    planted = [7, 3, 12]  # most popular first
    popularity[planted] = [10_000.0, 1_000.0, 100.0]
    table = CodeTable([f"s{i}" for i in range(len(codes))], codes, popularity)
    model = build_model(tokenizer, preset="tiny", seed=0)
    generator = TigerGenerator(model, tokenizer, table, num_beams=len(codes), prior_weight=0.0)
    plain = [c for c, _ in generator.generate_codes("gym running bgm")]
    strong = [c for c, _ in generator.generate_codes("gym running bgm", prior_weight=20.0)]
    want = [tuple(int(v) for v in codes[i]) for i in planted]
    assert strong[:3] == want and plain[:3] != want
    assert sorted(plain) == sorted(strong)  # every code still reached (enough beams), only the order moved
    with_prior = TigerGenerator(model, tokenizer, table, num_beams=len(codes), prior_weight=20.0)
    assert [c for c, _ in with_prior.generate_codes("gym running bgm")] == strong  # the generator's own setting
    songs_mass = TigerGenerator(model, tokenizer, table, num_beams=len(codes), prior_mass="songs")
    assert songs_mass.trie.mass(()) == len(codes) and generator.trie.mass(()) == popularity.sum()
    with pytest.raises(ValueError, match="prior_mass"):
        TigerGenerator(model, tokenizer, table, prior_mass="plays")
