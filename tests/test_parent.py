"""model.adapter resolution (specforge/parent.py): which run is the parent, and its fingerprint."""

from __future__ import annotations

import hashlib
import json

import pytest

from specforge.parent import ParentError, resolve_parent


def fake_run(root, name, run_id, status, adapter=True):
    run = root / "runs" / name / run_id
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"run_id": run_id, "name": name, "status": status}))
    if adapter:
        (run / "adapter").mkdir()
        (run / "adapter/adapter_config.json").write_text("{}")
        (run / "adapter/adapter_model.safetensors").write_bytes(run_id.encode())
    return run


def test_latest_is_the_newest_succeeded_run_with_an_adapter(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_run(tmp_path, "sft", "20260101T000000Z-aaaaaa", "succeeded")
    fake_run(tmp_path, "sft", "20260102T000000Z-bbbbbb", "succeeded")
    fake_run(tmp_path, "sft", "20260103T000000Z-cccccc", "failed")
    fake_run(tmp_path, "sft", "20260104T000000Z-dddddd", "succeeded", adapter=False)
    parent = resolve_parent("runs/sft/latest")
    assert parent["run_id"] == "20260102T000000Z-bbbbbb" and parent["name"] == "sft"
    assert parent["path"] == "runs/sft/20260102T000000Z-bbbbbb"
    assert parent["adapter"] == "runs/sft/20260102T000000Z-bbbbbb/adapter"
    assert parent["adapter_sha256"] == hashlib.sha256(b"20260102T000000Z-bbbbbb").hexdigest()
    assert parent["status"] == "succeeded"


def test_a_named_run_folder_or_adapter_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = fake_run(tmp_path, "sft", "20260101T000000Z-aaaaaa", "succeeded")
    assert resolve_parent("runs/sft/20260101T000000Z-aaaaaa")["run_id"] == run.name
    bare = resolve_parent("runs/sft/20260101T000000Z-aaaaaa/adapter")
    assert bare["adapter"] == "runs/sft/20260101T000000Z-aaaaaa/adapter"
    assert bare["run_id"] is None and len(bare["adapter_sha256"]) == 64


@pytest.mark.parametrize("adapter", ["runs/sft/latest", "runs/sft/nope"])
def test_no_parent_says_what_to_run(tmp_path, monkeypatch, adapter):
    monkeypatch.chdir(tmp_path)
    fake_run(tmp_path, "sft", "20260101T000000Z-aaaaaa", "failed")
    with pytest.raises(ParentError) as err:
        resolve_parent(adapter)
    message = str(err.value)
    assert message.startswith(f"model.adapter: {adapter}")
    if adapter.endswith("latest"):
        assert "specforge run specs/sft.yaml" in message
