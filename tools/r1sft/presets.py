"""The model catalogue (``presets.yaml``) as Python objects: presets, families and model shapes.

The catalogue is data so that adding a model is a YAML edit. A shape carries what memory planning needs; when a
preset's model is a local folder, :func:`shape_from_config` reads the real values from its ``config.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from r1sft.errors import R1sftError

CATALOGUE = Path(__file__).with_name("presets.yaml")
METHODS = ("lora", "qlora", "dora", "full")
ADAPTER_METHODS = ("lora", "qlora", "dora")


@dataclass(frozen=True)
class Shape:
    """A decoder-only transformer's dimensions, as in its config.json."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    max_ctx: int
    attention_bias: bool = False
    qk_norm: bool = False
    experts: int = 0  # routed experts of a sparse MoE block in every layer (Qwen3-MoE); 0: a dense MLP
    experts_per_token: int = 0
    moe_intermediate: int = 0  # one expert's MLP width

    @property
    def moe(self) -> bool:
        return self.experts > 0

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linears(self) -> list[tuple[str, int, int]]:
        """(name, in_features, out_features) of the linear layers of one decoder layer: LoRA's ``all`` targets.

        A MoE layer's experts are not among them: transformers 5 keeps each layer's experts as two fused 3-D
        parameters (and the router as a parameter), which LLaMA-Factory's ``all`` does not adapt.
        """
        h, i = self.hidden, self.intermediate
        attention = [("q_proj", h, self.q_dim), ("k_proj", h, self.kv_dim), ("v_proj", h, self.kv_dim),
                     ("o_proj", self.q_dim, h)]
        if self.moe:
            return attention
        return attention + [("gate_proj", h, i), ("up_proj", h, i), ("down_proj", i, h)]

    @property
    def linear_params_per_layer(self) -> int:
        return sum(fan_in * fan_out for _, fan_in, fan_out in self.linears())

    @property
    def expert_params_per_layer(self) -> int:
        """All experts of one MoE layer (gate, up and down projections each) plus the router."""
        return self.experts * 3 * self.hidden * self.moe_intermediate + self.experts * self.hidden if self.moe else 0

    @property
    def layer_params(self) -> int:
        bias = self.q_dim + 2 * self.kv_dim if self.attention_bias else 0
        norms = 2 * self.hidden + (2 * self.head_dim if self.qk_norm else 0)
        return self.linear_params_per_layer + self.expert_params_per_layer + bias + norms

    @property
    def active_layer_params(self) -> int:
        """Parameters one token runs through in a layer: a MoE layer's router and its top-k experts only."""
        if not self.moe:
            return self.layer_params
        routed = self.experts_per_token * 3 * self.hidden * self.moe_intermediate + self.experts * self.hidden
        return self.layer_params - self.expert_params_per_layer + routed

    @property
    def embedding_params(self) -> int:
        """One vocabulary matrix (the input embedding; the output head is the same size)."""
        return self.vocab * self.hidden

    @property
    def total_params(self) -> int:
        heads = 1 if self.tied else 2
        return self.layers * self.layer_params + heads * self.embedding_params + self.hidden

    @property
    def active_params(self) -> int:
        """Parameters a token's forward pass uses (training FLOPs ~ 6 x this): total_params for a dense model."""
        heads = 1 if self.tied else 2
        return self.layers * self.active_layer_params + heads * self.embedding_params + self.hidden

    @property
    def largest_module_params(self) -> int:
        """The largest single parameter block DeepSpeed ZeRO-3 gathers at once: a vocabulary matrix or a layer."""
        return max(self.embedding_params, self.layer_params)

    def lora_params(self, rank: int) -> int:
        """Trainable parameters of a LoRA of rank ``rank`` on every linear layer (lora_target: all)."""
        return self.layers * sum(rank * (fan_in + fan_out) for _, fan_in, fan_out in self.linears())

    def dora_magnitude_params(self) -> int:
        """DoRA's extra trainable magnitude vector: one value per output feature of every adapted linear."""
        return self.layers * sum(fan_out for _, _, fan_out in self.linears())


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    template: str
    templates: tuple[str, ...]
    nothink_template: str | None = None
    attention_bias: bool = False
    qk_norm: bool = False
    generation: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)  # sampling defaults
    chat_template: str | None = None  # chat_templates/ file of its chat-tuned checkpoints
    end_of_turn: str = "<|im_end|>"  # what the templates close an assistant turn with


@dataclass(frozen=True)
class Preset:
    name: str
    family: Family  # with the preset's own template choices where it has them (Qwen3-2507)
    shape: Shape
    hub_id: str | None = None
    tiny: bool = False
    base: bool = False  # a pre-trained (not chat-tuned) checkpoint: its tokenizer ends text with <|endoftext|>
    chat_template: str | None = None  # the file in chat_templates/ its hub tokenizer carries verbatim, if shipped
    note: str = ""  # one line the recipe header says about this model
    defaults: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def model_path(self) -> str:
        """What goes into ``model_name_or_path``: the hub id, or for tiny presets the local folder (repo-relative)."""
        if self.tiny:
            from r1sft.paths import REPO_ROOT, TINY_MODELS_DIR

            folder = TINY_MODELS_DIR / self.name
            try:
                return folder.relative_to(REPO_ROOT).as_posix()
            except ValueError:  # R1SFT_CACHE outside the checkout
                return folder.as_posix()
        assert self.hub_id is not None
        return self.hub_id

    @property
    def params_billion(self) -> float:
        return self.shape.total_params / 1e9


@cache
def _load() -> dict[str, Any]:
    with CATALOGUE.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def catalogue() -> dict[str, Any]:
    """The raw catalogue (defaults, tiny_defaults, headline list)."""
    return _load()


@cache
def families() -> dict[str, Family]:
    out = {}
    for name, spec in _load()["families"].items():
        out[name] = Family(
            name=name,
            model_types=tuple(spec["model_types"]),
            template=spec["template"],
            templates=tuple(spec["templates"]),
            nothink_template=spec.get("nothink_template"),
            attention_bias=bool(spec.get("attention_bias", False)),
            qk_norm=bool(spec.get("qk_norm", False)),
            generation=dict(spec.get("generation") or {}),
            end_of_turn=spec.get("end_of_turn", "<|im_end|>"),
            chat_template=spec.get("chat_template"),
        )
    return out


@cache
def presets() -> dict[str, Preset]:
    data = _load()
    fams = families()
    out = {}
    for name, spec in data["presets"].items():
        family = fams[spec["family"]]
        overrides = {key: spec[key] for key in ("template", "templates", "nothink_template") if key in spec}
        if overrides:  # a variant with its own templates (Qwen3-Instruct-2507 has no thinking mode)
            family = replace(family, **{k: tuple(v) if k == "templates" else v for k, v in overrides.items()})
        shape = Shape(**spec["shape"], attention_bias=family.attention_bias, qk_norm=family.qk_norm)
        tiny = bool(spec.get("tiny", False))
        defaults = dict(data["tiny_defaults"] if tiny else {})
        out[name] = Preset(name=name, family=family, shape=shape, hub_id=spec.get("hub_id"), tiny=tiny,
                           base=bool(spec.get("base", False)), note=spec.get("note", ""), defaults=defaults,
                           chat_template=spec.get("chat_template", family.chat_template))
    return out


def get_preset(name: str) -> Preset:
    """A preset by name (any case) or by its hub id (``Qwen/Qwen3-8B`` -> ``qwen3-8b``)."""
    table = presets()
    if name not in table:
        lowered = name.lower()
        for key, preset in table.items():
            if lowered == key or (preset.hub_id and lowered == preset.hub_id.lower()):
                return preset
        import difflib

        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise R1sftError(f"unknown model preset '{name}'{hint}; known: {', '.join(table)}")
    return table[name]


def family_for_model_type(model_type: str) -> Family | None:
    for family in families().values():
        if model_type in family.model_types:
            return family
    return None


def family_for_model(model: str) -> Family | None:
    """The family of a ``model_name_or_path`` value: a catalogue hub id, or a local folder's config.json."""
    for preset in presets().values():
        if preset.hub_id and preset.hub_id.lower() == model.lower():
            return preset.family
    config = Path(model) / "config.json"
    if config.is_file():
        model_type = read_config(Path(model)).get("model_type", "")
        return family_for_model_type(model_type)
    return None


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        with path.open(encoding="utf-8") as handle:
            config = json.load(handle)
    except FileNotFoundError:
        raise R1sftError(f"{path}: not found (is {folder} a model folder?)") from None
    except json.JSONDecodeError as exc:
        raise R1sftError(f"{path}: not valid JSON: {exc}") from None
    return config.get("text_config", config) if isinstance(config.get("text_config"), dict) else config


def shape_from_config(config: dict[str, Any], family: Family, where: str = "config.json") -> Shape:
    """The shape of a model from its config.json values (Qwen2, Qwen3 and Llama use the same key names)."""
    try:
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        return Shape(
            hidden=hidden,
            layers=int(config["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            intermediate=int(config["intermediate_size"]),
            vocab=int(config["vocab_size"]),
            tied=bool(config.get("tie_word_embeddings", False)),
            max_ctx=int(config.get("max_position_embeddings") or 0),
            attention_bias=bool(config.get("attention_bias", family.attention_bias)),
            qk_norm=family.qk_norm,
            **_moe_fields(config, where),
        )
    except KeyError as exc:
        raise R1sftError(f"{where}: missing {exc.args[0]!r}, which the memory plan needs") from None


def _moe_fields(config: dict[str, Any], where: str) -> dict[str, int]:
    """Qwen3-MoE's expert counts; {} for a dense model. Only all-sparse layouts (Qwen3-30B-A3B's) are modelled."""
    experts = int(config.get("num_experts") or config.get("num_local_experts") or 0)  # the hub name, transformers 5's
    if not experts:
        return {}
    if config.get("mlp_only_layers") or int(config.get("decoder_sparse_step", 1)) != 1:
        raise R1sftError(f"{where}: some layers are dense (mlp_only_layers / decoder_sparse_step): the memory plan "
                         "models MoE models whose every layer is sparse")
    return {"experts": experts, "experts_per_token": int(config["num_experts_per_tok"]),
            "moe_intermediate": int(config["moe_intermediate_size"])}


def with_local_shape(preset: Preset, folder: Path) -> Preset:
    """The preset with the shape of the model in ``folder`` (checked to be of the preset's family)."""
    config = read_config(folder)
    model_type = config.get("model_type", "")
    if model_type and model_type not in preset.family.model_types:
        raise R1sftError(
            f"{folder / 'config.json'}: model_type '{model_type}' is not a {preset.family.name} model "
            f"(expected {', '.join(preset.family.model_types)}) for preset {preset.name}"
        )
    shape = shape_from_config(config, preset.family, where=str(folder / "config.json"))
    if not shape.max_ctx:
        shape = replace(shape, max_ctx=preset.shape.max_ctx)
    return replace(preset, shape=shape)
