"""Experiment trackers (training.report_to): specforge's provenance on the tracker's run.

transformers' MLflow callback reads its settings from the environment, so the runner passes the
train step the run's provenance there: the tracker run is named after the specforge run id and
tagged with the spec, its sha256, the overrides, the scripts' and data's sha256, git and the
sweep, and the resolved spec itself. Nothing from the caller's environment is recorded.

trackio reads nothing from the environment that names a run, so a spec that reports to it
compiles a train.py that names the run after its folder (the run id), in the spec's project
(or TRACKIO_PROJECT), and adds SPECFORGE_PROVENANCE (the same tags, as JSON) to the run's config.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

# MLflow's limit on a tag's value (mlflow.utils.validation.MAX_TAG_VAL_LENGTH)
MAX_TAG_CHARS = 8000


def provenance(data: dict) -> dict[str, str]:
    """Tags naming where a tracker run came from, from run.json's fields."""
    spec, git = data.get("spec") or {}, data.get("git") or {}
    tags = {
        "specforge.run_id": data["run_id"],
        "specforge.run_dir": f"runs/{data['name']}/{data['run_id']}",
        "specforge.spec": spec.get("path"),
        "specforge.spec_sha256": spec.get("sha256"),
        "specforge.overrides": " ".join(spec.get("overrides") or []),
        "specforge.git_commit": git.get("commit"),
        "specforge.git_dirty": git.get("dirty"),
        "specforge.version": (data.get("versions") or {}).get("specforge"),
    }
    for name, sha in ((data.get("scripts") or {}).get("sha256") or {}).items():
        tags[f"specforge.sha256.{name}"] = sha
    for part, fingerprint in (data.get("data") or {}).items():
        if fingerprint.get("sha256"):
            tags[f"specforge.sha256.data.{part}"] = fingerprint["sha256"]
    if data.get("sweep"):
        tags["specforge.sweep_id"] = data["sweep"]["id"]
    resolved = json.dumps(spec.get("resolved"), sort_keys=True, separators=(",", ":"))
    if len(resolved) <= MAX_TAG_CHARS:  # a larger spec is in the run folder's spec.resolved.yaml
        tags["specforge.spec_resolved"] = resolved
    return {
        k: str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in tags.items()
        if v is not None
    }


def train_env(report_to: Sequence[str], data: dict, environ: Mapping[str, str]) -> dict[str, str]:
    """Environment variables for the train step: the tracker's provenance, merged with what the
    caller set (theirs win on a clash, except the run name)."""
    env: dict[str, str] = {}
    if "mlflow" in report_to:
        theirs = json.loads(environ.get("MLFLOW_TAGS") or "{}")
        tags = {**provenance(data), **theirs, "mlflow.runName": data["run_id"]}
        env["MLFLOW_TAGS"] = json.dumps(tags)
        env["MLFLOW_EXPERIMENT_NAME"] = environ.get("MLFLOW_EXPERIMENT_NAME") or data["name"]
    if "trackio" in report_to:
        env["SPECFORGE_PROVENANCE"] = json.dumps(provenance(data), sort_keys=True)
    return env
