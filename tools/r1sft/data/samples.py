"""The bundled sample data, converted into the ``r1sft_sample`` dataset the demo and default recipes train on.

``data/samples/`` holds ~40 rows each of Bespoke-Stratos and Magpie-Reasoning-V2 in their real schemas (written by
``data/samples/make_samples.py``); both are converted into one file, ``data/r1sft_sample.jsonl``, and registered as
``r1sft_sample`` in ``data/dataset_info.json``.
"""

from __future__ import annotations

from pathlib import Path

from r1sft.data.pipeline import ConvertOptions, convert_many
from r1sft.data.report import Stats
from r1sft.paths import DATA_DIR, SAMPLES_DIR

SAMPLE_NAME = "r1sft_sample"
SAMPLE_MAX_TOKENS = 1024
SAMPLE_PARTS = (
    ("bespoke-stratos", "bespoke_stratos_sample.jsonl"),
    ("magpie-reasoning", "magpie_reasoning_sample.jsonl"),
)


def convert_samples(out_dir: str | Path = DATA_DIR, think: str = "native", name: str = SAMPLE_NAME,
                    samples_dir: str | Path = SAMPLES_DIR, **options) -> Stats:
    """Convert both bundled samples into ``<out_dir>/<name>.jsonl`` and register it as ``name``."""
    from r1sft.tiny import ensure_tiny_model

    samples_dir = Path(samples_dir)
    # Every sample is a few hundred tokens; measuring them records the guarantee (max_tokens) that `r1sft check`
    # looks for, so recipes on the sample never warn about truncation.
    if options.get("max_tokens") is None:
        options["max_tokens"] = SAMPLE_MAX_TOKENS
        options["tokenizer"] = options.get("tokenizer") or str(ensure_tiny_model("tiny-qwen3"))
    parts = [(source, [samples_dir / file]) for source, file in SAMPLE_PARTS]
    output = Path(out_dir) / f"{name}.jsonl"
    return convert_many(parts, output, ConvertOptions(think=think, name=name, **options))
