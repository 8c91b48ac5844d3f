#!/usr/bin/env bash
# GPU check for one H200/A100-class GPU: LoRA throughput, MFU and peak memory of a
# Mistral-7B-shaped model with random weights (no download), padded+sdpa vs packed
# (+flash-attention 2 when flash_attn is installed). Budget: under 8 minutes.
#
#   bash benchmarks/gpu_check.sh                   # from the repo root
#   bash benchmarks/gpu_check.sh --steps 20        # extra arguments go to gpu_check.py
#   PYTHON=/path/to/python bash benchmarks/gpu_check.sh
#   bash benchmarks/gpu_check.sh --dry-run         # tiny config on CPU
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
"$PYTHON" -c 'import torch, transformers, peft; print("torch", torch.__version__, "cuda", torch.version.cuda, "| transformers", transformers.__version__, "| peft", peft.__version__)'
# 470 s for the run itself leaves headroom in the 8-minute budget; exit 124 means it timed out
exec timeout --kill-after=10 "${GPU_CHECK_TIMEOUT:-470}" "$PYTHON" benchmarks/gpu_check.py "$@"
