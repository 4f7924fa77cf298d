"""What ``r1sft train`` shows while LLaMA-Factory trains: a progress line instead of its ~300 lines of start-up.

Every byte still goes to ``output_dir/train.node<RANK>.log``. The console gets r1sft's own lines (the start-up
patches announce themselves with ``r1sft:``), one progress line (step, loss, tokens/s, elapsed, ETA, the newest
checkpoint) read from the HF Trainer's progress bar and the log dicts it prints, and, when training
fails, the error in one line with the log's path. On a terminal the progress line redraws in place; elsewhere
(a pipe, a batch job) it is printed at each tenth of the run, at most every few seconds.
"""

from __future__ import annotations

import ast
import codecs
import re
import time
from dataclasses import dataclass
from typing import TextIO

BAR = re.compile(r"^\s*(\d+)%\|[^|]*\|\s*(\d+)/(\d+) \[([\d:]+)<([\d:?]+)")
LOGS = re.compile(r"\{'[a-z_]+': .*\}")  # HF's ProgressCallback writes str(logs)
TOTAL = re.compile(r"Total optimization steps = ([\d,]+)")
SAVED = re.compile(r"Saving model checkpoint to (\S+)")
CHECKPOINT = re.compile(r"checkpoint-\d+$")
ERROR = re.compile(r"^(?:\[rank\d+\]:\s*)?((?:[A-Za-z_]\w*\.)*([A-Z]\w*(?:Error|Exception)))(?::\s*(.*))?$")
WRAPPERS = {"ChildFailedError", "CalledProcessError"}  # torchrun's and subprocess's: the cause came before them
LINE_EVERY_S = 5.0


@dataclass
class Progress:
    step: int = 0
    total: int = 0
    elapsed: str = ""
    eta: str = ""
    loss: float | None = None
    tokens_per_s: float | None = None
    train_loss: float | None = None
    runtime: str = ""
    checkpoint: str = ""  # the newest saved

    def line(self) -> str:
        parts = [f"step {self.step}/{self.total}" + (f" ({100 * self.step // self.total}%)" if self.total else "")]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4g}")
        if self.tokens_per_s is not None:
            parts.append(f"{self.tokens_per_s:,.0f} tokens/s")
        if self.elapsed:
            parts.append(f"elapsed {self.elapsed}")
        if self.eta and self.step < self.total:
            parts.append(f"ETA {self.eta}")
        if self.checkpoint:
            parts.append(f"saved {self.checkpoint}")
        return "r1sft: " + "  ".join(parts)


def _number(value: object) -> float | None:
    try:
        return float(value)  # HF prints its log values as strings ('6.952')
    except (TypeError, ValueError):
        return None


class Console:
    """Reads LLaMA-Factory's output as it comes (``feed``) and keeps the console to what a user needs."""

    def __init__(self, out: TextIO, tty: bool):
        self.out, self.tty = out, tty
        self.progress = Progress()
        self.error: str | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._drawn = False  # a progress line is on the terminal, not yet ended by a newline
        self._traceback = False  # error lines count once a traceback has begun (sample text can look like one)
        self._printed_mark, self._printed_at = -1, 0.0
        self._last = ""  # the last progress line printed (not on a terminal)

    def feed(self, data: bytes) -> None:
        text = self._pending + self._decoder.decode(data)
        *records, self._pending = re.split(r"[\r\n]", text)
        for record in records:
            self._record(record)

    def close(self) -> None:
        if self._pending:
            self._record(self._pending)
            self._pending = ""
        if self._drawn:
            self.out.write("\n")
            self._drawn = False
        elif not self.tty and self.progress.step and self.progress.line() != self._last:
            self._write(self.progress.line())  # where the run ended
        self.out.flush()

    def say(self, line: str) -> None:
        """A line of its own, above the progress line."""
        if self._drawn:
            self.out.write("\r\x1b[K")
        self.out.write(line + "\n")
        if self._drawn:
            self.out.write(self.progress.line())
        self.out.flush()

    def _record(self, record: str) -> None:
        text = record.strip()
        if text.startswith("r1sft"):
            self.say(text)
        elif match := TOTAL.search(text):
            self.progress.total = int(match.group(1).replace(",", ""))
        elif (match := SAVED.search(text)) and CHECKPOINT.search(match.group(1)):
            self.progress.checkpoint = CHECKPOINT.search(match.group(1)).group(0)
        elif text.endswith("Traceback (most recent call last):"):
            self._traceback = True
        elif self._traceback and (match := ERROR.match(text)) and match.group(2) not in WRAPPERS:
            self.error = f"{match.group(2)}: {match.group(3)}" if match.group(3) else match.group(2)
        updated = self._bar(record)
        if (logs := LOGS.search(record)) is not None:
            updated = self._logs(logs.group(0)) or updated
        if updated:
            self._show()

    def _bar(self, record: str) -> bool:
        match = BAR.match(record)
        # the training bar: no description, counting the optimization steps (not an eval or data bar)
        if not match or (self.progress.total and int(match.group(3)) != self.progress.total):
            return False
        progress = self.progress
        progress.step, progress.total = int(match.group(2)), int(match.group(3))
        progress.elapsed, progress.eta = match.group(4), match.group(5)
        return True

    def _logs(self, text: str) -> bool:
        try:
            logs = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return False
        if not isinstance(logs, dict):
            return False
        progress = self.progress
        if _number(logs.get("eval_loss")) is not None:
            self.say(f"r1sft: eval_loss {_number(logs['eval_loss']):.4g} at step {progress.step}")
        if "loss" in logs:
            progress.loss = _number(logs["loss"])
        tokens = _number(logs.get("train_tokens_per_second"))
        progress.tokens_per_s = tokens if tokens is not None else progress.tokens_per_s
        if "train_loss" in logs:  # the summary HF logs once training ends
            progress.train_loss = _number(logs.get("train_loss"))
            seconds = _number(logs["train_runtime"]) or 0.0
            progress.runtime = time.strftime("%H:%M:%S", time.gmtime(seconds))
        return "loss" in logs

    def _show(self) -> None:
        line = self.progress.line()
        if self.tty:
            self.out.write("\r\x1b[K" + line)
            self._drawn = True
            self.out.flush()
            return
        total, step = self.progress.total, self.progress.step
        mark = 10 * step // total if total else step
        now = time.monotonic()
        # the last step's line waits for close(): its loss is logged after its bar
        if 0 < step < total and mark > self._printed_mark and now - self._printed_at >= LINE_EVERY_S:
            self._write(line)
            self._printed_mark, self._printed_at = mark, now

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()
        self._last = line
