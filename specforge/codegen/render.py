"""Render the plan through the Jinja templates into checked Python source.

The planner decides which imports a script needs (plan.Imports) and the templates write them out;
the rendered source is `ast.parse`d and its imports are checked against the names it uses (none
unused, none missing) before anyone can write it.
"""

from __future__ import annotations

import ast
import builtins
from functools import lru_cache

import jinja2

from specforge.codegen.literals import assign, kwargs_block, literal
from specforge.codegen.paths import templates_dir
from specforge.codegen.plan import Plan, Value


class RenderError(Exception):
    pass


def const(value: Value) -> str:
    """`NAME = <literal>  # spec: key; why`."""
    return assign(value.name, value.value, value.key, value.why)


def kwargs(name: str, values: list[Value]) -> str:
    """`NAME = {...}`: one keyword argument a line, each naming its spec key."""
    return kwargs_block(name, [(v.name, v.value, v.key, v.why) for v in values])


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["py"] = literal
    env.globals.update(const=const, kwargs=kwargs)
    return env


def check_names(tree: ast.Module) -> None:
    """Every import and module constant is used; every free name is imported, defined or a builtin."""
    imported: dict[str, int] = {}
    defined: set[str] = set(dir(builtins)) | {"__file__"}
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                imported[(alias.asname or alias.name).split(".")[0]] = node.lineno
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else defined).add(node.id)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            defined.add(node.name)
    constants = [
        node.targets[0].id
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id.isupper()
    ]
    unused = sorted(name for name in [*imported, *constants] if name not in used)
    missing = sorted(used - defined - set(imported))
    if unused or missing:
        raise RenderError(f"names do not match the code: unused {unused}, undefined {missing}")


def render_script(template: str, plan: Plan) -> str:
    """Render one script; the result must parse and import exactly what it uses."""
    source = environment().get_template(template).render(plan=plan)
    source = "\n".join(line.rstrip() for line in source.splitlines()) + "\n"
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise RenderError(f"{template} rendered invalid Python: {err}") from err
    try:
        check_names(tree)
    except RenderError as err:
        raise RenderError(f"{template}: {err}") from None
    return source
