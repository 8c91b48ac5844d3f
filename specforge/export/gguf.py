"""--format gguf: the merged folder through llama.cpp's own converter, checked and verified in
llama.cpp itself (llama-cpp-python, the `export` extra).

Two files: <name>-F16.gguf (`convert_hf_to_gguf.py --outtype f16`) and one quantised type,
Q8_0 by default (`--outtype q8_0`; the other types are quantised from the f16 file by llama.cpp's
own quantizer). The converter is the one vendored in the installed llama-cpp-python's sdist, so
converter and runtime are the same llama.cpp: it is taken from the sdist once, into
$SPECFORGE_CACHE/llama.cpp/<version>/ (or from a llama.cpp checkout named by SPECFORGE_LLAMA_CPP).

Checks, each GGUF:
1. its eos (tokenizer.ggml.eos_token_id) is the spec's stop token, so llama.cpp, llama-server and
   Ollama stop where the model was trained to stop;
2. llama.cpp tokenizes every held-out prompt to the ids transformers gives (BOS included);
3. next-token logits on probe prompts against the merged folder in transformers (recorded);
4. its greedy answers to the held-out prompts (llama.cpp's tokens, cut at the first end-of-
   generation token, as a server would) agree with the adapter's: eval.json is the quantised
   file's (verify.finish), the f16 file's figures are in its checks and gate too.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from specforge.core.files import cache_root
from specforge.export.merged import export as export_merged
from specforge.export.run import DEFAULT_THRESHOLD, ExportError, ExportRun
from specforge.export.verify import EVAL_FILE, agreement, finish, record_export, staged_folder
from specforge.modelinfo.gguf_meta import TOKENS, read_metadata
from specforge.modelinfo.gguf_runtime import load_llama

NAME = "gguf"
PACKAGE = "llama-cpp-python"
DEFAULT_QUANT = "q8_0"
CONVERTER_TYPES = ("f16", "bf16", "q8_0")  # convert_hf_to_gguf.py --outtype writes these itself
QUANTIZER_TYPES = ("q4_0", "q4_k_m", "q5_k_m", "q6_k")  # llama.cpp's quantizer, from the f16 file
QUANTS = ("q8_0", *QUANTIZER_TYPES)
CONVERTER = "convert_hf_to_gguf.py"
# what the converter needs from the sdist: the script, its model classes and its own gguf-py
CONVERTER_PARTS = (CONVERTER, "conversion", "gguf-py")
CHECKOUT_ENV = "SPECFORGE_LLAMA_CPP"  # a llama.cpp checkout to take the converter from instead
EOS_KEY = "tokenizer.ggml.eos_token_id"
PROBES = 4  # held-out prompts whose next-token logits are compared with transformers'
INSTALL = "pip install -c constraints.txt -e '.[train,export]'"


def unavailable() -> str | None:
    """Why this installation cannot build GGUFs, or None (nothing is imported)."""
    missing = [m for m in ("llama_cpp", "sentencepiece") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (the `export` extra: {INSTALL})"
    return None


def export(run: ExportRun, out_dir: Path, threshold: float, quant: str = DEFAULT_QUANT):
    """Convert RUN_DIR's merged folder to f16 and `quant` GGUFs in out_dir; verify both."""
    if quant not in QUANTS:
        raise ExportError(f"unknown GGUF type {quant!r}; choose from {', '.join(QUANTS)}")
    merged = merged_folder(run, out_dir)
    converter = converter_script()
    types = ("f16", quant)
    timings = {}
    with staged_folder(out_dir) as folder:
        for outtype in types:
            started = time.monotonic()
            path = folder / gguf_name(run, outtype)
            write_gguf(converter, source=merged, path=path, outtype=outtype)
            timings[outtype] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    prompts = run.prompts()
    checks: dict[str, Any] = {"converter": str(converter), "stop_token": stop_token(run)}
    failures: list[str] = []
    answers: dict[str, list[str]] = {}
    for outtype in types:
        path = out_dir / gguf_name(run, outtype)
        report, problems, answers[outtype] = verify_file(
            run, merged=merged, path=path, prompts=prompts
        )
        report["convert_seconds"] = timings[outtype]
        checks[outtype] = report
        failures += [f"{path.name}: {problem}" for problem in problems]
    f16 = checks["f16"]["agreement"] = agreement(run.reference, answers["f16"])
    if f16 < threshold:
        failures.append(f"{gguf_name(run, 'f16')}: agreement {f16:.1%} is below {threshold:.0%}")
    checks["file"] = gguf_name(run, quant)
    return finish(
        run,
        NAME,
        out_dir,
        answers=answers[quant],
        threshold=threshold,
        seconds=time.monotonic() - started,
        checks=checks,
        failures=failures,
    )


def gguf_name(run: ExportRun, outtype: str) -> str:
    return f"{run.spec.name}-{outtype.upper()}.gguf"


def passed_report(folder: Path) -> dict | None:
    """eval.json of an export folder that verified, else None."""
    report = folder / EVAL_FILE
    if not report.is_file():
        return None
    data = json.loads(report.read_text(encoding="utf-8"))
    return data if data.get("passed") else None


def quantised_file(folder: Path) -> Path | None:
    """The quantised GGUF of a gguf export folder that verified, else None."""
    name = ((passed_report(folder) or {}).get("checks") or {}).get("file")
    return folder / name if name and (folder / name).is_file() else None


def stop_token(run: ExportRun) -> str | None:
    """The spec's stop token (what infer.py's STOP_TOKEN was compiled from)."""
    return run.spec.stop_token()


# -- the merged folder and the converter


def merged_folder(run: ExportRun, out_dir: Path) -> Path:
    """The merged export beside out_dir (`--format all`) or in RUN_DIR/export/merged; built
    there by --format merged when neither has one. A full fine-tuning run's model/ is whole
    weights already: converted as it is."""
    if run.spec.lora is None:
        return run.run_dir / "model"
    for folder in (out_dir.parent / "merged", run.run_dir / "export" / "merged"):
        if (folder / "config.json").is_file() and passed_report(folder):
            return folder
    folder = run.run_dir / "export" / "merged"
    result = export_merged(run, folder, DEFAULT_THRESHOLD)
    record_export(run.run_dir, result)
    if not result.passed:
        raise ExportError(
            f"the merged folder the GGUF is converted from did not verify: {result.error}"
        )
    return folder


def converter_script() -> Path:
    """convert_hf_to_gguf.py of the installed llama-cpp-python's llama.cpp: from
    SPECFORGE_LLAMA_CPP, else the cache, else taken from the sdist once (pip download)."""
    if os.environ.get(CHECKOUT_ENV):
        script = Path(os.environ[CHECKOUT_ENV]) / CONVERTER
        if not script.is_file():
            raise ExportError(f"{CHECKOUT_ENV}={os.environ[CHECKOUT_ENV]} has no {CONVERTER}")
        return script
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ExportError(f"{PACKAGE} is not installed: {INSTALL}") from None
    folder = cache_root() / "llama.cpp" / version
    if not (folder / CONVERTER).is_file():
        fetch_converter(version, folder)
    return folder / CONVERTER


def fetch_converter(version: str, folder: Path) -> None:
    """Take the converter from llama-cpp-python's sdist (the wheel does not ship it)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".fetch-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        command += ["--no-binary", ":all:", f"{PACKAGE}=={version}", "--dest", tmp]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        sdists = sorted(Path(tmp).glob("*.tar.gz"))
        if result.returncode != 0 or not sdists:
            raise ExportError(
                f"could not download the {PACKAGE} {version} sdist for llama.cpp's "
                f"{CONVERTER} ({' '.join(command[2:])}):\n{result.stderr.strip()[-2000:]}\n"
                f"or point {CHECKOUT_ENV} at a llama.cpp checkout of the same version"
            )
        staging = Path(tmp) / "llama.cpp"
        with tarfile.open(sdists[0]) as archive:
            prefix = f"{archive.getnames()[0].split('/')[0]}/vendor/llama.cpp/"
            members = [
                m
                for m in archive.getmembers()
                if m.name.startswith(prefix)
                and m.name[len(prefix) :].split("/")[0] in CONVERTER_PARTS
            ]
            for member in members:
                member.name = member.name[len(prefix) :]
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12: refuse links out of staging
                archive.extractall(staging, members=members, filter="data")
            else:
                archive.extractall(staging, members=members)
        if not (staging / CONVERTER).is_file():
            raise ExportError(f"{sdists[0].name} has no vendor/llama.cpp/{CONVERTER}")
        try:
            os.rename(staging, folder)
        except OSError:  # another export fetched it meanwhile
            if not (folder / CONVERTER).is_file():
                raise


def write_gguf(converter: Path, *, source: Path, path: Path, outtype: str) -> None:
    """The converter for its own types; llama.cpp's quantizer from the f16 file for the rest."""
    if outtype in CONVERTER_TYPES:
        command = [sys.executable, str(converter), str(source), "--outfile", str(path)]
        result = subprocess.run(
            [*command, "--outtype", outtype],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        if result.returncode != 0 or not path.is_file():
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
            raise ExportError(f"{converter.name} --outtype {outtype} failed:\n{tail}")
        return
    import llama_cpp

    f16 = path.with_name(path.name.replace(outtype.upper(), "F16"))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{outtype.upper()}")
    if llama_cpp.llama_model_quantize(str(f16).encode(), str(path).encode(), params) != 0:
        raise ExportError(f"llama.cpp could not quantise {f16.name} to {outtype}")


# -- verification in llama.cpp


def verify_file(run: ExportRun, *, merged: Path, path: Path, prompts: list[str]):
    """(checks, failures, answers) of one GGUF."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged)
    checks, failures = check_eos(path, stop_token(run) or tokenizer.eos_token, tokenizer)
    expected = [tokenizer(prompt).input_ids for prompt in prompts]
    llm = load_llama(path, context_size(prompts, max_new_tokens(run)))
    try:
        ids = [llm.tokenize(p.encode("utf-8"), add_bos=True, special=True) for p in prompts]
        differ = [i for i, (a, b) in enumerate(zip(ids, expected)) if a != b]
        checks["prompts_tokenized_differently"] = len(differ)
        if differ:
            first = differ[0]
            failures.append(
                f"llama.cpp tokenizes {len(differ)} of {len(prompts)} prompts differently from "
                f"transformers (row {first}: {ids[first][:8]}... vs {expected[first][:8]}...)"
            )
        checks.update(probe_logits(llm, merged, expected[:PROBES]))
        penalty = float(run.infer().GENERATION.get("repetition_penalty") or 1.0)
        max_new = max_new_tokens(run)
        answers = [answer(llm, prompt, max_new=max_new, repeat_penalty=penalty) for prompt in ids]
    finally:
        llm.close()
    checks["nonempty_answers"] = sum(bool(a) for a in answers)
    checks["bytes"] = path.stat().st_size
    return checks, failures, answers


def check_eos(path: Path, stop: str, tokenizer) -> tuple[dict, list[str]]:
    """The GGUF's eos must be the stop token (by id and by text)."""
    meta = read_metadata(path, keys=(EOS_KEY, TOKENS, "tokenizer.ggml.add_bos_token")) or {}
    stop_id = tokenizer.convert_tokens_to_ids(stop)
    eos = meta.get(EOS_KEY)
    tokens = meta.get(TOKENS) or []
    eos_text = tokens[eos] if isinstance(eos, int) and 0 <= eos < len(tokens) else None
    checks = {"eos_token_id": eos, "eos_token": eos_text, "stop_token_id": stop_id}
    checks["add_bos_token"] = meta.get("tokenizer.ggml.add_bos_token")
    failures = []
    if eos != stop_id or eos_text != stop:
        failures.append(
            f"its eos is {eos_text!r} (id {eos}), not the stop token {stop!r} (id {stop_id}): "
            "llama.cpp would not stop where the model was trained to stop; the merged folder's "
            "tokenizer_config.json eos_token should be the stop token"
        )
    return checks, failures


def context_size(prompts: list[str], max_new: int) -> int:
    """Room for the longest prompt and the answer: a token is at least one byte, + BOS."""
    return max(len(prompt.encode("utf-8")) for prompt in prompts) + 1 + max_new


def max_new_tokens(run: ExportRun) -> int:
    return int(run.infer().GENERATION.get("max_new_tokens", run.spec.inference.max_new_tokens))


def answer(llm, prompt_ids: list[int], *, max_new: int, repeat_penalty: float = 1.0) -> str:
    """Greedy (temperature 0, top-k 1), up to `max_new` tokens, cut at the first end-of-generation
    token (the eos = the stop token, and whatever else llama.cpp treats as one, as a server
    does); the new tokens decoded with special tokens kept and stripped, as infer.py does."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    new = []
    sampler = {"temp": 0.0, "top_k": 1, "top_p": 1.0, "min_p": 0.0}
    for token in llm.generate(prompt_ids, repeat_penalty=repeat_penalty, **sampler):
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            break
        new.append(token)
        if len(new) >= max_new:
            break
    return llm.detokenize(new, special=True).decode("utf-8", errors="replace").strip()


def probe_logits(llm, merged: Path, probes: list[list[int]]) -> dict:
    """Last-position logits of the same token ids in llama.cpp and in transformers (float32
    merged folder): the largest difference relative to the largest logit, and how often the
    next token is the same."""
    import llama_cpp
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    worst, same = 0.0, 0
    with torch.no_grad():
        for ids in probes:
            expected = model(torch.tensor([ids])).logits[0, -1].numpy()
            llm.reset()
            llm.eval(ids)  # the last position's logits: the one row llama.cpp computed
            got = np.ctypeslib.as_array(
                llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)
            )[: expected.shape[0]].copy()
            worst = max(worst, float(np.abs(got - expected).max() / np.abs(expected).max()))
            same += int(got.argmax() == expected.argmax())
    del model
    return {"probe_logits_max_rel_diff": worst, "probe_same_next_token": f"{same}/{len(probes)}"}
