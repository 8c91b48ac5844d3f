"""model.adapter resolution (specforge/runs/lineage.py): which run is the parent, and its fingerprint."""

from __future__ import annotations

import hashlib
import json

import pytest

from specforge.runs.lineage import ParentError, resolve_model_parent, resolve_parent


def fake_run(root, name, run_id, status, adapter=True, **fields):
    run = root / "runs" / name / run_id
    run.mkdir(parents=True)
    record = {"run_id": run_id, "name": name, "status": status, **fields}
    (run / "run.json").write_text(json.dumps(record))
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


def test_latest_skips_runs_with_overrides_and_sweep_points(tmp_path, monkeypatch):
    """Defect: after a 4-step sweep, `runs/quickstart/latest` was a sweep point (0.8 % accuracy),
    not the 85 % demo run; a `--set` smoke run would have been picked the same way."""
    monkeypatch.chdir(tmp_path)
    plain = {"spec": {"overrides": []}}
    fake_run(tmp_path, "sft", "20260101T000000Z-aaaaaa", "succeeded", **plain)
    fake_run(
        tmp_path,
        "sft",
        "20260102T000000Z-bbbbbb",
        "succeeded",
        spec={"overrides": ["training.max_steps=4"]},
        sweep={"id": "s", "index": 0},
    )
    fake_run(
        tmp_path,
        "sft",
        "20260103T000000Z-cccccc",
        "succeeded",
        spec={"overrides": ["training.max_steps=8"]},
    )
    assert resolve_parent("runs/sft/latest")["run_id"] == "20260101T000000Z-aaaaaa"
    # a pinned run is taken as named, overrides or not
    assert resolve_parent("runs/sft/20260103T000000Z-cccccc")["run_id"] == "20260103T000000Z-cccccc"


def test_a_bare_run_id_names_its_run(tmp_path, monkeypatch):
    """The id `specforge runs` shows pins a parent: model.adapter: 20260102T000000Z-bbbbbb."""
    monkeypatch.chdir(tmp_path)
    fake_run(tmp_path, "sft", "20260101T000000Z-aaaaaa", "succeeded")
    fake_run(tmp_path, "sft", "20260102T000000Z-bbbbbb", "succeeded")
    parent = resolve_parent("20260101T000000Z-aaaaaa")
    assert parent["path"] == "runs/sft/20260101T000000Z-aaaaaa"
    assert parent["run_id"] == "20260101T000000Z-aaaaaa"
    with pytest.raises(ParentError):
        resolve_parent("20260109T000000Z-ffffff")


def test_run_says_which_parent_it_resolved_and_its_figure(tmp_path, monkeypatch):
    from specforge.runs.runner import parent_line
    from specforge.spec.models import Spec

    monkeypatch.chdir(tmp_path)
    results = {"eval_tuned": {"accuracy": 0.85, "n": 120}}
    fake_run(tmp_path, "sft", "20260101T000000Z-aaaaaa", "succeeded", results=results)
    spec = Spec.model_validate(
        {
            "spec_version": 1,
            "name": "dpo",
            "model": {"name": "m", "adapter": "runs/sft/latest"},
            "dataset": {"path": "d.jsonl"},
            "prompt": {"template": "{text}", "completion": "{label}"},
        }
    )
    line = parent_line(spec, resolve_parent("runs/sft/latest"))
    assert "runs/sft/20260101T000000Z-aaaaaa" in line and "(model.adapter: runs/sft/latest)" in line
    assert line.endswith("accuracy 85.0% on 120 held-out rows")


# --- lora: null: the parent is whole weights (a full fine-tuning run's model/, a merged export) ---


def fake_model(folder, weights: bytes):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(weights)


def test_full_parent_latest_is_the_newest_run_with_a_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_run(tmp_path, "sft", "20260101T000000Z-aaaaaa", "succeeded", adapter=False)
    fake_model(tmp_path / "runs/sft/20260101T000000Z-aaaaaa/model", b"weights")
    fake_run(tmp_path, "sft", "20260102T000000Z-bbbbbb", "succeeded")  # an adapter run
    parent = resolve_model_parent("runs/sft/latest")
    assert parent["run_id"] == "20260101T000000Z-aaaaaa" and parent["name"] == "sft"
    assert parent["adapter"] == "runs/sft/20260101T000000Z-aaaaaa/model"
    assert parent["model_sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert "adapter_sha256" not in parent


def test_full_parent_merged_export_names_its_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = fake_run(tmp_path, "sft", "20260101T000000Z-aaaaaa", "succeeded")
    export = run / "export/merged"
    fake_model(export, b"merged")
    report = {"format": "merged", "passed": True, "agreement": 1.0}
    report["reference"] = "runs/sft/20260101T000000Z-aaaaaa/predictions.jsonl"
    (export / "eval.json").write_text(json.dumps(report))
    parent = resolve_model_parent("runs/sft/20260101T000000Z-aaaaaa/export/merged")
    assert parent["run_id"] == run.name and parent["status"] == "succeeded"
    assert parent["adapter"] == "runs/sft/20260101T000000Z-aaaaaa/export/merged"
    assert parent["model_sha256"] == hashlib.sha256(b"merged").hexdigest()
    assert parent["export"] == {"format": "merged", "passed": True, "agreement": 1.0}


def test_full_parent_with_sharded_weights_hashes_every_shard(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_model(tmp_path / "merged", b"one")
    (tmp_path / "merged/model.safetensors").rename(tmp_path / "merged/model-00001.safetensors")
    (tmp_path / "merged/model-00002.safetensors").write_bytes(b"two")
    lines = "".join(
        f"{hashlib.sha256(data).hexdigest()}  model-0000{i}.safetensors\n"
        for i, data in ((1, b"one"), (2, b"two"))
    )
    parent = resolve_model_parent("merged")
    assert parent["model_sha256"] == hashlib.sha256(lines.encode()).hexdigest()
    assert parent["run_id"] is None


@pytest.mark.parametrize("named", ["run", "adapter-folder", "empty"])
def test_full_parent_refuses_an_adapter_or_nothing(tmp_path, monkeypatch, named):
    monkeypatch.chdir(tmp_path)
    fake_run(tmp_path, "sft", "20260101T000000Z-aaaaaa", "succeeded")
    (tmp_path / "empty").mkdir()
    adapter = {
        "run": "runs/sft/20260101T000000Z-aaaaaa",
        "adapter-folder": "runs/sft/20260101T000000Z-aaaaaa/adapter",
        "empty": "empty",
    }[named]
    with pytest.raises(ParentError) as err:
        resolve_model_parent(adapter)
    message = str(err.value)
    assert message.startswith(f"model.adapter: {adapter}")
    if named == "empty":
        assert "holds no model" in message
    else:
        assert "is a LoRA adapter" in message and "--format merged" in message


def test_full_parent_latest_without_a_model_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_run(tmp_path, "sft", "20260101T000000Z-aaaaaa", "succeeded")  # an adapter only
    with pytest.raises(ParentError, match="no succeeded full fine-tuning run"):
        resolve_model_parent("runs/sft/latest")


@pytest.mark.parametrize("full", [False, True], ids=["lora", "lora-null"])
def test_the_spec_s_lora_decides_which_parent_model_adapter_names(tmp_path, monkeypatch, full):
    """`runs/sft/latest` with a LoRA run and a newer full run: LoRA continues the adapter, full
    fine-tuning the whole weights. Without model.adapter there is no parent."""
    from specforge.runs.lineage import spec_parent
    from specforge.spec.models import Spec

    monkeypatch.chdir(tmp_path)
    lora_run = fake_run(tmp_path, "sft", "20260101T000000Z-aaaaaa", "succeeded")
    full_run = fake_run(tmp_path, "sft", "20260102T000000Z-bbbbbb", "succeeded", adapter=False)
    fake_model(full_run / "model", b"weights")
    data = {"spec_version": 1, "name": "t", "model": {"name": "base"}}
    data |= {"dataset": {"path": "x.jsonl"}, "prompt": {"template": "{a}", "completion": "{b}"}}
    data["lora"] = None if full else {}
    assert spec_parent(Spec.model_validate(data, strict=False)) is None
    data["model"]["adapter"] = "runs/sft/latest"
    parent = spec_parent(Spec.model_validate(data, strict=False))
    expected = full_run / "model" if full else lora_run / "adapter"
    assert parent["adapter"] == expected.relative_to(tmp_path).as_posix()
    assert ("model_sha256" in parent) is full and ("adapter_sha256" in parent) is not full
