"""The benchmark's cases: which model shape, method, cutoff, samples per optimizer step and measured window."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    preset: str  # r1sft preset (shape, family, template)
    method: str  # full | lora
    cutoff: int
    samples_per_step: int  # LLaMA-Factory's example: full 1 x GA 2, LoRA 1 x GA 8; both arms keep it
    window: tuple[int, int]  # optimizer steps (start, end]: tokens/s counts steps start+1..end
    median: int = 4000  # synthetic document length in tokens: log-normal median, and the longest
    max_len: int = 15000
    gpus: int = 1  # processes (torchrun --nproc_per_node); bench_train.py --gpus N rescales samples_per_step
    sequence_parallel: int = 1  # GPUs each trace is split over (r1sft recipe --sequence-parallel)
    sets: tuple[tuple[str, object], ...] = ()  # --set keys of the planned recipe

    @property
    def family(self) -> str:
        from r1sft.presets import get_preset

        return get_preset(self.preset).family.name

    @property
    def template(self) -> str:
        from r1sft.presets import get_preset

        return get_preset(self.preset).family.template


CASES = {
    "qwen2.5-1.5b-full": Case("qwen2.5-1.5b-full", "qwen2.5-1.5b", "full", 16384, 2, (10, 40)),
    # LoRA: 10 steps, not 4: the example-style baseline runs at 95% of an H100 and its short-window speed varied
    # 4,560-5,117 tokens/s between runs (docs/bench/h100-fused-lora/7b-headline.md, 7b-default-and-packing.md)
    "qwen2.5-7b-lora": Case("qwen2.5-7b-lora", "qwen2.5-7b", "lora", 16384, 8, (2, 12)),
    "qwen3-8b-lora": Case("qwen3-8b-lora", "qwen3-8b", "lora", 16384, 8, (2, 12)),
    # Long traces (open-r1's OpenR1-Distill-7B trains at max_length 32768): R1-like lengths, median ~9k, max ~30k
    "qwen2.5-1.5b-full-32k": Case("qwen2.5-1.5b-full-32k", "qwen2.5-1.5b", "full", 32768, 2, (10, 40), 9000, 30000),
    "qwen2.5-7b-lora-32k": Case("qwen2.5-7b-lora-32k", "qwen2.5-7b", "lora", 32768, 8, (2, 12), 9000, 30000),
    "qwen3-8b-lora-32k": Case("qwen3-8b-lora-32k", "qwen3-8b", "lora", 32768, 8, (2, 12), 9000, 30000),
    # 64k: past Qwen2.5's 32k context, so YaRN (LLaMA-Factory's rope_scaling), as Qwen documents for long inputs
    "qwen2.5-7b-lora-64k": Case("qwen2.5-7b-lora-64k", "qwen2.5-7b", "lora", 65536, 8, (2, 8), 12000, 60000,
                                sets=(("rope_scaling", "yarn"),)),
}
# Several GPUs (not run by default; bench_train.py --case NAME on a machine with the GPUs). Scaling: the 16k
# cases with --gpus 1 and --gpus 8 (samples per step grow with the GPUs: the same work per GPU). Split traces:
# Qwen2.5-7B's 32k context stretched to 128k by YaRN (as Qwen's long-context recipe does), R1-like lengths up to
# ~125k; 7B full SFT at 32k.
MULTI_GPU = {
    "qwen2.5-7b-lora-x8": Case("qwen2.5-7b-lora-x8", "qwen2.5-7b", "lora", 16384, 64, (2, 12), gpus=8),
    "qwen2.5-7b-full-x8": Case("qwen2.5-7b-full-x8", "qwen2.5-7b", "full", 16384, 16, (5, 20), gpus=8),
    "qwen2.5-7b-lora-128k-sp4": Case("qwen2.5-7b-lora-128k-sp4", "qwen2.5-7b", "lora", 131072, 4, (2, 8), 60000,
                                     125000, gpus=4, sequence_parallel=4, sets=(("rope_scaling", "yarn"),)),
    "qwen2.5-7b-full-32k-sp4": Case("qwen2.5-7b-full-32k-sp4", "qwen2.5-7b", "full", 32768, 8, (3, 12), 9000,
                                    30000, gpus=8, sequence_parallel=4),
}
# Longer than one GPU holds checkpointed (not run by default): Qwen2.5-7B LoRA at 128k on an 80 GB GPU (on the H200:
# --gpu-mem 80) plans offloaded checkpointing (use_unsloth_gc, r1sft.patches.offloaded_checkpointing); on a 48 GB
# GPU (--gpu-mem 48) the MLP in tiles too (r1sft.patches.tiled_mlp).
OFFLOADED = {
    "qwen2.5-7b-lora-128k": Case("qwen2.5-7b-lora-128k", "qwen2.5-7b", "lora", 131072, 2, (1, 3), 60000, 125000,
                                 sets=(("rope_scaling", "yarn"),)),
}
DEFAULT_CASES = list(CASES)
CASES.update(MULTI_GPU)
CASES.update(OFFLOADED)
