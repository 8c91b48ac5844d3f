"""Tokens per row, from a sample of the training data where it can be read without downloading.

A local data file: its first SAMPLE_ROWS rows, formatted with the spec's templates and counted with
the model's tokenizer.json (the `tokenizers` library: no torch), else at CHARS_PER_TOKEN. A Hub
dataset: the built-in table for the shipped specs, else the max_length bound.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from specforge.modelinfo.prepare import spec_model_dir
from specforge.modelinfo.vocab import hub_file
from specforge.spec.models import Spec, is_local_path

SAMPLE_ROWS = 512
CHARS_PER_TOKEN = 4.0  # English BPE text, roughly


@dataclass(frozen=True)
class Rows:
    count: int | None  # rows in the training data (before the validation split); None: unknown
    mean_tokens: float  # prompt + completion tokens per row (dpo/orpo: + prompt + rejected)
    mean_sq_tokens: float  # mean over rows of the sum of each sequence's tokens ** 2 (attention)
    source: str


# FinGPT/fingpt-sentiment-train: 76,772 rows; lengths are benchmarks/gpu_check.py's estimate of
# its rows under the Mistral tokenizer (uniform on [48, 256] tokens: mean 152, mean square 26,744)
BUILT_IN = {
    "FinGPT/fingpt-sentiment-train": Rows(
        count=76772,
        mean_tokens=152.0,
        mean_sq_tokens=26744.0,
        source="specforge's table (benchmarks/gpu_check.py's row-length estimate)",
    ),
}


def _rows(path: Path) -> tuple[list[dict], int]:
    """(the first SAMPLE_ROWS rows, the row count) of a local jsonl/json/csv file."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows, count = [], 0
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                if count < SAMPLE_ROWS:
                    rows.append(json.loads(line))
                count += 1
        return rows, count
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        data = data if isinstance(data, list) else next(iter(data.values()))
        return data[:SAMPLE_ROWS], len(data)
    if suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        return rows[:SAMPLE_ROWS], len(rows)
    raise ValueError(f"no sampler for {suffix} files")


def sequences_per_row(spec: Spec) -> int:
    """dpo/orpo train on prompt+chosen and prompt+rejected: two sequences a row."""
    return 2 if spec.prompt.rejected is not None else 1


def _texts(spec: Spec, row: dict) -> list[str]:
    p = spec.prompt
    values = {k: "" if v is None else str(v) for k, v in row.items()}
    chosen = p.prompt_for(row)  # the alpaca-style prompt without its empty input, too
    prompts = [chosen] if isinstance(chosen, str) else [m.content for m in chosen or []]
    prompt = "".join(t.format_map(values) for t in prompts)
    if p.completion is None:  # a conversation row: no completion template to sample with
        raise ValueError("no completion template")
    answers = [p.completion] if p.rejected is None else [p.completion, p.rejected]
    return [prompt + answer.format_map(values) for answer in answers]


def _tokenizer_file(spec: Spec, caches: bool) -> Path | None:

    m = spec.model
    if m.gguf_file:  # the folder `specforge prepare` writes holds the tokenizer
        candidate = spec_model_dir(spec) / "tokenizer.json" if caches else None
    elif is_local_path(m.name) or Path(m.name).expanduser().is_dir():
        candidate = Path(m.name).expanduser() / "tokenizer.json"
    else:
        candidate = hub_file(spec, "tokenizer.json") if caches else None
    return candidate if candidate is not None and candidate.is_file() else None


def sample_rows(spec: Spec, *, caches: bool = True) -> Rows:
    """`caches=False` reads no machine cache (the Hub's, specforge's prepared models): compile's
    plan must come out the same in every checkout."""
    bound = float(spec.training.max_length)
    ds = spec.dataset
    k = sequences_per_row(spec)
    fallback = Rows(
        count=None,
        mean_tokens=k * bound,
        mean_sq_tokens=k * bound * bound,
        source="max_length (no sample of the data)",
    )
    if ds.path is None or not is_local_path(ds.path):
        return BUILT_IN.get(ds.path or "", fallback)
    try:
        rows, count = _rows(Path(ds.path).expanduser())
        texts = [text for row in rows if isinstance(row, dict) for text in _texts(spec, row)]
    except (OSError, ValueError, KeyError, IndexError, StopIteration, AttributeError):
        return fallback
    if not texts:
        return fallback
    if ds.max_samples is not None:
        count = min(count, ds.max_samples)
    path = _tokenizer_file(spec, caches)
    lengths: list[float]
    if path is not None:
        from tokenizers import Tokenizer

        lengths = [len(e.ids) for e in Tokenizer.from_file(str(path)).encode_batch(texts)]
        how = f"{len(texts) // k} rows of {ds.path}, {path.name}"
    else:
        lengths = [len(t) / CHARS_PER_TOKEN for t in texts]
        how = f"{len(texts) // k} rows of {ds.path}, {CHARS_PER_TOKEN:g} characters per token"
    lengths = [min(n, bound) for n in lengths]  # train.py fits each row to max_length
    rows_n = len(lengths) // k  # a row's tokens are its sequences' (a pair's: both)
    mean = sum(lengths) / rows_n
    return Rows(
        count=count,
        mean_tokens=mean,
        mean_sq_tokens=sum(n * n for n in lengths) / rows_n,
        source=how,
    )
