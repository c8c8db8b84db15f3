"""Architecture presets (symbreak_fast.presets): names, shapes, parameter totals and init
schemes of the big presets checked on the spec alone (nothing 7B is ever allocated), and
init_params on tiny configs checked statistically.

Totals are recomputed here from the architecture formulas and also compared with the
published numbers. Statistics: fixed key, so deterministic; each check is a z-score of a
sample moment against its sampling distribution under "the scheme is right", |z| < 6
(P = 2e-9 per check for a correct library, ~100 checks here). Ones / zeros must be exact.
"""
from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pytest

import symbreak_fast as sbf
from symbreak_fast import init as sbi
from symbreak_fast.presets import PRESETS, config_from_strings, preset, preset_names, preset_options, \
    spec_num_params

Z_MAX = 6.0
KEY = sbf.Key(0x9E55_E7)
NORMAL_MAX_SIGMAS = 6.67        # docs/RNG.md: float32 Box-Muller tails reach 6.66 std

TINY_GPT2 = dict(n_layer=2, n_embd=64, n_head=4, vocab=100, n_positions=32)
TINY_LLAMA = dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=160, vocab=96)


# ---------------------------------------------------------------------------
# independent formulas
# ---------------------------------------------------------------------------
def gpt2_count(L, d, V, P):
    # per block: ln_1 + ln_2 (2 * 2d), c_attn d*3d + 3d, attn c_proj d*d + d, c_fc d*4d + 4d, mlp c_proj 4d*d + d
    block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d)
    return V * d + P * d + L * block + 2 * d


def llama_count(d, L, h, kv, ff, V, tied=False):
    hd = d // h
    block = d * h * hd + 2 * d * kv * hd + h * hd * d + 3 * d * ff + 2 * d
    return V * d * (1 if tied else 2) + L * block + d


def gpt2_expected_shapes(L, d, V, P):
    out = {"transformer.wte.weight": [V, d], "transformer.wpe.weight": [P, d]}
    for i in range(L):
        p = f"transformer.h.{i}."
        out.update({p + "ln_1.weight": [d], p + "ln_1.bias": [d],
                    p + "attn.c_attn.weight": [d, 3 * d], p + "attn.c_attn.bias": [3 * d],
                    p + "attn.c_proj.weight": [d, d], p + "attn.c_proj.bias": [d],
                    p + "ln_2.weight": [d], p + "ln_2.bias": [d],
                    p + "mlp.c_fc.weight": [d, 4 * d], p + "mlp.c_fc.bias": [4 * d],
                    p + "mlp.c_proj.weight": [4 * d, d], p + "mlp.c_proj.bias": [d]})
    out.update({"transformer.ln_f.weight": [d], "transformer.ln_f.bias": [d]})
    return out


def llama_expected_shapes(d, L, h, kv, ff, V, tied=False):
    hd = d // h
    out = {"model.embed_tokens.weight": [V, d]}
    for i in range(L):
        p = f"model.layers.{i}."
        out.update({p + "self_attn.q_proj.weight": [h * hd, d], p + "self_attn.k_proj.weight": [kv * hd, d],
                    p + "self_attn.v_proj.weight": [kv * hd, d], p + "self_attn.o_proj.weight": [d, h * hd],
                    p + "mlp.gate_proj.weight": [ff, d], p + "mlp.up_proj.weight": [ff, d],
                    p + "mlp.down_proj.weight": [d, ff],
                    p + "input_layernorm.weight": [d], p + "post_attention_layernorm.weight": [d]})
    out["model.norm.weight"] = [d]
    if not tied:
        out["lm_head.weight"] = [V, d]
    return out


def shapes(spec):
    return {k: v["shape"] for k, v in spec.items()}


# ---------------------------------------------------------------------------
# registry and spec format
# ---------------------------------------------------------------------------
def test_registry():
    assert preset_names() == ["gpt2-small", "gpt2-medium", "llama-7b", "llama", "mlp"]
    for name, entry in PRESETS.items():
        builder, defaults, description = entry
        assert callable(builder) and isinstance(description, str) and description and "\n" not in description
        assert set(defaults) == set(preset_options(name))
        assert preset(name) == preset(name, **dict(defaults))


@pytest.mark.parametrize("name", ["gpt2-small", "gpt2-medium", "llama-7b", "llama", "mlp"])
def test_spec_is_json_and_every_entry_binds_to_its_initializer(name):
    spec = preset(name)
    assert json.loads(json.dumps(spec)) == spec
    for pname, entry in spec.items():
        assert type(entry["shape"]) is list and all(type(d) is int and d > 0 for d in entry["shape"])
        kwargs = {k: v for k, v in entry.items() if k not in ("shape", "init")}
        assert all(type(v) in (str, float, int) for v in kwargs.values()), (pname, kwargs)
        fn = sbi.INITIALIZERS[entry["init"]]
        inspect.signature(fn).bind(entry["shape"], KEY, **kwargs)      # no unknown / missing arguments


def test_json_round_trip_gives_the_same_bits():
    spec = preset("gpt2-small", **TINY_GPT2)
    a = sbf.init_params(spec, KEY)
    b = sbf.init_params(json.loads(json.dumps(spec)), KEY)
    assert list(a) == list(spec)
    for k in a:
        assert a[k].tobytes() == b[k].tobytes()


# ---------------------------------------------------------------------------
# GPT-2
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, L, d, h, published", [("gpt2-small", 12, 768, 12, 124_439_808),
                                                       ("gpt2-medium", 24, 1024, 16, 354_823_168)])
def test_gpt2_names_shapes_total(name, L, d, h, published):
    spec = preset(name)
    assert dict(PRESETS[name].defaults) == dict(n_layer=L, n_embd=d, n_head=h, vocab=50257, n_positions=1024,
                                                initializer_range=0.02)
    expected = gpt2_expected_shapes(L, d, 50257, 1024)
    assert list(spec) == list(expected)             # HF GPT2LMHeadModel state_dict order, no lm_head (tied)
    assert shapes(spec) == expected
    assert spec_num_params(spec) == gpt2_count(L, d, 50257, 1024) == published
    assert len(spec) == 2 + 12 * L + 2


@pytest.mark.parametrize("name, L", [("gpt2-small", 12), ("gpt2-medium", 24), ("gpt2-small", 3)])
def test_gpt2_schemes(name, L):
    spec = preset(name, n_layer=L)
    proj = 0.02 / math.sqrt(2 * L)
    for pname, e in spec.items():
        leaf = pname.rsplit(".", 1)[-1]
        if ".ln_" in pname:
            assert e["init"] == ("ones" if leaf == "weight" else "zeros")
        elif leaf == "bias":
            assert e == {"shape": e["shape"], "init": "zeros"}
        elif pname.endswith("c_proj.weight"):
            assert e == {"shape": e["shape"], "init": "normal", "mean": 0.0, "std": proj}
        else:
            assert e == {"shape": e["shape"], "init": "normal", "mean": 0.0, "std": 0.02}, pname
    n_scaled = sum(1 for k in spec if k.endswith("c_proj.weight"))
    assert n_scaled == 2 * L
    assert preset(name, initializer_range=0.01)["transformer.wte.weight"]["std"] == 0.01


# ---------------------------------------------------------------------------
# Llama
# ---------------------------------------------------------------------------
# (config, published total): Llama-1/2 7B, Llama-2 70B (GQA), TinyLlama 1.1B, Llama-3 8B
LLAMA_CASES = [
    (dict(), 6_738_415_616),
    (dict(hidden=8192, layers=80, heads=64, kv_heads=8, intermediate=28672), 68_976_648_192),
    (dict(hidden=2048, layers=22, heads=32, kv_heads=4, intermediate=5632), 1_100_048_384),
    (dict(hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=14336, vocab=128256), 8_030_261_248),
]


@pytest.mark.parametrize("overrides, published", LLAMA_CASES)
def test_llama_names_shapes_total(overrides, published):
    cfg = dict(hidden=4096, layers=32, heads=32, kv_heads=None, intermediate=11008, vocab=32000)
    cfg.update(overrides)
    kv = cfg["kv_heads"] or cfg["heads"]
    spec = preset("llama", **overrides)
    expected = llama_expected_shapes(cfg["hidden"], cfg["layers"], cfg["heads"], kv, cfg["intermediate"],
                                     cfg["vocab"])
    assert list(spec) == list(expected)
    assert shapes(spec) == expected
    total = llama_count(cfg["hidden"], cfg["layers"], cfg["heads"], kv, cfg["intermediate"], cfg["vocab"])
    assert spec_num_params(spec) == total == published
    if not overrides:
        assert preset("llama-7b") == spec
        assert len(spec) == 1 + 9 * 32 + 2


def test_llama_schemes_tied_and_residual_option():
    spec = preset("llama-7b")
    for pname, e in spec.items():
        if "norm" in pname:
            assert e == {"shape": e["shape"], "init": "ones"}, pname
        else:       # every Linear and the Embedding: N(0, 0.02), no residual scaling by default
            assert e == {"shape": e["shape"], "init": "normal", "mean": 0.0, "std": 0.02}, pname
    assert not any("bias" in k for k in spec)
    tied = preset("llama", tie_embeddings=True)
    assert "lm_head.weight" not in tied and set(spec) - set(tied) == {"lm_head.weight"}
    assert spec_num_params(spec) - spec_num_params(tied) == 32000 * 4096
    scaled = preset("llama", layers=4, residual_scaling=True)
    for pname, e in scaled.items():
        if pname.endswith(("o_proj.weight", "down_proj.weight")):
            assert e["std"] == 0.02 / math.sqrt(8)
        elif e["init"] == "normal":
            assert e["std"] == 0.02


# ---------------------------------------------------------------------------
# MLP
# ---------------------------------------------------------------------------
def test_mlp_spec():
    spec = preset("mlp")
    sizes = [784, 1024, 1024, 10]
    assert list(spec) == [f"layers.{i}.{w}" for i in range(3) for w in ("weight", "bias")]
    for i in range(3):
        assert spec[f"layers.{i}.weight"] == {"shape": [sizes[i], sizes[i + 1]], "init": "he_normal",
                                              "mode": "fan_in", "nonlinearity": "relu", "layout": "io"}
        assert spec[f"layers.{i}.bias"] == {"shape": [sizes[i + 1]], "init": "zeros"}
    assert spec_num_params(spec) == sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    for act in ("tanh", "sigmoid", "linear"):
        t = preset("mlp", sizes=(3, 5, 2), activation=act)
        assert t["layers.1.weight"] == {"shape": [5, 2], "init": "xavier_uniform", "gain": 1.0, "layout": "io"}
    assert list(preset("mlp", sizes=[3, 2], bias=False)) == ["layers.0.weight"]


# ---------------------------------------------------------------------------
# statistics of actual draws on tiny configs
# ---------------------------------------------------------------------------
def check_normal(x, std):
    x = np.asarray(x, dtype=np.float64).ravel()
    n = x.size
    z_mean = x.mean() / (std / math.sqrt(n))
    z_var = (np.mean(x * x) / std ** 2 - 1.0) * math.sqrt(n / 2.0)      # Var(x^2) = 2 std^4
    assert abs(z_mean) < Z_MAX and abs(z_var) < Z_MAX, (n, std, z_mean, z_var)
    assert np.abs(x).max() <= NORMAL_MAX_SIGMAS * std
    assert np.unique(x).size > 0.99 * n         # really random, not a constant / short cycle


def check_exact(x, value):
    assert x.dtype == np.float32 and np.array_equal(x.view(np.uint32), np.full(x.shape, value, np.float32)
                                                    .view(np.uint32))


def check_spec_draws(spec, params):
    for name, e in spec.items():
        x = params[name]
        assert list(x.shape) == e["shape"]
        if e["init"] == "normal":
            check_normal(x, e["std"])
        elif e["init"] in ("zeros", "ones"):
            check_exact(x, 0.0 if e["init"] == "zeros" else 1.0)
        else:
            raise AssertionError(e)


def test_gpt2_tiny_init_statistics():
    spec = preset("gpt2-small", **TINY_GPT2)
    assert spec_num_params(spec) == gpt2_count(2, 64, 100, 32)
    params = sbf.init_params(spec, KEY)
    check_spec_draws(spec, params)
    # the residual projections really are half as wide (0.02 / sqrt(4)): compare with 0.02 too
    for name in ("transformer.h.1.attn.c_proj.weight", "transformer.h.0.mlp.c_proj.weight"):
        assert abs(float(np.std(params[name])) - 0.01) < 0.001
    assert abs(float(np.std(params["transformer.h.0.attn.c_attn.weight"])) - 0.02) < 0.002


def test_llama_tiny_init_statistics_and_flat():
    spec = preset("llama", **TINY_LLAMA)
    assert spec["model.layers.0.self_attn.k_proj.weight"]["shape"] == [32, 64]     # kv_heads * head_dim
    params = sbf.init_params(spec, KEY)
    check_spec_draws(spec, params)
    for k, e in spec.items():       # HF Llama: every Linear and the Embedding N(0, 0.02), from the draws
        if e["init"] == "normal":
            check_normal(params[k], 0.02)
    buf, views = sbf.init_params(spec, KEY, flat=True)
    assert buf.size == spec_num_params(spec)
    for k in spec:
        assert views[k].tobytes() == params[k].tobytes()


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_mlp_tiny_init_statistics(activation):
    sizes = [256, 512, 128]
    spec = preset("mlp", sizes=sizes, activation=activation)
    params = sbf.init_params(spec, KEY)
    for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = params[f"layers.{i}.weight"].astype(np.float64)
        check_exact(params[f"layers.{i}.bias"], 0.0)
        n = w.size
        if activation == "relu":
            check_normal(w, math.sqrt(2.0 / fi))
        else:
            b = math.sqrt(6.0 / (fi + fo))
            assert np.abs(w).max() <= b and np.abs(w).max() > 0.99 * b
            m2 = np.mean(w * w)                     # E x^2 = b^2/3, Var x^2 = 4 b^4 / 45
            assert abs(m2 - b * b / 3) / math.sqrt(4 * b ** 4 / (45 * n)) < Z_MAX
            assert abs(w.mean()) / (b / math.sqrt(3 * n)) < Z_MAX


def test_tensors_depend_only_on_their_name():
    """Adding layers leaves every tensor whose entry is unchanged bit-identical."""
    a = sbf.init_params(preset("llama", **TINY_LLAMA), KEY)
    b = sbf.init_params(preset("llama", **{**TINY_LLAMA, "layers": 3}), KEY)
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k
    assert "model.layers.2.mlp.up_proj.weight" in b


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------
def test_unknown_preset():
    with pytest.raises(ValueError, match=r"unknown preset 'gpt3'.*gpt2-small, gpt2-medium, llama-7b, llama, mlp"):
        preset("gpt3")
    with pytest.raises(ValueError, match="unknown preset"):
        preset(None)


def test_unknown_config_key_lists_valid_keys():
    with pytest.raises(ValueError, match=r"unknown config key\(s\) 'n_layers'.*n_layer \(a positive int, "
                                         r"default 12\).*n_positions"):
        preset("gpt2-small", n_layers=3)
    with pytest.raises(ValueError, match=r"'hidden_size'.*valid keys: hidden.*kv_heads.*tie_embeddings"):
        preset("llama", hidden_size=64)


@pytest.mark.parametrize("name, cfg, match", [
    ("gpt2-small", dict(n_layer=0), "n_layer=0 is invalid.*positive int"),
    ("gpt2-small", dict(n_layer=True), "positive int"),
    ("gpt2-small", dict(n_embd=64.0), "positive int"),
    ("gpt2-small", dict(n_embd="64"), "positive int"),
    ("gpt2-small", dict(n_embd=100, n_head=12), "divisible by n_head"),
    ("gpt2-medium", dict(initializer_range=-0.02), "positive finite float"),
    ("gpt2-medium", dict(initializer_range=float("nan")), "positive finite float"),
    ("llama", dict(heads=7), "divisible by heads"),
    ("llama", dict(kv_heads=5), "divisible by kv_heads"),
    ("llama", dict(kv_heads=0), "positive int or None"),
    ("llama", dict(tie_embeddings=1), "a bool"),
    ("llama-7b", dict(residual_scaling="yes"), "a bool"),
    ("mlp", dict(sizes=[10]), "at least 2 positive ints"),
    ("mlp", dict(sizes="784,10"), "at least 2 positive ints"),
    ("mlp", dict(sizes=[10, 0]), "at least 2 positive ints"),
    ("mlp", dict(activation="gelu"), "one of 'relu', 'tanh', 'sigmoid', 'linear'"),
])
def test_invalid_values(name, cfg, match):
    with pytest.raises(ValueError, match=match):
        preset(name, **cfg)


def test_gpt2_generic_aliases():
    assert preset("gpt2-small", layers=2, hidden=64, heads=4, context=32, vocab=100) == \
        preset("gpt2-small", **TINY_GPT2)
    with pytest.raises(ValueError, match="'n_layer' given twice"):
        preset("gpt2-medium", layers=2, n_layer=3)
    with pytest.raises(ValueError, match="unknown config key.*'context'"):
        preset("llama", context=4096)                  # RoPE: no position parameters
    assert config_from_strings("gpt2-small", {"layers": "2"}) == {"n_layer": 2}


def test_config_from_strings():
    cfg = config_from_strings("llama", {"hidden": "64", "kv-heads": "2", "tie-embeddings": "true",
                                        "initializer_range": "0.01", "layers": "2", "heads": "4"})
    assert cfg == dict(hidden=64, kv_heads=2, tie_embeddings=True, initializer_range=0.01, layers=2, heads=4)
    assert "lm_head.weight" not in preset("llama", **cfg)
    assert config_from_strings("llama", {"kv_heads": "none"}) == {"kv_heads": None}
    assert config_from_strings("mlp", {"sizes": "3,5,2", "activation": "tanh"}) == \
        dict(sizes=[3, 5, 2], activation="tanh")
    with pytest.raises(ValueError, match="hidden='4k' is invalid.*positive int"):
        config_from_strings("llama", {"hidden": "4k"})
    with pytest.raises(ValueError, match="a bool"):
        config_from_strings("llama", {"tie_embeddings": "maybe"})
    with pytest.raises(ValueError, match="unknown config key"):
        config_from_strings("llama", {"hiden": "64"})
    with pytest.raises(ValueError, match="unknown preset"):
        config_from_strings("bert", {})


# ---------------------------------------------------------------------------
# against the Hugging Face models themselves, when transformers is importable
# ---------------------------------------------------------------------------
def test_matches_transformers_state_dict():
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    with torch.device("meta"):
        gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4,
                                                                    vocab_size=100, n_positions=32))
        llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=160, vocab_size=96))
    for model, spec in ((gpt2, preset("gpt2-small", **TINY_GPT2)), (llama, preset("llama", **TINY_LLAMA))):
        got = {k: list(p.shape) for k, p in model.named_parameters()}     # tied lm_head is listed once
        assert got == shapes(spec)
