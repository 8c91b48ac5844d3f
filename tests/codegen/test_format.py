"""Every template branch emits what ruff leaves alone at its defaults (88 columns, no project
config), not only the branches the shipped and golden specs reach: each method is rendered with
each feature that changes the code, and ruff checks every script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from specforge.codegen.plan import build_plan
from specforge.codegen.render import render_script
from specforge.spec.models import Spec

RUFF = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))

BASE = {
    "spec_version": 1,
    "name": "matrix",
    "model": {"name": "example-org/a-base-model-with-a-rather-long-name-7b"},
    "dataset": {"path": "example-org/rows"},
    "prompt": {"template": "Q: {question}\n### Answer:\n", "completion": "{answer}"},
    "inference": {"labels": ["yes", "no"], "examples": [{"question": "Is it?"}]},
}
TOKENS = {"special_tokens": {"additional": ["<response>", "<response|end>"]}}
QLORA = {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bfloat16"}
CHAT = {"messages": [{"role": "system", "content": "Sort."}, {"role": "user", "content": "{q}"}]}
WEIGHTED = [
    {"path": "data/first.jsonl", "weight": 3},
    {"path": "data/second.csv", "weight": 1, "max_samples": 10, "columns": {"answer": "a"}},
]

# feature -> the spec sections it sets (merged into BASE one level deep)
FEATURES: dict[str, dict] = {
    "plain": {},
    "tokens": {
        "tokenizer": TOKENS,
        "prompt": {"template": "{question}<response>", "completion": "{answer}<response|end>"},
    },
    "remote-code-qlora": {
        "model": {"trust_remote_code": True, "quantization": QLORA, "dtype": "bfloat16"},
        "training": {"precision": "bf16"},
    },
    "package-gguf": {
        "model": {"name": "Model", "package": "llm_pkg", "gguf_file": "Model.Q4_1.gguf"},
    },
    "package": {"model": {"name": "Model", "package": "llm_pkg"}},
    "local-dir-flash": {
        "model": {"name": "./models/base", "attn_implementation": "flash_attention_2"},
        "training": {"precision": "fp16"},
    },
    "flex-fsdp": {
        "model": {"attn_implementation": "flex_attention", "dtype": "bfloat16"},
        "launch": {"nproc_per_node": 2, "strategy": "fsdp"},
        "training": {"precision": "bf16"},
    },
    "csv-split-samples": {
        "dataset": {"path": "data/rows.csv", "max_samples": 100},
        "training": {"save_strategy": "steps", "save_steps": 10, "save_total_limit": 2},
    },
    "json-validation-split": {"dataset": {"path": "example-org/rows", "validation_split": "test"}},
    "jsonl-fraction": {"dataset": {"path": "data/rows.jsonl", "validation_fraction": 0.1}},
    "trackers-hub-liger": {
        "training": {
            "report_to": ["wandb", "mlflow", "trackio", "tensorboard"],
            "push_to_hub": True,
            "use_liger_kernel": True,
        }
    },
    "chat": {"prompt": {**CHAT, "completion": "{answer}"}},
    "full": {"lora": None, "training": {"push_to_hub": True}},
    "full-tokens": {
        "lora": None,
        "tokenizer": TOKENS,
        "prompt": {"template": "{question}<response>", "completion": "{answer}<response|end>"},
    },
}
SFT_ONLY = {
    "conversation": {"prompt": {"conversation": {"column": "messages", "chat_template": "{{x}}"}}},
    "mixture": {"dataset": {"path": None, "sources": WEIGHTED, "validation_fraction": 0.1}},
}
PARENT = {
    "parent": {"model": {"adapter": "runs/sft/latest"}},
    "parent-tokens-qlora": {
        "model": {"adapter": "runs/sft/latest", "quantization": QLORA, "dtype": "bfloat16"},
        "tokenizer": TOKENS,
        "prompt": {"template": "{question}<response>", "completion": "{answer}<response|end>"},
    },
    "parent-full-tokens": {
        "model": {"adapter": "runs/sft/latest"},
        "lora": None,
        "tokenizer": TOKENS,
        "prompt": {"template": "{question}<response>", "completion": "{answer}<response|end>"},
    },
}
METHOD_PROMPT = {
    "sft": {},
    "dpo": {"rejected": "{rejected}"},
    "orpo": {"rejected": "{rejected}"},
    "kto": {"label_field": "good"},
}


def spec_data(method: str, feature: dict) -> dict:
    data = {**BASE, "method": method}
    for section, values in feature.items():
        merge = isinstance(values, dict) and isinstance(data.get(section), dict)
        data[section] = {**data[section], **values} if merge else values
    prompt = dict(data["prompt"])
    if "conversation" in prompt or "messages" in prompt:
        prompt.pop("template", None)
    if "conversation" in prompt:
        prompt.pop("completion", None)
    data["prompt"] = {**prompt, **METHOD_PROMPT[method]}
    if "rejected" in data["prompt"]:  # the rejected answer ends like the chosen one
        stop = "<response|end>" if data["prompt"]["completion"].endswith("|end>") else ""
        data["prompt"]["rejected"] = "{rejected}" + stop
    return data


def cases() -> list[tuple[str, str, dict]]:
    out = []
    for method in METHOD_PROMPT:
        features = {**FEATURES, **(SFT_ONLY if method == "sft" else PARENT)}
        out += [(method, name, feature) for name, feature in features.items()]
    return out


def test_every_branch_passes_ruff_at_its_defaults(tmp_path):
    scripts = []
    for method, name, feature in cases():
        spec = Spec.model_validate(spec_data(method, feature))
        plan = build_plan(spec, f"specs/{name}.yaml", "0" * 64, f"generated/{name}")
        template = "train_sft.py.j2" if plan.method is None else "train_preference.py.j2"
        for script, text in (
            ("train.py", render_script(template, plan)),
            ("infer.py", render_script("infer.py.j2", plan)),
        ):
            path = tmp_path / f"{method}-{name}" / script
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
            scripts.append(str(path))
    assert len(scripts) == 2 * len(cases())
    for args in (["check", "--isolated"], ["format", "--isolated", "--check"]):
        result = subprocess.run(
            [RUFF, *args, *scripts], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_the_matrix_reaches_the_parent_and_token_branches(method):
    """The cases above are only worth their time if they reach the branches: spot-check two."""
    spec = Spec.model_validate(spec_data(method, PARENT["parent-tokens-qlora"]))
    plan = build_plan(spec, "specs/m.yaml", "0" * 64, "generated/m")
    train = render_script("train_preference.py.j2", plan)
    assert "from peft import PeftModel, prepare_model_for_kbit_training" in train
    assert "copy_reference_token_rows(trainer.model)" in train  # both compare with a reference
    assert 'device_map="auto",' in train and "def parent_adapter(" in train
