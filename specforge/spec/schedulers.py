"""The keyword arguments each learning-rate schedule takes (`training.lr_scheduler_kwargs`).

Mirrors transformers 5's optimization.py: the arguments of each schedule function beyond the
optimizer and the step counts, which the Trainer passes itself. `last_epoch` is left out (the Trainer
owns it when resuming). `constant` and `constant_with_warmup` take none: get_scheduler drops
lr_scheduler_kwargs for them. A wrong or missing argument fails at step 1 of a run, so the spec
checks them (rule SF004).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from specforge.spec.schema_errors import show
from specforge.spec.suggest import closest

SHAPES = ("linear", "cosine", "1-sqrt")


@dataclass(frozen=True)
class Arg:
    """One keyword argument: an int, a float, or one of `choices`; numbers within [low, high]."""

    kind: type | None
    doc: str
    low: float = 0
    high: float | None = None
    above_low: bool = False  # low itself is not allowed
    choices: tuple[str, ...] = ()
    example: str = ""  # YAML text for hints

    def problem(self, value) -> str | None:
        """Why `value` does not fit, or None."""
        if self.choices:
            if value not in self.choices:
                return f"must be one of {', '.join(self.choices)} (got {show(value)})"
            return None
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.kind is int and not (number and isinstance(value, int)):
            return f"must be an integer (got {show(value)})"
        if self.kind is float and not (number and math.isfinite(value)):
            return f"must be a number (got {show(value)})"
        if value < self.low or (self.above_low and value == self.low):
            return f"must be {'>' if self.above_low else '>='} {self.low:g} (got {value!r})"
        if self.high is not None and value > self.high:
            return f"must be <= {self.high:g} (got {value!r})"
        return None


NUM_CYCLES = Arg(float, "cosine waves in the decay (0.5: one half-wave down)", example="0.5")
MIN_LR_RATIO = Arg(float, "floor as a fraction of learning_rate", high=1, example="0.1")

SCHEDULER_ARGS: dict[str, dict[str, Arg]] = {
    "linear": {},
    "cosine": {"num_cycles": NUM_CYCLES},
    "cosine_with_restarts": {
        "num_cycles": Arg(int, "hard restarts", above_low=True, example="2"),
    },
    "polynomial": {
        "lr_end": Arg(float, "final learning rate (default 1e-7)", example="1.0e-7"),
        "power": Arg(float, "decay exponent (default 1.0: linear)", above_low=True, example="2.0"),
    },
    "constant": {},
    "constant_with_warmup": {},
    "inverse_sqrt": {
        "timescale": Arg(
            int, "steps scale (default: the warmup steps)", above_low=True, example="1000"
        ),
    },
    "cosine_with_min_lr": {
        "min_lr": Arg(float, "learning-rate floor", example="1.0e-5"),
        "min_lr_rate": MIN_LR_RATIO,
        "num_cycles": NUM_CYCLES,
    },
    "warmup_stable_decay": {
        "num_decay_steps": Arg(int, "steps of the final decay", example="100"),
        "num_stable_steps": Arg(int, "steps at the peak (default: the rest)", example="500"),
        "warmup_type": Arg(None, "warmup shape", choices=SHAPES, example="linear"),
        "decay_type": Arg(None, "decay shape", choices=SHAPES, example="cosine"),
        "min_lr_ratio": MIN_LR_RATIO,
        "num_cycles": NUM_CYCLES,
    },
}
# Each tuple: exactly one of these must be set.
ONE_OF: dict[str, tuple[str, ...]] = {
    "cosine_with_min_lr": ("min_lr_rate", "min_lr"),
    "warmup_stable_decay": ("num_decay_steps",),
}


def describe() -> str:
    """One line per schedule that takes arguments: the field's description in the schema."""
    parts = []
    for name, args in SCHEDULER_ARGS.items():
        if not args:
            continue
        required = ONE_OF.get(name, ())
        words = [arg for arg in args if arg not in required]
        if required:
            words.insert(0, f"{' or '.join(required)} (required)")
        parts.append(f"{name}: {', '.join(words)}")
    return "; ".join(parts)


@dataclass(frozen=True)
class Problem:
    key: str | None  # the lr_scheduler_kwargs key at fault; None: the schedule itself
    message: str
    hints: tuple[str, ...] = ()


def check(scheduler: str, kwargs: dict, learning_rate: float) -> list[Problem]:
    """Every way `kwargs` would make transformers' get_scheduler fail for `scheduler`."""
    args = SCHEDULER_ARGS[scheduler]
    problems = []
    for key, value in kwargs.items():
        arg = args.get(key)
        if arg is None:
            hints = []
            guess = closest(key, list(args))
            if guess:
                hints.append(f"did you mean `{guess}`?")
            owners = [name for name, other in SCHEDULER_ARGS.items() if key in other]
            if owners and not guess:
                hints.append(f"`{key}` belongs to lr_scheduler_type {', '.join(owners)}")
            hints.append(
                f"{scheduler} takes: {', '.join(args)}"
                if args
                else f"{scheduler} takes no lr_scheduler_kwargs; remove them"
            )
            problems.append(
                Problem(key, f"the {scheduler} schedule has no argument `{key}`", tuple(hints))
            )
            continue
        text = arg.problem(value)
        if text:
            problems.append(Problem(key, text, (f"{key}: {arg.doc}",)))
    required = ONE_OF.get(scheduler, ())
    given = [k for k in required if k in kwargs]
    if required and not given:
        options = " or ".join(
            f"`lr_scheduler_kwargs: {{{k}: {args[k].example}}}`" for k in required
        )
        needs = " or ".join(required)
        problems.append(
            Problem(
                None,
                f"the {scheduler} schedule needs {needs} in training.lr_scheduler_kwargs",
                (f"add under training: {options}",),
            )
        )
    if len(given) > 1:
        problems.append(
            Problem(
                given[-1],
                f"set {' or '.join(given)}, not both",
                tuple(f"{k}: {args[k].doc}" for k in given),
            )
        )
    lr_end = kwargs.get("lr_end")
    if scheduler == "polynomial" and isinstance(lr_end, (int, float)) and lr_end >= learning_rate:
        problems.append(
            Problem("lr_end", f"must be below learning_rate {learning_rate:g} (got {lr_end!r})")
        )
    return problems
