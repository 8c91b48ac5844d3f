"""Full fine-tuning (`lora: null`) end to end on the tiny random Llama (real libraries, CPU):
`specforge run` trains every weight, saves a whole model that transformers reloads, infer.py
answers with it (and with the base, for the comparison), and run.json holds the model's sha256."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_generated, run_cli, tiny_spec

pytestmark = pytest.mark.train

LORA = """lora:
  r: 8
  alpha: 16
  dropout: 0.0
  target_modules: all-linear
"""


def full_spec(model_dir, name: str = "full", **training) -> str:
    text = tiny_spec(model_dir, name=name, **training)
    assert LORA in text
    return text.replace(LORA, "lora: null  # full fine-tuning\n")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_model_dir):
    """One `specforge run` of the full fine-tuning spec: 4 steps, 8 held-out rows."""
    from tests.conftest import REPO

    root = tmp_path_factory.mktemp("full")
    (root / "specs").mkdir()
    (root / "data").mkdir()
    rows = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()
    (root / "data/train.jsonl").write_text("\n".join(rows[:40]) + "\n")
    (root / "data/heldout.jsonl").write_text("\n".join(rows[40:48]) + "\n")
    spec = full_spec(tiny_model_dir, max_steps=4, logging_steps=1, eval_steps=4)
    (root / "specs/full.yaml").write_text(spec)
    result = run_cli("run", "specs/full.yaml", "--compile", cwd=root, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (run_dir,) = [p for p in (root / "runs/full").iterdir() if (p / "run.json").is_file()]
    return {"root": root, "run_dir": run_dir, "output": result.stdout + result.stderr}


def test_full_train_script_has_no_adapter_code(full_run):
    source = (full_run["root"] / "generated/full/train.py").read_text()
    infer = (full_run["root"] / "generated/full/infer.py").read_text()
    for text in (source, infer):
        for word in ("peft", "LoRA", "LORA_CONFIG", "adapter", "TrainableTokens"):
            assert word not in text, word
    assert "full fine-tuning (SFT)" in source
    assert 'model_dir = output_dir / "model"' in source


def test_every_weight_changes_and_the_model_reloads(full_run, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = full_run["run_dir"] / "model"
    assert (folder / "model.safetensors").is_file()
    assert not (full_run["run_dir"] / "adapter").exists()
    tuned = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert "<response|end>" in tokenizer.get_vocab()
    assert tuned.get_input_embeddings().weight.shape[0] == len(tokenizer)
    base_weights = dict(base.named_parameters())
    unchanged = []
    for name, weight in tuned.named_parameters():
        old = base_weights[name]
        rows = min(old.shape[0], weight.shape[0])  # the embeddings grew by the new tokens
        if torch.equal(weight[:rows], old[:rows]):
            unchanged.append(name)
    assert not unchanged, unchanged
    new_id = tokenizer.convert_tokens_to_ids("<response|end>")
    assert new_id >= base.get_input_embeddings().weight.shape[0]  # a new row, trained and saved


def test_infer_answers_with_the_full_model_and_the_base(full_run):
    run_dir = full_run["run_dir"]
    for name in ("predictions.jsonl", "predictions_base.jsonl"):
        rows = [json.loads(x) for x in (run_dir / name).read_text().splitlines()]
        assert len(rows) == 8 and all("prediction" in row for row in rows), name
    record = json.loads((run_dir / "run.json").read_text())
    assert record["results"]["eval_tuned"]["n"] == record["results"]["eval_base"]["n"] == 8


def test_record_holds_the_full_model_sha256(full_run):
    from specforge.core.files import file_sha256

    run_dir = full_run["run_dir"]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    model = record["results"]["model"]
    assert model["kind"] == "full model"
    assert model["sha256"] == file_sha256(run_dir / "model/model.safetensors")
    assert "adapter" not in record.get("exports", {})
    assert f"full model: {model['path']}" in full_run["output"]
    losses = record["results"]["losses"]
    assert losses["final_train_loss"] < losses["first_train_loss"]


def test_infer_loading_matches_the_trained_model(full_run):
    """infer.py's own load() gives the weights training saved (no base + adapter step)."""
    import torch

    root, run_dir = full_run["root"], full_run["run_dir"]
    infer = load_generated(root / "generated/full/infer.py", "full_infer")
    model, tokenizer = infer.load(run_dir)
    ids = tokenizer("Instruction: Classify.\nInput: Profits fell.\n<response>", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids.to(model.device)).logits
    assert torch.isfinite(logits).all()
    assert type(model).__name__ == "LlamaForCausalLM"


def test_sft_merge_then_full_dpo_chain_is_recorded(tmp_path, tiny_model_dir):
    """SFT (LoRA) -> `specforge export --format merged` -> DPO with lora: null from the merged
    folder: the DPO run trains all weights against a frozen copy of the merged ones (so at step 1,
    before any update, every reward is exactly 0), and its run.json names the SFT run and the
    merged weights' sha256, and its base evaluation scores that parent."""
    from specforge.core.files import file_sha256
    from tests.conftest import REPO
    from tests.helpers import PAIRS, method_spec

    (tmp_path / "specs").mkdir()
    (tmp_path / "data").mkdir()
    rows = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()
    (tmp_path / "data/train.jsonl").write_text("\n".join(rows[:40]) + "\n")
    (tmp_path / "data/heldout.jsonl").write_text("\n".join(rows[40:46]) + "\n")
    (tmp_path / "data/pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PAIRS[:24]))
    # a few steps at a low rate: the merged folder's answers must agree with the adapter's
    short = {"max_steps": 3, "eval_steps": 3, "learning_rate": 5.0e-3}
    (tmp_path / "specs/sft.yaml").write_text(tiny_spec(tiny_model_dir, name="sft", **short))
    result = run_cli("run", "specs/sft.yaml", "--compile", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (sft_run,) = sorted((tmp_path / "runs/sft").iterdir())
    relative = sft_run.relative_to(tmp_path)
    result = run_cli("export", str(relative), "--format", "merged", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    merged = f"{relative.as_posix()}/export/merged"

    dpo = method_spec(tiny_model_dir, "dpo", "dpo", adapter=merged)
    dpo = dpo.replace("training:\n", "lora: null\ntraining:\n", 1)
    (tmp_path / "specs/dpo.yaml").write_text(dpo)
    result = run_cli("run", "specs/dpo.yaml", "--compile", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (dpo_run,) = sorted((tmp_path / "runs/dpo").iterdir())
    record = json.loads((dpo_run / "run.json").read_text())
    parent = record["parent"]
    assert parent["run_id"] == sft_run.name and parent["name"] == "sft"
    assert parent["status"] == "succeeded" and parent["adapter"] == merged
    assert parent["model_sha256"] == file_sha256(tmp_path / merged / "model.safetensors")
    assert parent["export"]["format"] == "merged" and parent["export"]["passed"] is True
    metrics = [json.loads(x) for x in (dpo_run / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "loss" in m]
    assert steps[0]["step"] == 1 and steps[0]["rewards/chosen"] == 0.0, steps[0]
    assert any(m["rewards/margins"] != 0.0 for m in steps[1:])
    assert record["results"]["model"]["kind"] == "full model"
    # tuned vs base compares the DPO model with the model it started from: the merged parent
    assert record["base_evaluation"] == {"model": "parent", "path": merged}
    assert record["results"]["eval_base"]["n"] == record["results"]["eval_tuned"]["n"] == 6
    summary = json.loads((dpo_run / "train_summary.json").read_text())
    assert summary["parent"] == merged
    source = (tmp_path / "generated/dpo/train.py").read_text()
    assert "peft" not in source and "ref_model=reference" in source


def test_merged_export_of_a_full_run_says_there_is_nothing_to_merge(full_run):
    root, run_dir = full_run["root"], full_run["run_dir"]
    relative = str(run_dir.relative_to(root))
    result = run_cli("export", relative, "--format", "merged", cwd=root, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "full fine-tuning run" in output and "nothing to merge" in output
    assert "Traceback" not in output
    assert not (run_dir / "export").exists()


def test_full_dry_run_builds_the_config_without_an_adapter(full_run):
    import subprocess
    import sys

    root = full_run["root"]
    result = subprocess.run(
        [sys.executable, "generated/full/train.py", "--dry-run"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert "lora_config" not in out and out["training_args"]["max_steps"] == 4
    assert out["example"]["completion"].endswith("<response|end>")
