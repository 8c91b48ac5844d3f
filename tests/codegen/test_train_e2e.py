"""The generated train.py really trains (tiny random Llama, real libraries, CPU), saves the adapter
with the new token rows, and infer.py's own loading code reproduces the trained model exactly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import load_generated, run_cli

pytestmark = pytest.mark.train

PROBE = "Instruction: Classify the sentiment.\nInput: Profits fell sharply.\n<response>"


@pytest.fixture(scope="module", params=["tied", "untied"])
def trained(request, tmp_path_factory):
    """Compile the tiny spec, train in this process via train.py's own `train()`."""
    import torch

    from tests.conftest import REPO, tiny_spec

    tiny_model_dir = request.getfixturevalue(
        "tiny_model_dir" if request.param == "tied" else "tiny_untied_model_dir"
    )
    root = tmp_path_factory.mktemp("e2e")
    (root / "specs").mkdir()
    (root / "data").mkdir()
    rows = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()[:60]
    (root / "data/train.jsonl").write_text("\n".join(rows) + "\n")
    (root / "data/heldout.jsonl").write_text("\n".join(rows[:8]) + "\n")
    (root / "specs/tiny.yaml").write_text(tiny_spec(tiny_model_dir, max_steps=16))
    result = run_cli("compile", "specs/tiny.yaml", cwd=root)
    assert result.returncode == 0, result.stderr

    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    try:
        train_module = load_generated(
            root / "generated/tiny/train.py", f"tiny_train_{request.param}"
        )
        out = root / "runs/tiny/test"
        trainer = train_module.train(out)
        model = trainer.model.eval()
        tokenizer = trainer.processing_class
        ids = tokenizer(PROBE, return_tensors="pt")
        with torch.no_grad():
            logits = model(**ids).logits
    finally:
        mp.undo()
    return {
        "root": root,
        "out": out,
        "trainer": trainer,
        "logits": logits,
        "probe_ids": ids,
        "tied": request.param == "tied",
    }


def test_loss_falls(trained):
    metrics = [json.loads(x) for x in (trained["out"] / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert len(losses) >= 4
    assert losses[-1] < losses[0] * 0.8, losses
    assert any("eval_loss" in m for m in metrics)


def test_adapter_holds_new_token_rows_not_full_embeddings(trained):
    from safetensors import safe_open

    adapter = trained["out"] / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    new_ids = json.loads((trained["out"] / "train_summary.json").read_text())["new_tokens"]
    assert new_ids == ["<response>", "<response|end>"]
    targets = config["trainable_token_indices"]
    assert set(targets) == ({"embed_tokens"} if trained["tied"] else {"embed_tokens", "lm_head"})
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    token_keys = [k for k in keys if "trainable_tokens" in k]
    assert token_keys, keys
    assert not any(k.endswith("embed_tokens.weight") for k in keys), "full embedding saved"
    # the new rows moved away from their initialisation: they were trained
    tokenizer = trained["trainer"].processing_class
    new_row_ids = tokenizer.convert_tokens_to_ids(["<response>", "<response|end>"])
    embeddings = trained["trainer"].model.get_input_embeddings()
    start_rows = embeddings.token_adapter.base_layer.weight[new_row_ids].detach()
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as handle:
        for key in token_keys:
            rows = handle.get_tensor(key)
            assert rows.shape == start_rows.shape
            assert (rows - start_rows).abs().max() > 1e-4, f"{key}: new rows never trained"


def test_infer_loading_reproduces_trained_logits(trained):
    """A fresh process runs infer.py's load() on the saved run: identical logits."""
    root, out = trained["root"], trained["out"]
    reference = root / "reference.pt"
    import torch

    torch.save({"ids": trained["probe_ids"]["input_ids"], "logits": trained["logits"]}, reference)
    code = f"""
import importlib.util, sys, torch
from pathlib import Path
spec = importlib.util.spec_from_file_location("infer", "generated/tiny/infer.py")
infer = importlib.util.module_from_spec(spec); spec.loader.exec_module(infer)
model, tokenizer = infer.load(Path({str(out)!r}))
ref = torch.load({str(reference)!r})
ids = tokenizer({PROBE!r}, return_tensors="pt")["input_ids"]
assert torch.equal(ids, ref["ids"]), (ids, ref["ids"])
with torch.no_grad():
    logits = model(input_ids=ids).logits
print((logits - ref["logits"]).abs().max().item())
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.strip().splitlines()[-1]) < 1e-5


def test_infer_answers_and_specforge_scores_them(trained):
    from specforge.runs.scoring import read_predictions, score_predictions

    root, out = trained["root"], trained["out"]
    command = [sys.executable, "generated/tiny/infer.py", "--run-dir", str(out)]
    command += ["--data", "data/heldout.jsonl", "--output", str(out / "predictions.jsonl")]
    result = subprocess.run(
        command, cwd=root, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "model on cpu" in result.stderr
    rows = read_predictions(out / "predictions.jsonl")
    assert len(rows) == 8 and all("prediction" in row and "output" in row for row in rows)
    metrics = score_predictions(rows, ["negative", "neutral", "positive"], "output")
    assert metrics["n"] == 8 and 0.0 <= metrics["accuracy"] <= metrics["lenient_accuracy"] <= 1.0
    assert set(metrics["confusion"]) == {"negative", "neutral", "positive"}


def test_infer_loads_the_model_onto_the_gpu_when_there_is_one(trained, monkeypatch):
    """Defect: infer.py passed no device_map and never moved the model, so after training on a
    GPU the evaluation ran Mistral-7B on the CPU (or failed there with flash-attention)."""
    import torch

    infer = load_generated(trained["root"] / "generated/tiny/infer.py", "device_infer")
    real_available, real_load = torch.cuda.is_available, infer.AutoModelForCausalLM.from_pretrained
    seen = {}

    def load_on_this_machine(*args, **kwargs):
        seen.update(kwargs)
        monkeypatch.setattr(torch.cuda, "is_available", real_available)  # peft loads after
        return real_load(*args, **{**kwargs, "device_map": "cpu"})  # no GPU here

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(infer.AutoModelForCausalLM, "from_pretrained", load_on_this_machine)
    infer.load(trained["out"])
    assert seen["device_map"] == "cuda"
