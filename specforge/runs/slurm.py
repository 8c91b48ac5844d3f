"""`specforge run --launcher slurm`: submit the compiled submit.sbatch and record the job; and
`python -m specforge.runs.slurm begin|end`, which the batch script runs around each attempt (a requeued
job runs the script again, with the same job id and run folder)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from specforge.codegen.compiler import SBATCH_NAME, SCRIPT_NAMES, compile_files
from specforge.core.console import say
from specforge.core.contract import PREEMPTED_EXIT
from specforge.modelinfo.prepare import PrepareError, prepare_model
from specforge.runs.record import RunRecord, process_start
from specforge.runs.resume import checkpoints, resume_point
from specforge.runs.runner import open_run, run_results
from specforge.validate.load import LoadedSpec, UsageError


def submit(loaded: LoadedSpec, *, compile_first: bool) -> int:
    """sbatch the batch script with RUN_DIR set to a fresh run folder; print the job id."""
    if loaded.spec.launch.slurm is None:
        raise UsageError(f"{loaded.label} has no launch.slurm block to submit")
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        say("[red]error[/]: sbatch is not on PATH (no Slurm client here); the batch script is:")
        sys.stdout.write(compile_files(loaded)[SBATCH_NAME])
        return 1
    try:  # the job's nodes load the prepared folder: build it here, in the shared cache
        prepare_model(loaded.spec, say=say)
    except PrepareError as err:
        say(f"[red]error[/]: {err}")
        return 1
    run_dir, scripts, record = open_run(
        loaded, compile_first=compile_first, names=(*SCRIPT_NAMES, SBATCH_NAME)
    )
    result = subprocess.run(
        [
            sbatch,
            "--parsable",
            f"--export=ALL,RUN_DIR={run_dir},PYTHON={sys.executable}",
            str(scripts / SBATCH_NAME),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        record.update(status="failed", failed_step="submit")
        say(f"[red]error[/]: sbatch failed: {result.stderr.strip()}")
        return 1
    job_id = result.stdout.strip().split(";")[0]
    record.data["attempts"][-1]["status"] = "submitted"  # the job runs elsewhere, later
    record.update(status="submitted", slurm_job_id=job_id)
    say(f"submitted Slurm job [bold]{job_id}[/]; outputs in {run_dir}")
    print(job_id)
    return 0


def job_begin(run_dir: Path) -> Path | None:
    """Before train.py: the newest complete checkpoint to resume from (None: from step 0), and
    this attempt in run.json with its job id, where `specforge run --launcher slurm` made one."""
    checkpoint = resume_point(run_dir)
    if not (run_dir / "run.json").is_file():  # submitted by hand: nothing to record
        return checkpoint
    record = RunRecord.load(run_dir)
    last = record.data["attempts"][-1]
    if last["status"] == "submitted":  # the first start: submit() opened it
        record.data["attempts"].pop()
    elif last["status"] == "running":  # its script was killed outright (Slurm's own preemption)
        last["status"] = "interrupted"
    record.begin_attempt(resumed_from=checkpoint.name if checkpoint else None)
    # the batch script, not this helper, is what runs: readers check that it is alive
    shell = os.getppid()
    job = {
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT") or 0),
    }
    record.data["attempts"][-1].update(pid=shell, **job)
    record.update(pid=shell, pid_start=process_start(shell))
    return checkpoint


def job_end(run_dir: Path, code: int, signalled: bool) -> str:
    """After train.py: the attempt's ending in run.json. `preempted` when train.py exited after its
    signal checkpoint (torchrun turns that exit into 1: a signal that reached the job counts)."""
    if code == 0:
        status = "succeeded"
    elif code == PREEMPTED_EXIT or signalled:
        status = "preempted"
    else:
        status = "failed"
    if not (run_dir / "run.json").is_file():
        return status
    record = RunRecord.load(run_dir)
    attempt = record.data["attempts"][-1]
    if status == "succeeded":
        record.data["completed_steps"] = [*record.data.get("completed_steps", []), "train"]
    if status == "preempted":
        attempt["step_reached"] = max(checkpoints(run_dir)[0], default=0)
    record.data["results"] = run_results(run_dir, record)
    started = datetime.fromisoformat(attempt["started_at"])
    duration = (datetime.now(started.tzinfo) - started).total_seconds()
    record.end_attempt(status, None if code == 0 else "train", round(duration, 1))
    return status


def main(argv: list[str]) -> int:
    """`begin RUN_DIR` prints the checkpoint to resume from (or nothing); `end RUN_DIR CODE
    SIGNALLED` records the attempt and prints its status."""
    if argv[:1] == ["begin"] and len(argv) == 2:
        checkpoint = job_begin(Path(argv[1]))
        print(checkpoint or "")
        return 0
    if argv[:1] == ["end"] and len(argv) == 4:
        print(job_end(Path(argv[1]), int(argv[2]), argv[3] == "1"))
        return 0
    print(
        "usage: python -m specforge.runs.slurm begin RUN_DIR | end RUN_DIR CODE SIGNALLED",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
