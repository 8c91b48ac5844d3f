"""training.packing_strategy (issue 25, item 11; docs/packing.md): TRL's bfd, bfd_split and
wrapped, each visible in train.py with padding-free set to match; `wrapped` packs one token
stream into rows of exactly max_length (continued pretraining's way). The rule (SF012) is in
tests/spec/test_rules.py."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, load_generated, run_cli, tiny_spec
from tests.helpers import pretrain_spec

MAX_LENGTH = 48


def compiled_args(root, name: str, text: str) -> dict:
    (root / "specs").mkdir(exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    rows = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()[:40]
    for path in ("train.jsonl", "heldout.jsonl"):
        if not (root / "data" / path).exists():
            (root / "data" / path).write_text("\n".join(rows) + "\n")
    if not (root / "data/text.jsonl").exists():
        texts = [{"text": json.loads(row)["input"]} for row in rows]
        (root / "data/text.jsonl").write_text("".join(json.dumps(t) + "\n" for t in texts))
    (root / f"specs/{name}.yaml").write_text(text)
    result = run_cli("compile", f"specs/{name}.yaml", cwd=root)
    assert result.returncode == 0, result.stderr
    return load_generated(root / f"generated/{name}/train.py", f"packing_{name}").TRAINING_ARGS


@pytest.mark.parametrize(
    ("method", "strategy", "expected", "padding_free"),
    [
        ("sft", None, "bfd", True),
        ("sft", "wrapped", "wrapped", False),
        ("pretrain", None, "bfd_split", True),
        ("pretrain", "wrapped", "wrapped", False),
        ("pretrain", "bfd", "bfd", True),
    ],
)
def test_each_strategy_reaches_trl_with_padding_free_to_match(
    tmp_path, tiny_model_dir, method, strategy, expected, padding_free
):
    text = pretrain_spec(tiny_model_dir) if method == "pretrain" else tiny_spec(tiny_model_dir)
    if method == "sft":
        text = text.replace("  max_length: 128\n", "  max_length: 128\n  packing: true\n")
    if strategy:
        text = text.replace(
            "  packing: true\n", f"  packing: true\n  packing_strategy: {strategy}\n"
        )
    args = compiled_args(tmp_path, "pt" if method == "pretrain" else "tiny", text)
    assert args["packing"] is True
    assert args["packing_strategy"] == expected
    assert args["padding_free"] is padding_free


@pytest.mark.train
def test_wrapped_pretraining_rows_are_full_blocks_of_the_token_stream(tmp_path, tiny_model_dir):
    """Every packed row but the last holds exactly max_length tokens, all of them labelled:
    the documents were concatenated and cut, none padded, none dropped."""
    text = pretrain_spec(tiny_model_dir).replace(
        "  packing: true\n", "  packing: true\n  packing_strategy: wrapped\n"
    )
    compiled_args(tmp_path, "pt", text)
    mp = pytest.MonkeyPatch()
    mp.chdir(tmp_path)
    try:
        train = load_generated(tmp_path / "generated/pt/train.py", "packing_wrapped_train")
        trainer = train.train(tmp_path / "runs/pt/t")
    finally:
        mp.undo()
    data = trainer.train_dataset
    lengths = [len(ids) for ids in data["input_ids"]]
    assert lengths[:-1] and set(lengths[:-1]) == {MAX_LENGTH}, lengths
    eos = trainer.processing_class.eos_token_id
    # a document ends inside a row and the next one goes on in it: one stream, cut
    assert any(eos in ids[:-1] for ids in data["input_ids"][:-1])
    batch = trainer.data_collator([data[i] for i in range(4)])
    assert bool((batch["labels"] != -100).all())  # every token is learned, none is padding
    metrics = [json.loads(x) for x in (tmp_path / "runs/pt/t/metrics.jsonl").open()]
    assert any("loss" in m for m in metrics)
