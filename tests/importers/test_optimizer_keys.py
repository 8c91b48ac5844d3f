"""The optimiser and LoRA-variant keys of axolotl and LLaMA-Factory (issue 25, items 3-5): what
each maps to, and what stays out by name (EVA, ReLoRA, GaLore with LoRA)."""

from __future__ import annotations

import shutil

import yaml

from specforge.importers import import_config
from tests.conftest import REPO

CONFIGS = REPO / "tests/importers/configs"


def axolotl(tmp_path, **keys):
    source = yaml.safe_load((CONFIGS / "axolotl/lora-1b.yml").read_text())
    path = tmp_path / "axolotl.yml"
    path.write_text(yaml.safe_dump({**source, **keys}))
    return import_config(path)


def llamafactory(tmp_path, **keys):
    folder = tmp_path / "lf"  # the demo data beside dataset_info.json
    shutil.copytree(CONFIGS / "llamafactory", folder, ignore=shutil.ignore_patterns("*.yaml"))
    source = yaml.safe_load((CONFIGS / "llamafactory/llama3_lora_sft.yaml").read_text())
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({**source, **keys}))
    return import_config(path)


def blocking(result) -> dict[str, str]:
    return {d.key: d.reason for d in result.blocking}


def test_axolotl_lora_variants_and_adam(tmp_path):
    result = axolotl(
        tmp_path,
        peft_init_lora_weights="pissa_niter_4",
        lora_modules_to_save=["embed_tokens"],
        loraplus_lr_ratio=16,
        loraplus_lr_embedding=1e-6,
        adam_beta2=0.95,
        adam_epsilon=1e-8,  # transformers' default: nothing to carry
    )
    assert blocking(result) == {}
    lora, training = result.draft.data["lora"], result.draft.data["training"]
    assert lora["init_lora_weights"] == "pissa_niter_4"
    assert lora["modules_to_save"] == ["embed_tokens"]
    assert lora["loraplus_lr_ratio"] == 16.0 and lora["loraplus_lr_embedding"] == 1e-6
    assert training["adam_beta2"] == 0.95 and "adam_epsilon" not in training


def test_axolotl_eva_and_relora_stay_out_by_name(tmp_path):
    result = axolotl(tmp_path, peft_init_lora_weights="eva", relora_steps=100)
    reasons = blocking(result)
    assert "eva needs activations from a data loader" in reasons["peft_init_lora_weights"]
    assert reasons["relora_steps"].startswith("ReLoRA")


def test_axolotl_unfrozen_parameters_beside_an_adapter(tmp_path):
    result = axolotl(tmp_path, unfrozen_parameters=["^lm_head.weight$"])
    assert "use lora_modules_to_save" in blocking(result)["unfrozen_parameters"]


def test_llamafactory_pissa_full_svd_and_extra_modules(tmp_path):
    result = llamafactory(
        tmp_path,
        pissa_init=True,
        pissa_iter=-1,
        pissa_convert=False,
        additional_target="embed_tokens,lm_head",
    )
    assert blocking(result) == {}
    lora = result.draft.data["lora"]
    assert lora["init_lora_weights"] == "pissa"  # pissa_iter -1: a full SVD
    assert lora["modules_to_save"] == ["embed_tokens", "lm_head"]
    reasons = {d.key: d.reason for d in result.dropped}
    assert "converted to a plain LoRA" in reasons["pissa_convert"]


def test_llamafactory_galore_defaults_and_galore_with_lora(tmp_path):
    result = llamafactory(tmp_path, finetuning_type="full", use_galore=True, optim="adamw_8bit")
    assert blocking(result) == {}
    training = result.draft.data["training"]
    assert training["optim"] == "galore_adamw_8bit"
    assert training["optim_target_modules"] == "all-linear"  # galore_target unset: all
    assert training["optim_args"] == {"rank": 16, "update_proj_gap": 200, "scale": 2.0}
    result = llamafactory(tmp_path / "lora", use_galore=True, galore_rank=8)
    reasons = blocking(result)
    assert "full fine-tuning" in reasons["use_galore"] and "galore_rank" in reasons


def test_llamafactory_freeze_points_at_unfrozen_parameters(tmp_path):
    result = llamafactory(tmp_path, finetuning_type="freeze", freeze_trainable_layers=2)
    assert "training.unfrozen_parameters" in blocking(result)["finetuning_type"]
