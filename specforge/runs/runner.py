"""`specforge run`: execute the generated scripts as subprocesses and record the run.

The scripts run under the same Python as specforge, from the project root, with the caller's
environment (credentials stay there: nothing from the environment is written to the record).
`--resume` continues an unfinished run in its own folder; run.json keeps every attempt.
Before the first script, a spec's GGUF is dequantised into the model folder the scripts load
(specforge.modelinfo.prepare; once per file, then a hash check).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from specforge.codegen.compiler import GENERATED_DIR, SCRIPT_NAMES, compile_files
from specforge.core.console import say
from specforge.core.contract import PREEMPTED_EXIT
from specforge.core.files import changes, sha256_bytes, write_atomic
from specforge.modelinfo.folders import saved_model
from specforge.modelinfo.layout import plan_line
from specforge.modelinfo.prepare import (
    prepare_model,
    read_source,
    spec_model_dir,
)
from specforge.runs.lineage import headline, spec_parent
from specforge.runs.model_card import make_portable
from specforge.runs.plots import plot_losses
from specforge.runs.progress import LiveView
from specforge.runs.record import (
    RUNS_DIR,
    RunRecord,
    code_sha256,
    final_losses,
    final_rewards,
    new_run_dir,
    now_iso,
    process_start,
    read_jsonl,
    record_revisions,
    start_record,
    throughput,
)
from specforge.runs.resume import (
    CannotResume,
    checkpoints,
    find_resumable,
    reconcile_metrics,
    resume_mismatches,
    resume_point,
    resumed_at,
)
from specforge.runs.scoring import read_predictions, score_predictions
from specforge.runs.trackers import train_env
from specforge.spec.models import Spec
from specforge.validate.load import LoadedSpec


class StaleScripts(Exception):
    """generated/<name> differs from a fresh compile of the spec."""


@dataclass
class Step:
    name: str
    command: list[str]
    log: Path
    scores: tuple[Path, Path] | None = None  # (infer.py's predictions, the metrics to write)
    env: dict[str, str] = field(default_factory=dict)  # added to the caller's environment


# `specforge compile` and `check` without arguments own generated/<name>/ for specs/*.yaml (not
# _*.yaml: partials); a spec elsewhere compiles into its run folder, so generated/ holds no folder
# that `check` would call an orphan and `compile` would never refresh.
SPECS_DIR = Path("specs")


def uses_generated(loaded: LoadedSpec) -> bool:
    """Whether a run of `loaded` runs generated/<name>/: a spec in specs/ without --set overrides
    (anything else is compiled into the run folder)."""
    path = loaded.path.resolve()
    in_specs = path.parent == SPECS_DIR.resolve() and path.suffix == ".yaml"
    return in_specs and not path.name.startswith("_") and not loaded.overrides


def generated_scripts(loaded: LoadedSpec, *, compile_first: bool) -> Path:
    """generated/<name>/, which must equal a fresh compile of the spec (rewritten with --compile),
    so the scripts that run are the reviewed ones."""
    target = Path(GENERATED_DIR) / loaded.spec.name
    stale = changes(target, compile_files(loaded))
    fix = f"run `specforge compile {loaded.label}` (or pass --compile)"
    if stale and not compile_first and not target.is_dir():
        raise StaleScripts(f"{target}/ does not exist: {loaded.label} was never compiled; {fix}")
    if stale and not compile_first:
        names = ", ".join(path.name for path, _, _ in stale)
        raise StaleScripts(
            f"{target}/ differs from a fresh compile of {loaded.label} ({names}); "
            f"{fix} so the scripts that run are the reviewed ones"
        )
    for path, _, text in stale:
        write_atomic(path, text.encode("utf-8"))
    return target


def open_run(
    loaded: LoadedSpec, *, compile_first: bool, names: tuple[str, ...] = SCRIPT_NAMES
) -> tuple[Path, Path, RunRecord]:
    """A new run folder, the scripts that will run in it, and its record (hashing `names`).

    A spec in specs/ without overrides runs generated/<name>/, checked before the folder exists.
    With --set overrides, or a spec outside specs/, the scripts are compiled into the run folder,
    so generated/ keeps matching specs/ (uses_generated).
    """
    if uses_generated(loaded):
        scripts = generated_scripts(loaded, compile_first=compile_first)
        run_dir = new_run_dir(loaded.spec.name)
    else:
        run_dir = new_run_dir(loaded.spec.name)
        scripts = run_dir / "scripts"
        for name, text in compile_files(loaded, scripts.as_posix()).items():
            write_atomic(scripts / name, text.encode("utf-8"))
    hashes = {n: sha256_bytes((scripts / n).read_bytes()) for n in names}
    record = start_record(run_dir, loaded, scripts, hashes)
    # what the scripts run, comments aside (compiled into the run folder, they name it)
    code = {n: code_sha256(n, (scripts / n).read_text(encoding="utf-8")) for n in names}
    record.data["scripts"]["code_sha256"] = code
    record.save()
    return run_dir, scripts, record


def train_command(
    loaded: LoadedSpec, scripts: Path, run_dir: Path, adapter: str | None = None
) -> list[str]:
    """One process, or torchrun when the spec asks for several (the script is the same).
    `adapter`: the parent adapter model.adapter resolved to (its record names the same)."""
    launch = loaded.spec.launch
    script = [str(scripts / "train.py"), "--output-dir", str(run_dir)]
    if adapter is not None:
        script += ["--adapter", adapter]
    if launch.world_size() == 1:
        return [sys.executable, *script]
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={launch.nproc_per_node}",
    ]
    if launch.nnodes == 1:
        return [*torchrun, "--standalone", *script]
    # this node's share of a multi-node job; the other nodes run the same command
    return [
        *torchrun,
        f"--nnodes={launch.nnodes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={launch.rdzv_endpoint}",
        f"--rdzv-id={loaded.spec.name}",
        *script,
    ]


VALIDATION_ROWS = "validation.jsonl"


def evaluation_rows(loaded: LoadedSpec, run_dir: Path) -> str | None:
    """The rows the evaluate steps score: inference.eval_data, else (with labels) the validation
    split's raw rows, which train.py writes to <run_dir>/validation.jsonl; None: no evaluation."""
    return spec_evaluation_rows(loaded.spec, run_dir)


def spec_evaluation_rows(spec: Spec, run_dir: Path) -> str | None:
    """evaluation_rows() from the spec alone (`specforge export` has run.json's, not a file)."""
    if spec.inference.eval_data:
        return spec.inference.eval_data
    ds = spec.dataset
    has_validation = any(
        key is not None for key in (ds.validation_fraction, ds.validation_split, ds.eval_path)
    )
    # pretrain and reward score held-out rows without labels (perplexity, pairwise accuracy)
    scored = spec.inference.labels or spec.method in ("pretrain", "reward")
    if scored and has_validation:
        return str(run_dir / VALIDATION_ROWS)
    return None


def base_evaluation(spec: Spec, parent: dict | None) -> tuple[list[str], dict]:
    """infer.py's arguments for the "base" side of tuned-vs-base, and what it scores: a run
    that starts from a parent (model.adapter) is compared with that parent, the model it
    started from; else with the base model (--no-adapter, or --base under lora: null)."""
    base = {"model": "base", "path": spec.model.name}
    flag = ["--base"] if spec.lora is None else ["--no-adapter"]
    if parent is None:
        return flag, base
    folder = Path(parent["adapter"])
    if spec.lora is None:  # infer.py --run-dir takes a run folder or a model folder
        return ["--run-dir", str(folder)], {"model": "parent", "path": folder.as_posix()}
    if folder.name == "adapter":  # infer.py --run-dir takes the run folder that holds adapter/
        return ["--run-dir", str(folder.parent)], {"model": "parent", "path": folder.as_posix()}
    return flag, base  # a bare adapter folder: infer.py cannot load it as a run


def plan_steps(
    loaded: LoadedSpec, scripts: Path, run_dir: Path, parent: dict | None = None
) -> list[Step]:
    python = sys.executable
    adapter = parent["adapter"] if parent else None
    steps = [Step("train", train_command(loaded, scripts, run_dir, adapter), run_dir / "train.log")]
    eval_data = evaluation_rows(loaded, run_dir)
    infer = [python, str(scripts / "infer.py")]
    base = base_evaluation(loaded.spec, parent)[0]
    if eval_data:
        # the tuned model, then the base model (or the parent) on the same rows: the record
        # compares the two
        for name, model, predictions, metrics in (
            ("evaluate-tuned", ["--run-dir", str(run_dir)], "predictions.jsonl", "eval_tuned"),
            ("evaluate-base", base, "predictions_base.jsonl", "eval_base"),
        ):
            command = [*infer, *model, "--data", eval_data, "--output", str(run_dir / predictions)]
            scores = (run_dir / predictions, run_dir / f"{metrics}.json")
            steps.append(Step(name, command, run_dir / f"{metrics}.log", scores))
    else:
        steps.append(
            Step(
                "infer",
                [*infer, "--run-dir", str(run_dir), "--output", str(run_dir / "examples.jsonl")],
                run_dir / "infer.log",
            )
        )
    return steps


# After Ctrl-C: how long the step gets to stop on its own (a terminal's SIGINT reaches the
# whole foreground process group, the step included), then after a forwarded SIGINT.
GRACE_S = 1
STOP_S = 30


class Preemption:
    """SIGTERM to `specforge run` (a scheduler or container stopping it) goes on to the running
    step, whose train.py saves a checkpoint at the next optimizer step and exits PREEMPTED_EXIT
    (under torchrun, torchrun passes it to every rank); no further step starts."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.received = False

    def __call__(self, signum, frame) -> None:
        self.received = True
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def __enter__(self):
        self.previous = signal.signal(signal.SIGTERM, self)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGTERM, self.previous)


def _run_step(
    step: Step, view: LiveView, record: RunRecord, preemption: Preemption, *, append: bool
) -> int:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **step.env}
    with step.log.open("a" if append else "w", encoding="utf-8") as log:
        if append:  # a resumed step keeps the earlier attempt's log above its own
            log.write(f"\n===== {now_iso()} resumed: {' '.join(step.command)}\n")
            log.flush()
        # The step stays in specforge's process group: a SIGKILL or hangup of the group takes
        # it down too, so no orphan keeps training into a folder a reader marked interrupted.
        process = subprocess.Popen(step.command, stdout=log, stderr=subprocess.STDOUT, env=env)
        preemption.process = process
        try:
            # readers use it to tell an orphaned step (still writing here) from a dead run
            started = process_start(process.pid)
            record.update(
                step_process={"name": step.name, "pid": process.pid, "pid_start": started}
            )
            while process.poll() is None:
                view.refresh()
                time.sleep(0.5)
        except KeyboardInterrupt:
            _stop(process)
            raise
    view.refresh()
    return process.returncode


def _stop(process: subprocess.Popen) -> None:
    """Wait for the step to stop; forward SIGINT if only specforge got it (`kill -INT`)."""
    for sig, timeout in ((None, GRACE_S), (signal.SIGINT, STOP_S), (signal.SIGKILL, None)):
        if sig is not None:
            process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def run_results(run_dir: Path, record: RunRecord) -> dict:
    """results in run.json, from the run folder's files; a resumed run's metrics.jsonl is first
    made to read as an uninterrupted run's (specforge.runs.resume.reconcile_metrics)."""
    if (at := resumed_at(record.data)) is not None:
        reconcile_metrics(run_dir, at)
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    results: dict = {"losses": final_losses(metrics)}
    if (speed := throughput(metrics)) is not None:
        results["throughput"] = speed
    if rewards := final_rewards(metrics):  # dpo/orpo/kto
        results["rewards"] = rewards
    for key, name in (
        ("eval_tuned", "eval_tuned.json"),
        ("eval_base", "eval_base.json"),
        ("train_summary", "train_summary.json"),
    ):
        path = run_dir / name
        if path.is_file():
            results[key] = json.loads(path.read_text(encoding="utf-8"))
    if (model := saved_model(run_dir)) is not None:  # full fine-tuning: the whole model
        results["model"] = model
    return results


def describe(loaded: LoadedSpec, *, compile_first: bool) -> None:
    """--dry-run: the scripts and commands a run would execute; creates nothing."""
    if uses_generated(loaded):
        # a dry run reports stale scripts; with --compile a real run would rewrite them
        if not compile_first:
            generated_scripts(loaded, compile_first=False)
        scripts = Path(GENERATED_DIR) / loaded.spec.name
    else:
        scripts = RUNS_DIR / loaded.spec.name / "<run-id>" / "scripts"
    run_dir = RUNS_DIR / loaded.spec.name / "<run-id>"
    print(f"scripts: {scripts}")
    print(f"run dir: {run_dir}")
    model = loaded.spec.model
    if model.gguf_file:  # named, not built: a dry run dequantises nothing
        print(f"prepare: {spec_model_dir(loaded.spec)} (from {model.gguf_file})")
    print(f"layout: {plan_line(loaded.spec)}")
    parent = spec_parent(loaded.spec)
    if parent:
        kind = "model" if "model_sha256" in parent else "adapter"
        print(f"parent: {parent['path']} ({kind} sha256 {parent[f'{kind}_sha256']})")
        print(parent_line(loaded.spec, parent).replace("[bold]", "").replace("[/]", ""))
    for step in plan_steps(loaded, scripts, run_dir, parent):
        print(f"{step.name}: {' '.join(step.command)}")


def parent_line(spec: Spec, parent: dict) -> str:
    """The parent a run starts from, what model.adapter said, and the parent's headline figure:
    `latest` is a choice the reader should see."""
    named = spec.model.adapter
    via = f" (model.adapter: {named})" if named != parent["path"] else ""
    return f"parent [bold]{parent['path']}[/]{via}: {headline(Path(parent['path']))}"


def execute(loaded: LoadedSpec, *, compile_first: bool = False, join=None) -> int:
    """A new run: compile-check, run every step, record everything. Returns the exit code.
    `join(record, run_dir, steps) -> steps`: a sweep's hook (specforge.experiments.sweep) for its points."""
    parent = spec_parent(loaded.spec)  # before any folder is made
    run_dir, scripts, record = open_run(loaded, compile_first=compile_first)
    say(f"run [bold]{run_dir}[/] (scripts: {scripts})")
    if parent:
        record.update(parent=parent)
        say(parent_line(loaded.spec, parent))
    steps = plan_steps(loaded, scripts, run_dir, parent)
    if any(step.name == "evaluate-base" for step in steps):
        record.update(base_evaluation=base_evaluation(loaded.spec, parent)[1])
    if join is not None:
        steps = join(record, run_dir, steps)
    return _attempt(loaded, record, run_dir, steps, append=False)


def resume(
    loaded: LoadedSpec, run_id: str | None, *, compile_first: bool = False, join=None
) -> int:
    """Continue an unfinished run in its own folder, with the spec and scripts it started with:
    from the first step that did not finish, and for training from the newest complete checkpoint.
    `join(record, run_dir, steps) -> steps`: as execute()'s, for a sweep's resumed point.
    """
    run_dir = find_resumable(loaded.spec.name, run_id)
    record = RunRecord.load(run_dir)
    scripts = Path(record.data["scripts"]["dir"])
    problems = resume_mismatches(loaded, record.data, scripts, compile_first=compile_first)
    if problems:
        raise CannotResume(
            f"{run_dir} cannot resume: what would run now differs from what ran:\n"
            + "\n".join(f"  - {problem}" for problem in problems)
            + "\nrestore them, or start a new run (without --resume)"
        )
    done = set(record.data.get("completed_steps", []))
    parent = record.data.get("parent")  # the adapter it started from, not today's `latest`
    steps = [s for s in plan_steps(loaded, scripts, run_dir, parent) if s.name not in done]
    if join is not None:
        steps = join(record, run_dir, steps)
    resumed_from = steps[0].name if steps else None
    if steps and steps[0].name == "train":
        resumed_from = _prepare_train_resume(run_dir, steps[0])
    record.begin_attempt(resumed_from=resumed_from)
    say(f"resume [bold]{run_dir}[/] from {resumed_from or 'the end (nothing left to run)'}")
    return _attempt(loaded, record, run_dir, steps, append=True)


def _prepare_train_resume(run_dir: Path, step: Step) -> str:
    """Point the train step at the newest complete checkpoint and rewind metrics.jsonl to it."""
    checkpoint = resume_point(run_dir)
    if checkpoint is None:
        say("no complete checkpoint: training restarts from step 0")
        return "train (step 0)"
    step.command += ["--resume", str(checkpoint)]
    return checkpoint.name


def _attempt(
    loaded: LoadedSpec, record: RunRecord, run_dir: Path, steps: list[Step], *, append: bool
) -> int:
    """Run the steps in order, recording each that finishes; returns the exit code."""
    started = time.monotonic()
    # the tracker's run carries the record's provenance (specforge.runs.trackers)
    for step in steps:
        if step.name == "train":
            step.env.update(train_env(loaded.spec.training.report_to, record.data, os.environ))
    view = LiveView(run_dir / "metrics.jsonl", loaded.spec)
    status, failed, code = "succeeded", None, 0
    try:
        view.step = "prepare"  # an interrupt before the first step names this one
        with Preemption() as preemption:
            if steps and not _prepare(loaded, record, run_dir):
                status, failed, code = "failed", "prepare", 1
                steps = []
            with view:
                for step in steps:
                    view.set_step(step.name, step.log, rows=_data_rows(step))
                    if preemption.received:  # between steps: stop before the next one
                        status, failed, code = "preempted", step.name, PREEMPTED_EXIT
                        break
                    code = _run_step(step, view, record, preemption, append=append)
                    if step.name == "train":  # the Hub files, and their refs, are cached by now
                        record_revisions(record, loaded.spec)
                    if code == 0 and step.scores:
                        score_step(step, loaded.spec)
                    if code != 0:
                        # torchrun exits 1 after passing a signal on: the runner's own SIGTERM counts
                        preempted = code == PREEMPTED_EXIT or preemption.received
                        status, failed = ("preempted" if preempted else "failed"), step.name
                        code = PREEMPTED_EXIT if preempted else code
                        break
                    done = [*record.data.get("completed_steps", []), step.name]
                    record.update(completed_steps=done)
    except KeyboardInterrupt:
        status, failed, code = "interrupted", view.step, 130
    if status == "preempted":  # where --resume continues: the newest complete checkpoint
        record.data["attempts"][-1]["step_reached"] = max(checkpoints(run_dir)[0], default=0)
    # the record first: a second Ctrl-C during the plot must not leave it saying `running`
    record.data["results"] = run_results(run_dir, record)
    if status == "succeeded" and (run_dir / "adapter" / "adapter_config.json").is_file():
        # the adapter names its real base (not this machine's cache path) and has a model card
        record.data.setdefault("exports", {})["adapter"] = make_portable(run_dir, record.data)
    record.end_attempt(status, failed, round(time.monotonic() - started, 1))
    _plot(run_dir)
    _summarise(record, run_dir)
    return code


def _data_rows(step: Step) -> int | None:
    """The rows an evaluate step answers (its --data file's lines), for its progress."""
    if "--data" not in step.command:
        return None
    try:
        with open(step.command[step.command.index("--data") + 1], "rb") as handle:
            return sum(1 for line in handle if line.strip())
    except (OSError, IndexError):
        return None


def score_step(step: Step, spec) -> None:
    """Score an evaluate step's predictions (specforge.runs.scoring: against the spec's labels, else
    generative scores) into eval_*.json, and note the figures at the end of the step's log."""
    assert step.scores is not None  # only steps that score are passed here
    predictions, out = step.scores
    rows = read_predictions(predictions)
    inf = spec.inference
    metrics = score_predictions(rows, inf.labels, spec.answer_column(), inf.answer_format)
    if metrics is None:
        return
    metrics["predictions"] = predictions.name
    write_atomic(out, (json.dumps(metrics, indent=2) + "\n").encode("utf-8"))
    with step.log.open("a", encoding="utf-8") as log:
        log.write(json.dumps({k: v for k, v in metrics.items() if k != "confusion"}) + "\n")


def _prepare(loaded: LoadedSpec, record: RunRecord, run_dir: Path) -> bool:
    """Build the model folder the scripts load (a spec with a GGUF) and fingerprint it in
    run.json; False when that failed (prepare.log says why)."""
    try:
        folder = prepare_model(loaded.spec, say=say)
    except Exception as err:  # noqa: BLE001 - recorded as the failed step, like a script's crash
        (run_dir / "prepare.log").write_text(traceback.format_exc(), encoding="utf-8")
        say(f"[red]error[/]: {err}")
        return False
    source = read_source(folder) if folder is not None else None
    if folder is not None and source is not None:
        record.data["model"].update(dequantized_dir=folder.as_posix(), gguf_sha256=source["sha256"])
        record.save()
    return True


def _plot(run_dir: Path) -> None:
    plot_losses(run_dir / "metrics.jsonl", run_dir / "loss.png")


def _summarise(record: RunRecord, run_dir: Path) -> None:
    data = record.data
    losses = data["results"].get("losses", {})
    step = data["failed_step"]
    if data["status"] == "failed":
        say(
            f"status: [bold]failed[/] (step {step} failed; see {run_dir}/{step.split('-')[0]}*.log)"
        )
    elif data["status"] in ("interrupted", "preempted"):
        again = " ".join([data["spec"]["path"], *(f"--set {o}" for o in data["spec"]["overrides"])])
        reached = data["attempts"][-1].get("step_reached")
        at = f" at step {reached}" if reached is not None else ""
        say(
            f"status: [bold]{data['status']}[/] during {step}{at}; "
            f"`specforge run {again} --resume {data['run_id']}` continues it"
        )
    else:
        say(f"status: [bold]{data['status']}[/]")
    if losses.get("final_train_loss") is not None:
        say(
            f"train loss {losses['first_train_loss']:.4f} -> {losses['final_train_loss']:.4f}"
            + (
                f", eval loss {losses['final_eval_loss']:.4f}"
                if losses.get("final_eval_loss")
                else ""
            )
        )
    rewards = data["results"].get("rewards") or {}
    if rewards.get("final_reward_accuracy") is not None:
        say(
            f"reward accuracy {rewards['first_reward_accuracy']:.1%} -> "
            f"{rewards['final_reward_accuracy']:.1%}, margin {rewards['final_reward_margin']:.3f}"
        )
    base = "parent" if (data.get("base_evaluation") or {}).get("model") == "parent" else "base"
    for key, label in (("eval_tuned", "tuned"), ("eval_base", base)):
        result = data["results"].get(key)
        if result and "perplexity" in result:
            say(
                f"{label:>5} model: perplexity {result['perplexity']:.3f} on {result['tokens']} "
                f"tokens of {result['n']} held-out texts"
            )
        elif result and "pairwise_accuracy" in result:
            say(
                f"{label:>5} model: pairwise accuracy {result['pairwise_accuracy']:.1%}, mean "
                f"margin {result['mean_margin']:.3f} on {result['n']} held-out pairs"
            )
        elif result and "rouge_l" in result:
            say(
                f"{label:>5} model: exact match {result['exact_match']:.1%}, token-F1 "
                f"{result['token_f1']:.3f}, ROUGE-L {result['rouge_l']:.3f}"
                + (f", JSON valid {result['json_valid']:.1%}" if "json_valid" in result else "")
                + f" on {result['n']} held-out rows"
            )
        elif result:
            lenient = result.get("lenient_accuracy")
            say(
                f"{label:>5} model: accuracy {result['accuracy']:.1%}"
                + (f" (lenient {lenient:.1%})" if lenient is not None else "")
                + f", macro-F1 {result['macro_f1']:.3f} on {result['n']} held-out rows"
            )
    if model := data["results"].get("model"):
        say(f"full model: {model['path']} (sha256 {model['sha256']})")
    say(f"record: {run_dir}/run.json")
