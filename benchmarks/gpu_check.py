"""GPU check: on a machine with CUDA, train TIGER and the ranker with the gpu-seed preset for a short step budget,
once per mixed-precision path; without CUDA (or without torch) it prints one line and exits 0, writing nothing.

    python -m benchmarks.gpu_check                  # 200 steps per model per precision, 3,000 demo playlists
    python -m benchmarks.gpu_check --steps 500 --base-model /models/mengzi-t5-base
    python -m benchmarks.gpu_check --quick          # 20 steps, 400 demo playlists

Materialises the graph up to the ranker with the gpu-seed preset on demo data, once per mixed-precision path
(fp16, bf16 where the GPU has it), with ``max_steps`` capping TIGER and ranker training, and records per path
and model: training samples/s, steps, seconds, peak GPU memory (allocated and reserved, reset before each
model) and the blocking check (finite weights, val loss below the untrained model's; the ranker also AUC > 0.5).
Writes benchmarks/results/gpu_check.json.

Each model is its own ``dg.materialize`` call on one instance (upstream tables come from the warehouse), so the
peak memory of one is not the other's. Nothing is downloaded (HF_HUB_OFFLINE=1): the preset's
Langboat/mengzi-t5-base is used when it is in the local Hugging Face cache or --base-model names a local copy;
otherwise TIGER trains from scratch at the `base` size, which the JSON and the output say.
"""
from __future__ import annotations

import copy
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks._common import (
    PRESETS,
    add_output_args,
    argument_parser,
    load_preset,
    output_path,
    parse_args,
    write_json,
)

if TYPE_CHECKING:
    import torch

PRESET = PRESETS / "gpu-seed.yaml"
QUICK = {"steps": 20, "playlists": 400}


def _locally_loadable(name: str) -> bool:
    """Whether a T5 config for ``name`` (a hub name or a path) loads without the network."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name, local_files_only=True)
        return True
    except (OSError, ValueError):
        return False


def _figures(result, node: str) -> dict:
    mats = result.asset_materializations_for_node(node)
    if not mats:
        return {"materialized": False}
    meta = {k: v.value for k, v in mats[0].metadata.items()}
    keep = ("train_samples_per_second", "steps", "train_seconds", "stop_reason", "device", "precision",
            "best_val_loss", "untrained_val_loss", "best_val_auc", "parameters", "train_examples", "train_pairs")
    return {"materialized": True, **{k: meta[k] for k in keep if k in meta}}


def _checks(result) -> dict:
    return {e.check_name: bool(e.passed) for e in result.get_asset_check_evaluations()}


def _gpu_memory(device: torch.device) -> dict:
    import torch

    return {"peak_allocated_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
            "peak_reserved_mib": round(torch.cuda.max_memory_reserved(device) / 2**20, 1)}


def run_precision(precision: str, run_config: dict, work: Path, data: Path, log) -> dict:
    import dagster as dg
    import torch

    from genrank_assets.definitions import all_asset_checks, all_assets, build_resources

    home = work / f"home-{precision}"
    config = copy.deepcopy(run_config)
    config["resources"]["compute"]["config"]["precision"] = precision
    instance = dg.DagsterInstance.ephemeral()
    device = torch.device("cuda")
    out: dict = {"precision": precision}

    def materialize(selection: dg.AssetSelection):
        # A partial run takes config for its own ops only (Dagster rejects the others).
        keys = selection.resolve(all_assets)
        ops = {a.op.name for a in all_assets if isinstance(a, dg.AssetsDefinition) and set(a.keys) & keys}
        own = {**config, "ops": {k: v for k, v in config["ops"].items() if k in ops}}
        return dg.materialize(all_assets + all_asset_checks, selection=selection, run_config=own,
                              resources=build_resources(home=str(home), data_dir=str(data)), instance=instance,
                              raise_on_error=False)

    t0 = time.perf_counter()
    measured = dg.AssetSelection.assets("tiger_model", "ranker_dataset", "ranker_model")
    result = materialize(dg.AssetSelection.assets("ranker_model").upstream() - measured)
    out["upstream_seconds"] = round(time.perf_counter() - t0, 1)
    if not result.success:
        out["error"] = "the upstream assets failed (see the log above)"
        return out
    for node, extra in (("tiger_model", ()), ("ranker_model", ("ranker_dataset",))):
        if extra:  # the ranker's examples: TIGER beam search on the GPU; not part of the ranker's peak memory
            t0 = time.perf_counter()
            result = materialize(dg.AssetSelection.assets(*extra))
            out["ranker_dataset_seconds"] = round(time.perf_counter() - t0, 1)
            if not result.success:
                out["error"] = "ranker_dataset failed"
                return out
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        result = materialize(dg.AssetSelection.assets(node))
        out[node] = {**_figures(result, node), **_gpu_memory(device), "step_seconds": round(time.perf_counter() - t0, 1),
                     "checks": _checks(result), "success": result.success}
        log(f"{precision} {node}: {out[node]}")
        if not result.success:
            break
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__, "gpu_check")
    parser.add_argument("--steps", type=int, default=200, help="max_steps of TIGER and of the ranker (default 200)")
    parser.add_argument("--precisions", default="fp16,bf16", help="comma-separated (default fp16,bf16)")
    parser.add_argument("--playlists", type=int, default=3000, help="demo playlists (default 3000)")
    parser.add_argument("--base-model", default=None, help="TIGER's base model, a local path (default: the preset's "
                        "when it is in the local Hugging Face cache, else from scratch at the `base` size)")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    add_output_args(parser, f"{QUICK['steps']} steps per model and precision on {QUICK['playlists']} demo playlists")
    args = parse_args(parser, QUICK, argv)
    try:
        import torch
    except ImportError as err:
        print(f"gpu_check: cannot import torch ({err}); nothing run, nothing written")
        return 0
    if not torch.cuda.is_available():
        print(f"gpu_check: torch {torch.__version__} sees no CUDA device; nothing run, nothing written")
        return 0
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    from genrank_assets.ml.data.demo_data import generate_demo_data
    from genrank_assets.ml.semantic_ids.kmeans_backends import faiss_gpus, kmeans_backend

    run_config = load_preset(PRESET)
    tiger = run_config["ops"]["tiger_model"]["config"]
    base_model = args.base_model or tiger["base_model"]
    note = None
    if not _locally_loadable(base_model):
        if args.base_model:
            parser.error(f"--base-model {args.base_model!r} does not load without the network")
        note = (f"{base_model} is not in the local Hugging Face cache and nothing is downloaded here: TIGER trained "
                "from scratch at the `base` size (pass --base-model PATH for the preset's model)")
        print(f"gpu_check: {note}")
        base_model = "from_scratch"
        tiger["preset"] = "base"
    tiger["base_model"] = base_model
    tiger["max_steps"] = args.steps
    run_config["ops"]["ranker_model"]["config"]["max_steps"] = args.steps

    work = args.work or Path(tempfile.mkdtemp(prefix="genrank-gpu-check-"))
    data = work / "data"
    generate_demo_data(data, n_playlists=args.playlists)
    results, skipped = [], {}
    for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            skipped[precision] = "this GPU has no bf16"
            continue
        results.append(run_precision(precision, run_config, work, data, print))
    payload = {
        "gpu": torch.cuda.get_device_name(0), "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
        "cuda": torch.version.cuda, "bf16_supported": torch.cuda.is_bf16_supported(),
        "faiss_gpus": faiss_gpus(), "rq_kmeans_backend": kmeans_backend("cuda"),
        "preset": str(PRESET.name), "base_model": base_model, "note": note, "max_steps": args.steps,
        "playlists": args.playlists, "results": results, "skipped": skipped, "work": str(work), "quick": args.quick,
    }
    write_json(output_path(args, "gpu_check"), payload)
    ok = all(r.get(n, {}).get("success") for r in results for n in ("tiger_model", "ranker_model"))
    return 0 if ok and results else 1


if __name__ == "__main__":
    raise SystemExit(main())
