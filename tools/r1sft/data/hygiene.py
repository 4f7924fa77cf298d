"""Data hygiene: duplicate prompts, near-duplicates, benchmark contamination, Magpie quality tags.

All filters look at the prompt side (the user turns) after normalisation: lower-cased, whitespace collapsed. Near
dedupe and decontamination also drop the fixed instructions some datasets put before every problem (``BOILERPLATE``):
they are not the problem, and on a short problem they are most of its words. Memory is a dict entry per kept prompt
(exact), plus 8 band keys per kept prompt (near), and is reported in OUT.stats.json (``dedupe``). What is pure (keys of
a row's prompts) is computed where the row is converted, possibly in a worker process; what depends on the rows
before (``PromptIndex``, ``PromptCap``) runs in the main process, in input order.
"""

from __future__ import annotations

import hashlib
import heapq
import re
import sys
from pathlib import Path

from r1sft.data.conversation import RowRejected
from r1sft.data.sources_nvidia import COT_PROMPT, TIR_PROMPT
from r1sft.errors import R1sftError

QUALITY_LEVELS = ("very poor", "poor", "average", "good", "excellent")
BENCHMARK_COLUMNS = ("problem", "question", "prompt", "Problem", "Question", "question_content")  # LiveCodeBench
NGRAM = 8


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def normalise_prompt_template(template: str, **values) -> str:
    """The fixed text of a prompt template before its ``{problem}``, normalised."""
    return normalise(template.format(problem="", **values))


_INT64 = sys.getsizeof(2**63)  # a 64-bit key as a Python int
_SMALL_INT = sys.getsizeof(2**29)  # an ordinal
# Fixed instructions that Stratos-family datasets (Bespoke-Stratos, Sky-T1, OpenThoughts) and OpenMathReasoning's
# prompts put before every math or code problem, normalised. Longest first: the code instructions share their first
# sentence.
BOILERPLATE = tuple(sorted((
    "return your final response within \\boxed{}.",
    "generate an executable python function generated from the given prompt. the function should take stdin as input "
    "and print the output. simply call the function after the definition.",
    "generate an executable python function generated from the given prompt. return the function body without "
    "invoking it at the final solution.",
    "generate an executable python function generated from the given prompt.",
    normalise_prompt_template(COT_PROMPT),  # OpenMathReasoning's cot prompt, as openmath-reasoning builds it
), key=len, reverse=True))
# OpenMathReasoning's tir prompt: its number of code calls varies per row.
_TIR_START = "solve the following math problem, integrating"
_TIR = re.compile(r"\d+".join(map(re.escape, normalise_prompt_template(TIR_PROMPT, executions="\0").split("\0"))))




def problem_text(text: str) -> str:
    """``normalise(text)`` without the leading ``BOILERPLATE`` instructions: the problem itself."""
    text = normalise(text)
    stripped = True
    while stripped:
        stripped = False
        for prefix in BOILERPLATE:
            if text.startswith(prefix):
                text = text[len(prefix):].lstrip()
                stripped = True
        if text.startswith(_TIR_START) and (found := _TIR.match(text)):
            text = text[found.end():].lstrip()
            stripped = True
    return text


def digest64(text: str) -> int:
    """A stable 8-byte digest (blake2b): stable across processes, unlike ``hash()``."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def prompt_key(prompts: list[str]) -> int:
    """The key of a row's normalised prompts: equal keys are exact duplicates (and one prompt for --max-per-prompt)."""
    return digest64("\x1f".join(normalise(p) for p in prompts))


class NearHasher:
    """MinHash over word 3-gram shingles with LSH banding (8 bands x 8 rows: rows above ~0.75 Jaccard collide).

    Written small on purpose, and vectorised: each word's 8-byte digest (cached: vocabularies repeat) is combined with
    its two successors into a shingle hash (odd multipliers and a xor-shift); each shingle hash goes
    through 64 multiply-shift hashes ``(a*h + b) mod 2^64`` (numpy, wrapping uint64 arithmetic) seeded by ``--seed``;
    the signature is the per-hash minimum. A row is a near duplicate when any of its 8 band keys was seen in an
    earlier kept row (``PromptIndex``). ~25 us of CPU per prompt on this project's 2-core VM.

    Shingles are taken from ``problem_text`` (boilerplate instructions removed). A prompt with fewer than
    ``MIN_SHINGLES`` shingles is matched exactly (on its problem text) instead: one changed word of a short problem
    ("Compute 31 choose 28" / "... 29") is another problem, and a few shingles give MinHash nothing to average.
    Pure: the same prompts give the same keys in any process, which is what lets workers compute them.
    """

    BANDS = 8
    ROWS = 8
    SHINGLE = 3
    MIN_SHINGLES = 8  # 10 words: below that one substituted word leaves a Jaccard similarity under 0.5
    CACHE = 1 << 16  # prompts remembered: datasets with many answers per prompt hash each prompt once
    WORDS = 1 << 20  # word digests remembered

    def __init__(self, seed: int = 0) -> None:
        import numpy as np

        rng = np.random.default_rng(seed)
        n = self.BANDS * self.ROWS
        self.np = np
        self.a = rng.integers(1, 2**63, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd multipliers
        self.b = rng.integers(0, 2**63, size=n, dtype=np.uint64)
        self.mix = [np.uint64(m) for m in (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9)]
        self.row_weights = rng.integers(1, 2**63, size=self.ROWS, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.band_salt = rng.integers(0, 2**63, size=self.BANDS, dtype=np.uint64)
        self.cache: dict[int, list[int]] = {}
        self.words: dict[str, int] = {}

    def keys(self, prompts: list[str], key: int | None = None) -> list[int]:
        """The band keys; ``key`` (the ``prompt_key``) lets a repeated prompt be looked up instead of hashed."""
        if key is not None:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        keys = self._keys(prompts)
        if key is not None:
            if len(self.cache) >= self.CACHE:
                self.cache.pop(next(iter(self.cache)))  # oldest first: answers of one prompt tend to be close
            self.cache[key] = keys
        return keys

    def _keys(self, prompts: list[str]) -> list[int]:
        np = self.np
        texts = [problem_text(p) for p in prompts]
        words = " ".join(texts).split()
        if len(words) - self.SHINGLE + 1 < self.MIN_SHINGLES:
            return [digest64("exact:" + "\x1f".join(texts))]
        shingles = self._shingles(np.array(self._word_digests(words), dtype=np.uint64))
        with np.errstate(over="ignore"):
            signature = (shingles[:, None] * self.a[None, :] + self.b[None, :]).min(axis=0)
        return self._bands(signature).tolist()

    def _word_digests(self, words: list[str]) -> list[int]:
        cache = self.words
        if len(cache) >= self.WORDS:
            cache.clear()
        out = list(map(cache.get, words))
        if None in out:
            for i, h in enumerate(out):
                if h is None:
                    out[i] = cache.setdefault(words[i], digest64(words[i]))
        return out

    def _shingles(self, h):
        """Hashes of the word 3-grams (order matters: "a b c" != "c b a"); repeats do not change a minimum."""
        np = self.np
        m1, m2, m3 = self.mix
        with np.errstate(over="ignore"):
            x = h[:-2] * m1 + h[1:-1] * m2 + h[2:] * m3
            x ^= x >> np.uint64(32)
            x *= m1
        return x

    def _bands(self, signature):
        """One key per band: its ``ROWS`` minima weighted by position (order matters), summed mod 2^64, mixed."""
        np = self.np
        with np.errstate(over="ignore"):
            key = (signature.reshape(self.BANDS, self.ROWS) * self.row_weights).sum(axis=1, dtype=np.uint64)
            key += self.band_salt
            key ^= key >> np.uint64(31)
            key *= self.mix[1]
        return key


class PromptIndex:
    """The order-dependent half of dedupe, kept in the main process: which prompts earlier kept rows had.

    ``exact``: prompt key -> ordinal of the first kept row with it (named in a duplicate's reject); ``near``: band key
    -> the prompt key of the kept row that brought it. With ``grouped`` (--max-per-prompt) rows of one prompt key are
    not duplicates of each other (the cap decides), and a band shared only within that prompt is no near duplicate.
    Memory: ~100 bytes per kept prompt, plus ~80 per band key with --dedupe near (8 bands per prompt).
    """

    def __init__(self, near: bool, grouped: bool, where) -> None:
        self.exact: dict[int, int] = {}
        self.near: dict[int, int] | None = {} if near else None
        self.grouped = grouped
        self.where = where  # ordinal -> "file row N"
        self.shared = None  # SharedKeys: the kept prompts, for the workers (a hint, see shared_keys.py)

    def check(self, key: int, bands) -> None:
        seen = self.exact.get(key)
        if seen is not None:
            if not self.grouped:
                raise RowRejected("duplicate", f"same normalised prompt as {self.where(seen)}")
            # A kept prompt's bands all lead back to it (a prompt sharing one with a kept prompt is never kept, and
            # setdefault never reassigns one): another answer of it cannot be a near duplicate of anything else.
            return
        near = self.near
        if near is not None:
            for band in bands:
                hit = near.get(band)
                if hit is not None and hit != key:
                    raise RowRejected("near_duplicate", f"prompt nearly identical to {self.where(self.exact[hit])} "
                                                        "(MinHash LSH)")

    def add(self, key: int, bands, ordinal: int) -> None:
        if key in self.exact:
            return
        self.exact[key] = ordinal
        if self.shared is not None:
            self.shared.add(key)
        if self.near is not None:
            for band in bands:
                self.near.setdefault(band, key)

    def memory(self) -> dict:
        """Entries and an estimate of their bytes (dict tables plus int objects), the same for the same input."""
        exact_bytes = sys.getsizeof(self.exact) + len(self.exact) * (_INT64 + _SMALL_INT)
        result = {"prompts": len(self.exact), "band_keys": len(self.near or {})}
        near_bytes = sys.getsizeof(self.near) + len(self.near) * _INT64 if self.near is not None else 0
        result["bytes"] = exact_bytes + near_bytes
        return result


class PromptCap:
    """``--max-per-prompt K``: of the rows of one prompt key, the K with the shortest answers (characters of the
    rendered assistant turns) are kept, earlier ones first among equal lengths. Bounded memory: per prompt a heap of
    at most K small entries; a row that cannot make the K is refused at once, a kept one pushed out later is handed
    back to be dropped."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.groups: dict[int, list] = {}
        self.entries = 0
        self.shared = None  # SharedKeys: the prompts with a kept answer, for the workers (see shared_keys.py)

    def offer(self, key: int, length: int, ordinal: int, ref) -> tuple[bool, object]:
        """(kept, the ``ref`` of the row pushed out or None). Heap entries are (-length, -ordinal, ref): the root is
        the longest, latest kept row, the first to go."""
        heap = self.groups.get(key)
        if heap is None:
            self.groups[key] = [(-length, -ordinal, ref)]
            self.entries += 1
            if self.shared is not None:
                self.shared.add(key)
            return True, None
        if len(heap) < self.k:
            heapq.heappush(heap, (-length, -ordinal, ref))
            self.entries += 1
            return True, None
        if length < -heap[0][0]:  # strictly shorter: on a tie the earlier row stays
            return True, heapq.heapreplace(heap, (-length, -ordinal, ref))[2]
        return False, None

    def memory(self) -> dict:
        """Entries and an estimate of their bytes, from the size of one entry (all have the same shape)."""
        total = sys.getsizeof(self.groups)
        if self.groups:
            entry = next(iter(self.groups.values()))[0]
            entry_bytes = sys.getsizeof(entry) + 2 * _INT64 + _deep_size(entry[2])
            total += len(self.groups) * (_INT64 + sys.getsizeof([None] * self.k)) + self.entries * entry_bytes
        return {"prompts": len(self.groups), "kept_entries": self.entries, "bytes": total}


def _deep_size(ref) -> int:
    """A tuple of ints and strings; strings are shared labels, counted once elsewhere."""
    if isinstance(ref, tuple):
        return sys.getsizeof(ref) + sum(sys.getsizeof(x) for x in ref if isinstance(x, int))
    return sys.getsizeof(ref)


class Decontaminator:
    """Word 8-gram overlap with benchmark problems (lower-cased, whitespace-normalised), as open-r1 and s1 do.

    Both sides are compared as ``problem_text`` (boilerplate instructions removed). Problems shorter than 8 words cannot
    share an 8-gram; they match a prompt whose whole problem text equals theirs. The verdict on a prompt is remembered
    (by ``prompt_key``, for 65,536 prompts): OpenThoughts3 asks 16 times about each.
    """

    CACHE = 1 << 16

    def __init__(self, files: list[str]) -> None:
        self.verdicts: dict[int, str] = {}  # prompt key -> "" (clean) or the reject detail
        self.ngrams: dict[int, str] = {}
        self.short: dict[int, str] = {}
        self.problems = 0
        for file in files:
            name = Path(file).name
            for problem in _benchmark_problems(file):
                self.problems += 1
                words = problem_text(problem).split()
                if 0 < len(words) < NGRAM:
                    self.short[digest64(" ".join(words))] = name
                # hash() is salted per process, which is fine: both sides are hashed in this process.
                for i in range(len(words) - NGRAM + 1):
                    self.ngrams.setdefault(hash(" ".join(words[i:i + NGRAM])), name)

    def check(self, prompts: list[str], key: int | None = None) -> None:
        if key is None:
            return self._check(prompts)
        verdict = self.verdicts.get(key)
        if verdict is None:
            try:
                self._check(prompts)
                verdict = ""
            except RowRejected as exc:
                verdict = exc.detail
            if len(self.verdicts) >= self.CACHE:
                self.verdicts.pop(next(iter(self.verdicts)))
            self.verdicts[key] = verdict
        if verdict:
            raise RowRejected("contaminated", verdict)

    def _check(self, prompts: list[str]) -> None:
        ngrams = self.ngrams
        for prompt in prompts:
            words = problem_text(prompt).split()
            for i in range(len(words) - NGRAM + 1):
                hit = ngrams.get(hash(" ".join(words[i:i + NGRAM])))
                if hit:
                    raise RowRejected("contaminated", f"shares a word 8-gram with a problem of {hit}")
            if self.short:
                hit = self.short.get(digest64(" ".join(words)))
                if hit:
                    raise RowRejected("contaminated", f"equals a problem of {hit}")


def _benchmark_problems(file: str):
    """Problem texts of a benchmark file (JSONL, JSON array or parquet) with a problem/question/prompt column."""
    from r1sft.data.readers import iter_records, read_parquet_columns, resolve_inputs

    class _NoProgress:
        def update(self, n: int) -> None:
            pass

    for inp in resolve_inputs([file]):
        if inp.kind == "hub":
            raise R1sftError(f"{file}: benchmark files must be local (JSONL, JSON array or parquet)")
        if inp.kind == "parquet":
            names = read_parquet_columns(inp)
            if not any(c in names for c in BENCHMARK_COLUMNS):
                raise R1sftError(f"{inp.label}: no problem/question column (found: {', '.join(names)})")
        column = None
        for record in iter_records(inp, _NoProgress(), columns=list(BENCHMARK_COLUMNS)):
            if record.data is None:
                raise R1sftError(f"{inp.label}: row {record.row}: {record.error} ({record.detail})")
            if column is None:
                column = next((c for c in BENCHMARK_COLUMNS if c in record.data), None)
                if column is None:
                    raise R1sftError(f"{inp.label}: row {record.row}: no problem/question column "
                                     f"(found: {', '.join(record.data)})")
            value = record.data.get(column)
            if isinstance(value, str):
                yield value


class QualityFilter:
    """Keeps rows whose quality tag (Magpie's ``input_quality``) is at least ``minimum``."""

    def __init__(self, column: str, minimum: str) -> None:
        if minimum not in QUALITY_LEVELS:
            raise R1sftError(f"--min-quality {minimum!r}: expected one of {', '.join(QUALITY_LEVELS)}")
        self.column = column
        self.accepted = set(QUALITY_LEVELS[QUALITY_LEVELS.index(minimum):])

    def check(self, row: dict) -> None:
        value = row.get(self.column)
        if not isinstance(value, str) or value.strip().lower() not in self.accepted:
            raise RowRejected("low_quality", f"{self.column}={value!r}")
