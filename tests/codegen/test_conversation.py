"""Conversation specs (prompt.conversation): every assistant turn is learned with the turns
before it as context, through TRL's conversational prompt/completion format; only assistant
tokens carry labels, BOS is not doubled, long conversations lose whole turns, other data shapes
map through the spec, and bad rows are named."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import load_generated, run_cli
from tests.helpers import CONVERSATION, ROWS, SYSTEM, chat, conversation_spec, write_jsonl

pytestmark = pytest.mark.train


@pytest.fixture
def conv_project(tmp_path, tiny_model_dir):
    (tmp_path / "specs").mkdir()
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data/train.jsonl", ROWS)
    (tmp_path / "specs/conv.yaml").write_text(conversation_spec(tiny_model_dir))
    return tmp_path


def compile_and_load(root, monkeypatch, name="conv"):
    result = run_cli("compile", f"specs/{name}.yaml", cwd=root)
    assert result.returncode == 0, result.stderr
    monkeypatch.chdir(root)
    train = load_generated(root / f"generated/{name}/train.py", f"{name}_train")
    infer = load_generated(root / f"generated/{name}/infer.py", f"{name}_infer")
    return train, infer


PER_TURN = CONVERSATION + "    examples: per_turn\n"


def labelled_spans(ids, labels) -> list[list[int]]:
    """The runs of tokens that carry labels."""
    spans, run = [], []
    for token, label in zip(ids, labels):
        if label != -100:
            run.append(token)
        elif run:
            spans, run = [*spans, run], []
    return [*spans, run] if run else spans


@pytest.mark.parametrize("examples", ["whole", "per_turn"])
def test_only_assistant_tokens_carry_labels_and_bos_is_not_doubled(
    conv_project, monkeypatch, tiny_model_dir, examples
):
    """Whole conversations (the default) and per-turn examples learn the same tokens: every
    assistant answer with its end of turn, once each way, and nothing of the prompts."""
    if examples == "per_turn":
        spec = conversation_spec(tiny_model_dir, prompt=PER_TURN)
        (conv_project / "specs/conv.yaml").write_text(spec)
    train, _ = compile_and_load(conv_project, monkeypatch)
    trainer = train.train(conv_project / "runs/conv/t")
    tokenizer = trainer.processing_class
    data = trainer.train_dataset
    assistant_turns = sum(m["role"] == "assistant" for row in ROWS for m in row["messages"])
    expected = len(ROWS) if examples == "whole" else assistant_turns
    assert len(data) == expected  # one example per conversation, or per assistant turn
    answers = [m["content"] for row in ROWS for m in row["messages"] if m["role"] == "assistant"]
    bos = tokenizer.bos_token_id
    learned = []
    for example in data:
        ids = example["input_ids"]  # TRL folded the completion mask into labels (-100 elsewhere)
        for span in labelled_spans(ids, example["labels"]):
            # the answer, its end-of-turn token and the template's newline: nothing of the prompt
            learned.append(tokenizer.decode(span).removesuffix("<|im_end|>\n"))
        assert ids[:2] != [bos, bos]
        assert tokenizer.decode(ids).count("<|im_start|>system") <= 1
    assert sorted(learned) == sorted(answers)
    batch = trainer.data_collator([data[i] for i in range(len(data))])
    labels = batch["labels"][batch["labels"] != -100]
    assert 0 < labels.numel() < batch["input_ids"].numel() / 4
    summary = json.loads((conv_project / "runs/conv/t/train_summary.json").read_text())
    assert summary["train"]["rows"] == len(ROWS)
    assert summary["train"]["examples"] == expected


def test_whole_and_per_turn_examples_give_a_single_turn_conversation_the_same_loss(
    conv_project, monkeypatch, tiny_model_dir
):
    """A conversation with one assistant turn is the same example either way: same tokens,
    same labels, so the same loss."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer

    single = [row for row in ROWS if sum(m["role"] == "assistant" for m in row["messages"]) == 1]
    rows = Dataset.from_list(single)
    found = {}
    for mode, prompt in (("whole", CONVERSATION), ("per_turn", PER_TURN)):
        (conv_project / "specs/conv.yaml").write_text(conversation_spec(tiny_model_dir, prompt))
        train, _ = compile_and_load(conv_project, monkeypatch)
        tokenizer = AutoTokenizer.from_pretrained(train.MODEL_NAME)
        if mode == "whole":
            data, _ = train.to_conversation_examples(rows, tokenizer, "train")
            found[mode] = [(e["input_ids"], e["assistant_masks"]) for e in data]
        else:
            data, _ = train.to_prompt_completion(rows, tokenizer, "train")
            found[mode] = [
                train_ids(tokenizer, e["prompt"], e["completion"]) for e in data.to_list()
            ]
    assert found["whole"] == found["per_turn"]
    assert torch.tensor(found["whole"][0][1]).sum() > 0


def train_ids(tokenizer, prompt, completion):
    """What TRL makes of a conversational prompt/completion pair: ids and completion mask."""
    head = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=False)
    ids = tokenizer.apply_chat_template(prompt + completion, return_dict=False)
    return ids, [0] * len(head) + [1] * (len(ids) - len(head))


def test_long_conversations_lose_their_oldest_turns_whole_never_the_answer(
    conv_project, monkeypatch, tiny_model_dir
):
    from datasets import Dataset
    from transformers import AutoTokenizer

    (conv_project / "specs/conv.yaml").write_text(conversation_spec(tiny_model_dir, PER_TURN))
    train, _ = compile_and_load(conv_project, monkeypatch)
    tokenizer = AutoTokenizer.from_pretrained(train.MODEL_NAME)
    monkeypatch.setattr(train, "MAX_LENGTH", 60)
    filler = "The note goes on about the weather and the food for a long while. " * 3
    long = chat((filler + "Which city?", "Oslo"), ("Day?", "Monday"), ("Who?", "Maria"))
    data, report = train.to_prompt_completion(Dataset.from_list([long]), tokenizer, "train")
    examples = data.to_list()
    assert [e["completion"][0]["content"] for e in examples] == ["Monday", "Maria"]
    assert report == {**report, "rows": 1, "examples": 2, "dropped": 1, "truncated": 2}
    for example in examples:
        prompt = example["prompt"]
        assert prompt[0] == SYSTEM and prompt[1]["role"] == "user"  # system kept, then a user turn
        assert filler not in json.dumps(prompt)  # the long first turn went, whole
        chat_ids = tokenizer.apply_chat_template(prompt + example["completion"], return_dict=False)
        assert len(chat_ids) <= 60


def test_a_conversation_too_long_to_learn_whole_is_learned_per_turn(conv_project, monkeypatch):
    from datasets import Dataset
    from transformers import AutoTokenizer

    train, _ = compile_and_load(conv_project, monkeypatch)
    tokenizer = AutoTokenizer.from_pretrained(train.MODEL_NAME)
    monkeypatch.setattr(train, "MAX_LENGTH", 60)
    filler = "The note goes on about the weather and the food for a long while. " * 3
    long = chat((filler + "Which city?", "Oslo"), ("Day?", "Monday"), ("Who?", "Maria"))
    rows = Dataset.from_list([long, ROWS[1]])
    data, report = train.to_conversation_examples(rows, tokenizer, "train")
    assert report == {**report, "rows": 2, "examples": 3, "whole": 1, "dropped": 1}
    for example in data.to_list():
        assert len(example["input_ids"]) <= 60 and 1 in example["assistant_masks"]


def test_sharegpt_columns_and_roles_map_through_the_spec(conv_project, monkeypatch, tiny_model_dir):
    sharegpt = """\
prompt:
  conversation:
    column: conversations
    role_key: from
    content_key: value
    roles: {human: user, gpt: assistant}
"""
    rows = [
        {"conversations": [{"from": t["role"], "value": t["content"]} for t in row["messages"]]}
        for row in ROWS
    ]
    for row in rows:
        for turn in row["conversations"]:
            turn["from"] = {"user": "human", "assistant": "gpt"}.get(turn["from"], turn["from"])
    write_jsonl(conv_project / "data/train.jsonl", rows)
    spec = conversation_spec(tiny_model_dir, prompt=sharegpt)
    (conv_project / "specs/conv.yaml").write_text(spec)
    train, infer = compile_and_load(conv_project, monkeypatch)
    assert train.to_messages(rows[0]) == ROWS[0]["messages"] == infer.to_messages(rows[0])
    assert train.conversation_problem(rows[0]) is None


def test_bad_rows_are_named_and_nothing_trains(conv_project):
    bad = [
        ROWS[0],
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]},
        {"messages": [{"role": "user", "content": "hi"}]},
        {"messages": [{"content": "no role"}, {"role": "assistant", "content": "yo"}]},
    ]
    assert run_cli("compile", "specs/conv.yaml", cwd=conv_project).returncode == 0
    write_jsonl(conv_project / "data/train.jsonl", bad)  # the data changed after compile
    checked = run_cli("validate", "specs/conv.yaml", cwd=conv_project)  # validate names them too
    report = checked.stdout + checked.stderr
    assert checked.returncode == 1 and "line(s) 2: an empty assistant turn [SF020]" in report
    out = conv_project / "runs/conv/bad"
    result = subprocess.run(
        [sys.executable, "generated/conv/train.py", "--output-dir", str(out)],
        cwd=conv_project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "data/train.jsonl has rows that are not conversations" in result.stderr
    assert "rows [1]: turn 1 is an empty assistant turn" in result.stderr
    assert "rows [2]: turn 1: role 'bot' is not one of ['assistant', 'system', 'user']" in (
        result.stderr
    )
    assert "rows [3]: no assistant turn" in result.stderr
    assert "rows [4]: turn 0 has no 'role'" in result.stderr
    assert not (out / "adapter").exists()


def test_dry_run_marks_the_trained_turns(conv_project):
    assert run_cli("compile", "specs/conv.yaml", cwd=conv_project).returncode == 0
    result = subprocess.run(
        [sys.executable, "generated/conv/train.py", "--dry-run"],
        cwd=conv_project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    example = json.loads(result.stdout)["example"]
    assert [(t["role"], t["trained"]) for t in example] == [
        ("system", False),
        ("user", False),
        ("assistant", True),
        ("user", False),
        ("assistant", True),
    ]


def test_infer_answers_the_last_assistant_turn_and_writes_the_reference(conv_project):
    held = conv_project / "data/held.jsonl"
    write_jsonl(held, ROWS[:2])
    assert run_cli("compile", "specs/conv.yaml", cwd=conv_project).returncode == 0
    preds = conv_project / "preds.jsonl"
    command = [sys.executable, "generated/conv/infer.py", "--no-adapter", "--data", str(held)]
    result = subprocess.run(
        [*command, "--output", str(preds)],
        cwd=conv_project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert [row["reference"] for row in rows] == ["Monday", "Ravi"]
    assert all(isinstance(row["prediction"], str) for row in rows)

    write_jsonl(held, [{"messages": ROWS[0]["messages"][:-1]}])  # ends with a user turn
    result = subprocess.run(command, cwd=conv_project, capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "rows [0] (0-based) do not end with an assistant turn" in result.stderr
