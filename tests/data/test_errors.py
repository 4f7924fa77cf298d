"""One bad row never kills a run; a bad file stops it cleanly.

Malformed rows of every kind land in ``<stem>.rejects.jsonl`` with their position and reason, and the stats add up.
A file that is not data at all (truncated JSON array, binary garbage, wrong columns) or an unknown SOURCE exits
non-zero with one line naming the file, no traceback, no output, and ``dataset_info.json`` untouched.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from r1sft.data import convert
from tests.conftest import run_cli
from tests.fixtures import dataset_rows as fx

# The real ``r1sft`` entry point (r1sft.cli.main), limited to this subcommand so that the test does not depend on
# the other subcommands' modules importing cleanly.
R1SFT_CONVERT = [sys.executable, "-c", "import sys, r1sft.cli as c; c.SUBCOMMAND_MODULES = ('r1sft.data.cli',); "
                 "sys.exit(c.main(sys.argv[1:]))", "convert"]
OTHER_ENTRY = {"keep_me": {"file_name": "other.jsonl", "formatting": "sharegpt"}}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_malformed_rows_are_rejected_with_position_and_reason(tmp_path):
    good = fx.bespoke_rows(3)
    lines = [orjson.dumps(good[0]), b"", orjson.dumps(good[1])]
    expected = {}
    for row, reason in fx.MALFORMED_STRATOS:
        expected[len(lines) + 1] = reason  # 1-based line number
        lines.append(orjson.dumps(row))
    expected[len(lines) + 1] = "json_error"
    lines.append(b'{"system": "", "conversations": [{"from": "user", "value": "truncated')
    expected[len(lines) + 1] = "wrong_type"
    lines.append(b"[1, 2, 3]")
    expected[len(lines) + 1] = "json_error"
    lines.append(b"\xff\xfe not utf-8")
    lines.append(orjson.dumps(good[2]))
    src = tmp_path / "messy.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")

    out = tmp_path / "out" / "messy.jsonl"
    stats = convert("bespoke-stratos", src, out, progress=False)

    assert stats.rows_out == 3
    assert stats.rows_in == stats.rows_out + stats.rows_dropped == 3 + len(expected)
    rejects = _read_jsonl(out.with_name("messy.rejects.jsonl"))
    assert {r["line"]: r["reason"] for r in rejects} == expected
    assert all(r["file"] == str(src) and isinstance(r["row"], int) for r in rejects)
    saved = json.loads(out.with_name("messy.stats.json").read_text())
    assert saved["rows_in"] == saved["rows_out"] + sum(saved["dropped"].values())
    assert saved["dropped"] == dict(Counter(expected.values()))


def test_malformed_magpie_rows_and_quality(tmp_path):
    rows = [r for r, _ in fx.MALFORMED_MAGPIE] + fx.magpie_rows(2) + [fx.magpie_row(9, quality="average")]
    src = fx.write_jsonl(tmp_path / "magpie.jsonl", rows)  # parquet columns cannot hold the wrong-type row
    out = tmp_path / "out" / "magpie.jsonl"
    stats = convert("magpie-reasoning", src, out, min_quality="good", progress=False)
    rejects = _read_jsonl(out.with_name("magpie.rejects.jsonl"))
    assert [r["reason"] for r in rejects] == [reason for _, reason in fx.MALFORMED_MAGPIE] + ["low_quality"]
    assert [r["row"] for r in rejects] == [0, 1, 2, 3, 4, 5, 8]
    assert stats.rows_out == 2 and stats.rows_in == stats.rows_out + stats.rows_dropped


def _existing_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "dataset_info.json").write_text(json.dumps(OTHER_ENTRY, indent=2))
    return folder


def _truncated_array(tmp_path: Path) -> Path:
    text = json.dumps(fx.sky_t1_rows(3), indent=2)
    path = tmp_path / "sky.json"
    path.write_text(text[: len(text) * 2 // 3])
    return path


def _binary(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.jsonl"
    path.write_bytes(bytes(range(256)) * 64)
    return path


def _wrong_columns_jsonl(tmp_path: Path) -> Path:
    return fx.write_jsonl(tmp_path / "alpaca_shaped.jsonl", fx.alpaca_rows())


def _wrong_columns_parquet(tmp_path: Path) -> Path:
    return fx.write_parquet(tmp_path / "alpaca_shaped.parquet", fx.alpaca_rows())


def _not_jsonl_text(tmp_path: Path) -> Path:
    path = tmp_path / "table.jsonl"
    path.write_text("".join(f"id,question,answer\n{i},q{i},a{i}\n" for i in range(80)))
    return path


def _fake_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 100)
    return path


BROKEN = {
    "truncated-json-array": (_truncated_array, "bespoke-stratos", ["sky.json", "element 2", "truncated"]),
    "binary-garbage": (_binary, "bespoke-stratos", ["garbage.jsonl", "binary"]),
    "wrong-columns-jsonl": (_wrong_columns_jsonl, "bespoke-stratos", ["alpaca_shaped.jsonl", "row 0", "conversations"]),
    "wrong-columns-parquet": (_wrong_columns_parquet, "openr1-math", ["alpaca_shaped.parquet", "generations"]),
    "csv-named-jsonl": (_not_jsonl_text, "sharegpt", ["table.jsonl", "not JSONL"]),
    "broken-parquet": (_fake_parquet, "bespoke-stratos", ["broken.parquet", "parquet"]),
    "unknown-source": (_wrong_columns_jsonl, "stratos-2000", ["unknown source", "stratos-2000"]),
    "missing-file": (lambda tmp: tmp / "nowhere.jsonl", "bespoke-stratos", ["nowhere.jsonl", "no such file"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_input_exits_with_one_line_and_leaves_everything_untouched(tmp_path, case):
    make, source, needles = BROKEN[case]
    src = make(tmp_path)
    folder = _existing_folder(tmp_path)
    before = (folder / "dataset_info.json").read_bytes()
    out = folder / "broken.jsonl"
    proc = run_cli(*R1SFT_CONVERT, source, "--input", str(src), "--output", str(out), check=False)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    assert sorted(os.listdir(folder)) == ["dataset_info.json"]  # no output, no stats, no temp files
    assert (folder / "dataset_info.json").read_bytes() == before


def test_failed_run_keeps_previous_outputs(tmp_path):
    folder = _existing_folder(tmp_path)
    out = folder / "stratos.jsonl"
    convert("bespoke-stratos", fx.write_jsonl(tmp_path / "good.jsonl", fx.bespoke_rows(2)), out, progress=False)
    snapshot = {p.name: p.read_bytes() for p in folder.iterdir()}
    from r1sft.errors import R1sftError

    with pytest.raises(R1sftError):
        convert("bespoke-stratos", _truncated_array(tmp_path), out, progress=False)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == snapshot


@pytest.mark.parametrize("content", [b"", b"\n\n", b"[]", b"  [ ]\n"])
def test_empty_input_with_allow_empty_gives_empty_output_and_a_warning(tmp_path, content):
    src = tmp_path / ("empty.json" if b"[" in content else "empty.jsonl")
    src.write_bytes(content)
    folder = _existing_folder(tmp_path)
    out = folder / "empty.jsonl"
    refused = run_cli(*R1SFT_CONVERT, "bespoke-stratos", "--input", str(src), "--output", str(out), check=False)
    assert refused.returncode == 2 and "--allow-empty" in refused.stderr, refused.stderr
    assert sorted(os.listdir(folder)) == ["dataset_info.json"]
    proc = run_cli(*R1SFT_CONVERT, "bespoke-stratos", "--input", str(src), "--output", str(out), "--allow-empty")
    assert "warning: no rows in" in proc.stderr and str(src) in proc.stderr
    assert out.read_bytes() == b""
    info = json.loads((folder / "dataset_info.json").read_text())
    assert info["keep_me"] == OTHER_ENTRY["keep_me"] and info["empty"]["file_name"] == "empty.jsonl"
    assert json.loads(out.with_name("empty.stats.json").read_text())["rows_in"] == 0


def test_invalid_dataset_info_is_reported_not_overwritten(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "dataset_info.json").write_text("{not json")
    from r1sft.errors import R1sftError

    with pytest.raises(R1sftError, match="dataset_info.json: not valid JSON"):
        convert("bespoke-stratos", fx.write_jsonl(tmp_path / "good.jsonl", fx.bespoke_rows(1)),
                folder / "x.jsonl", progress=False)
    assert sorted(os.listdir(folder)) == ["dataset_info.json"]


def test_option_errors_are_one_line(tmp_path):
    src = fx.write_jsonl(tmp_path / "good.jsonl", fx.bespoke_rows(1))
    for args, needle in [
        (["--think", "verbose"], "--think 'verbose'"),
        (["--max-tokens", "100"], "--tokenizer"),
        (["--min-quality", "good"], "no quality column"),
        (["--think", "keep", "--split-think"], "--split-think"),
    ]:
        proc = run_cli(*R1SFT_CONVERT, "bespoke-stratos", "-i", str(src), "-o", str(tmp_path / "o.jsonl"), *args,
                       check=False)
        assert proc.returncode == 2 and needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_first_row_without_the_columns_is_a_row_not_a_file_error(tmp_path):
    src = fx.write_jsonl(tmp_path / "b.jsonl", [{"system": "", "messages": []}] + fx.bespoke_rows(2))
    out = tmp_path / "o.jsonl"
    stats = convert("bespoke-stratos", src, out, progress=False)
    assert (stats.rows_out, dict(stats.dropped)) == (2, {"missing_field": 1})
    assert _read_jsonl(tmp_path / "o.rejects.jsonl")[0]["row"] == 0


@pytest.mark.parametrize("block", [5, 97, 4096])
def test_rows_straddling_read_blocks_are_read_whole(tmp_path, monkeypatch, block):
    from r1sft.data import readers

    rows = fx.bespoke_rows(4) + [fx.MALFORMED_STRATOS[0][0]] + fx.sky_t1_rows(3)
    lines = [orjson.dumps(r) for r in rows]
    lines.insert(2, b"")
    lines.insert(5, b"{broken")
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_bytes(b"\n".join(lines))  # no newline after the last row
    array = fx.write_json_array(tmp_path / "rows.json", rows)
    expected = {}
    for path in (jsonl, array):
        out = tmp_path / f"big_{path.suffix[1:]}.jsonl"
        expected[path.suffix] = convert("sky-t1", path, out, progress=False), out.read_bytes()
    monkeypatch.setattr(readers, "BLOCK_BYTES", block)
    for path in (jsonl, array):
        out = tmp_path / f"small_{path.suffix[1:]}.jsonl"
        stats = convert("sky-t1", path, out, progress=False)
        big_stats, big_bytes = expected[path.suffix]
        assert out.read_bytes() == big_bytes
        assert (stats.rows_in, stats.rows_out, dict(stats.dropped)) == \
            (big_stats.rows_in, big_stats.rows_out, dict(big_stats.dropped))
    assert expected[".jsonl"][0].dropped == {"json_error": 1, "missing_end_tag": 1}
    assert expected[".jsonl"][0].rows_out == 7
