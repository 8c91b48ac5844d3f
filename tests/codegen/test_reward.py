"""method: reward really trains (tiny random Llama with a score head, trl 1.16's RewardTrainer,
CPU): the adapter saves the new score head, infer.py reloads it, and `specforge run` records
the held-out pairwise accuracy for the tuned model and the base model's fresh head."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.helpers import PAIRS

pytestmark = pytest.mark.train


def reward_spec(model_dir, name: str = "rm", lora: bool = True) -> str:
    adapter = "lora:\n  r: 8\n  alpha: 16\n  dropout: 0.0\n  target_modules: all-linear\n"
    adapter = adapter if lora else "lora: null\n"
    return f"""\
spec_version: 1
name: {name}
method: reward
seed: 7
model:
  name: {model_dir}
  dtype: float32
dataset:
  path: data/pairs.jsonl
  validation_fraction: 0.2
prompt:
  template: "Instruction: {{instruction}}\\nInput: {{input}}\\nAnswer: "
  completion: "{{chosen}}"
  rejected: "{{rejected}}"
{adapter}training:
  per_device_train_batch_size: 4
  per_device_eval_batch_size: 4
  max_steps: 8
  learning_rate: 0.02
  logging_steps: 1
  eval_strategy: steps
  eval_steps: 8
  max_length: 128
inference:
  examples:
    - instruction: "Classify the sentiment."
      input: "Shares rose after record profits."
      chosen: positive
      rejected: negative
"""


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory, tiny_model_dir):
    """One `specforge run` of a reward spec: 8 steps on 32 pairs, 8 held out."""
    root = tmp_path_factory.mktemp("reward")
    (root / "specs").mkdir()
    (root / "data").mkdir()
    (root / "data/pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PAIRS[:40]))
    (root / "specs/rm.yaml").write_text(reward_spec(tiny_model_dir))
    result = run_cli("run", "specs/rm.yaml", "--compile", cwd=root, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (run_dir,) = [p for p in (root / "runs/rm").iterdir() if (p / "run.json").is_file()]
    return {"root": root, "run_dir": run_dir, "output": result.stdout + result.stderr}


def test_reward_script_trains_a_score_head(reward_run):
    source = (reward_run["root"] / "generated/rm/train.py").read_text()
    assert "trainer = RewardTrainer(" in source and "RewardConfig(" in source
    assert "AutoModelForSequenceClassification.from_pretrained(" in source
    assert '"task_type": "SEQ_CLS"' in source and '"modules_to_save": ["score"]' in source
    for word in ("AutoModelForCausalLM", "STOP_TOKEN", "generate("):
        assert word not in source, word
    infer = (reward_run["root"] / "generated/rm/infer.py").read_text()
    assert "GENERATION" not in infer and "generate(" not in infer


def test_reward_records_held_out_pairwise_accuracy(reward_run):
    record = json.loads((reward_run["run_dir"] / "run.json").read_text())
    tuned, base = record["results"]["eval_tuned"], record["results"]["eval_base"]
    assert tuned["n"] == base["n"] == 8
    assert 0.0 <= tuned["pairwise_accuracy"] <= 1.0 and 0.0 <= base["pairwise_accuracy"] <= 1.0
    # infer.py reloaded the saved score head: the trainer's last evaluation of the same rows
    # gave the same accuracy; a fresh head would not reproduce it but by chance
    metrics = [json.loads(x) for x in (reward_run["run_dir"] / "metrics.jsonl").open()]
    last = [m for m in metrics if "eval_accuracy" in m][-1]
    assert tuned["pairwise_accuracy"] == pytest.approx(last["eval_accuracy"])
    assert tuned["mean_margin"] == pytest.approx(last["eval_margin"], abs=1e-4)
    assert base["mean_margin"] != pytest.approx(tuned["mean_margin"], abs=1e-4)
    assert "pairwise accuracy" in reward_run["output"]
    card = (reward_run["run_dir"] / "adapter/README.md").read_text()
    assert "| model | pairwise accuracy | mean margin | pairs |" in card


def test_reward_adapter_holds_the_score_head(reward_run):
    from safetensors import safe_open

    adapter = reward_run["run_dir"] / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and "score" in config["modules_to_save"]
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        heads = [k for k in f.keys() if "score" in k]  # noqa: SIM118 - safe_open is no dict
    assert heads == ["base_model.model.score.weight"]


def test_infer_scores_the_examples(reward_run):
    import subprocess
    import sys

    root = reward_run["root"]
    command = [sys.executable, "generated/rm/infer.py", "--run-dir", str(reward_run["run_dir"])]
    result = subprocess.run(
        command, cwd=root, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert isinstance(row["chosen_score"], float) and isinstance(row["rejected_score"], float)


def conversation_spec(model_dir) -> str:
    """The reward spec on sharegpt-like rows: the prompt's turns, then chosen and rejected
    messages in their own columns (LLaMA-Factory's ranking datasets)."""
    text = reward_spec(model_dir, name="rmchat").replace("data/pairs.jsonl", "data/chat.jsonl")
    start, end = text.index("prompt:\n"), text.index("lora:")
    conversation = (
        "prompt:\n  conversation:\n    column: conversations\n    role_key: from\n"
        "    content_key: value\n    roles: {human: user, gpt: assistant}\n"
        "    chosen: chosen\n    rejected: rejected\n"
    )
    text = text[:start] + conversation + text[end:]
    return text[: text.index("inference:")]


def test_reward_trains_on_conversations_and_infer_scores_them(tmp_path, tiny_model_dir):
    """Conversational rows: TRL renders prompt + answer with the chat template; infer.py renders
    them alike, so its pairwise accuracy on the validation rows is the trainer's."""
    import subprocess
    import sys

    from tests.conftest import load_generated

    (tmp_path / "specs").mkdir()
    (tmp_path / "data").mkdir()
    rows = [
        {
            "conversations": [{"from": "human", "value": f"{r['instruction']}\n{r['input']}"}],
            "chosen": {"from": "gpt", "value": r["chosen"]},
            "rejected": {"from": "gpt", "value": r["rejected"]},
        }
        for r in PAIRS[:40]
    ]
    (tmp_path / "data/chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "specs/rmchat.yaml").write_text(conversation_spec(tiny_model_dir))
    result = run_cli("compile", "specs/rmchat.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    mp = pytest.MonkeyPatch()
    mp.chdir(tmp_path)
    try:
        module = load_generated(tmp_path / "generated/rmchat/train.py", "train_rmchat")
        module.train(tmp_path / "runs/rmchat/test")
    finally:
        mp.undo()
    run = tmp_path / "runs/rmchat/test"
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    last = [m for m in metrics if "eval_accuracy" in m][-1]
    command = [sys.executable, "generated/rmchat/infer.py", "--run-dir", str(run)]
    command += ["--data", str(run / "validation.jsonl"), "--output", str(run / "scores.jsonl")]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    scored = [json.loads(x) for x in (run / "scores.jsonl").read_text().splitlines()]
    accuracy = sum(r["chosen_score"] > r["rejected_score"] for r in scored) / len(scored)
    assert len(scored) == 8 and accuracy == pytest.approx(last["eval_accuracy"])
    margin = sum(r["chosen_score"] - r["rejected_score"] for r in scored) / len(scored)
    assert margin == pytest.approx(last["eval_margin"], abs=1e-4)
