"""`specforge run`: execute the generated scripts as subprocesses and record the run.

The scripts run under the same Python as specforge, from the project root, with the caller's
environment (credentials stay there: nothing from the environment is written to the record).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from specforge.artifacts import sha256_bytes, write_atomic
from specforge.codegen.compiler import GENERATED_DIR, SCRIPT_NAMES, compile_files
from specforge.diagnostics_out import say
from specforge.live import LiveView
from specforge.record import (
    RunRecord,
    final_losses,
    new_run_dir,
    now_iso,
    read_jsonl,
    start_record,
)
from specforge.spec.load import LoadedSpec


class StaleScripts(Exception):
    """generated/<name> differs from a fresh compile of the spec."""


@dataclass
class Step:
    name: str
    command: list[str]
    log: Path


def prepare_scripts(loaded: LoadedSpec, run_dir: Path, *, compile_first: bool) -> Path:
    """The folder whose train.py/infer.py will run.

    Without overrides: generated/<name>/, which must match the spec (or is rewritten with
    --compile). With --set overrides: a fresh compile inside the run folder, so generated/ keeps
    matching the checked-in specs.
    """
    if loaded.overrides:
        target = run_dir / "scripts"
        for name, text in compile_files(loaded, target.as_posix()).items():
            write_atomic(target / name, text.encode("utf-8"))
        return target
    target = Path(GENERATED_DIR) / loaded.spec.name
    files = compile_files(loaded)
    stale = [n for n, t in files.items() if _read(target / n) != t]
    if stale and not compile_first:
        raise StaleScripts(
            f"{target}/ differs from a fresh compile of {loaded.label} ({', '.join(stale)}); "
            "run `specforge compile` (or pass --compile) so the scripts that run are the reviewed ones"
        )
    for name in stale:
        write_atomic(target / name, files[name].encode("utf-8"))
    return target


def prepare_scripts_check(loaded: LoadedSpec, *, compile_first: bool) -> None:
    prepare_scripts(loaded, Path("."), compile_first=compile_first)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def plan_steps(loaded: LoadedSpec, scripts: Path, run_dir: Path) -> list[Step]:
    python = sys.executable
    steps = [Step("train", [python, str(scripts / "train.py"), "--output-dir", str(run_dir)],
                  run_dir / "train.log")]
    eval_data = loaded.spec.inference.eval_data
    infer = [python, str(scripts / "infer.py")]
    if eval_data:
        steps.append(Step("evaluate-tuned", [*infer, "--run-dir", str(run_dir), "--data", eval_data,
                                             "--output", str(run_dir / "predictions.jsonl"),
                                             "--metrics-out", str(run_dir / "eval_tuned.json")],
                          run_dir / "eval_tuned.log"))
        steps.append(Step("evaluate-base", [*infer, "--no-adapter", "--data", eval_data,
                                            "--output", str(run_dir / "predictions_base.jsonl"),
                                            "--metrics-out", str(run_dir / "eval_base.json")],
                          run_dir / "eval_base.log"))
    else:
        steps.append(Step("infer", [*infer, "--run-dir", str(run_dir),
                                    "--output", str(run_dir / "examples.jsonl")],
                          run_dir / "infer.log"))
    return steps


def _run_step(step: Step, view: LiveView) -> int:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with step.log.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(step.command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        try:
            while process.poll() is None:
                view.refresh()
                time.sleep(0.5)
        except KeyboardInterrupt:
            os.killpg(process.pid, signal.SIGINT)  # let the trainer stop between steps
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            raise
    view.refresh()
    return process.returncode


def _results(run_dir: Path) -> dict:
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    results: dict = {"losses": final_losses(metrics)}
    for key, name in (("eval_tuned", "eval_tuned.json"), ("eval_base", "eval_base.json"),
                      ("train_summary", "train_summary.json")):
        path = run_dir / name
        if path.is_file():
            results[key] = json.loads(path.read_text(encoding="utf-8"))
    return results


def describe(loaded: LoadedSpec, *, compile_first: bool) -> None:
    """--dry-run: the scripts and commands a run would execute; creates nothing."""
    if not loaded.overrides:
        prepare_scripts_check(loaded, compile_first=False) if not compile_first else None
        scripts = Path(GENERATED_DIR) / loaded.spec.name
    else:
        scripts = Path("runs") / loaded.spec.name / "<run-id>" / "scripts"
    run_dir = Path("runs") / loaded.spec.name / "<run-id>"
    print(f"scripts: {scripts}")
    print(f"run dir: {run_dir}")
    for step in plan_steps(loaded, scripts, run_dir):
        print(f"{step.name}: {' '.join(step.command)}")


def execute(loaded: LoadedSpec, *, compile_first: bool = False) -> int:
    """Compile-check, run every step, record everything. Returns the process exit code."""
    if not loaded.overrides:  # refuse stale scripts before creating anything
        prepare_scripts_check(loaded, compile_first=compile_first)
    run_dir = new_run_dir(loaded.spec.name)
    scripts = prepare_scripts(loaded, run_dir, compile_first=compile_first)
    hashes = {n: sha256_bytes((scripts / n).read_bytes()) for n in SCRIPT_NAMES}
    record = start_record(run_dir, loaded, scripts, hashes)
    started = time.monotonic()
    say(f"run [bold]{run_dir}[/] (scripts: {scripts})")
    view = LiveView(run_dir / "metrics.jsonl", loaded.spec)
    status, failed, code = "succeeded", None, 0
    try:
        with view:
            for step in plan_steps(loaded, scripts, run_dir):
                view.set_step(step.name)
                code = _run_step(step, view)
                if code != 0:
                    status, failed = "failed", step.name
                    break
    except KeyboardInterrupt:
        status, failed, code = "interrupted", view.step, 130
    results = _results(run_dir)
    _plot(run_dir)
    record.update(
        status=status,
        failed_step=failed,
        ended_at=now_iso(),
        duration_s=round(time.monotonic() - started, 1),
        results=results,
    )
    _summarise(record, run_dir)
    return code


def _plot(run_dir: Path) -> None:
    from specforge.plot import plot_losses

    plot_losses(run_dir / "metrics.jsonl", run_dir / "loss.png")


def _summarise(record: RunRecord, run_dir: Path) -> None:
    data = record.data
    losses = data["results"].get("losses", {})
    say(f"status: [bold]{data['status']}[/]" + (f" (step {data['failed_step']} failed; "
        f"see {run_dir}/{data['failed_step'].split('-')[0] if data['failed_step'] else ''}*.log)"
        if data["failed_step"] else ""))
    if losses.get("final_train_loss") is not None:
        say(f"train loss {losses['first_train_loss']:.4f} -> {losses['final_train_loss']:.4f}"
            + (f", eval loss {losses['final_eval_loss']:.4f}" if losses.get("final_eval_loss") else ""))
    for key, label in (("eval_tuned", "tuned"), ("eval_base", "base")):
        result = data["results"].get(key)
        if result:
            say(f"{label:>5} model: accuracy {result['accuracy']:.1%}, macro-F1 {result['macro_f1']:.3f} "
                f"on {result['n']} held-out rows")
    say(f"record: {run_dir}/run.json")
