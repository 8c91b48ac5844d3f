"""What `specforge import` maps each source setting to, and how it fails on bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from specforge.cli import main
from specforge.importers import import_config
from specforge.validate.load import load_spec
from tests.conftest import REPO

CONFIGS = REPO / "tests/importers/configs"
LF_INFO = CONFIGS / "llamafactory/dataset_info.json"


def imported(config: Path, tmp_path: Path, *args: str) -> tuple[int, dict, str]:
    """(exit code, the written spec's data or {}, its text)."""
    out = tmp_path / "out.yaml"
    code = main(["import", str(config), "-o", str(out), *args])
    text = out.read_text() if out.exists() else ""
    return code, (yaml.safe_load(text) if text else {}), text


def lf_config(tmp_path: Path, **keys) -> Path:
    base = {
        "model_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct",
        "stage": "sft",
        "finetuning_type": "lora",
        "template": "qwen",
        "dataset": "alpaca_en_demo",
        "bf16": True,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**base, **keys}))
    return path


def test_llamafactory_alpaca_mixture_as_sources_and_chat_messages(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    code, spec, text = imported(CONFIGS / "llamafactory/llama3_lora_sft.yaml", tmp_path)
    assert code == 0
    assert [s["path"] for s in spec["dataset"]["sources"]] == [
        "tests/importers/configs/llamafactory/identity.json",
        "tests/importers/configs/llamafactory/alpaca_en_demo.json",
    ]
    assert spec["prompt"]["messages"] == [{"role": "user", "content": "{instruction}\n{input}"}]
    assert spec["prompt"]["completion"] == "{output}<|eot_id|>"  # llama3's stop word, as the eos
    assert spec["tokenizer"]["special_tokens"]["eos"] == "<|eot_id|>"
    assert spec["lora"] == {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}
    assert "alpha: 16  # lora_alpha unset: 2 x lora_rank" in text
    assert "max_length: 2048  # cutoff_len" in text
    assert spec["training"]["gradient_checkpointing"] is True  # LLaMA-Factory's default


def test_llamafactory_sharegpt_tags_become_conversation_roles(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    info = {
        "chat": {
            "hf_hub_url": "org/chats",
            "formatting": "sharegpt",
            "columns": {"messages": "dialogue"},
            "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "customer"},
        }
    }
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    code, spec, _ = imported(lf_config(tmp_path, dataset="chat", val_size=0.1), tmp_path)
    assert code == 0
    assert spec["dataset"] == {"path": "org/chats", "validation_fraction": 0.1}
    assert spec["prompt"]["conversation"] == {
        "column": "dialogue",
        "role_key": "speaker",
        "content_key": "text",
        "roles": {"customer": "user", "gpt": "assistant"},
    }


def test_llamafactory_ranking_and_kto_flat_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = lf_config(tmp_path, stage="dpo", dataset="orca_pairs", pref_beta=0.2, pref_ftx=1.0)
    code, spec, _ = imported(config, tmp_path, "--dataset-info", str(LF_INFO))
    assert code == 0
    assert spec["method"] == "dpo"
    assert spec["prompt"] == {
        "messages": [
            {"role": "system", "content": "{system}"},
            {"role": "user", "content": "{question}"},
        ],
        "completion": "{chosen}<|im_end|>",
        "rejected": "{rejected}<|im_end|>",
    }
    assert spec["preference"] == {"beta": 0.2, "loss_type": "sigmoid", "sft_weight": 1.0}
    (tmp_path / "out.yaml").unlink()
    config = lf_config(tmp_path, stage="kto", dataset="ultrafeedback_kto", kto_rejected_weight=1.5)
    code, spec, _ = imported(config, tmp_path, "--dataset-info", str(LF_INFO))
    assert code == 0
    assert spec["prompt"]["label_field"] == "label"
    assert spec["prompt"]["completion"] == "{completion}<|im_end|>"
    assert spec["preference"]["undesirable_weight"] == 1.5


def test_llamafactory_full_bf16_trains_float32_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    code, spec, text = imported(CONFIGS / "llamafactory/llama3_full_sft.yaml", tmp_path)
    assert code == 0
    assert spec["lora"] is None
    assert (spec["model"]["dtype"], spec["training"]["precision"]) == ("float32", "bf16")
    # ZeRO-3 read from examples/deepspeed/ds_z3_config.json, stated as FSDP in the spec
    assert spec["launch"]["strategy"] == "fsdp"
    assert "ZeRO-3 (examples/deepspeed/ds_z3_config.json) as FSDP full shard" in text


def test_axolotl_deepspeed_offload_and_tokens(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = CONFIGS / "axolotl/bigstral-ds-zero3.yaml"
    code, spec, _ = imported(config, tmp_path)
    assert code == 0
    assert spec["launch"]["fsdp"] == {"cpu_offload": True}
    assert spec["tokenizer"]["special_tokens"] == {
        "eos": "<|im_end|>",
        "additional": ["<|im_start|>"],
    }
    # full fine-tuning of the head, the embeddings (the new tokens' rows) and some experts
    assert spec["training"]["unfrozen_parameters"][:2] == [
        "^lm_head.weight$",
        "^model.embed_tokens.weight$",
    ]
    assert spec["model"]["config_overrides"] == {"output_router_logits": True}
    load_spec(tmp_path / "out.yaml", allow_remote_code=True, check_files=False)


def test_axolotl_chat_template_dataset_and_chatml_preference(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    code, spec, _ = imported(CONFIGS / "axolotl/gemma2-qlora.yml", tmp_path)
    assert code == 0
    assert spec["prompt"]["conversation"] == {
        "column": "conversations",
        "role_key": "from",
        "content_key": "value",
        "roles": {"human": "user", "gpt": "assistant"},  # axolotl's defaults
        "drop_system": True,  # drop_system_message: Gemma's template refuses system turns
    }
    assert spec["model"]["quantization"]["bits"] == 4
    (tmp_path / "out.yaml").unlink()
    code, spec, _ = imported(CONFIGS / "axolotl/rlhf-chatml-intel.yml", tmp_path)
    assert code == 0
    assert spec["prompt"]["template"] == (
        "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert spec["prompt"]["rejected"] == "{rejected}<|im_end|>"


def test_axolotl_alpaca_with_a_declared_eos_ends_the_completion(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    code, spec, _ = imported(CONFIGS / "axolotl/mistral-config.yml", tmp_path)
    assert code == 0
    assert spec["prompt"]["completion"] == "{output}</s>"
    assert spec["lora"] is None and spec["model"]["dtype"] == "bfloat16"


def test_formats_are_detected_and_can_be_forced(tmp_path, capsys):
    assert import_config(CONFIGS / "axolotl/lora-1b.yml").tool == "axolotl"
    assert import_config(CONFIGS / "llamafactory/llama3_lora_sft.yaml").tool == "llamafactory"
    odd = tmp_path / "odd.yaml"
    odd.write_text("learning_rate: 1.0e-4\n")
    assert main(["import", str(odd)]) == 2
    assert "cannot tell whether this is an axolotl or a LLaMA-Factory" in capsys.readouterr().err
    result = import_config(odd, "axolotl")
    assert result.tool == "axolotl" and result.blocking  # no base model, no datasets


def test_usage_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["import", str(tmp_path / "missing.yml")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.yml"
    bad.write_text("base_model: x\ndatasets: [\n")
    assert main(["import", str(bad)]) == 2
    assert f"{bad}:3:1: not valid YAML" in capsys.readouterr().err
    bad.write_text("- a\n- b\n")
    assert main(["import", str(bad)]) == 2
    lonely = tmp_path / "lf" / "c.yaml"
    lonely.parent.mkdir()
    lonely.write_text(yaml.safe_dump({"model_name_or_path": "m", "stage": "sft", "dataset": "x"}))
    assert main(["import", str(lonely)]) == 2
    assert "pass --dataset-info PATH" in capsys.readouterr().err


def test_usage_error_is_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("base_model: [unclosed\n")
    done = subprocess.run(
        [sys.executable, "-m", "specforge", "import", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "not valid YAML" in done.stderr


def test_existing_output_is_not_overwritten(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    out = tmp_path / "out.yaml"
    out.write_text("kept\n")
    assert main(["import", str(CONFIGS / "axolotl/lora-1b.yml"), "-o", str(out)]) == 2
    assert out.read_text() == "kept\n"


def test_report_names_every_dropped_key_with_its_kind(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    folder = tmp_path / "lf"  # the demo data beside dataset_info.json, and a config with RoPE
    shutil.copytree(CONFIGS / "llamafactory", folder, ignore=shutil.ignore_patterns("*.yaml"))
    source = (CONFIGS / "llamafactory/loraplus_llama3_lora_sft.yaml").read_text()
    (folder / "rope.yaml").write_text(source + "rope_scaling: linear\n")
    main(["import", str(folder / "rope.yaml"), "-o", str(tmp_path / "x.yaml")])
    printed = capsys.readouterr().out
    assert "unsupported (affects training):\n    rope_scaling: RoPE scaling" in printed
    assert "  approximated:\n    template: llama3" in printed
    assert "ddp_timeout: the collective timeout" in printed
    assert "output_dir" in printed and "ignored bookkeeping" in printed
    assert "not written (pass --allow-partial" in printed
    assert not (tmp_path / "x.yaml").exists()


def test_multimodal_is_refused_even_with_allow_partial(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    config = CONFIGS / "llamafactory/qwen2vl_lora_sft.yaml"
    code, spec, _ = imported(config, tmp_path, "--allow-partial")
    assert code == 1 and not spec
    assert (
        "multimodal (vision-language) training is out of scope (image_max_pixels"
        in capsys.readouterr().out
    )


def test_dataset_entry_settings_are_carried_or_reported(tmp_path, monkeypatch):
    config = tmp_path / "a.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": "org/model",
                "adapter": "lora",
                "datasets": [{"path": "org/data", "type": "alpaca", "shards": 10}],
            }
        )
    )
    result = import_config(config)
    assert [(d.key, d.kind) for d in result.blocking] == [("datasets[0].shards", "unsupported")]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dataset_info.json").write_text(
        json.dumps({"x": {"hf_hub_url": "o/x", "formatting": "openai"}})
    )
    result = import_config(lf_config(tmp_path, dataset="x"))
    assert [d.key for d in result.blocking] == ["dataset (x)"]
