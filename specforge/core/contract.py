"""What the generated scripts, the runner and the batch scripts agree on.

These values cross a process boundary (an exit code, a label written into a comment or a shell
word), so each side reads them from here rather than repeating a literal.
"""

from __future__ import annotations

import re

# train.py's exit code after a signal checkpoint (EX_TEMPFAIL); the runner and submit.sbatch read it
PREEMPTED_EXIT = 75

# A label (a spec's path, a model name) written into a comment or a docstring of generated code
SAFE_LABEL = re.compile(r"[^A-Za-z0-9._/+-]")

# A value written into a batch script as a bare shell word
SHELL_SAFE = re.compile(r"^[A-Za-z0-9_.,:/@%+=-]+$")


def safe_label(text: str) -> str:
    """A path for a comment or docstring: nothing that could end the comment or the string."""
    return SAFE_LABEL.sub("_", text)[:200] or "_"


def shell_word(value: str) -> str:
    """A value for a batch script: already pattern-checked by the schema; checked again here."""
    if not SHELL_SAFE.match(value):
        raise ValueError(f"{value!r} is not safe in a batch script")
    return value
