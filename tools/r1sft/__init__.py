"""r1sft: a thin config layer over LLaMA-Factory for R1-style reasoning SFT of Qwen2.5, Qwen3 and Llama-3.2."""

__version__ = "0.1.0"
