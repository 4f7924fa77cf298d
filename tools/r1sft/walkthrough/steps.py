"""Run one step of a walkthrough (`make demo`, `make learn`): print the command a user would type, run it, time it."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from r1sft.errors import R1sftError
from r1sft.paths import REPO_ROOT

# The r1sft command as a walkthrough runs it: this interpreter, so it works before the console script is on PATH.
R1SFT = [sys.executable, "-m", "r1sft.cli"]
# What a person reads past: progress bars, logging records, and warnings the walkthrough has nothing to say about.
NOISE = re.compile(r"it/s\]|\d+%\||^\[(?:[A-Z]+\||\d{4}-)|^\s*$|Warning:|warnings\.warn")
TAIL_ON_FAILURE = 15


def shown(argv: list[str]) -> str:
    """The command as a user types it (``r1sft ...``, not this interpreter)."""
    return shlex.join(["r1sft", *argv[len(R1SFT):]] if argv[:len(R1SFT)] == R1SFT else argv)


def run_step(title: str, argv: list[str], show: Callable[[str], bool] | None = None, log: Path | None = None
             ) -> None:
    """Run ``argv`` from the project root. ``show``: keep the console to the output lines it accepts (all of it
    goes to ``log``; its last lines are shown if the step fails); None streams the output as it comes."""
    print(f"\n==> {title}\n$ {shown(argv)}", flush=True)
    started = time.monotonic()
    if show is None:
        code = subprocess.call(argv, cwd=REPO_ROOT)
    else:
        proc = subprocess.run(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace")
        code, lines = proc.returncode, proc.stdout.splitlines()
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(proc.stdout, encoding="utf-8")
        for line in lines[-TAIL_ON_FAILURE:] if code else [line for line in lines if show(line)]:
            print(line)
    if code != 0:
        where = f"; its output: {log}" if log is not None and show is not None else ""
        raise R1sftError(f"step failed ({title}): `{shown(argv)}` exited with {code}{where}")
    print(f"    ({time.monotonic() - started:.0f} s)", flush=True)


def readable(line: str) -> bool:
    """A line meant for a person (not a progress bar, a logging record or a warning)."""
    return not NOISE.search(line)
