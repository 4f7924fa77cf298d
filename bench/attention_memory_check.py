"""GPU check of what the attention path keeps for backward, per layer, at long sequence lengths.

LLaMA-Factory pads every batch to a multiple of 8 tokens, so even one unpacked sample usually carries a padding
mask; transformers then hands SDPA a 4D mask instead of ``is_causal``, and SDPA's memory-efficient kernel needs
that mask in its own aligned layout. This builds a few decoder layers of a preset's real shape (random bf16
weights, full SFT so every activation is kept) and measures, for each sequence length, the memory kept at the end
of the forward (allocated after minus before) and the peak of forward+backward, for:

- ``no padding``: a 2D mask of ones (transformers skips the mask: SDPA ``is_causal``);
- ``padded``: the same sample with 7 padding tokens, as LLaMA-Factory's collator pads it (a 4D mask to SDPA);
- ``padded, varlen``: the padded sample with ``r1sft.patches.packed_attention`` installed, which runs a
  block-diagonal causal mask (a padded sample is one) as varlen attention.

``python bench/attention_memory_check.py [--preset qwen2.5-1.5b] [--layers 2] [--tokens 16384,32768]``
"""

from __future__ import annotations

import argparse

import torch

from r1sft.patches import packed_attention


def build(preset_name: str, layers: int):
    from benchlib.synth import decoder_layers

    model = decoder_layers(preset_name, layers)
    model.train()
    return model


def measure(model, tokens: int, padding: int) -> tuple[float, float]:
    """GiB kept at the end of the forward and GiB of peak above the start, for one sample of ``tokens`` real
    tokens followed by ``padding`` padding tokens."""
    ids = torch.randint(0, 256, (1, tokens + padding), device="cuda")
    mask = torch.ones_like(ids)
    if padding:
        mask[:, tokens:] = 0
    for param in model.parameters():
        param.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    loss = hidden.float().pow(2).mean()
    torch.cuda.synchronize()
    kept = torch.cuda.memory_allocated() - before
    loss.backward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    del hidden, loss
    return kept / 2**30, peak / 2**30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="qwen2.5-1.5b")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--tokens", default="16384,32768")
    args = parser.parse_args()
    model = build(args.preset, args.layers)
    print(f"{args.preset}, {args.layers} layers, full SFT (bf16), SDPA")
    print("| tokens | attention path | kept GiB | kept KB/token/layer | peak GiB above start |")
    print("|---|---|---|---|---|")
    for tokens in (int(t) for t in args.tokens.split(",")):
        for label, padding, varlen in (("no padding (is_causal)", 0, False), ("padded (4D mask)", 7, False),
                                       ("padded, r1sft varlen", 7, True)):
            if varlen:
                packed_attention.install()
            try:
                measure(model, tokens, padding)  # warm-up
                kept, peak = measure(model, tokens, padding)
                print(f"| {tokens} | {label} | {kept:.2f} | {kept * 2**30 / tokens / args.layers / 1000:.1f} | "
                      f"{peak:.2f} |", flush=True)
            except torch.OutOfMemoryError:
                print(f"| {tokens} | {label} | out of memory | | |", flush=True)
            finally:
                packed_attention.uninstall()
                torch.cuda.empty_cache()
    print(f"packed_attention: {packed_attention.stats()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
