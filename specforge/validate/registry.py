"""The rule registry: one function per check, registered under its stable id (shown as [SFnnn]).

A rule is a function of a `Context` that yields `Finding`s; `@rule("SF012")` registers it. The
driver, `check_all`, runs every registered rule and turns findings into located diagnostics.
Adding a rule is writing one function in the topic module it belongs to (validate/rules/) and
one test in tests/spec/.

Diagnostics come out in rule-id order, then in the order each rule finds them: the same spec
always reports the same list, whichever order the topic modules were imported in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from specforge.core.errors import Diagnostic, Location, Severity
from specforge.modelinfo.vocab import vocab_tokens
from specforge.spec.models import Spec, is_local_path
from specforge.spec.yaml_source import Document
from specforge.validate.datafiles import DataPeek, peek


@dataclass(frozen=True)
class Finding:
    """One problem a rule found: where in the spec (a key path), what, and how to fix it."""

    path: tuple
    message: str
    hints: tuple[str, ...] = ()
    severity: Severity = "error"
    at_key: bool = False  # point at the key rather than its value (a key that should not be there)
    key: str | None = None  # the key shown, when not the dotted path (a sweep point: `a.b[2]`)
    location: Location | None = None  # a place outside the spec: a data file's line


def error(path: tuple, message: str, *hints: str) -> Finding:
    """An error at the spec key `path`: the spec does not load."""
    return Finding(path, message, hints)


def warning(path: tuple, message: str, *hints: str) -> Finding:
    """A warning at the spec key `path`: reported, and the spec still loads."""
    return Finding(path, message, hints, severity="warning")


@dataclass(frozen=True)
class LocalSource:
    """A dataset source that is a local file: its place in the spec and what a peek found."""

    index: int
    spec_path: tuple  # ("dataset", "path") or ("dataset", "sources", i, "path")
    name: str  # as written in the spec
    file: Path
    columns: dict[str, str]  # the source's `columns:` mapping (prompt field -> its column)
    data: DataPeek | None  # None: the file does not exist


@dataclass
class Context:
    """What rules read: the validated spec, its document (for locations) and the run's options.
    Expensive look-ups (the base vocabulary, local data files) are read once, on first use."""

    spec: Spec
    doc: Document
    allow_remote_code: bool = False
    check_files: bool = True

    @cached_property
    def fields(self) -> list[str]:
        """Every column the prompt reads: prompt, completion, rejected and label fields."""
        prompt = self.spec.prompt
        fields = prompt.prompt_fields() + prompt.completion_fields() + prompt.rejected_fields()
        if prompt.label_field is not None:
            fields.append(prompt.label_field)
        return fields

    @cached_property
    def vocab(self) -> frozenset[str] | None:
        """The base vocabulary when it can be read without the network (a GGUF header is large:
        only rules that need it pay for it)."""
        return vocab_tokens(self.spec)

    @cached_property
    def local_sources(self) -> list[LocalSource]:
        """The local dataset files, peeked (none when files are not checked)."""
        if not self.check_files:
            return []
        found = []
        dataset = self.spec.dataset
        for i, source in enumerate(dataset.source_list()):
            if not is_local_path(source.path):
                continue
            where = ("dataset",) if dataset.sources is None else ("dataset", "sources", i)
            file = Path(source.path).expanduser()
            found.append(
                LocalSource(
                    index=i,
                    spec_path=(*where, "path"),
                    name=source.path,
                    file=file,
                    columns=dict(source.columns),
                    data=peek(file) if file.is_file() else None,
                )
            )
        return found

    @cached_property
    def fields_not_in_data(self) -> list[str]:
        """Prompt fields some local source lacks: reported once there, so examples are not
        blamed for them too."""
        unknown: list[str] = []
        for source in self.local_sources:
            columns = source.data.columns if source.data is not None else None
            if columns is None:
                continue
            missing = [f for f in self.fields if source.columns.get(f, f) not in columns]
            unknown += [f for f in missing if f not in unknown]
        return unknown


Check = Callable[[Context], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    id: str  # SFnnn, stable: users grep for it and docs cite it
    check: Check


RULES: list[Rule] = []


def rule(rule_id: str) -> Callable[[Check], Check]:
    """Register the decorated function as (one of) the checks of `rule_id`."""

    def register(check: Check) -> Check:
        RULES.append(Rule(rule_id, check))
        return check

    return register


def registered() -> list[Rule]:
    """The rules in report order: by id, then in the order they were registered."""
    return sorted(RULES, key=lambda r: r.id)


def check_all(ctx: Context) -> list[Diagnostic]:
    """Every rule's findings, as diagnostics, in report order."""
    return [_diagnostic(ctx, r.id, f) for r in registered() for f in r.check(ctx)]


def _diagnostic(ctx: Context, rule_id: str, finding: Finding) -> Diagnostic:
    location = finding.location or ctx.doc.locate(finding.path, key=finding.at_key)
    key = finding.key if finding.key is not None else ".".join(str(p) for p in finding.path)
    return Diagnostic(
        location=location,
        message=finding.message,
        severity=finding.severity,
        key=key,
        hints=finding.hints,
        rule=rule_id,
    )


def spec_location(ctx: Context, path: tuple) -> str:
    """Where `path` is written, as `file:line:col` (for a hint that points back at the spec)."""
    return str(ctx.doc.locate(path))
