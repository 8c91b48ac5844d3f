"""Every template branch emits what ruff leaves alone at its defaults (88 columns, no project
config), not only the branches the shipped and golden specs reach: each method is rendered with
each feature that changes the code, and ruff checks every script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from specforge.codegen.compiler import INFER_TEMPLATES, TRAIN_TEMPLATES
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
IF_EMPTY = {"context": "Q: {question}\n"}  # the alpaca format's prompt without its input
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
    "if-empty": {"prompt": {"template": "Q: {question}\nC: {context}\n", "if_empty": IF_EMPTY}},
    "chat-if-empty": {
        "prompt": {
            "messages": [{"role": "user", "content": "{question}\n{context}"}],
            "if_empty": {"context": [{"role": "user", "content": "{question}"}]},
            "completion": "{answer}",
        }
    },
    "full": {"lora": None, "training": {"push_to_hub": True}},
    # issue 24 item 3: fp32 master weights of bf16 weights, gathered and saved back in bf16
    "full-bf16-fsdp": {
        "model": {"dtype": "bfloat16"},
        "lora": None,
        "launch": {"nproc_per_node": 2, "strategy": "fsdp"},
        "training": {"precision": "bf16"},
    },
    "full-tokens": {
        "lora": None,
        "tokenizer": TOKENS,
        "prompt": {"template": "{question}<response>", "completion": "{answer}<response|end>"},
    },
}
# issue 25, items 3-5: LoRA+ and modules trained whole, Adam's settings, GaLore, unfrozen weights
FEATURES["loraplus-modules-tokens"] = {
    "lora": {
        "loraplus_lr_ratio": 16.0,
        "modules_to_save": ["lm_head"],
        "init_lora_weights": "gaussian",
    },
    "training": {"adam_beta1": 0.85, "adam_epsilon": 1e-6, "optim": "paged_adamw_8bit"},
    "tokenizer": TOKENS,
    "prompt": {"template": "{question}<response>", "completion": "{answer}<response|end>"},
}
FEATURES["galore-unfrozen-full-tokens"] = {
    "lora": None,
    "training": {
        "optim": "galore_adamw_8bit_layerwise",
        "optim_target_modules": ["self_attn", "mlp"],
        "optim_args": {"rank": 64, "scale": 0.25},
        "unfrozen_parameters": ["^model.embed_tokens.weight$", "model.layers.1[0-9]"],
    },
    "tokenizer": TOKENS,
    "prompt": {"template": "{question}<response>", "completion": "{answer}<response|end>"},
}
FEATURES["torchao-unfrozen-overrides"] = {
    "model": {"config_overrides": {"output_router_logits": True, "router_aux_loss_coef": 0.02}},
    "lora": None,
    "training": {"optim": "adamw_torch_4bit", "unfrozen_parameters": ["^lm_head"]},
}
SFT_ONLY = {
    "pissa-tokens-ddp-modules": {
        "lora": {"init_lora_weights": "pissa_niter_4", "modules_to_save": ["embed_tokens"]},
        "launch": {"nproc_per_node": 2},
        "tokenizer": TOKENS,
        "prompt": {"template": "{question}<response>", "completion": "{answer}<response|end>"},
    },
    "olora-loraplus": {"lora": {"init_lora_weights": "olora", "loraplus_lr_ratio": 8.0}},
    "conversation": {"prompt": {"conversation": {"column": "messages", "chat_template": "{{x}}"}}},
    "conversation-per-turn-validation": {
        "dataset": {"validation_fraction": 0.1},
        "prompt": {"conversation": {"column": "messages", "examples": "per_turn"}},
    },
    "mixture": {"dataset": {"path": None, "sources": WEIGHTED, "validation_fraction": 0.1}},
    "token-budget": {"training": {"layout": "tokens", "token_budget": 4096}},
    "token-budget-planned-ddp": {
        "model": {"name": "mistralai/Mistral-7B-v0.1", "dtype": "bfloat16"},
        "launch": {"nproc_per_node": 2},
        "training": {"layout": "tokens", "precision": "bf16", "gpu": "H100"},
    },
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
# issue 25, item 8: TF32, early stopping on another dataset's rows (every method)
EARLY_STOP = {"early_stopping_patience": 2, "eval_strategy": "steps", "eval_steps": 10}
FEATURES["tf32-early-stop-eval-file"] = {
    "dataset": {"path": "data/rows.jsonl", "eval_path": "data/eval.csv"},
    "training": {**EARLY_STOP, "tf32": True, "save_strategy": "best"},
}
FEATURES["early-stop-eval-hub-split"] = {
    "dataset": {"eval_path": "example-org/eval", "eval_split": "test"},
    "training": {**EARLY_STOP, "save_strategy": "steps", "save_steps": 20, "tf32": False},
}
# issue 25, item 6: QLoRA under FSDP (the 4-bit weights stored in the model's dtype)
FEATURES["qlora-fsdp"] = {
    "model": {"quantization": QLORA, "dtype": "bfloat16"},
    "training": {"precision": "bf16"},
    "launch": {"nproc_per_node": 2, "strategy": "fsdp"},
}
FEATURES["hub-config-validation-split"] = {
    "dataset": {"path": "example-org/rows", "config_name": "en", "validation_split": "test"},
}
SFT_ONLY["activation-offloading-metric"] = {
    "training": {"activation_offloading": True, "metric_for_best_model": "eval_loss"},
}
SFT_ONLY["conversation-drop-system"] = {
    "prompt": {"conversation": {"column": "messages", "drop_system": True}}
}
# issue 25, item 7: pre-quantized bases (GPTQ prepared for k-bit training, AWQ and
# compressed-tensors as plain LoRA), placed as they load; a parent adapter on one; DDP
GPTQ = {"method": "gptq", "bits": 4}
FEATURES["prequantized-gptq-tokens"] = {
    "model": {"name": "TheBloke/Mistral-7B-v0.1-GPTQ", "prequantized": GPTQ, "dtype": "float16"},
    "training": {"precision": "fp16"},
    "tokenizer": TOKENS,
    "prompt": {"template": "{question}<response>", "completion": "{answer}<response|end>"},
}
FEATURES["prequantized-awq-ddp"] = {
    "model": {"prequantized": {"method": "awq"}, "dtype": "float16"},
    "launch": {"nproc_per_node": 2},
    "training": {"precision": "fp16"},
}
FEATURES["prequantized-compressed-tensors"] = {
    "model": {"prequantized": {"method": "compressed-tensors", "bits": 8}, "dtype": "bfloat16"},
    "training": {"precision": "bf16"},
}
PARENT["parent-prequantized-gptq"] = {
    "model": {"adapter": "runs/sft/latest", "prequantized": GPTQ, "dtype": "float16"},
    "training": {"precision": "fp16"},
}


def preference_conversations(method: str) -> dict[str, dict]:
    """dpo/orpo/kto on conversations: answers in their own columns (a Hub dataset: no peek),
    or the turns' last is the answer (a local file: --dry-run checks its first row)."""
    answers = {"chosen": "chosen", "rejected": "rejected"}
    last = {"chosen": "conversation", "rejected": "rejected"}
    if method == "kto":
        answers, last = {"completion": "answer"}, {}
    own = {"column": "conversation", **answers, "chat_template": "{{x}}", "drop_system": True}
    local = {"path": "data/rows.jsonl", "validation_fraction": 0.1}
    return {
        "conversation-answers": {"prompt": {"conversation": own}},
        "conversation-last-turn": {
            "dataset": local,
            "prompt": {"conversation": {"column": "conversation", **last}},
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
    extra = METHOD_PROMPT[method]
    if "conversation" in prompt and method != "sft":  # the answers are columns
        extra = {"label_field": "good"} if method == "kto" else {}
    data["prompt"] = {**prompt, **extra}
    if "rejected" in data["prompt"]:  # the rejected answer ends like the chosen one
        stop = "<response|end>" if data["prompt"]["completion"].endswith("|end>") else ""
        data["prompt"]["rejected"] = "{rejected}" + stop
    return data


# issue 25, item 10: continued pretraining on a text column, reward models on pairs
TEXT = {"text_column": "text"}
NEW_METHODS: list[tuple[str, str, dict]] = [
    ("pretrain", "packed", {"prompt": TEXT, "training": {"packing": True}}),
    (
        "pretrain",
        "unpacked-full-tokens-ddp",
        {"prompt": TEXT, "lora": None, "tokenizer": TOKENS, "launch": {"nproc_per_node": 2}},
    ),
    (
        "pretrain",
        "packed-qlora-fraction-early-stop",
        {
            "prompt": TEXT,
            "model": {"quantization": QLORA, "dtype": "bfloat16"},
            "dataset": {"path": "data/rows.jsonl", "validation_fraction": 0.1},
            "training": {**EARLY_STOP, "packing": True, "save_strategy": "best"},
        },
    ),
    ("reward", "plain", {"prompt": {"rejected": "{rejected}"}}),
    (
        "reward",
        "conversation-local",
        {
            "dataset": {"path": "data/rows.jsonl", "validation_fraction": 0.1},
            "prompt": {
                "conversation": {
                    "column": "conversation",
                    "chosen": "chosen",
                    "rejected": "rejected",
                    "chat_template": "{{x}}",
                }
            },
        },
    ),
    (
        "reward",
        "prequantized-gptq",
        {"prompt": {"rejected": "{rejected}"}, "model": {"prequantized": GPTQ}},
    ),
    (
        "pretrain",
        "prequantized-awq",
        {"prompt": TEXT, "model": {"prequantized": {"method": "awq"}}},
    ),
    (
        "reward",
        "full-chat-fraction",
        {
            "prompt": {**CHAT, "completion": "{answer}", "rejected": "{rejected}"},
            "lora": None,
            "dataset": {"path": "data/rows.jsonl", "validation_fraction": 0.1},
        },
    ),
    (
        "reward",
        "qlora-offloading-accuracy",
        {
            "prompt": {"rejected": "{rejected}"},
            "model": {"quantization": QLORA, "dtype": "bfloat16"},
            "training": {"activation_offloading": True, "metric_for_best_model": "eval_accuracy"},
        },
    ),
]


def new_method_data(method: str, feature: dict) -> dict:
    """pretrain and reward specs: the BASE sections with the feature's over them."""
    data = {**BASE, "method": method, "inference": {"examples": [{"question": "Is it?"}]}}
    for section, values in feature.items():
        merge = isinstance(values, dict) and isinstance(data.get(section), dict)
        data[section] = {**data[section], **values} if merge else values
    if "text_column" in data["prompt"]:
        data["prompt"] = dict(TEXT)
    elif "conversation" in data["prompt"]:
        data["prompt"] = {"conversation": data["prompt"]["conversation"]}
    elif "messages" in data["prompt"]:
        data["prompt"] = {k: v for k, v in data["prompt"].items() if k != "template"}
    return data


def cases() -> list[tuple[str, str, dict]]:
    out = []
    for method in METHOD_PROMPT:
        features = {**FEATURES, **(SFT_ONLY if method == "sft" else PARENT)}
        if method != "sft":
            features |= preference_conversations(method)
        out += [(method, name, spec_data(method, feature)) for name, feature in features.items()]
    return out + [(m, name, new_method_data(m, f)) for m, name, f in NEW_METHODS]


def test_every_branch_passes_ruff_at_its_defaults(tmp_path):
    scripts = []
    for method, name, data in cases():
        spec = Spec.model_validate(data)
        plan = build_plan(spec, f"specs/{name}.yaml", "0" * 64, f"generated/{name}")
        template = TRAIN_TEMPLATES.get(method, "train_preference.py.j2")
        for script, text in (
            ("train.py", render_script(template, plan)),
            ("infer.py", render_script(INFER_TEMPLATES.get(method, "infer.py.j2"), plan)),
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
