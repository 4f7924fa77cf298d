"""GPU check of r1sft.patches.packed_attention: the varlen path against LLaMA-Factory's dense block-diagonal SDPA.

For attention shapes of the presets (grouped-query heads, head dim 128) and one pack of R1-length documents
(log-normal, median 4k tokens, up to the cutoff), builds LLaMA-Factory's own 4D mask
(``prepare_4d_attention_mask``), runs forward + backward through transformers' dense ``sdpa`` and through the
packed path, and prints a table: max |difference| of outputs and input gradients on real tokens, and milliseconds
per forward+backward of each. ``python bench/packed_attention_check.py [--cutoff 16384] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import random
import time

import torch

SHAPES = {  # name: (query heads, key/value heads, head dim) from the presets' configs
    "qwen2.5-1.5b": (12, 2, 128),
    "qwen2.5-7b": (28, 4, 128),
    "qwen3-8b": (32, 8, 128),
}


def pack_rows(cutoff: int, seed: int) -> list[int]:
    """LLaMA-Factory's neat-packing attention_mask row: document i+1's tokens carry i+1, padding 0."""
    rng = random.Random(seed)
    row: list[int] = []
    doc = 0
    while True:
        length = int(min(max(rng.lognormvariate(8.3, 0.6), 256), 15000))
        if len(row) + length > cutoff:
            break
        doc += 1
        row += [doc] * length
    return row + [0] * (cutoff - len(row))


def timed(fn, repeats: int) -> tuple[float, object]:
    result = fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        result = fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1e3, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cutoff", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from llamafactory.data.collator import prepare_4d_attention_mask
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from r1sft.patches import packed_attention

    assert packed_attention.install()
    row = pack_rows(args.cutoff, seed=1)
    docs = max(row)
    mask = prepare_4d_attention_mask(torch.tensor([row]), torch.bfloat16).cuda()
    real = torch.tensor(row, device="cuda") != 0
    print(f"pack: {args.cutoff} tokens, {docs} documents, {int(real.sum())} real tokens; "
          f"dense SDPA mask {mask.numel() * mask.element_size() / 2**20:.0f} MiB")
    print("| shape | heads q/kv | max abs diff out | max abs diff dq/dk/dv | dense fwd+bwd ms | varlen ms | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for name, (heads, kv_heads, dim) in SHAPES.items():
        torch.manual_seed(0)

        class Module:
            num_key_value_groups = heads // kv_heads
            is_causal = True

        leaves = [torch.randn(1, h, args.cutoff, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                  for h in (heads, kv_heads, kv_heads)]
        grad_out = torch.randn(1, args.cutoff, heads, dim, device="cuda", dtype=torch.bfloat16)
        grad_out[:, ~real] = 0  # padding outputs feed nothing that is trained

        def run(forward, leaves=leaves, grad_out=grad_out, dim=dim, Module=Module):
            for leaf in leaves:
                leaf.grad = None
            out, _ = forward(Module(), *leaves, mask, scaling=dim ** -0.5)
            out.backward(grad_out)
            return out.detach(), [leaf.grad.detach().clone() for leaf in leaves]

        dense_ms, (dense_out, dense_grads) = timed(lambda: run(sdpa_attention_forward), args.repeats)
        varlen_ms, (ours_out, ours_grads) = timed(
            lambda: run(packed_attention.packed_sdpa_attention_forward), args.repeats)
        out_diff = (ours_out[0][real] - dense_out[0][real]).abs().max().item()
        grad_diffs = []
        for ours, dense in zip(ours_grads, dense_grads, strict=True):
            ours_t, dense_t = ours[0].transpose(0, 1)[real], dense[0].transpose(0, 1)[real]
            grad_diffs.append(f"{(ours_t - dense_t).abs().max().item():.3g}")
        print(f"| {name} | {heads}/{kv_heads} | {out_diff:.3g} | {' / '.join(grad_diffs)} | {dense_ms:.1f} | "
              f"{varlen_ms:.1f} | {dense_ms / varlen_ms:.2f}x |")
    print(f"packed path: {packed_attention.stats()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
