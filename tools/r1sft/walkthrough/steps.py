"""Run one step of a walkthrough (`make demo`, `make learn`): print the command a user would type, run it, time it."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time

from r1sft.errors import R1sftError
from r1sft.paths import REPO_ROOT

# The r1sft command as a walkthrough runs it: this interpreter, so it works before the console script is on PATH.
R1SFT = [sys.executable, "-m", "r1sft.cli"]


def run_step(title: str, argv: list[str]) -> None:
    print(f"\n==> {title}\n$ {shlex.join(argv)}", flush=True)
    started = time.monotonic()
    code = subprocess.call(argv, cwd=REPO_ROOT)
    if code != 0:
        raise R1sftError(f"step failed ({title}): `{shlex.join(argv)}` exited with {code}")
    print(f"    ({time.monotonic() - started:.0f} s)", flush=True)
