"""Run ``llamafactory-cli train``: its whole output teed to the log, the console kept to what a user needs.

The console (``console.Console``) shows a progress line; ``R1SFT_VERBOSE=1`` streams everything instead. A failure
ends in one line with its cause and the log's path; Ctrl-C in one line saying which checkpoint a re-run resumes from.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

from r1sft.paths import REPO_ROOT
from r1sft.train.checkpoints import newest_checkpoint, shown
from r1sft.train.console import Console


def _pump(stream, log, console: Console | None) -> None:
    """Copy the child's output to the log, and to the console (or, verbose, to stdout as it is)."""
    for chunk in iter(lambda: stream.read1(65536), b""):
        log.write(chunk)
        log.flush()
        if console is None:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        else:
            console.feed(chunk)


def _stop(proc: subprocess.Popen) -> int:
    """After Ctrl-C: a terminal's Ctrl-C reached the child too; otherwise pass it on, then insist."""
    for action, wait_s in ((None, 5), (signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if action is not None:
            proc.send_signal(action)
        try:
            return proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def run_logged(argv: list[str], env: dict, log_path: Path, config: dict, recipe: str, verbose: bool) -> int:
    """Run training, its whole output to ``log_path``, the console kept to a progress line (``verbose``: all of
    it); returns its exit code, 130 after Ctrl-C."""
    console = None if verbose else Console(sys.stdout, sys.stdout.isatty())
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        reader = threading.Thread(target=_pump, args=(proc.stdout, log, console), daemon=True)
        reader.start()
        try:
            code, interrupted = proc.wait(), False
        except KeyboardInterrupt:
            code, interrupted = _stop(proc), True
        reader.join(timeout=30)
    if console is not None:
        console.close()
    if interrupted:
        print(_interrupted(config, recipe, console), file=sys.stderr, flush=True)
        return 130
    if code != 0 and console is not None:  # one line: the cause, and where the rest is
        cause = f"LLaMA-Factory failed: {console.error}" if console.error else f"training exited with {code}"
        print(f"r1sft train: {cause} (full log: {log_path})", file=sys.stderr, flush=True)
        return code
    done = ""
    if code == 0 and console is not None and console.progress.step:
        p = console.progress
        done = f": {p.step} steps" + (f" in {p.runtime}" if p.runtime else "") + \
            (f", final loss {p.loss:.4g}" if p.loss is not None else "")
    print(f"r1sft: training exited with {code}{done}; log at {log_path}", flush=True)
    return code


def _interrupted(config: dict, recipe: str, console: Console | None) -> str:
    """The one line Ctrl-C ends with: where training stopped and what a re-run resumes from."""
    where = ""
    if console is not None and console.progress.total:
        where = f" at step {console.progress.step}/{console.progress.total}"
    checkpoint = newest_checkpoint((REPO_ROOT / config["output_dir"]).resolve())
    rerun = f"bash run_sft.sh {recipe}"
    if checkpoint is not None:
        return f"r1sft train: interrupted{where}; `{rerun}` resumes from {shown(checkpoint)}"
    from r1sft.recipe.overrides import strategy

    why = ("save_strategy is \"no\"" if strategy(config, "save_strategy") == "no" else
           f"the first is saved at step {config.get('save_steps', 500)}")
    return f"r1sft train: interrupted{where} before any checkpoint ({why}): `{rerun}` starts over"
