"""Pre-quantized bases (model.prequantized, issue 25 item 7): SF080-SF086, each located at the
key to change, with a hint."""

from __future__ import annotations

import json

from specforge.validate.load import load_spec
from tests.helpers import diagnose, fired, only_rule

from .conftest import line_col, spec_text

GPTQ = {"method": "gptq", "bits": 4}
AWQ = {"method": "awq", "bits": 4}


def at(diag, text: str, needle: str, value: bool = False) -> None:
    """The diagnostic sits at `needle` (at its value when `value`: `key: ` skipped)."""
    line, col = line_col(text, needle)
    col += len(needle.split(": ")[0]) + 2 if value else 0
    assert (diag.location.line, diag.location.col) == (line, col)


def test_a_gptq_and_an_awq_spec_load_clean(write_spec):
    for declared, dtype, precision in ((GPTQ, "auto", "fp32"), (AWQ, "float16", "fp16")):
        text = spec_text(
            model={"name": "org/base-model", "prequantized": declared, "dtype": dtype},
            training={"precision": precision},
        )
        loaded = load_spec(write_spec(text))
        assert loaded.warnings == []
        declared_as = loaded.spec.model.prequantized
        assert declared_as is not None and declared_as.method == declared["method"]


def test_bitsandbytes_on_top_is_refused_at_model_quantization(write_spec):
    text = spec_text(model={"prequantized": GPTQ, "quantization": {"bits": 8}})
    diag = only_rule(diagnose(write_spec(text)), "SF080")
    assert diag.key == "model.quantization"
    assert "gptq checkpoint is quantized already" in diag.message
    assert "remove model.quantization" in diag.hints[0]
    at(diag, text, "bits: 8")


def test_a_gguf_file_is_no_prequantized_checkpoint(write_spec):
    model = {"name": "Model", "package": "llm_pkg", "gguf_file": "m.Q4_1.gguf"}
    text = spec_text(model={**model, "prequantized": GPTQ})
    [diag] = fired(diagnose(write_spec(text), check_files=False), "SF081")
    assert diag.severity == "error" and diag.key == "model.gguf_file"
    assert "dequantised into float weights" in diag.message
    at(diag, text, "gguf_file: m.Q4_1.gguf", value=True)


def test_full_fine_tuning_of_packed_weights_is_refused(write_spec):
    text = spec_text(model={"prequantized": GPTQ}, lora=None)
    diag = only_rule(diagnose(write_spec(text)), "SF082")
    assert diag.key == "model.prequantized"
    assert "packed integer weights cannot take gradient steps" in diag.message
    assert "`lora:`" in diag.hints[0]
    at(diag, text, "method: gptq")


def test_awq_stores_four_bits_only(write_spec):
    text = spec_text(
        model={"prequantized": {"method": "awq", "bits": 8}, "dtype": "float16"},
        training={"precision": "fp16"},
    )
    diag = only_rule(diagnose(write_spec(text)), "SF083")
    assert diag.message == "awq checkpoints store 4-bit weights, not 8"
    at(diag, text, "bits: 8", value=True)
    three = spec_text(model={"prequantized": {"method": "compressed-tensors", "bits": 3}})
    assert "store 4 or 8-bit weights" in only_rule(diagnose(write_spec(three)), "SF083").message


def test_awq_runs_in_float16(write_spec):
    text = spec_text(
        model={"prequantized": AWQ, "dtype": "bfloat16"}, training={"precision": "bf16"}
    )
    diag = only_rule(diagnose(write_spec(text)), "SF084")
    assert diag.key == "model.dtype" and "float16" in diag.hints[0]
    at(diag, text, "dtype: bfloat16", value=True)
    text = spec_text(model={"prequantized": AWQ}, training={"precision": "bf16"})
    diag = only_rule(diagnose(write_spec(text)), "SF084")
    assert diag.key == "training.precision" and "fp16" in diag.hints[0]


def test_what_peft_cannot_do_on_quantized_layers(write_spec):
    text = spec_text(
        model={"prequantized": AWQ, "dtype": "float16"},
        lora={"init_lora_weights": "pissa", "use_dora": True},
        training={"precision": "fp16"},
        launch={"nproc_per_node": 2, "strategy": "fsdp"},
    )
    found = {d.key: d for d in fired(diagnose(write_spec(text)), "SF085")}
    assert set(found) == {"lora.init_lora_weights", "lora.use_dora", "launch.strategy"}
    assert "float weights only" in found["lora.init_lora_weights"].message
    assert "AwqLoraLinear refuses use_dora" in found["lora.use_dora"].message
    at(found["lora.use_dora"], text, "use_dora: true", value=True)
    assert "strategy: ddp" in found["launch.strategy"].hints[0]


def test_the_checkpoint_config_must_agree(write_spec, workdir):
    folder = workdir / "base"
    folder.mkdir()
    quant = {"quant_method": "awq", "bits": 4}
    (folder / "config.json").write_text(json.dumps({"quantization_config": quant}))
    text = spec_text(model={"name": "./base", "prequantized": GPTQ})
    diag = only_rule(diagnose(write_spec(text)), "SF086")
    assert diag.key == "model.prequantized.method"
    assert diag.message == "the checkpoint's config.json says quant_method awq, not gptq"
    at(diag, text, "method: gptq", value=True)
    # undeclared: located at the name
    text = spec_text(model={"name": "./base"})
    diag = only_rule(diagnose(write_spec(text)), "SF086")
    assert "model.prequantized is not set" in diag.message and diag.key == "model.name"
    # declared on float weights
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    text = spec_text(model={"name": "./base", "prequantized": GPTQ})
    diag = only_rule(diagnose(write_spec(text)), "SF086")
    assert "has no gptq quantization_config" in diag.message


def test_a_model_id_that_names_a_format_is_a_warning_until_declared(write_spec):
    text = spec_text(model={"name": "TheBloke/Mistral-7B-v0.1-GPTQ"})
    diag = only_rule(diagnose(write_spec(text)), "SF086", severity="warning")
    assert "looks like a pre-quantized GPTQ checkpoint" in diag.message
    assert "model.prequantized: {method: gptq, bits: 4}" in diag.hints[0]
    at(diag, text, "name: TheBloke/Mistral-7B-v0.1-GPTQ", value=True)
    awq = spec_text(model={"name": "TechxGenus/Meta-Llama-3-8B-Instruct-AWQ"})
    assert "AWQ" in only_rule(diagnose(write_spec(awq)), "SF086", "warning").message
    declared = spec_text(model={"name": "TheBloke/Mistral-7B-v0.1-GPTQ", "prequantized": GPTQ})
    assert diagnose(write_spec(declared)) == []
