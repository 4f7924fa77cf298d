"""GPU check of r1sft.patches.fused_lora against PEFT's LoRA layer: same loss and gradients, time and memory per layer.

Builds a few decoder layers of a preset's real shape (random bf16 weights, Qwen2/Qwen3/Llama from transformers),
adapts every linear with PEFT (r1sft's defaults: rank 64, alpha 128, dropout 0.05) and runs forward+backward of
``--tokens`` tokens, with the adapters in bf16 (DeepSpeed's bf16 mode, r1sft's one-GPU LoRA plan) and in fp32 under
autocast (no DeepSpeed), once through PEFT's forward and once fused, from the same random state. On CUDA both draw
their dropout masks with the same kernel from the same state, so the difference is rounding only.

Prints, per mode: ms per forward+backward, the activation memory kept for backward per token and layer (allocated
at the end of the forward minus before it), and max |difference| of the loss and of the LoRA gradients relative to
their largest value. ``python bench/fused_lora_check.py [--preset qwen2.5-7b] [--layers 2] [--tokens 16384]``
"""

from __future__ import annotations

import argparse
import time

import torch

from r1sft.patches import fused_lora, lora_input_cast


def build(preset_name: str, layers: int, adapter_dtype: torch.dtype):
    """``layers`` decoder layers of the preset's shape, every linear adapted as r1sft's LoRA recipes do."""
    from benchlib.synth import decoder_layers
    from peft import LoraConfig, get_peft_model

    model = decoder_layers(preset_name, layers)
    model = get_peft_model(model, LoraConfig(r=64, lora_alpha=128, lora_dropout=0.05, target_modules="all-linear",
                                             init_lora_weights=False))
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.data = param.data.to(adapter_dtype)
    model.train()
    return model


def step(model, tokens: int, autocast: bool, seed: int):
    torch.manual_seed(seed)
    ids = torch.randint(0, 256, (1, tokens), device="cuda")
    for param in model.parameters():
        param.grad = None
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    start = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        hidden = model(input_ids=ids).last_hidden_state
        loss = hidden.float().pow(2).mean()
    torch.cuda.synchronize()
    kept = torch.cuda.memory_allocated() - before
    loss.backward()
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    grads = {name: param.grad.float() for name, param in model.named_parameters() if param.grad is not None}
    return loss.detach().float(), grads, elapsed, kept


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="qwen2.5-7b")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.preset}, {args.layers} layers, {args.tokens} tokens, LoRA r64 alpha 128 dropout 0.05 on all linears")
    print("| adapters | layer | ms fwd+bwd | kept KB/token/layer | loss diff | max rel grad diff |")
    print("|---|---|---|---|---|---|")
    for label, dtype, autocast in (("bf16 (DeepSpeed bf16)", torch.bfloat16, False),
                                   ("fp32 under autocast", torch.float32, True)):
        model = build(args.preset, args.layers, dtype)
        results = {}
        for fused in (False, True):
            # PEFT's dropout runs on its fp32 copy of the input under autocast: another kernel, other masks. With
            # r1sft.patches.lora_input_cast it runs on the bf16 input, as the fused layer's does, so both draw the same.
            lora_input_cast.install()
            if fused:
                fused_lora.install()
            step(model, args.tokens, autocast, seed=1)  # warm-up
            times = []
            for _ in range(args.repeats):
                loss, grads, elapsed, kept = step(model, args.tokens, autocast, seed=2)
                times.append(elapsed)
            results[fused] = (loss, grads, min(times), kept)
            fused_lora.uninstall()
            lora_input_cast.uninstall()
        ref_loss, ref_grads = results[False][0], results[False][1]
        for fused in (False, True):
            loss, grads, elapsed, kept = results[fused]
            rel = max(((grads[k] - ref_grads[k]).abs().max() / ref_grads[k].abs().max().clamp_min(1e-30)).item()
                      for k in ref_grads)
            per_token_layer = kept / args.tokens / args.layers / 1000
            print(f"| {label} | {'r1sft fused' if fused else 'PEFT'} | {elapsed * 1000:.1f} | {per_token_layer:.1f} "
                  f"| {abs(loss - ref_loss).item():.2e} | {rel:.2e} |")
        del model
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
