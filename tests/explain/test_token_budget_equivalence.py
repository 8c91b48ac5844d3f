"""The token-budget layout is the recipe's mathematics: same rows per optimiser step, same loss.

A tiny random Llama trains twice from the same seed and rows, with the real libraries on CPU: the
recipe's 4 rows x 2 accumulation steps, and `layout: tokens` (8 rows a batch, cut by a token
budget small enough for several micro-batches a step, with rows longer than the budget training
alone). Each micro-batch's summed loss is divided by the step's label tokens, so the loss curves
agree within float tolerance.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, load_generated, run_cli
from tests.helpers import compiled_layout, train_in

pytestmark = pytest.mark.train

BUDGET = 120  # tokens: two of the sample's rows (45-71 tokens each), not its long ones


def train_layout(root, tiny_model_dir, layout: str, **extra):
    script = compiled_layout(root, tiny_model_dir, layout, max_length=160, **extra)
    module = load_generated(script, f"train_{layout}")
    pieces = []  # (rows, tokens, longest row) of every micro-batch the trainer ran
    if hasattr(module, "micro_batches"):
        cut = module.micro_batches

        def recording(batch, budget):
            out = cut(batch, budget)
            for piece in out:
                rows = len(piece["cu_seq_lens_q"]) - 1
                pieces.append((rows, piece["input_ids"].shape[1], piece["max_length_q"]))
            return out

        module.micro_batches = recording
    metrics = train_in(root, module, root / f"runs/tiny-{layout}/test")
    return script.read_text(), metrics, pieces


def test_token_budget_and_recipe_layouts_give_the_same_loss_curve(tmp_path, tiny_model_dir):
    (tmp_path / "specs").mkdir()
    (tmp_path / "data").mkdir()
    source = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()[:60]
    rows = [json.loads(line) for line in source]
    for row in rows[::5]:  # a long row every 5: longer than the budget
        row["input"] = " ".join([row["input"]] * 4)
    lines = [json.dumps(row) for row in rows]
    (tmp_path / "data/train.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "data/heldout.jsonl").write_text("\n".join(lines[:8]) + "\n")

    _, recipe, _ = train_layout(tmp_path, tiny_model_dir, "recipe")
    code, tokens, pieces = train_layout(tmp_path, tiny_model_dir, "tokens", token_budget=BUDGET)

    # the layout, as plain values that say where they came from
    assert '"per_device_train_batch_size": 8,  # spec: training.layout; tokens: 8 rows' in code
    assert f"TOKEN_BUDGET = {BUDGET}" in code
    assert "# spec: training.token_budget" in code
    assert "trainer = TokenBudgetTrainer(" in code

    # the budget cut every step's rows several times, and rows longer than it trained alone
    assert sum(rows for rows, _, _ in pieces) == 5 * 8
    assert len(pieces) >= 3 * 5
    assert all(tokens <= BUDGET or rows == 1 for rows, tokens, _ in pieces)
    assert any(rows == 1 and tokens > BUDGET for rows, tokens, _ in pieces), pieces
    assert any(rows > 1 for rows, _, _ in pieces)

    recipe_loss = [m["loss"] for m in recipe if "loss" in m]
    tokens_loss = [m["loss"] for m in tokens if "loss" in m]
    assert len(recipe_loss) == len(tokens_loss) == 5
    assert tokens_loss == pytest.approx(recipe_loss, rel=1e-4)
    assert recipe_loss[-1] < recipe_loss[0]  # it trained
    # the same tokens were seen, step by step
    assert [m["num_tokens"] for m in tokens if "loss" in m] == [
        m["num_tokens"] for m in recipe if "loss" in m
    ]
    assert [m["grad_norm"] for m in tokens if "loss" in m] == pytest.approx(
        [m["grad_norm"] for m in recipe if "loss" in m], rel=1e-3
    )


def test_fingpt_with_the_token_layout_compiles_clean_and_dry_runs(tmp_path):
    """specs/fingpt.yaml with `training.layout: tokens`: ruff-clean, and --dry-run builds its
    configs with the planner's values (64 rows a batch, no accumulation, the budget)."""
    result = run_cli(
        "compile",
        str(REPO / "specs/fingpt.yaml"),
        "--set",
        "training.layout=tokens",
        "--out",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    script = tmp_path / "fingpt-sentiment/train.py"
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    lint = subprocess.run(
        [ruff, "check", "--isolated", str(script)], capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0, lint.stdout
    done = subprocess.run(
        [sys.executable, str(script), "--dry-run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    args = out["training_args"]
    assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"]) == (64, 1)
    assert args["padding_free"] is True
    assert out["token_budget"] >= 512  # at least one row of max_length
    assert f"TOKEN_BUDGET = {out['token_budget']}" in script.read_text()
