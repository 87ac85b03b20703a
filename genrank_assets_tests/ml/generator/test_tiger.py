"""The TIGER generator: codes -> candidate songs, and save/load."""
import itertools

import numpy as np
import pytest
import torch

from genrank_assets.ml.generator.model import build_model
from genrank_assets.ml.generator.tiger import TigerGenerator, load_tiger, save_tiger
from genrank_assets.ml.generator.tokenizer import TextEncoder


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
