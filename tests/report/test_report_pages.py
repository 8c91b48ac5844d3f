"""`specforge report` and the page `specforge run` writes, on real tiny-model runs: the headline
figures in the DOM equal run.json's, nothing loads from the network, a run stopped halfway and a
failed run get pages that say where they stopped, and a sweep's page ranks its points."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, tiny_spec
from tests.helpers import PAIRS, method_spec, start_in_session, wait_for
from tests.report.browser import ink, needs_chromium, screenshot
from tests.report.dom import Page, external_references, read

pytestmark = pytest.mark.train

TRAINING = {"max_steps": 8, "logging_steps": 1, "eval_steps": 4}


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_model_dir) -> Path:
    """A compiled project: specs/tiny.yaml on 48 training rows, scored on 9 held-out rows."""
    root = tmp_path_factory.mktemp("report")
    (root / "specs").mkdir()
    (root / "data").mkdir()
    rows = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()
    held = (REPO / "data/fin_sentiment_heldout.jsonl").read_text().splitlines()
    (root / "data/train.jsonl").write_text("\n".join(rows[:48]) + "\n")
    (root / "data/heldout.jsonl").write_text("\n".join(held[:9]) + "\n")
    (root / "specs/tiny.yaml").write_text(tiny_spec(tiny_model_dir, **TRAINING))
    assert run_cli("compile", cwd=root).returncode == 0
    return root


def newest_run(root: Path) -> Path:
    return max(p for p in (root / "runs/tiny").iterdir() if p.name != "sweeps")


@pytest.fixture(scope="module")
def good_run(root) -> dict:
    result = run_cli("run", "specs/tiny.yaml", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = newest_run(root)
    return {
        "dir": run_dir,
        "result": result,
        "record": json.loads((run_dir / "run.json").read_text()),
    }


def test_run_writes_its_page_and_prints_its_path(good_run):
    page = good_run["dir"] / "report.html"
    assert page.is_file()
    assert f"report: runs/tiny/{good_run['dir'].name}/report.html" in good_run["result"].stderr
    assert page.stat().st_size < 2_000_000


def test_headline_figures_equal_the_record(good_run):
    page = read(good_run["dir"] / "report.html")
    results = good_run["record"]["results"]
    assert page.by_id["headline-status"].attrs["data-value"] == "succeeded"
    main = page.by_id["headline-main"]
    assert main.attrs["data-metric"] == "accuracy"
    cards = [t for t in page.tags if "card" in (t.attrs.get("class") or "").split()]
    assert len(cards) >= 4  # accuracy, lenient accuracy, macro-F1, train loss
    for card in page.tags:
        metric = card.attrs.get("data-metric")
        if metric is None or card.tag != "div":
            continue
        tuned, base = results["eval_tuned"][metric], results["eval_base"][metric]
        assert float(card.attrs["data-tuned"]) == tuned
        assert float(card.attrs["data-base"]) == base
    shown = next(
        t for t in page.tags if t.attrs.get("class") == "tuned" and t.attrs.get("data-value")
    )
    accuracy = results["eval_tuned"]["accuracy"]
    assert shown.content == f"{accuracy * 100:.1f} %"
    losses = results["losses"]
    train_loss = page.by_id["headline-train-loss"]
    assert f"{losses['final_train_loss']:.3f}" in train_loss.content
    assert f"{losses['first_train_loss']:.3f}" in train_loss.content
    assert f"{losses['final_eval_loss']:.3f}" in page.by_id["headline-eval-loss"].content


def test_nothing_loads_from_the_network(good_run):
    html = (good_run["dir"] / "report.html").read_text()
    page = Page(html)
    assert external_references(page) == []
    styles = " ".join(t.content for t in page.tags if t.tag == "style")
    assert "@import" not in styles and "url(" not in styles
    charts = [t.attrs.get("data-chart") for t in page.tags if t.tag == "figure"]
    assert {"loss", "learning rate", "grad norm", "tokens/s"} <= set(charts)
    assert sum(t.tag == "svg" for t in page.tags) >= 4


def test_classification_sections_show_the_recorded_confusion(good_run):
    page = read(good_run["dir"] / "report.html")
    results = good_run["record"]["results"]
    labels = ["negative", "neutral", "positive"]
    for side, key in (("tuned", "eval_tuned"), ("base", "eval_base")):
        rows = page.by_id[f"confusion-{side}"].descendants("tbody")[0].descendants("tr")
        shown = [[int(td.content) for td in row.descendants("td")] for row in rows]
        confusion = results[key]["confusion"]
        assert shown == [[confusion[gold][a] for a in [*labels, "other"]] for gold in labels]
    per_label = page.by_id["per-label"].descendants("tbody")[0].descendants("tr")
    assert [row.descendants("td")[0].content for row in per_label] == labels
    samples = page.by_id["samples"].descendants("tbody")[0].descendants("tr")
    assert samples
    gold = [row.descendants("td")[2].content for row in samples]
    assert set(gold) <= set(labels)


def test_provenance_names_the_scripts_data_and_git(good_run):
    page = read(good_run["dir"] / "report.html")
    record = good_run["record"]
    titles = {t.attrs.get("title") for t in page.tags if t.tag == "code"}
    for name, sha in record["scripts"]["sha256"].items():
        assert name in page.by_id["scripts"].content
        assert sha in titles  # shortened on the page, whole in the tooltip
    assert record["data"]["train"]["sha256"] in titles
    assert record["versions"]["torch"] in page.by_id["versions"].content
    assert "git commit" in page.by_id["provenance"].content


def test_report_verb_writes_where_asked(good_run, root, tmp_path):
    out = tmp_path / "page.html"
    result = run_cli("report", good_run["dir"].name, "-o", str(out), cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert read(out).by_id["headline-status"].attrs["data-value"] == "succeeded"


def test_unknown_target_is_a_usage_error(root):
    result = run_cli("report", "no-such-run", cwd=root)
    assert result.returncode == 2
    assert "no-such-run" in result.stderr and "Traceback" not in result.stderr


def test_failed_run_gets_a_page_with_the_failing_log(root, good_run):
    (root / "data/bad.jsonl").write_text(
        '{"instruction": "x", "input": null, "output": "positive"}\n' * 10
    )
    result = run_cli("run", "specs/tiny.yaml", "--set", "dataset.path=data/bad.jsonl", cwd=root)
    assert result.returncode != 0
    run_dir = newest_run(root)
    assert "report: " in result.stderr
    page = read(run_dir / "report.html")
    assert page.by_id["headline-status"].attrs["data-value"] == "failed"
    stopped = page.by_id["stopped-at"].content
    assert "failed in its train step" in stopped and "no training step was logged" in stopped
    assert "missing field" in page.by_id["stopped"].content  # the tail of train.log
    assert "not recorded" in page.by_id["evaluation"].content
    assert "lora.r" not in page.by_id["overrides"].content
    assert "dataset.path" in page.by_id["overrides"].content


def test_run_stopped_halfway_says_where(root, good_run):
    """Ctrl-C in the middle of training: the page names the step and the last logged step."""
    log = root / "halfway.log"
    args = [sys.executable, "-m", "specforge", "run", "specs/tiny.yaml"]
    process = start_in_session([*args, "--set", "training.max_steps=400"], cwd=root, log=log)
    before = {p.name for p in (root / "runs/tiny").iterdir()}

    def logged_three() -> Path | None:
        for folder in (root / "runs/tiny").iterdir():
            metrics = folder / "metrics.jsonl"
            if folder.name in before or not metrics.is_file():
                continue
            if sum('"loss"' in line for line in metrics.read_text().splitlines()) >= 3:
                return folder
        return None

    run_dir = wait_for(logged_three, process, "three logged steps")
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=300) == 130
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted"
    page = read(run_dir / "report.html")
    reached = max(
        json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    )
    stopped = page.by_id["stopped-at"].content
    assert "interrupted during its train step" in stopped
    assert f"logged step {reached} of 400" in stopped
    assert page.by_id["headline-status"].attrs["data-value"] == "interrupted"
    assert any(t.attrs.get("data-chart") == "loss" for t in page.tags)  # the curve so far
    assert f"report: runs/tiny/{run_dir.name}/report.html" in log.read_text()


def test_generative_run_page_shows_text_scores(root, good_run):
    """Without labels the held-out answers are scored as text: exact match, token-F1, ROUGE-L."""
    overrides = ["--set", "inference.labels=null", "--set", "training.max_steps=2"]
    result = run_cli("run", "specs/tiny.yaml", *overrides, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = newest_run(root)
    tuned = json.loads((run_dir / "run.json").read_text())["results"]["eval_tuned"]
    page = read(run_dir / "report.html")
    assert page.by_id["headline-main"].attrs["data-metric"] == "exact_match"
    for metric in ("exact_match", "token_f1", "rouge_l"):
        card = next(
            t for t in page.tags if t.attrs.get("data-metric") == metric and "data-tuned" in t.attrs
        )
        assert float(card.attrs["data-tuned"]) == tuned[metric]
    scores = page.by_id["scores"].content
    assert "exact match" in scores and "ROUGE-L" in scores and "token-F1" in scores
    assert "confusion-tuned" not in page.by_id
    samples = page.by_id["samples"].descendants("tbody")[0].descendants("tr")
    assert samples and all("F1" in row.descendants("td")[3].content for row in samples)


def test_a_real_dpo_run_on_the_sft_run_shows_its_rewards_parent_and_spec_diff(
    root, good_run, tiny_model_dir
):
    """DPO continuing the SFT run's adapter (the quickstart-dpo chain, on the tiny model): the
    page `specforge run` writes shows the reward figures run.json holds, the reward curves the
    trainer logged, the parent, and the spec keys that differ from the parent's."""
    (root / "data/pairs.jsonl").write_text("\n".join(json.dumps(r) for r in PAIRS[:24]) + "\n")
    parent = f"runs/tiny/{good_run['dir'].name}"
    (root / "specs/chain.yaml").write_text(
        method_spec(tiny_model_dir, "dpo", "chain", adapter=parent)
    )
    assert run_cli("compile", "specs/chain.yaml", cwd=root).returncode == 0
    result = run_cli("run", "specs/chain.yaml", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (root / "runs/chain").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["parent"]["run_id"] == good_run["dir"].name
    page = read(run_dir / "report.html")
    rewards = record["results"]["rewards"]
    shown = page.by_id["headline-rewards"].descendants("div")[1]
    assert float(shown.attrs["data-value"]) == rewards["eval_reward_accuracy"]
    charts = {t.attrs.get("data-chart") for t in page.tags if t.tag == "figure"}
    assert {"loss", "reward accuracy", "reward margin"} <= charts
    diff = page.by_id["parent-diff"].descendants("tbody")[0].descendants("tr")
    cells = [[td.content for td in row.descendants("td")] for row in diff]
    assert ["method", "sft", "dpo"] in cells
    assert good_run["dir"].name in page.by_id["parents"].content


@pytest.fixture(scope="module")
def sweep(root, good_run) -> dict:
    grid = [
        "--grid",
        "lora.r=4,8",
        "--set",
        "training.max_steps=2",
        "--set",
        "training.eval_steps=2",
    ]
    result = run_cli("sweep", "specs/tiny.yaml", *grid, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    (manifest,) = (root / "runs/tiny/sweeps").glob("*/sweep.json")
    return {
        "manifest": json.loads(manifest.read_text()),
        "dir": manifest.parent,
        "result": result,
    }


def test_sweep_page_ranks_its_points(root, sweep):
    sweep_id = sweep["manifest"]["sweep_id"]
    # the sweep wrote its page, and each point's, at its end, as `specforge run` does
    written = sweep["dir"] / "report.html"
    assert written.is_file()
    assert f"report: {written.relative_to(root).as_posix()}" in sweep["result"].stderr
    for point in sweep["manifest"]["points"]:
        assert (root / "runs/tiny" / point["runs"][-1] / "report.html").is_file()
    result = run_cli("report", sweep_id, cwd=root)
    assert result.returncode == 0, result.stderr
    path = root / result.stdout.strip()
    assert path == sweep["dir"] / "report.html"
    page = read(path)
    assert external_references(page) == []
    compared = run_cli("compare", sweep_id, "--format", "json", cwd=root)
    expected = json.loads(compared.stdout)
    best = page.by_id["compare-best"]
    assert best.attrs["data-best"] == expected["best"]
    assert best.attrs["data-metric"] == expected["metric"]
    ranked = page.by_id["ranked"]
    for outcome in expected["ranked"]:
        assert outcome["status"] in ranked.content
    assert "lora.r" in page.by_id["differs"].content
    assert any(t.attrs.get("data-chart") == "loss" for t in page.tags)


def test_comparison_of_run_folders(root, good_run, sweep, tmp_path):
    point = root / "runs/tiny" / sweep["manifest"]["points"][0]["runs"][-1]
    out = tmp_path / "both.html"
    result = run_cli("report", str(good_run["dir"]), str(point), "-o", str(out), cwd=root)
    assert result.returncode == 0, result.stderr
    page = read(out)
    assert "training.max_steps" in page.by_id["differs"].content
    assert len(page.by_id["run-folders"].content) > 0


@needs_chromium
def test_page_renders_in_a_headless_browser(good_run, tmp_path):
    png = screenshot(good_run["dir"] / "report.html", tmp_path / "page.png")
    colours, painted = ink(png)
    assert colours > 200  # text, charts, shaded matrices: not a blank or error page
    assert painted > 0.03
    top_colours, top_painted = ink(png, (0, 0, 1280, 400))  # the headline is above the fold
    assert top_colours > 50 and top_painted > 0.02
