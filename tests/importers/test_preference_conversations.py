"""Preference datasets whose rows hold messages import as prompt.conversation with answer
columns: axolotl's chat_template.default / argilla / orpo.chat_template / *.argilla_chat types,
LLaMA-Factory's sharegpt datasets with ranking or a kto_tag; drop_system_message is carried."""

from __future__ import annotations

from pathlib import Path

import yaml

from specforge.cli import main
from specforge.importers import import_config
from specforge.importers.common import CHATML_JINJA
from tests.conftest import REPO

CONFIGS = REPO / "tests/importers/configs"


def imported(config: Path, tmp_path: Path) -> tuple[int, dict]:
    out = tmp_path / "out.yaml"
    code = main(["import", str(config), "-o", str(out)])
    return code, yaml.safe_load(out.read_text()) if out.exists() else {}


def test_axolotl_chat_template_default_names_the_prompt_and_answer_fields(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    code, spec = imported(CONFIGS / "axolotl/instruct-dpo-lora-8b.yml", tmp_path)
    assert code == 0 and spec["method"] == "dpo"
    assert spec["prompt"] == {
        "conversation": {
            "column": "conversation",
            "role_key": "role",
            "content_key": "content",
            "chosen": "chosen",
            "rejected": "rejected",
        }
    }


def test_axolotl_orpo_chat_template_takes_the_prompt_from_chosen_s_turns(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    code, spec = imported(CONFIGS / "axolotl/mistral-qlora-orpo.yml", tmp_path)
    assert code == 0 and spec["method"] == "orpo"
    conversation = spec["prompt"]["conversation"]
    assert (conversation["column"], conversation["chosen"]) == ("chosen", "chosen")
    assert conversation["rejected"] == "rejected"
    assert conversation["chat_template"] == CHATML_JINJA  # chat_template: chatml
    result = import_config(CONFIGS / "axolotl/mistral-qlora-orpo.yml")
    [note] = [d for d in result.dropped if d.key == "datasets[0].type"]
    assert note.kind == "approximated" and "separate system column" in note.reason


def test_axolotl_kto_argilla_chat_answers_with_the_completion_list_s_last_turn(tmp_path):
    config = tmp_path / "kto.yml"
    entry = {"path": "argilla/kto-mix-15k", "type": "chatml.argilla_chat", "split": "train"}
    config.write_text(
        yaml.safe_dump(
            {"base_model": "org/model", "adapter": "lora", "rl": "kto", "datasets": [entry]}
        )
    )
    code, spec = imported(config, tmp_path)
    assert code == 0 and spec["method"] == "kto"
    conversation = spec["prompt"]["conversation"]
    assert (conversation["column"], conversation["completion"]) == ("completion", "completion")
    assert spec["prompt"]["label_field"] == "label"


def test_axolotl_drop_system_message_becomes_drop_system(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    result = import_config(CONFIGS / "axolotl/gemma2-qlora.yml")
    assert not result.blocking
    assert result.draft.data["prompt"]["conversation"]["drop_system"] is True


def test_llamafactory_sharegpt_ranking_is_a_conversation_with_answer_columns(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    code, spec = imported(CONFIGS / "llamafactory/llama3_lora_dpo.yaml", tmp_path)
    assert code == 0 and spec["method"] == "dpo"
    assert spec["prompt"] == {
        "conversation": {
            "column": "conversations",
            "role_key": "from",
            "content_key": "value",
            "roles": {"human": "user", "gpt": "assistant"},
            "chosen": "chosen",
            "rejected": "rejected",
        }
    }
    assert spec["dataset"]["path"] == "tests/importers/configs/llamafactory/dpo_en_demo.json"


def test_llamafactory_sharegpt_kto_tag_labels_the_last_turn(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    code, spec = imported(CONFIGS / "llamafactory/llama3_lora_kto.yaml", tmp_path)
    assert code == 0 and spec["method"] == "kto"
    assert spec["prompt"] == {
        "conversation": {"column": "messages", "role_key": "role", "content_key": "content"},
        "label_field": "label",
    }
