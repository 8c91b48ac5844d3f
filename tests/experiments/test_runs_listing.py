"""`specforge runs` on hand-written run records: columns, filters, JSON, and the dead-runner rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from specforge import cli
from specforge.runs.record import process_start
from tests.conftest import tiny_spec
from tests.helpers import write_record


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


FINISHED = {
    "losses": {"steps": 12, "final_train_loss": 1.23456, "final_eval_loss": 2.5},
    "eval_tuned": {"accuracy": 0.75, "n": 8},
    "eval_base": {"accuracy": 0.25, "n": 8},
}


@pytest.fixture
def runs_root(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_record(tmp_path, "alpha", "20260101T000000Z-aaaaaa", results=FINISHED)
    write_record(
        tmp_path,
        "alpha",
        "20260102T000000Z-bbbbbb",
        status="failed",
        failed_step="train",
        results={"losses": {"steps": 3, "final_train_loss": 4.0}},
    )
    write_record(
        tmp_path,
        "beta",
        "20260103T000000Z-cccccc",
        status="interrupted",
        metrics=[{"step": 1, "loss": 9.5}, {"step": 2, "loss": 8.25}],
    )
    return tmp_path


def runs_json(*args: str) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "specforge", "runs", *args, "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def test_runs_lists_every_spec_as_plain_table_when_piped(runs_root, capsys):
    assert cli.main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "spec",
        "run",
        "status",
        "steps",
        "train",
        "loss",
        "eval",
        "loss",
        "acc",
        "tuned",
        "acc",
        "base",
    ]
    rows = [line.split() for line in lines[1:]]
    assert rows == [
        [
            "alpha",
            "20260101T000000Z-aaaaaa",
            "succeeded",
            "12",
            "1.2346",
            "2.5000",
            "0.7500",
            "0.2500",
        ],
        ["alpha", "20260102T000000Z-bbbbbb", "failed", "3", "4.0000", "-", "-", "-"],
        ["beta", "20260103T000000Z-cccccc", "interrupted", "2", "8.2500", "-", "-", "-"],
    ]


def test_runs_json_carries_losses_and_both_accuracies(runs_root, capsys):
    assert cli.main(["runs", "--format", "json"]) == 0
    rows = {row["run_id"]: row for row in json.loads(capsys.readouterr().out)}
    done = rows["20260101T000000Z-aaaaaa"]
    assert done["status"] == "succeeded" and done["steps"] == 12
    assert done["final_train_loss"] == 1.23456 and done["final_eval_loss"] == 2.5
    assert done["accuracy_tuned"] == 0.75 and done["accuracy_base"] == 0.25
    # a killed run never wrote results: the listing reads its metrics.jsonl
    assert rows["20260103T000000Z-cccccc"]["final_train_loss"] == 8.25


def test_runs_filters_by_spec_name_or_spec_file(runs_root, capsys):
    (runs_root / "specs").mkdir()
    (runs_root / "specs/b.yaml").write_text(tiny_spec(Path("models/absent"), name="beta"))
    assert cli.main(["runs", "alpha", "--format", "json"]) == 0
    assert {r["name"] for r in json.loads(capsys.readouterr().out)} == {"alpha"}
    assert cli.main(["runs", "specs/b.yaml", "--format", "json"]) == 0
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)] == ["20260103T000000Z-cccccc"]


def test_runs_uses_a_rich_table_on_a_terminal(runs_root, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "160")
    assert cli.main(["runs", "beta"]) == 0
    out = capsys.readouterr().out
    assert "┃" in out or "│" in out  # box drawing: rich drew it
    assert "20260103T000000Z-cccccc" in out and "interrupted" in out


def test_dead_runner_is_reported_and_rewritten_as_interrupted(runs_root):
    run_dir = write_record(
        runs_root,
        "gamma",
        "20260104T000000Z-dddddd",
        status="running",
        pid=dead_pid(),
        step_process={"name": "train", "pid": dead_pid()},
        attempts=[{"status": "running"}],
    )
    [row] = runs_json("gamma")
    assert row["status"] == "interrupted"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted" and record["failed_step"] == "train"
    assert record["attempts"][-1]["status"] == "interrupted"
    assert "is gone" in record["interrupted"]


def test_live_runner_or_other_host_stays_running(runs_root):
    me = os.getpid()
    write_record(
        runs_root,
        "gamma",
        "20260104T000000Z-live00",
        status="running",
        pid=me,
        pid_start=process_start(me),
    )
    write_record(
        runs_root,
        "gamma",
        "20260104T000000Z-remote",
        status="running",
        pid=dead_pid(),
        host="another-host",
    )
    assert {r["status"] for r in runs_json("gamma")} == {"running"}


def test_orphaned_step_keeps_the_run_running(runs_root):
    """Only the runner was killed: its train.py still writes into the folder; not resumable yet."""
    me = os.getpid()
    write_record(
        runs_root,
        "gamma",
        "20260104T000000Z-orphan",
        status="running",
        pid=dead_pid(),
        step_process={"name": "train", "pid": me, "pid_start": process_start(me)},
    )
    assert [r["status"] for r in runs_json("gamma")] == ["running"]


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc")
def test_reused_pid_counts_as_dead(runs_root):
    me = os.getpid()
    write_record(
        runs_root,
        "gamma",
        "20260104T000000Z-reused",
        status="running",
        pid=me,
        pid_start=process_start(me) - 1,
    )
    assert [r["status"] for r in runs_json("gamma")] == ["interrupted"]


def test_lenient_accuracy_shown_beside_strict_when_recorded(runs_root, capsys):
    write_record(
        runs_root,
        "delta",
        "20260105T000000Z-eeeeee",
        results={
            "losses": {"steps": 4, "final_train_loss": 1.0},
            "eval_tuned": {"accuracy": 0.5, "lenient_accuracy": 0.625, "n": 8},
            "eval_base": {"accuracy": 0.125, "lenient_accuracy": 0.375, "n": 8},
        },
    )
    assert cli.main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-8:] == [
        "acc", "tuned", "lenient", "tuned", "acc", "base", "lenient", "base"
    ]  # fmt: skip
    rows = {line.split()[1]: line.split() for line in lines[1:]}
    assert rows["20260105T000000Z-eeeeee"][-4:] == ["0.5000", "0.6250", "0.1250", "0.3750"]
    assert rows["20260101T000000Z-aaaaaa"][-4:] == ["0.7500", "-", "0.2500", "-"]
    assert cli.main(["runs", "--format", "json"]) == 0
    json_rows = {row["run_id"]: row for row in json.loads(capsys.readouterr().out)}
    lenient = json_rows["20260105T000000Z-eeeeee"]
    assert lenient["lenient_accuracy_tuned"] == 0.625 and lenient["lenient_accuracy_base"] == 0.375
    assert lenient["accuracy_tuned"] == 0.5
    assert json_rows["20260101T000000Z-aaaaaa"]["lenient_accuracy_tuned"] is None


def test_the_base_columns_say_parent_when_a_run_scored_its_parent(tmp_path, monkeypatch, capsys):
    """A DPO run that continued an SFT adapter was compared with that adapter, not the base."""
    monkeypatch.chdir(tmp_path)
    score = {"accuracy": 0.85, "lenient_accuracy": 0.85, "n": 4}
    results = {"eval_tuned": score, "eval_base": score}
    write_record(tmp_path, "sft", "20260101T000000Z-aaaaaa", results=results)
    write_record(
        tmp_path,
        "dpo",
        "20260102T000000Z-bbbbbb",
        results=results,
        base_evaluation={"model": "parent", "path": "runs/sft/20260101T000000Z-aaaaaa/adapter"},
    )
    assert cli.main(["runs", "dpo"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "acc parent" in header and "lenient parent" in header and "base" not in header
    assert cli.main(["runs"]) == 0
    assert "acc base/parent" in capsys.readouterr().out.splitlines()[0]
    assert cli.main(["runs", "sft", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["base_model"] is None


def test_chat_runs_show_exact_match_and_rouge_l(tmp_path, monkeypatch, capsys):
    """Defect: a chat run (no labels) showed "-" in every metric column."""
    monkeypatch.chdir(tmp_path)
    chat = {"exact_match": 0.975, "rouge_l": 0.99, "token_f1": 0.98, "n": 40}
    write_record(
        tmp_path,
        "chat",
        "20260101T000000Z-aaaaaa",
        results={"eval_tuned": chat, "eval_base": {**chat, "exact_match": 0.1, "rouge_l": 0.3}},
    )
    assert cli.main(["runs", "chat"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert "EM tuned" in header and "ROUGE-L tuned" in header and "acc" not in header
    assert row.split()[-4:] == ["0.9750", "0.9900", "0.1000", "0.3000"]


def test_a_running_run_shows_the_step_training_is_at(tmp_path, monkeypatch, capsys):
    """Defect: the steps column was the last logged step (5) while training was at step 9."""
    monkeypatch.chdir(tmp_path)
    run_dir = write_record(
        tmp_path,
        "q",
        "20260101T000000Z-aaaaaa",
        status="running",
        pid=os.getpid(),
        pid_start=process_start(os.getpid()),
        spec={"resolved": {"training": {"max_steps": 30}}},
        metrics=[{"step": 5, "loss": 2.0}],
    )
    bars = " 30%|###| 9/30 [00:50<02:00, 5.0s/it]\r 10%|#| 1/10 [00:01<00:09]\r"
    (run_dir / "train.log").write_text("Map: 100%|#| 40/40 [00:00]\n" + bars)
    assert runs_json("q")[0]["steps"] == 9


def test_runs_latest_prints_the_folder_latest_names(tmp_path, monkeypatch, capsys):
    """`make export-demo` takes this, not `ls runs/quickstart/*/ | tail -1` (a sweeps/ folder)."""
    monkeypatch.chdir(tmp_path)
    write_record(tmp_path, "q", "20260101T000000Z-aaaaaa", spec={"overrides": []})
    write_record(tmp_path, "q", "20260102T000000Z-bbbbbb", spec={"overrides": ["a=1"]})
    write_record(tmp_path, "q", "20260103T000000Z-cccccc", status="failed", spec={"overrides": []})
    (tmp_path / "runs/q/sweeps/s1").mkdir(parents=True)
    assert cli.main(["runs", "q", "--latest"]) == 0
    assert capsys.readouterr().out == "runs/q/20260101T000000Z-aaaaaa\n"
    assert cli.main(["runs", "nothing", "--latest"]) == 1
