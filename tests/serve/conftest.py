"""Trained tiny runs to serve (a prompt-template run and a conversation run, once per session),
and `serving`: `specforge serve` started as a user starts it, on 127.0.0.1 and a free port."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from specforge.serve.run import open_run
from tests.conftest import REPO, run_cli, tiny_spec
from tests.helpers import ROWS, conversation_spec

START_TIMEOUT_S = 180  # loading a tiny run takes seconds; a busy 2-core machine, more


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def train(root: Path, spec: str) -> Path:
    assert run_cli("compile", f"specs/{spec}.yaml", cwd=root).returncode == 0
    result = run_cli("run", f"specs/{spec}.yaml", cwd=root, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    (run_dir,) = (root / "runs" / spec).iterdir()
    return run_dir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_model_dir) -> Path:
    """The quickstart's shape on the tiny model: a prompt template, a stop token, 3 labels,
    scored on 12 held-out rows (predictions.jsonl is infer.py's answers)."""
    root = tmp_path_factory.mktemp("serve-tiny")
    (root / "specs").mkdir()
    (root / "data").mkdir()
    rows = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()
    held = (REPO / "data/fin_sentiment_heldout.jsonl").read_text().splitlines()
    (root / "data/train.jsonl").write_text("\n".join(rows[:60]) + "\n")
    (root / "data/heldout.jsonl").write_text("\n".join(held[:12]) + "\n")
    (root / "specs/tiny.yaml").write_text(tiny_spec(tiny_model_dir))
    return train(root, "tiny")


@pytest.fixture(scope="session")
def tiny_chat_run(tmp_path_factory, tiny_model_dir) -> Path:
    """A conversation spec on the tiny model, its held-out conversations answered by infer.py."""
    root = tmp_path_factory.mktemp("serve-chat")
    (root / "specs").mkdir()
    (root / "data").mkdir()
    lines = "".join(json.dumps(row) + "\n" for row in ROWS)
    (root / "data/train.jsonl").write_text(lines)
    (root / "data/held.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS[:3]))
    spec = conversation_spec(tiny_model_dir, max_steps=6)
    spec = spec.replace("inference:\n", "inference:\n  eval_data: data/held.jsonl\n")
    (root / "specs/conv.yaml").write_text(spec)
    return train(root, "conv")


def infer_answers(run_dir: Path, rows: list[dict]) -> list[str]:
    """The run's own infer.py answering `rows` one at a time, as the server does: load() and
    answer() of the script that evaluated the run. (Its batched evaluation pads on the left,
    which can flip a near-tie on the random tiny model; the SmolLM2 test compares with
    predictions.jsonl itself.)"""
    infer = open_run(run_dir).infer
    model, tokenizer = infer.load(run_dir)
    return infer.answer(model, tokenizer, rows, 1)


def project_root(run_dir: Path) -> Path:
    return run_dir.parents[2]


@contextlib.contextmanager
def serving(run_dir: Path, *args: str, env: dict | None = None) -> Iterator[tuple[str, Path]]:
    """`specforge serve RUN_DIR --port 0 ARGS` in the run's project: (base URL, its log file)."""
    log = run_dir.parent / f"serve-{time.monotonic_ns()}.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "specforge", "serve", str(run_dir), "--port", "0", *args],
            cwd=project_root(run_dir),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        yield wait_for_url(process, log), log
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_url(process: subprocess.Popen, log: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith("listening on "):
                return line.split()[2]
        if process.poll() is not None:
            raise AssertionError(f"specforge serve exited {process.returncode}:\n{log.read_text()}")
        time.sleep(0.2)
    raise AssertionError(f"specforge serve did not start in {START_TIMEOUT_S}s:\n{log.read_text()}")


# -- specforge chat in a pseudo-terminal

CHAT_TIMEOUT_S = 240


def spawn(run_dir, *args: str) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable,
        ["-m", "specforge", "chat", str(run_dir), *args],
        cwd=str(project_root(run_dir)),
        encoding="utf-8",
        timeout=CHAT_TIMEOUT_S,
        dimensions=(40, 400),  # no wrapping of long prompts
    )


def answer_after(session: pexpect.spawn, line: str, prompt: str) -> str:
    """Type `line`; the text printed before the next `prompt`."""
    session.sendline(line)
    session.expect_exact(line)  # the terminal echoes what was typed
    session.expect_exact(prompt)
    return session.before.replace("\r\n", "\n").strip()
