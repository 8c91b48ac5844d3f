"""Full fine-tuning (`lora: null`): SF032 (what only LoRA can do) and the SF033 memory warning,
located and with hints; validation stays torch-free arithmetic on the model's shape."""

from __future__ import annotations

import json

import pytest

from specforge.validate.load import load_spec
from tests.helpers import diagnose, fired, only_rule

from .conftest import line_col, spec_text

MISTRAL = "mistralai/Mistral-7B-v0.1"  # in explain's table: 7.24 B weights


def test_lora_null_loads_as_full_fine_tuning(write_spec):
    loaded = load_spec(write_spec(lora=None))
    assert loaded.spec.lora is None and loaded.warnings == []


def test_mistral_full_ft_in_bf16_mixed_precision_warns_on_an_a100(write_spec):
    """fp32 weights under bf16 autocast: 4 + 4 (grads) + 8 (AdamW) bytes a weight = ~108 GiB."""
    text = spec_text(
        model={"name": MISTRAL, "dtype": "float32"},
        lora=None,
        training={"precision": "bf16", "gpu": "A100-80GB"},
    )
    diag = only_rule(diagnose(write_spec(text)), "SF033", severity="warning")
    assert diag.key == "lora"
    line, col = line_col(text, "lora: null")
    assert (diag.location.line, diag.location.col) == (line, col + len("lora: "))  # the null
    assert "about 109 GiB" in diag.message and "A100-80GB has 79 GiB" in diag.message
    assert "7.24 B weights x 16 bytes" in diag.message
    hint = diag.hints[0]
    for remedy in ("LoRA", "training.gpu", "fsdp", "adamw_8bit"):
        assert remedy in hint, remedy


def test_dpo_counts_the_reference_copy(write_spec):
    """bf16 weights train as fp32 master copies too (16 bytes a weight: 108 GiB), and DPO's frozen
    reference copy, kept in bf16, adds 13.5 GiB: 123 GiB fits an H200, not an H100."""
    prompt = {"rejected": "{rejected}<eos>"}
    fits = spec_text(
        method="dpo",
        model={"name": MISTRAL, "dtype": "bfloat16"},
        prompt=prompt,
        lora=None,
        training={"precision": "bf16", "gpu": "H200"},
    )
    assert fired(diagnose(write_spec(fits)), "SF033") == []
    big = fits.replace("gpu: H200", "gpu: H100")
    [diag] = fired(diagnose(write_spec(big, name="big.yaml")), "SF033")
    assert "+ a dpo reference copy" in diag.message and "about 123 GiB" in diag.message
    assert "7.24 B weights x 16 bytes (fp32 master weights" in diag.message


@pytest.mark.parametrize(
    "sections",
    [
        {"model": {"name": MISTRAL, "dtype": "float32"}, "training": {"gpu": "A100-80GB"}},
        {"model": {"name": "org/base-model", "dtype": "float32"}, "lora": None},  # no shape
        {
            "model": {"name": MISTRAL, "dtype": "float32"},
            "lora": None,
            "training": {"precision": "bf16", "gpu": "H200"},
            "launch": {"strategy": "fsdp", "nproc_per_node": 8},
        },
    ],
    ids=["lora", "unknown-shape", "fsdp-8-h200"],
)
def test_no_memory_warning_for_lora_an_unknown_shape_or_enough_memory(write_spec, sections):
    assert fired(diagnose(write_spec(**sections)), "SF033") == []


def test_a_small_model_from_its_config_does_not_warn(write_spec, workdir):
    folder = workdir / "tiny"
    folder.mkdir()
    config = {
        "model_type": "llama",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "vocab_size": 1000,
        "tie_word_embeddings": True,
    }
    (folder / "config.json").write_text(json.dumps(config))
    path = write_spec(model={"name": "./tiny", "dtype": "float32"}, lora=None)
    assert fired(diagnose(path), "SF033") == []


def test_full_ft_refuses_quantization_located_at_it(write_spec):
    text = spec_text(model={"quantization": {"bits": 4}}, lora=None)
    [diag] = fired(diagnose(write_spec(text)), "SF032")
    assert diag.severity == "error" and diag.key == "model.quantization"
    assert (diag.location.line, diag.location.col) == line_col(text, "bits: 4")
    assert "k-bit weights cannot take gradient steps" in diag.message
    assert "lora:" in diag.hints[0]


def test_full_ft_of_half_precision_weights_is_no_error(write_spec):
    """train.py trains fp32 master copies of float16 weights under fp16 autocast (the gradient
    scaler gets fp32 gradients), and saves them back in float16."""
    text = spec_text(model={"dtype": "float16"}, lora=None, training={"precision": "fp16"})
    assert fired(diagnose(write_spec(text)), "SF032") == []


def test_full_ft_refuses_a_lora_adapter_as_parent(write_spec, workdir):
    adapter = workdir / "runs/sft/20260101T000000Z-aaaaaa/adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    text = spec_text(
        method="dpo",
        model={"adapter": "runs/sft/20260101T000000Z-aaaaaa"},
        prompt={"rejected": "{rejected}<eos>"},
        lora=None,
    )
    diag = only_rule(diagnose(write_spec(text)), "SF032")
    assert diag.key == "model.adapter"
    assert "is a LoRA adapter; full fine-tuning starts from whole weights" in diag.message
    assert "--format merged" in diag.hints[0]


def test_lora_null_with_a_parent_is_not_the_unused_lora_warning(write_spec, workdir):
    """SF030's "lora is not used" is for a LoRA parent; lora: null with a model parent is meant."""
    text = spec_text(
        method="dpo",
        model={"adapter": "runs/sft/latest"},
        prompt={"rejected": "{rejected}<eos>"},
        lora=None,
    )
    assert diagnose(write_spec(text)) == []
