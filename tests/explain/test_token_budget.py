"""`training.layout: tokens`: the planner's token budget (the largest that fits, at least one row
at max_length), the values compile emits for it, and explain's report of it."""

from __future__ import annotations

import json
from dataclasses import replace

from specforge.codegen.plan import layout_values
from specforge.modelinfo import cost
from specforge.modelinfo.layout import MEMORY_USE, choose
from specforge.modelinfo.params import count
from specforge.modelinfo.sample import Rows
from specforge.modelinfo.shape import BUILT_IN
from tests.conftest import REPO, run_cli
from tests.helpers import spec_for

MISTRAL = BUILT_IN["mistralai/Mistral-7B-v0.1"]
ROWS = Rows(76772, 152.0, 26744.0, "test")


def fingpt_like(method_spec=None, **training):
    spec = method_spec or spec_for("mistralai/Mistral-7B-v0.1", r=16)
    settings = {
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 8,
        "gradient_checkpointing": True,
        "precision": "fp16",
        "max_length": 512,
        "layout": "tokens",
        **training,
    }
    return spec.model_copy(update={"training": spec.training.model_copy(update=settings)})


def plan(spec, device="H200"):
    device = device if isinstance(device, cost.Device) else cost.DEVICES[device]
    return choose(spec, MISTRAL, count(spec, MISTRAL), ROWS, device)


def test_the_budget_is_the_largest_that_fits_and_keeps_the_steps_rows():
    spec = fingpt_like()
    result = plan(spec)
    assert result.layout == "tokens" and (result.batch, result.accumulation) == (64, 1)
    assert result.rows_per_step == 64
    assert 512 <= result.token_budget < 64 * 512 and result.token_budget % 256 == 0
    device = cost.DEVICES["H200"]
    assert result.memory_gib <= device.memory_gib * MEMORY_USE
    bigger = cost.memory(
        spec,
        MISTRAL,
        count(spec, MISTRAL),
        device,
        micro_tokens=result.token_budget + 256,
        checkpointing=result.checkpointing,
    )
    assert bigger.total / cost.GIB > device.memory_gib * MEMORY_USE
    # FinGPT's ~152-token rows: the step's ~9.7k tokens in one micro-batch, checkpointing off
    assert (result.micro_batches, result.checkpointing) == (1, False)
    assert result.micro_batches_worst == -(-64 // (result.token_budget // 512))
    assert "checkpointing off" in result.why


def test_the_budget_is_faster_than_the_row_layouts_by_the_time_model():
    recipe, auto = plan(fingpt_like(layout="recipe")), plan(fingpt_like(layout="auto"))
    tokens = plan(fingpt_like())
    assert tokens.step_seconds < auto.step_seconds < recipe.step_seconds


def test_a_budget_that_holds_the_whole_step_is_the_whole_step():
    result = plan(fingpt_like(max_length=64))  # 64 rows x 64 tokens fit anywhere
    assert result.token_budget == 64 * 64 and result.micro_batches_worst == 1


def test_the_specs_budget_is_kept_with_checkpointing_only_where_needed():
    result = plan(fingpt_like(token_budget=4096))
    assert (result.token_budget, result.checkpointing) == (4096, False)
    assert "training.token_budget" in result.why and result.micro_batches_worst == 8
    small = replace(cost.DEVICES["H200"], memory_gib=40.0)
    assert plan(fingpt_like(token_budget=4096), small).checkpointing is True
    tiny = replace(cost.DEVICES["H200"], memory_gib=16.0)
    squeezed = plan(fingpt_like(token_budget=100_000), tiny)
    assert squeezed.token_budget == 100_000 and "does not fit" in squeezed.why


def test_no_row_of_max_length_fitting_keeps_the_recipe():
    result = plan(fingpt_like(), replace(cost.DEVICES["H200"], memory_gib=10.0))
    assert result.layout == "recipe" and "no row of max_length 512 fits" in result.why


def test_packing_or_padding_keeps_the_recipe():
    assert plan(fingpt_like(packing=True)).layout == "recipe"
    padded = plan(fingpt_like(padding_free=False))
    assert padded.layout == "recipe" and "padding-free" in padded.why


def test_compile_emits_the_budget_as_a_value_naming_its_source():
    spec = fingpt_like(gpu="H100")
    values = layout_values(spec)
    assert (values.batch.value, values.accumulation.value) == (64, 1)
    assert values.batch.key == "training.layout"
    budget = values.token_budget
    assert budget.name == "TOKEN_BUDGET" and budget.key == "training.layout"
    assert budget.value == plan(spec, "H100").token_budget
    assert "H100" in budget.why and "at worst" in budget.why
    assert values.checkpointing.value is False
    assert values.checkpointing.why == "tokens: the budget fits"
    # the spec's own budget names its key
    assert layout_values(fingpt_like(token_budget=2048)).token_budget.key == (
        "training.token_budget"
    )


def test_without_a_model_shape_only_the_specs_budget_is_emitted():
    spec = fingpt_like(spec_for("example-org/unknown-model"))
    assert layout_values(spec).token_budget is None  # the recipe: nothing to plan with
    values = layout_values(fingpt_like(spec_for("example-org/unknown-model"), token_budget=3000))
    assert values.token_budget.value == 3000 and values.batch.value == 64
    assert values.checkpointing.value is True  # the recipe's: no estimate says otherwise


def explain_fingpt(*args: str) -> tuple[str, dict]:
    """explain's text and JSON report of specs/fingpt.yaml on an H200."""
    base = ("explain", "specs/fingpt.yaml", "--gpu", "H200", *args)
    text, data = run_cli(*base, cwd=REPO), run_cli(*base, "--format", "json", cwd=REPO)
    assert text.returncode == 0 and data.returncode == 0, text.stderr + data.stderr
    return text.stdout, json.loads(data.stdout)


def test_explain_shows_fingpts_token_budget_beside_the_other_layouts():
    out, report = explain_fingpt()
    layouts = {x["layout"]: x for x in report["layouts"]}
    tokens = layouts["tokens"]
    assert tokens["token_budget"] >= 512
    assert tokens["micro_batches"] <= tokens["micro_batches_worst_case"]
    speeds = [layouts[name]["tokens_per_second"] for name in ("recipe", "auto", "tokens")]
    assert speeds == sorted(speeds) and speeds[0] > 0
    assert "layouts (predicted on H200; training.layout picks one)" in out
    row = next(line for line in out.splitlines() if line.startswith("  tokens  <= "))
    assert f"<= {tokens['token_budget']:,} tokens" in row
    assert f"{tokens['tokens_per_second']:,}" in row


def test_explain_of_the_tokens_layout_shows_the_budget_and_micro_batches():
    out, report = explain_fingpt("--set", "training.layout=tokens")
    plan = report["plan"]
    assert plan["layout"] == "tokens" and plan["per_device_train_batch_size"] == 64
    n = plan["micro_batches"]
    assert "plan: layout tokens (training.layout: tokens)" in out
    assert f"  token budget         {plan['token_budget']:,} tokens a micro-batch" in out
    assert (
        f"  micro-batches        {n['expected']} a step expected, {n['worst_case']} at worst" in out
    )
    assert f"  tokens/s   {report['time']['tokens_per_second']:,}" in out
