"""training.report_to: mlflow and trackio against real local stores (sqlite), their preflights,
and the provenance specforge passes through the environment."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from specforge.runs.trackers import provenance, train_env
from tests.conftest import run_cli

pytestmark = pytest.mark.train

RECORD = {
    "run_id": "20260101T000000Z-abcdef",
    "name": "tiny",
    "spec": {
        "path": "specs/tiny.yaml",
        "sha256": "a" * 64,
        "overrides": ["lora.r=4"],
        "resolved": {"lora": {"r": 4}},
    },
    "scripts": {"sha256": {"train.py": "b" * 64, "infer.py": "c" * 64}},
    "data": {"train": {"path": "data/train.jsonl", "sha256": "d" * 64}},
    "git": {"commit": "e" * 40, "dirty": True},
    "versions": {"specforge": "0.1.0"},
    "sweep": {"id": "sweep-0123456789"},
}


def test_provenance_names_the_run_spec_hashes_and_sweep():
    tags = provenance(RECORD)
    assert tags["specforge.run_id"] == RECORD["run_id"]
    assert tags["specforge.spec_sha256"] == "a" * 64
    assert tags["specforge.sha256.train.py"] == "b" * 64
    assert tags["specforge.sha256.data.train"] == "d" * 64
    assert tags["specforge.git_dirty"] == "true"
    assert tags["specforge.sweep_id"] == "sweep-0123456789"
    assert json.loads(tags["specforge.spec_resolved"]) == {"lora": {"r": 4}}


def test_train_env_keeps_the_callers_tags_and_experiment():
    assert train_env(["tensorboard"], RECORD, {}) == {}
    trackio = train_env(["trackio"], RECORD, {})
    assert json.loads(trackio["SPECFORGE_PROVENANCE"]) == provenance(RECORD)
    env = train_env(["mlflow"], RECORD, {"MLFLOW_TAGS": '{"team": "nlp"}'})
    tags = json.loads(env["MLFLOW_TAGS"])
    assert tags["team"] == "nlp" and tags["mlflow.runName"] == RECORD["run_id"]
    assert env["MLFLOW_EXPERIMENT_NAME"] == "tiny"
    env = train_env(["mlflow"], RECORD, {"MLFLOW_EXPERIMENT_NAME": "mine"})
    assert env["MLFLOW_EXPERIMENT_NAME"] == "mine"


@pytest.fixture
def mlflow_project(project):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    spec = project / "specs/tiny.yaml"
    spec.write_text(
        spec.read_text().replace("  max_steps: 12", '  max_steps: 2\n  report_to: ["mlflow"]')
    )
    return project


def test_mlflow_run_is_named_and_tagged_from_the_record(mlflow_project):
    import mlflow

    store = f"sqlite:///{mlflow_project / 'mlflow.db'}"
    result = run_cli(
        "run",
        "specs/tiny.yaml",
        "--compile",
        cwd=mlflow_project,
        env={"MLFLOW_TRACKING_URI": store},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (mlflow_project / "runs/tiny").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    client = mlflow.MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("tiny")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == record["run_id"]
    tags = run.data.tags
    assert tags["specforge.run_id"] == record["run_id"]
    assert tags["specforge.spec_sha256"] == record["spec"]["sha256"]
    assert tags["specforge.sha256.train.py"] == record["scripts"]["sha256"]["train.py"]
    assert json.loads(tags["specforge.spec_resolved"]) == record["spec"]["resolved"]
    # transformers' callback logs the training arguments and the losses into the same run
    assert (
        float(run.data.params["learning_rate"])
        == record["spec"]["resolved"]["training"]["learning_rate"]
    )
    assert "loss" in run.data.metrics or "train_loss" in run.data.metrics


def test_mlflow_folder_store_is_refused_in_preflight(mlflow_project: Path):
    result = run_cli(
        "run",
        "specs/tiny.yaml",
        "--compile",
        cwd=mlflow_project,
        env={"MLFLOW_TRACKING_URI": str(mlflow_project / "mlruns"), "MLFLOW_ALLOW_FILE_STORE": ""},
    )
    assert result.returncode == 1
    (run_dir,) = (mlflow_project / "runs/tiny").iterdir()
    log = (run_dir / "train.log").read_text()
    assert "preflight failed" in log and "MLflow refuses the folder store" in log
    assert not (mlflow_project / "mlruns").exists()


@pytest.fixture
def trackio_project(project, monkeypatch):
    pytest.importorskip("trackio")
    for name in ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL", "TRACKIO_PROJECT"):  # local only
        monkeypatch.delenv(name, raising=False)
    spec = project / "specs/tiny.yaml"
    text = spec.read_text().replace("  logging_steps: 2", "  logging_steps: 1")
    spec.write_text(text.replace("  max_steps: 12", '  max_steps: 2\n  report_to: ["trackio"]'))
    return project


def test_trackio_run_is_named_after_the_run_and_carries_its_provenance(trackio_project):
    store = trackio_project / "trackio"
    env = {"TRACKIO_DIR": str(store)}
    result = run_cli("run", "specs/tiny.yaml", "--compile", cwd=trackio_project, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (trackio_project / "runs/tiny").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    # the spec's name is the project: one sqlite file in the store, nothing sent anywhere
    with sqlite3.connect(store / "tiny.db") as db:
        (name, config), *others = db.execute("SELECT run_name, config FROM configs").fetchall()
        logged = [json.loads(m) for (m,) in db.execute("SELECT metrics FROM metrics ORDER BY step")]
    assert not others and name == record["run_id"]
    config = json.loads(config)
    assert config["specforge.run_id"] == record["run_id"]
    assert config["specforge.spec_sha256"] == record["spec"]["sha256"]
    assert config["specforge.sha256.train.py"] == record["scripts"]["sha256"]["train.py"]
    assert config["specforge.sha256.data.train"] == record["data"]["train"]["sha256"]
    assert json.loads(config["specforge.spec_resolved"]) == record["spec"]["resolved"]
    # transformers' callback logs the arguments and the losses into the same run
    assert config["learning_rate"] == record["spec"]["resolved"]["training"]["learning_rate"]
    assert config["trackio_static_space_id"] is False and config["project"] == "tiny"
    losses = {m["train/global_step"]: m["train/loss"] for m in logged if "train/loss" in m}
    entries = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    mine = {m["step"]: m["loss"] for m in entries if "loss" in m}
    assert sorted(losses) == [1, 2] and all(losses[s] == mine[s] for s in losses)


def test_what_trackio_would_refuse_fails_in_preflight(trackio_project):
    env = {"TRACKIO_DIR": str(trackio_project / "trackio"), "TRACKIO_PROJECT": "registry-tiny"}
    env |= {"TRACKIO_SPACE_ID": "", "HF_TOKEN": ""}  # set but empty: trackio would try a Space
    result = run_cli("run", "specs/tiny.yaml", "--compile", cwd=trackio_project, env=env)
    assert result.returncode == 1
    (run_dir,) = (trackio_project / "runs/tiny").iterdir()
    log = (run_dir / "train.log").read_text()
    assert "preflight failed" in log and "reserved for trackio registries" in log
    assert "TRACKIO_SPACE_ID needs a Space id and HF_TOKEN" in log
    assert not (trackio_project / "trackio").exists()


def test_a_missing_trackio_is_named_in_preflight_not_a_traceback(trackio_project):
    """train.py imports trackio only where it uses it, so preflight() runs first and says so."""
    assert run_cli("compile", "specs/tiny.yaml", cwd=trackio_project).returncode == 0
    hide = (
        "import runpy, sys; sys.modules['trackio'] = None; "  # an import of it fails, as uninstalled
        "sys.argv = ['train.py', '--output-dir', 'runs/tiny/x']; "
        "runpy.run_path('generated/tiny/train.py', run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide],
        cwd=trackio_project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "preflight failed" in result.stderr and "trackio" in result.stderr
