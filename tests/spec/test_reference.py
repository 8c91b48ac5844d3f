"""docs/spec-reference.md is generated from the models and must be current."""

from __future__ import annotations

from specforge.spec.models import Spec
from specforge.spec.reference import reference_markdown
from tests.conftest import REPO


def test_reference_is_current():
    assert (REPO / "docs/spec-reference.md").read_text() == reference_markdown(), (
        "run: python -m specforge.spec.reference > docs/spec-reference.md"
    )


def test_reference_lists_every_field_with_its_description():
    text = reference_markdown()
    for name, field in Spec.model_fields.items():
        assert f"| `{name}` |" in text and field.description in text
    assert "| `lora.r` | int | `16` |" in text
    assert "| `training.precision` |" in text and '"fp16"' in text
