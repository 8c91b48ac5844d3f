"""load_spec: compiler-style diagnostics, hints, `extends:` and `--set`."""

from __future__ import annotations

import pytest

from specforge.core.errors import Diagnostic, SpecError
from specforge.validate.load import UsageError, load_spec

from .conftest import DROP, line_col, spec_text


def errors_of(path, overrides=None, **kwargs) -> list[Diagnostic]:
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides, **kwargs)
    return info.value.diagnostics


def only_error(path, overrides=None) -> Diagnostic:
    diagnostics = errors_of(path, overrides)
    assert len(diagnostics) == 1, "\n".join(d.render() for d in diagnostics)
    return diagnostics[0]


def test_minimal_spec_loads_clean(write_spec):
    loaded = load_spec(write_spec())
    assert loaded.spec.name == "unit"
    assert loaded.label == "spec.yaml"
    assert loaded.warnings == []


# --- the diagnostic format ----------------------------------------------------------------------


def test_diagnostic_is_file_line_col_error_key_message(write_spec):
    text = spec_text(lora={"r": 0})
    line, col = line_col(text, "r: 0")
    diag = only_error(write_spec(text))
    assert (
        diag.render()
        == f"spec.yaml:{line}:{col + 3}: error: lora.r: must be greater than 0 (got 0)"
    )


def test_diagnostic_render_from_handwritten_text(write_spec):
    text = (
        "spec_version: 1\n"
        "name: unit\n"
        "model: {name: org/m}\n"
        "dataset: {path: org/data}\n"
        "prompt: {template: '{q}<eos>', completion: '{a}<eos>'}\n"
        "tokenizer: {special_tokens: {eos: '<eos>'}}\n"
        "lora:\n"
        "  alpha: 16\n"
        "  r: 0\n"
    )
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(text))
    assert str(info.value) == "spec.yaml:9:6: error: lora.r: must be greater than 0 (got 0)"


def test_all_errors_are_reported_at_once(write_spec):
    text = spec_text(
        name="Bad Name",
        lora={"r": 0, "dropout": 1.5},
        training={"learning_rate": -1.0, "optim": "adam"},
        inference={"max_new_tokens": 0},
    )
    diagnostics = errors_of(write_spec(text))
    assert [d.key for d in diagnostics] == [
        "name",
        "lora.r",
        "lora.dropout",
        "training.learning_rate",
        "training.optim",
        "inference.max_new_tokens",
    ]
    assert all(d.severity == "error" and d.location.file == "spec.yaml" for d in diagnostics)
    assert [d.location.line for d in diagnostics] == sorted(d.location.line for d in diagnostics)
    assert diagnostics[1].location.line == line_col(text, "r: 0")[0]


def test_unknown_key_did_you_mean(write_spec):
    text = spec_text(lora={"alpah": 16})
    line, col = line_col(text, "alpah")
    diag = only_error(write_spec(text))
    assert diag.render() == (
        f"spec.yaml:{line}:{col}: error: lora.alpah: unknown key\n  hint: did you mean `alpha`?"
    )


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(write_spec):
    diag = only_error(write_spec(spec_text(lora={"zzz": 1})))
    assert diag.message == "unknown key"
    allowed = (
        "allowed keys here: alpha, bias, dropout, init_lora_weights, loraplus_lr_embedding, "
        "loraplus_lr_ratio, modules_to_save, r, target_modules, use_dora, use_rslora"
    )
    assert diag.hints == (allowed,)


def test_unknown_top_level_key(write_spec):
    diag = only_error(write_spec(spec_text(sed=1)))
    assert diag.key == "sed"
    assert diag.hints == ("did you mean `seed`?",)


def test_enum_did_you_mean(write_spec):
    text = spec_text(training={"precision": "fp61"})
    line, col = line_col(text, "fp61")
    diag = only_error(write_spec(text))
    assert str(diag.location) == f"spec.yaml:{line}:{col}"
    assert diag.key == "training.precision"
    assert diag.message == "must be one of fp32, fp16, bf16 (got 'fp61')"
    assert diag.hints == ("did you mean `fp16`?",)


def test_yaml_1_1_false_for_an_enum_suggests_quotes(write_spec):
    diag = only_error(write_spec(spec_text(training={"save_strategy": False})))
    assert diag.key == "training.save_strategy"
    assert "(got false)" in diag.message
    assert 'write "no" in quotes' in diag.hints


@pytest.mark.parametrize(
    ("section", "key", "value", "hint"),
    [
        ("training", "evaluation_strategy", "steps", "renamed `eval_strategy`"),
        ("model", "torch_dtype", "float16", "now `dtype` (model.dtype)"),
        ("training", "max_seq_length", 512, "renamed `max_length`"),
        ("training", "fp16", True, "`training.precision: fp16`"),
        ("training", "bf16", True, "`training.precision: bf16`"),
        ("lora", "lora_alpha", 32, "write `lora.alpha`"),
    ],
)
def test_migration_hints_for_renamed_arguments(write_spec, section, key, value, hint):
    text = spec_text(**{section: {key: value}})
    line, col = line_col(text, f"{key}:")
    diag = only_error(write_spec(text))
    assert str(diag.location) == f"spec.yaml:{line}:{col}"
    assert diag.key == f"{section}.{key}"
    assert diag.message == "unknown key"
    assert len(diag.hints) == 1 and hint in diag.hints[0]


@pytest.mark.parametrize(
    ("written", "key"),
    [
        ("lora:\n  r: true\n", "lora.r"),
        ("lora:\n  alpha: false\n", "lora.alpha"),
        ("training:\n  learning_rate: true\n", "training.learning_rate"),
        ("seed: true\n", "seed"),
    ],
)
def test_booleans_are_not_numbers(write_spec, written, key):
    diag = only_error(write_spec(spec_text() + written))
    assert diag.key == key
    assert diag.message.startswith("must be a number, not a boolean (got ")


def test_number_is_not_a_boolean(write_spec):
    diag = only_error(write_spec(spec_text() + "training:\n  packing: 1\n"))
    assert diag.key == "training.packing"
    assert "(got 1)" in diag.message


def test_yes_is_not_a_boolean(write_spec):
    diag = only_error(write_spec(spec_text() + "training:\n  gradient_checkpointing: yes\n"))
    assert diag.message == "must be true or false (got 'yes')"
    assert diag.hints == ("YAML 1.2 booleans are only true/false",)


@pytest.mark.parametrize(
    ("written", "key", "got"),
    [
        ("description: 12\n", "description", "12"),
        ("description: 1.5\n", "description", "1.5"),
        ("description: true\n", "description", "true"),
    ],
)
def test_string_field_given_a_number(write_spec, written, key, got):
    diag = only_error(write_spec(spec_text() + written))
    assert diag.key == key
    assert diag.message == f"must be a string (got {got})"
    assert diag.hints == ("quote the value",)


def test_name_given_a_number(write_spec):
    diag = only_error(write_spec(spec_text(name=123)))
    assert diag.key == "name"
    assert diag.message == "must be a string (got 123)"


def test_quoted_number_is_not_a_number(write_spec):
    diag = only_error(write_spec(spec_text() + 'training:\n  learning_rate: "5e-4"\n'))
    assert diag.key == "training.learning_rate"
    assert diag.hints == ("write numbers without quotes, e.g. 5.0e-4",)


def test_missing_required_key(write_spec):
    diag = only_error(write_spec(spec_text(prompt=DROP)))
    assert diag.key == "(top level)"
    assert diag.message == "required key `prompt` is missing"
    assert diag.hints  # the field's description


def test_missing_nested_required_key_is_located_at_its_mapping(write_spec):
    text = spec_text(model={"name": DROP, "dtype": "float32"})
    line, _ = line_col(text, "dtype: float32")
    diag = only_error(write_spec(text))
    assert diag.key == "model"
    assert diag.message == "required key `name` is missing"
    assert (diag.location.line, diag.location.col) == (line - 1, 1)


def test_union_errors_fold_into_one_diagnostic(write_spec):
    diag = only_error(write_spec(spec_text(lora={"target_modules": 5})))
    assert diag.key == "lora.target_modules"
    assert diag.message.count("(got 5)") == 1


# --- unsupported ideas and wrong shapes: say what is supported, never a pydantic class name --------


@pytest.mark.parametrize(
    ("sections", "key", "message", "hint"),
    [
        (
            {"full_finetune": True},
            "full_finetune",
            "there is no `full_finetune` key",
            "write `lora: null` to train every weight",
        ),
        (
            {"dataset": DROP, "datasets": [{"path": "a.jsonl"}, {"path": "b.jsonl"}]},
            "datasets",
            "there is no `datasets` key",
            "write `dataset:` (a mapping with `path` and `split`), or mix several files",
        ),
        (
            {"launch": {"deepspeed": "zero3.json"}},
            "launch.deepspeed",
            "DeepSpeed is not supported",
            "use `launch.strategy: ddp` or `fsdp` (LoRA adapters",
        ),
        (
            {"lora": None, "launch": {"deepspeed": "zero3.json"}},
            "launch.deepspeed",
            "DeepSpeed is not supported",
            "use `launch.strategy: fsdp` (it shards a full fine-tune's weights",
        ),
    ],
    ids=["full-finetune", "datasets", "deepspeed", "deepspeed-full-finetune"],
)
def test_unsupported_ideas_say_what_is_supported(write_spec, sections, key, message, hint):
    text = spec_text(**sections)
    diag = only_error(write_spec(text))
    assert diag.key == key
    assert diag.location.line == line_col(text, f"{key.split('.')[-1]}:")[0]
    assert diag.message == message
    assert len(diag.hints) == 1 and diag.hints[0].startswith(hint)


@pytest.mark.parametrize(
    ("sections", "key", "message", "hints"),
    [
        ({"lora": 16}, "lora", "must be a mapping (got 16)", ()),
        ({"tokenizer": []}, "tokenizer", "must be a mapping (got a list)", ()),
        (
            {"tokenizer": None},
            "tokenizer",
            "must be a mapping (got null)",
            ("remove `tokenizer` to use the defaults",),
        ),
        (
            {"model": "org/m"},
            "model",
            "must be a mapping (got 'org/m')",
            ("write `model: {name: org/m}`",),
        ),
        (
            {"dataset": "d.jsonl"},
            "dataset",
            "must be a mapping (got 'd.jsonl')",
            ("write `dataset: {path: d.jsonl}`",),
        ),
        (
            {"tokenizer": {"special_tokens": ["<a>"]}},
            "tokenizer.special_tokens",
            "must be a mapping (got a list)",
            (),
        ),
        (
            {"inference": {"examples": [1]}},
            "inference.examples[0]",
            "must be a mapping (got 1)",
            (),
        ),
        (
            {"training": {"report_to": "wandb"}},
            "training.report_to",
            "must be a list (got 'wandb')",
            (),
        ),
        (
            {"lora": {"target_modules": 5}},
            "lora.target_modules",
            "must be a list or one of all-linear (got 5)",
            (),
        ),
        ({"lora": {"r": 1.5}}, "lora.r", "must be an integer (got 1.5)", ()),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_wrong_shapes_are_described_in_yaml_words(write_spec, sections, key, message, hints):
    diag = only_error(write_spec(spec_text(**sections)))
    assert (diag.key, diag.message, diag.hints) == (key, message, hints)


BAD_VALUES = [
    {"lora": 16},
    {"lora": "r16"},
    {"tokenizer": []},
    {"training": 5},
    {"model": None},
    {"launch": {"slurm": 3, "fsdp": []}},
    {"model": {"quantization": 4}},
    {"prompt": {"messages": 3}},
    {"inference": {"examples": [1, [2]]}},
    {"training": {"lr_scheduler_kwargs": {"a": [1]}, "warmup_steps": "10"}},
    {"tokenizer": {"special_tokens": {"additional": "<a>"}, "new_token_init": []}},
]


@pytest.mark.parametrize("sections", BAD_VALUES, ids=str)
def test_no_message_names_a_pydantic_class(write_spec, sections):
    for diag in errors_of(write_spec(spec_text(**sections))):
        text = diag.render()
        assert "instance of" not in text and "valid dictionary" not in text, text
        assert not any(name in text for name in ("Spec", "Quantization", "SpecialTokens")), text


def test_warmup_steps_is_an_integer(write_spec):
    diag = only_error(write_spec(spec_text(training={"warmup_steps": 2.5})))
    assert (diag.key, diag.message) == ("training.warmup_steps", "must be an integer (got 2.5)")
    diag = only_error(write_spec(spec_text(training={"warmup_steps": -1})))
    assert diag.message == "must be greater than or equal to 0 (got -1)"


def test_misplaced_warmup_steps_points_into_training(write_spec):
    diag = only_error(write_spec(spec_text(lora={"warmup_steps": 10})))
    assert diag.hints == ("write `training.warmup_steps` (or `training.warmup_ratio`)",)


def test_template_fields_must_be_plain(write_spec):
    diag = only_error(write_spec(spec_text(prompt={"template": "Q: {q!r}\n<response>"})))
    assert diag.key == "prompt.template"
    assert "not a plain column name" in diag.message


# --- extends -----------------------------------------------------------------------------------


BASE = """\
spec_version: 1
name: base
model:
  name: org/base-model
  dtype: float32
tokenizer:
  special_tokens:
    eos: "<eos>"
    additional: ["<response>"]
dataset:
  path: FinGPT/fingpt-sentiment-train
prompt:
  template: "Q: {question}\\n<response>"
  completion: "{answer}<eos>"
lora:
  r: 8
  target_modules: [q_proj, v_proj]
training:
  report_to: [wandb, tensorboard]
  max_steps: 100
"""


def test_extends_deep_merges_mappings_and_replaces_lists(write_spec):
    write_spec(BASE, name="bases/base.yaml")
    child = write_spec(
        "extends: ../bases/base.yaml\n"
        "name: child\n"
        "lora:\n  alpha: 4\n  target_modules: [o_proj]\n"
        "training:\n  report_to: []\n",
        name="specs/child.yaml",
    )
    spec = load_spec(child).spec
    assert spec.name == "child"
    assert spec.extends is None  # resolved, not carried
    assert spec.lora.r == 8  # from the base
    assert spec.lora.alpha == 4  # from the child
    assert spec.lora.target_modules == ["o_proj"]  # lists replace
    assert spec.training.report_to == []
    assert spec.training.max_steps == 100  # a sibling of an overridden key survives
    assert spec.model.dtype == "float32"


def test_error_in_an_inherited_value_is_located_in_the_base_file(write_spec):
    base = write_spec(BASE.replace("  r: 8\n", "  r: 0\n"), name="base.yaml")
    child = write_spec("extends: base.yaml\nname: child\nlora:\n  alpha: 4\n", name="child.yaml")
    line, col = line_col(base.read_text(), "r: 0")
    diag = only_error(child)
    assert (
        diag.render()
        == f"base.yaml:{line}:{col + 3}: error: lora.r: must be greater than 0 (got 0)"
    )


def test_error_in_the_child_is_located_in_the_child(write_spec):
    write_spec(BASE, name="base.yaml")
    child = write_spec("extends: base.yaml\nlora:\n  alpah: 4\n", name="child.yaml")
    diag = only_error(child)
    assert str(diag.location) == "child.yaml:3:3"
    assert diag.hints == ("did you mean `alpha`?",)


def test_child_value_replaces_a_bad_base_value(write_spec):
    write_spec(BASE.replace("  r: 8\n", "  r: 0\n"), name="base.yaml")
    child = write_spec("extends: base.yaml\nlora:\n  r: 2\n", name="child.yaml")
    assert load_spec(child).spec.lora.r == 2


def test_errors_in_base_and_child_are_reported_together(write_spec):
    write_spec(BASE.replace("  r: 8\n", "  r: 0\n"), name="base.yaml")
    child = write_spec("extends: base.yaml\ntraining:\n  precision: fp61\n", name="child.yaml")
    files = [d.location.file for d in errors_of(child)]
    assert files == ["base.yaml", "child.yaml"]


def test_extends_chain(write_spec):
    write_spec(BASE, name="a.yaml")
    write_spec("extends: a.yaml\nlora:\n  alpha: 2\n", name="b.yaml")
    c = write_spec("extends: b.yaml\nname: c\nlora:\n  r: 1\n", name="c.yaml")
    spec = load_spec(c).spec
    assert (spec.name, spec.lora.r, spec.lora.alpha) == ("c", 1, 2)


def test_extends_cycle_is_an_error(write_spec):
    write_spec("extends: b.yaml\nname: a\n", name="a.yaml")
    write_spec("extends: a.yaml\nname: b\n", name="b.yaml")
    diag = only_error("a.yaml")
    assert diag.key == "extends"
    assert "cycle" in diag.message
    assert str(diag.location) == "b.yaml:1:10"


def test_extends_itself_is_an_error(write_spec):
    path = write_spec("extends: spec.yaml\nname: a\n")
    diag = only_error(path)
    assert diag.key == "extends"
    assert "cycle" in diag.message


def test_extends_must_be_a_path(write_spec):
    diag = only_error(write_spec("extends: 3\nname: a\n"))
    assert diag.key == "extends"
    assert str(diag.location) == "spec.yaml:1:10"


def test_extends_missing_base_is_located_at_the_extends_line(write_spec):
    diag = only_error(write_spec("extends: nope.yaml\nname: a\n"))
    assert diag.message == "base spec nope.yaml does not exist"
    assert diag.key == "extends"
    assert diag.location.file.endswith("spec.yaml")
    assert (diag.location.line, diag.location.col) == (1, 10)


# --- --set overrides --------------------------------------------------------------------------


def test_set_parses_values_as_yaml(write_spec):
    loaded = load_spec(
        write_spec(),
        [
            "lora.r=8",
            "training.learning_rate=1e-4",
            "training.report_to=[tensorboard]",
            "training.save_strategy=no",
            "model.quantization.bits=8",
            "description=",
        ],
    )
    spec = loaded.spec
    assert spec.lora.r == 8 and type(spec.lora.r) is int
    assert spec.training.learning_rate == 1e-4
    assert spec.training.report_to == ["tensorboard"]
    assert spec.training.save_strategy == "no"
    assert spec.model.quantization is not None and spec.model.quantization.bits == 8
    assert spec.description == ""
    assert loaded.overrides[0] == "lora.r=8"


def test_set_list_index(write_spec):
    spec = load_spec(
        write_spec(lora={"target_modules": ["q_proj", "v_proj"]}), ["lora.target_modules.1=o_proj"]
    ).spec
    assert spec.lora.target_modules == ["q_proj", "o_proj"]


def test_set_error_is_located_at_the_override(write_spec):
    diag = only_error(write_spec(), ["lora.r=0"])
    assert str(diag.location) == "--set lora.r=0"
    assert diag.render() == "--set lora.r=0: error: lora.r: must be greater than 0 (got 0)"


def test_set_boolean_for_a_number(write_spec):
    diag = only_error(write_spec(), ["lora.alpha=true"])
    assert (
        diag.render()
        == "--set lora.alpha=true: error: lora.alpha: must be a number, not a boolean (got true)"
    )


def test_set_fixes_a_bad_file_value(write_spec):
    path = write_spec(spec_text(lora={"r": 0}))
    assert load_spec(path, ["lora.r=4"]).spec.lora.r == 4


def test_set_and_file_errors_are_reported_together(write_spec):
    path = write_spec(spec_text(training={"precision": "fp61"}))
    diagnostics = errors_of(path, ["lora.r=0"])
    assert {str(d.location).split(":")[0] for d in diagnostics} == {"--set lora.r=0", "spec.yaml"}


def test_set_unknown_key_is_located_at_the_override(write_spec):
    diag = only_error(write_spec(), ["lora.alpah=4"])
    assert str(diag.location) == "--set lora.alpah=4"
    assert diag.hints == ("did you mean `alpha`?",)


def test_set_python_tag_is_an_error_and_runs_nothing(write_spec, workdir):
    marker = workdir / "pwned"
    diagnostics = errors_of(
        write_spec(), [f"description=!!python/object/apply:os.system ['touch {marker}']"]
    )
    assert "tag not allowed" in diagnostics[0].message
    assert not marker.exists()


@pytest.mark.parametrize(
    "item",
    ["lora", "=8", "lora..r=8", ".r=8", "lora.r.x=1", "training.report_to.5=wandb", "name.0=x"],
)
def test_bad_set_syntax_is_a_usage_error(write_spec, item):
    path = write_spec(lora={"r": 8}, training={"report_to": ["wandb"]})
    with pytest.raises(UsageError) as info:
        load_spec(path, [item])
    assert "--set" in str(info.value)


def test_file_is_unchanged_by_set(write_spec):
    path = write_spec()
    before = path.read_bytes()
    loaded = load_spec(path, ["lora.r=3"])
    assert path.read_bytes() == before
    assert loaded.sha256 == load_spec(path).sha256


def test_set_creating_mappings_is_located_at_the_override(write_spec):
    # the minimal spec has no lora section: --set creates lora and lora.r as mappings
    diag = only_error(write_spec(), ["lora.r.x=1"])
    assert str(diag.location) == "--set lora.r.x=1"
    assert diag.key == "lora.r"
