"""`specforge export` of a run whose base is a pre-quantized checkpoint (issue 25, item 7): the
adapter is made portable as for any run; merged, gguf and ollama (which all merge the adapter into
the base first) are refused with the reason, before any format module runs. The run folder is
made by hand: training on GPTQ weights needs gptqmodel and a GPU."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

import specforge.export
from specforge.cli import main as cli_main
from specforge.export import ExportError, export_run
from specforge.spec.models import Spec

SPEC: dict = {
    "spec_version": 1,
    "name": "gptq-lora",
    "model": {
        "name": "TheBloke/Mistral-7B-v0.1-GPTQ",
        "prequantized": {"method": "gptq", "bits": 4},
        "dtype": "float16",
    },
    "dataset": {"path": "FinGPT/fingpt-sentiment-train"},
    "prompt": {"template": "Q: {question}\nA: ", "completion": "{answer}"},
    "training": {"precision": "fp16"},
    "inference": {"examples": [{"question": "Up or down?"}]},
}


@pytest.fixture(autouse=True)
def formats_that_must_not_run(monkeypatch):
    """Every format is installed here, and none may be asked to build anything."""

    def built(*args, **kwargs):
        raise AssertionError("a format module ran for a pre-quantized base")

    module = SimpleNamespace(export=built)
    monkeypatch.setattr(specforge.export, "format_module", lambda name: module)


@pytest.fixture
def run_dir(tmp_path):
    """A succeeded run folder as `specforge run` leaves it: run.json, the adapter, the answers."""
    folder = tmp_path / "runs" / "gptq-lora" / "20260101T000000Z-aaaaaa"
    (folder / "adapter").mkdir(parents=True)
    config = {"base_model_name_or_path": SPEC["model"]["name"], "r": 16, "peft_type": "LORA"}
    (folder / "adapter" / "adapter_config.json").write_text(json.dumps(config))
    resolved = Spec.model_validate(SPEC).model_dump(mode="json")
    record = {
        "status": "succeeded",
        "spec": {"resolved": resolved, "path": "specs/gptq.yaml", "overrides": [], "sha256": "0"},
        "scripts": {"dir": str(tmp_path / "generated" / "gptq-lora")},
        "run_id": folder.name,
        "data": {"train": {"hub": SPEC["dataset"]["path"], "split": "train"}},
    }
    (folder / "run.json").write_text(json.dumps(record))
    row = {"question": "Up or down?", "prediction": "up"}
    (folder / "examples.jsonl").write_text(json.dumps(row) + "\n")
    return folder


def test_merged_and_gguf_are_refused_and_the_adapter_is_still_exported(run_dir):
    said: list[str] = []
    for formats in (["merged"], ["gguf"], list(specforge.export.FORMATS)):
        with pytest.raises(ExportError) as refused:
            export_run(run_dir, formats, say=said.append)
        message = str(refused.value)
        assert "trained its adapter on a gptq checkpoint (TheBloke/Mistral-7B-v0.1-GPTQ)" in message
        assert f"--format {', '.join(formats)} cannot be built" in message
        assert "packed 4-bit weights cannot take the adapter merged in" in message
    assert not (run_dir / "export").exists()
    portable = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert portable["base_model_name_or_path"] == "TheBloke/Mistral-7B-v0.1-GPTQ"
    assert (run_dir / "adapter" / "README.md").is_file()
    assert any(line.startswith("adapter: ") for line in said)


def test_the_cli_exits_1_with_the_reason(run_dir, capsys):
    code = cli_main(["export", str(run_dir), "--format", "merged"])
    assert code == 1
    out = capsys.readouterr()
    assert "cannot take the adapter merged in" in out.out + out.err
    assert "Traceback" not in out.out + out.err
