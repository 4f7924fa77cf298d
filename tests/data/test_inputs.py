"""Inputs that are data but not plain: byte order marks, gzip, bad bytes and lone surrogates inside JSON arrays, odd
file names, an input folder that holds the output; and a run cut short by SIGTERM or an unwritable output.

Every case goes through the real ``convert`` (or the real CLI in a child process) on rows in the datasets' schemas.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from r1sft.data import convert
from r1sft.data.pipeline import _RejectLog
from r1sft.data.readers import Record
from r1sft.data.report import Stats
from r1sft.errors import R1sftError
from tests.conftest import run_cli
from tests.fixtures import dataset_rows as fx

R1SFT_CONVERT = [sys.executable, "-c", "import sys, r1sft.cli as c; c.SUBCOMMAND_MODULES = ('r1sft.data.cli',); "
                 "sys.exit(c.main(sys.argv[1:]))", "convert"]
BOM = b"\xef\xbb\xbf"


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rejects(out: Path) -> list[dict]:
    return _read_jsonl(out.with_name(out.stem + ".rejects.jsonl"))


def _reference(tmp_path: Path, rows: list[dict]) -> bytes:
    """What the plain JSONL of ``rows`` converts to."""
    out = tmp_path / "reference" / "ref.jsonl"
    convert("sky-t1", fx.write_jsonl(tmp_path / "reference.jsonl", rows), out, progress=False)
    return out.read_bytes()


# -- lone surrogates and bad bytes: one bad row, not a dead run ------------------------------------------------------

def test_lone_surrogate_is_a_json_error_row_in_a_json_array_as_in_jsonl(tmp_path):
    rows = fx.sky_t1_rows(4)
    rows[2]["conversations"][0]["value"] += " broken emoji \ud83d"  # json.dumps writes it as the escape \ud83d
    array = tmp_path / "sky.json"
    array.write_text(json.dumps(rows, indent=2))
    jsonl = tmp_path / "sky.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "\\ud83d" in array.read_text()
    for src in (array, jsonl):
        out = tmp_path / "out" / f"{src.suffix[1:]}.jsonl"
        stats = convert("sky-t1", src, out, progress=False)
        assert (stats.rows_in, stats.rows_out, dict(stats.dropped)) == (4, 3, {"json_error": 1})
        assert [(r["row"], r["reason"]) for r in _rejects(out)] == [(2, "json_error")]
    assert (tmp_path / "out" / "json.jsonl").read_bytes() == _reference(tmp_path, rows[:2] + rows[3:])


@pytest.mark.parametrize("dedupe", [None, "near"])
def test_lone_surrogate_is_rejected_before_the_hygiene_steps(tmp_path, dedupe):
    rows = fx.sky_t1_rows(3)
    rows[1]["conversations"][1]["value"] = rows[1]["conversations"][1]["value"].replace("The sum", "\udc00 The sum")
    src = tmp_path / "sky.json"
    src.write_text(json.dumps(rows))
    out = tmp_path / "o.jsonl"
    stats = convert("sky-t1", src, out, dedupe=dedupe, progress=False)
    assert (stats.rows_out, dict(stats.dropped)) == (2, {"json_error": 1})
    assert "lone surrogate" in _rejects(out)[0]["detail"]


@pytest.mark.parametrize("block", [7, 300, 8 << 20])
def test_invalid_utf8_in_one_array_element_rejects_only_that_element(tmp_path, monkeypatch, block):
    from r1sft.data import readers

    rows = fx.sky_t1_rows(6)
    rows[4]["conversations"][0]["value"] += " MARK"
    text = json.dumps(rows, indent=2, ensure_ascii=False).encode()
    src = tmp_path / "sky.json"
    src.write_bytes(text.replace(b" MARK", b" \xff\xfe"))
    monkeypatch.setattr(readers, "BLOCK_BYTES", block)  # the bad byte lands in a later block than element 0
    out = tmp_path / "o.jsonl"
    stats = convert("sky-t1", src, out, progress=False)
    assert (stats.rows_in, stats.rows_out, dict(stats.dropped)) == (6, 5, {"json_error": 1})
    (reject,) = _rejects(out)
    assert (reject["row"], reject["reason"]) == (4, "json_error")
    assert "invalid UTF-8: byte 0xff" in reject["detail"]
    assert out.read_bytes() == _reference(tmp_path, rows[:4] + rows[5:])


def test_a_reject_detail_quoting_a_lone_surrogate_is_still_written(tmp_path):
    stats = Stats(source="s", inputs=[], output="o", name="o", options={})
    path = tmp_path / "r.jsonl"
    with path.open("wb") as handle:
        log = _RejectLog(handle, stats)
        log.add(Record("in.jsonl", 3, 4, None), "unknown_role", "role \ud83d, é")
        log.flush()
    assert _read_jsonl(path) == [{"file": "in.jsonl", "row": 3, "line": 4, "reason": "unknown_role",
                                  "detail": "role \\ud83d, é"}]


def test_a_file_name_that_is_not_utf8_is_written_escaped(tmp_path):
    name = os.fsdecode(b"sky\xff.jsonl")
    src = fx.write_jsonl(tmp_path / name, fx.sky_t1_rows(2) + [fx.MALFORMED_STRATOS[0][0]])
    out = tmp_path / "out" / "o.jsonl"
    stats = convert("sky-t1", src, out, progress=False)
    assert stats.rows_out == 2 and stats.inputs == [str(tmp_path / "sky\\xff.jsonl")]
    assert _rejects(out)[0]["file"] == str(tmp_path / "sky\\xff.jsonl")


# -- byte order marks and gzip ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", ["jsonl", "json"])
def test_a_utf8_bom_is_skipped(tmp_path, shape):
    rows = fx.sky_t1_rows(3)
    src = fx.WRITERS[shape](tmp_path / f"sky.{shape}", rows)
    src.write_bytes(BOM + src.read_bytes())
    out = tmp_path / "o.jsonl"
    stats = convert("sky-t1", src, out, progress=False)
    assert (stats.rows_out, stats.rows_dropped) == (3, 0)
    assert out.read_bytes() == _reference(tmp_path, rows)


@pytest.mark.parametrize("shape", ["jsonl", "json"])
def test_gzip_input_is_read_transparently(tmp_path, shape):
    rows = fx.sky_t1_rows(5)
    plain = fx.WRITERS[shape](tmp_path / f"plain.{shape}", rows)
    shards = tmp_path / "shards"
    shards.mkdir()
    packed = shards / f"sky.{shape}.gz"
    packed.write_bytes(gzip.compress(BOM + plain.read_bytes()))
    expected = _reference(tmp_path, rows)
    for src in (packed, shards):  # a file, and a folder of shards
        out = tmp_path / "out" / f"{src.name}.jsonl"
        stats = convert("sky-t1", src, out, progress=False)
        assert (stats.rows_out, stats.inputs) == (5, [str(packed)])
        assert out.read_bytes() == expected


def test_truncated_gzip_is_a_file_error(tmp_path):
    data = gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in fx.sky_t1_rows(50)))
    src = tmp_path / "sky.jsonl.gz"
    src.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out" / "o.jsonl"
    with pytest.raises(R1sftError, match=r"sky\.jsonl\.gz: corrupt or truncated gzip"):
        convert("sky-t1", src, out, progress=False)
    assert not out.parent.exists() or not os.listdir(out.parent)


def test_other_compressions_are_named(tmp_path):
    src = tmp_path / "sky.jsonl.bz2"
    src.write_bytes(b"BZh9" + bytes(range(256)))
    with pytest.raises(R1sftError, match=r"sky\.jsonl\.bz2: bzip2-compressed.*bunzip2"):
        convert("sky-t1", src, tmp_path / "o.jsonl", progress=False)


def test_corrupt_zstd_is_a_file_error(tmp_path):
    src = tmp_path / "sky.jsonl.zst"
    src.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(256)))
    with pytest.raises(R1sftError, match=r"sky\.jsonl\.zst: corrupt or truncated zstd data"):
        convert("sky-t1", src, tmp_path / "o.jsonl", progress=False)


# -- an input folder that holds the output ---------------------------------------------------------------------------

def test_rerun_into_the_input_folder_does_not_read_its_own_output(tmp_path):
    folder = tmp_path / "mix"
    folder.mkdir()
    fx.write_jsonl(folder / "a.jsonl", fx.sharegpt_rows())
    fx.write_jsonl(folder / "b.jsonl", fx.sky_t1_rows(3))
    out = folder / "mix.jsonl"
    first = convert("sharegpt", folder, out, progress=False)
    first_bytes = out.read_bytes()
    second = convert("sharegpt", folder, out, progress=False)
    assert (second.rows_in, second.rows_out) == (first.rows_in, first.rows_out)
    assert out.read_bytes() == first_bytes
    assert second.inputs == [str(folder / "a.jsonl"), str(folder / "b.jsonl")]
    assert any(str(out) in w and "own output" in w for w in second.warnings), second.warnings
    assert not any("own output" in w for w in first.warnings)


# -- interrupted or unwritable runs ----------------------------------------------------------------------------------

def test_sigterm_leaves_no_temp_files(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "dataset_info.json").write_text("{}\n")
    src = fx.write_jsonl(tmp_path / "sky.jsonl", fx.sky_t1_rows(20))
    lock = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the run writes every temp file, then waits for this lock to commit
        proc = subprocess.Popen([*R1SFT_CONVERT, "sky-t1", "-i", str(src), "-o", str(folder / "sky.jsonl")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while not any(p.name.startswith(".sky.stats.json.") for p in folder.iterdir()):
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        os.close(lock)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert sorted(os.listdir(folder)) == ["dataset_info.json"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # and this process's handler is as it was


def _afile_parent(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "afile").write_text("")
    return tmp_path / "afile" / "o.jsonl", "is a file, not a folder"


def _a_folder(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "dir.jsonl").mkdir()
    return tmp_path / "dir.jsonl", "is a folder"


def _proc(tmp_path: Path) -> tuple[Path, str]:
    return Path("/proc/r1sft-nowhere/o.jsonl"), "cannot write"


@pytest.mark.parametrize("make", [_afile_parent, _a_folder, _proc])
def test_unwritable_output_is_one_line_naming_it(tmp_path, make):
    out, needle = make(tmp_path)
    if str(out).startswith("/proc") and not Path("/proc/self").exists():
        pytest.skip("no /proc here")
    src = fx.write_jsonl(tmp_path / "sky.jsonl", fx.sky_t1_rows(2))
    proc = run_cli(*R1SFT_CONVERT, "sky-t1", "-i", str(src), "-o", str(out), check=False)
    err = proc.stderr.strip()
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"--output {out}" in err and needle in err, err
    assert not [p for p in tmp_path.rglob(".*.tmp")]


@pytest.mark.parametrize("dedupe", ["exact", "near"])
def test_a_duplicate_reject_names_the_row_it_repeats(tmp_path, dedupe):
    rows = fx.bespoke_rows(4)
    rows.insert(3, dict(rows[1]))  # row 3 repeats row 1
    src = tmp_path / "stratos.jsonl"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    out = tmp_path / "out" / "s.jsonl"
    stats = convert("bespoke-stratos", src, out, think="native", dedupe=dedupe)
    assert stats.rows_out == 4
    (reject,) = _rejects(out)
    assert reject["reason"] == "duplicate"  # near dedupe runs the exact check first
    assert f"{src} row 1" in reject["detail"] and reject["row"] == 3


def test_a_near_duplicate_reject_names_the_row_it_resembles(tmp_path):
    rows = fx.bespoke_rows(3)
    edited = dict(rows[0])
    long_problem = " ".join(f"word{i}" for i in range(60))
    rows[0] = {**rows[0], "conversations": [{"from": "user", "value": long_problem}, rows[0]["conversations"][1]]}
    edited["conversations"] = [{"from": "user", "value": long_problem + " please"}, rows[0]["conversations"][1]]
    rows.append(edited)
    src = tmp_path / "stratos.jsonl"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    out = tmp_path / "out" / "s.jsonl"
    convert("bespoke-stratos", src, out, think="native", dedupe="near")
    (reject,) = _rejects(out)
    assert reject["reason"] == "near_duplicate" and f"{src} row 0" in reject["detail"]


def test_a_rerun_without_a_tokenizer_removes_the_old_length_plot(tmp_path):
    src = tmp_path / "stratos.jsonl"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in fx.bespoke_rows(3)))
    out = tmp_path / "out" / "s.jsonl"
    out.parent.mkdir()
    stale = out.with_name("s.lengths.png")
    stale.write_bytes(b"\x89PNG from an earlier run with --tokenizer")
    convert("bespoke-stratos", src, out, think="native")
    assert out.is_file() and not stale.exists()


def test_split_think_splits_windows_paragraphs():
    from r1sft.data.reasoning import reasoning_steps

    assert reasoning_steps("first step\r\n\r\nsecond step\n\nthird") == ["first step", "second step", "third"]


def test_conversations_stored_as_json_text_convert_like_the_list(tmp_path):
    rows = fx.bespoke_rows(3)
    as_text = [{**r, "conversations": json.dumps(r["conversations"])} for r in rows]
    outputs = []
    for name, data in (("list", rows), ("text", as_text)):
        src = tmp_path / f"{name}.jsonl"
        src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in data))
        out = tmp_path / name / "s.jsonl"
        convert("bespoke-stratos", src, out, think="native")
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] and outputs[0].count(b"\n") == 3
