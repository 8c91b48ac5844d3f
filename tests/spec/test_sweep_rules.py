"""SF031: a `sweep:` section is validated like the rest, each problem at its line."""

from __future__ import annotations

import pytest

from specforge.core.errors import SpecError
from specforge.validate.load import load_spec
from tests.spec.conftest import line_col


def diagnostics(path) -> list:
    with pytest.raises(SpecError) as err:
        load_spec(path, check_files=False)
    return err.value.diagnostics


def test_a_valid_grid_loads_and_leaves_the_base_values(write_spec):
    path = write_spec(sweep={"grid": {"lora.r": [8, 16], "training.learning_rate": [1e-4, 5e-4]}})
    spec = load_spec(path, check_files=False).spec
    assert spec.sweep.grid == {"lora.r": [8, 16], "training.learning_rate": [1e-4, 5e-4]}
    assert spec.lora.r == 16


def test_bad_values_are_reported_at_their_line(write_spec):
    path = write_spec(sweep={"grid": {"lora.r": [8, 0], "lora.dropout": ["high"]}})
    found = {d.key: d for d in diagnostics(path)}
    text = path.read_text()
    zero = found["sweep.grid.lora.r[1]"]
    assert zero.rule == "SF031" and zero.message == "must be greater than 0 (got 0)"
    assert zero.location.line == line_col(text, "- 0")[0]
    assert "sweep.grid.lora.dropout[0]" in found


def test_unknown_key_suggests_the_closest_and_fixed_keys_are_refused(write_spec):
    path = write_spec(sweep={"grid": {"training.learning_rat": [1e-4], "name": ["other"]}})
    found = {d.key: d for d in diagnostics(path)}
    typo = found["sweep.grid.training.learning_rat"]
    assert typo.hints == ("did you mean `training.learning_rate`?",)
    assert found["sweep.grid.name"].message == "`name` cannot vary within a sweep"


def test_an_empty_grid_or_value_list_is_a_schema_error(write_spec):
    assert diagnostics(write_spec(sweep={"grid": {}}))
    assert diagnostics(write_spec(sweep={"grid": {"lora.r": []}}))


def test_the_sweep_section_leaves_the_compiled_files_alone(write_spec):
    from specforge.codegen.compiler import compile_files

    plain = compile_files(load_spec(write_spec(), check_files=False))
    swept = load_spec(write_spec(sweep={"grid": {"lora.r": [8, 16]}}), check_files=False)
    assert compile_files(swept).keys() == plain.keys()
    for name in ("train.py", "infer.py"):  # the header's spec sha256 is the only difference
        drop = [line for line in plain[name].splitlines() if "sha256" not in line]
        assert [
            line for line in compile_files(swept)[name].splitlines() if "sha256" not in line
        ] == drop
    assert "sweep" not in compile_files(swept)["spec.resolved.yaml"]
