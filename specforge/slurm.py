"""`specforge run --launcher slurm`: submit the compiled submit.sbatch and record the job."""

from __future__ import annotations

import shutil
import subprocess
import sys

from specforge.codegen.compiler import SBATCH_NAME, SCRIPT_NAMES, compile_files
from specforge.diagnostics_out import say
from specforge.prepare import PrepareError, prepare_model
from specforge.runner import open_run
from specforge.spec.load import LoadedSpec, UsageError


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
