"""issue 25, item 6: QLoRA under FSDP. SF015 takes 4 bits with a named model.dtype, and the
compiled scripts store the 4-bit weights in that dtype (bnb_4bit_quant_storage) so FSDP can
shard them with the rest; no bitsandbytes or GPU here, so this is checked as compiled."""

from __future__ import annotations

from specforge.codegen.compiler import compile_files
from specforge.validate.load import load_spec
from tests.helpers import diagnose, only_rule

from .conftest import line_col, spec_text

QLORA = {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bfloat16"}
LAUNCH = {"nproc_per_node": 2, "strategy": "fsdp"}


def qlora_fsdp(**model) -> str:
    return spec_text(
        model={"quantization": QLORA, "dtype": "bfloat16", **model},
        training={"precision": "bf16"},
        launch=LAUNCH,
    )


def test_qlora_under_fsdp_compiles_with_its_storage_dtype(write_spec):
    loaded = load_spec(write_spec(qlora_fsdp()))
    train = compile_files(loaded)["train.py"]
    assert '"bnb_4bit_quant_storage": "bfloat16",' in train
    assert "FSDP shards them with the rest" in train
    # accelerate places the shards: no device_map; the other weights stay in DTYPE
    assert "device_map=" not in train.split("def train(")[1].split("def ")[0]
    assert "prepare_model_for_kbit_training" not in train
    assert '"fsdp": True,' in train


def test_the_storage_dtype_is_one_bitsandbytes_config_takes():
    import torch
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_storage="bfloat16")
    assert config.bnb_4bit_quant_storage == torch.bfloat16


def test_qlora_under_ddp_keeps_its_placement_and_kbit_preparation(write_spec):
    text = qlora_fsdp().replace("strategy: fsdp", "strategy: ddp")
    train = compile_files(load_spec(write_spec(text)))["train.py"]
    assert "bnb_4bit_quant_storage" not in train
    assert "prepare_model_for_kbit_training(model" in train
    assert 'device_map={"": int(os.environ.get("LOCAL_RANK", "0"))},' in train


def test_fsdp_shards_4_bit_weights_only(write_spec):
    text = qlora_fsdp().replace("bits: 4", "bits: 8")
    diag = only_rule(diagnose(write_spec(text)), "SF015")
    assert "FSDP shards 4-bit QLoRA weights only" in diag.message
    assert (diag.location.line, diag.location.col) == line_col(text, "8\n")


def test_qlora_under_fsdp_names_its_dtype(write_spec):
    text = qlora_fsdp(dtype="auto")
    diag = only_rule(diagnose(write_spec(text)), "SF015")
    assert "stores the 4-bit weights in model.dtype (bnb_4bit_quant_storage)" in diag.message
    assert any("bfloat16" in hint for hint in diag.hints)
