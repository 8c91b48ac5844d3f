"""`specforge sweep` end to end on the tiny model: one run folder per point, one base evaluation,
a failed point recorded while the others run, and a rerun that runs only what did not succeed:
a failed point in a new folder, a preempted one resumed in its own."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.helpers import wait_for

pytestmark = pytest.mark.train

GRID = ["--grid", "training.use_liger_kernel=true,false", "--grid", "lora.r=4,8"]
SETS = ["--set", "training.max_steps=2", "--set", "training.eval_steps=2"]


def manifest(root: Path) -> dict:
    (path,) = (root / "runs/tiny/sweeps").glob("*/sweep.json")
    return json.loads(path.read_text())


def record(root: Path, run_id: str) -> dict:
    return json.loads((root / "runs/tiny" / run_id / "run.json").read_text())


@pytest.fixture(scope="module")
def swept(tmp_path_factory, tiny_model_dir):
    """A 2x2 sweep in which the liger points fail in preflight (liger-kernel is not installed),
    then the same command again."""
    if importlib.util.find_spec("liger_kernel") is not None:
        pytest.skip("liger-kernel is installed: the liger points would not fail")
    from tests.conftest import REPO, tiny_spec

    root = tmp_path_factory.mktemp("sweep")
    (root / "specs").mkdir()
    (root / "data").mkdir()
    rows = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()
    held = (REPO / "data/fin_sentiment_heldout.jsonl").read_text().splitlines()
    (root / "data/train.jsonl").write_text("\n".join(rows[:24]) + "\n")
    (root / "data/heldout.jsonl").write_text("\n".join(held[:6]) + "\n")
    (root / "specs/tiny.yaml").write_text(tiny_spec(tiny_model_dir))
    first = run_cli("sweep", "specs/tiny.yaml", *GRID, *SETS, cwd=root)
    after_first = manifest(root)
    snapshots = {
        run_id: (root / "runs/tiny" / run_id / "run.json").read_bytes()
        for point in after_first["points"]
        for run_id in point["runs"]
    }
    second = run_cli("sweep", "specs/tiny.yaml", *GRID, *SETS, cwd=root)
    return {
        "root": root,
        "first": first,
        "second": second,
        "after_first": after_first,
        "snapshots": snapshots,
    }


def test_every_point_is_a_run_folder_with_its_overrides_and_scripts(swept):
    root, first = swept["root"], swept["first"]
    assert first.returncode == 1, first.stderr[-3000:]  # two points failed
    points = swept["after_first"]["points"]
    assert [p["values"] for p in points] == [
        {"training.use_liger_kernel": "true", "lora.r": "4"},
        {"training.use_liger_kernel": "true", "lora.r": "8"},
        {"training.use_liger_kernel": "false", "lora.r": "4"},
        {"training.use_liger_kernel": "false", "lora.r": "8"},
    ]
    statuses = []
    for point in points:
        (run_id,) = point["runs"]
        data = record(root, run_id)
        statuses.append(data["status"])
        assert data["sweep"]["id"] == swept["after_first"]["sweep_id"]
        assert data["sweep"]["values"] == point["values"]
        assert data["spec"]["overrides"][-2:] == [f"{k}={v}" for k, v in point["values"].items()]
        assert data["spec"]["resolved"]["lora"]["r"] == int(point["values"]["lora.r"])
        scripts = root / "runs/tiny" / run_id / "scripts"
        assert data["scripts"]["dir"] == scripts.relative_to(root).as_posix()
        assert (scripts / "train.py").is_file() and (scripts / "infer.py").is_file()
    # the failed points stopped nothing: the later points ran and succeeded
    assert statuses == ["failed", "failed", "succeeded", "succeeded"]
    failed = record(root, points[0]["runs"][0])
    assert failed["failed_step"] == "train"
    log = (root / "runs/tiny" / points[0]["runs"][0] / "train.log").read_text()
    assert "liger-kernel" in log


def test_the_base_model_is_evaluated_once(swept):
    root, points = swept["root"], swept["after_first"]["points"]
    evaluated, shared = points[2]["runs"][0], points[3]["runs"][0]
    assert (root / "runs/tiny" / evaluated / "predictions_base.jsonl").is_file()
    assert not (root / "runs/tiny" / shared / "predictions_base.jsonl").exists()
    assert not (root / "runs/tiny" / shared / "eval_base.log").exists()
    mine = record(root, evaluated)["results"]["eval_base"]
    reused = record(root, shared)["results"]["eval_base"]
    assert reused["shared_from"] == {"sweep": swept["after_first"]["sweep_id"], "run_id": evaluated}
    assert reused["accuracy"] == mine["accuracy"] and reused["n"] == mine["n"] == 6
    assert record(root, shared)["sweep"]["base_evaluation"] == evaluated
    assert list(swept["after_first"]["base_evaluations"].values()) == [evaluated]


def test_rerun_runs_only_unfinished_points_and_overwrites_nothing(swept):
    root, second = swept["root"], swept["second"]
    assert second.returncode == 1
    assert "done in" in second.stderr
    before, after = swept["after_first"]["points"], manifest(root)["points"]
    assert [len(p["runs"]) for p in after] == [2, 2, 1, 1]
    for old, new in zip(before, after):
        assert new["runs"][: len(old["runs"])] == old["runs"]
    for run_id, text in swept["snapshots"].items():
        assert (root / "runs/tiny" / run_id / "run.json").read_bytes() == text
    assert len([p for p in (root / "runs/tiny").iterdir() if (p / "run.json").is_file()]) == 6
    # a failed point runs again in a new folder, and sweep.json says so
    events = [[(e["action"], e["after"]) for e in p["events"]] for p in after]
    again = [("started", None), ("restarted", "failed")]
    assert events == [again, again, [("started", None)], [("started", None)]]
    assert [e["run_id"] for e in after[0]["events"]] == after[0]["runs"]


def test_a_preempted_point_resumes_in_its_own_folder(project):
    """SIGTERM to `specforge sweep` (a scheduler stopping it) checkpoints the running point and
    stops the sweep; the same command again resumes that point in place from its checkpoint,
    then runs the point that never started."""
    root = project
    command = ["sweep", "specs/tiny.yaml", "--grid", "lora.r=4,8"]
    command += ["--set", "training.max_steps=6", "--set", "training.logging_steps=1"]
    command += ["--set", "training.eval_strategy=no"]
    process = subprocess.Popen(
        [sys.executable, "-m", "specforge", *command],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=(root / "first.log").open("w"),
        start_new_session=True,
    )

    def first_loss():
        found = list((root / "runs/tiny").glob("*/metrics.jsonl"))
        return found and '"loss"' in found[0].read_text()

    wait_for(first_loss, process, "the first point's first loss")
    os.kill(process.pid, signal.SIGTERM)  # the sweep only: its runner passes the signal on
    assert process.wait(timeout=120) == 75, (root / "first.log").read_text()[-3000:]
    assert "sweep preempted" in (root / "first.log").read_text()
    first = manifest(root)["points"]
    (run_id,) = first[0]["runs"]
    assert first[1]["runs"] == []  # the sweep stopped: the next point never started
    stopped = record(root, run_id)
    at = stopped["attempts"][-1]["step_reached"]
    assert stopped["status"] == "preempted" and 0 < at < 6

    again = run_cli(*command, cwd=root)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resume runs/tiny/{run_id} (was preempted)" in again.stderr
    points = manifest(root)["points"]
    assert points[0]["runs"] == [run_id]  # the same folder
    assert [(e["action"], e["after"]) for e in points[0]["events"]] == [
        ("started", None),
        ("resumed", "preempted"),
    ]
    done = record(root, run_id)
    assert [a["status"] for a in done["attempts"]] == ["preempted", "succeeded"]
    assert done["attempts"][1]["resumed_from"] == f"checkpoint-{at}"
    assert done["results"]["losses"]["steps"] == 6
    logged = [json.loads(line) for line in (root / "runs/tiny" / run_id / "metrics.jsonl").open()]
    assert [m["step"] for m in logged if "loss" in m] == list(range(1, 7))
    assert done["sweep"]["index"] == 0 and done["results"]["eval_base"]["n"] == 12
    # the second point ran once, sharing the first point's base evaluation
    (other,) = points[1]["runs"]
    assert record(root, other)["sweep"]["base_evaluation"] == run_id
    assert len([p for p in (root / "runs/tiny").iterdir() if (p / "run.json").is_file()]) == 2


def test_compare_ranks_the_sweep_and_plots(swept):
    root, sweep_id = swept["root"], swept["after_first"]["sweep_id"]
    result = run_cli("compare", sweep_id, "--format", "json", "--plot", "cmp.png", cwd=root)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["metric"] == "accuracy" and report["higher_is_better"] is True
    ranked = report["ranked"]
    assert [o["status"] for o in ranked[:2]] == ["succeeded", "succeeded"]
    assert ranked[0]["tuned"]["accuracy"] >= ranked[1]["tuned"]["accuracy"]
    assert report["best"] == ranked[0]["run_id"]
    assert ranked[0]["tokens_per_s"] > 0 and ranked[0]["wall_s"] > 0
    differs = {(d["section"], d["key"]) for d in report["differs"]}
    assert {("spec", "lora.r"), ("spec", "training.use_liger_kernel")} <= differs
    assert ("script", "train.py") in differs  # each point compiles its own scripts
    assert (root / "cmp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = run_cli("compare", sweep_id, cwd=root)
    assert f"best: {report['best']}" in text.stdout
    assert "what differs:" in text.stdout and "spec: lora.r" in text.stdout
    markdown = run_cli("compare", sweep_id, "--format", "markdown", "--by", "eval_loss", cwd=root)
    assert "| rank | run |" in markdown.stdout and "lower is better" in markdown.stdout


def test_runs_filters_and_exports_the_sweep(swept):
    root, sweep_id = swept["root"], swept["after_first"]["sweep_id"]
    listed = run_cli(
        "runs", "--sweep", sweep_id, "--status", "succeeded", "--format", "json", cwd=root
    )
    rows = json.loads(listed.stdout)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"succeeded"}
    assert {r["sweep"] for r in rows} == {sweep_id}
    exported = run_cli("runs", "--export", "csv", "--status", "failed", cwd=root)
    table = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(table) == 4 and {r["status"] for r in table} == {"failed"}
    assert {r["spec.training.use_liger_kernel"] for r in table} == {"True"}
    lines = run_cli("runs", "--export", "jsonl", cwd=root).stdout.splitlines()
    assert len(lines) == 6
    assert all(json.loads(line)["run_id"] for line in lines)


def test_the_spec_sweep_section_drives_a_dry_run(project):
    spec = project / "specs/tiny.yaml"
    spec.write_text(
        spec.read_text() + "sweep:\n  grid:\n    training.learning_rate: [1.0e-3, 2.0e-2]\n"
    )
    result = run_cli("sweep", "specs/tiny.yaml", "--dry-run", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "(2 points)" in result.stdout
    assert "point 2/2: --set training.learning_rate=0.02" in result.stdout
    assert not (project / "runs").exists()
    # --grid replaces the spec's grid: another sweep, another id
    other = run_cli("sweep", "specs/tiny.yaml", "--grid", "lora.r=2,4,8", "--dry-run", cwd=project)
    assert "(3 points)" in other.stdout and other.stdout.split()[1] != result.stdout.split()[1]


def test_bad_grids_fail_before_anything_runs(project):
    missing = run_cli("sweep", "specs/tiny.yaml", cwd=project)
    assert missing.returncode == 2 and "has no sweep.grid" in missing.stderr
    empty = run_cli("sweep", "specs/tiny.yaml", "--grid", "lora.r=8,,16", cwd=project)
    assert empty.returncode == 2 and "no empty value" in empty.stderr
    invalid = run_cli("sweep", "specs/tiny.yaml", "--grid", "lora.r=8,0,-1", cwd=project)
    assert invalid.returncode == 1
    assert "--set lora.r=0: error: lora.r: must be greater than 0 (got 0)" in invalid.stderr
    assert "--set lora.r=-1: error" in invalid.stderr
    assert not (project / "runs").exists()


def test_points_from_different_parents_do_not_share_a_base_evaluation():
    """A run with model.adapter scores its parent as the base: one evaluation per parent."""
    from specforge.experiments.sweep import evaluation_group, load_sweep
    from tests.conftest import REPO

    grid = ["model.adapter=runs/quickstart/a,runs/quickstart/b", "training.learning_rate=1e-4,2e-4"]
    sweep = load_sweep(REPO / "specs/quickstart-dpo.yaml", None, grid, allow_remote_code=False)
    groups = [evaluation_group(point) for point in sweep.points]
    assert groups[0] == groups[1] != groups[2] == groups[3]
