"""The YAML reader: safe, YAML 1.2 core schema, every failure a located error (never a traceback)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from specforge.core.errors import Diagnostic, SpecError
from specforge.spec.yaml_source import MAX_BYTES, parse_text, read_document
from specforge.validate.load import load_spec


def parse_error(text: str, label: str = "x.yaml") -> Diagnostic:
    """The single diagnostic parse_text raises for `text`."""
    with pytest.raises(SpecError) as info:
        parse_text(text, label)
    assert len(info.value.diagnostics) == 1, str(info.value)
    return info.value.diagnostics[0]


def read_error(path: Path, label: str = "x.yaml") -> Diagnostic:
    with pytest.raises(SpecError) as info:
        read_document(path, label)
    assert len(info.value.diagnostics) == 1, str(info.value)
    return info.value.diagnostics[0]


# --- safe loading: tags are errors and nothing runs ------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "description: !!python/object/apply:os.system ['touch {marker}']\n",
        "description: !!python/object/apply:subprocess.check_call [[touch, '{marker}']]\n",
        "description: !!python/object/new:subprocess.Popen [[touch, '{marker}']]\n",
        "description:\n  - ok\n  - !!python/object/apply:os.system ['touch {marker}']\n",
        "? !!python/object/apply:os.system ['touch {marker}']\n: value\n",
        "description: !!python/name:os.system\n",
    ],
    ids=["value", "check_call", "new-popen", "in-list", "as-key", "python-name"],
)
def test_python_tag_in_a_value_is_an_error_and_runs_nothing(tmp_path, template):
    marker = tmp_path / "pwned"
    text = "spec_version: 1\n" + template.format(marker=marker)
    diag = parse_error(text)
    assert diag.severity == "error"
    assert "tag not allowed" in diag.message or "keys must be strings" in diag.message
    assert diag.location.file == "x.yaml" and diag.location.line >= 2
    assert not marker.exists()


@pytest.mark.parametrize(
    "template",
    [
        "!!python/object/apply:os.system ['touch {marker}']\n",
        "!!python/object/apply:os.system\nargs: ['touch {marker}']\n",
        "--- !!python/object/apply:os.system ['touch {marker}']\n",
    ],
    ids=["sequence", "mapping", "document-start"],
)
def test_python_tag_at_top_level_is_an_error_and_runs_nothing(tmp_path, template):
    marker = tmp_path / "pwned"
    path = tmp_path / "spec.yaml"
    path.write_text(template.format(marker=marker))
    diag = read_error(path)
    assert diag.severity == "error"
    assert "top level must be a mapping" in diag.message
    assert not marker.exists()


def test_python_tag_through_load_spec_runs_nothing(write_spec, workdir):
    marker = workdir / "pwned"
    path = write_spec(
        "spec_version: 1\nname: unit\n"
        f"description: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    with pytest.raises(SpecError) as info:
        load_spec(path)
    [diag] = info.value.diagnostics
    assert str(diag.location) == "spec.yaml:3:14"
    assert "tag not allowed" in diag.message
    assert "python/object/apply:os.system" in diag.message
    assert diag.hints == ("specs are data: only plain YAML values are accepted",)
    assert not marker.exists()


@pytest.mark.parametrize(
    "text",
    ["a: !!set {x, y}\n", "a: !!omap [x: 1]\n", "a: !!pairs [x: 1]\n"],
    ids=["set", "omap", "pairs"],
)
def test_non_plain_collection_tags_are_errors(text):
    diag = parse_error(text)
    assert diag.message.startswith("tag not allowed: tag:yaml.org,2002:")
    assert (diag.location.line, diag.location.col) == (1, 4)


# --- duplicate and odd keys -------------------------------------------------------------------------


def test_duplicate_key_names_both_lines():
    diag = parse_error("spec_version: 1\nname: a\nseed: 1\nname: b\n")
    assert (diag.location.line, diag.location.col) == (4, 1)
    assert diag.message == "duplicate key `name` (first defined at line 2)"
    assert any("silently keep the last" in h for h in diag.hints)


def test_nested_duplicate_key_is_an_error():
    text = "lora:\n  r: 8\n  alpha: 16\n  r: 4\n"
    diag = parse_error(text)
    assert (diag.location.line, diag.location.col) == (4, 3)
    assert diag.message == "duplicate key `r` (first defined at line 2)"


def test_same_key_in_different_mappings_is_fine():
    doc = parse_text("a:\n  r: 1\nb:\n  r: 2\n", "x.yaml")
    assert doc.data == {"a": {"r": 1}, "b": {"r": 2}}


@pytest.mark.parametrize("text", ["1: a\n", "true: a\n", "? [a, b]\n: c\n", "~: a\n"])
def test_non_string_keys_are_errors(text):
    diag = parse_error(text)
    assert diag.message.startswith("keys must be strings")
    assert diag.hints == ("quote the key",)


# --- YAML 1.2 core scalars: a spec means what it looks like ------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("no", "no"),
        ("yes", "yes"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("N", "N"),
        ("1e-4", 1e-4),
        ("5.0e-4", 5e-4),
        ("-2E3", -2000.0),
        (".5", 0.5),
        ("010", 10),
        ("0010", 10),
        ("0o10", 8),
        ("0x1F", 31),
        ("1_000", "1_000"),
        ("2024-01-02", "2024-01-02"),
        ("2024-01-02 10:00:00", "2024-01-02 10:00:00"),
        ("12:30", "12:30"),
        ("true", True),
        ("False", False),
        ("~", None),
        ("null", None),
        ("", None),
        ('"no"', "no"),
        ("'1e-4'", "1e-4"),
    ],
)
def test_scalars_follow_the_yaml_1_2_core_schema(written, expected):
    value = parse_text(f"v: {written}\n", "x.yaml").data["v"]
    assert value == expected
    assert type(value) is type(expected)


def test_save_strategy_no_stays_the_string_no_in_a_loaded_spec(write_spec):
    text = (
        "spec_version: 1\nname: unit\nmodel: {name: org/m}\n"
        "tokenizer: {special_tokens: {eos: '<eos>', additional: ['<response>']}}\n"
        "dataset: {path: org/data}\n"
        "prompt: {template: 'Q: {q}\\n<response>', completion: '{a}<eos>'}\n"
        "training:\n  save_strategy: no\n  eval_strategy: no\n  learning_rate: 1e-4\n"
        "  logging_steps: 010\n"
        "description: 2024-01-02\n"
    )
    spec = load_spec(write_spec(text)).spec
    assert spec.training.save_strategy == "no"
    assert spec.training.eval_strategy == "no"
    assert spec.training.learning_rate == 1e-4 and isinstance(spec.training.learning_rate, float)
    assert spec.training.logging_steps == 10
    assert spec.description == "2024-01-02"


# --- malformed input: located errors with hints ---------------------------------------------------


def test_tab_indentation_is_a_located_error_with_a_hint():
    diag = parse_error("spec_version: 1\nlora:\n  r: 8\n\talpha: 16\n")
    assert (diag.location.line, diag.location.col) == (4, 1)
    assert "\\t" in diag.message
    assert "indent with spaces; YAML does not allow tabs for indentation" in diag.hints


def test_tab_as_the_only_indentation_is_a_located_error():
    diag = parse_error("lora:\n\tr: 8\n")
    assert (diag.location.line, diag.location.col) == (2, 1)
    assert any("spaces" in h for h in diag.hints)


def test_non_utf8_byte_is_located_at_the_byte(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"spec_version: 1\nname: x\ndescription: caf\xe9 au lait\n")
    diag = read_error(path, "latin1.yaml")
    assert str(diag.location) == "latin1.yaml:3:17"
    assert diag.message == "not valid UTF-8 (byte 0xe9)"
    assert diag.hints == ("save the file as UTF-8",)


def test_non_utf8_byte_on_the_first_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"\xff\xfes\x00p\x00")  # UTF-16 with a BOM
    diag = read_error(path)
    assert (diag.location.line, diag.location.col) == (1, 1)
    assert "byte 0xff" in diag.message


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfspec_version: 1\ndescription: caf\xc3\xa9\n")
    assert read_document(path, "bom.yaml").data == {"spec_version": 1, "description": "café"}


@pytest.mark.parametrize(
    ("raw", "line", "col"),
    [(b"spec_version: 1\nname: a\x00b\n", 2, 8), (b"a: 1\nb: 2\nc: \x1b[31m\n", 3, 4)],
    ids=["nul", "escape"],
)
def test_control_characters_are_located_errors(tmp_path, raw, line, col):
    path = tmp_path / "ctl.yaml"
    path.write_bytes(raw)
    diag = read_error(path)
    assert (diag.location.line, diag.location.col) == (line, col)
    assert "control character" in diag.message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "   \n"])
def test_empty_file_is_an_error(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    diag = read_error(path, "empty.yaml")
    assert str(diag.location) == "empty.yaml:1:1"
    assert diag.message == "spec is empty"


@pytest.mark.parametrize(
    "text",
    ["- spec_version: 1\n- name: x\n", "just a string\n", "42\n", "[a, b]\n", "---\n"],
    ids=["list", "string", "number", "flow-list", "null-document"],
)
def test_top_level_must_be_a_mapping(text):
    diag = parse_error(text)
    assert diag.message == "top level must be a mapping of keys to values"
    assert diag.hints == ("a spec starts with `spec_version: 1`",)


def test_multiple_documents_are_an_error():
    diag = parse_error("a: 1\n---\nb: 2\n")
    assert diag.location.line == 2
    assert "another document" in diag.message


def test_syntax_error_is_located():
    diag = parse_error("spec_version: 1\nlora:\n  r: [8\n  alpha: 16\n")
    assert diag.location.file == "x.yaml"
    assert diag.location.line >= 3
    assert diag.severity == "error"


def test_alias_bomb_fails_fast(tmp_path):
    # billion laughs: 9 levels, each a list of 9 aliases of the level below (9**9 leaves)
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    with pytest.raises(SpecError) as info:
        read_document(path, "bomb.yaml")
    elapsed = time.monotonic() - start
    assert elapsed < 1.0, f"alias bomb took {elapsed:.2f}s"
    [diag] = info.value.diagnostics
    assert "alias bomb" in diag.message
    assert diag.location.file == "bomb.yaml"


def test_alias_bomb_through_load_spec_fails_fast(write_spec):
    lines = ["spec_version: 1", "a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    path = write_spec("\n".join(lines) + "\n")
    start = time.monotonic()
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert time.monotonic() - start < 1.0
    assert "alias bomb" in info.value.diagnostics[0].message


def test_a_few_aliases_are_allowed():
    doc = parse_text("a: &mods [q_proj, v_proj]\nb: *mods\nc: {x: *mods}\n", "x.yaml")
    assert doc.data == {
        "a": ["q_proj", "v_proj"],
        "b": ["q_proj", "v_proj"],
        "c": {"x": ["q_proj", "v_proj"]},
    }


def test_merge_key_is_refused_with_a_hint_about_extends():
    text = "base: &base\n  r: 8\nlora:\n  <<: *base\n  alpha: 16\n"
    diag = parse_error(text)
    assert (diag.location.line, diag.location.col) == (4, 3)
    assert "merge keys" in diag.message and "<<" in diag.message
    assert diag.hints == ("use `extends: base.yaml` to share settings between specs",)


@pytest.mark.parametrize(
    "nested",
    ["[" * 5000 + "]" * 5000, "{a: " * 5000 + "1" + "}" * 5000],
    ids=["lists", "mappings"],
)
def test_deep_nesting_is_an_error_not_a_recursion_error(nested):
    diag = parse_error(f"spec_version: 1\ndescription: {nested}\n")
    assert diag.message == "nesting is too deep"


def test_deep_nesting_through_load_spec(write_spec):
    path = write_spec("spec_version: 1\nname: x\ndescription: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.diagnostics[0].message == "nesting is too deep"


# --- files --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    diag = read_error(tmp_path / "nope.yaml", "nope.yaml")
    assert str(diag.location) == "nope.yaml:1:1"
    assert diag.message == "no such file"


def test_directory_instead_of_file(tmp_path):
    diag = read_error(tmp_path, "dir")
    assert "directory" in diag.message


def test_oversized_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("a: 1\n" + "#" * MAX_BYTES + "\n")
    diag = read_error(path)
    assert "limit" in diag.message


# --- locations --------------------------------------------------------------------------------------


def test_every_key_and_value_has_its_location():
    text = "spec_version: 1\nlora:\n  r: 8\n  target_modules:\n    - q_proj\n    - v_proj\n"
    doc = parse_text(text, "x.yaml")
    assert str(doc.keys[("lora", "r")]) == "x.yaml:3:3"
    assert str(doc.values[("lora", "r")]) == "x.yaml:3:6"
    assert str(doc.values[("lora", "target_modules", 1)]) == "x.yaml:6:7"
    # a path that is not written falls back to its nearest written ancestor (the lora mapping)
    assert str(doc.locate(("lora", "alpha"))) == "x.yaml:3:3"
    assert str(doc.locate(("training", "max_steps"))) == "x.yaml:1:1"
