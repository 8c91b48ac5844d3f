"""The JSON Schema of the spec, for editors (yaml-language-server) and third-party validators."""

from __future__ import annotations

import json

from specforge.spec.models import Spec

SCHEMA_PATH = "schema/specforge.schema.json"


def schema_text() -> str:
    """Deterministic JSON Schema text (sorted keys, LF, one trailing newline)."""
    schema = Spec.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
