"""method: pretrain really trains (tiny random Llama, trl 1.16's SFTTrainer on a text column,
CPU): the loss covers every token, documents are packed, and `specforge run` records the
held-out perplexity infer.py measures, for the tuned and the base model."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import REPO, load_generated, run_cli
from tests.helpers import pretrain_spec

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory, tiny_model_dir):
    """One `specforge run` of a pretrain spec: 6 steps on 48 headlines, 12 held out."""
    root = tmp_path_factory.mktemp("pretrain")
    (root / "specs").mkdir()
    (root / "data").mkdir()
    rows = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()[:60]
    texts = [{"text": json.loads(row)["input"]} for row in rows]
    for i in range(0, 60, 6):  # some longer than max_length, in both splits
        texts[i]["text"] = " ".join(t["text"] for t in texts[i + 1 : i + 4])
    (root / "data/text.jsonl").write_text("".join(json.dumps(t) + "\n" for t in texts))
    (root / "specs/pt.yaml").write_text(pretrain_spec(tiny_model_dir))
    result = run_cli("run", "specs/pt.yaml", "--compile", cwd=root, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (run_dir,) = [p for p in (root / "runs/pt").iterdir() if (p / "run.json").is_file()]
    return {"root": root, "run_dir": run_dir, "output": result.stdout + result.stderr}


def test_pretrain_records_held_out_perplexity(pretrain_run):
    record = json.loads((pretrain_run["run_dir"] / "run.json").read_text())
    tuned, base = record["results"]["eval_tuned"], record["results"]["eval_base"]
    assert tuned["n"] == base["n"] == 12 and tuned["tokens"] == base["tokens"] > 12
    assert tuned["perplexity"] == pytest.approx(math.exp(tuned["nll_per_token"]))
    assert tuned["perplexity"] < base["perplexity"]  # trained on text like it
    # infer.py's token-weighted figure agrees with the trainer's last evaluation of the same rows
    metrics = [json.loads(x) for x in (pretrain_run["run_dir"] / "metrics.jsonl").open()]
    eval_loss = [m["eval_loss"] for m in metrics if "eval_loss" in m][-1]
    assert tuned["nll_per_token"] == pytest.approx(eval_loss, abs=0.02)
    assert "perplexity" in pretrain_run["output"] and "held-out texts" in pretrain_run["output"]
    card = (pretrain_run["run_dir"] / "adapter/README.md").read_text()
    assert "| model | perplexity | tokens | texts |" in card


def test_pretrain_summary_reports_packing(pretrain_run):
    summary = json.loads((pretrain_run["run_dir"] / "train_summary.json").read_text())
    train, validation = summary["train"], summary["validation"]
    assert train["rows"] == 48 and validation["rows"] == 12 and train["empty"] == 0
    assert train["tokens_max"] > 48 and train["over_max_length"] >= 1  # split, never cut
    # a packed row holds several documents
    assert summary["packed_rows"] < train["rows"]


def test_pretrain_loss_covers_every_token_of_packed_rows(pretrain_run, monkeypatch):
    """A collated batch of the real trainer: every token carries its own id as the label but
    each document's first (nothing before it: position 0), and a row holds several documents."""
    root = pretrain_run["root"]
    monkeypatch.chdir(root)
    module = load_generated(root / "generated/pt/train.py", "train_pt_labels")
    one_step = {**module.TRAINING_ARGS, "max_steps": 1, "eval_strategy": "no"}
    monkeypatch.setattr(module, "TRAINING_ARGS", one_step)
    trainer = module.train(root / "runs/pt/labels")
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    assert sum(len(row["seq_lengths"]) for row in rows) > len(rows)  # packed
    assert all(sum(row["seq_lengths"]) <= 48 for row in rows)
    batch = trainer.data_collator(rows)
    ids, labels, positions = batch["input_ids"], batch["labels"], batch["position_ids"]
    starts = positions == 0
    assert int(starts.sum()) == sum(len(row["seq_lengths"]) for row in rows)
    assert bool((labels[~starts] == ids[~starts]).all())  # no prompt masked, no token skipped
    assert bool((labels[starts] == -100).all())
    eos = trainer.processing_class.eos_token_id
    assert int((ids == eos).sum()) == 48  # each document ends with one eos, none is cut
    assert int(starts.sum()) > 48  # a long document goes on in a row of its own


def test_infer_continues_the_examples(pretrain_run):
    import subprocess
    import sys

    root = pretrain_run["root"]
    command = [sys.executable, "generated/pt/infer.py", "--run-dir", str(pretrain_run["run_dir"])]
    result = subprocess.run(
        command, cwd=root, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert row["text"] == "Shares rose after" and isinstance(row["prediction"], str)
