"""CLI latency: specforge validate / check / schema against the interpreter + import floor.

Every command runs as `sys.executable -m specforge ...` (not the shell wrapper), so the floor,
`python -c "import pydantic, yaml, jinja2"`, pays the same interpreter start-up. Commands are
interleaved (one round runs each command once, in a rotating order) after one untimed warm-up
round, and the median and min over the rounds are printed with the ratio of each median to the
floor's median. Targets: validate <= 2x floor, check <= 2x floor.

`check` answers from its verdict cache when nothing it depends on changed since a full check
(the usual pre-commit case); `check-full` (SPECFORGE_NO_CHECK_CACHE=1) loads, validates and
compares every spec, as after an edit, and is printed alongside for that reason.

Scaling: a temp project holds a copy of specs/ and data/ plus MANY variants of quickstart.yaml
(each with its own `name:` and `lora.r`), compiled once; `check` over all of them is timed
against `check` of one spec in the same project. Target: < 3x.

PASS/MISS is printed against each target; the exit status is 0 whenever every command succeeded.

    .venv/bin/python benchmarks/cli_latency.py                 # 15 rounds, ~30 s
    .venv/bin/python benchmarks/cli_latency.py --runs 2 --many 5
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
TARGETS = {"validate": 2.0, "check": 2.0, "check-full": 2.0}
SCALE_TARGET = 3.0
STALE: set[Path] = set()  # project dirs where `check` found generated/ stale (exit 1)

COMMANDS = {
    "floor": [PY, "-c", "import pydantic, yaml, jinja2"],
    "validate": [PY, "-m", "specforge", "validate", "specs/fingpt.yaml"],
    "check": [PY, "-m", "specforge", "check"],
    "check-full": [PY, "-m", "specforge", "check"],
    "schema": [PY, "-m", "specforge", "schema"],
}
NO_VERDICT_CACHE = {"SPECFORGE_NO_CHECK_CACHE": "1"}
EXTRA_ENV = {"check-full": NO_VERDICT_CACHE}  # by command name


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=15, help="timed rounds per command (default: %(default)s)"
    )
    parser.add_argument(
        "--many",
        type=int,
        default=50,
        help="quickstart variants in the scaling project; 0 skips it (default: %(default)s)",
    )
    return parser.parse_args(argv)


def env(extra: dict | None = None) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(extra or {})}


def run_once(cmd: list[str], cwd: Path, extra_env: dict | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        cmd,
        check=False,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env(extra_env),
    )
    elapsed = time.perf_counter() - start
    if done.returncode == 1 and cmd[2:4] == ["specforge", "check"]:
        # stale generated/ (e.g. templates edited since the last compile): check still compiled
        # and compared every spec, so the timing stands; it also wrote a diff
        STALE.add(cwd)
    elif done.returncode != 0:
        sys.exit(
            f"command failed (exit {done.returncode}) in {cwd}: {' '.join(cmd)}\n{done.stderr.decode()}"
        )
    return elapsed


def time_interleaved(
    commands: dict[str, list[str]], cwd: Path, runs: int
) -> dict[str, list[float]]:
    """One untimed warm-up round, then `runs` rounds; each round rotates the command order."""
    names = list(commands)
    for name in names:
        run_once(commands[name], cwd, EXTRA_ENV.get(name))
    times: dict[str, list[float]] = {name: [] for name in names}
    for rnd in range(runs):
        shift = rnd % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(run_once(commands[name], cwd, EXTRA_ENV.get(name)))
    return times


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_table(
    times: dict[str, list[float]], floor: str, targets: dict[str, float]
) -> dict[str, float]:
    base = statistics.median(times[floor])
    ratios = {}
    print(f"| command | median ms | min ms | median / {floor} | target | |")
    print("|---|---|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        ratio = median / base
        ratios[name] = ratio
        target = targets.get(name)
        mark = verdict(ratio <= target) if target else ""
        target_text = f"<= {target:g}x" if target else ""
        print(
            f"| {name} | {median * 1000:.0f} | {min(values) * 1000:.0f} | {ratio:.2f}x | {target_text} | {mark} |"
        )
    return ratios


def make_project(root: Path, many: int) -> Path:
    """Copy specs/ and data/ to root and add `many` variants of quickstart.yaml; compile once."""
    shutil.copytree(REPO / "specs", root / "specs")
    shutil.copytree(REPO / "data", root / "data")
    if (REPO / "schema").is_dir():
        shutil.copytree(REPO / "schema", root / "schema")
    source = (REPO / "specs" / "quickstart.yaml").read_text()
    for i in range(many):
        text = re.sub(r"(?m)^name:.*$", f"name: variant-{i:03d}", source, count=1)
        text = re.sub(
            r"(?m)^(lora:\n(?:[ \t]+.*\n)*?[ \t]+r:)[ \t]*\d+", rf"\g<1> {4 + i}", text, count=1
        )
        if f"r: {4 + i}" not in text:
            sys.exit("could not rewrite lora.r in quickstart.yaml; its layout changed")
        (root / "specs" / f"variant_{i:03d}.yaml").write_text(text)
    done = subprocess.run(
        [PY, "-m", "specforge", "compile"],
        check=False,
        cwd=root,
        capture_output=True,
        text=True,
        env=env(),
    )
    if done.returncode != 0:
        sys.exit(f"compile of the scaling project failed:\n{done.stdout}{done.stderr}")
    return root


def main(argv=None) -> int:
    args = parse_args(argv)
    print(f"{args.runs} interleaved rounds (+1 warm-up), python {PY}", flush=True)
    times = time_interleaved(COMMANDS, REPO, args.runs)
    print()
    print_table(times, "floor", TARGETS)

    if args.many > 0:
        with tempfile.TemporaryDirectory(prefix="sf-cli-many-") as tmp:
            root = make_project(Path(tmp), args.many)
            count = len(list((root / "specs").glob("*.yaml")))
            one_spec = [PY, "-m", "specforge", "check", "specs/quickstart.yaml"]
            all_specs = [PY, "-m", "specforge", "check"]
            scaling = {
                "floor": COMMANDS["floor"],
                "check-1-spec": one_spec,
                f"check-{count}-specs": all_specs,
                "check-full-1-spec": one_spec,
                f"check-full-{count}-specs": all_specs,
            }
            EXTRA_ENV.update(
                {
                    "check-full-1-spec": NO_VERDICT_CACHE,
                    f"check-full-{count}-specs": NO_VERDICT_CACHE,
                }
            )
            print()
            print(
                f"scaling project: {count} specs ({args.many} quickstart variants + specs/), compiled once"
            )
            many_times = time_interleaved(scaling, root, args.runs)
            print()
            print_table(many_times, "floor", {})
            print()
            for kind in ("check", "check-full"):
                one = statistics.median(many_times[f"{kind}-1-spec"])
                all_ = statistics.median(many_times[f"{kind}-{count}-specs"])
                ratio = all_ / one
                per_spec = (all_ - one) / max(count - 1, 1)
                print(
                    f"ratio {kind} {count} specs / {kind} 1 spec: {ratio:.2f}x  target < {SCALE_TARGET:g}x  "
                    f"{verdict(ratio < SCALE_TARGET)}  (marginal cost per extra spec: {per_spec * 1000:.1f} ms)"
                )

    print()
    if REPO in STALE:
        print(
            "note: `specforge check` exited 1 here (generated/ is stale against specs/templates);"
            " it was timed anyway, including writing its diff"
        )
    base = statistics.median(times["floor"])
    for name, target in TARGETS.items():
        ratio = statistics.median(times[name]) / base
        print(
            f"ratio {name} / floor: {ratio:.2f}x  target <= {target:g}x  {verdict(ratio <= target)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
