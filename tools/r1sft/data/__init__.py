"""Convert R1-style reasoning datasets into the ShareGPT JSONL that r1sft's LLaMA-Factory recipes train on.

    from r1sft.data import convert, ConvertOptions
    stats = convert("bespoke-stratos", "Bespoke-Stratos-17k/data", "data/stratos.jsonl", think="native")

See docs/data.md for sources, options and the output format.
"""

from r1sft.data.conversation import Conversation, Reply, RowRejected
from r1sft.data.mixing import mix_counts, mix_recipe_keys, registered_rows
from r1sft.data.pipeline import ConvertOptions, convert, convert_many
from r1sft.data.reasoning import parse_reply, render_reply
from r1sft.data.report import Stats
from r1sft.data.samples import SAMPLE_NAME, convert_samples
from r1sft.data.sources import SOURCES, Source

__all__ = [
    "SAMPLE_NAME",
    "SOURCES",
    "Conversation",
    "ConvertOptions",
    "Reply",
    "RowRejected",
    "Source",
    "Stats",
    "convert",
    "convert_many",
    "convert_samples",
    "mix_counts",
    "mix_recipe_keys",
    "parse_reply",
    "registered_rows",
    "render_reply",
]
