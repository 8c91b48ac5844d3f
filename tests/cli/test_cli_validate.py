"""`specforge validate` and `specforge schema` as a user runs them: exit codes, output, imports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.spec.conftest import line_col, spec_text

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schema" / "specforge.schema.json"
SHIPPED = sorted(p for p in (REPO / "specs").glob("*.yaml") if not p.name.startswith("_"))
HEAVY = ("torch", "transformers", "trl", "peft", "datasets")
# variables that make rich (or click) colour output that is not a terminal
FORCE_COLOUR = ("FORCE_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE", "PY_COLORS", "TTY_INTERACTIVE")


def plain_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FORCE_COLOUR}
    env["TERM"] = (
        "xterm-256color"  # a colour-capable terminal type: only piping should turn colour off
    )
    return env


def specforge(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "specforge", *args],
        cwd=cwd,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=plain_env(),
    )


def bad_spec(tmp_path: Path) -> tuple[Path, str]:
    """A spec with two errors; returns it and the first error's exact line."""
    text = spec_text(lora={"r": 0, "alpah": 4})
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    line, col = line_col(text, "r: 0")
    return path, f"{path}:{line}:{col + 3}: error: lora.r: must be greater than 0 (got 0)"


# --- exit codes and messages ----------------------------------------------------------------------


def test_validate_without_arguments_checks_the_shipped_specs():
    result = specforge("validate")
    assert result.returncode == 0, result.stderr
    for spec in SHIPPED:
        assert f"ok specs/{spec.name}" in result.stderr
    assert "error" not in result.stderr


def test_invalid_spec_exits_1_with_located_messages(tmp_path):
    path, first = bad_spec(tmp_path)
    result = specforge("validate", str(path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert first in lines
    assert any(line.endswith("error: lora.alpah: unknown key") for line in lines)
    assert "  hint: did you mean `alpha`?" in lines
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_one_bad_spec_among_good_ones_fails_and_reports_the_rest(tmp_path):
    path, first = bad_spec(tmp_path)
    result = specforge("validate", "specs/quickstart.yaml", str(path))
    assert result.returncode == 1
    assert first in result.stderr.splitlines()
    assert "ok specs/quickstart.yaml" in result.stderr


def test_warnings_alone_exit_0(tmp_path):
    path = tmp_path / "warn.yaml"
    path.write_text(spec_text(inference={"temperature": 0.7}))
    result = specforge("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert "warning: inference.do_sample:" in result.stderr
    assert "[SF013]" in result.stderr


def test_scheduler_without_its_argument_fails_before_training(tmp_path):
    text = spec_text(training={"lr_scheduler_type": "warmup_stable_decay"})
    path = tmp_path / "wsd.yaml"
    path.write_text(text)
    line, col = line_col(text, "warmup_stable_decay")
    result = specforge("validate", str(path))
    assert result.returncode == 1
    head = (
        f"{path}:{line}:{col}: error: training.lr_scheduler_type: the warmup_stable_decay "
        "schedule needs num_decay_steps in training.lr_scheduler_kwargs [SF004]"
    )
    hint = "  hint: add under training: `lr_scheduler_kwargs: {num_decay_steps: 100}`"
    assert result.stderr.splitlines()[:2] == [head, hint]
    result = specforge(
        "validate", str(path), "--set", "training.lr_scheduler_kwargs.num_decay_steps=100"
    )
    assert result.returncode == 0, result.stderr


def test_dpo_spec_without_rejected_says_what_to_add(tmp_path):
    path = tmp_path / "dpo.yaml"
    path.write_text(spec_text() + "method: dpo\n")
    result = specforge("validate", str(path))
    assert result.returncode == 1
    assert (
        "error: prompt: method dpo trains on preference pairs but prompt.rejected is not set"
        in (result.stderr)
    )
    assert 'hint: add the dispreferred answer, e.g. rejected: "{rejected}' in result.stderr
    assert "unknown key" not in result.stderr and "Traceback" not in result.stderr


def test_set_error_is_located_at_the_override():
    result = specforge("validate", "specs/quickstart.yaml", "--set", "lora.r=0")
    assert result.returncode == 1
    assert "--set lora.r=0: error: lora.r: must be greater than 0 (got 0)" in result.stderr


def test_set_override_applies():
    result = specforge("validate", "specs/quickstart.yaml", "--set", "lora.r=8")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("validate", "specs/does-not-exist.yaml"),
        ("validate", "--bogus"),
        ("validate", "--format", "xml", "specs/quickstart.yaml"),
        ("validate", "specs/quickstart.yaml", "--set", "lora"),
        ("validate", "specs/quickstart.yaml", "--set", "name.x=1"),
        ("no-such-command",),
    ],
    ids=["missing-file", "bad-option", "bad-format", "set-syntax", "set-not-a-mapping", "command"],
)
def test_usage_errors_exit_2(args):
    result = specforge(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr


def test_missing_file_message():
    result = specforge("validate", "specs/does-not-exist.yaml")
    assert result.stderr.strip() == "specforge: error: specs/does-not-exist.yaml: no such spec file"


def test_no_specs_found_is_a_usage_error(tmp_path):
    result = specforge("validate", cwd=tmp_path)
    assert result.returncode == 2
    assert "no specs given and none found in specs/" in result.stderr


# --- machine-readable and piped output ------------------------------------------------------------


def test_json_format_for_valid_specs():
    result = specforge("validate", "--format", "json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["valid"] is True
    assert payload["diagnostics"] == []
    assert payload["specs"] == [f"specs/{p.name}" for p in SHIPPED]


def test_json_format_for_an_invalid_spec(tmp_path):
    path, _ = bad_spec(tmp_path)
    result = specforge("validate", "--format", "json", str(path))
    assert result.returncode == 1
    payload = json.loads(result.stdout)
    assert payload["valid"] is False
    first = payload["diagnostics"][0]
    line, col = line_col(path.read_text(), "r: 0")
    assert first == {
        "file": str(path),
        "line": line,
        "col": col + 3,
        "severity": "error",
        "key": "lora.r",
        "message": "must be greater than 0 (got 0)",
        "hints": [],
        "rule": "",
    }
    assert {d["key"] for d in payload["diagnostics"]} == {"lora.r", "lora.alpah"}


def test_piped_output_has_no_ansi_escapes(tmp_path):
    path, _ = bad_spec(tmp_path)
    for args in (
        ("validate", str(path)),
        ("validate",),
        ("validate", "--format", "json", str(path)),
        ("validate", "--bogus"),
    ):
        result = specforge(*args)
        assert "\x1b" not in result.stdout + result.stderr, args


# --- no heavy imports ------------------------------------------------------------------------------


IMPORT_PROBE = """
import json, sys
from specforge.cli import main

codes = [main(args) for args in ({runs})]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy})
print(json.dumps({{"codes": codes, "heavy": heavy, "loaded": "specforge.validate.load" in sys.modules}}))
"""


def test_validate_and_schema_never_import_ml_libraries(tmp_path):
    path, _ = bad_spec(tmp_path)
    runs = [
        ["validate"],
        ["validate", str(path)],
        ["validate", "--format", "json", "specs/quickstart.yaml"],
        ["schema"],
        ["schema", "--output", str(tmp_path / "schema.json")],
    ]
    code = IMPORT_PROBE.format(runs=repr(runs), heavy=repr(set(HEAVY)))
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=plain_env(),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loaded"] is True  # the validator really ran in this process
    assert [c or 0 for c in report["codes"]] == [0, 1, 0, 0, 0]
    assert report["heavy"] == []
    assert (tmp_path / "schema.json").read_text() == SCHEMA.read_text()


STARTUP_PROBE = """
import json, sys
from specforge.cli import build_parser

build_parser()
print(json.dumps(sorted(sys.modules)))
"""


def test_building_every_verbs_parser_loads_no_spec_models_or_templates():
    """Every verb's parser is built on each start (`check` answers from its cache in ~0.1 s): a
    verb module imports its heavy parts inside run()."""
    result = subprocess.run(
        [sys.executable, "-c", STARTUP_PROBE],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=plain_env(),
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    slow = ("pydantic", "jinja2", "rich", *HEAVY)
    assert [m for m in loaded if m.split(".")[0] in slow] == []
    assert [m for m in loaded if m.startswith(("specforge.validate", "specforge.export"))] == []


VALIDATE_PROBE = """
import json, sys
import pydantic
from specforge.cli import main
from specforge.spec import models

codes = [main(["validate", spec]) for spec in {specs}]
built = sorted(
    name for name, cls in vars(models).items()
    if isinstance(cls, type) and issubclass(cls, models.Strict) and cls.__pydantic_complete__
)
loaded = sorted(sys.modules)

class Later(pydantic.BaseModel):  # a model of another part of the process (serve's)
    x: int

print(json.dumps({{"codes": codes, "modules": loaded, "built": built,
                  "loader": sys.modules["pydantic.plugin._loader"].__file__}}))
"""


def test_validate_imports_only_its_own_verb_and_builds_only_specs_validator():
    """`specforge validate` (a pre-commit hook) registers only its own verb's parser, builds only
    Spec's validator (a section left out, a one-path dataset and the lora rule build none of
    their own), never imports importlib.metadata for pydantic's plugins, and leaves pydantic's
    real plugin loader to the rest of the process."""
    specs = ["specs/quickstart.yaml", "specs/fingpt.yaml", "specs/quickstart-dpo.yaml"]
    result = subprocess.run(
        [sys.executable, "-c", VALIDATE_PROBE.format(specs=specs)],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=plain_env(),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["codes"] == [0, 0, 0]
    verbs = {m for m in report["modules"] if m.startswith("specforge.cli.")}
    assert verbs == {"specforge.cli.validate", "specforge.cli.common"}
    assert report["built"] == ["Spec"]
    assert "importlib.metadata" not in report["modules"]
    assert report["loader"].endswith("_loader.py")  # the real one, for the later model


def test_export_format_choices_match_the_export_package():
    from specforge import export
    from specforge.cli import export as export_verb

    assert export_verb.FORMAT_CHOICES == (*export.FORMATS, export.ALL)


# --- JSON Schema ------------------------------------------------------------------------------------


def check_jsonschema() -> str:
    found = Path(sys.executable).parent / "check-jsonschema"
    if found.exists():
        return str(found)
    on_path = shutil.which("check-jsonschema")
    assert on_path, "check-jsonschema is not installed (pip install -e '.[test]')"
    return on_path


def test_checked_in_schema_is_not_stale():
    result = specforge("schema")
    assert result.returncode == 0, result.stderr
    assert result.stdout == SCHEMA.read_text(encoding="utf-8"), (
        "schema/specforge.schema.json is stale: run `specforge schema -o schema/specforge.schema.json`"
    )


def test_shipped_specs_point_editors_at_the_checked_in_schema():
    for spec in SHIPPED:
        first = spec.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schema/specforge.schema.json", spec
        assert (spec.parent / "../schema/specforge.schema.json").resolve() == SCHEMA


def test_check_jsonschema_accepts_the_shipped_specs():
    result = subprocess.run(
        [check_jsonschema(), "--schemafile", str(SCHEMA), *map(str, SHIPPED)],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_jsonschema_rejects_a_misspelled_key(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(spec_text(lora={"alpha": 16}))
    bad = tmp_path / "bad.yaml"
    bad.write_text(spec_text(lora={"alpah": 16}))
    command = [check_jsonschema(), "--schemafile", str(SCHEMA)]
    ok = subprocess.run(
        [*command, str(good)], check=False, capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    failed = subprocess.run(
        [*command, str(bad)], check=False, capture_output=True, text=True, timeout=60
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "alpah" in failed.stdout + failed.stderr
