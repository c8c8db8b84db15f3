"""Architecture presets: init_params specs that reproduce a model's published init scheme.

``preset(name, **config)`` returns an ``init_params`` spec
``{param_name: {"shape": [...], "init": "<registered initializer>", **kwargs}}`` built
only from lists, str, int and float, so it can be dumped to JSON as a SPEC file and
``init_params(preset(...), key)`` works directly. Parameter names are the Hugging Face
checkpoint names (``GPT2LMHeadModel``, ``LlamaForCausalLM``), in ``state_dict`` order.
Building a spec allocates nothing: a 7B spec is a few hundred small dicts.

Presets (see docs/PRESETS.md for the tables and references):

* ``gpt2-small``, ``gpt2-medium``: HF ``GPT2PreTrainedModel._init_weights`` / the GPT-2
  paper: N(0, 0.02) weights and embeddings, residual projections (``attn.c_proj`` and
  ``mlp.c_proj`` weights) N(0, 0.02 / sqrt(2 * n_layer)), zero biases, LayerNorm 1 / 0.
* ``llama-7b``, ``llama``: HF ``LlamaPreTrainedModel._init_weights``: N(0, 0.02) for every
  Linear and Embedding, ones for RMSNorm; no residual scaling unless
  ``residual_scaling=True``.
* ``mlp``: ``he_normal`` (ReLU) or ``xavier_uniform`` (tanh / sigmoid / linear) weights in
  ``(in, out)`` layout, zero biases.

The GPT-2 presets also accept the generic names ``layers``, ``hidden``, ``heads`` and
``context`` for ``n_layer``, ``n_embd``, ``n_head`` and ``n_positions``. Unknown presets,
unknown config keys and invalid values raise ``ValueError`` naming what is accepted.
"""
from __future__ import annotations

import math
import numbers
from types import MappingProxyType
from typing import Callable, Mapping, NamedTuple

__all__ = ["PRESETS", "Preset", "preset", "preset_names", "preset_options", "config_from_strings",
           "spec_num_params"]


# ---------------------------------------------------------------------------
# config options: default, kind, help
# ---------------------------------------------------------------------------
class _Opt(NamedTuple):
    default: object
    kind: str           # "pos_int" | "pos_float" | "bool" | "int_list" | "choice:<a>|<b>..."
    help: str


def _accepts(opt: _Opt) -> str:
    if opt.kind == "pos_int":
        return "a positive int"
    if opt.kind == "opt_pos_int":
        return "a positive int or None"
    if opt.kind == "pos_float":
        return "a positive finite float"
    if opt.kind == "bool":
        return "a bool"
    if opt.kind == "int_list":
        return "a list of at least 2 positive ints"
    if opt.kind.startswith("choice:"):
        return "one of " + ", ".join(repr(c) for c in opt.kind[7:].split("|"))
    raise AssertionError(opt.kind)


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_value(preset_name: str, key: str, opt: _Opt, value):
    """The validated, JSON-friendly value (plain int / float / bool / str / tuple of ints)."""
    kind = opt.kind
    bad = ValueError(f"preset {preset_name!r}: config {key}={value!r} is invalid; {key} ({opt.help}) "
                     f"must be {_accepts(opt)}")
    if kind == "opt_pos_int":
        if value is None:
            return None
        kind = "pos_int"
    if kind == "pos_int":
        if not _is_int(value) or value < 1:
            raise bad
        return int(value)
    if kind == "pos_float":
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                or not value > 0:
            raise bad
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if kind == "int_list":
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise bad
        value = list(value)
        if len(value) < 2 or not all(_is_int(v) and v >= 1 for v in value):
            raise bad
        return tuple(int(v) for v in value)
    if kind.startswith("choice:"):
        if not isinstance(value, str) or value not in kind[7:].split("|"):
            raise bad
        return value
    raise AssertionError(kind)


# ---------------------------------------------------------------------------
# spec entries
# ---------------------------------------------------------------------------
def _normal(shape, std):
    return {"shape": [int(d) for d in shape], "init": "normal", "mean": 0.0, "std": float(std)}


def _zeros(shape):
    return {"shape": [int(d) for d in shape], "init": "zeros"}


def _ones(shape):
    return {"shape": [int(d) for d in shape], "init": "ones"}


# ---------------------------------------------------------------------------
# GPT-2 (Hugging Face GPT2LMHeadModel names; Conv1D weights are (in, out))
# ---------------------------------------------------------------------------
_GPT2_HELP = {
    "n_layer": "number of transformer blocks",
    "n_embd": "model width",
    "n_head": "attention heads (must divide n_embd; no effect on shapes)",
    "vocab": "vocabulary size (GPT2Config.vocab_size)",
    "n_positions": "learned position embeddings (context length)",
    "initializer_range": "std of the N(0, std) weights (GPT2Config.initializer_range)",
}


def _gpt2_opts(n_layer, n_embd, n_head):
    return {
        "n_layer": _Opt(n_layer, "pos_int", _GPT2_HELP["n_layer"]),
        "n_embd": _Opt(n_embd, "pos_int", _GPT2_HELP["n_embd"]),
        "n_head": _Opt(n_head, "pos_int", _GPT2_HELP["n_head"]),
        "vocab": _Opt(50257, "pos_int", _GPT2_HELP["vocab"]),
        "n_positions": _Opt(1024, "pos_int", _GPT2_HELP["n_positions"]),
        "initializer_range": _Opt(0.02, "pos_float", _GPT2_HELP["initializer_range"]),
    }


def _build_gpt2(name, cfg) -> dict:
    L, d, h = cfg["n_layer"], cfg["n_embd"], cfg["n_head"]
    if d % h:
        raise ValueError(f"preset {name!r}: n_embd={d} must be divisible by n_head={h}")
    std = cfg["initializer_range"]
    # GPT-2 paper / HF: residual projections scaled by 1/sqrt(N), N = 2 residual layers per block
    proj_std = std / math.sqrt(2 * L)
    spec = {
        "transformer.wte.weight": _normal([cfg["vocab"], d], std),
        "transformer.wpe.weight": _normal([cfg["n_positions"], d], std),
    }
    for i in range(L):
        p = f"transformer.h.{i}."
        spec[p + "ln_1.weight"] = _ones([d])
        spec[p + "ln_1.bias"] = _zeros([d])
        spec[p + "attn.c_attn.weight"] = _normal([d, 3 * d], std)
        spec[p + "attn.c_attn.bias"] = _zeros([3 * d])
        spec[p + "attn.c_proj.weight"] = _normal([d, d], proj_std)
        spec[p + "attn.c_proj.bias"] = _zeros([d])
        spec[p + "ln_2.weight"] = _ones([d])
        spec[p + "ln_2.bias"] = _zeros([d])
        spec[p + "mlp.c_fc.weight"] = _normal([d, 4 * d], std)
        spec[p + "mlp.c_fc.bias"] = _zeros([4 * d])
        spec[p + "mlp.c_proj.weight"] = _normal([4 * d, d], proj_std)
        spec[p + "mlp.c_proj.bias"] = _zeros([d])
    spec["transformer.ln_f.weight"] = _ones([d])
    spec["transformer.ln_f.bias"] = _zeros([d])
    # lm_head.weight is tied to transformer.wte.weight (GPT2LMHeadModel): not a separate tensor
    return spec


# ---------------------------------------------------------------------------
# Llama (Hugging Face LlamaForCausalLM names; nn.Linear weights are (out, in))
# ---------------------------------------------------------------------------
def _llama_opts():
    return {
        "hidden": _Opt(4096, "pos_int", "model width (hidden_size)"),
        "layers": _Opt(32, "pos_int", "decoder layers (num_hidden_layers)"),
        "heads": _Opt(32, "pos_int", "attention heads (num_attention_heads; must divide hidden)"),
        "kv_heads": _Opt(None, "opt_pos_int",
                         "key/value heads for GQA (num_key_value_heads; None = heads; must divide heads)"),
        "intermediate": _Opt(11008, "pos_int", "MLP width (intermediate_size)"),
        "vocab": _Opt(32000, "pos_int", "vocabulary size (vocab_size)"),
        "tie_embeddings": _Opt(False, "bool", "tie lm_head to embed_tokens (tie_word_embeddings)"),
        "initializer_range": _Opt(0.02, "pos_float", "std of the N(0, std) weights (initializer_range)"),
        "residual_scaling": _Opt(False, "bool",
                                 "opt-in: o_proj and down_proj std / sqrt(2 * layers) (GPT-2 style; "
                                 "not what HF does)"),
    }


def _build_llama(name, cfg) -> dict:
    d, L, h = cfg["hidden"], cfg["layers"], cfg["heads"]
    kv = h if cfg["kv_heads"] is None else cfg["kv_heads"]
    if d % h:
        raise ValueError(f"preset {name!r}: hidden={d} must be divisible by heads={h}")
    if h % kv:
        raise ValueError(f"preset {name!r}: heads={h} must be divisible by kv_heads={kv}")
    head_dim = d // h
    ff, V = cfg["intermediate"], cfg["vocab"]
    std = cfg["initializer_range"]
    out_std = std / math.sqrt(2 * L) if cfg["residual_scaling"] else std
    spec = {"model.embed_tokens.weight": _normal([V, d], std)}
    for i in range(L):
        p = f"model.layers.{i}."
        spec[p + "self_attn.q_proj.weight"] = _normal([h * head_dim, d], std)
        spec[p + "self_attn.k_proj.weight"] = _normal([kv * head_dim, d], std)
        spec[p + "self_attn.v_proj.weight"] = _normal([kv * head_dim, d], std)
        spec[p + "self_attn.o_proj.weight"] = _normal([d, h * head_dim], out_std)
        spec[p + "mlp.gate_proj.weight"] = _normal([ff, d], std)
        spec[p + "mlp.up_proj.weight"] = _normal([ff, d], std)
        spec[p + "mlp.down_proj.weight"] = _normal([d, ff], out_std)
        spec[p + "input_layernorm.weight"] = _ones([d])
        spec[p + "post_attention_layernorm.weight"] = _ones([d])
    spec["model.norm.weight"] = _ones([d])
    if not cfg["tie_embeddings"]:
        spec["lm_head.weight"] = _normal([V, d], std)
    return spec


# ---------------------------------------------------------------------------
# MLP
# ---------------------------------------------------------------------------
_MLP_ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")


def _mlp_opts():
    return {
        "sizes": _Opt((784, 1024, 1024, 10), "int_list", "layer widths, input first"),
        "activation": _Opt("relu", "choice:" + "|".join(_MLP_ACTIVATIONS),
                           "hidden nonlinearity: relu -> he_normal, others -> xavier_uniform"),
        "bias": _Opt(True, "bool", "include layers.{i}.bias (zeros)"),
    }


def _build_mlp(name, cfg) -> dict:
    sizes = cfg["sizes"]
    if cfg["activation"] == "relu":     # He et al. 2015: N(0, 2 / fan_in)
        scheme = {"init": "he_normal", "mode": "fan_in", "nonlinearity": "relu", "layout": "io"}
    else:                               # Glorot & Bengio 2010: U(+-sqrt(6 / (fan_in + fan_out)))
        scheme = {"init": "xavier_uniform", "gain": 1.0, "layout": "io"}
    spec = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        spec[f"layers.{i}.weight"] = {"shape": [n_in, n_out], **scheme}
        if cfg["bias"]:
            spec[f"layers.{i}.bias"] = _zeros([n_out])
    return spec


# ---------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------
class Preset(NamedTuple):
    """A registered preset: ``builder(name, config) -> spec``, its default config, a description."""
    builder: Callable[[str, dict], dict]
    defaults: Mapping[str, object]
    description: str


# the option tables (kinds and help) behind each preset's defaults
_OPTIONS: dict[str, dict[str, _Opt]] = {
    "gpt2-small": _gpt2_opts(12, 768, 12),
    "gpt2-medium": _gpt2_opts(24, 1024, 16),
    "llama-7b": _llama_opts(),
    "llama": _llama_opts(),
    "mlp": _mlp_opts(),
}

_DESCRIPTIONS = {
    "gpt2-small": "GPT-2 124M (HF GPT2LMHeadModel names): N(0, 0.02), c_proj N(0, 0.02/sqrt(2 n_layer)), "
                  "LayerNorm 1/0, zero biases",
    "gpt2-medium": "GPT-2 355M (HF GPT2LMHeadModel names): same scheme as gpt2-small, 24 layers x 1024",
    "llama-7b": "Llama 7B (HF LlamaForCausalLM names): N(0, 0.02) Linear/Embedding, RMSNorm ones, "
                "untied lm_head, no biases",
    "llama": "Llama of any size (hidden, layers, heads, kv_heads, intermediate, vocab, tie_embeddings); "
             "defaults = llama-7b",
    "mlp": "MLP layers.{i}.weight (in, out): he_normal for relu, xavier_uniform for tanh/sigmoid/linear; "
           "zero biases",
}

# generic names (as in ``--preset llama --hidden 4096 --layers 32``) accepted by the GPT-2 presets too
_GPT2_ALIASES = {"layers": "n_layer", "hidden": "n_embd", "heads": "n_head", "context": "n_positions"}
_ALIASES = {"gpt2-small": _GPT2_ALIASES, "gpt2-medium": _GPT2_ALIASES}

_BUILDERS = {"gpt2-small": _build_gpt2, "gpt2-medium": _build_gpt2, "llama-7b": _build_llama,
             "llama": _build_llama, "mlp": _build_mlp}

PRESETS: dict[str, Preset] = {
    n: Preset(_BUILDERS[n], MappingProxyType({k: o.default for k, o in _OPTIONS[n].items()}), _DESCRIPTIONS[n])
    for n in _OPTIONS
}


def preset_names() -> list[str]:
    """The registered preset names, in registration order."""
    return list(PRESETS)


def _lookup(name):
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_options(name: str) -> dict[str, tuple[object, str, str]]:
    """``{key: (default, what is accepted, help)}`` for preset ``name`` (for CLI help)."""
    _lookup(name)
    return {k: (o.default, _accepts(o), o.help) for k, o in _OPTIONS[name].items()}


def _canonical(name, config):
    """``config`` with alias keys (the generic CLI names) replaced by the preset's own keys."""
    aliases = _ALIASES.get(name, {})
    out = {}
    for k, v in config.items():
        c = aliases.get(k, k)
        if c in out:
            raise ValueError(f"preset {name!r}: config {c!r} given twice (as {c!r} and its alias "
                             f"{next(a for a, t in aliases.items() if t == c)!r})")
        out[c] = v
    return out


def _config(name, config):
    opts = _OPTIONS[name]
    config = _canonical(name, config)
    unknown = sorted(set(config) - set(opts))
    if unknown:
        valid = "; ".join(f"{k} ({_accepts(o)}, default {o.default!r})" for k, o in opts.items())
        aliases = _ALIASES.get(name)
        also = "; aliases: " + ", ".join(f"{a} = {t}" for a, t in aliases.items()) if aliases else ""
        raise ValueError(f"preset {name!r}: unknown config key(s) {', '.join(map(repr, unknown))}; "
                         f"valid keys: {valid}{also}")
    return {k: _check_value(name, k, o, config[k]) if k in config else o.default for k, o in opts.items()}


def preset(name: str, **config) -> dict:
    """The ``init_params`` spec of preset ``name`` with ``config`` overriding its defaults.

    Returns ``{param_name: {"shape": [...], "init": "<registered initializer>", **kwargs}}``
    (lists, str, int and float only). ``ValueError`` for an unknown preset, an unknown
    config key or an invalid value, naming what is accepted.
    """
    entry = _lookup(name)
    return entry.builder(name, _config(name, config))


def config_from_strings(name: str, raw: Mapping[str, str]) -> dict:
    """Convert string config values (e.g. from a command line) to typed ones for ``preset``.

    Keys may use ``-`` for ``_`` (``--kv-heads 8``). ints: ``"4096"``; floats: ``"0.02"``;
    bools: ``true/false/1/0/yes/no``; int lists: ``"784,1024,10"``; ``kv_heads`` also
    ``none``. Invalid strings raise ``ValueError`` naming what is accepted; the result is
    validated again by ``preset``.
    """
    _lookup(name)
    opts = _OPTIONS[name]
    out = {}
    for k, s in raw.items():
        key = _ALIASES.get(name, {}).get(k.replace("-", "_"), k.replace("-", "_"))
        if key not in opts:
            _config(name, {key: s})          # raises the unknown-key error
        opt = opts[key]
        if not isinstance(s, str):
            out[key] = s
            continue
        t = s.strip()
        try:
            kind = opt.kind
            if kind == "opt_pos_int" and t.lower() in ("none", "null", ""):
                out[key] = None
            elif kind in ("pos_int", "opt_pos_int"):
                out[key] = int(t)
            elif kind == "pos_float":
                out[key] = float(t)
            elif kind == "bool":
                low = t.lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                out[key] = low in ("true", "1", "yes")
            elif kind == "int_list":
                out[key] = [int(v) for v in t.replace(" ", "").strip("[]").split(",")]
            else:
                out[key] = t
        except ValueError:
            raise ValueError(f"preset {name!r}: config {key}={s!r} is invalid; {key} ({opt.help}) must be "
                             f"{_accepts(opt)}") from None
        _check_value(name, key, opt, out[key])
    return out


def spec_num_params(spec: Mapping) -> int:
    """Total number of elements of a spec (dict entries with "shape" or (shape, init[, kw]) tuples)."""
    total = 0
    for entry in spec.values():
        shape = entry["shape"] if isinstance(entry, Mapping) else entry[0]
        total += math.prod(shape) if not _is_int(shape) else int(shape)
    return total
