"""Rules on special tokens: a completion's stop token is the eos TRL trains (SF016); tokens
written in templates exist (SF007); new rows initialise from declared tokens (SF008).

SF006 is retired: it warned that a completion ending in no declared token never learns to stop,
but TRL appends the tokenizer's eos to such a completion, and infer.py stops at that eos."""

from __future__ import annotations

import re
from collections.abc import Iterator

from specforge.spec.models import Spec
from specforge.validate.registry import Context, Finding, error, rule, warning

TOKEN_LIKE = re.compile(r"<[^<>\s{}]+>")


def prompt_texts(spec: Spec) -> Iterator[tuple[tuple, str]]:
    """(key path, text) of every prompt text with {column} fields and tokens, in spec order."""
    if spec.prompt.template is not None:
        yield ("prompt", "template"), spec.prompt.template
    for i, message in enumerate(spec.prompt.messages or []):
        yield ("prompt", "messages", i, "content"), message.content
    if spec.prompt.completion is not None:
        yield ("prompt", "completion"), spec.prompt.completion
    if spec.prompt.rejected is not None:
        yield ("prompt", "rejected"), spec.prompt.rejected


@rule("SF007")
def template_tokens_exist(ctx: Context) -> Iterator[Finding]:
    """Tokens written in templates are declared, or in the base vocabulary when it can be read.
    Each token is reported once, where it is first written."""
    declared = set(ctx.spec.tokenizer.special_tokens.all())
    first: dict[str, tuple] = {}
    for path, text in prompt_texts(ctx.spec):
        for token in TOKEN_LIKE.findall(text):
            if token not in declared:
                first.setdefault(token, path)
    if not first:
        return  # the base vocabulary (a large GGUF header) is read only when needed
    vocab = ctx.vocab
    for token, path in first.items():
        if vocab is None:
            yield warning(
                path,
                f"{token} is not a declared special token",
                "add it to tokenizer.special_tokens.additional, unless the base vocabulary has it",
            )
        elif token not in vocab:
            yield error(
                path,
                f"{token} is neither declared nor in the base vocabulary",
                "add it to tokenizer.special_tokens.additional",
            )


@rule("SF008")
def new_token_init_is_declared(ctx: Context) -> Iterator[Finding]:
    """new_token_init initialises rows of declared tokens only."""
    declared = ctx.spec.tokenizer.special_tokens.all()
    for token in ctx.spec.tokenizer.new_token_init:
        if token not in declared:
            yield error(
                ("tokenizer", "new_token_init", token), f"{token} is not a declared special token"
            )


@rule("SF016")
def eos_is_the_stop_token(ctx: Context) -> Iterator[Finding]:
    """TRL's `eos_token` (the stop token) replaces the tokenizer's eos during training, so a
    different declared eos gets a trained row for a token that never occurs."""
    eos, stop = ctx.spec.tokenizer.special_tokens.eos, ctx.spec.stop_token()
    if eos is not None and stop is not None and stop != eos:
        yield warning(
            ("tokenizer", "special_tokens", "eos"),
            f"eos {eos} never occurs: TRL makes the completion's stop token {stop} the "
            "tokenizer's eos during training (a new eos row is trained for nothing)",
            f'declare the stop token as eos (eos: "{stop}"), or drop eos',
        )
