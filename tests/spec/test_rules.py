"""Cross-field rules: each id fires on a minimal spec that breaks it, and on none of the shipped specs."""

from __future__ import annotations

import json

import pytest

from specforge.validate.load import load_spec
from tests.helpers import diagnose, fired, only_rule, write_jsonl

from .conftest import REPO, line_col, spec_text

SHIPPED = sorted(p for p in (REPO / "specs").glob("*.yaml") if not p.name.startswith("_"))


@pytest.mark.parametrize("spec", SHIPPED, ids=lambda p: p.name)
def test_shipped_specs_break_no_rule(spec, monkeypatch):
    monkeypatch.chdir(REPO)  # their relative data paths resolve from the project root
    loaded = load_spec(spec.relative_to(REPO))
    assert loaded.warnings == [], "\n".join(d.render() for d in loaded.warnings)


def test_there_are_shipped_specs():
    assert {p.name for p in SHIPPED} >= {"quickstart.yaml", "fingpt.yaml"}


# --- SF001 -------------------------------------------------------------------------------------


def test_sf001_remote_code_is_refused_by_default(write_spec):
    text = spec_text(model={"trust_remote_code": True})
    diag = only_rule(diagnose(write_spec(text)), "SF001")
    assert diag.key == "model.trust_remote_code"
    assert "--allow-remote-code" in diag.hints[0]


def test_sf001_remote_code_is_allowed_on_request(write_spec):
    path = write_spec(model={"trust_remote_code": True})
    loaded = load_spec(path, allow_remote_code=True)
    assert loaded.spec.model.trust_remote_code is True
    assert fired(loaded.warnings, "SF001") == []


# --- SF002 / SF003 / SF004: validation data and schedules ----------------------------------------


def test_sf002_two_validation_sources(write_spec):
    path = write_spec(dataset={"validation_fraction": 0.1, "validation_split": "test"})
    diag = only_rule(diagnose(path), "SF002")
    assert diag.key == "dataset.validation_split"


def test_sf002_local_file_has_no_named_splits(write_spec, workdir):
    write_jsonl(workdir / "train.jsonl", [{"question": "q", "answer": "a"}])
    path = write_spec(dataset={"path": "train.jsonl", "validation_split": "test"})
    diag = only_rule(diagnose(path), "SF002")
    assert diag.hints == ("use dataset.validation_fraction",)


@pytest.mark.parametrize("strategy", ["steps", "epoch"])
def test_sf003_eval_strategy_without_validation_data(write_spec, strategy):
    path = write_spec(training={"eval_strategy": strategy, "eval_steps": 10})
    diag = only_rule(diagnose(path), "SF003")
    assert diag.key == "training.eval_strategy"
    assert any("validation_fraction" in h for h in diag.hints)


def test_sf003_not_fired_with_validation_data(write_spec):
    path = write_spec(dataset={"validation_fraction": 0.1}, training={"eval_strategy": "epoch"})
    assert diagnose(path) == []


def test_sf004_eval_steps_missing(write_spec):
    path = write_spec(dataset={"validation_fraction": 0.1}, training={"eval_strategy": "steps"})
    diag = only_rule(diagnose(path), "SF004")
    assert diag.key == "training.eval_steps"


def test_sf004_save_steps_missing(write_spec):
    diag = only_rule(diagnose(write_spec(training={"save_strategy": "steps"})), "SF004")
    assert diag.key == "training.save_steps"


def test_sf004_save_best_needs_evaluation(write_spec):
    diag = only_rule(diagnose(write_spec(training={"save_strategy": "best"})), "SF004")
    assert diag.key == "training.save_strategy"


def test_sf004_warmup_steps_or_ratio_not_both(write_spec):
    path = write_spec(training={"warmup_steps": 10, "warmup_ratio": 0.1})
    diag = only_rule(diagnose(path), "SF004")
    assert diag.key == "training.warmup_steps"
    assert diag.message == "set warmup_steps or warmup_ratio, not both"


@pytest.mark.parametrize(
    ("training", "value"),
    [({}, 0.0), ({"warmup_ratio": 0.1}, 0.1), ({"warmup_steps": 10}, 10), ({"warmup_steps": 0}, 0)],
    ids=["neither", "ratio", "steps", "zero-steps"],
)
def test_warmup_value_is_steps_or_a_ratio(write_spec, training, value):
    loaded = load_spec(write_spec(training=training))
    assert loaded.warnings == []
    got = loaded.spec.training.warmup_value()
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("scheduler", "kwargs"),
    [
        ("cosine_with_min_lr", {"min_lr_rate": 0.1}),
        ("cosine_with_min_lr", {"min_lr": 1.0e-5, "num_cycles": 0.5}),
        ("warmup_stable_decay", {"num_decay_steps": 100}),
        (
            "warmup_stable_decay",
            {
                "num_decay_steps": 10,
                "num_stable_steps": 50,
                "warmup_type": "cosine",
                "decay_type": "1-sqrt",
                "min_lr_ratio": 0.1,
                "num_cycles": 0.5,
            },
        ),
        ("cosine", {}),
        ("cosine", {"num_cycles": 1}),
        ("cosine_with_restarts", {"num_cycles": 3}),
        ("polynomial", {"lr_end": 1.0e-6, "power": 2.0}),
        ("inverse_sqrt", {"timescale": 100}),
        ("constant", {}),
    ],
)
def test_sf004_scheduler_arguments_that_fit(write_spec, scheduler, kwargs):
    path = write_spec(training={"lr_scheduler_type": scheduler, "lr_scheduler_kwargs": kwargs})
    loaded = load_spec(path)
    assert loaded.warnings == []
    assert loaded.spec.training.lr_scheduler_kwargs == kwargs


@pytest.mark.parametrize(
    ("scheduler", "hint"),
    [
        (
            "cosine_with_min_lr",
            (
                "add under training: `lr_scheduler_kwargs: {min_lr_rate: 0.1}` or "
                "`lr_scheduler_kwargs: {min_lr: 1.0e-5}`"
            ),
        ),
        (
            "warmup_stable_decay",
            "add under training: `lr_scheduler_kwargs: {num_decay_steps: 100}`",
        ),
    ],
)
def test_sf004_scheduler_without_its_required_argument(write_spec, scheduler, hint):
    text = spec_text(training={"lr_scheduler_type": scheduler})
    diag = only_rule(diagnose(write_spec(text)), "SF004")
    assert diag.key == "training.lr_scheduler_type"
    assert diag.location.line == line_col(text, f"lr_scheduler_type: {scheduler}")[0]
    assert "lr_scheduler_kwargs" in diag.message
    assert diag.hints == (hint,)


def test_sf004_unknown_scheduler_argument_suggests_the_closest(write_spec):
    kwargs = {"num_decay_step": 100}
    text = spec_text(
        training={"lr_scheduler_type": "warmup_stable_decay", "lr_scheduler_kwargs": kwargs}
    )
    found = diagnose(write_spec(text))
    [typo] = [d for d in found if d.key == "training.lr_scheduler_kwargs.num_decay_step"]
    assert typo.rule == "SF004"
    assert typo.location.line == line_col(text, "num_decay_step:")[0]
    assert typo.message == "the warmup_stable_decay schedule has no argument `num_decay_step`"
    assert typo.hints[0] == "did you mean `num_decay_steps`?"
    assert {d.key for d in found} == {typo.key, "training.lr_scheduler_type"}  # still missing


def test_sf004_argument_of_another_scheduler(write_spec):
    path = write_spec(
        training={"lr_scheduler_type": "cosine", "lr_scheduler_kwargs": {"min_lr": 1e-5}}
    )
    diag = only_rule(diagnose(path), "SF004")
    assert diag.hints == (
        "`min_lr` belongs to lr_scheduler_type cosine_with_min_lr",
        "cosine takes: num_cycles",
    )


def test_sf004_constant_schedules_take_no_arguments(write_spec):
    path = write_spec(
        training={
            "lr_scheduler_type": "constant_with_warmup",
            "lr_scheduler_kwargs": {"power": 1.0},
        }
    )
    diag = only_rule(diagnose(path), "SF004")
    assert diag.hints[-1] == "constant_with_warmup takes no lr_scheduler_kwargs; remove them"


@pytest.mark.parametrize(
    ("scheduler", "kwargs", "key", "message"),
    [
        (
            "warmup_stable_decay",
            {"num_decay_steps": 1.5},
            "num_decay_steps",
            "must be an integer (got 1.5)",
        ),
        (
            "warmup_stable_decay",
            {"num_decay_steps": True},
            "num_decay_steps",
            "must be an integer (got true)",
        ),
        (
            "warmup_stable_decay",
            {"num_decay_steps": 9, "decay_type": "exp"},
            "decay_type",
            "must be one of linear, cosine, 1-sqrt (got 'exp')",
        ),
        ("cosine_with_min_lr", {"min_lr_rate": 1.5}, "min_lr_rate", "must be <= 1 (got 1.5)"),
        (
            "cosine_with_min_lr",
            {"min_lr_rate": "0.1"},
            "min_lr_rate",
            "must be a number (got '0.1')",
        ),
        (
            "cosine_with_min_lr",
            {"min_lr": 1e-5, "min_lr_rate": 0.1},
            "min_lr",
            "set min_lr_rate or min_lr, not both",
        ),
        ("inverse_sqrt", {"timescale": 0}, "timescale", "must be > 0 (got 0)"),
        ("polynomial", {"lr_end": 0.01}, "lr_end", "must be below learning_rate 0.0002 (got 0.01)"),
    ],
)
def test_sf004_scheduler_argument_values(write_spec, scheduler, kwargs, key, message):
    path = write_spec(training={"lr_scheduler_type": scheduler, "lr_scheduler_kwargs": kwargs})
    diag = only_rule(diagnose(path), "SF004")
    assert diag.key == f"training.lr_scheduler_kwargs.{key}"
    assert diag.message == message


# --- SF005: precision and dtype ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [("fp16", "bfloat16"), ("bf16", "float16"), ("fp32", "float16"), ("fp32", "bfloat16")],
)
def test_sf005_precision_does_not_fit_dtype(write_spec, precision, dtype):
    text = spec_text(model={"dtype": dtype}, training={"precision": precision})
    diag = only_rule(diagnose(write_spec(text)), "SF005")
    assert diag.key == "training.precision"
    assert diag.message == f"precision {precision} does not fit weights loaded as {dtype}"


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [("fp16", "float16"), ("bf16", "bfloat16"), ("fp16", "float32"), ("bf16", "auto")],
)
def test_sf005_matching_precision_is_fine(write_spec, precision, dtype):
    path = write_spec(model={"dtype": dtype}, training={"precision": precision})
    assert diagnose(path) == []


def test_sf005_flash_attention_in_float32(write_spec):
    path = write_spec(model={"dtype": "float32", "attn_implementation": "flash_attention_2"})
    diag = only_rule(diagnose(path), "SF005")
    assert diag.key == "model.attn_implementation"


# --- stop tokens, SF007 / SF008: tokens ---------------------------------------------------------------


def test_completion_without_a_stop_token_loads_without_warnings(write_spec):
    """SF006 is retired: TRL appends the tokenizer's eos to such a completion and infer.py stops
    at it (tests/codegen/test_compile.py checks the script)."""
    loaded = load_spec(write_spec(prompt={"completion": "{answer}"}))
    assert loaded.warnings == []
    assert loaded.spec.stop_token() is None


def test_an_additional_token_counts_as_a_stop_token(write_spec):
    path = write_spec(
        tokenizer={"special_tokens": {"eos": None, "additional": ["<response>", "<end>"]}},
        prompt={"completion": "{answer}<end>"},
    )
    assert diagnose(path) == []


def test_sf016_eos_other_than_the_stop_token_is_a_warning(write_spec):
    text = spec_text(
        tokenizer={
            "special_tokens": {"eos": "<|im_end|>", "additional": ["<response>", "<response|end>"]}
        },
        prompt={"completion": "{answer}<response|end>"},
    )
    loaded = load_spec(write_spec(text))
    diag = only_rule(loaded.warnings, "SF016", severity="warning")
    assert diag.key == "tokenizer.special_tokens.eos"
    assert diag.location.line == line_col(text, "eos: <|im_end|>")[0]
    assert "<|im_end|>" in diag.message and "<response|end>" in diag.message
    assert diag.hints == ('declare the stop token as eos (eos: "<response|end>"), or drop eos',)


@pytest.mark.parametrize(
    "special_tokens",
    [
        {"eos": "<response|end>", "additional": ["<response>"]},
        {"eos": None, "additional": ["<response>", "<response|end>"]},
        {"eos": "<response|end>", "additional": ["<response>", "<response|end>"]},
    ],
    ids=["eos-is-the-stop-token", "no-eos", "eos-also-additional"],
)
def test_sf016_not_fired_when_eos_is_the_stop_token_or_absent(write_spec, special_tokens):
    path = write_spec(
        tokenizer={"special_tokens": special_tokens},
        prompt={"completion": "{answer}<response|end>"},
    )
    assert diagnose(path) == []


def test_sf007_undeclared_token_in_template_is_a_warning(write_spec):
    text = spec_text(prompt={"template": "<user> {question}\n<response>"})
    loaded = load_spec(write_spec(text))
    diag = only_rule(loaded.warnings, "SF007", severity="warning")
    assert diag.key == "prompt.template"
    assert diag.message == "<user> is not a declared special token"


def test_sf007_token_in_a_chat_message_is_checked(write_spec):
    path = write_spec(
        prompt={"template": None, "messages": [{"role": "user", "content": "<q> {question}"}]}
    )
    diag = only_rule(load_spec(path).warnings, "SF007", severity="warning")
    assert diag.key == "prompt.messages.0.content"


def test_sf007_with_a_readable_vocabulary_is_an_error(write_spec, workdir):
    model_dir = workdir / "model"
    model_dir.mkdir()
    tokenizer = {"model": {"vocab": {"<user>": 0, "a": 1}}, "added_tokens": [{"content": "<bot>"}]}
    (model_dir / "tokenizer.json").write_text(json.dumps(tokenizer))
    known = spec_text(
        model={"name": "./model"}, prompt={"template": "<user> {question} <bot>\n<response>"}
    )
    assert diagnose(write_spec(known)) == []
    unknown = spec_text(
        model={"name": "./model"}, prompt={"template": "<who> {question}\n<response>"}
    )
    diag = only_rule(diagnose(write_spec(unknown)), "SF007")
    assert diag.message == "<who> is neither declared nor in the base vocabulary"


def test_sf008_new_token_init_for_an_undeclared_token(write_spec):
    path = write_spec(tokenizer={"new_token_init": {"<other>": "</s>"}})
    diag = only_rule(diagnose(path), "SF008")
    assert diag.key == "tokenizer.new_token_init.<other>"


# --- SF009 / SF010 / SF011: data files and columns ----------------------------------------------


def test_sf009_missing_local_dataset(write_spec):
    text = spec_text(dataset={"path": "data/missing.jsonl"})
    diag = only_rule(diagnose(write_spec(text)), "SF009")
    assert diag.key == "dataset.path"
    assert diag.message == "local dataset data/missing.jsonl does not exist"


def test_sf009_not_checked_when_files_are_not_checked(write_spec):
    path = write_spec(dataset={"path": "data/missing.jsonl"})
    assert diagnose(path, check_files=False) == []


def test_sf009_missing_eval_data_and_model_dir(write_spec):
    path = write_spec(model={"name": "./no-such-model"}, inference={"eval_data": "held.jsonl"})
    found = diagnose(path)
    assert {d.key for d in fired(found, "SF009")} == {"model.name", "inference.eval_data"}


def test_sf009_eval_data_must_be_jsonl(write_spec, workdir):
    (workdir / "held.csv").write_text("question,answer\nq,a\n")
    diag = only_rule(diagnose(write_spec(inference={"eval_data": "held.csv"})), "SF009")
    assert diag.message == "eval data must be a .jsonl file"


def test_local_dataset_with_the_right_columns_is_fine(write_spec, workdir):
    write_jsonl(workdir / "train.jsonl", [{"question": "q", "answer": "a", "extra": 1}])
    assert diagnose(write_spec(dataset={"path": "train.jsonl"})) == []


def test_sf010_prompt_field_not_in_the_dataset_columns(write_spec, workdir):
    write_jsonl(workdir / "train.jsonl", [{"question": "q", "label": "a"}, {"question": "r"}])
    diag = only_rule(diagnose(write_spec(dataset={"path": "train.jsonl"})), "SF010")
    assert diag.key == "prompt"
    assert diag.message == "field(s) answer not in the dataset's columns (label, question)"


def test_sf010_misspelt_prompt_field_is_reported_once(write_spec, workdir):
    write_jsonl(workdir / "train.jsonl", [{"instruction": "q", "answer": "a"}])
    path = write_spec(
        dataset={"path": "train.jsonl"},
        prompt={"template": "{instrution}\n<response>"},
        inference={"examples": [{"instruction": "fine"}]},
    )
    diag = only_rule(diagnose(path), "SF010")
    assert diag.key == "prompt"
    assert diag.message.startswith("field(s) instrution not in the dataset's columns")


def test_sf010_csv_header_is_peeked(write_spec, workdir):
    (workdir / "train.csv").write_text("query,answer\nq,a\n")
    diag = only_rule(diagnose(write_spec(dataset={"path": "train.csv"})), "SF010")
    assert "question" in diag.message


def test_sf010_example_lacks_a_prompt_field(write_spec):
    path = write_spec(inference={"examples": [{"question": "ok"}, {"input": "wrong column"}]})
    diag = only_rule(diagnose(path), "SF010")
    assert diag.key == "inference.examples.1"
    assert diag.message == "example lacks field(s) question"


def test_sf011_labels_without_a_determinable_answer_column(write_spec):
    path = write_spec(
        prompt={"completion": "{answer} because {reason}<eos>"}, inference={"labels": ["a", "b"]}
    )
    diag = only_rule(diagnose(path), "SF011")
    assert diag.key == "inference.labels"
    assert diag.hints == ("set inference.answer_column",)


def test_sf011_answer_column_resolves_it(write_spec):
    path = write_spec(
        prompt={"completion": "{answer} because {reason}<eos>"},
        inference={"labels": ["a", "b"], "answer_column": "answer"},
    )
    assert diagnose(path) == []


# --- SF012 / SF013 / SF014: batching, layout and sampling ---------------------------------------------------------


def test_a_strategy_without_packing_is_refused_where_it_is_written(write_spec):
    text = spec_text(training={"packing_strategy": "wrapped"})
    diag = only_rule(diagnose(write_spec(text)), "SF012")
    assert "training.packing is false" in diag.message
    assert (diag.location.line, diag.location.col) == line_col(text, "wrapped")


def test_sf012_packing_and_padding_free(write_spec):
    path = write_spec(
        model={"dtype": "bfloat16", "attn_implementation": "flash_attention_2"},
        training={"precision": "bf16", "packing": True, "padding_free": True},
    )
    diag = only_rule(diagnose(path), "SF012")
    assert diag.key == "training.padding_free"
    assert diag.message == "packing and padding_free exclude each other"


def test_sf012_packing_without_flash_attention_is_a_warning(write_spec):
    loaded = load_spec(write_spec(training={"packing": True}))
    diag = only_rule(loaded.warnings, "SF012", severity="warning")
    assert diag.key == "training.packing"


def test_sf014_a_token_budget_without_the_tokens_layout_is_a_located_warning(write_spec):
    text = spec_text(training={"layout": "auto", "token_budget": 4096})
    loaded = load_spec(write_spec(text))
    diag = only_rule(loaded.warnings, "SF014", severity="warning")
    assert diag.message == "token_budget is for layout: tokens; layout auto ignores it"
    assert (diag.location.line, diag.location.col) == line_col(text, "4096")


@pytest.mark.parametrize(
    "training, why",
    [
        ({"packing": True}, "packed rows are not the spec's rows"),
        ({"padding_free": False}, "padding_free is false"),
    ],
)
def test_sf014_the_tokens_layout_where_the_planner_keeps_the_recipe(write_spec, training, why):
    loaded = load_spec(write_spec(training={"layout": "tokens", **training}))
    [diag] = [d for d in loaded.warnings if d.rule == "SF014"]  # packing also warns (SF012)
    assert diag.key == "training.layout"
    assert why in diag.message


def test_sf014_the_tokens_layout_with_its_budget_is_fine(write_spec):
    loaded = load_spec(write_spec(training={"layout": "tokens", "token_budget": 4096}))
    assert not [d for d in loaded.warnings if d.rule == "SF014"]


def test_sf012_packing_with_flex_attention_is_fine(write_spec):
    loaded = load_spec(
        write_spec(
            model={"attn_implementation": "flex_attention"},
            training={"packing": True, "padding_free": False},
        )
    )
    assert not [d for d in loaded.warnings if d.rule == "SF012"]


def test_sf013_sampling_knobs_under_greedy_decoding(write_spec):
    loaded = load_spec(write_spec(inference={"temperature": 0.7}))
    diag = only_rule(loaded.warnings, "SF013", severity="warning")
    assert diag.key == "inference.do_sample"


# --- all rules at once -----------------------------------------------------------------------------


def test_several_rules_are_reported_together(write_spec):
    path = write_spec(
        model={"trust_remote_code": True, "dtype": "bfloat16"},
        dataset={"validation_fraction": 0.1, "validation_split": "test"},
        training={"precision": "fp16"},
        inference={"temperature": 0.7},
    )
    found = diagnose(path)
    assert {d.rule for d in found} == {"SF001", "SF002", "SF005", "SF013"}
    assert {d.severity for d in found if d.rule == "SF013"} == {"warning"}
    assert all(d.location.file == "spec.yaml" for d in found)


def test_rule_location_points_at_the_offending_key(write_spec):
    text = spec_text(training={"packing": True, "padding_free": True})
    line = text.splitlines().index("  padding_free: true") + 1
    diag = fired(diagnose(write_spec(text)), "SF012")[0]
    assert diag.render().splitlines()[0] == (
        f"spec.yaml:{line}:17: error: training.padding_free: "
        "packing and padding_free exclude each other [SF012]"
    )


def test_sf015_slurm_signal_must_come_before_the_time_limit(write_spec):
    slurm = {"gpus_per_node": 0, "time": "00:05:00", "signal_seconds": 300}
    diag = only_rule(diagnose(write_spec(launch={"slurm": slurm})), "SF015")
    assert diag.key == "launch.slurm.signal_seconds" and "(300 s)" in diag.message
    slurm = {**slurm, "time": "1-00:05:00"}
    assert fired(diagnose(write_spec(launch={"slurm": slurm})), "SF015") == []
