"""zstd-compressed input (the AM sets ship as ``.jsonl.zst``) is read natively and streamed, like gzip: by suffix in a
folder, by magic bytes whatever the name, across frames and read boundaries; a truncated file is a file error."""

from __future__ import annotations

import os

import orjson
import pytest
import zstandard

from r1sft.data import convert, readers
from r1sft.errors import R1sftError
from tests.fixtures import dataset_rows as fx

BOM = b"\xef\xbb\xbf"


def _plain_reference(tmp_path, rows, shape="jsonl"):
    src = fx.WRITERS[shape](tmp_path / f"plain.{shape}", rows)
    out = tmp_path / "ref" / "o.jsonl"
    convert("sky-t1", src, out, progress=False)
    return src, out.read_bytes()


@pytest.mark.parametrize("shape", ["jsonl", "json"])
def test_zstd_file_and_folder_of_zstd_shards_read_like_plain(tmp_path, shape):
    rows = fx.sky_t1_rows(6)
    plain, expected = _plain_reference(tmp_path, rows, shape)
    shards = tmp_path / "shards"
    shards.mkdir()
    packed = shards / f"sky.{shape}.zst"
    packed.write_bytes(zstandard.ZstdCompressor(level=3).compress(BOM + plain.read_bytes()))
    for src in (packed, shards):
        out = tmp_path / "out" / f"{src.name}.jsonl"
        stats = convert("sky-t1", src, out, progress=False)
        assert (stats.rows_in, stats.rows_out, stats.inputs) == (6, 6, [str(packed)])
        assert out.read_bytes() == expected


def test_zstd_magic_bytes_win_over_the_name_and_frames_and_blocks_do_not_matter(tmp_path, monkeypatch):
    rows = fx.sky_t1_rows(40)
    plain, expected = _plain_reference(tmp_path, rows)
    data = plain.read_bytes()
    cut = data.index(b"\n", len(data) // 2) + 1
    src = tmp_path / "sky.jsonl"  # named like plain JSONL; two frames, as `cat a.zst b.zst` makes
    src.write_bytes(zstandard.ZstdCompressor().compress(data[:cut]) + zstandard.ZstdCompressor().compress(data[cut:]))
    monkeypatch.setattr(readers, "ZSTD_READ_BYTES", 101)  # frames and lines cut at every possible place
    monkeypatch.setattr(readers, "BLOCK_BYTES", 997)
    for workers in (1, 2):
        out = tmp_path / f"out{workers}" / "o.jsonl"
        assert convert("sky-t1", src, out, progress=False, workers=workers).rows_out == 40
        assert out.read_bytes() == expected


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_zstd_is_a_file_error_and_writes_nothing(tmp_path, keep):
    data = zstandard.ZstdCompressor().compress(b"".join(orjson.dumps(r) + b"\n" for r in fx.sky_t1_rows(50)))
    src = tmp_path / "sky.jsonl.zst"
    src.write_bytes(data[: int(len(data) * keep)])
    out = tmp_path / "out" / "o.jsonl"
    with pytest.raises(R1sftError, match=r"sky\.jsonl\.zst: corrupt or truncated zstd data"):
        convert("sky-t1", src, out, progress=False)
    assert not out.parent.exists() or not os.listdir(out.parent)


_PEAK = """
import resource, sys
from r1sft.data import convert
convert("sky-t1", sys.argv[1], sys.argv[2], progress=False, workers=1, register=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_zstd_streams_in_bounded_memory(tmp_path):
    """80 MB of JSONL that zstd packs 100x (the system prompt repeats on every row) costs no more memory to convert
    than the plain file: it is decompressed a block at a time, never whole."""
    import subprocess
    import sys

    plain, packed = tmp_path / "big.jsonl", tmp_path / "big.jsonl.zst"
    size = 0
    with open(plain, "wb") as f, open(packed, "wb") as z, zstandard.ZstdCompressor(level=1).stream_writer(z) as writer:
        while size < 80_000_000:
            line = orjson.dumps(fx.stratos_row(size % 10_000)) + b"\n"
            f.write(line)
            writer.write(line)
            size += len(line)
    assert packed.stat().st_size * 50 < size
    peaks = {}
    for src in (plain, packed):
        proc = subprocess.run([sys.executable, "-c", _PEAK, str(src), str(tmp_path / f"{src.name}.out.jsonl")],
                              capture_output=True, text=True, timeout=300, check=True)
        peaks[src.suffix] = int(proc.stdout.split()[-1])
    assert peaks[".zst"] < peaks[".jsonl"] + 25, peaks  # MB; decompressing it whole would add 80
