"""Data problems are caught before the first step, by the generated scripts' own functions."""

from __future__ import annotations

import pytest

from tests.conftest import load_generated, run_cli

pytestmark = pytest.mark.train


@pytest.fixture
def modules(project, monkeypatch):
    spec = project / "specs/tiny.yaml"
    spec.write_text(spec.read_text().replace("max_length: 128", "max_length: 48"))
    assert run_cli("compile", "specs/tiny.yaml", cwd=project).returncode == 0
    monkeypatch.chdir(project)
    train = load_generated(project / "generated/tiny/train.py", "data_train")
    infer = load_generated(project / "generated/tiny/infer.py", "data_infer")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(train.MODEL_NAME)
    tokenizer.add_special_tokens(train.SPECIAL_TOKENS, replace_extra_special_tokens=False)
    return train, infer, tokenizer


def test_long_rows_lose_prompt_text_never_the_answer(modules):
    from datasets import Dataset

    train, _, tokenizer = modules
    long_input = "Revenue fell sharply across every region this quarter. " * 20
    rows = Dataset.from_list(
        [
            {"instruction": "Classify.", "input": long_input, "output": "negative"},
            {"instruction": "Classify.", "input": "Short and fine.", "output": "neutral"},
        ]
    )
    data, report = train.to_prompt_completion(rows, tokenizer, "train")
    assert report["rows"] == 2 and report["truncated"] == 1 and report["dropped"] == 0
    first = data[0]
    assert first["completion"] == "negative<response|end>"
    assert first["prompt"].endswith("\n<response>") and len(first["prompt"]) < len(long_input)
    assert len(tokenizer(first["prompt"] + first["completion"]).input_ids) <= 48
    assert report["tokens_max"] <= 48


def test_missing_fields_and_empty_completions_are_reported_with_row_numbers(modules, capsys):
    from datasets import Dataset

    train, _, tokenizer = modules
    rows = Dataset.from_list(
        [
            {"instruction": "a", "input": "b", "output": "positive"},
            {"instruction": "a", "input": None, "output": "positive"},
            {"instruction": "a", "input": "b", "output": "  "},
        ]
    )
    with pytest.raises(SystemExit) as exit_:
        train.to_prompt_completion(rows, tokenizer, "train")
    assert "train rows [1, 2] (0-based): a missing field" in str(exit_.value.code)
    with pytest.raises(SystemExit) as exit_:
        train.to_prompt_completion(
            Dataset.from_list([{"instruction": "a", "output": "x"}]), tokenizer, "train"
        )
    assert "lacks column(s) ['input']" in str(exit_.value.code)


def test_training_refuses_when_no_token_carries_a_label(modules, project, monkeypatch):
    """A template or masking bug that leaves every label masked stops before the first step."""
    train, _, _ = modules
    monkeypatch.setattr(train, "label_share", lambda trainer: 0.0)
    with pytest.raises(SystemExit) as exit_:
        train.train(project / "runs/tiny/nolabels")
    assert "no token carries a label" in str(exit_.value.code)
    assert not (project / "runs/tiny/nolabels/adapter").exists()


def test_label_share_is_measured_on_a_real_collated_batch(modules, project):
    """The share counts completion tokens only: a few percent for one-word answers."""
    train, _, _ = modules
    trainer = train.train(project / "runs/tiny/share")
    share = train.label_share(trainer)
    assert 0.01 < share < 0.2, share
