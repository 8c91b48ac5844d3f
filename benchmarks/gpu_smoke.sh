#!/usr/bin/env bash
# `specforge run` on one CUDA GPU of the GPU-only code paths, on a tiny random model (minutes):
#   gpu-fp16-recipe        specs/fingpt.yaml's GPU settings: float16 weights, fp16 mixed precision,
#                          gradient checkpointing, accumulation, untied head, new special tokens
#   gpu-bf16-flex          bf16 + attn_implementation flex_attention, padding-free
#   gpu-bf16-flex-packing  the same with packing
# Each run compiles into its run folder (--set), so generated/ stays as it is. Exit 1 if any failed.
#
#   bash benchmarks/gpu_smoke.sh            # from the repo root; PYTHON=... to pick the interpreter
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
[[ -f .gpu/tiny-untied/config.json ]] || "$PYTHON" benchmarks/gpu_smoke_model.py .gpu/tiny-untied || exit 1
status=0
for spec in benchmarks/gpu_smoke/*.yaml; do
  echo "== $spec"
  # --set compiles into the run folder; 40 is the specs' own max_steps
  timeout --kill-after=10 "${GPU_SMOKE_TIMEOUT:-300}" \
    "$PYTHON" -m specforge run "$spec" --set training.max_steps=40 || status=1
done
exit $status
