"""The auto layout is the recipe's mathematics: same rows per optimiser step, same token-mean loss.

A tiny random Llama trains twice from the same seed and rows, with the real libraries on CPU:
the recipe's 4 rows x 2 accumulation steps, and layout auto's plan (8 rows x 1). transformers
divides each micro-batch's summed loss by the whole step's label tokens (num_items_in_batch), so
the loss curves agree within float tolerance.
"""

from __future__ import annotations

import pytest

from tests.conftest import REPO, load_generated
from tests.helpers import compiled_layout, train_in

pytestmark = pytest.mark.train


def train_layout(root, tiny_model_dir, layout: str):
    script = compiled_layout(root, tiny_model_dir, layout, max_length=96)
    module = load_generated(script, f"train_{layout}")
    return script.read_text(), train_in(root, module, root / f"runs/tiny-{layout}/test")


def test_auto_and_recipe_layouts_give_the_same_loss_curve(tmp_path, tiny_model_dir):
    (tmp_path / "specs").mkdir()
    (tmp_path / "data").mkdir()
    rows = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()[:60]
    (tmp_path / "data/train.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "data/heldout.jsonl").write_text("\n".join(rows[:8]) + "\n")

    recipe_code, recipe = train_layout(tmp_path, tiny_model_dir, "recipe")
    auto_code, auto = train_layout(tmp_path, tiny_model_dir, "auto")

    assert '"gradient_accumulation_steps": 2,  # spec: training.gradient_accumulation_steps' in (
        recipe_code
    )
    # the plan, as constants that say where they came from
    assert '"per_device_train_batch_size": 8,  # spec: training.layout; auto: 8 rows' in auto_code
    assert '"gradient_accumulation_steps": 1,  # spec: training.layout; auto' in auto_code

    recipe_loss = [m["loss"] for m in recipe if "loss" in m]
    auto_loss = [m["loss"] for m in auto if "loss" in m]
    assert len(recipe_loss) == len(auto_loss) == 5
    assert auto_loss == pytest.approx(recipe_loss, rel=1e-4)
    assert recipe_loss[-1] < recipe_loss[0]  # it trained
    # the same label tokens were seen, step by step
    assert [m["num_tokens"] for m in auto if "loss" in m] == [
        m["num_tokens"] for m in recipe if "loss" in m
    ]
    # tokens/s and MFU from the second log entry on, against the stated CPU peak
    for entry in [m for m in auto if "loss" in m][1:]:
        assert entry["tokens_per_second"] > 0 and 0 < entry["mfu"] < 1
