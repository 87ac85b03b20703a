#!/usr/bin/env bash
# GPU check (issue 14): on a machine with CUDA, train TIGER and the ranker with the gpu-seed preset for a short
# step budget, once per mixed-precision path (fp16, bf16), and write samples/s, peak GPU memory and whether each
# path trained (finite weights, val loss below the untrained model's) to benchmarks/results/gpu_check.json.
# On a machine without CUDA it prints one line and exits 0, writing nothing.
#
#   benchmarks/gpu_check.sh                     # 200 steps per model per precision, 3,000 demo playlists
#   benchmarks/gpu_check.sh --steps 500 --base-model /models/mengzi-t5-base
#
# Nothing is downloaded (HF_HUB_OFFLINE=1): the preset's Langboat/mengzi-t5-base is used when it is in the local
# Hugging Face cache or --base-model names a local copy; otherwise TIGER trains from scratch at the `base` size,
# which the JSON and the output say.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false}

reason=$("$PY" -c 'import torch; print("" if torch.cuda.is_available() else f"torch {torch.__version__} sees no CUDA device")' 2>/dev/null) \
  || reason="cannot import torch with $PY"
if [ -n "$reason" ]; then
  echo "gpu_check: $reason; nothing run, nothing written"
  exit 0
fi
exec "$PY" benchmarks/gpu_check.py "$@"
