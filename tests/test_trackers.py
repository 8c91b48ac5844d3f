"""training.report_to: mlflow against a real local MLflow store (sqlite), its preflight, and the
provenance tags specforge passes through the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specforge.trackers import provenance, train_env
from tests.conftest import run_cli

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
