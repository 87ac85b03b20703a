"""Shared test data of the ranker tests: themes, songs whose vectors cluster by theme, a word-level tokenizer."""

from genrank_assets.ml.ranking.cross_encoder.model import CrossEncoderRanker

THEMES = ["rock", "jazz", "metal", "pop", "blues", "folk", "salsa", "opera"]
FILLERS = ["best", "night", "mix", "songs", "my", "the", "vibes", "playlist", "favorite", "new"]
SONGS_PER_THEME = 16
SONG_DIM = 16


def make_tokenizer(texts):
    """A word-level tokenizer over `texts`: pad=0, eos=1, unk=2, wrapped for transformers."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"]))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=128
    )
    assert (fast.pad_token_id, fast.eos_token_id, fast.unk_token_id) == (0, 1, 2)
    return fast


def tiny_ranker(world, **kwargs):
    return CrossEncoderRanker.from_config(world["tokenizer"], "tiny", SONG_DIM, seed=1, **kwargs).eval()
