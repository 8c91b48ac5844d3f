"""`specforge sweep --launcher slurm`: one array job, one task per point not yet succeeded.

Each point gets its run folder and its own compiled submit.sbatch first (as `run --launcher slurm`
does); the array script (runs/<name>/sweeps/<id>/array-<job>.sbatch) only picks task i's folder and
runs that point's batch script, so every point trains exactly what its record says. The points'
#SBATCH options must agree: one array job has one set of resources.

A point whose run was stopped (preempted or interrupted: its job could not requeue itself) is
submitted again in its own folder, and its batch script resumes from the newest complete
checkpoint, as a local sweep resumes it; a failed point, or one whose spec, scripts or data
changed since it started, gets a new folder.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from specforge.codegen.compiler import SBATCH_NAME, SCRIPT_NAMES, compile_files
from specforge.codegen.render import environment
from specforge.core.console import say
from specforge.core.contract import SHELL_SAFE, safe_label
from specforge.core.errors import UsageError
from specforge.experiments.sweep import (
    RESUMABLE,
    Point,
    Sweep,
    latest_run,
    note_event,
    open_manifest,
)
from specforge.modelinfo.prepare import PrepareError, prepare_model
from specforge.runs.record import RunRecord
from specforge.runs.resume import resume_mismatches
from specforge.runs.runner import open_run

OPTION = re.compile(r"^#SBATCH ")


def pending(sweep: Sweep) -> list[Point]:
    """Points whose latest run did not succeed and is not queued or running."""
    todo = []
    for point in sweep.points:
        latest = latest_run(sweep, point)
        status = latest[1].get("status") if latest else None
        if status not in ("succeeded", "running", "submitted"):
            todo.append(point)
    return todo


def stopped_folder(point: Point, latest: tuple | None) -> Path | None:
    """The point's stopped run folder, where it can resume: same spec, scripts and data."""
    if latest is None or latest[1].get("status") not in RESUMABLE:
        return None
    run_dir, data = latest
    problems = resume_mismatches(point.loaded, data, run_dir / "scripts", compile_first=False)
    if problems:
        say(f"[yellow]warning[/]: {run_dir} cannot resume ({'; '.join(problems)}); new folder")
        return None
    return run_dir


def sbatch_options(point: Point) -> list[str]:
    text = compile_files(point.loaded)[SBATCH_NAME]
    return [line for line in text.splitlines() if OPTION.match(line)]


def submit_array(sweep: Sweep) -> int:
    """Open a run per pending point, write the array script, sbatch it; record the task ids."""
    if sweep.base.spec.launch.slurm is None:
        raise UsageError(f"{sweep.base.label} has no launch.slurm block to submit")
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        say("[red]error[/]: sbatch is not on PATH (no Slurm client here)")
        return 1
    open_manifest(sweep)
    todo = pending(sweep)
    if not todo:
        say(f"sweep [bold]{sweep.id}[/]: every point succeeded or is queued; nothing to submit")
        return 0
    options = shared_options(todo)
    try:  # the tasks load the prepared folder: build it here, in the shared cache, once
        for point in todo:
            prepare_model(point.loaded.spec, say=say)
    except PrepareError as err:
        say(f"[red]error[/]: {err}")
        return 1
    opened = [open_point(sweep, point) for point in todo]
    script = write_array_script(sweep, options, [run_dir for run_dir, _, _ in opened])
    result = subprocess.run(
        [sbatch, "--parsable", f"--export=ALL,PYTHON={sys.executable}", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        for _, record, new in opened:
            if new:  # a stopped run stays resumable
                record.update(status="failed", failed_step="submit")
        say(f"[red]error[/]: sbatch failed: {result.stderr.strip()}")
        return 1
    job_id = result.stdout.strip().split(";")[0]
    for task, ((run_dir, record, new), point) in enumerate(zip(opened, todo)):
        if new:
            record.data["attempts"][-1]["status"] = "submitted"  # the job runs elsewhere, later
        else:  # its last attempt keeps its ending (the job adds one); resumed once submitted
            note_event(sweep, point, "resumed", run_dir.name, record.data["status"])
        record.update(status="submitted", slurm_job_id=f"{job_id}_{task}")
    sweep.manifest.setdefault("slurm_jobs", []).append(
        {"job_id": job_id, "script": script.name, "points": [p.index for p in todo]}
    )
    sweep.save()
    say(f"submitted Slurm array job [bold]{job_id}[/] ({len(opened)} tasks); script {script}")
    print(job_id)
    return 0


def shared_options(todo: list[Point]) -> list[str]:
    """The points' #SBATCH options, which must agree: one array job has one set of resources."""
    options = sbatch_options(todo[0])
    for point in todo[1:]:
        if sbatch_options(point) != options:
            raise UsageError(
                f"point {point.index} ({', '.join(point.sets)}) needs other #SBATCH options than "
                f"point {todo[0].index}: one array job has one set of resources"
            )
    return options


def open_point(sweep: Sweep, point: Point) -> tuple[Path, RunRecord, bool]:
    """(run folder, its record, whether it is new): a stopped run's own folder, whose batch
    script resumes from the newest checkpoint, else a new run of the point."""
    latest = latest_run(sweep, point)
    run_dir = stopped_folder(point, latest)
    if run_dir is not None:
        return run_dir, RunRecord.load(run_dir), False
    run_dir, _, record = open_run(
        point.loaded, compile_first=False, names=(*SCRIPT_NAMES, SBATCH_NAME)
    )
    record.update(sweep={"id": sweep.id, "index": point.index, "values": point.values})
    after = latest[1].get("status") if latest else None
    note_event(sweep, point, "restarted" if latest else "started", run_dir.name, after)
    return run_dir, record, True


def write_array_script(sweep: Sweep, options: list[str], run_dirs: list[Path]) -> Path:
    """runs/<name>/sweeps/<id>/array-<n>.sbatch: task i runs run_dirs[i]'s batch script."""
    for run_dir in run_dirs:
        if not SHELL_SAFE.match(run_dir.as_posix()):
            raise ValueError(f"{run_dir} is not safe in a batch script")
    script = sweep.dir / f"array-{len(list(sweep.dir.glob('array-*.sbatch')))}.sbatch"
    text = (
        environment()
        .get_template("sweep_array.sbatch.j2")
        .render(
            array={
                "spec_label": safe_label(sweep.base.label),
                "sweep_id": sweep.id,
                "options": options,
                "last": len(run_dirs) - 1,
                "run_dirs": [run_dir.as_posix() for run_dir in run_dirs],
            }
        )
    )
    script.write_text(text, encoding="utf-8")
    return script
