"""``--workers N``: the same output, rejects, stats and registration as ``--workers 1``, byte for byte, on every
source's fixture with dedupe and decontamination on and the inputs cut into many chunks; order-dependent hygiene
stays right across chunk and worker boundaries; an error or Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import orjson
import pytest

from r1sft.data import convert, convert_many, readers
from r1sft.errors import R1sftError
from tests.conftest import as_foreground_job
from tests.fixtures import dataset_rows as fx
from tests.fixtures import datasets_2026 as f26

WRITERS = {**fx.WRITERS, "jsonl.zst": f26.write_jsonl_zst}
FIXTURES = [(source, lambda rows=rows: rows, shape, options) for source, rows, shape, options in fx.SOURCE_CASES] + [
    (source, lambda make=make: make()[0], shape, {}) for source, fixtures in f26.SOURCES_2026.items()
    for make, shape in fixtures]
FIXTURES += [("bespoke-stratos", lambda: [row for row, _ in fx.MALFORMED_STRATOS] + fx.bespoke_rows(3), "jsonl", {}),
             ("magpie-reasoning", lambda: [row for row, _ in fx.MALFORMED_MAGPIE] + fx.magpie_rows(3), "json", {})]
# One problem of each fixture's range is a "benchmark" problem, so decontamination drops rows in every fixture.
BENCHMARK = [fx.problem(i)[0] for i in (0, 100, 201, 301, 351, 402, 500, 600, 700, 801, 901, 911, 921, 931, 941, 951,
                                        961, 971, 981)]


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of a few rows, so that even a fixture spans several chunks and both workers."""
    monkeypatch.setattr(readers, "BLOCK_BYTES", 700)
    monkeypatch.setattr(readers, "CHUNK_ROWS", 2)
    monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", 2)


def _outputs(out) -> dict:
    names = [out, out.with_name(out.stem + ".rejects.jsonl"), out.with_name(out.stem + ".stats.json"),
             out.with_name("dataset_info.json")]
    return {p.name: p.read_bytes() for p in names}


def _run(src, out, source, workers, **options):
    stats = convert(source, src, out, progress=False, workers=workers, **options)
    return stats, _outputs(out)


@pytest.mark.parametrize(("source", "rows", "shape", "options"), FIXTURES,
                         ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(FIXTURES)])
def test_two_workers_write_the_same_bytes_as_one(tmp_path, small_chunks, source, rows, shape, options):
    rows = rows()
    rows = rows + rows[:2] + rows[-2:]  # exact duplicates, across chunks
    src = WRITERS[shape](tmp_path / f"in.{shape}", rows)
    benchmark = fx.write_jsonl(tmp_path / "bench.jsonl", [{"problem": p} for p in BENCHMARK])
    options = dict(options, dedupe="near", decontaminate=[str(benchmark)], seed=3)
    out = tmp_path / "out" / "o.jsonl"
    one, expected = _run(src, out, source, 1, **options)
    two, got = _run(src, out, source, 2, **options)
    assert got == expected
    assert one.rows_in == len(rows) == one.rows_out + one.rows_dropped
    assert one.dropped["duplicate"] >= 1 or one.dropped["near_duplicate"] >= 1 or one.rows_out < 2, one.dropped
    assert one.dropped["contaminated"] >= 1, dict(one.dropped)


def _long_prompt(rng: random.Random, i: int) -> str:
    words = ("prime", "number", "triangle", "area", "integer", "sequence", "sum", "product", "remainder", "divisor",
             "square", "root", "digit")
    return f"Problem {i}: " + " ".join(rng.choice(words) for _ in range(30)) + f" Find the value for case {i}."


def _synthetic(tmp_path, n: int = 1500):
    """OpenThoughts3-shaped rows across a JSONL, a parquet and a JSON array file: repeated prompts (several answers),
    near-duplicate prompts (one word changed), benchmark problems, broken lines and broken markup."""
    rng = random.Random(7)
    prompts = [_long_prompt(rng, i) for i in range(n // 5)]
    rows = []
    for i in range(n):
        q = prompts[rng.randrange(len(prompts))]
        if i % 37 == 0:
            q = q.replace("Find", "Compute")  # a near duplicate of a prompt seen before
        reasoning = " ".join(["step"] * rng.randint(1, 40))
        answer = "<think>\n" + reasoning + "\n</think>\n\nThe answer is 4." if i % 53 else "<think>\n" + reasoning
        rows.append({"difficulty": 7, "source": "s", "domain": "math",
                     "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": answer}]})
    third = n // 3
    jsonl = tmp_path / "shards" / "a.jsonl"
    jsonl.parent.mkdir()
    lines = [orjson.dumps(r) for r in rows[:third]]
    lines[10:10] = [b"{not json", b"", b"[1, 2]"]
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    fx.write_parquet(tmp_path / "shards" / "b.parquet", rows[third:2 * third])
    fx.write_json_array(tmp_path / "shards" / "c.json", rows[2 * third:])
    benchmark = fx.write_jsonl(tmp_path / "bench.jsonl", [{"problem": prompts[3]}, {"problem": prompts[11]}])
    return tmp_path / "shards", benchmark


@pytest.mark.parametrize("options", [
    {},
    {"tokenizer": "tiny-qwen3", "max_tokens": 120},
    {"dedupe": "near"},
    {"dedupe": "near", "max_per_prompt": 2},
    {"dedupe": "exact", "max_per_prompt": 1},
    {"limit": 300},
    {"limit": 300, "seed": 5},
], ids=["plain", "max-tokens", "near", "near-cap2", "exact-cap1", "limit", "sample"])
def test_many_chunks_and_three_shapes_same_bytes_for_1_2_and_3_workers(tmp_path, monkeypatch, tiny_model, options):
    tiny_model("tiny-qwen3")  # built here, not by two workers at once
    monkeypatch.setattr(readers, "BLOCK_BYTES", 20_000)
    monkeypatch.setattr(readers, "CHUNK_ROWS", 64)
    monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", 32)
    shards, benchmark = _synthetic(tmp_path)
    options = dict(options, decontaminate=[str(benchmark)])
    out = tmp_path / "out" / "o.jsonl"
    one, expected = _run(shards, out, "openthoughts3", 1, **options)
    for workers in (2, 3):
        stats, got = _run(shards, out, "openthoughts3", workers, **options)
        assert got == expected, workers
        assert stats.to_json() == one.to_json()
    assert one.rows_in == one.rows_out + one.rows_dropped
    assert set(one.dropped) >= {"json_error", "wrong_type", "unclosed_think", "contaminated"}
    if options.get("dedupe") == "near":
        assert one.dropped["near_duplicate"] > 0
    if options.get("dedupe"):
        assert one.dedupe["bytes"] > 0 and one.dedupe["index"]["prompts"] > 0
    if options.get("max_per_prompt"):
        assert one.dropped["max_per_prompt"] > 0 and "duplicate" not in one.dropped
    if options.get("max_tokens"):
        assert one.dropped["too_long"] > 0 and one.tokens["rows"] == one.rows_out


def test_mixing_parts_with_workers_counts_each_part(tmp_path, small_chunks):
    nemotron = fx.write_jsonl(tmp_path / "n.jsonl", f26.nemotron_rows()[0])
    s1k = fx.write_parquet(tmp_path / "s.parquet", f26.s1k_rows()[0])
    out = tmp_path / "mix" / "mix.jsonl"
    parts = [("nemotron", nemotron), ("s1k", s1k)]
    expected = None
    for workers in (1, 2):
        stats = convert_many(parts, out, progress=False, workers=workers, reasoning="on", graded_only=True)
        got = _outputs(out)
        assert expected is None or got == expected
        expected = got
    by_source = {p["source"]: p for p in stats.parts}
    assert by_source["nemotron"]["rows_in"] == 9 and by_source["s1k"]["rows_in"] == 5
    assert by_source["s1k"]["rows_out"] == 2 and by_source["s1k"]["dropped"] == {"empty_answer": 1,
                                                                               "not_graded_correct": 2}
    assert by_source["nemotron"]["dropped"]["reasoning_not_selected"] == 3
    assert sum(p["rows_out"] for p in stats.parts) == stats.rows_out
    assert "part s1k: 5 in, 2 out, 3 dropped" in stats.summary()


# ---- errors and interruptions -----------------------------------------------------------------------------------------

def test_a_file_error_after_good_chunks_leaves_no_output(tmp_path, small_chunks):
    folder = tmp_path / "in"
    folder.mkdir()
    fx.write_jsonl(folder / "a.jsonl", fx.sky_t1_rows(20))
    (folder / "b.json").write_text(orjson.dumps(fx.sky_t1_rows(3)).decode()[:-40])  # a truncated JSON array
    out = tmp_path / "out" / "o.jsonl"
    with pytest.raises(R1sftError, match=r"b\.json: element 2: truncated or malformed JSON array"):
        convert("sky-t1", folder, out, progress=False, workers=2)
    assert not out.parent.exists() or os.listdir(out.parent) == []
    # a --limit reached before the broken file ends the run before it, with or without workers
    for workers in (1, 2):
        assert convert("sky-t1", folder, out, progress=False, workers=workers, limit=20).rows_out == 20


def test_an_error_in_a_worker_is_one_line_and_leaves_no_output(tmp_path):
    src = fx.write_jsonl(tmp_path / "sky.jsonl", fx.sky_t1_rows(4))
    bad = fx.write_jsonl(tmp_path / "bench.jsonl", [{"text": "no problem column"}])
    out = tmp_path / "out" / "o.jsonl"
    with pytest.raises(R1sftError, match=r"bench\.jsonl: row 0: no problem/question column"):
        convert("sky-t1", src, out, progress=False, workers=2, decontaminate=[str(bad)])
    assert not out.parent.exists() or os.listdir(out.parent) == []


def test_a_script_without_a_main_guard_can_use_workers(tmp_path):
    src = fx.write_jsonl(tmp_path / "sky.jsonl", fx.sky_t1_rows(30))
    script = tmp_path / "script.py"
    script.write_text("import sys\nfrom r1sft.data import convert\nprint('ran', flush=True)\n"
                      f"s = convert('sky-t1', {str(src)!r}, {str(tmp_path / 'o.jsonl')!r}, progress=False, workers=2)\n"
                      "print(s.rows_out)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ran", "30"]  # the workers did not run the script again


def test_ctrl_c_stops_the_workers_and_leaves_no_files(tmp_path):
    rng = random.Random(1)
    rows = [{"conversations": [{"from": "human", "value": _long_prompt(rng, i)},
                               {"from": "gpt", "value": fx.think_text("r " * 50, "a")}]} for i in range(200_000)]
    src = fx.write_jsonl(tmp_path / "big.jsonl", rows)
    folder = tmp_path / "data"
    folder.mkdir()
    proc = subprocess.Popen(["r1sft", "convert", "openthoughts3", "-i", str(src), "-o", str(folder / "o.jsonl"),
                             "--dedupe", "near", "--workers", "2", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=as_foreground_job,
                            env=dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}"
                                                      f"{os.environ.get('PATH', '')}"))
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.startswith(".o.jsonl.") for p in folder.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        time.sleep(0.3)  # well into the conversion
        assert proc.poll() is None, "the conversion ended before it could be interrupted: make the input bigger"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground process group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and err.strip() == "r1sft convert: interrupted", err
    assert os.listdir(folder) == []
    with pytest.raises(ProcessLookupError):  # no worker of that session is left running
        for _ in range(100):
            os.killpg(proc.pid, 0)
            time.sleep(0.1)


def test_shared_keys_table(tmp_path, monkeypatch):
    from r1sft.data import shared_keys

    table = shared_keys.SharedKeys.create(str(tmp_path))
    reader = shared_keys.SharedKeys(table.path, writable=False)
    keys = [5, 5 + shared_keys.SLOTS, 2**64 - 1, 7]  # the first two probe the same slot
    for key in keys:
        table.add(key)
    assert all(key in reader for key in keys) and 6 not in reader and 0 not in reader
    assert table.count == 4
    table.count = shared_keys.SLOTS // 2  # full: it stops growing, and lookups still answer
    table.add(11)
    assert 11 not in reader and 7 in reader
    reader.close()
    table.close(remove=True)
    assert list(tmp_path.iterdir()) == []
