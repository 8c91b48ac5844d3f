"""The generated train.py prepares its data once: prompt/completion rows are cached under a key of
the source rows, the tokenizer and everything that shapes a row, and TRL's tokenisation of them is
cached beside them by datasets."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_generated, run_cli


@pytest.fixture
def train_module(project, monkeypatch, tmp_path):
    assert run_cli("compile", "specs/tiny.yaml", cwd=project).returncode == 0
    monkeypatch.chdir(project)
    monkeypatch.setenv("SPECFORGE_CACHE", str(tmp_path / "cache"))
    module = load_generated(project / "generated/tiny/train.py", "cache_train")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(module.model_source())
    module.add_special_tokens(tokenizer)
    return module, tokenizer


def cached_entries(tmp_path) -> list:
    return sorted((tmp_path / "cache/data").iterdir())


def test_second_preparation_comes_from_the_cache(train_module, tmp_path, capsys):
    module, tokenizer = train_module
    data, reports = module.prepared_data(tokenizer)
    assert "from the cache" not in capsys.readouterr().out
    again, reports_again = module.prepared_data(tokenizer)
    out = capsys.readouterr().out
    assert "prepared data from the cache" in out
    assert f"train: {json.dumps(reports['train'])}" in out  # the log still shows the data report
    assert reports_again == reports and set(reports) == {"train", "eval"}
    for what in ("train", "eval"):
        assert again[what].to_list() == data[what].to_list()
        assert again[what].column_names == ["prompt", "completion"]
        assert len(again[what]) == reports[what]["rows"] - reports[what]["dropped"]
    assert len(cached_entries(tmp_path)) == 1


def test_what_shapes_a_row_is_in_the_key_and_nothing_else(train_module, tmp_path, monkeypatch):
    module, tokenizer = train_module
    recipe = module.data_recipe()
    for function in ("to_prompt_completion", "check_rows", "fit_to_length", "build_prompt"):
        assert function in recipe
    for constant in ("MAX_LENGTH", "TRUNCATE_FIELD", "COMPLETION_TEMPLATE", "PROMPT_FIELDS"):
        assert constant in recipe
    assert "TRAINING_ARGS" not in recipe and "LORA_CONFIG" not in recipe

    module.prepared_data(tokenizer)
    monkeypatch.setitem(module.TRAINING_ARGS, "learning_rate", 1.0)  # does not shape rows
    module.prepared_data(tokenizer)
    assert len(cached_entries(tmp_path)) == 1
    monkeypatch.setattr(module, "MAX_LENGTH", module.MAX_LENGTH - 1)  # does
    module.prepared_data(tokenizer)
    assert len(cached_entries(tmp_path)) == 2


def test_changed_data_is_prepared_afresh(train_module, tmp_path, project):
    module, tokenizer = train_module
    _, before = module.prepared_data(tokenizer)
    path = project / "data/train.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:40]))
    _, after = module.prepared_data(tokenizer)
    assert len(cached_entries(tmp_path)) == 2
    assert after["train"]["rows"] + after["eval"]["rows"] == 40
    assert before["train"]["rows"] + before["eval"]["rows"] == 60


def test_new_tokens_change_the_key(train_module, tmp_path):
    module, tokenizer = train_module
    module.prepared_data(tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<another>"]})
    module.prepared_data(tokenizer)
    assert len(cached_entries(tmp_path)) == 2
