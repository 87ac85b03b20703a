"""TIGER generator: tokenizer, targets, trie-constrained decoding, generator, save/load, training loop."""
import itertools
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LogitsProcessor, LogitsProcessorList

from genrank_assets.ml.generator.tiger import (
    CodeTable,
    CodeTrie,
    SemanticIdVocab,
    TextEncoder,
    TigerDataset,
    TigerGenerator,
    TrieConstraint,
    TrieLogitsProcessor,
    build_model,
    build_tokenizer,
    load_pretrained_tokenizer,
    load_tiger,
    make_training_examples,
    save_tiger,
)
from genrank_assets.ml.generator.training import evaluate_loss, train_tiger

LEVELS = [8, 8, 4]
TITLES = [
    "深夜伤感情歌", "gym running bgm", "适合深夜听的抒情歌曲", "emo 伤感 英文歌", "workout music 健身",
    "华语 流行 经典", "周末 咖啡馆 jazz", "study focus lofi", "古风 国风 中国风", "party dance 派对",
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # Two intra-op threads on a shared 2-core machine run ~10x slower than one (spin-waiting threads).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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


def playlists(code_table, n_playlists=20, seed=0):
    """Titles and song lists where each title owns a fixed group of songs (learnable)."""
    rng = np.random.default_rng(seed)
    texts, songs = [], []
    for p in range(n_playlists):
        group = TITLES[p % len(TITLES)]
        base = (p % len(TITLES)) * 4
        texts.append(f"{group} {p}")
        songs.append([code_table.song_ids[(base + int(j)) % len(code_table)] for j in rng.integers(0, 6, 5)])
    return texts, songs


# ---------------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------------


def test_tokenizer_specials_cjk_and_english(tokenizer):
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert tokenizer.model_max_length == 32
    ids = TextEncoder(tokenizer).encode_ids(["深夜emo伤感情歌", "龘 never-seen ЖЖ text"])
    for seq in ids:
        assert seq[-1] == tokenizer.eos_token_id and seq.count(tokenizer.eos_token_id) == 1
        assert tokenizer.unk_token_id not in seq  # byte-level BPE: no unknown tokens at all
    pieces = [tokenizer.decode([t]) for t in ids[0][:-1]]
    assert "".join(pieces) == "深夜emo伤感情歌"
    # CJK characters are separate pre-tokens: no piece spans two of them.
    assert all(sum("\u4e00" <= ch <= "\u9fff" for ch in piece) <= 1 for piece in pieces)
    assert "emo" in "".join(p for p in pieces if p.isascii())
    # Normalisation: NFKC + lowercase.
    enc = TextEncoder(tokenizer)
    assert enc.encode_ids(["ＧＹＭ Running"]) == enc.encode_ids(["gym running"])
    assert len(enc.encode_ids(["深夜 " * 100])[0]) == enc.max_length


def test_id_tokens_round_trip(tokenizer):
    vocab = SemanticIdVocab(tokenizer)
    assert vocab.levels == LEVELS
    all_ids = np.concatenate(vocab.level_token_ids)
    assert len(set(all_ids.tolist())) == sum(LEVELS) and all_ids.min() >= 3
    code = (5, 0, 3)
    text = (vocab.code_tokens_text(code) + " " + vocab.code_tokens_text((1, 2, 0))).replace(" ", "")
    ids = tokenizer(text)["input_ids"]  # targets are not user text: ID tokens are matched here
    assert ids == vocab.code_token_ids(code) + vocab.code_token_ids((1, 2, 0)) + [vocab.eos_id]
    assert tokenizer.decode(ids) == text + "</s>"
    # transformers 5 drops added special tokens when skipping specials: parse ids, never decoded text.
    assert "<id_" not in tokenizer.decode(ids, skip_special_tokens=True)
    parsed = vocab.parse(ids)
    assert parsed.codes == [code, (1, 2, 0)] and parsed.finished and parsed.n_malformed == 0


def test_user_text_cannot_inject_reserved_tokens(tokenizer):
    vocab = SemanticIdVocab(tokenizer)
    raw = "love <id_l1_3><id_l2_0> songs </s> <sep> <pad> more"
    assert set(tokenizer(raw)["input_ids"]) & set(vocab.id_to_level_code)  # the danger is real
    encoder = TextEncoder(tokenizer)
    ids = encoder.encode_ids([raw])[0]
    reserved = set(tokenizer.get_added_vocab().values())
    assert ids[-1] == vocab.eos_id
    assert not (set(ids[:-1]) & reserved)
    assert encoder.clean(raw) == "love < id_l1_3>< id_l2_0> songs < /s> < sep> < pad> more"
    assert encoder.clean("plain 深夜 text") == "plain 深夜 text"


def test_tokenizer_save_load_and_pretrained_base(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tok")
    reloaded = load_pretrained_tokenizer(str(tmp_path / "tok"), LEVELS, max_length=32)
    assert len(reloaded) == len(tokenizer)  # the ID tokens are not added twice
    assert reloaded("深夜emo <id_l1_3>")["input_ids"] == tokenizer("深夜emo <id_l1_3>")["input_ids"]
    with pytest.raises(ValueError, match="levels"):
        load_pretrained_tokenizer(str(tmp_path / "tok"), [8, 8, 8])
    # A pretrained model (saved locally) is resized to a tokenizer with more ID tokens.
    build_model(tokenizer, preset="tiny", seed=0).save_pretrained(tmp_path / "base")
    bigger = build_tokenizer(TITLES * 10, LEVELS + [3], vocab_size=320)
    model = build_model(bigger, base_model=str(tmp_path / "base"))
    assert model.get_input_embeddings().weight.shape[0] == len(bigger)
    assert model.config.decoder_start_token_id == bigger.pad_token_id == 0


def test_build_model_presets(tokenizer):
    model = build_model(tokenizer, preset="tiny", seed=1)
    n = sum(p.numel() for p in model.parameters())
    assert 1.0e6 < n < 2.0e6
    assert model.config.decoder_start_token_id == 0 and model.config.eos_token_id == 1
    again = build_model(tokenizer, preset="tiny", seed=1)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    with pytest.raises(ValueError, match="preset"):
        build_model(tokenizer, preset="huge")


# ---------------------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------------------


def test_training_examples_both_modes(tokenizer, code_table):
    texts, songs = playlists(code_table)
    texts, songs = texts + ["  ", "unknown songs"], songs + [songs[0], ["nope", "nada"]]
    vocab = SemanticIdVocab(tokenizer)

    seq = make_training_examples(texts, songs, code_table, tokenizer, mode="sequence", max_codes=3)
    assert len(seq) == 20  # blank title and playlist without coded songs dropped
    first_codes = list(dict.fromkeys(tuple(code_table.codes[code_table.row_of(s)]) for s in songs[0]))
    expected = [t for c in first_codes[:3] for t in vocab.code_token_ids(c)] + [vocab.eos_id]
    assert seq[0]["labels"] == expected

    single = make_training_examples(texts, songs, code_table, tokenizer, mode="single", samples_per_playlist=2, seed=3)
    assert len(single) == 40
    def draw(ds):
        return [tuple(ds[i]["labels"]) for i in range(len(ds))]

    single.set_epoch(0)
    epoch0 = draw(single)
    again = make_training_examples(texts, songs, code_table, tokenizer, mode="single", samples_per_playlist=2, seed=3)
    assert draw(again) == epoch0  # deterministic given the seed
    single.set_epoch(1)
    assert draw(single) != epoch0  # a new random code per playlist each epoch
    playlist_codes = {tuple(vocab.code_token_ids(c)) for c in first_codes}
    assert tuple(epoch0[0][:-1]) in playlist_codes and epoch0[0][-1] == vocab.eos_id
    if len(first_codes) > 1:
        assert epoch0[0] != epoch0[1]  # the two samples of a playlist draw different codes
    with pytest.raises(ValueError, match="mode"):
        TigerDataset(["x"], [code_table.codes[:1]], tokenizer, mode="pairs")


# ---------------------------------------------------------------------------------------------------------
# Trie and constrained decoding
# ---------------------------------------------------------------------------------------------------------


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


def test_generate_candidates(tokenizer, code_table):
    model = build_model(tokenizer, preset="tiny", seed=0)
    generator = TigerGenerator(model, tokenizer, code_table, target_mode="single", num_beams=20)
    cands = generator.generate_candidates("适合深夜听的抒情歌曲", n=10)
    assert len(cands) == 10 and len(set(cands)) == 10 and cands.shortfall == 0
    assert set(cands) <= set(code_table.song_ids)
    # Codes in order, the songs of a code most popular first.
    rows = [code_table.row_of(s) for s in cands]
    for a, b in itertools.pairwise(rows):
        if tuple(code_table.codes[a]) == tuple(code_table.codes[b]):
            assert code_table.popularity[a] >= code_table.popularity[b]
    first_code = cands.codes[0][0]
    assert cands[0] == code_table.song_ids[code_table.songs_by_code[first_code][0]]

    many = generator.generate_candidates("适合深夜听的抒情歌曲", n=1000, num_beams=8)
    assert len(many) == len(set(many)) < 1000 and many.shortfall == 1000 - len(many)  # reported, not padded
    batch = generator.generate_candidates_batch(["适合深夜听的抒情歌曲", "gym"], n=10, batch_size=1)
    assert list(batch[0]) == list(cands)
    for bad in ["", "   \n"]:
        with pytest.raises(ValueError, match="text"):
            generator.generate_candidates(bad)


def test_save_load_restores_generator(tokenizer, code_table, tmp_path):
    model = build_model(tokenizer, preset="tiny", seed=4)
    generator = TigerGenerator(model, tokenizer, code_table, target_mode="sequence", max_codes=3, num_beams=6)
    save_tiger(generator, tmp_path / "tiger")
    loaded = load_tiger(tmp_path / "tiger", device="cpu")
    assert loaded.config == generator.config
    assert loaded.code_table.song_ids == code_table.song_ids
    assert np.array_equal(loaded.code_table.codes, code_table.codes)
    assert np.array_equal(loaded.code_table.popularity, code_table.popularity)
    inputs = TextEncoder(tokenizer).encode_batch(["深夜emo伤感情歌", "gym"])
    labels = torch.tensor([[5, 20, 40, 1], [6, 21, 41, 1]])
    with torch.no_grad():
        before = generator.model(**inputs, labels=labels).logits
        after = loaded.model(**inputs, labels=labels).logits
    assert torch.equal(before, after)
    assert loaded.generate_codes("深夜emo") == generator.generate_codes("深夜emo")
    with pytest.raises(ValueError, match="tiger_config"):
        load_tiger(tmp_path)


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------


def test_tiny_model_overfits_one_batch(tokenizer, code_table):
    texts, songs = playlists(code_table, n_playlists=8)
    batch = make_training_examples(texts, songs, code_table, tokenizer, mode="sequence", max_codes=3)
    model = build_model(tokenizer, preset="tiny", seed=0, dropout=0.0)
    lines = []
    result = train_tiger(
        model, tokenizer, batch, None, epochs=40, batch_size=8, lr=3e-3, warmup_steps=0, log_every_steps=10,
        log_fn=lines.append, seed=0,
    )  # fmt: skip
    losses = [h["train_loss"] for h in result.history]
    assert result.steps == 40 and result.stop_reason == "epochs"
    assert losses[-1] < 0.3 * losses[0]
    assert any("samples/s" in line for line in lines) and result.samples_per_second > 0


def _run(tokenizer, train, val, **kwargs):
    model = build_model(tokenizer, preset="tiny", seed=0)
    result = train_tiger(
        model, tokenizer, train, val, epochs=3, batch_size=4, lr=2e-3, warmup_ratio=0.2, seed=7,
        early_stopping_patience=None, **kwargs,
    )  # fmt: skip
    return model, result


def test_resume_from_checkpoint_matches_uninterrupted_run(tokenizer, code_table, tmp_path):
    texts, songs = playlists(code_table, n_playlists=18)
    train = make_training_examples(texts, songs, code_table, tokenizer, mode="single", seed=1)
    val = make_training_examples(*playlists(code_table, 6, seed=9), code_table, tokenizer, mode="single", seed=2)

    full_model, full = _run(tokenizer, train, val)
    assert full.steps == 15 and len(full.history) == 3 and full.resumed_from_step is None
    # The best-val-loss weights are the ones kept.
    assert full.best_val_loss == min(h["val_loss"] for h in full.history)
    assert evaluate_loss(full_model, val, tokenizer.pad_token_id, 8) == pytest.approx(full.best_val_loss, abs=1e-6)

    ckpt = tmp_path / "ckpt"
    _, killed = _run(tokenizer, train, val, checkpoint_dir=ckpt, checkpoint_every_steps=3, max_steps=7)
    assert killed.stop_reason == "max_steps" and killed.steps == 7 and (ckpt / "checkpoint.pt").exists()
    resumed_model, resumed = _run(tokenizer, train, val, checkpoint_dir=ckpt, checkpoint_every_steps=3)
    assert resumed.resumed_from_step == 7 and resumed.steps == 15 and resumed.samples == 4 + 4 + 2 + 18
    for a, b in zip(full.history, resumed.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-6)
    assert resumed.best_epoch == full.best_epoch
    for (name, a), (_, b) in zip(full_model.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.equal(a, b), name

    # Another configuration does not pick up the stale checkpoint.
    _, other = _run(tokenizer, train, val, checkpoint_dir=ckpt, max_steps=2, weight_decay=0.5)
    assert other.resumed_from_step is None and other.steps == 2


def test_train_arguments_are_checked(tokenizer, code_table):
    texts, songs = playlists(code_table, n_playlists=4)
    train = make_training_examples(texts, songs, code_table, tokenizer, mode="single")
    model = build_model(tokenizer, preset="tiny")
    with pytest.raises(ValueError, match="precision"):
        train_tiger(model, tokenizer, train, None, epochs=1, batch_size=2, precision="fp8")
    with pytest.raises(ValueError, match="train_examples"):
        train_tiger(model, tokenizer, [], None, epochs=1, batch_size=2)
    # Mixed precision is CUDA-only: on CPU it falls back to fp32.
    result = train_tiger(model, tokenizer, train, None, epochs=1, batch_size=2, precision="bf16", device="cpu")
    assert result.precision == "fp32" and result.steps == 2


def test_gradient_checkpointing_gives_the_same_training(tokenizer, code_table):
    texts, songs = playlists(code_table, n_playlists=8)
    train = make_training_examples(texts, songs, code_table, tokenizer, mode="sequence", max_codes=3)
    losses = []
    for checkpointing in (False, True):
        model = build_model(tokenizer, preset="tiny", seed=0)
        result = train_tiger(model, tokenizer, train, None, epochs=3, batch_size=4, gradient_checkpointing=checkpointing)
        losses.append([h["train_loss"] for h in result.history])
        assert model.config.use_cache  # restored for generation
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)
