"""The pure-Python GGUF header reader: agrees with the `gguf` package's writer, reads the real
SmolLM2 file fast, and answers None (never raises) for anything that is not a whole header."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from gguf import GGUFWriter

from specforge.modelinfo.gguf_meta import gguf_tokens, read_metadata
from tests.conftest import GGUF_FILE, REPO, smollm_dir
from tests.helpers import TOKENS, write_tiny_gguf


@pytest.fixture
def tiny_gguf(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path)
    return path


def test_reads_tokens_and_scalars_written_by_the_gguf_package(tiny_gguf):
    meta = read_metadata(tiny_gguf)
    assert meta["general.architecture"] == "llama"
    assert meta["tokenizer.ggml.tokens"] == TOKENS
    assert meta["tokenizer.ggml.scores"] == [float(i) for i in range(len(TOKENS))]
    assert meta["tokenizer.ggml.eos_token_id"] == 2
    assert meta["test.u8"] == 7
    assert meta["test.i64"] == -5
    assert meta["test.f64"] == 0.25
    assert meta["test.flag"] is True
    assert meta["test.ints"] == [1, 2, 3]
    assert gguf_tokens(tiny_gguf) == TOKENS


def test_only_the_requested_keys_are_returned(tiny_gguf):
    meta = read_metadata(tiny_gguf, ["tokenizer.ggml.eos_token_id", "general.architecture"])
    assert meta == {"tokenizer.ggml.eos_token_id": 2, "general.architecture": "llama"}


@pytest.mark.parametrize("keep", [4, 20, 60, 100], ids=lambda k: f"cut-at-{k}")
def test_truncated_file_is_none(tiny_gguf, keep):
    tiny_gguf.write_bytes(tiny_gguf.read_bytes()[:keep])
    assert read_metadata(tiny_gguf) is None
    assert gguf_tokens(tiny_gguf) is None


def test_truncated_after_the_vocabulary_still_gives_it(tiny_gguf):
    data = tiny_gguf.read_bytes()
    end = data.index(b"<|im_end|>") + len(b"<|im_end|>")
    tiny_gguf.write_bytes(data[: end + 10])
    assert read_metadata(tiny_gguf) is None  # the whole header is not there
    assert gguf_tokens(tiny_gguf) == TOKENS  # reading stops once the tokens are read


@pytest.mark.parametrize(
    ("offset", "patch"),
    [
        (0, b"GGML"),  # magic
        (4, b"\x07\x00\x00\x00"),  # version
        (16, b"\xff" * 8),  # kv count larger than the file
        (24, b"\xff" * 8),  # first key's length larger than the file
    ],
    ids=["magic", "version", "kv-count", "key-length"],
)
def test_corrupt_header_is_none(tiny_gguf, offset, patch):
    data = bytearray(tiny_gguf.read_bytes())
    data[offset : offset + len(patch)] = patch
    tiny_gguf.write_bytes(bytes(data))
    assert read_metadata(tiny_gguf) is None


def test_unknown_value_type_is_none(tiny_gguf):
    data = bytearray(tiny_gguf.read_bytes())
    key_length = int.from_bytes(data[24:32], "little")
    data[32 + key_length : 36 + key_length] = (99).to_bytes(4, "little")
    tiny_gguf.write_bytes(bytes(data))
    assert read_metadata(tiny_gguf) is None


def test_missing_file_and_empty_file_are_none(tmp_path):
    assert gguf_tokens(tmp_path / "absent.gguf") is None
    (tmp_path / "empty.gguf").write_bytes(b"")
    assert gguf_tokens(tmp_path / "empty.gguf") is None


def test_no_vocabulary_is_none(tmp_path):
    path = tmp_path / "bare.gguf"
    writer = GGUFWriter(path, "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    assert read_metadata(path) == {"general.architecture": "llama"}
    assert gguf_tokens(path) is None


def test_smollm2_vocabulary():
    path = smollm_dir() / GGUF_FILE
    tokens = gguf_tokens(path)
    assert len(tokens) == 49152
    assert tokens[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    meta = read_metadata(path, ["tokenizer.ggml.eos_token_id", "general.architecture"])
    assert meta == {"tokenizer.ggml.eos_token_id": 2, "general.architecture": "llama"}


def test_smollm2_vocabulary_reads_in_under_100_ms():
    path = smollm_dir() / GGUF_FILE
    gguf_tokens(path)  # warm the page cache: the budget is for parsing, not the disk
    best = min(_timed(path) for _ in range(3))
    assert best < 0.1, f"{best * 1000:.0f} ms"


def _timed(path) -> float:
    start = time.perf_counter()
    gguf_tokens(path)
    return time.perf_counter() - start


def test_reader_imports_neither_numpy_nor_gguf():
    code = (
        "import sys; from specforge.modelinfo.gguf_meta import gguf_tokens; "
        f"assert gguf_tokens({str(smollm_dir() / GGUF_FILE)!r}); "
        "print(sorted({'numpy', 'gguf'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
