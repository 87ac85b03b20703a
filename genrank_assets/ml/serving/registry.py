"""MLflow glue: point MLflow at genrank's store, log a trained model directory as a pyfunc model, register it,
move aliases, load it back.

Each genrank model is saved by its own module as a plain directory (`save_tiger`, `save_ranker`, ...). Here
that directory becomes the artifact of an MLflow pyfunc model, so that `models:/genrank-tiger/3` or
`models:/genrank-tiger@champion` restores exactly the saved object, and the pyfunc `predict` gives a
generic DataFrame interface for serving.

Promotion: the evaluation registers each new `genrank-recommender` version under the alias `challenger`, with
model-version tags naming the tiger/ranker versions it bundles and what the evaluation measured
(``register_recommender``); the gate reads them back (``challenger``) and, when it passes, moves `champion` on
all three models (``promote``).
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow import MlflowClient

log = logging.getLogger(__name__)

TIGER_NAME = "genrank-tiger"
RANKER_NAME = "genrank-ranker"
RECOMMENDER_NAME = "genrank-recommender"
LTR_NAME = "genrank-ltr"
CHAMPION = "champion"
CHALLENGER = "challenger"  # the latest evaluated recommender, waiting for the gate

# The models-from-code files of the three pyfuncs (see ml/serving/pyfunc/): serving unpickles nothing.
PYFUNC_CODE_DIR = Path(__file__).resolve().with_name("pyfunc")
TIGER_CODE = str(PYFUNC_CODE_DIR / "tiger_model.py")
RANKER_CODE = str(PYFUNC_CODE_DIR / "ranker_model.py")
RECOMMENDER_CODE = str(PYFUNC_CODE_DIR / "recommender_model.py")
LTR_CODE = str(PYFUNC_CODE_DIR / "ltr_model.py")
ALLOW_PICKLE_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"

# What a pyfunc needs to load in a fresh environment: the installed genrank package brings the rest.
PIP_REQUIREMENTS = ["genrank", "torch==2.13.0", "transformers", "tokenizers", "pandas", "numpy", "faiss-cpu",
                    "lightgbm"]


@dataclass
class RegisteredModel:
    name: str
    version: int
    run_id: str
    uri: str  # models:/name/version


def _text_column(model_input) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        col = "text" if "text" in model_input.columns else model_input.columns[0]
        return [str(t) for t in model_input[col]]
    if isinstance(model_input, (list, tuple)):
        return [str(t) for t in model_input]
    return [str(model_input)]


def _k_of(model_input, params, default: int) -> list[int]:
    n = len(model_input) if isinstance(model_input, pd.DataFrame) else 1
    if isinstance(model_input, pd.DataFrame) and "k" in model_input.columns:
        return [int(k) for k in model_input["k"]]
    k = int((params or {}).get("k", default))
    return [k] * n


class TigerPyfunc(mlflow.pyfunc.PythonModel):
    """Input: DataFrame with `text` (and optional `n`); output: candidate song ids per text."""

    def load_context(self, context):
        from genrank_assets.ml.generator.tiger import load_tiger

        self.artifact_paths = dict(context.artifacts)  # local copies, reusable to bundle a recommender
        self.generator = load_tiger(context.artifacts["model_dir"], device="cpu")

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        texts = _text_column(model_input)
        ns = _k_of(model_input, params, 100)
        return pd.DataFrame({"text": texts, "song_ids": [self.generator.generate_candidates(t, n=n)
                                                          for t, n in zip(texts, ns)]})


class RankerPyfunc(mlflow.pyfunc.PythonModel):
    """Input: DataFrame with `text` and `song_id` (one row per pair); output: the relevance logit per row.

    The song vectors and texts the ranker was trained with travel as the `songs_dir` artifact, so the
    registered model scores pairs by song id on its own.
    """

    def load_context(self, context):
        from genrank_assets.ml.ranking.cross_encoder.model import load_ranker
        from genrank_assets.ml.serving.recommender import load_song_side

        self.artifact_paths = dict(context.artifacts)
        self.ranker = load_ranker(context.artifacts["model_dir"], device="cpu")
        self.song_vectors, self.song_info = load_song_side(context.artifacts["songs_dir"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame) or not {"text", "song_id"} <= set(model_input.columns):
            raise ValueError("genrank-ranker expects a DataFrame with columns `text` and `song_id`")
        rows = [self.song_vectors.index_of(str(s)) for s in model_input["song_id"]]
        missing = [s for s, r in zip(model_input["song_id"], rows) if r is None]
        if missing:
            raise ValueError(f"songs without a vector (cannot be scored): {missing[:5]}")
        vectors = self.song_vectors.vectors[rows]
        from genrank_assets.ml.ranking.cross_encoder.model import song_text

        texts = [song_text(*self.song_info.get(str(s), ("", ""))) for s in model_input["song_id"]]
        scores = self.ranker.score_pairs([str(t) for t in model_input["text"]], vectors,
                                         texts if self.ranker.config.use_song_text else None)
        return pd.DataFrame({"text": model_input["text"].to_numpy(), "song_id": model_input["song_id"].to_numpy(),
                             "score": scores})


class LTRPyfunc(mlflow.pyfunc.PythonModel):
    """The learned ranker (LightGBM lambdarank). Input: a DataFrame with its feature columns (``feature_names``;
    NaN = missing evidence), one row per (query, candidate), as ``FeatureBuilder.features`` makes them; output:
    the score per row (higher ranks first within a query)."""

    def load_context(self, context):
        from genrank_assets.ml.ranking.ltr.ranker import LTRRanker

        self.artifact_paths = dict(context.artifacts)
        self.ltr = LTRRanker.load(context.artifacts["model_dir"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            raise ValueError("genrank-ltr expects a DataFrame of feature columns")
        return pd.DataFrame({"score": self.ltr.predict(model_input)})


class RecommenderPyfunc(mlflow.pyfunc.PythonModel):
    """The whole served recommender (generate-and-rank, learning-to-rank or a classical system).

    Input: DataFrame with `text` (and optional `k`, default 10 or the `k` param).
    Output: one row per (text, rank): text, rank, song_id, name, singer, score.
    """

    def load_context(self, context):
        self.recommender = recommender_from_dirs(
            context.artifacts["tiger_dir"], context.artifacts["ranker_dir"], context.artifacts["songs_dir"],
            context.artifacts["config_dir"], context.artifacts.get("knn_dir"), context.artifacts.get("ltr_dir"),
        )

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        texts = _text_column(model_input)
        ks = _k_of(model_input, params, 10)
        rows = []
        for text, k in zip(texts, ks):
            for rec in self.recommender.recommend(text, k):
                rows.append({"text": text, "rank": rec.rank, "song_id": rec.song_id, "name": rec.name,
                             "singer": rec.singer, "score": rec.score})
        return pd.DataFrame(rows, columns=["text", "rank", "song_id", "name", "singer", "score"])


def recommender_signature():
    """What `genrank-recommender` takes and returns, for clients, `mlflow models serve` and the MLflow UI: a frame
    of ``text`` (and an optional per-row ``k``, else the ``k`` param, default 10) in; one row per (text, rank) out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "text"), ColSpec("long", "k", required=False)]),
        outputs=Schema([ColSpec("string", "text"), ColSpec("long", "rank"), ColSpec("string", "song_id"),
                        ColSpec("string", "name"), ColSpec("string", "singer"), ColSpec("double", "score")]),
        params=ParamSchema([ParamSpec("k", "long", 10)]),
    )


# MLflow runs this example through the logged recommender when it registers it: the bundle must answer it.
RECOMMENDER_INPUT_EXAMPLE = {"text": ["gym running bgm"], "k": [5]}


def recommender_from_dirs(tiger_dir, ranker_dir, songs_dir, config_dir, knn_dir=None, ltr_dir=None):
    """The recommender a `genrank-recommender` bundle holds: generate-and-rank (``Recommender``); when its
    config says ``ltr``, the learning-to-rank one (``LTRRecommender``, its sources refitted on the bundled train
    corpus); when it names a classical system, that system refitted on the bundled train corpus
    (``ClassicalRecommender``; the bundle's generator and cross-encoder are not loaded)."""
    from genrank_assets.ml.generator.tiger import load_tiger
    from genrank_assets.ml.ranking.cross_encoder.model import load_ranker
    from genrank_assets.ml.serving.recommender import (
        ClassicalConfig,
        Recommender,
        load_cold_songs,
        load_knn,
        load_recommender_config,
        load_song_side,
        load_train_corpus,
    )

    config = load_recommender_config(config_dir)
    sv, info = load_song_side(songs_dir)
    if isinstance(config, ClassicalConfig):
        from genrank_assets.ml.serving.classical_recommender import ClassicalRecommender

        if not knn_dir:
            raise ValueError(f"{config_dir}: a classical recommender ({config.method}) needs its train corpus "
                             "(the knn_dir artifact)")
        return ClassicalRecommender.fit(load_train_corpus(knn_dir), config.method, info)
    generator, ranker = load_tiger(tiger_dir, device="cpu"), load_ranker(ranker_dir, device="cpu")
    if config is None:
        from genrank_assets.ml.ranking.ltr.ranker import LTRRanker
        from genrank_assets.ml.serving.ltr_recommender import LTRRecommender

        if not knn_dir or not ltr_dir:
            raise ValueError(f"{config_dir}: a learning-to-rank recommender needs its train corpus and ranker "
                             "(knn_dir, ltr_dir artifacts)")
        return LTRRecommender.fit(load_train_corpus(knn_dir), generator, ranker, sv, info, LTRRanker.load(ltr_dir),
                                  cold_songs=load_cold_songs(songs_dir))
    knn = load_knn(knn_dir) if (config.candidate_source == "hybrid" or config.classical_weight) and knn_dir else None
    return Recommender(generator, ranker, sv, info, config, knn=knn)


def load_recommender(alias: str | None = CHAMPION, version: int | None = None):
    """The registered `genrank-recommender` (by alias, or version) as a Recommender object."""
    uri = f"models:/{RECOMMENDER_NAME}/{version}" if version is not None else f"models:/{RECOMMENDER_NAME}@{alias}"
    return load_python_model(uri).recommender


_uri_set_here: str | None = None  # the MLFLOW_TRACKING_URI that mlflow.set_tracking_uri wrote in connect


def connect(home: str | os.PathLike | None = None, tracking_uri: str = "", experiment: str | None = None) -> str | None:
    """Point MLflow tracking and registry at genrank's store: ``tracking_uri``, else ``paths.mlflow_tracking_uri``
    (MLFLOW_TRACKING_URI, else sqlite under GENRANK_HOME). With ``experiment`` (GENRANK_HOME made), runs go to it (created with its
    artifacts under GENRANK_HOME when missing; MLflow's default experiment would write ./mlruns of the working
    directory) and its id is returned. Every MLflow user here (assets, CLI, benchmarks) starts with this."""
    import genrank_assets.paths as paths

    global _uri_set_here
    # mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI, which paths.mlflow_tracking_uri reads first: left
    # there, a later connect to another home in the same process (a benchmark's two homes) would stay on the
    # first home's store. A value this function set is ours to drop; one the user set stays and wins.
    if _uri_set_here is not None and os.environ.get("MLFLOW_TRACKING_URI") == _uri_set_here:
        del os.environ["MLFLOW_TRACKING_URI"]
    uri = tracking_uri or paths.mlflow_tracking_uri(home)
    if experiment is not None:
        paths.genrank_home(home).mkdir(parents=True, exist_ok=True)  # the sqlite file's folder
    user_set = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    _uri_set_here = os.environ.get("MLFLOW_TRACKING_URI") if os.environ.get("MLFLOW_TRACKING_URI") != user_set else None
    if experiment is None:
        return None
    # Steps in several processes (the cross-fitting folds train beside the served models) may open a new store at
    # once: MLflow's first open migrates the sqlite schema and the experiment is created once, so the first access
    # takes a file lock beside the store (the others wait, then find both done).
    with _home_lock(paths.genrank_home(home) / ".mlflow-store.lock"):
        found = mlflow.get_experiment_by_name(experiment)
        if found is None:
            artifact_root = paths.mlflow_artifact_root(home)
            artifact_root.mkdir(parents=True, exist_ok=True)
            experiment_id = mlflow.create_experiment(experiment, artifact_location=artifact_root.as_uri())
        else:
            experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@contextlib.contextmanager
def _home_lock(path: Path):
    """An exclusive lock on ``path`` (created) across processes of this machine, released on exit."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def name_and_version(uri: str) -> tuple[str, int]:
    """(name, version) of ``models:/name/N``, or of ``models:/name@alias`` (the version the alias names now)."""
    body = uri.removeprefix("models:/").rstrip("/")
    if "@" in body:
        name, alias = body.split("@", 1)
        version = alias_version(name, alias)
        if version is None:
            raise ValueError(f"{uri}: {name} has no alias {alias!r}")
        return name, version
    name, _, version = body.rpartition("/")
    return name, int(version)


def version_of(uri: str) -> int:
    return name_and_version(uri)[1]


def log_model_dir(
    model_dir: str | os.PathLike,
    *,
    registered_name: str | None,
    python_model: str | mlflow.pyfunc.PythonModel,
    artifact_name: str = "model",
    extra_artifacts: dict[str, str] | None = None,
    signature=None,
    input_example=None,
) -> RegisteredModel:
    """Inside an active run: log ``model_dir`` as a pyfunc model; with ``registered_name``, also register a new
    version (else the result's uri is the logged model's `models:/m-<id>` and its version 0, to be registered
    by `register_logged` once the model passed its checks). ``python_model`` is a models-from-code file
    (TIGER_CODE, RANKER_CODE, RECOMMENDER_CODE: what genrank logs, no pickle) or a PythonModel instance
    (pickled by MLflow; tests only)."""
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_model_dir must be called inside mlflow.start_run()")
    artifacts = {"model_dir": str(model_dir), **(extra_artifacts or {})}
    info = mlflow.pyfunc.log_model(
        name=artifact_name, python_model=python_model, artifacts=artifacts,
        registered_model_name=registered_name, pip_requirements=PIP_REQUIREMENTS, signature=signature,
        input_example=None if input_example is None else pd.DataFrame(input_example),
    )
    if registered_name is None:
        return RegisteredModel("", 0, run.info.run_id, f"models:/{info.model_id}")
    version = int(info.registered_model_version)
    log.info("registered %s version %d (run %s)", registered_name, version, run.info.run_id)
    return RegisteredModel(registered_name, version, run.info.run_id, f"models:/{registered_name}/{version}")


def register_logged(logged_uri: str, name: str) -> RegisteredModel:
    """Register a logged model (`models:/m-<id>`) as a version of ``name``, once: a second call for the same
    logged model returns the version the first one made. Models are registered only after their run's blocking
    checks passed (the evaluation does it), so a model that failed them never becomes a version."""
    client = MlflowClient()
    source = logged_uri.rstrip("/")
    for v in client.search_model_versions(f"name='{name}'"):
        if v.source.rstrip("/") == source:
            return RegisteredModel(name, int(v.version), v.run_id, f"models:/{name}/{v.version}")
    mv = mlflow.register_model(source, name)
    log.info("registered %s version %s from %s", name, mv.version, source)
    return RegisteredModel(name, int(mv.version), mv.run_id, f"models:/{name}/{mv.version}")


@dataclass(frozen=True)
class EvaluatedModels:
    """The three models an evaluation judges, as registered versions and loaded as they are served."""

    tiger_uri: str
    ranker_uri: str
    ltr_uri: str
    tiger_py: Any
    ranker_py: Any
    ltr_py: Any

    @property
    def uris(self) -> tuple[str, str, str]:
        return self.tiger_uri, self.ranker_uri, self.ltr_uri


def register_evaluated(tiger_logged: str, ranker_logged: str, ltr_logged: str) -> EvaluatedModels:
    """The logged generator, cross-encoder and LTR ranker (`models:/m-<id>`), which passed their blocking checks
    (the evaluation runs only then), registered as versions of their names and loaded from those versions."""
    uris = (register_logged(tiger_logged, TIGER_NAME).uri, register_logged(ranker_logged, RANKER_NAME).uri,
            register_logged(ltr_logged, LTR_NAME).uri)
    return EvaluatedModels(*uris, *(load_python_model(uri) for uri in uris))


def log_history(history: list[dict[str, Any]], step_key: str = "epoch") -> None:
    """Per-epoch metrics (train/val loss, AUC...) as MLflow metric series."""
    for row in history:
        step = int(row.get(step_key, 0))
        mlflow.log_metrics({k: float(v) for k, v in row.items() if k != step_key and _is_number(v)}, step=step)


def _is_number(v) -> bool:
    try:
        float(v)
        return not isinstance(v, bool)
    except (TypeError, ValueError):
        return False


def load_python_model(uri: str):
    """The unwrapped PythonModel of a registered pyfunc (``models:/name/3`` or ``models:/name@alias``); its
    ``model_uri`` attribute is the URI it was loaded from."""
    # A pickled python_model.pkl is refused unless the operator allows it (MLFLOW_ALLOW_PICKLE_DESERIALIZATION=
    # true): genrank logs its models from code, so a pickle in a genrank model was put there by someone else.
    previous = os.environ.get(ALLOW_PICKLE_ENV)
    os.environ[ALLOW_PICKLE_ENV] = previous if previous is not None else "false"
    try:
        model = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    finally:
        if previous is None:
            del os.environ[ALLOW_PICKLE_ENV]
    model.model_uri = uri
    return model


def alias_version(name: str, alias: str = CHAMPION) -> int | None:
    client = MlflowClient()
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def set_alias(name: str, version: int, alias: str = CHAMPION) -> None:
    MlflowClient().set_registered_model_alias(name, alias, str(version))


def run_id_of(name: str, version: int) -> str:
    return MlflowClient().get_model_version(name, str(version)).run_id


# -- the recommender, the challenger and the gate ------------------------------------------------------------

@dataclass
class Challenger:
    """A registered recommender version waiting for the gate: what it bundles and what its evaluation measured."""

    version: int
    tiger_version: int
    ranker_version: int
    method: str  # the evaluated system it serves
    split: str  # the queries its NDCG@10 was measured on: this split's first `queries`, with this fingerprint
    queries: int
    queries_fingerprint: str
    ndcg_at_10: float
    evaluation_run_id: str
    ltr_version: int | None = None  # the genrank-ltr version a learning-to-rank recommender bundles
    run_kind: str = "full"  # what produced it: a full retrain, or a catalogue refresh of one (same models)
    catalogue_fingerprint: str = ""  # the train playlists and catalogue songs it serves (``catalogue_fingerprint``)

    @property
    def uri(self) -> str:
        return f"models:/{RECOMMENDER_NAME}/{self.version}"

    def tags(self) -> dict[str, str]:
        return {f"genrank.{k}": repr(v) if isinstance(v, float) else str(v) for k, v in vars(self).items()
                if k not in ("version", "evaluation_run_id") and v is not None}

    def bundled(self) -> list[tuple[str, int]]:
        """(model name, version) of every registered model the recommender bundles, itself last."""
        models = [(TIGER_NAME, self.tiger_version), (RANKER_NAME, self.ranker_version)]
        if self.ltr_version is not None:
            models.append((LTR_NAME, self.ltr_version))
        return models + [(RECOMMENDER_NAME, self.version)]


def register_recommender(tiger_py, ranker_py, config, knn_corpus: pd.DataFrame, bundle_dir: str | os.PathLike, *,
                         method: str, split: str, queries: int, queries_fingerprint: str,
                         ndcg_at_10: float, ltr_py=None, catalogue_dirs: tuple[str, str] | None = None,
                         run_kind: str = "full", catalogue_fingerprint: str = "") -> Challenger:
    """Inside the evaluation's run: register the whole recommender (the generator and ranker model dirs of these
    pyfuncs, loaded by ``load_python_model``; ``config``: a RecommenderConfig, a ClassicalConfig (a classical
    system: it reads only the train corpus and the song side, the generator and ranker are bundled as the run's
    lineage) or None for the learning-to-rank recommender of ``ltr_py``; the train corpus its classical sources,
    or the classical system, refit on) as a new `genrank-recommender` version and make
    it the challenger, tagged with its lineage, its evaluated NDCG@10 and ``run_kind``. ``catalogue_dirs``: (a
    generator dir, a song-side dir) over the whole catalogue, cold-start songs included, bundled instead of the
    generator's and ranker's own: the recommender keeps the code table it was evaluated with."""
    from genrank_assets.ml.serving.recommender import save_knn_corpus, save_recommender_config

    if (config is None) != (ltr_py is not None):
        raise ValueError("register_recommender: give a RecommenderConfig or ClassicalConfig, or config=None with the LTR ranker (ltr_py)")
    bundle_dir = Path(bundle_dir)
    save_recommender_config(bundle_dir / "config", config)
    save_knn_corpus(bundle_dir / "knn", knn_corpus)
    tiger_dir, songs_dir = catalogue_dirs or (tiger_py.artifact_paths["model_dir"], ranker_py.artifact_paths["songs_dir"])
    artifacts = {"tiger_dir": str(tiger_dir), "ranker_dir": ranker_py.artifact_paths["model_dir"],
                 "songs_dir": str(songs_dir), "config_dir": str(bundle_dir / "config"),
                 "knn_dir": str(bundle_dir / "knn")}
    if ltr_py is not None:
        artifacts["ltr_dir"] = ltr_py.artifact_paths["model_dir"]
    reg = log_model_dir(tiger_dir, registered_name=RECOMMENDER_NAME,
                        python_model=RECOMMENDER_CODE, artifact_name="recommender", extra_artifacts=artifacts,
                        signature=recommender_signature(), input_example=RECOMMENDER_INPUT_EXAMPLE)
    challenger = Challenger(reg.version, version_of(tiger_py.model_uri), version_of(ranker_py.model_uri), method, split,
                            int(queries), queries_fingerprint, float(ndcg_at_10), reg.run_id,
                            None if ltr_py is None else version_of(ltr_py.model_uri), run_kind, catalogue_fingerprint)
    client = MlflowClient()
    for key, value in challenger.tags().items():
        client.set_model_version_tag(RECOMMENDER_NAME, str(reg.version), key, value)
    set_alias(RECOMMENDER_NAME, reg.version, CHALLENGER)
    return challenger


GATED_TAG = "genrank.gate_promoted"  # on a recommender version the gate decided on: "True" / "False"


def gate_decision(version: int) -> bool | None:
    """What the gate decided on this recommender version (None: not gated yet)."""
    tags = MlflowClient().get_model_version(RECOMMENDER_NAME, str(version)).tags
    return None if GATED_TAG not in tags else tags[GATED_TAG] == "True"


def catalogue_fingerprint(corpus: pd.DataFrame, song_ids) -> str:
    """Identifies what a recommender serves beyond its models: the train playlists of ``corpus`` (what its
    sources are fitted on) and the catalogue's songs. A refresh whose fingerprint equals the challenger's has
    nothing new to serve."""
    import hashlib

    train_playlist_ids = corpus.loc[corpus["split"] == "train", "playlist_id"]
    text = "\n".join(sorted(map(str, train_playlist_ids))) + "\n--\n" + "\n".join(sorted(map(str, song_ids)))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def challenger() -> Challenger | None:
    """The recommender version under the `challenger` alias, with what ``register_recommender`` recorded."""
    try:
        mv = MlflowClient().get_model_version_by_alias(RECOMMENDER_NAME, CHALLENGER)
    except mlflow.exceptions.MlflowException:
        return None
    t = mv.tags
    return Challenger(int(mv.version), int(t["genrank.tiger_version"]), int(t["genrank.ranker_version"]),
                      t["genrank.method"], t["genrank.split"], int(t["genrank.queries"]),
                      t["genrank.queries_fingerprint"], float(t["genrank.ndcg_at_10"]), mv.run_id,
                      int(t["genrank.ltr_version"]) if "genrank.ltr_version" in t else None,
                      t.get("genrank.run_kind", "full"), t.get("genrank.catalogue_fingerprint", ""))


def promote(candidate: Challenger) -> None:
    """`champion` -> the challenger's tiger, ranker, LTR ranker (when it bundles one) and recommender versions,
    each tagged `genrank.promoted_at` (UTC; `genrank status` shows it: an alias has no time of its own)."""
    from datetime import datetime, timezone

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    client = MlflowClient()
    for name, version in candidate.bundled():
        set_alias(name, version)
        client.set_model_version_tag(name, str(version), "genrank.promoted_at", when)


def log_evaluation_on_models(model_uris, metrics: dict[str, float], report_path: str | os.PathLike,
                             evaluation_run_id: str) -> None:
    """On the training run of each evaluated model: the evaluation's metrics (`eval.` prefixed), its report and
    the evaluation run's id."""
    client = MlflowClient()
    for uri in model_uris:
        run_id = run_id_of(*name_and_version(uri))
        with mlflow.start_run(run_id=run_id):
            mlflow.log_metrics({f"eval.{k}": v for k, v in metrics.items()})
            mlflow.log_artifact(str(report_path), "evaluation")
        client.set_tag(run_id, "genrank.evaluation_run", evaluation_run_id)


def record_gate(candidate: Challenger, promoted: bool, reason: str, champion_ndcg: float | None,
                note_md: str) -> None:
    """The gate's decision on the challenger's evaluation run: tags, and `report/gate.md` beside the report."""
    client = MlflowClient()
    client.set_model_version_tag(RECOMMENDER_NAME, str(candidate.version), GATED_TAG, str(promoted))
    run_id = candidate.evaluation_run_id
    for key, value in {"genrank.promoted": str(promoted), "genrank.gate_reason": reason,
                       "genrank.new_ndcg_at_10": f"{candidate.ndcg_at_10:.6f}",
                       "genrank.champion_ndcg_at_10": "" if champion_ndcg is None else f"{champion_ndcg:.6f}"}.items():
        client.set_tag(run_id, key, value)
    mlflow.log_text(note_md, "report/gate.md", run_id=run_id)
