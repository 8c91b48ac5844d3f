"""The report's parts on hand-written inputs in the formats the trainer and scoring write:
per-label figures from a confusion matrix, log axes, preference curves, SVG ids, and a page for
a record that has nothing but a status."""

from __future__ import annotations

import json
import re
from pathlib import Path

from specforge.report.charts import Chart, Series, line_chart, wants_log
from specforge.report.curves import curves_section
from specforge.report.evaluation import per_label
from specforge.report.page import report_run
from tests.report.dom import external_references, read


def test_per_label_precision_recall_f1_from_the_confusion_matrix():
    confusion = {
        "negative": {"negative": 3, "neutral": 1, "positive": 0, "other": 1},
        "neutral": {"negative": 1, "neutral": 2, "positive": 0, "other": 0},
        "positive": {"negative": 0, "neutral": 0, "positive": 0, "other": 2},
    }
    figures = per_label(confusion, ["negative", "neutral", "positive"])
    assert figures["negative"] == (3 / 4, 3 / 5, 2 * 3 / (5 + 4), 5)
    assert figures["neutral"] == (2 / 3, 2 / 3, 2 * 2 / (3 + 3), 3)
    precision, recall, f1, gold = figures["positive"]  # never answered: precision undefined
    assert (precision, recall, f1, gold) == (None, 0.0, 0.0, 2)


def test_log_axis_only_when_the_values_span_a_range():
    falling = Chart("loss", "loss", [Series("train", [(1, 10.0), (2, 0.5)])])
    flat = Chart("loss", "loss", [Series("train", [(1, 2.0), (2, 1.5)])])
    assert wants_log(falling) and not wants_log(flat)
    assert not wants_log(Chart("lr", "lr", falling.series, log=False))


def test_charts_on_one_page_share_no_ids():
    series = [Series("train", [(1, 3.0), (2, 2.0), (3, 1.0)])]
    first, second = (line_chart(Chart("a", "y", series)), line_chart(Chart("b", "y", series)))
    ids = [re.findall(r' id="([^"]+)"', svg or "") for svg in (first, second)]
    assert ids[0] and ids[1] and not set(ids[0]) & set(ids[1])
    assert "<?xml" not in (first or "") and "<metadata" not in (first or "")


def test_preference_curves_draw_rewards_and_name_what_is_missing():
    metrics = [
        {"step": s, "loss": 0.7 - s / 100, "rewards/accuracies": s / 10, "rewards/margins": s / 20}
        for s in range(1, 6)
    ]
    metrics.append({"step": 5, "eval_loss": 0.6, "eval_rewards/accuracies": 0.8})
    html = curves_section(metrics, {}, preference=True)
    charts = re.findall(r'data-chart="([^"]+)"', html)
    assert charts == ["loss", "reward accuracy", "reward margin"]
    assert "Not recorded by this run: learning rate, grad norm, tokens/s, MFU" in html
    assert (
        "reward" not in curves_section(metrics[:1], {}, preference=False).split("Not recorded")[-1]
    )


def test_a_record_with_only_a_status_still_gets_a_page(tmp_path: Path):
    """A run whose runner died before training wrote anything: run.json alone."""
    run_dir = tmp_path / "runs/tiny/20260101T000000Z-abcdef"
    run_dir.mkdir(parents=True)
    record = {
        "run_id": run_dir.name,
        "name": "tiny",
        "status": "failed",
        "failed_step": "prepare",
        "host": "elsewhere",  # another host's run: read as recorded
        "completed_steps": [],
        "spec": {"path": "specs/tiny.yaml", "resolved": {"name": "tiny"}, "overrides": []},
    }
    (run_dir / "run.json").write_text(json.dumps(record))
    (run_dir / "prepare.log").write_text("Traceback ...\nOSError: no such GGUF file\n")
    page = read(report_run(run_dir))
    assert page.by_id["headline-status"].attrs["data-value"] == "failed"
    assert "failed in its prepare step" in page.by_id["stopped-at"].content
    assert "no such GGUF file" in page.by_id["stopped"].content
    assert "not recorded" in page.by_id["curves"].content
    assert "not recorded" in page.by_id["evaluation"].content
    assert external_references(page) == []


def write_record(run_dir: Path, record: dict) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"host": "elsewhere", **record}))
    return run_dir


def test_a_preference_run_with_a_parent_shows_rewards_and_the_spec_diff(tmp_path: Path):
    """DPO after SFT: the reward figures in the headline, the parent chain, and the resolved
    spec keys that differ from the parent's."""
    sft = {"method": "sft", "training": {"learning_rate": 5e-4, "max_steps": 30}}
    dpo = {"method": "dpo", "training": {"learning_rate": 1e-4, "max_steps": 30}}
    parent = write_record(
        tmp_path / "runs/quickstart/1",
        {"run_id": "1", "name": "quickstart", "status": "succeeded", "spec": {"resolved": sft}},
    )
    rewards = {
        "final_reward_accuracy": 0.75,
        "eval_reward_accuracy": 0.875,
        "eval_reward_margin": 1.5,
    }
    child = write_record(
        tmp_path / "runs/quickstart-dpo/2",
        {
            "run_id": "2",
            "name": "quickstart-dpo",
            "status": "succeeded",
            "spec": {"resolved": dpo, "overrides": []},
            "parent": {"path": parent.as_posix(), "run_id": "1", "name": "quickstart"},
            "base_evaluation": {"model": "parent"},
            "results": {"rewards": rewards},
        },
    )
    page = read(report_run(child))
    assert float(page.by_id["headline-rewards"].descendants("div")[1].attrs["data-value"]) == 0.875
    diff = page.by_id["parent-diff"].descendants("tbody")[0].descendants("tr")
    cells = [[td.content for td in row.descendants("td")] for row in diff]
    assert cells == [["method", "sft", "dpo"], ["training.learning_rate", "0.0005", "0.0001"]]
    assert "quickstart" in page.by_id["parents"].content
