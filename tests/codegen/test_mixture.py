"""Dataset mixtures (dataset.sources): each source is sampled with the seed and mapped to the
prompt's columns, mixed by weight into the largest mixture that repeats no row, reproducibly;
the rows drawn from each source are reported and each source is fingerprinted."""

from __future__ import annotations

import json

import pytest

from specforge.runs.record import data_fingerprint
from specforge.validate.load import load_spec
from tests.conftest import REPO, load_generated, run_cli

pytestmark = pytest.mark.train

SOURCES = """\
dataset:
  sources:
    - path: data/train.jsonl
      weight: 3
    - path: data/facts.jsonl
      weight: 1
      columns: {instruction: question, input: note, output: answer}
"""


@pytest.fixture
def mix_project(project):
    """The tiny project with a second source whose columns are named differently."""
    facts = [
        {"question": f"Which city? ({i})", "note": f"Trip {i} went to Oslo.", "answer": f"city-{i}"}
        for i in range(100)
    ]
    (project / "data/facts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in facts))
    spec = project / "specs/tiny.yaml"
    text = spec.read_text()
    start, end = text.index("dataset:"), text.index("prompt:")
    text = text[:start] + SOURCES + "  validation_fraction: 0.2\n" + text[end:]
    spec.write_text(text)
    return project


def load_mixture(root, monkeypatch, name):
    result = run_cli("compile", "specs/tiny.yaml", cwd=root)
    assert result.returncode == 0, result.stderr
    monkeypatch.chdir(root)
    return load_generated(root / "generated/tiny/train.py", name).load_mixture()


def test_weights_set_the_proportions_of_a_seeded_sample(mix_project, monkeypatch):
    rows, drawn = load_mixture(mix_project, monkeypatch, "mix_a")
    # 60 sentiment rows at 3 parts in 4 bound the mixture at 80 rows: 60 + 20
    assert drawn == {"data/train.jsonl": 60, "data/facts.jsonl": 20}
    assert len(rows) == 80 and set(rows.column_names) == {"instruction", "input", "output"}
    facts = [r["output"] for r in rows if r["output"].startswith("city-")]
    assert len(facts) == 20
    assert facts != [f"city-{i}" for i in range(20)]  # sampled with the seed, not the first rows
    again, _ = load_mixture(mix_project, monkeypatch, "mix_b")
    assert again.to_list() == rows.to_list()  # reproducible


def test_max_samples_caps_a_source_before_the_weights(mix_project, monkeypatch):
    spec = mix_project / "specs/tiny.yaml"
    text = spec.read_text().replace("      weight: 1\n", "      weight: 1\n      max_samples: 10\n")
    spec.write_text(text)
    _, drawn = load_mixture(mix_project, monkeypatch, "mix_c")
    assert drawn == {"data/train.jsonl": 30, "data/facts.jsonl": 10}


def test_a_source_that_does_not_map_is_a_located_error(mix_project):
    spec = mix_project / "specs/tiny.yaml"
    spec.write_text(spec.read_text().replace("input: note, ", ""))
    line = spec.read_text().splitlines().index("    - path: data/facts.jsonl") + 1
    result = run_cli("validate", "specs/tiny.yaml", cwd=mix_project)
    assert result.returncode == 1
    text = result.stdout + result.stderr
    assert (
        f"specs/tiny.yaml:{line}:7: error: dataset.sources.1: source data/facts.jsonl does not "
        in text
    )
    assert "column(s) input not in its columns (answer, note, question)" in text
    assert "hint: map them under `columns:`" in text


def test_record_fingerprints_each_source(mix_project, monkeypatch):
    monkeypatch.chdir(mix_project)
    spec = load_spec(mix_project / "specs/tiny.yaml").spec
    sources = data_fingerprint(spec)["train"]["sources"]
    assert [s["path"] for s in sources] == ["data/train.jsonl", "data/facts.jsonl"]
    assert all(len(s["sha256"]) == 64 for s in sources)


def test_shipped_mixture_weights_and_columns_compile_into_sources():
    spec = load_spec(REPO / "specs/quickstart-mix.yaml", check_files=False).spec
    assert [s.weight for s in spec.dataset.sources] == [3, 1]
    assert spec.dataset.sources[1].columns["output"] == "answer"


def test_without_weights_every_row_of_every_source_is_used(mix_project, monkeypatch):
    spec = mix_project / "specs/tiny.yaml"
    spec.write_text(
        spec.read_text().replace("      weight: 3\n", "").replace("      weight: 1\n", "")
    )
    rows, drawn = load_mixture(mix_project, monkeypatch, "mix_d")
    assert drawn == {"data/train.jsonl": 60, "data/facts.jsonl": 100} and len(rows) == 160
