"""`specforge sweep`: one run per point of a grid of overrides, grouped under a sweep id.

Each point is a normal run folder (runs/<name>/<run id>, its scripts compiled into it, its
overrides and its sweep in run.json). The sweep's own record is runs/<name>/sweeps/<id>/sweep.json.
The id is a hash of the resolved spec and the grid, so the same command again finds its sweep and
runs only the points that have not succeeded: a point that was stopped (preempted, interrupted, or
left `running` by a dead process) resumes in its own folder from its newest complete checkpoint,
as `specforge run --resume` does; a point that failed runs again in a new folder. Nothing is
overwritten; each point's `events` in sweep.json say which happened.
The base model is evaluated once per sweep: points whose infer.py and evaluation rows are the same
reuse the first base evaluation (recorded as shared, with the run it came from).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from specforge.codegen.compiler import compile_files
from specforge.core.console import say
from specforge.core.contract import PREEMPTED_EXIT
from specforge.core.errors import SpecError, UsageError
from specforge.core.files import sha256_bytes, write_atomic
from specforge.runs.record import RUNS_DIR, now_iso, read_record
from specforge.runs.resume import CannotResume
from specforge.runs.runner import Step, execute, resume
from specforge.validate.load import LoadedSpec, load_spec, parse_override

# stopped from outside, not broken: rerunning the sweep resumes these in place
RESUMABLE = ("preempted", "interrupted")
SWEEPS = "sweeps"  # runs/<name>/sweeps/<id>/: no run.json there, so `runs` lists none of it
MANIFEST = "sweep.json"


@dataclass
class Point:
    index: int
    values: dict[str, str]  # grid key -> the value's --set text
    loaded: LoadedSpec

    @property
    def sets(self) -> list[str]:
        return [f"{key}={value}" for key, value in self.values.items()]


@dataclass
class Sweep:
    id: str
    base: LoadedSpec
    grid: dict[str, list[str]]
    points: list[Point]
    manifest: dict = field(default_factory=dict)

    @property
    def warnings(self) -> list:
        return self.base.warnings

    @property
    def dir(self) -> Path:
        return RUNS_DIR / self.base.spec.name / SWEEPS / self.id

    def save(self) -> None:
        text = json.dumps(self.manifest, indent=2) + "\n"
        write_atomic(self.dir / MANIFEST, text.encode("utf-8"))


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """`--grid lora.r=8,16` (repeatable) -> {"lora.r": ["8", "16"]}."""
    grid: dict[str, list[str]] = {}
    for item in items:
        path, value = parse_override(item)  # the --set syntax, so the errors read the same
        key = ".".join(map(str, path))
        values = [v.strip() for v in value.split(",")]
        if key in grid:
            raise UsageError(f"--grid {item}: {key} is already in the grid")
        if not all(values):
            raise UsageError(f"--grid {item}: expects KEY=V1,V2,... with no empty value")
        grid[key] = values
    return grid


def value_text(value) -> str:
    """A `sweep.grid` value as the --set text that reads back as the same value."""
    return value if isinstance(value, str) else json.dumps(value)


def spec_grid(loaded: LoadedSpec) -> dict[str, list[str]]:
    sweep = loaded.spec.sweep
    if sweep is None:
        return {}
    return {key: [value_text(v) for v in values] for key, values in sweep.grid.items()}


def sweep_id(base: LoadedSpec, grid: dict[str, list[str]]) -> str:
    """Same resolved spec and grid, same id: rerunning a sweep finds it."""
    resolved = base.spec.model_dump(mode="json", exclude={"extends", "sweep"})
    key = json.dumps({"spec": resolved, "grid": grid}, sort_keys=True)
    return "sweep-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:10]


def load_sweep(
    path: Path, sets: list[str] | None, grid_items: list[str] | None, allow_remote_code: bool
) -> Sweep:
    """The base spec and every point, each validated with all its rules; SpecError lists every
    problem of every point before anything runs."""
    base = load_spec(path, sets, allow_remote_code=allow_remote_code)
    grid = parse_grid(grid_items) if grid_items else spec_grid(base)
    if not grid:
        raise UsageError(f"{base.label} has no sweep.grid; pass --grid KEY=V1,V2 (repeatable)")
    points, problems = [], []
    for index, combo in enumerate(itertools.product(*grid.values())):
        values = dict(zip(grid, combo))
        point_sets = [*(sets or []), *(f"{k}={v}" for k, v in values.items())]
        try:
            loaded = load_spec(path, point_sets, allow_remote_code=allow_remote_code)
        except SpecError as err:
            problems += err.diagnostics
            continue
        points.append(Point(index, values, loaded))
    if problems:
        raise SpecError(problems)
    return Sweep(sweep_id(base, grid), base, grid, points)


def open_manifest(sweep: Sweep) -> None:
    """Read the sweep's record, or start it."""
    path = sweep.dir / MANIFEST
    if path.is_file():
        sweep.manifest = json.loads(path.read_text(encoding="utf-8"))
        return
    sweep.manifest = {
        "sweep_id": sweep.id,
        "name": sweep.base.spec.name,
        "spec": {"path": sweep.base.label, "sha256": sweep.base.sha256},
        "overrides": sweep.base.overrides,
        "grid": sweep.grid,
        "created_at": now_iso(),
        "points": [{"index": p.index, "values": p.values, "runs": []} for p in sweep.points],
        # evaluation group -> the run whose eval_base.json the group's points share
        "base_evaluations": {},
    }
    sweep.save()


def latest_run(sweep: Sweep, point: Point) -> tuple[Path, dict] | None:
    runs = sweep.manifest["points"][point.index]["runs"]
    if not runs:
        return None
    run_dir = RUNS_DIR / sweep.base.spec.name / runs[-1]
    data = read_record(run_dir)
    return (run_dir, data) if data is not None else None


def evaluation_group(point: Point) -> str:
    """Points with the same key score the base model identically: the same infer.py (compiled
    to one folder name, so only the code counts) on the same rows, from the same parent (a run
    with model.adapter is compared with its parent, not the base)."""

    spec = point.loaded.spec
    infer = compile_files(point.loaded, "<sweep>")["infer.py"]
    rows = spec.inference.eval_data or json.dumps(
        [spec.seed, spec.dataset.model_dump(mode="json")], sort_keys=True
    )
    return sha256_bytes(f"{infer}\n{rows}\n{spec.model.adapter}".encode())[:16]


def _base_sharer(sweep: Sweep, point: Point, group: str):
    """A hook for execute() and resume(): drop the run's base evaluation when the group already
    has one (copied into the run, marked shared), and tag the run with its sweep."""

    def share(record, run_dir: Path, steps: list[Step]) -> list[Step]:
        shared_from = sweep.manifest["base_evaluations"].get(group)
        base_eval = (
            RUNS_DIR / sweep.base.spec.name / shared_from / "eval_base.json"
            if shared_from and shared_from != run_dir.name
            else None
        )
        info = {"id": sweep.id, "index": point.index, "values": point.values}
        if (
            base_eval is not None
            and base_eval.is_file()
            and "evaluate-base" in [s.name for s in steps]
        ):
            result = json.loads(base_eval.read_text(encoding="utf-8"))
            result["shared_from"] = {"sweep": sweep.id, "run_id": shared_from}
            text = json.dumps(result, indent=2) + "\n"
            write_atomic(run_dir / "eval_base.json", text.encode("utf-8"))
            info["base_evaluation"] = shared_from
            done = [*record.data.get("completed_steps", []), "evaluate-base"]
            record.update(completed_steps=done)
            steps = [s for s in steps if s.name != "evaluate-base"]
        elif (record.data.get("sweep") or {}).get("base_evaluation"):
            info["base_evaluation"] = record.data["sweep"]["base_evaluation"]  # a resumed point
        record.update(sweep=info)
        return steps

    return share


def note_event(sweep: Sweep, point: Point, action: str, run_id: str, after: str | None) -> None:
    """sweep.json keeps what each rerun did to a point: started, resumed (in place) or restarted
    (in a new folder), after which status."""
    entry = sweep.manifest["points"][point.index]
    if action != "resumed":
        entry["runs"].append(run_id)
    event = {"at": now_iso(), "action": action, "run_id": run_id, "after": after}
    entry.setdefault("events", []).append(event)
    sweep.save()


def _remember_base(sweep: Sweep, group: str, run_dir: Path) -> None:
    """The first run of a group that evaluated the base model itself: the others reuse it."""
    bases = sweep.manifest["base_evaluations"]
    if group not in bases and (run_dir / "eval_base.json").is_file():
        bases[group] = run_dir.name
        sweep.save()


def run_point(sweep: Sweep, point: Point, after: str | None = None) -> int:
    """The point in a new run folder (its first run, or again after a failure)."""

    group = evaluation_group(point)
    share = _base_sharer(sweep, point, group)
    started: list[Path] = []

    def join(record, run_dir: Path, steps):
        started.append(run_dir)
        note_event(sweep, point, "restarted" if after else "started", run_dir.name, after)
        return share(record, run_dir, steps)

    # a point always has overrides: its scripts are compiled into its run folder
    code = execute(point.loaded, join=join)
    if started:
        _remember_base(sweep, group, started[0])
    return code


def resume_stopped(sweep: Sweep, point: Point, run_dir: Path, after: str) -> int:
    """The stopped point in its own folder, from its newest complete checkpoint (runner.resume);
    where the run cannot resume (its spec, scripts or data changed), again in a new folder."""

    group = evaluation_group(point)
    share = _base_sharer(sweep, point, group)

    def join(record, run_dir: Path, steps):
        note_event(sweep, point, "resumed", run_dir.name, after)
        return share(record, run_dir, steps)

    try:
        code = resume(point.loaded, run_dir.name, join=join)
    except CannotResume as err:
        say(f"[yellow]warning[/]: {err}; the point runs again in a new folder")
        return run_point(sweep, point, after=after)
    _remember_base(sweep, group, run_dir)
    return code


def describe(sweep: Sweep) -> None:
    """--dry-run: the sweep's id, folder and points."""
    print(f"sweep: {sweep.id} ({len(sweep.points)} points)")
    print(f"record: {sweep.dir / MANIFEST}")
    for point in sweep.points:
        sets = " ".join(f"--set {s}" for s in point.sets)
        print(f"  point {point.index + 1}/{len(sweep.points)}: {sets}")


def run_sweep(sweep: Sweep) -> int:
    """Every point not yet succeeded, in order; a failed point is recorded and the rest run.
    Returns 0 when every point succeeded, 130 when interrupted, PREEMPTED_EXIT when preempted
    (the next run of the same command resumes the stopped point), else 1."""
    open_manifest(sweep)
    say(f"sweep [bold]{sweep.id}[/]: {len(sweep.points)} points; record {sweep.dir / MANIFEST}")
    for point in sweep.points:
        label = f"point {point.index + 1}/{len(sweep.points)} ({', '.join(point.sets)})"
        latest = latest_run(sweep, point)
        folder, status = (latest[0], latest[1].get("status")) if latest else (None, None)
        if status == "succeeded":
            say(f"{label}: done in {folder}")
            continue
        if status in ("running", "submitted"):  # a dead runner's run reads `interrupted`
            say(f"{label}: {folder} is {status}; left alone")
            continue
        if folder is not None and status in RESUMABLE:
            say(f"{label}: resume {folder} (was {status})")
            code = resume_stopped(sweep, point, folder, status)
        else:
            say(f"{label}: " + (f"again (was {status} in {folder})" if folder else "start"))
            code = run_point(sweep, point, after=status)
        if code in (130, PREEMPTED_EXIT):  # Ctrl-C, or SIGTERM (a scheduler stops the sweep)
            stopped = "interrupted" if code == 130 else "preempted"
            say(f"sweep {stopped}; run the same command again to resume it")
            return code
    return summarise(sweep)


def point_statuses(sweep: Sweep) -> list[str | None]:
    latest = [latest_run(sweep, point) for point in sweep.points]
    return [found[1].get("status") if found else None for found in latest]


def summarise(sweep: Sweep) -> int:
    statuses = point_statuses(sweep)
    done = statuses.count("succeeded")
    say(
        f"sweep [bold]{sweep.id}[/]: {done}/{len(statuses)} points succeeded; "
        f"`specforge compare {sweep.id}` ranks them"
    )
    return 0 if done == len(statuses) else 1
