"""dpo/orpo/kto on conversations (prompt.conversation with answer columns): the generated
train.py turns each row into TRL's conversational rows and really trains a tiny model on the
CPU; the prompt TRL tokenized for a row is exactly what infer.py builds for that row; a system
turn can be dropped; bad rows are named."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from specforge.importers import import_config
from tests.conftest import REPO, load_generated, run_cli, tiny_spec
from tests.helpers import write_jsonl

pytestmark = pytest.mark.train

STEPS = 3
SYSTEM = {"role": "system", "content": "Answer with one word."}
PLACES = [("Maria", "Oslo", "train"), ("Ravi", "Lima", "bus"), ("Aiko", "Fez", "car")]


def prompt_turns(i: int) -> list[dict]:
    """A system turn and a multi-turn prompt, unique per row (its note names the row)."""
    who, city, how = PLACES[i % 3]
    return [
        SYSTEM,
        {"role": "user", "content": f"Note {i}: {who} went by {how} to {city}."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Which city?"},
    ]


PAIRS = [
    {
        "conversation": prompt_turns(i),
        "chosen": {"role": "assistant", "content": PLACES[i % 3][1]},
        "rejected": {"role": "assistant", "content": "Paris"},
    }
    for i in range(20)
]
# ShareGPT keys, the answer the last turn (LLaMA-Factory's kto_en_demo shape)
SHAREGPT = {"system": "system", "user": "human", "assistant": "gpt"}
KTO = [
    {
        "conversations": [
            {"from": SHAREGPT[t["role"]], "value": t["content"]}
            for t in [*prompt_turns(i), {"role": "assistant", "content": answer}]
        ],
        "kto_tag": good,
    }
    for i in range(10)
    for answer, good in ((PLACES[i % 3][1], True), ("Paris", False))
]
# argilla's ultrafeedback shape: chosen and rejected hold the whole conversation
ARGILLA = [
    {"chosen": r["conversation"] + [r["chosen"]], "rejected": r["conversation"] + [r["rejected"]]}
    for r in PAIRS
]

DPO_PROMPT = """\
prompt:
  conversation:
    column: conversation
    chosen: chosen
    rejected: rejected
"""
KTO_PROMPT = """\
prompt:
  conversation:
    column: conversations
    role_key: from
    content_key: value
    roles: {system: system, human: user, gpt: assistant}
    drop_system: true
  label_field: kto_tag
"""
ORPO_PROMPT = """\
prompt:
  conversation:
    column: chosen
    chosen: chosen
    rejected: rejected
"""


def spec(model_dir, name: str, method: str, data: str, prompt: str) -> str:
    settings = {"max_steps": STEPS, "logging_steps": 1, "eval_steps": STEPS, "max_length": 256}
    text = tiny_spec(model_dir, name=name, **settings)
    text = text.replace("description:", f"method: {method}\ndescription:")
    text = text[: text.index("tokenizer:")] + text[text.index("dataset:") :]  # no new tokens
    text = text.replace("data/train.jsonl", f"data/{data}.jsonl")
    text = text[: text.index("prompt:")] + prompt + text[text.index("lora:") :]
    return text[: text.index("inference:")] + "inference:\n  max_new_tokens: 4\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("preference-conversations")
    (root / "specs").mkdir()
    (root / "data").mkdir()
    for name, rows in (("pairs", PAIRS), ("kto", KTO), ("argilla", ARGILLA)):
        write_jsonl(root / f"data/{name}.jsonl", rows)
    for name, method, data, prompt in (
        ("dpo", "dpo", "pairs", DPO_PROMPT),
        ("kto", "kto", "kto", KTO_PROMPT),
        ("orpo", "orpo", "argilla", ORPO_PROMPT),
    ):
        (root / f"specs/{name}.yaml").write_text(spec(tiny_model_dir, name, method, data, prompt))
    result = run_cli("compile", "specs/dpo.yaml", "specs/kto.yaml", "specs/orpo.yaml", cwd=root)
    assert result.returncode == 0, result.stderr
    return root


def train_and_infer(project, name: str):
    mp = pytest.MonkeyPatch()
    mp.chdir(project)
    try:
        train = load_generated(project / f"generated/{name}/train.py", f"{name}_conv_train")
        infer = load_generated(project / f"generated/{name}/infer.py", f"{name}_conv_infer")
        trainer = train.train(project / f"runs/{name}/t")
    finally:
        mp.undo()
    lines = (project / f"runs/{name}/t/metrics.jsonl").read_text().splitlines()
    return trainer, infer, [json.loads(x) for x in lines]


def source_row(rows: list[dict], column: str, text: str) -> dict:
    """The first data row whose turns hold `text` (a note is unique to its prompt)."""
    return next(r for r in rows if any(text in str(t) for t in r[column]))


def assert_trained_prompts_are_infer_s(trainer, infer, rows, column):
    """For each training row: the prompt ids TRL trained on decode to infer.py's prompt for the
    same data row (one BOS at most, the assistant's header last)."""
    tokenizer = trainer.processing_class
    data = trainer.train_dataset
    assert len(data) > 0
    for example in data:
        seen = tokenizer.decode(example["prompt_ids"])
        note = next(m["content"] for m in example["prompt"] if m["content"].startswith("Note"))
        built = infer.build_prompt(source_row(rows, column, note), tokenizer)
        assert seen == built
        assert built.endswith("<|im_start|>assistant\n")
        ids = tokenizer(built, add_special_tokens=False).input_ids
        assert ids == example["prompt_ids"]


def test_dpo_trains_on_a_system_turn_and_multi_turn_prompt_with_message_answers(project):
    source = (project / "generated/dpo/train.py").read_text()
    assert "def to_pair(" in source and "CHOSEN_COLUMN" in source
    trainer, infer, metrics = train_and_infer(project, "dpo")
    assert type(trainer).__name__ == "DPOTrainer"
    steps = [m for m in metrics if "loss" in m]
    assert [m["step"] for m in steps] == list(range(1, STEPS + 1))
    assert all(math.isfinite(m["loss"]) for m in steps)
    assert all(0.0 <= m["rewards/accuracies"] <= 1.0 for m in steps)
    assert any("eval_rewards/accuracies" in m for m in metrics)
    example = trainer.train_dataset[0]
    assert example["prompt"][0] == SYSTEM and len(example["prompt"]) == 4
    assert example["chosen"][0]["role"] == "assistant" and len(example["chosen"]) == 1
    assert_trained_prompts_are_infer_s(trainer, infer, PAIRS, "conversation")
    assert infer.gold_answer(PAIRS[1]) == "Lima"  # predictions are scored against it
    summary = json.loads((project / "runs/dpo/t/train_summary.json").read_text())
    assert summary["train"]["rows"] == 16 and summary["train"]["dropped"] == 0


def test_kto_trains_on_sharegpt_turns_answered_by_the_last_without_the_system_turn(project):
    trainer, infer, metrics = train_and_infer(project, "kto")
    assert type(trainer).__name__ == "KTOTrainer"
    steps = [m for m in metrics if "loss" in m]
    assert steps and all(math.isfinite(m["loss"]) for m in steps)
    assert all("rewards/chosen" in m or "rewards/rejected" in m for m in steps)
    example = trainer.train_dataset[0]
    assert [m["role"] for m in example["prompt"]] == ["user", "assistant", "user"]  # no system
    assert example["completion"][0]["content"] in {"Oslo", "Lima", "Fez", "Paris"}
    assert_trained_prompts_are_infer_s(trainer, infer, KTO, "conversations")
    assert infer.gold_answer(KTO[1]) == "Paris"  # the row's answer, its last turn
    summary = json.loads((project / "runs/kto/t/train_summary.json").read_text())
    assert 0 < summary["train"]["desirable"] < summary["train"]["rows"]


def test_orpo_takes_the_prompt_from_chosen_s_turns_before_its_answer(project):
    trainer, infer, metrics = train_and_infer(project, "orpo")
    assert type(trainer).__name__ == "ORPOTrainer"
    steps = [m for m in metrics if "loss" in m]
    assert steps and all(math.isfinite(m["loss"]) for m in steps)
    row = ARGILLA[0]
    text = infer.build_prompt(row, trainer.processing_class)
    assert text.count("<|im_start|>system") == 1 and "Paris" not in text
    assert text.endswith("Which city?<|im_end|>\n<|im_start|>assistant\n")


def test_a_bad_row_is_named_before_training(project, monkeypatch):
    rows = [dict(r) for r in PAIRS]
    rows[3] = {**rows[3], "rejected": {"role": "bot", "content": "Paris"}}
    write_jsonl(project / "data/bad.jsonl", rows)
    monkeypatch.chdir(project)
    train = load_generated(project / "generated/dpo/train.py", "dpo_conv_bad")
    monkeypatch.setattr(train, "DATASET_PATH", "data/bad.jsonl")
    with pytest.raises(SystemExit) as exit_:
        train.train(project / "runs/dpo/bad")
    assert "rejected: a turn's role is not one of" in str(exit_.value)


@pytest.mark.parametrize(
    ("config", "method"), [("llama3_lora_dpo", "dpo"), ("llama3_lora_kto", "kto")]
)
def test_llamafactory_demo_rows_become_trl_s_conversational_rows(
    config, method, tmp_path, tiny_model_dir, monkeypatch
):
    """The imported spec's train.py reads LLaMA-Factory's own demo files (sharegpt: from/value
    turns with chosen/rejected messages; role/content turns with a kto tag)."""
    from datasets import load_dataset
    from transformers import AutoTokenizer

    monkeypatch.chdir(REPO)
    data = import_config(REPO / f"tests/importers/configs/llamafactory/{config}.yaml").draft.data
    data["model"] = {"name": str(tiny_model_dir)}
    data["dataset"]["path"] = str(REPO / data["dataset"]["path"])
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs/lf.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    result = run_cli("compile", "specs/lf.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    train = load_generated(tmp_path / f"generated/{data['name']}/train.py", f"lf_{method}")
    rows = load_dataset("json", data_files=data["dataset"]["path"], split="train")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    out, report = getattr(train, f"to_{method}_rows")(rows, tokenizer, "train")
    assert report["dropped"] == 0 and len(out) == len(rows)
    assert out[0]["prompt"] == [{"role": "user", "content": "Name a primary colour."}]
    answer = "chosen" if method == "dpo" else "completion"
    assert out[0][answer] == [{"role": "assistant", "content": "Red."}]


def test_drop_system_leaves_the_system_turn_out_of_sft_conversations_too(
    tmp_path, tiny_model_dir, monkeypatch
):
    """axolotl's drop_system_message (Gemma's template refuses system turns): the turns
    train.py learns from and infer.py's prompts have no system turn."""
    from transformers import AutoTokenizer

    prompt = "prompt:\n  conversation:\n    column: conversation\n    drop_system: true\n"
    text = spec(tiny_model_dir, "sys", "sft", "pairs", prompt).replace("method: sft\n", "")
    row = {"conversation": prompt_turns(0) + [PAIRS[0]["chosen"]]}
    (tmp_path / "specs").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "specs/sys.yaml").write_text(text)
    write_jsonl(tmp_path / "data/pairs.jsonl", [row] * 4)
    result = run_cli("compile", "specs/sys.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    monkeypatch.chdir(tmp_path)
    train = load_generated(tmp_path / "generated/sys/train.py", "sys_train")
    infer = load_generated(tmp_path / "generated/sys/infer.py", "sys_infer")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert [m["role"] for m in train.to_messages(row)] == ["user", "assistant"] * 2
    built = infer.build_prompt(row, tokenizer)
    assert SYSTEM["content"] not in built and built.endswith("<|im_start|>assistant\n")
