"""SF031: a `sweep:` grid names keys a run can override, with values those keys accept.

Each value is validated on its own against the schema here, so `validate` reports a bad grid at
its line; the cross-field rules run per point when `specforge sweep` loads the points.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

from pydantic import BaseModel, ValidationError

from specforge.spec.models import Spec
from specforge.spec.schema_errors import error_message
from specforge.spec.suggest import closest
from specforge.validate.registry import Context, Finding, rule

# what names the experiment, or the grid itself: a point cannot change them
FIXED = {"spec_version", "extends", "name", "sweep"}


def unknown_key(key: str) -> tuple[str, tuple[str, ...]] | None:
    """Why `key` (dotted) is no settable spec key, with a hint; None when it is one."""
    parts = key.split(".")
    if parts[0] in FIXED:
        return f"`{parts[0]}` cannot vary within a sweep", ()
    model: type[BaseModel] | None = Spec
    for depth, part in enumerate(parts):
        if model is None:  # below a leaf: a dict value (lr_scheduler_kwargs) or a list index
            return None
        fields = model.model_fields
        if part not in fields:
            near = closest(part, list(fields))
            prefix = ".".join(parts[:depth])
            hint = f"did you mean `{'.'.join(filter(None, [prefix, near]))}`?" if near else ""
            return f"`{key}` is not a spec key", (hint,) if hint else ()
        model = _submodel(fields[part].annotation)
    return None


def _submodel(annotation) -> type[BaseModel] | None:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


@rule("SF031")
def grid_keys_and_values(ctx: Context) -> Iterator[Finding]:
    """Each grid key is a settable spec key, and each of its values passes the schema there."""
    spec, doc = ctx.spec, ctx.doc
    if spec.sweep is None:
        return
    base = {k: v for k, v in doc.data.items() if k != "sweep"}
    for key, values in spec.sweep.grid.items():
        where = ("sweep", "grid", key)
        problem = unknown_key(key)
        if problem is not None:
            message, hints = problem
            yield Finding(where, message, hints, at_key=True, key=f"sweep.grid.{key}")
            continue
        for index, value in enumerate(values):
            error = _value_error(base, key, value)
            if error:
                yield Finding((*where, index), error, key=f"sweep.grid.{key}[{index}]")


def _value_error(base: dict, key: str, value) -> str | None:
    """The schema's complaint about `key` set to `value` in this spec, if any."""
    data = copy.deepcopy(base)
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            return f"{part} is not a mapping"
    node[parts[-1]] = value
    try:
        Spec.model_validate(data)
    except ValidationError as err:
        path = tuple(parts)
        mine = [e for e in err.errors() if tuple(map(str, e["loc"]))[: len(path)] == path]
        if mine:
            return error_message(mine[0])[0]
    return None
