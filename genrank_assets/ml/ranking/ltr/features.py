"""Stage `ranking`, second step of the learning-to-rank stage: the features of every (query, candidate).

:class:`FeatureBuilder` turns one :class:`~.candidates.QueryPool` into a float table, one row per candidate, by
one plain function (:meth:`FeatureBuilder.features`) that training and serving both call; a batch
(:meth:`FeatureBuilder.features_many`) is a loop over it, so a query's features never depend on the queries
built with it. Missing evidence is NaN (LightGBM's missing value), never a 0 that would mix with real zeros.

Features (``FEATURE_GROUPS`` groups them for the ablations):

* sources — each source's rank (ABSENT when it did not rank the song) and score, whether it proposed the song,
  the number of sources that did; the classical bases before the co-occurrence walk (title-kNN, kernel ridge),
  and the ridge score relative to the query's best;
* generator, for EVERY candidate that has a code, not only those in the beams: teacher-forced log P(code | text)
  of the song's full code (then </s>) and of its level prefixes, its gap to the pool's best, the beam rank of the
  code, the number of beams whose code shares the song's level-1 / level-1+2 prefix, the song's position within
  its code (by popularity) and the code's size, both over the table's mean code size;
* cross-encoder — its logit (songs with a vector) and the gap to the pool's best logit (NaN without a
  cross-encoder: the ranker leaves them out unless ``LTR_CROSS_ENCODER``, ``ltr_features``);
* popularity — log((1 + train playlists holding the song) / train playlists);
* text match — query vs song name and singer: share of query tokens found, character-bigram Jaccard;
* same title — how many of the song's train playlists have the query's normalised title (over all train
  playlists), and their share of the song's playlists;
* word2vec — cosine of the song to the centroid of the top classical (ridge + co-occurrence) candidates;
* singer — how many OTHER songs of the candidate's singer are in ridge + co-occurrence's top 100, and the share
  of that top 100's ridge + co-occurrence score mass they hold (playlists are artist-coherent);
* query — length, tokens, best train-title similarity, the share of train playlists with the same normalised
  title, pool size;
* cold — whether the song's vector (and so its code) was predicted from its metadata (``cold_start_vector``; NaN
  without a vector), whether no train playlist of the sources holds it (``no_train_history``), and the
  ``cold_neighbours`` source's rank, cosine and proposal (the sources' columns above). The ranker
  learns where such songs belong from the LTR holdout, whose own songs are cold for the upstream models;
* mention — what the query names (``mentions.CatalogueMentions``, ``QueryPool.mentions``): the ``mention``
  source's rank, score and proposal; the match score of the candidate's singer when the query names it
  (``mention_singer_match``, 0 when it does not), the strength of its singer's co-occurrence with a named one
  (``mention_cooc_singer``), the match score of the candidate itself when the query names the song
  (``mention_song_match``); the number of singers and songs the query names (``q_mentions``) and the share of its
  characters they cover (``q_mention_coverage``: 1 for a bare name, less for "songs like <singer>"). NaN when the
  sources have no ``CatalogueMentions``.

Counts are scale-free (shares of the train playlists, sizes over the code table's mean): the same LightGBM model
meets tables of another size — the LTR holdout's sources are fitted on fewer playlists than the served ones, and a
refresh grows the corpus and the code table without retraining the ranker (on the 10% mpd7k replay three batches
grew the mean code size of a pool's songs 3.6x and the same-title counts 4x).

Relative features (gaps, singer votes) are taken against the REFERENCE set, ridge + co-occurrence's top 100 (the
whole pool when that source ranked fewer in it): it lies in every pool with ``per_source`` >= 100, so a row's
features do not change when other sources add or remove songs (the ablations, a smaller pool).

Everything is read from the TRAIN playlists (the sources' catalogue) and models fitted on them; no query's own
playlist can reach its features unless it is a train playlist (``candidates.check_not_in_training``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from genrank_assets.ml.baselines.classical import normalize_title, train_playlists
from genrank_assets.ml.overlap import beside
from genrank_assets.ml.ranking.cross_encoder.model import song_text
from genrank_assets.ml.ranking.ltr.candidates import (
    ABSENT,
    SOURCES,
    CandidateSources,
    PoolConfig,
    QueryPool,
    unit_centroid,
)
from genrank_assets.ml.ranking.ltr.mentions import CJK as _CJK

GENERATOR_FEATURES = ("generator_rank", "generator_score", "generator_proposed", "gen_logp_l1", "gen_logp_l12",
                      "gen_logp_code", "gen_logp_code_eos", "gen_logp_gap", "gen_votes_l1", "gen_votes_l12",
                      "gen_song_in_code_rel", "gen_code_size_rel")
CROSS_ENCODER_FEATURES = ("ce_logit", "ce_gap")
CLASSICAL_FEATURES = ("knn_rank", "knn_score", "knn_proposed", "knn_cooc_rank", "knn_cooc_score", "knn_cooc_proposed",
                      "ridge_cooc_rank", "ridge_cooc_score", "ridge_cooc_proposed", "knn_base", "ridge_base",
                      "ridge_base_rel", "same_title_count_share", "same_title_share", "w2v_centroid_cos",
                      "singer_votes_top100", "singer_score_share")
OTHER_FEATURES = ("n_sources", "log_popularity_share", "name_token_share", "singer_token_share", "name_bigram_jaccard",
                  "singer_bigram_jaccard", "q_chars", "q_tokens", "q_best_title_sim", "q_same_title_share",
                  "q_pool_size", "cold_start_vector", "no_train_history", "cold_neighbours_rank",
                  "cold_neighbours_score", "cold_neighbours_proposed")
MENTION_FEATURES = ("mention_rank", "mention_score", "mention_proposed", "mention_singer_match", "mention_cooc_singer",
                    "mention_song_match", "q_mentions", "q_mention_coverage")
FEATURE_GROUPS = {"generator": GENERATOR_FEATURES, "cross_encoder": CROSS_ENCODER_FEATURES,
                  "classical": CLASSICAL_FEATURES, "other": OTHER_FEATURES, "mention": MENTION_FEATURES}
FEATURES = GENERATOR_FEATURES + CROSS_ENCODER_FEATURES + CLASSICAL_FEATURES + OTHER_FEATURES + MENTION_FEATURES

# Whether the LTR ranker learns from the cross-encoder's features. Off: on mpd7k's cross-fitted ranker removing them
# moved test NDCG@10 by +0.0024 [-0.0021, +0.0067] (the 2026-12-08 run's ablation,
# benchmarks/results/experiments/end_to_end_ltr_with_cross_encoder.json) and by +0.0014 in
# `benchmarks/ltr.py --crossfit 2` (docs/findings.md): no measurable gain, while the cross-encoder's logits took
# ~45% of a query's pool + features time and every fold trained its own cross-encoder (~370 CPU s of the run). The
# columns stay in the table (NaN when off); the served cross-encoder still ranks the generate-and-rank systems.
LTR_CROSS_ENCODER = False


def ltr_features(cross_encoder: bool = LTR_CROSS_ENCODER) -> tuple[str, ...]:
    """The features the LTR ranker learns from: every one of ``FEATURES``, less the cross-encoder's when off."""
    return FEATURES if cross_encoder else tuple(f for f in FEATURES if f not in CROSS_ENCODER_FEATURES)


def uses_cross_encoder(feature_names) -> bool:
    """Whether a ranker over ``feature_names`` needs the cross-encoder's logits (serving skips them otherwise)."""
    return bool(set(feature_names) & set(CROSS_ENCODER_FEATURES))


def text_tokens(text: str) -> set[str]:
    """Words of the normalised text (``normalize_title``); CJK characters each count as one token."""
    tokens: set[str] = set()
    for word in normalize_title(text).split():
        if _CJK.search(word):
            tokens.update(_CJK.findall(word))
            tokens.update(t for t in _CJK.split(word) if t)
        else:
            tokens.add(word)
    return tokens


def char_bigrams(text: str) -> set[str]:
    """Character bigrams of the normalised text without spaces (the text itself when one character long)."""
    chars = normalize_title(text).replace(" ", "")
    if len(chars) < 2:
        return {chars} if chars else set()
    return {chars[i:i + 2] for i in range(len(chars) - 1)}


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def _share(query: set[str], other: set[str]) -> float:
    return len(query & other) / len(query) if query else 0.0


class FeatureBuilder:
    """Features of a query's pool from the sources, the corpus' train titles, song names and the neural models.

    ``song_info``: song id -> (name, singer). ``song_vectors`` (word2vec) and ``ranker`` (the cross-encoder) are
    optional; without them their features are NaN. The generator is the sources' (``sources.generator``).
    """

    def __init__(self, sources: CandidateSources, corpus: pd.DataFrame, song_info: Mapping[str, tuple[str, str]],
                 song_vectors=None, ranker=None, *, centroid_top: int = PoolConfig.centroid_top, cold_songs: frozenset[str] = frozenset()):
        if centroid_top < 1:
            raise ValueError(f"centroid_top must be >= 1, got {centroid_top}")
        self.sources = sources
        self.catalogue = sources.catalogue
        train = train_playlists(corpus)
        if len(train) != self.catalogue.playlists.shape[0]:
            raise ValueError("corpus: its train playlists are not the ones the sources were fitted on")
        self.title_rows: dict[str, list[int]] = {}
        for row, title in enumerate(train["title"].astype(str)):
            self.title_rows.setdefault(normalize_title(title), []).append(row)
        self.song_info = song_info
        self.song_vectors = song_vectors
        self.ranker = ranker
        self.centroid_top = int(centroid_top)
        self.cold_songs = frozenset(map(str, cold_songs))  # songs whose vector is a cold-start prediction
        self._unit = song_vectors.normalized().astype(np.float32) if song_vectors is not None else None
        self.n_train = int(self.catalogue.playlists.shape[0])
        # log of the share of train playlists holding the song (1 + count, so a song outside them is finite)
        self._log_popularity = np.log1p(self.catalogue.counts.astype(np.float64)) - math.log(self.n_train)
        self._song_text: dict[str, tuple[set, set, set, set]] = {}
        self._clean = None
        if ranker is not None:
            from genrank_assets.ml.generator.tokenizer import TextEncoder

            self._clean = TextEncoder(ranker.tokenizer).clean

    # -- public -------------------------------------------------------------------------------------------
    def features(self, pool: QueryPool) -> pd.DataFrame:
        """One row per candidate of ``pool`` (in pool order), the columns of ``FEATURES`` (float64)."""
        n = len(pool)
        rows = pool.catalogue_index
        out: dict[str, np.ndarray] = {}
        for source in SOURCES:
            out[f"{source}_rank"] = pool.ranks[source]
            out[f"{source}_score"] = pool.scores[source]
            out[f"{source}_proposed"] = pool.proposed[source].astype(np.float64)
        out["n_sources"] = pool.n_sources.astype(np.float64)
        out["knn_base"] = pool.base_scores["knn"]
        out["ridge_base"] = pool.base_scores["ridge"]
        out["ridge_base_rel"] = _relative(pool.base_scores["ridge"])
        reference = _reference(pool)
        # the generator's log-probabilities in the side thread beside the cross-encoder (ml/overlap.py)
        generator_part = beside(self._generator_features, pool, reference)
        out.update(self._cross_encoder_features(pool, reference))
        out.update(generator_part.result())
        out["log_popularity_share"] = np.where(rows >= 0, self._log_popularity[np.maximum(rows, 0)],
                                               -math.log(self.n_train))
        out.update(self._text_features(pool))
        out.update(self._same_title_features(pool))
        out["w2v_centroid_cos"] = self._centroid_cosine(pool)
        out.update(self._singer_features(pool, reference))
        query_tokens = text_tokens(pool.text)
        out["q_chars"] = np.full(n, float(len(pool.text.strip())))
        out["q_tokens"] = np.full(n, float(len(query_tokens)))
        out["q_best_title_sim"] = np.full(n, pool.best_title_similarity)
        same_title = len(self.title_rows.get(normalize_title(pool.text), ()))
        out["q_same_title_share"] = np.full(n, same_title / self.n_train)
        out["q_pool_size"] = np.full(n, float(n))
        out["cold_start_vector"] = np.array(
            [float(s in self.cold_songs) if self.song_vectors is not None and self.song_vectors.index_of(s) is not None
             else ABSENT for s in pool.song_ids], dtype=np.float64)
        out["no_train_history"] = (rows < 0).astype(np.float64)
        out.update(self._mention_features(pool))
        frame = pd.DataFrame({name: np.asarray(out[name], dtype=np.float64) for name in FEATURES})
        frame.insert(0, "song_id", pool.song_ids)
        return frame

    def features_many(self, pools: Sequence[QueryPool], query_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """``features`` of every pool, stacked, with a ``query`` column (``query_ids`` or the pool's position)."""
        query_ids = list(range(len(pools))) if query_ids is None else list(query_ids)
        if len(query_ids) != len(pools):
            raise ValueError(f"{len(query_ids)} query ids for {len(pools)} pools")
        frames = []
        for qid, pool in zip(query_ids, pools):
            frame = self.features(pool)
            frame.insert(0, "query", qid)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["query", "song_id",
                                                                                          *FEATURES])

    # -- parts --------------------------------------------------------------------------------------------
    def _generator_features(self, pool: QueryPool, reference: np.ndarray) -> dict[str, np.ndarray]:
        n = len(pool)
        names = ("gen_logp_l1", "gen_logp_l12", "gen_logp_code", "gen_logp_code_eos", "gen_logp_gap",
                 "gen_votes_l1", "gen_votes_l12", "gen_song_in_code_rel", "gen_code_size_rel")
        out = {name: np.full(n, ABSENT) for name in names}
        generator = self.sources.generator
        if generator is None or not pool.proposed["generator"].any() and not pool.beams:
            return out
        table = generator.code_table
        table_rows = [table.row_of(s) for s in pool.song_ids]
        has_code = np.array([r is not None for r in table_rows], dtype=bool)
        if not has_code.any():
            return out
        codes = table.codes[[r for r in table_rows if r is not None]]
        unique, inverse = np.unique(codes, axis=0, return_inverse=True)
        logp = code_log_probs(generator, pool.text, unique)[inverse.ravel()]  # (m, L + 1) cumulative
        depth = codes.shape[1]
        out["gen_logp_l1"][has_code] = logp[:, 0]
        out["gen_logp_l12"][has_code] = logp[:, min(1, depth - 1)]
        out["gen_logp_code"][has_code] = logp[:, depth - 1]
        out["gen_logp_code_eos"][has_code] = logp[:, depth]
        full = out["gen_logp_code_eos"]
        top = full[reference & has_code]
        out["gen_logp_gap"][has_code] = full[has_code] - (top.max() if len(top) else full[has_code].max())
        beam_codes = [code for code, _ in pool.beams]
        l1_votes: dict[tuple, int] = {}
        l12_votes: dict[tuple, int] = {}
        for code in beam_codes:
            l1_votes[code[:1]] = l1_votes.get(code[:1], 0) + 1
            l12_votes[code[:2]] = l12_votes.get(code[:2], 0) + 1
        position_in_code: dict[int, tuple[int, int]] = {}
        for i, row in enumerate(table_rows):
            if row is None:
                continue
            code = tuple(int(v) for v in table.codes[row])
            members = table.songs_by_code.get(code, [])
            position_in_code[i] = (members.index(row) if row in members else len(members), len(members))
            out["gen_votes_l1"][i] = l1_votes.get(code[:1], 0)
            out["gen_votes_l12"][i] = l12_votes.get(code[:2], 0)
        mean_size = len(table.song_ids) / max(1, len(table.songs_by_code))  # grows as a refresh adds songs
        for i, (position, size) in position_in_code.items():
            out["gen_song_in_code_rel"][i] = position / mean_size
            out["gen_code_size_rel"][i] = size / mean_size
        return out

    def _cross_encoder_features(self, pool: QueryPool, reference: np.ndarray) -> dict[str, np.ndarray]:
        n = len(pool)
        logits = np.full(n, ABSENT)
        if self.ranker is not None and self.song_vectors is not None and n:
            rows = [self.song_vectors.index_of(s) for s in pool.song_ids]
            have = np.array([r is not None for r in rows], dtype=bool)
            if have.any():
                vectors = self.song_vectors.vectors[[r for r in rows if r is not None]]
                song_texts = None
                if self.ranker.config.use_song_text:
                    song_texts = [song_text(*self.song_info.get(s, ("", ""))) for s, h in zip(pool.song_ids, have)
                                  if h]
                logits[have] = self.ranker.score(self._clean(pool.text), vectors, song_texts)
        top = logits[reference & np.isfinite(logits)]
        if not len(top):
            top = logits[np.isfinite(logits)]
        gap = logits - top.max() if len(top) else logits.copy()
        return {"ce_logit": logits, "ce_gap": gap}

    def _song_tokens(self, song_id: str) -> tuple[set, set, set, set]:
        cached = self._song_text.get(song_id)
        if cached is None:
            name, singer = self.song_info.get(song_id, ("", ""))
            cached = (text_tokens(str(name)), text_tokens(str(singer)), char_bigrams(str(name)),
                      char_bigrams(str(singer)))
            if len(self._song_text) < 500_000:
                self._song_text[song_id] = cached
        return cached

    def _text_features(self, pool: QueryPool) -> dict[str, np.ndarray]:
        query_tokens, query_bigrams = text_tokens(pool.text), char_bigrams(pool.text)
        parts = [self._song_tokens(s) for s in pool.song_ids]
        return {
            "name_token_share": np.array([_share(query_tokens, p[0]) for p in parts], dtype=np.float64),
            "singer_token_share": np.array([_share(query_tokens, p[1]) for p in parts], dtype=np.float64),
            "name_bigram_jaccard": np.array([_jaccard(query_bigrams, p[2]) for p in parts], dtype=np.float64),
            "singer_bigram_jaccard": np.array([_jaccard(query_bigrams, p[3]) for p in parts], dtype=np.float64),
        }

    def _same_title_features(self, pool: QueryPool) -> dict[str, np.ndarray]:
        rows = pool.catalogue_index
        same = self.title_rows.get(normalize_title(pool.text), [])
        counts = np.zeros(len(pool), dtype=np.float64)
        if same:
            per_song = np.asarray(self.catalogue.playlists[same].sum(axis=0)).ravel()
            counts = np.where(rows >= 0, per_song[np.maximum(rows, 0)], 0.0)
        popularity = np.where(rows >= 0, self.catalogue.counts[np.maximum(rows, 0)], 0).astype(np.float64)
        share = np.divide(counts, popularity, out=np.zeros_like(counts), where=popularity > 0)
        return {"same_title_count_share": counts / self.n_train, "same_title_share": share}

    def _singer_features(self, pool: QueryPool, top: np.ndarray) -> dict[str, np.ndarray]:
        singers = [normalize_title(str(self.song_info.get(s, ("", ""))[1])) for s in pool.song_ids]
        mass = np.where(top, np.nan_to_num(pool.scores["ridge_cooc"], nan=0.0), 0.0)
        votes: dict[str, int] = {}
        singer_mass: dict[str, float] = {}
        for singer, in_top, m in zip(singers, top, mass):
            if singer:
                votes[singer] = votes.get(singer, 0) + int(in_top)
                singer_mass[singer] = singer_mass.get(singer, 0.0) + float(m)
        total = float(mass.sum())
        out_votes = np.array([votes.get(g, 0) - int(t) if g else 0 for g, t in zip(singers, top)], dtype=np.float64)
        out_share = np.array([(singer_mass.get(g, 0.0) - m) / total if g and total > 0 else 0.0
                              for g, m in zip(singers, mass)], dtype=np.float64)
        return {"singer_votes_top100": out_votes, "singer_score_share": out_share}

    def _mention_features(self, pool: QueryPool) -> dict[str, np.ndarray]:
        n, mentions, found = len(pool), self.sources.mentions, pool.mentions
        if mentions is None or found is None:
            return {name: np.full(n, ABSENT) for name in MENTION_FEATURES[3:]}
        singers = [mentions.singer_of(s) for s in pool.song_ids]
        return {
            "mention_singer_match": np.array([found.singers.get(g, 0.0) for g in singers], dtype=np.float64),
            "mention_cooc_singer": np.array([found.cooccurring.get(g, 0.0) for g in singers], dtype=np.float64),
            "mention_song_match": np.array([found.songs.get(s, 0.0) for s in pool.song_ids], dtype=np.float64),
            "q_mentions": np.full(n, float(len(found))),
            "q_mention_coverage": np.full(n, found.coverage),
        }

    def _centroid_cosine(self, pool: QueryPool) -> np.ndarray:
        out = np.full(len(pool), ABSENT)
        if self._unit is None:
            return out
        centroid = unit_centroid(self._unit, (self.song_vectors.index_of(self.catalogue.song_ids[r])
                                              for r in pool.classical_top), self.centroid_top)
        if centroid is None:
            return out
        rows = [self.song_vectors.index_of(s) for s in pool.song_ids]
        have = np.array([r is not None for r in rows], dtype=bool)
        if have.any():
            out[have] = self._unit[[r for r in rows if r is not None]] @ centroid
        return out


def _reference(pool: QueryPool, size: int = 100) -> np.ndarray:
    """Mask of the reference candidates: ridge + co-occurrence's top ``size`` (the whole pool if none)."""
    mask = np.nan_to_num(pool.ranks["ridge_cooc"], nan=np.inf) < size
    return mask if mask.any() else np.ones(len(pool), dtype=bool)


def _relative(values: np.ndarray) -> np.ndarray:
    """values / the largest finite value (NaN stays NaN; all-NaN or a max <= 0 gives NaN)."""
    finite = values[np.isfinite(values)]
    top = finite.max() if len(finite) else 0.0
    return values / top if top > 0 else np.full_like(values, ABSENT)


@torch.inference_mode()
def code_log_probs(generator, text: str, codes: np.ndarray) -> np.ndarray:
    """Teacher-forced log P of each code's level prefixes given ``text``: (m, L + 1), column l the cumulative
    log-probability of the first l + 1 levels, the last column the full code followed by </s>. The model's plain
    softmax (not renormalised over the trie). One encoder pass, one decoder pass over the m codes."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or len(codes) == 0:
        raise ValueError(f"codes must be a non-empty (m, levels) array, got shape {codes.shape}")
    model, vocab = generator.model, generator.vocab
    device = generator.device
    inputs = generator.encoder.encode_batch([generator.encoder.clean(text)], device)
    from transformers.modeling_outputs import BaseModelOutput

    hidden = model.get_encoder()(**inputs).last_hidden_state
    m = len(codes)
    tokens = np.stack([vocab.level_token_ids[level][codes[:, level]] for level in range(codes.shape[1])], axis=1)
    tokens = torch.as_tensor(tokens, dtype=torch.long, device=device)
    start = torch.full((m, 1), int(model.config.decoder_start_token_id), dtype=torch.long, device=device)
    labels = torch.cat([tokens, torch.full((m, 1), vocab.eos_id, dtype=torch.long, device=device)], dim=1)
    logits = model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden.expand(m, -1, -1)),
                   attention_mask=inputs["attention_mask"].expand(m, -1),
                   decoder_input_ids=torch.cat([start, tokens], dim=1)).logits
    log_probs = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    result = torch.cumsum(log_probs, dim=1).cpu().numpy().astype(np.float64)
    if not np.isfinite(result).all():
        result[~np.isfinite(result)] = -math.inf
    return result


__all__ = [
    "CLASSICAL_FEATURES",
    "CROSS_ENCODER_FEATURES",
    "FEATURES",
    "FEATURE_GROUPS",
    "GENERATOR_FEATURES",
    "LTR_CROSS_ENCODER",
    "MENTION_FEATURES",
    "OTHER_FEATURES",
    "FeatureBuilder",
    "char_bigrams",
    "code_log_probs",
    "ltr_features",
    "text_tokens",
    "uses_cross_encoder",
]
