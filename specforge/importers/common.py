"""Mapping helpers both importers share: the key tracker that makes every source key end up
carried or reported, and the tables for names that transformers-based tools spell alike
(optimizers, schedules, precision, DeepSpeed, chat formats)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from specforge.importers.result import (
    APPROXIMATED,
    IGNORED,
    NO_EFFECT,
    UNSUPPORTED,
    Draft,
    Dropped,
    ImportResult,
)
from specforge.spec.models import NAME_PATTERN, Optimizer, Scheduler

EMPTY: tuple[Any, ...] = (None, "", [], {})


class Keys:
    """A source config's top-level keys. Each one is read (carried), dropped with a reason, or at
    the end reported as unknown: nothing leaves silently."""

    def __init__(self, data: dict[str, Any], tool: str):
        self.data = data
        self.tool = tool
        self.used: set[str] = set()
        self.dropped: list[Dropped] = []

    def get(self, key: str, default: Any = None) -> Any:
        """The value (marking the key carried); `default` when absent or empty."""
        self.used.add(key)
        value = self.data.get(key)
        return default if value in EMPTY else value

    def peek(self, key: str, default: Any = None) -> Any:
        """The value without marking the key: for decisions another key's mapping makes."""
        value = self.data.get(key)
        return default if value in EMPTY else value

    def given(self, key: str) -> bool:
        return self.data.get(key) not in EMPTY

    def drop(self, key: str, kind: str, reason: str) -> None:
        """Report a key (present and set) as not carried over one to one."""
        self.used.add(key)
        if self.given(key):
            self.dropped.append(Dropped(key, reason, kind))

    def missing(self, key: str, reason: str) -> None:
        """A key the spec needs that the config does not set."""
        self.used.add(key)
        self.dropped.append(Dropped(key, f"missing: {reason}", UNSUPPORTED))

    def unsupported(self, key: str, reason: str) -> None:
        self.drop(key, UNSUPPORTED, reason)

    def approximated(self, key: str, reason: str) -> None:
        self.drop(key, APPROXIMATED, reason)

    def carried(self) -> list[str]:
        """The keys read and not reported: mapped onto the spec (or unset)."""
        reported = {d.key for d in self.dropped}
        return [k for k in self.data if k in self.used and k not in reported]

    def finish(self, bookkeeping: dict[str, str], no_effect: dict[str, str]) -> list[Dropped]:
        """Every key: those read, those dropped, then the rest by table; unknown ones are
        unsupported unless switched off (`false`) or empty."""
        unset: list[str] = []
        for key in self.data:
            if key in self.used:
                continue
            value = self.data[key]
            if value in EMPTY:
                unset.append(key)
            elif key in bookkeeping:
                self.dropped.append(Dropped(key, bookkeeping[key], IGNORED))
            elif key in no_effect:
                self.dropped.append(Dropped(key, no_effect[key], NO_EFFECT))
            elif value is False:
                self.dropped.append(Dropped(key, "switched off (false)", NO_EFFECT))
            else:
                reason = f"specforge has no equivalent of this {self.tool} setting"
                self.dropped.append(Dropped(key, reason, UNSUPPORTED))
        if unset:
            self.dropped.append(
                Dropped(", ".join(unset), "unset (empty): nothing to carry over", NO_EFFECT)
            )
        return self.dropped


def spec_name(path: Path) -> str:
    """A spec name (lowercase, [a-z0-9._-], at most 64) from a config's file name."""
    name = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-._") or "imported"
    name = name[:64].rstrip("-._")
    return name if re.match(NAME_PATTERN, name) else f"x{name}"[:64]


OPTIMIZERS: dict[str, str] = {name: name for name in Optimizer.__args__}  # type: ignore[attr-defined]
OPTIMIZERS["adamw_bnb_8bit"] = "adamw_8bit"  # transformers' alias of the same bitsandbytes AdamW
SCHEDULERS = set(Scheduler.__args__)  # type: ignore[attr-defined]
ADAM_DEFAULTS = {"adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8}


def map_optimizer(keys: Keys, draft: Draft, *, key: str, default: str) -> None:
    """training.optim from a transformers optimizer name."""
    name = keys.get(key, default)
    if name in OPTIMIZERS:
        note = None if name == OPTIMIZERS[name] else f"{key}: {name} (the same optimizer)"
        if not keys.given(key):
            note = f"{key} unset: {keys.tool}'s default"
        draft.set("training.optim", OPTIMIZERS[name], note)
    elif name == "adamw_hf":
        keys.approximated(key, "adamw_hf is transformers' old AdamW: adamw_torch, the same update")
        draft.set("training.optim", "adamw_torch", f"{key}: adamw_hf")
    else:
        keys.unsupported(key, f"optimizer {name!r} is not one of {', '.join(sorted(OPTIMIZERS))}")


def map_adam(keys: Keys, draft: Draft, names: dict[str, str]) -> None:
    """Adam betas/epsilon: training.adam_beta1/adam_beta2/adam_epsilon where not the default."""
    for key, spec_key in names.items():
        value = keys.peek(key)
        if value is None:
            keys.used.add(key)
        elif float(value) == ADAM_DEFAULTS[spec_key]:
            keys.drop(key, NO_EFFECT, "transformers' default, which specforge uses")
        else:
            draft.set(f"training.{spec_key}", float(keys.get(key)), key)


def map_scheduler(keys: Keys, draft: Draft, *, key: str, default: str) -> None:
    name = keys.get(key, default)
    if name in SCHEDULERS:
        note = None if keys.given(key) else f"{key} unset: {keys.tool}'s default"
        draft.set("training.lr_scheduler_type", name, note)
    else:
        keys.unsupported(key, f"schedule {name!r} is not one of {', '.join(sorted(SCHEDULERS))}")


def find_file(name: str, config: Path) -> Path | None:
    """A file a config names: from the working directory, the config's folder or the folders
    above it (the tools resolve such paths from their repository root)."""
    candidate = Path(name).expanduser()
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    for base in [Path.cwd(), *config.resolve().parents][:5]:
        if (base / candidate).is_file():
            return base / candidate
    return None


def zero_stage(name: str, config: Path) -> tuple[int | None, bool, str]:
    """(ZeRO stage, offloads to CPU, how it was read) of a DeepSpeed config file."""
    found = find_file(name, config)
    if found is not None:
        try:
            zero = json.loads(found.read_text()).get("zero_optimization", {})
        except (OSError, ValueError, AttributeError):
            zero = None
        if isinstance(zero, dict):
            offload = any(
                isinstance(zero.get(k), dict) and zero[k].get("device") in ("cpu", "nvme")
                for k in ("offload_param", "offload_optimizer")
            )
            stage = zero.get("stage", 0)
            return (stage if isinstance(stage, int) else None), offload, f"read from {found}"
    match = re.search(r"(?:zero|z)_?(\d)", Path(name).name)
    offload = "offload" in name
    return (int(match.group(1)) if match else None), offload, "guessed from the file name"


def map_deepspeed(keys: Keys, draft: Draft, *, key: str, config: Path) -> None:
    """DeepSpeed ZeRO as the spec's launch: ZeRO-3 shards weights, gradients and optimizer state
    like FSDP's full shard; ZeRO-0/1/2 compute the same updates as DDP (they shard only optimizer
    state and gradients, a memory saving the spec has no switch for). Both give the same training
    result; the spec says which in a comment."""
    name = keys.peek(key)
    if name is None:
        keys.used.add(key)
        return
    if not isinstance(name, str):
        keys.unsupported(key, "an inline DeepSpeed config; give it as a file")
        return
    stage, offload, how = zero_stage(name, config)
    quantized = draft.get("model.quantization") is not None
    if stage is None:
        keys.unsupported(key, f"cannot tell the ZeRO stage of {name} ({how})")
    elif stage == 3 and not quantized:
        draft.set("launch.strategy", "fsdp", f"{key}: ZeRO-3 ({name}) as FSDP full shard")
        draft.set(
            "launch.nproc_per_node", 1, "set to the GPU count (DeepSpeed took it from its launcher)"
        )
        if offload:
            draft.set("launch.fsdp.cpu_offload", True, f"{key}: ZeRO-3 CPU offload")
        keys.approximated(key, f"ZeRO-3 {how}: launch.strategy fsdp (full shard), same updates")
    else:
        why = "FSDP refuses a quantized base (SF015)" if stage == 3 else "same updates as DDP"
        keys.approximated(
            key,
            f"ZeRO-{stage} {how}: launch.strategy ddp ({why}); each GPU holds the whole "
            "optimizer state" + (" (its CPU offload is not carried)" if offload else ""),
        )


# Plain-text chat formats that the tools write out literally for flat preference rows:
# (system block, user turn up to the assistant header, end of the assistant turn).
CHATML = (
    "<|im_start|>system\n{system}<|im_end|>\n",
    "<|im_start|>user\n{%s}<|im_end|>\n<|im_start|>assistant\n",
    "<|im_end|>",
)
LLAMA3 = (
    "<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>",
    (
        "<|start_header_id|>user<|end_header_id|>\n\n{%s}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "<|eot_id|>",
)
CHAT_FORMATS = {"chatml": CHATML, "llama3": LLAMA3}
CHATML_JINJA = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def imported(
    tool: str, source: Path, name: str, draft: Draft, keys: Keys, *, skipped: dict, notes=()
) -> ImportResult:
    """A mapped config's result: every key left over reported (`skipped`: bookkeeping and
    no-effect tables), and a note where the config brings remote code along."""
    dropped = keys.finish(skipped["bookkeeping"], skipped["no_effect"])
    notes = list(notes)
    if draft.get("model.trust_remote_code"):
        notes.append(
            "model.trust_remote_code is carried over: specforge runs it only with --allow-remote-code"
        )
    return ImportResult(
        tool=tool,
        source=source,
        name=name,
        draft=draft,
        dropped=dropped,
        notes=notes,
        carried=keys.carried(),
    )
