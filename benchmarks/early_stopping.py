"""issue 24 §3: TIGER on a 0.1x slice of mpd7k (asset defaults upstream), the old fixed 6 CPU epochs vs an epoch
ceiling with early stopping on val loss (linear / constant schedule, a time cap); epochs run, wall time, val loss,
generator-only NDCG@10 on val. Record: benchmarks/results/experiments/early_stopping.json (its bootstrap and notes
were added by hand from the per-query figures).

    python benchmarks/early_stopping.py prep        # the slice and the steps up to generator_dataset (~1 min)
    python benchmarks/early_stopping.py [VARIANT..]  # train and score (all variants: ~6 min on one thread)
"""
import json, sys, time
from dataclasses import replace
from pathlib import Path
import os

ROOT = Path("/tmp/exp-es")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def prep():
    from benchmarks._common import STEPS, home_env, in_process_preset, require_mpd7k, run_step, scaled_mpd7k
    data = Path(scaled_mpd7k(0.1, ROOT / "data-s0.1", src=require_mpd7k())["path"])
    home = ROOT / "home"
    home.mkdir(parents=True, exist_ok=True)
    preset = in_process_preset({"ops": {}, "resources": {"compute": {"config": {"device": "cpu"}}}}, home,
                               name="defaults")
    env, out = home_env(home, data), []
    for sel, _ in STEPS:
        out.append(run_step(sel, preset, env))
        print(out[-1], flush=True)
        if sel == "generator_dataset":
            break
    (ROOT / "prep.json").write_text(json.dumps(out, indent=1))


if sys.argv[1:] == ["prep"]:
    prep()
    sys.exit(0)
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import torch
from benchmarks._common import machine, warehouse_frames
from genrank_assets.defs.assets.generator import TigerModelConfig, song_popularity_array
from genrank_assets.ml.baselines.classical import PopularityRecommender, benchmark_queries
from genrank_assets.ml.evaluation.metrics import evaluate_rankings
from genrank_assets.ml.evaluation.report import fill_with
from genrank_assets.ml.generator.dataset import examples_from_pairs
from genrank_assets.ml.generator.model import build_model
from genrank_assets.ml.generator.tiger import CodeTable, TigerGenerator
from genrank_assets.ml.generator.tokenizer import make_tokenizer
from genrank_assets.ml.generator.training import TIGER_TRAINING, train_tiger
from genrank_assets.ml.semantic_ids.codes import code_space, codes_from_frame

torch.set_num_threads(1)
home = ROOT / "home"
corpus, upstream, sem, metrics, gen = warehouse_frames(
    home, "select * from genrank.playlist_corpus", "select * from genrank.upstream_corpus",
    "select * from genrank.semantic_ids", "select * from genrank.semantic_id_metrics",
    "select * from genrank.generator_dataset")
for df in (corpus, upstream):
    df["song_ids"] = df["song_ids"].map(lambda ids: [str(s) for s in ids])
cfg = TigerModelConfig()
song_ids, codes = codes_from_frame(sem)
levels = code_space(metrics)
train_rows = gen[gen["split"] == "train"]
qids, texts, truths = benchmark_queries(corpus, "val")
depth = max(100, max(len(t) for t in truths.values()))
popular = PopularityRecommender().fit(upstream).recommend("popular", depth)
BEAMS = 30  # the CPU device default

variants = {
    "fixed_6_epochs_linear": dict(epochs=6),  # the old CPU device default (TIGER_TRAINING otherwise)
    "ceiling_40_linear": dict(epochs=40),
    "ceiling_40_constant": dict(epochs=40, schedule="constant"),
    # the loop's own warm-up rule on a 40-epoch ceiling: 5% of 40 epochs (2 epochs)
    "ceiling_40_linear_warmup_ratio": dict(epochs=40, warmup_steps=None),
    "ceiling_40_constant_warmup_ratio": dict(epochs=40, warmup_steps=None, schedule="constant"),
    # the time cap on real data: it stops the run mid-way, with the best weights so far
    "ceiling_40_linear_cap_30s": dict(epochs=40, max_train_seconds=30),
}
only = sys.argv[1:] or list(variants)
out_path = ROOT / "early_stopping.json"
results = json.loads(out_path.read_text())["variants"] if out_path.exists() else {}
for name in only:
    over = variants[name]
    tokenizer = make_tokenizer(cfg.base_model, train_rows["text"].tolist(), levels, vocab_size=cfg.vocab_size,
                               max_length=cfg.max_input_length)
    model = build_model(tokenizer, cfg.base_model, cfg.preset, seed=cfg.seed)
    settings = dict(mode=cfg.target_mode, max_codes=cfg.max_codes, max_input_length=cfg.max_input_length,
                    samples_per_playlist=cfg.samples_per_playlist)
    train_ds = examples_from_pairs(train_rows, tokenizer, seed=cfg.seed, **settings)
    val_ds = examples_from_pairs(gen[gen["split"] == "val"], tokenizer, seed=cfg.seed + 1, **settings)
    steps_per_epoch = -(-len(train_ds) // TIGER_TRAINING.batch_size)
    # the warm-up of the old run (5% of 6 epochs) for every variant, so that only the ceiling/schedule differ
    config = replace(TIGER_TRAINING, **{'warmup_steps': int(0.05 * 6 * steps_per_epoch), **over})
    t0 = time.perf_counter()
    result = train_tiger(model, tokenizer, train_ds, val_ds, config, log_fn=lambda line: None)
    wall = time.perf_counter() - t0
    table = CodeTable(song_ids=song_ids, codes=codes, popularity=song_popularity_array(song_ids, upstream))
    generator = TigerGenerator(model.to("cpu"), tokenizer, table, target_mode=cfg.target_mode, max_codes=cfg.max_codes,
                               max_input_length=cfg.max_input_length, num_beams=BEAMS, prior_weight=cfg.prior_weight,
                               prior_mass=cfg.prior_mass)
    cands = generator.generate_candidates_batch(texts, n=100, num_beams=BEAMS)
    m = evaluate_rankings({q: fill_with(c, popular, depth) for q, c in zip(qids, cands)}, truths, ks=(10, 100))
    results[name] = {
        "config": {k: getattr(config, k) for k in ("epochs", "schedule", "early_stopping_patience", "lr",
                                                     "warmup_steps", "batch_size", "max_train_seconds")},
        "epochs_run": len(result.epochs), "best_epoch": result.best_epoch, "steps": result.steps,
        "stop_reason": result.stop_reason, "train_wall_s": round(wall, 1),
        "initial_val_loss": result.initial_val["val_loss"], "best_val_loss": result.best_value,
        "val_loss_by_epoch": [round(h["val_loss"], 4) for h in result.epochs],
        "generator_alone_val": {k: float(m[k]) for k in ("ndcg@10", "recall@100", "r_precision")},
        "per_query_ndcg@10": [float(x) for x in m["per_query"]["ndcg@10"]],
    }
    print(name, {k: v for k, v in results[name].items() if k != "per_query_ndcg@10"}, flush=True)
    out_path.write_text(json.dumps({
        "benchmark": "early_stopping", "machine": machine(threads=1),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "data": "seeded 0.1x sample of mpd7k (benchmarks._common.scaled_mpd7k(0.1)), asset defaults upstream "
                "(compute cpu), TIGER: TigerModelConfig() defaults + TIGER_TRAINING with the variant's fields",
        "train_examples": len(train_ds), "val_examples": len(val_ds), "steps_per_epoch": steps_per_epoch,
        "val_queries": len(qids), "num_beams": BEAMS,
        "protocol": "generator alone on val titles: first 100 candidate songs then train-popular songs",
        "variants": results}, indent=1))
