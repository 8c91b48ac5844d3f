"""Helpers more than one test module uses: scratch projects, fake installed packages, hand-written
run records, polling, and the single-node Slurm cluster's plumbing. Fixtures live in conftest.py;
these are plain functions and constants, imported by name (a test module never imports another)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from gguf import GGUFWriter
from hypothesis import settings

from specforge.core.errors import Diagnostic, SpecError
from specforge.modelinfo import prepare
from specforge.runs.record import host
from specforge.spec.models import Spec
from specforge.validate.load import load_spec
from tests.conftest import REPO, run_cli, tiny_spec

# -- property tests


def examples(full: int) -> int:
    """A property test's hypothesis example count: `full` (at most the profile's, 100 by default),
    or the few of `--hypothesis-profile=fast`, which `make test-fast` loads."""
    return min(full, settings.default.max_examples)


# -- scratch projects


def compiled_project(root: Path, model_dir: Path, name: str, **training) -> Path:
    """specs/<name>.yaml (the tiny spec, no validation split, eval off) compiled in root, with
    64 training rows and 4 held-out rows."""
    (root / "specs").mkdir(parents=True)
    (root / "data").mkdir()
    rows = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()[:64]
    (root / "data/train.jsonl").write_text("\n".join(rows) + "\n")
    (root / "data/heldout.jsonl").write_text("\n".join(rows[:4]) + "\n")
    settings = {
        "eval_strategy": "no",
        "logging_steps": 1,
        "max_steps": 6,
        "warmup_ratio": 0.0,
        "learning_rate": 1.0e-2,
        **training,
    }
    text = tiny_spec(model_dir, name=name, **settings).replace("  validation_fraction: 0.2\n", "")
    (root / f"specs/{name}.yaml").write_text(text)
    result = run_cli("compile", f"specs/{name}.yaml", cwd=root)
    assert result.returncode == 0, result.stderr
    return root


def compiled_layout(root: Path, model_dir: Path, layout: str, max_length: int, **extra) -> Path:
    """specs/tiny-<layout>.yaml compiled in root (its specs/ and data/ written already): the
    recipe's 4 rows x 2 accumulation steps in `layout`, 5 steps, the loss logged every step,
    eval off, on CPU. Returns the path of its train.py."""
    name = f"tiny-{layout}"
    spec = tiny_spec(
        model_dir,
        name=name,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_steps=5,
        logging_steps=1,
        eval_strategy="no",
        max_length=max_length,
        layout=layout,
        gpu="cpu",
        **extra,
    ).replace("  eval_steps: 6\n", "")
    (root / f"specs/{name}.yaml").write_text(spec)
    result = run_cli("compile", f"specs/{name}.yaml", cwd=root)
    assert result.returncode == 0, result.stderr
    return root / f"generated/{name}/train.py"


def train_in(root: Path, module, run: Path) -> list[dict]:
    """Run a loaded train.py's train() from root (its paths are the project's) into run; the
    metrics it logged."""
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    try:
        module.train(run)
    finally:
        mp.undo()
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# a few steps at a low rate: answers are non-empty text (longer training answers only the stop
# token on these random models, and empty answers would agree trivially)
SHORT_TRAINING = {"max_steps": 3, "eval_steps": 3, "learning_rate": 5.0e-3}


def export_project(root: Path, model_dir: Path, training: dict) -> Path:
    """specs/tiny.yaml with `training` over 60 training rows and 12 held-out rows (not compiled)."""
    (root / "specs").mkdir()
    (root / "data").mkdir()
    rows = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()
    held = (REPO / "data/fin_sentiment_heldout.jsonl").read_text().splitlines()
    (root / "data/train.jsonl").write_text("\n".join(rows[:60]) + "\n")
    (root / "data/heldout.jsonl").write_text("\n".join(held[:12]) + "\n")
    (root / "specs/tiny.yaml").write_text(tiny_spec(model_dir, **training))
    return root


PREFERENCE_STEPS = 4
PAIRS = [json.loads(x) for x in (REPO / "data/fin_sentiment_pairs.jsonl").read_text().splitlines()]


def method_spec(model_dir, method: str, name: str, adapter: str | None = None) -> str:
    """The tiny SFT spec turned into a `method` spec over the pairs (kto: over unpaired rows)."""
    steps = PREFERENCE_STEPS
    text = tiny_spec(model_dir, name=name, max_steps=steps, logging_steps=1, eval_steps=steps)
    text = text.replace("description:", f"method: {method}\ndescription:")
    if method == "kto":
        text = text.replace("data/train.jsonl", "data/kto.jsonl")
        answer = 'completion: "{answer}<response|end>"\n  label_field: good'
    else:
        text = text.replace("data/train.jsonl", "data/pairs.jsonl")
        answer = 'completion: "{chosen}<response|end>"\n  rejected: "{rejected}<response|end>"'
    text = text.replace('completion: "{output}<response|end>"', answer)
    if adapter:
        text = text.replace(
            "  attn_implementation: sdpa\n", f"  attn_implementation: sdpa\n  adapter: {adapter}\n"
        )
        text = text[: text.index("lora:")] + text[text.index("training:") :]  # the parent's LoRA
    return text.replace("inference:\n", "inference:\n  answer_column: output\n")


# -- GGUF models from installed packages (specforge prepare)


def gguf_spec(tmp_path: Path, package: str, gguf_file: str):
    """The tiny spec with its model taken from `package`'s `gguf_file`: (its path, the Spec)."""
    text = tiny_spec(Path("unused")).replace(
        "  name: unused\n", f"  name: label\n  package: {package}\n  gguf_file: {gguf_file}\n"
    )
    path = tmp_path / "gguf.yaml"
    path.write_text(text)
    return path, load_spec(path, check_files=False).spec


def install_fake_package(tmp_path: Path, monkeypatch) -> Path:
    """An installed-looking package holding a (fake) GGUF file; never imported."""
    folder = tmp_path / "site" / "fake_weights"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("raise RuntimeError('specforge must not import me')\n")
    (folder / "m.Q4.gguf").write_bytes(b"GGUF fake weights")
    monkeypatch.syspath_prepend(str(folder.parent))
    return folder


def mark_built(folder: Path, gguf: Path) -> None:
    """Make `folder` look like the prepared folder of `gguf` (its source.json's sha256)."""
    folder.mkdir(parents=True)
    sha = prepare.file_sha256(gguf)
    (folder / "source.json").write_text(json.dumps({"sha256": sha}))


# -- explain


def spec_for(name: str, *, r: int = 8, targets="all-linear", pad: bool = True) -> Spec:
    """A minimal SFT spec for model `name` (explain's arithmetic reads no data)."""
    tokens = {"additional": ["<response>", "<response|end>"]} | ({"pad": "<pad>"} if pad else {})
    return Spec.model_validate(
        {
            "spec_version": 1,
            "name": "t",
            "model": {"name": name},
            "tokenizer": {"special_tokens": tokens},
            "dataset": {"path": "data/x.jsonl"},
            "prompt": {"template": "{a}<response>", "completion": "{b}<response|end>"},
            "lora": {"r": r, "target_modules": targets},
        },
        strict=False,
    )


# -- run records and processes


def write_record(
    root: Path, name: str, run_id: str, *, metrics: list[dict] | None = None, **fields
) -> Path:
    """A hand-written runs/<name>/<run_id>/run.json (succeeded unless `fields` say otherwise)."""
    run_dir = root / "runs" / name / run_id
    run_dir.mkdir(parents=True)
    record = {
        "run_id": run_id,
        "name": name,
        "status": "succeeded",
        "failed_step": None,
        "pid": 1,
        "pid_start": None,
        "host": host(),
        "step_process": None,
        "started_at": "2026-01-01T00:00:00+00:00",
        "attempts": [{"status": fields.get("status", "succeeded")}],
        "results": {},
        **fields,
    }
    (run_dir / "run.json").write_text(json.dumps(record))
    if metrics is not None:
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    return run_dir


def wait_for(condition, process: subprocess.Popen | None, what: str, timeout: float = 300):
    """Poll `condition` until it holds; fail early if `process` (when given) has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the run ended (rc {process.returncode}) before {what}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the single-node Slurm cluster (the slurm_env fixture in conftest.py starts it)

JOB_TIMEOUT = 900  # the spec's own limit is 10 minutes


def node_cpus(env: dict) -> int:
    out = subprocess.run(
        ["sinfo", "--noheader", "--Node", "--format=%c"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return int(out.stdout.split()[0])


def cancel_all(env: dict) -> None:
    """The cluster is the tests' own: cancel whatever is left on it."""
    jobs = subprocess.run(
        ["squeue", "--noheader", "--format=%i"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.split()
    if jobs:
        subprocess.run(["scancel", *jobs], env=env, timeout=30, check=False)


# -- spec rules


def diagnose(path, **kwargs) -> list[Diagnostic]:
    """Every diagnostic of a spec: errors when it fails, warnings when it loads."""
    try:
        return load_spec(path, **kwargs).warnings
    except SpecError as err:
        return err.diagnostics


def fired(diagnostics: list[Diagnostic], rule: str) -> list[Diagnostic]:
    return [d for d in diagnostics if d.rule == rule]


def only_rule(diagnostics: list[Diagnostic], rule: str, severity: str = "error") -> Diagnostic:
    assert {d.rule for d in diagnostics} == {rule}, "\n".join(d.render() for d in diagnostics)
    [diag] = diagnostics
    assert diag.severity == severity
    assert diag.render().splitlines()[0].endswith(f"[{rule}]")
    return diag


def write_jsonl(path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


# -- GGUF files

TOKENS = ["<unk>", "<s>", "</s>", "hello", "wörld", "<|im_end|>"]


def write_tiny_gguf(path, tokens=TOKENS) -> None:
    """A GGUF with a vocabulary, scalars of several types, an array of numbers and no tensors."""
    writer = GGUFWriter(path, "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([float(i) for i in range(len(tokens))])
    writer.add_eos_token_id(2)
    writer.add_uint8("test.u8", 7)
    writer.add_int64("test.i64", -5)
    writer.add_float64("test.f64", 0.25)
    writer.add_bool("test.flag", True)
    writer.add_array("test.ints", [1, 2, 3])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# -- conversation specs (prompt.conversation) on the tiny model

SYSTEM = {"role": "system", "content": "Answer with the exact words from the note."}


def chat(*pairs, system=True):
    turns = [SYSTEM] if system else []
    for question, answer in pairs:
        turns += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": turns}


ROWS = [
    chat(("Note: Maria went by train to Oslo on Monday.\nWhich city?", "Oslo"), ("Day?", "Monday")),
    chat(("Note: Ravi went by bus to Lima on Friday.\nWho travelled?", "Ravi"), system=False),
    chat(("Note: Aiko went by car to Fez on Sunday.\nHow?", "by car"), ("City?", "Fez")),
] * 4

CONVERSATION = """\
prompt:
  conversation:
    column: messages
"""


def conversation_spec(model_dir, prompt=CONVERSATION, **training) -> str:
    settings = {"max_steps": 3, "eval_strategy": "no", "logging_steps": 1, **training}
    text = tiny_spec(model_dir, name="conv", **settings)
    text = text[: text.index("tokenizer:")] + text[text.index("dataset:") :]  # no new tokens
    text = text[: text.index("prompt:")] + prompt + text[text.index("lora:") :]
    text = text[: text.index("inference:")] + "inference:\n  max_new_tokens: 4\n"
    return text.replace("  validation_fraction: 0.2\n", "")


# -- a run started as a terminal starts it


def _default_sigint() -> None:
    # a non-interactive shell starts background jobs with SIGINT ignored, and children inherit
    # that: a Ctrl-C test run from such a job would see `specforge run` shrug the signal off
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_in_session(args: list[str], *, cwd: Path, log: Path) -> subprocess.Popen:
    """`args` in its own session with SIGINT at its default, as a terminal starts a command:
    `os.killpg(process.pid, SIGINT)` is then what Ctrl-C does."""
    return subprocess.Popen(
        args,
        cwd=cwd,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_default_sigint,  # noqa: PLW1509 - started from the main thread only
    )


# -- method: pretrain


def pretrain_spec(model_dir, name: str = "pt") -> str:
    return f"""\
spec_version: 1
name: {name}
method: pretrain
seed: 7
model:
  name: {model_dir}
  dtype: float32
dataset:
  path: data/text.jsonl
  validation_fraction: 0.2
prompt:
  text_column: text
lora:
  r: 8
  alpha: 16
  dropout: 0.0
  target_modules: all-linear
training:
  per_device_train_batch_size: 4
  per_device_eval_batch_size: 4
  max_steps: 6
  learning_rate: 0.02
  logging_steps: 1
  eval_strategy: steps
  eval_steps: 6
  max_length: 48
  packing: true
inference:
  max_new_tokens: 4
  examples:
    - text: "Shares rose after"
"""
