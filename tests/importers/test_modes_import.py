"""issue 25, items 8 and 10 in the importers: pretraining and reward stages, tf32, early
stopping and an evaluation dataset apart from the training data."""

from __future__ import annotations

import shutil

import yaml

from specforge.cli import main
from specforge.validate.load import load_spec
from tests.conftest import REPO

CONFIGS = REPO / "tests/importers/configs"


def test_axolotl_pretraining_dataset_is_a_pretrain_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "pt.yaml"
    assert main(["import", str(CONFIGS / "axolotl/tiny-llama-pretrain.yml"), "-o", str(out)]) == 0
    spec = load_spec(out, check_files=False).spec
    assert spec.method == "pretrain" and spec.prompt.text_column == "text"
    assert (spec.dataset.path, spec.dataset.config_name) == ("allenai/c4", "en")
    assert spec.training.packing and spec.training.tf32 is False  # tf32: false, carried
    assert "no streaming" in out.read_text()  # the approximation is said in the spec


def test_axolotl_test_datasets_and_early_stopping(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = yaml.safe_load((CONFIGS / "axolotl/lora-1b.yml").read_text())
    config |= {
        "val_set_size": 0.0,
        "test_datasets": [{"path": "org/eval-rows", "split": "test", "type": "alpaca"}],
        "early_stopping_patience": 3,
        "tf32": True,
        "eval_steps": 10,
        "save_steps": 10,
    }
    config.pop("evals_per_epoch", None)
    config.pop("saves_per_epoch", None)
    source = tmp_path / "lora-es.yml"
    source.write_text(yaml.safe_dump(config))
    out = tmp_path / "es.yaml"
    assert main(["import", str(source), "-o", str(out)]) == 0
    spec = load_spec(out, check_files=False).spec
    assert (spec.dataset.eval_path, spec.dataset.eval_split) == ("org/eval-rows", "test")
    assert spec.training.early_stopping_patience == 3 and spec.training.tf32 is True


def test_llamafactory_pt_and_rm_stages(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "pt.yaml"
    config = CONFIGS / "llamafactory/llama3_lora_pretrain.yaml"
    assert main(["import", str(config), "-o", str(out)]) == 0
    spec = load_spec(out, allow_remote_code=True, check_files=False).spec
    assert spec.method == "pretrain" and spec.prompt.text_column == "text"
    assert spec.dataset.path.endswith("c4_demo.jsonl") and spec.training.packing
    # rm: a reward spec on dpo_en_demo's sharegpt conversations, no preference settings
    rm = CONFIGS / "llamafactory/llama3_lora_reward.yaml"
    assert main(["import", str(rm), "-o", str(tmp_path / "rm.yaml")]) == 0
    spec = load_spec(tmp_path / "rm.yaml", allow_remote_code=True, check_files=False).spec
    assert spec.method == "reward" and spec.preference is None
    assert spec.prompt.conversation is not None and spec.prompt.conversation.rejected == "rejected"
    assert spec.tokenizer.special_tokens.all() == []  # the template's stop is not set


def test_llamafactory_eval_dataset_is_the_eval_path(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    folder = tmp_path / "lf"
    shutil.copytree(CONFIGS / "llamafactory", folder)
    config = yaml.safe_load((folder / "qwen3_lora_sft.yaml").read_text())
    config |= {"eval_dataset": "identity", "eval_strategy": "steps", "eval_steps": 50}
    (folder / "with_eval.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "eval.yaml"
    assert main(["import", str(folder / "with_eval.yaml"), "-o", str(out)]) == 0
    spec = load_spec(out, allow_remote_code=True, check_files=False).spec
    assert spec.dataset.eval_path.endswith("identity.json")
    assert spec.training.eval_strategy == "steps" and spec.training.eval_steps == 50
