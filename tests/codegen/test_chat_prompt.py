"""Chat-template specs: the prompt is rendered by the tokenizer's chat template, the same way in
train.py and infer.py, and the compiled scripts train and answer."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, load_generated, run_cli, tiny_spec

pytestmark = pytest.mark.train

MESSAGES = """\
prompt:
  messages:
    - role: system
      content: "You label financial news as negative, neutral or positive."
    - role: user
      content: "{instruction}\\n{input}"
  completion: "{output}<response|end>"
"""


def chat_spec(model_dir) -> str:
    text = tiny_spec(model_dir, name="chat", max_steps=4, eval_strategy="no", logging_steps=1)
    start = text.index("prompt:")
    end = text.index("lora:")
    text = text[:start] + MESSAGES + text[end:]
    return text.replace("  validation_fraction: 0.2\n", "")


def test_chat_spec_renders_through_the_chat_template_and_trains(
    tmp_path, tiny_model_dir, monkeypatch
):
    from transformers import AutoTokenizer

    (tmp_path / "specs").mkdir()
    (tmp_path / "data").mkdir()
    rows = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()[:24]
    (tmp_path / "data/train.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "data/heldout.jsonl").write_text("\n".join(rows[:3]) + "\n")
    (tmp_path / "specs/chat.yaml").write_text(chat_spec(tiny_model_dir))
    result = run_cli("compile", "specs/chat.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    monkeypatch.chdir(tmp_path)
    train = load_generated(tmp_path / "generated/chat/train.py", "chat_train")
    infer = load_generated(tmp_path / "generated/chat/infer.py", "chat_infer")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    row = json.loads(rows[0])
    prompt = train.build_prompt(row, tokenizer)
    assert prompt == infer.build_prompt(row, tokenizer)
    assert prompt.startswith("<|im_start|>system\nYou label financial news")
    assert row["input"] in prompt
    assert prompt.rstrip().endswith("<|im_start|>assistant")

    out = tmp_path / "runs/chat/t"
    result = subprocess.run(
        [sys.executable, "generated/chat/train.py", "--output-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "adapter/adapter_model.safetensors").is_file()
    result = subprocess.run(
        [
            sys.executable,
            "generated/chat/infer.py",
            "--run-dir",
            str(out),
            "--data",
            "data/heldout.jsonl",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len([line for line in result.stdout.splitlines() if '"prediction"' in line]) == 3


def test_a_chat_template_that_embeds_bos_gets_it_once(tmp_path, tiny_model_dir, monkeypatch):
    """Defect: the rendered chat text carried the template's BOS, and TRL (and generation) then
    encoded it with the tokenizer's own BOS: two at the start of every row."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.bos_token = "<|endoftext|>"
    bos = tokenizer.bos_token_id
    tokenizer._tokenizer.post_processor = TemplateProcessing(  # adds BOS on encode, as Llama's
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", bos)]
    )
    tokenizer.chat_template = (
        "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
        "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    assert tokenizer("x").input_ids[0] == bos
    (tmp_path / "specs").mkdir()
    (tmp_path / "data").mkdir()
    for name in ("train.jsonl", "heldout.jsonl"):
        first_row = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()[0]
        (tmp_path / "data" / name).write_text(first_row + "\n")
    (tmp_path / "specs/chat.yaml").write_text(chat_spec(tiny_model_dir))
    assert run_cli("compile", "specs/chat.yaml", cwd=tmp_path).returncode == 0
    monkeypatch.chdir(tmp_path)
    train = load_generated(tmp_path / "generated/chat/train.py", "bos_train")
    row = {"instruction": "Classify.", "input": "Shares rose.", "output": "positive"}
    ids = tokenizer(train.build_prompt(row, tokenizer) + "positive<response|end>").input_ids
    assert ids.count(bos) == 1 and ids[0] == bos
    plain = AutoTokenizer.from_pretrained(tiny_model_dir)  # SmolLM2's: no BOS on encode
    assert train.build_prompt(row, plain).startswith("<|im_start|>system")
