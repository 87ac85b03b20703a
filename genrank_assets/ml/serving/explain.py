"""Why a song was recommended: the candidate sources that proposed it and the parts of its final score.

``Recommender.explain(text, k)`` builds these from the same candidates and the same ranking as ``recommend``;
this module turns them into plain dataclasses (``Explanation``), their JSON form and their text lines.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

GENERATOR = "generator"
CLASSICAL = "classical"  # title-kNN + co-occurrence (the hybrid's second candidate source)
POPULAR = "popular"  # filled in from the most popular songs when the sources proposed fewer than k
FILL = "fill"  # the LTR recommender's fill after its pool: ridge + co-occurrence's ranking, then popularity
# The learning-to-rank pool's sources beside the generator (ml.ranking.ltr.candidates) as people read them.
POOL_SOURCE_NAMES = {"knn": "title-kNN", "knn_cooc": "kNN + co-occurrence", "ridge_cooc": "kernel ridge + co-occurrence",
                     "mention": "the singers and songs the query names"}
# A served classical system (ml.serving.classical_recommender) is the one source of its songs.
CLASSICAL_SYSTEM_NAMES = {"popularity": "popularity", "title_knn": "title-kNN", "knn_cooccurrence": "kNN + co-occurrence",
                          "kernel_ridge_cooccurrence": "kernel ridge + co-occurrence"}


@dataclass
class Source:
    """One candidate source that proposed the song. ``rank``: its place in that source's list (1 = first);
    ``of``: how many songs the source proposed. Generator only: the song's semantic-ID ``code``, that code's place
    in the beam-search ranking of the generated codes (``code_rank``) and its beam score; None where the generator
    does not say (a generator without codes)."""

    name: str
    rank: int
    of: int
    code: tuple[int, ...] | None = None
    code_rank: int | None = None
    code_score: float | None = None

    def describe(self) -> str:
        if self.name == GENERATOR:
            code = "" if self.code is None else (f"; code {self.code}, code {self.code_rank} of the beams"
                                                 f"{'' if self.code_score is None else f', beam score {self.code_score:.3f}'}")
            return f"generator (song {self.rank} of {self.of}{code})"
        if self.name == CLASSICAL:
            return f"title-kNN + co-occurrence (rank {self.rank} of {self.of})"
        if self.name in POOL_SOURCE_NAMES:
            return f"{POOL_SOURCE_NAMES[self.name]} (rank {self.rank})"
        if self.name in CLASSICAL_SYSTEM_NAMES:
            return f"{CLASSICAL_SYSTEM_NAMES[self.name]} (rank {self.rank} of {self.of})"
        if self.name == FILL:
            return f"after the pool (fill #{self.rank})"
        return f"popularity fill-in (most popular #{self.rank})"


@dataclass
class ScoreComponents:
    """final = ranker_logit + popularity_weight * log_popularity + classical_weight * classical."""

    ranker_logit: float
    log_popularity: float
    popularity_weight: float
    classical: float | None  # the classical score / its max over the candidates; None when its weight is 0
    classical_weight: float
    final: float

    def describe(self) -> str:
        parts = [f"ranker {self.ranker_logit:.3f}",
                 f"{self.popularity_weight:g} × log-popularity {self.log_popularity:.3f}"]
        if self.classical is not None:
            parts.append(f"{self.classical_weight:g} × classical {self.classical:.3f}")
        return f"score {self.final:.3f} = " + " + ".join(parts)


@dataclass
class LTRComponents:
    """score = bias + the sum of every feature's contribution (SHAP); ``top``: the largest ones by size, as
    (feature, its value (None: missing), its contribution). A source's rank feature (``<source>_rank``, 0-based
    in the model's input) is shown 1-based, as every rank the explanation shows (1 = the source's first song)."""

    score: float
    bias: float
    top: list[tuple[str, float | None, float]]

    def describe(self) -> str:
        parts = [f"{name}={'n/a' if value is None else f'{value:.3g}'} {c:+.3f}" for name, value, c in self.top]
        return f"LTR score {self.score:.3f} = bias {self.bias:.3f} + " + ", ".join(parts) + " + …"


@dataclass
class Explanation:
    rank: int
    song_id: str
    name: str
    singer: str
    score: float
    sources: list[Source] = field(default_factory=list)
    components: ScoreComponents | LTRComponents | None = None

    def to_dict(self) -> dict:
        """JSON-ready: sources without their empty fields, codes as lists."""
        out = asdict(self)
        out["sources"] = [{k: (list(v) if k == "code" else v) for k, v in s.items() if v is not None}
                          for s in out["sources"]]
        return out

    def lines(self) -> list[str]:
        head = f"{self.rank}. {self.name} - {self.singer} (ID: {self.song_id})"
        score = [] if self.components is None else [f"     {self.components.describe()}"]
        return [head, *score, "     proposed by: " + "; ".join(s.describe() for s in self.sources)]


def _generator_sources(generator, proposed) -> dict[str, Source]:
    """song id -> its generator Source; codes from the candidate list's ``codes`` (a TigerGenerator's
    CandidateList) and the generator's code table, when both are there."""
    ids = list(proposed or [])
    out = {s: Source(GENERATOR, i, len(ids)) for i, s in reversed(list(enumerate(ids, start=1)))}
    codes = getattr(proposed, "codes", None)
    table = getattr(generator, "code_table", None)
    by_code = getattr(table, "songs_by_code", None)
    if codes is None or by_code is None:
        return out
    for code_rank, (code, score) in enumerate(codes, start=1):
        for row in by_code.get(tuple(code), ()):
            src = out.get(table.song_ids[row])
            if src is not None and src.code is None:
                src.code, src.code_rank, src.code_score = tuple(int(v) for v in code), code_rank, float(score)
    return out


def explain_ranked(rec, rows: list[int], order: np.ndarray, parts, proposals) -> list[Explanation]:
    """Explanations of ``rows[order]`` (the top of a ranking by ``rec.ranked_parts``); ``proposals`` =
    (the generator's candidate list, the classical top-N or None) that ``rec.candidate_rows`` recorded."""
    gen, knn = proposals
    gen_src = _generator_sources(rec.generator, gen)
    knn_ids = list(knn or [])
    knn_src = {s: Source(CLASSICAL, i, len(knn_ids)) for i, s in reversed(list(enumerate(knn_ids, start=1)))}
    c = rec.config
    out = []
    for rank, i in enumerate(order, start=1):
        row = int(rows[int(i)])
        sid = rec.song_vectors.song_ids[row]
        sources = [src[sid] for src in (gen_src, knn_src) if sid in src]
        if not sources:
            sources = [Source(POPULAR, int(np.flatnonzero(rec._popular == row)[0]) + 1, len(rec._popular))]
        comps = ScoreComponents(
            float(parts.logits[i]), float(parts.log_popularity[i]), float(c.popularity_weight),
            None if parts.classical is None else float(parts.classical[i]), float(c.classical_weight),
            float(parts.final[i]))
        name, singer = rec.song_info.get(sid, ("", ""))
        out.append(Explanation(rank, sid, name, singer, float(parts.final[i]), sources, comps))
    return out


_RANK_FEATURES = {f"{source}_rank" for source in (GENERATOR, *POOL_SOURCE_NAMES)}  # 0-based in the LTR features


def _shown(feature: str, value: float) -> float | None:
    """A feature's value as the explanation shows it: None when missing, a source's rank 1-based."""
    if not np.isfinite(value):
        return None
    return float(value) + 1 if feature in _RANK_FEATURES else float(value)


def explain_ltr(rec, ranked, k: int, top_features: int = 5) -> list[Explanation]:
    """Explanations of the top ``k`` of an LTR recommender's ``RankedPool``: per song the pool's sources that
    proposed it (generator: its place in the generator's list, its code and the code's beam rank and score;
    classical and mention sources: their rank) and the ``top_features`` largest contributions to its LTR score."""
    pool = ranked.pool
    index = {s: i for i, s in enumerate(pool.song_ids)}
    top = [s for s in ranked.song_ids[:k]]
    in_pool = [index[s] for s in top if s in index]
    contrib = rec.ltr.contributions(ranked.features.iloc[in_pool]) if in_pool else np.zeros((0, 1))
    contrib_of = dict(zip(in_pool, contrib))
    beam_rank = {code: r for r, (code, _) in enumerate(pool.beams, start=1)}
    table = getattr(rec.generator, "code_table", None)
    names = rec.ltr.feature_names
    out = []
    for rank, song in enumerate(top, start=1):
        name, singer = rec.song_info.get(song, ("", ""))
        i = index.get(song)
        if i is None:
            out.append(Explanation(rank, song, name, singer, float("-inf"), [Source(FILL, rank - len(in_pool), 0)]))
            continue
        sources = []
        if pool.proposed["generator"][i]:
            row = table.row_of(song) if table is not None else None
            code = None if row is None else tuple(int(v) for v in table.codes[row])
            score = pool.scores["generator"][i]
            sources.append(Source(GENERATOR, int(pool.ranks["generator"][i]) + 1, int(pool.proposed["generator"].sum()),
                                  code, beam_rank.get(code), None if not np.isfinite(score) else float(score)))
        for source in POOL_SOURCE_NAMES:
            if pool.proposed[source][i]:
                sources.append(Source(source, int(pool.ranks[source][i]) + 1, int(pool.proposed[source].sum())))
        parts = contrib_of[i]
        values = ranked.features.iloc[i]
        order = np.argsort(-np.abs(parts[:-1]), kind="stable")[:top_features]
        top_parts = [(names[j], _shown(names[j], values[names[j]]), float(parts[j])) for j in order]
        score = float(ranked.scores[i])
        out.append(Explanation(rank, song, name, singer, score, sources, LTRComponents(score, float(parts[-1]), top_parts)))
    return out
