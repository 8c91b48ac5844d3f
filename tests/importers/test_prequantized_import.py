"""Pre-quantized bases on import (issue 25, item 7): axolotl's `gptq: true` and LLaMA-Factory's
PTQ models, whose format the importer reads from the model id's suffix (it cannot download the
checkpoint's config.json), reported as approximated."""

from __future__ import annotations

from pathlib import Path

import yaml

from specforge.importers import import_config
from specforge.importers.result import NO_EFFECT
from tests.conftest import REPO

CONFIGS = REPO / "tests/importers/configs"


def variant(tmp_path: Path, name: str, **keys) -> Path:
    """A sample config with `keys` replaced (None deletes one)."""
    data = yaml.safe_load((CONFIGS / name).read_text())
    data |= keys
    data = {k: v for k, v in data.items() if v is not None}
    path = tmp_path / Path(name).name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_axolotl_gptq_is_declared_and_exllama_has_no_effect():
    result = import_config(CONFIGS / "axolotl/gptq-lora.yml")
    assert result.draft.get("model.prequantized") == {"method": "gptq", "bits": 4}
    assert "gptq" in result.carried
    [exllama] = [d for d in result.dropped if d.key == "gptq_disable_exllama"]
    assert exllama.kind == NO_EFFECT


def test_axolotl_gptq_full_fine_tuning_blocks(tmp_path):
    result = import_config(variant(tmp_path, "axolotl/gptq-lora.yml", adapter=None))
    [gptq] = [d for d in result.blocking if d.key == "gptq"]
    assert "SF082" in gptq.reason


def test_llamafactory_infers_the_format_from_the_model_id(monkeypatch):
    monkeypatch.chdir(REPO)
    for name, method in (
        ("llama3_lora_sft_awq.yaml", "awq"),
        ("llama3_lora_sft_gptq.yaml", "gptq"),
    ):
        result = import_config(CONFIGS / "llamafactory" / name)
        assert result.draft.get("model.prequantized") == {"method": method, "bits": 4}
        assert result.draft.get("model.quantization") is None
        [how] = [d for d in result.dropped if d.key == "model_name_or_path"]
        assert "inferred from the model id" in how.reason and result.blocking == []
    # AWQ runs in float16: the example's bf16 becomes fp16, reported
    awq = import_config(CONFIGS / "llamafactory/llama3_lora_sft_awq.yaml")
    assert awq.draft.get("training.precision") == "fp16"
    assert awq.draft.get("model.dtype") == "float16"
    assert any(d.key == "bf16" for d in awq.dropped)


def test_llamafactory_quantization_bit_has_no_effect_on_a_ptq_model(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = variant(tmp_path, "llamafactory/llama3_lora_sft_gptq.yaml", quantization_bit=4)
    config.with_name("dataset_info.json").write_bytes(
        (CONFIGS / "llamafactory/dataset_info.json").read_bytes()
    )
    result = import_config(config)
    assert result.draft.get("model.quantization") is None
    [bit] = [d for d in result.dropped if d.key == "quantization_bit"]
    assert "ignores it on a PTQ model" in bit.reason


def test_llamafactory_full_fine_tuning_of_a_ptq_model_blocks(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = variant(tmp_path, "llamafactory/llama3_lora_sft_gptq.yaml", finetuning_type="full")
    config.with_name("dataset_info.json").write_bytes(
        (CONFIGS / "llamafactory/dataset_info.json").read_bytes()
    )
    result = import_config(config)
    assert [d.key for d in result.blocking] == ["model_name_or_path"]
