"""GPU check of liger's fused linear cross-entropy chunking: time, memory and gradients per chunk budget.

liger's fused linear cross-entropy never holds the whole ``tokens x vocabulary`` logits: it walks the tokens in
chunks whose logits are about ``chunk_mem_const x tokens x hidden`` elements (``chunk_mem_const`` defaults to 1).
For Qwen's 152k vocabulary that is 64 chunks of 256 tokens for a 16k-token micro-batch of Qwen2.5-1.5B, and where
the lm_head is trained (full SFT, tied embeddings) every chunk re-reads and re-writes the fp32 weight gradient
(0.9 GB). For the presets' head shapes, under bf16 autocast as in training, this prints milliseconds per
forward+backward, the transient memory above the inputs, and max |difference| of loss and gradients against the
default, for ``r1sft.patches.liger_chunking``'s budgets. ``python bench/liger_chunk_check.py [--tokens 16384]``
"""

from __future__ import annotations

import argparse
import time

import torch

from r1sft.patches import liger_chunking

SHAPES = {  # name: (hidden, vocabulary, lm_head trained and fp32 as in full SFT)
    "qwen2.5-1.5b full": (1536, 151936, True),
    "qwen2.5-7b lora": (3584, 152064, False),
    "qwen3-8b lora": (4096, 151936, False),
}


def run_once(hidden_states, weight, labels, chunk_mem_const):
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    hidden_states.grad = None
    weight.grad = None
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = liger_fused_linear_cross_entropy(hidden_states, weight, labels, chunk_mem_const=chunk_mem_const)
    loss.backward()
    return loss.detach(), hidden_states.grad, weight.grad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budgets-gib", default="0.5,1,2,4", help="transient-logits budgets to compare")
    args = parser.parse_args()
    torch.manual_seed(0)
    print("| shape | budget GiB | chunk_mem_const | chunks x tokens | ms fwd+bwd | transient MiB | "
          "max diff loss / d_input / d_weight |")
    print("|---|---|---|---|---|---|---|")
    for name, (hidden, vocab, trained) in SHAPES.items():
        hidden_states = (torch.randn(args.tokens, hidden, device="cuda") * 0.5).to(torch.bfloat16).requires_grad_()
        weight = torch.randn(vocab, hidden, device="cuda") * 0.02
        weight = weight.requires_grad_() if trained else weight.to(torch.bfloat16)
        labels = torch.randint(0, vocab, (args.tokens,), device="cuda")
        labels[: args.tokens // 10] = -100  # prompts carry no loss
        reference = None
        for budget in [None, *(float(b) for b in args.budgets_gib.split(","))]:
            const = 1 if budget is None else liger_chunking.chunk_mem_const(
                args.tokens, hidden, vocab, int(budget * 2**30))
            chunk = liger_chunking.chunk_tokens(args.tokens, hidden, vocab, const)
            run_once(hidden_states, weight, labels, const)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            start = time.perf_counter()
            for _ in range(args.repeats):
                result = run_once(hidden_states, weight, labels, const)
            torch.cuda.synchronize()
            ms = (time.perf_counter() - start) / args.repeats * 1e3
            transient = (torch.cuda.max_memory_allocated() - base) / 2**20
            if reference is None:
                reference, diff = result, "reference"
            else:
                diff = " / ".join(
                    "-" if b is None else f"{(a.float() - b.float()).abs().max().item():.2e}"
                    for a, b in zip(result, reference, strict=True))
            print(f"| {name} | {budget if budget else 'liger default'} | {const} | "
                  f"{-(-args.tokens // chunk)} x {chunk} | {ms:.1f} | {transient:,.0f} | {diff} |", flush=True)
        del hidden_states, weight, labels, reference
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
