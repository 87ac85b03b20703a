"""The generator's tokenizer: BPE with CJK pre-tokens, the ID tokens, and user text that cannot inject them."""
import numpy as np
import pytest

from genrank_assets.ml.generator.model import build_model
from genrank_assets.ml.generator.tokenizer import (
    SemanticIdVocab,
    TextEncoder,
    build_tokenizer,
    load_pretrained_tokenizer,
)
from genrank_assets_tests.ml.generator.world import LEVELS, TITLES


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
