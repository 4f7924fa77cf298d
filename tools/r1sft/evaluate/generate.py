"""Generation backends: HF ``generate`` (batched, left padding) and vLLM, behind one function.

Both use the model's own chat template (``apply_chat_template(..., add_generation_prompt=True)``) and the same
explicit sampling settings; the model's ``generation_config`` sampling defaults (top_k, repetition_penalty, ...) are
deliberately not applied, so the two backends and every model are sampled alike (vLLM's ``SamplingParams`` defaults).
Only its end-of-sequence ids are kept, as stop tokens. Heavy imports stay inside functions.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from r1sft.errors import R1sftError

BACKENDS = ("auto", "hf", "vllm")
# End-of-turn tokens that chat templates close an assistant turn with; a stop token when the template uses it.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "<|eom_id|>", "<｜end▁of▁sentence｜>")


@dataclass(frozen=True)
class SamplingSettings:
    """How to sample. ``temperature == 0`` means greedy decoding. ``batch_size`` counts sequences (prompts x n)."""

    n: int = 1
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 4096
    batch_size: int = 8
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Generation:
    """One sample: decoded text without the stop token, tokens generated (stop token included), why it ended."""

    text: str
    num_tokens: int
    finish_reason: str  # "stop" (end-of-turn/EOS token) or "length" (max_new_tokens reached)


def _vllm_usable() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def resolve_backend(name: str) -> str:
    """``auto`` -> ``vllm`` when vLLM is importable and CUDA is present, else ``hf``."""
    if name not in BACKENDS:
        raise R1sftError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "vllm" if _vllm_usable() else "hf"
    if name == "vllm" and importlib.util.find_spec("vllm") is None:
        raise R1sftError("--backend vllm: vLLM is not installed (pip install vllm), or use --backend hf")
    return name


def load_tokenizer(model: str, trust_remote_code: bool = False):
    """The model's tokenizer, set up for left-padded batches; R1sftError when it cannot be loaded."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise R1sftError(f"{model}: cannot load the tokenizer ({str(exc).splitlines()[0]})") from None
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_prompts(tokenizer, problems: Sequence[str], system: str | None = None,
                  enable_thinking: bool | None = None, model: str = "model") -> list[str]:
    """Each problem as one user turn (after an optional system turn), in the model's own chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise R1sftError(f"{model}: the tokenizer has no chat template; evaluate a chat/instruct model, or add "
                         "a chat_template to its tokenizer_config.json")
    extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    prompts = []
    for problem in problems:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": problem}]
        prompts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra))
    return prompts


def stop_token_ids(tokenizer, model: str, own: bool = False) -> list[int]:
    """EOS ids of the model's generation_config and tokenizer, plus the end-of-turn token its template uses
    (``own``: the generation_config's alone, what transformers' generate stops at)."""
    ids: list[int] = []
    try:
        from transformers import GenerationConfig

        eos = GenerationConfig.from_pretrained(model).eos_token_id
    except (OSError, ValueError):
        eos = None
    ids += eos if isinstance(eos, list) else [eos] if eos is not None else []
    if own:
        return sorted(set(ids))
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    vocab = tokenizer.get_vocab()
    ids += [vocab[token] for token in END_OF_TURN if token in vocab and token in template]
    return sorted(set(ids))


def _finish(tokenizer, ids: Sequence[int], stop_ids: set[int], max_new_tokens: int) -> Generation:
    """Cut a generated id row at its first stop token (padding follows it in a batch) and decode it."""
    ids = list(ids)
    for pos, token in enumerate(ids):
        if token in stop_ids:
            return Generation(tokenizer.decode(ids[:pos], skip_special_tokens=False), pos + 1, "stop")
    ids = ids[:max_new_tokens]
    return Generation(tokenizer.decode(ids, skip_special_tokens=False), len(ids), "length")


def generate_hf(model: str, tokenizer, prompts: Sequence[str], settings: SamplingSettings, stop_ids: list[int],
                trust_remote_code: bool = False, progress: bool = True) -> list[list[Generation]]:
    """``settings.n`` generations per prompt with transformers ``generate``, longest prompts first."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, GenerationConfig, set_seed

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    try:
        lm = AutoModelForCausalLM.from_pretrained(model, dtype=dtype, trust_remote_code=trust_remote_code,
                                                  device_map="auto" if cuda else None)
    except (OSError, ValueError) as exc:
        raise R1sftError(f"{model}: cannot load the model ({str(exc).splitlines()[0]})") from None
    lm.eval()
    sampling = {} if settings.greedy else {"temperature": settings.temperature, "top_p": settings.top_p, "top_k": 0}
    # Replace (not merge with) the checkpoint's generation_config: see the module docstring.
    lm.generation_config = GenerationConfig(
        max_new_tokens=settings.max_new_tokens, do_sample=not settings.greedy, num_return_sequences=settings.n,
        eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id, **sampling,
    )
    set_seed(settings.seed)

    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]  # the template has BOS already
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))  # similar lengths share a batch
    per_batch = max(1, settings.batch_size // settings.n)
    results: list[list[Generation]] = [[] for _ in prompts]
    stops = set(stop_ids)
    bar = tqdm(total=len(prompts) * settings.n, desc="generating", unit="gen", disable=not progress)
    with torch.inference_mode():
        for start in range(0, len(order), per_batch):
            batch = order[start:start + per_batch]
            inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
            inputs = {k: v.to(lm.device) for k, v in inputs.items()}
            output = lm.generate(**inputs)
            new_tokens = output[:, inputs["input_ids"].shape[1]:].tolist()
            for row, ids in enumerate(new_tokens):
                results[batch[row // settings.n]].append(_finish(tokenizer, ids, stops, settings.max_new_tokens))
            bar.update(len(new_tokens))
    bar.close()
    return results


def generate_vllm(model: str, tokenizer, prompts: Sequence[str], settings: SamplingSettings, stop_ids: list[int],
                  trust_remote_code: bool = False, progress: bool = True) -> list[list[Generation]]:
    """``settings.n`` generations per prompt with vLLM (its own progress bar)."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=model, trust_remote_code=trust_remote_code, seed=settings.seed, dtype="auto")
    params = SamplingParams(
        n=settings.n, temperature=settings.temperature, top_p=1.0 if settings.greedy else settings.top_p,
        max_tokens=settings.max_new_tokens, seed=settings.seed, stop_token_ids=stop_ids,
        skip_special_tokens=False,
    )
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]  # the template has BOS already
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in encoded], params, use_tqdm=progress)
    stops = set(stop_ids)
    results = []
    for output in outputs:
        samples = []
        for completion in sorted(output.outputs, key=lambda c: c.index):
            ids = list(completion.token_ids)
            if completion.finish_reason == "stop" and (not ids or ids[-1] not in stops):
                ids.append(stop_ids[0] if stop_ids else 0)  # count the stop token whether or not vLLM kept it
            samples.append(_finish(tokenizer, ids, stops, settings.max_new_tokens))
        results.append(samples)
    return results


def generate(model: str | Path, tokenizer, prompts: Sequence[str], settings: SamplingSettings, backend: str,
             stop_ids: list[int], trust_remote_code: bool = False, progress: bool = True) -> list[list[Generation]]:
    """Dispatch to a resolved backend (``hf`` or ``vllm``)."""
    run = generate_vllm if backend == "vllm" else generate_hf
    return run(str(model), tokenizer, prompts, settings, stop_ids, trust_remote_code, progress)


def reply(model_dir: str, question: str, max_new_tokens: int = 128, system: str | None = None) -> str:
    """Greedy reply of ``model_dir`` to ``question`` (``r1sft eval``'s generation path, one prompt, no progress bar)."""
    tokenizer = load_tokenizer(model_dir)
    prompts = build_prompts(tokenizer, [question], system=system, model=model_dir)
    settings = SamplingSettings(n=1, temperature=0.0, max_new_tokens=max_new_tokens)
    [[generation]] = generate(model_dir, tokenizer, prompts, settings, backend="hf",
                              stop_ids=stop_token_ids(tokenizer, model_dir), progress=False)
    return generation.text
