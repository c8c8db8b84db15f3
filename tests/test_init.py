"""Weight initializers (symbreak_fast.init): fans, gains and variance formulas against the
torch.nn.init and jax.nn.initializers conventions, statistics of actual draws, the
structured initializers, init_params, backend bit identity, index= and bad input.

The reference formulas are written out here from the torch / JAX documentation, so the
tests run without either library; when torch or jax is importable, extra tests compare
against the libraries themselves.

Statistics: every statistical check uses a fixed key (the tests are deterministic) and
n >= 10**6 draws, and compares a statistic with its sampling distribution under "the
initializer is correct": z-scores must satisfy |z| < 6 (P(|N(0,1)| >= 6) = 2e-9 per
check); extremes use bounds whose failure probability is below exp(-60). The file makes
about 1,150 z checks (1,000 of them the per-row zero counts of test_sparse_statistics), so a
correct library fails one, for an unlucky choice of the fixed keys, with probability < 3e-6.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import symbreak_fast as sbf
from symbreak_fast import init as sbi
from conftest import FLOAT_DTYPES, assert_same_bits, bits_of

Z_MAX = 6.0
KEY = sbf.Key(0x5EED_1417)
OTHER_BACKENDS = [b for b in sbf.available_backends() if b != "numpy"]
DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64), "float16": np.dtype(np.float16),
          "bfloat16": np.dtype(ml_dtypes.bfloat16)}

# ---------------------------------------------------------------------------
# independent reference formulas (from the torch.nn.init / jax.nn.initializers docs)
# ---------------------------------------------------------------------------
# std of N(0, 1) truncated to [-2, 2]: the literal jax.nn.initializers and Keras divide by
TRUNC_STD_2 = 0.87962566103423978


def _phi(x):
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


# moments of N(0, 1) truncated to [-a, a], a = 2: with Z = P(|z| < a),
# E z^2 = 1 - 2 a phi(a) / Z and E z^4 = 3 E z^2 - 2 a^3 phi(a) / Z (integration by parts)
_Z2 = math.erf(2 / math.sqrt(2))
TN_M2 = 1 - 2 * 2 * _phi(2) / _Z2
TN_M4 = 3 * TN_M2 - 2 * 8 * _phi(2) / _Z2
# kurtosis E x^4 / (E x^2)^2 of each distribution (for the standard error of the sample std)
KURTOSIS = {"normal": 3.0, "uniform": 9.0 / 5.0, "truncated_normal": TN_M4 / TN_M2 ** 2}


def torch_fans(shape):
    """torch.nn.init._calculate_fan_in_and_fan_out of a tensor of ``shape`` = (out, in, *kernel)."""
    rf = math.prod(shape[2:])
    return shape[1] * rf, shape[0] * rf


def jax_fans(shape, in_axis=-2, out_axis=-1):
    """jax.nn.initializers' _compute_fans: in/out sizes times total / in_size / out_size."""
    in_axis = (in_axis,) if isinstance(in_axis, int) else in_axis
    out_axis = (out_axis,) if isinstance(out_axis, int) else out_axis
    in_size = math.prod(shape[i] for i in in_axis)
    out_size = math.prod(shape[i] for i in out_axis)
    rf = math.prod(shape) // in_size // out_size
    return in_size * rf, out_size * rf


def torch_gain(nonlinearity, param=None):
    """torch.nn.init.calculate_gain's documented table."""
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    return {"linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "conv_transpose1d": 1.0,
            "conv_transpose2d": 1.0, "conv_transpose3d": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3,
            "relu": math.sqrt(2.0), "selu": 3.0 / 4}[nonlinearity]


def vs_expected(scale, mode, distribution):
    """(kind, std or bound) of jax.nn.initializers.variance_scaling(scale, mode, distribution)."""
    def f(fi, fo):
        fan = {"fan_in": fi, "fan_out": fo, "fan_avg": (fi + fo) / 2, "fan_geo_avg": math.sqrt(fi * fo)}[mode]
        var = scale / max(1.0, fan)
        if distribution == "uniform":
            return "uniform", math.sqrt(3 * var)
        if distribution == "truncated_normal":
            return "truncated_normal", math.sqrt(var) / TRUNC_STD_2
        return "normal", math.sqrt(var)
    return f


def test_reference_constants():
    # the JAX/Keras literal is the std of the [-2, 2] truncated normal, and the module uses it
    assert math.isclose(math.sqrt(TN_M2), TRUNC_STD_2, rel_tol=1e-14)
    assert sbi.TRUNCATED_NORMAL_STD_2 == TRUNC_STD_2


# ---------------------------------------------------------------------------
# 1. fans
# ---------------------------------------------------------------------------
OI, IO = dict(layout="oi"), dict(layout="io")
# (id, shape, fan kwargs, (fan_in, fan_out)): the literals are the fans torch / JAX give the layer
FAN_CASES = [
    ("linear-oi", (20, 10), OI, (10, 20)),                  # torch nn.Linear(10, 20).weight
    ("linear-io", (10, 20), IO, (10, 20)),                  # flax Dense(20) on 10 features
    ("linear-default-io", (10, 20), {}, (10, 20)),
    ("conv1d-oi", (16, 8, 5), OI, (40, 80)),                # nn.Conv1d(8, 16, 5)
    ("conv1d-io", (5, 8, 16), IO, (40, 80)),                # flax Conv(16, (5,)) on 8 channels
    ("conv2d-oi", (16, 8, 3, 5), OI, (120, 240)),
    ("conv2d-io", (3, 5, 8, 16), IO, (120, 240)),
    ("conv3d-oi", (16, 8, 2, 3, 5), OI, (240, 480)),
    ("conv3d-io", (2, 3, 5, 8, 16), IO, (240, 480)),
    ("axes-as-torch", (16, 8, 3, 5), dict(in_axis=1, out_axis=0), (120, 240)),
    ("axes-override-layout", (16, 8, 3, 5), dict(layout="io", in_axis=1, out_axis=0), (120, 240)),
    ("axes-negative", (3, 5, 8, 16), dict(in_axis=-2, out_axis=-1), (120, 240)),
    ("axes-numpy-ints", (3, 5, 8, 16), dict(in_axis=np.int64(2), out_axis=np.int32(3)), (120, 240)),
    ("axes-tuple-in", (4, 6, 5, 7), dict(in_axis=(0, 1), out_axis=-1), (120, 35)),
    ("axes-tuple-out", (64, 8, 32), dict(in_axis=0, out_axis=(1, 2)), (64, 256)),   # attention qkv
    ("axes-in-only", (3, 4, 5), dict(in_axis=0), (12, 20)),         # out_axis defaults to -1
    ("axes-out-only", (3, 4, 5), dict(out_axis=0), (20, 15)),       # in_axis defaults to -2
]
FAN_IDS = [c[0] for c in FAN_CASES]


def _reference_fans(shape, kw):
    if "in_axis" in kw or "out_axis" in kw:
        def norm(a):
            return tuple(int(i) for i in a) if isinstance(a, tuple) else int(a)
        return jax_fans(shape, norm(kw.get("in_axis", -2)), norm(kw.get("out_axis", -1)))
    return torch_fans(shape) if kw.get("layout") == "oi" else jax_fans(shape)


@pytest.mark.parametrize("name,shape,kw,fans", FAN_CASES, ids=FAN_IDS)
def test_fan_in_fan_out(name, shape, kw, fans):
    assert _reference_fans(shape, kw) == fans           # the literal is what torch / JAX compute
    got = sbf.fan_in_fan_out(shape, **kw)
    assert got == fans
    assert all(type(f) is int for f in got)
    assert sbf.fan_in_fan_out(list(shape), **kw) == fans


def test_conv_layouts_agree():
    # the same layer in torch layout (out, in, *k) and JAX layout (*k, in, out) has the same fans
    for k in [(5,), (3, 5), (2, 3, 5), (1, 1)]:
        oi = (16, 8) + k
        io = k + (8, 16)
        assert sbf.fan_in_fan_out(oi, layout="oi") == sbf.fan_in_fan_out(io, layout="io") \
            == (8 * math.prod(k), 16 * math.prod(k))


def test_zero_size_fans_use_max_one():
    # JAX: variance = scale / max(1, fan); a zero-size weight must not divide by zero
    assert sbf.fan_in_fan_out((0, 5)) == (0, 5)
    assert sbi.variance_scaling_params((0, 5), 2.0, "fan_in", "normal") == ("normal", math.sqrt(2.0))
    assert sbf.he_normal((0, 5), KEY).shape == (0, 5)


# ---------------------------------------------------------------------------
# 2. calculate_gain
# ---------------------------------------------------------------------------
GAIN_TABLE = [("linear", None, 1.0), ("conv1d", None, 1.0), ("conv2d", None, 1.0), ("conv3d", None, 1.0),
              ("conv_transpose1d", None, 1.0), ("conv_transpose2d", None, 1.0),
              ("conv_transpose3d", None, 1.0), ("sigmoid", None, 1.0), ("tanh", None, 5.0 / 3),
              ("relu", None, math.sqrt(2.0)), ("relu", 0.3, math.sqrt(2.0)),      # param ignored
              ("selu", None, 0.75), ("leaky_relu", None, math.sqrt(2.0 / (1 + 0.01 ** 2))),
              ("leaky_relu", 0, math.sqrt(2.0)), ("leaky_relu", 0.2, math.sqrt(2.0 / 1.04)),
              ("leaky_relu", math.sqrt(5), math.sqrt(1.0 / 3)),        # nn.Linear's default init
              ("leaky_relu", -0.5, math.sqrt(2.0 / 1.25)), ("leaky_relu", 3, math.sqrt(0.2)),
              ("leaky_relu", np.float64(0.2), math.sqrt(2.0 / 1.04))]


@pytest.mark.parametrize("nl,param,expected", GAIN_TABLE)
def test_calculate_gain_table(nl, param, expected):
    got = sbf.calculate_gain(nl, param)
    assert got == pytest.approx(expected, rel=1e-15, abs=0)
    assert got == pytest.approx(torch_gain(nl, param), rel=1e-15, abs=0)
    if param is None:
        assert sbf.calculate_gain(nl) == got


@pytest.mark.parametrize("nl", ["gelu", "ReLU", "", "leaky-relu", "softmax", None])
def test_calculate_gain_unknown(nl):
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        sbf.calculate_gain(nl)


@pytest.mark.parametrize("slope", ["0.1", True, False, [0.1], 1j])
def test_calculate_gain_bad_slope(slope):
    with pytest.raises(ValueError, match="negative_slope .* not a valid number"):
        sbf.calculate_gain("leaky_relu", slope)


# ---------------------------------------------------------------------------
# scheme formulas: variance_scaling_params, and every preset's draw
# ---------------------------------------------------------------------------
MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
DISTS = ("truncated_normal", "normal", "untruncated_normal", "uniform")


@pytest.mark.parametrize("name,shape,kw,fans", FAN_CASES, ids=FAN_IDS)
def test_variance_scaling_params_formula(name, shape, kw, fans):
    for scale in (1.0, 0.5, 2, 1e-3):
        for mode in MODES:
            for dist in DISTS:
                kind, value = sbi.variance_scaling_params(shape, scale, mode, dist, **kw)
                ref_kind, ref_value = vs_expected(scale, mode, dist)(*fans)
                assert kind == ref_kind, (scale, mode, dist)
                assert value == pytest.approx(ref_value, rel=1e-13, abs=0), (scale, mode, dist)
    # the defaults are JAX's: scale 1, fan_in, truncated normal
    kind, value = sbi.variance_scaling_params(shape, **kw)
    ref_kind, ref_value = vs_expected(1.0, "fan_in", "truncated_normal")(*fans)
    assert kind == ref_kind
    assert value == pytest.approx(ref_value, rel=1e-13, abs=0)


def _vs_call(mode, dist):
    def call(s, k, **kw):
        return sbf.variance_scaling(s, k, 2.0, mode, dist, **kw)
    return call


# (id, call, expected(fan_in, fan_out) -> (kind, std or bound)): the torch/JAX formulas as documented
PRESETS = [
    ("xavier_uniform", lambda s, k, **kw: sbf.xavier_uniform(s, k, **kw),
     lambda fi, fo: ("uniform", math.sqrt(6 / (fi + fo)))),
    ("glorot_uniform-gain", lambda s, k, **kw: sbf.glorot_uniform(s, k, gain=5 / 3, **kw),
     lambda fi, fo: ("uniform", 5 / 3 * math.sqrt(6 / (fi + fo)))),
    ("xavier_normal", lambda s, k, **kw: sbf.xavier_normal(s, k, **kw),
     lambda fi, fo: ("normal", math.sqrt(2 / (fi + fo)))),
    ("glorot_normal-gain", lambda s, k, **kw: sbf.glorot_normal(s, k, math.sqrt(2), **kw),
     lambda fi, fo: ("normal", math.sqrt(2) * math.sqrt(2 / (fi + fo)))),
    ("glorot_normal-truncated(jax)", lambda s, k, **kw: sbf.glorot_normal(s, k, distribution="truncated_normal",
                                                                           **kw),
     lambda fi, fo: ("truncated_normal", math.sqrt(2 / (fi + fo)) / TRUNC_STD_2)),
    ("he_uniform", lambda s, k, **kw: sbf.he_uniform(s, k, **kw),          # kaiming_uniform_ defaults
     lambda fi, fo: ("uniform", math.sqrt(2) * math.sqrt(3 / fi))),
    ("kaiming_uniform-a=sqrt5(nn.Linear)", lambda s, k, **kw: sbf.kaiming_uniform(s, k, a=math.sqrt(5), **kw),
     lambda fi, fo: ("uniform", 1 / math.sqrt(fi))),
    ("he_uniform-fan_out-relu", lambda s, k, **kw: sbf.he_uniform(s, k, mode="fan_out", nonlinearity="relu",
                                                                  **kw),
     lambda fi, fo: ("uniform", math.sqrt(2) * math.sqrt(3 / fo))),
    ("kaiming_uniform-tanh", lambda s, k, **kw: sbf.kaiming_uniform(s, k, 0.3, "fan_in", "tanh", **kw),
     lambda fi, fo: ("uniform", 5 / 3 * math.sqrt(3 / fi))),
    ("he_normal", lambda s, k, **kw: sbf.he_normal(s, k, **kw),
     lambda fi, fo: ("normal", math.sqrt(2) / math.sqrt(fi))),
    ("kaiming_normal-fan_out-leaky0.2", lambda s, k, **kw: sbf.kaiming_normal(s, k, 0.2, "fan_out", **kw),
     lambda fi, fo: ("normal", math.sqrt(2 / 1.04) / math.sqrt(fo))),
    ("he_normal-selu", lambda s, k, **kw: sbf.he_normal(s, k, nonlinearity="selu", **kw),
     lambda fi, fo: ("normal", 0.75 / math.sqrt(fi))),
    ("he_normal-truncated(jax)", lambda s, k, **kw: sbf.he_normal(s, k, distribution="truncated_normal", **kw),
     lambda fi, fo: ("truncated_normal", math.sqrt(2 / fi) / TRUNC_STD_2)),
    ("lecun_uniform", lambda s, k, **kw: sbf.lecun_uniform(s, k, **kw),
     lambda fi, fo: ("uniform", math.sqrt(3 / fi))),
    ("lecun_normal", lambda s, k, **kw: sbf.lecun_normal(s, k, **kw),
     lambda fi, fo: ("normal", 1 / math.sqrt(fi))),
    ("lecun_normal-truncated(jax)", lambda s, k, **kw: sbf.lecun_normal(s, k, distribution="truncated_normal",
                                                                        **kw),
     lambda fi, fo: ("truncated_normal", 1 / math.sqrt(fi) / TRUNC_STD_2)),
] + [
    (f"variance_scaling-{mode}-{dist}", _vs_call(mode, dist), vs_expected(2.0, mode, dist))
    for mode in MODES for dist in DISTS
]
PRESET_IDS = [p[0] for p in PRESETS]


def primitive(kind, value, shape, key, **kw):
    """The plain generator draw that a zero-mean initializer of (kind, value) must equal."""
    if kind == "uniform":
        return sbf.uniform(shape, key, -value, value, **kw)
    if kind == "truncated_normal":
        return sbf.truncated_normal(shape, key, 0.0, value, -2.0, 2.0, **kw)
    return sbf.normal(shape, key, 0.0, value, **kw)


@pytest.mark.parametrize("pid,fn,expected", PRESETS, ids=PRESET_IDS)
def test_preset_draw_is_the_documented_distribution(pid, fn, expected):
    # each preset is the plain uniform / normal / [-2, 2]-truncated normal draw from the same key
    # with the torch/JAX std or bound. The bound is computed here by a different float64
    # expression, which can differ from the library's in its last bit and then (rarely) move
    # float32(bound) by one ulp: allow 1e-6 relative (8 float32 ulps) + 1e-6 * value absolute
    # (cancellation in low + (high - low) * u near 0).
    for name, shape, kw, fans in FAN_CASES:
        kind, value = expected(*fans)
        for dt, tol in (("float32", 1e-6), ("float64", 1e-12)):
            got = fn(shape, KEY / name, dtype=dt, **kw)
            ref = primitive(kind, value, shape, KEY / name, dtype=dt)
            assert got.dtype == np.dtype(dt) and got.shape == shape
            np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * value, err_msg=f"{pid} {name} {dt}")


def test_aliases_are_the_same_initializer():
    pairs = [(sbf.glorot_uniform, sbf.xavier_uniform), (sbf.glorot_normal, sbf.xavier_normal),
             (sbf.kaiming_uniform, sbf.he_uniform), (sbf.kaiming_normal, sbf.he_normal),
             (sbf.eye, sbf.identity)]
    for a, b in pairs:
        assert_same_bits(a((9, 13), KEY), b((9, 13), KEY))
    assert_same_bits(sbf.variance_scaling((9, 13), KEY, 1.0, "fan_in", "normal"),
                     sbf.variance_scaling((9, 13), KEY, 1.0, "fan_in", "untruncated_normal"))


# ---------------------------------------------------------------------------
# statistics of large draws
# ---------------------------------------------------------------------------
# torch Conv2d(128 -> 256, 5x7) weight: fan_in 4480, fan_out 8960, n = 1,146,880
BIG_OI = (256, 128, 5, 7)
# Keras Conv3D(112, (3, 5, 7)) on 96 channels: fan_in 10080, fan_out 11760, n = 1,128,960
BIG_IO = (3, 5, 7, 96, 112)
BIG = [(BIG_OI, "oi", (4480, 8960)), (BIG_IO, "io", (10080, 11760))]


def check_draw_stats(x, kind, value, what, *, rel_slack=0.0):
    """Zero mean, std = value (or bound / sqrt 3), and the right support, for n >= 10**6 draws.

    * mean: z = mean / (sigma / sqrt n), |z| < 6.
    * std: the root mean square about the known mean 0 estimates sigma with relative standard
      error sqrt((kurtosis - 1) / (4 n)) (delta method on mean(x^2), whose variance is
      (E x^4 - sigma^4) / n); |relative error| < 6 standard errors. float32 rounding
      (relative 6e-8) is negligible next to 6 SE >= 3.5e-3.
    * uniform: max|x| <= bound rounded to the dtype, exactly (high is excluded, low = -bound
      included), and > 0.999 bound: P(all n draws inside) = 0.999^n < e^-1000.
    * truncated normal: max|x| <= 2 sigma0 exactly (bounds rounded inward), and > 0.99 * 2 sigma0:
      P(|z| in (1.98, 2)) = 2.3e-3 per draw, so P(none) < e^-2000.
    * normal: max|x| > 2.5 sigma (which a [-2, 2] truncated draw never reaches):
      P(|z| > 2.5) = 0.0124 per draw, P(none) < e^-12000.

    ``rel_slack`` loosens the upper bounds for other libraries' draws, which round the scaled
    value once more in float32.
    """
    n = x.size
    assert n >= 10 ** 6
    x64 = x.astype(np.float64).ravel()
    sigma = {"uniform": value / math.sqrt(3), "truncated_normal": value * TRUNC_STD_2, "normal": value}[kind]
    mean = float(x64.mean())
    rms = math.sqrt(float(np.dot(x64, x64)) / n)
    se_rel = math.sqrt((KURTOSIS[kind] - 1) / (4 * n))
    z_mean = mean / (sigma / math.sqrt(n))
    z_std = (rms / sigma - 1) / se_rel
    assert abs(z_mean) < Z_MAX, f"{what}: mean {mean:.3g}, z = {z_mean:.2f}"
    assert abs(z_std) < Z_MAX, f"{what}: std {rms:.6g} vs {sigma:.6g}, z = {z_std:.2f}"
    top = float(np.abs(x64).max())
    if kind == "uniform":
        limit = float(np.asarray(value, dtype=x.dtype)) if rel_slack == 0 else value * (1 + rel_slack)
        assert top <= limit, f"{what}: max|x| {top!r} > bound {limit!r}"
        assert top > 0.999 * value, f"{what}: max|x| {top} <= 0.999 * {value}"
    elif kind == "truncated_normal":
        assert top <= 2 * value * (1 + rel_slack), f"{what}: max|x| {top!r} > 2 std {2 * value!r}"
        assert top > 0.99 * 2 * value, f"{what}: max|x| {top} <= 0.99 * 2 std"
    else:
        assert top > 2.5 * value, f"{what}: max|x| {top} <= 2.5 std: truncated?"


@pytest.mark.parametrize("pid,fn,expected", PRESETS, ids=PRESET_IDS)
@pytest.mark.parametrize("shape,layout,fans", BIG, ids=["oi", "io"])
def test_draw_statistics(pid, fn, expected, shape, layout, fans):
    assert sbf.fan_in_fan_out(shape, layout) == fans
    kind, value = expected(*fans)
    x = fn(shape, KEY / pid / layout, layout=layout)
    assert x.dtype == np.float32 and x.shape == shape
    check_draw_stats(x, kind, value, f"{pid} {layout}")


# ---------------------------------------------------------------------------
# against torch / jax themselves, when installed
# ---------------------------------------------------------------------------
def test_against_torch():
    torch = pytest.importorskip("torch")
    for name, shape, kw, fans in FAN_CASES:
        if kw == OI:
            assert torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape)) == fans
    for nl, param, expected in GAIN_TABLE:
        assert sbf.calculate_gain(nl, param) == pytest.approx(torch.nn.init.calculate_gain(nl, param), rel=1e-15)
    # torch's own draws follow the std / bound that sbf computes for the same (oi) weight
    torch.manual_seed(0)
    cases = [(torch.nn.init.xavier_uniform_, {}, lambda s: sbi.variance_scaling_params(
                 s, 1.0, "fan_avg", "uniform", layout="oi")),
             (torch.nn.init.xavier_normal_, dict(gain=2.0), lambda s: sbi.variance_scaling_params(
                 s, 4.0, "fan_avg", "normal", layout="oi")),
             (torch.nn.init.kaiming_uniform_, dict(a=math.sqrt(5)), lambda s: sbi.variance_scaling_params(
                 s, sbf.calculate_gain("leaky_relu", math.sqrt(5)) ** 2, "fan_in", "uniform", layout="oi")),
             (torch.nn.init.kaiming_normal_, dict(mode="fan_out", nonlinearity="relu"),
              lambda s: sbi.variance_scaling_params(s, 2.0, "fan_out", "normal", layout="oi"))]
    for fn, kw, params in cases:
        t = torch.empty(BIG_OI)
        fn(t, **kw)
        kind, value = params(BIG_OI)
        # torch scales in float32: allow 2 float32 ulps on the upper bounds
        check_draw_stats(t.numpy(), kind, value, f"torch {fn.__name__}", rel_slack=2 ** -22)
    # dirac_ and eye_ are deterministic: equal element for element
    for shape, groups in [((4, 4, 3), 1), ((6, 3, 3, 5), 2), ((8, 2, 3, 3, 3), 2), ((2, 5, 4), 1)]:
        t = torch.empty(shape)
        torch.nn.init.dirac_(t, groups)
        np.testing.assert_array_equal(sbf.dirac(shape, groups=groups), t.numpy())
    for shape in [(3, 5), (5, 3), (4, 4)]:
        t = torch.empty(shape)
        torch.nn.init.eye_(t)
        np.testing.assert_array_equal(sbf.eye(shape), t.numpy())


def _jax_compute_fans():
    try:
        from jax._src.nn.initializers import _compute_fans
    except ImportError:         # private helper: moved or renamed
        return None
    return _compute_fans


def test_against_jax():
    jax = pytest.importorskip("jax")
    compute_fans = _jax_compute_fans()
    if compute_fans is not None:        # private helper: compared only where it exists
        for name, shape, kw, fans in FAN_CASES:
            if kw.get("layout", "io") == "io" and "in_axis" not in kw and "out_axis" not in kw:
                assert tuple(int(f) for f in compute_fans(shape)) == fans
            elif "in_axis" in kw or "out_axis" in kw:
                ia = kw.get("in_axis", -2)
                oa = kw.get("out_axis", -1)
                ia = tuple(int(a) for a in ia) if isinstance(ia, tuple) else int(ia)
                oa = tuple(int(a) for a in oa) if isinstance(oa, tuple) else int(oa)
                assert tuple(int(f) for f in compute_fans(shape, ia, oa)) == fans, name
    # jax's own draws follow sbf's std / bound for the same (io) weight: every mode and every
    # distribution once (each distinct jax draw costs a compilation)
    init = jax.nn.initializers
    for i, (mode, dist) in enumerate([("fan_in", "truncated_normal"), ("fan_out", "normal"),
                                      ("fan_avg", "uniform"), ("fan_geo_avg", "truncated_normal")]):
        x = np.asarray(init.variance_scaling(2.0, mode, dist)(jax.random.PRNGKey(i), BIG_IO))
        kind, value = sbi.variance_scaling_params(BIG_IO, 2.0, mode, dist, layout="io")
        check_draw_stats(x, kind, value, f"jax {mode} {dist}", rel_slack=2 ** -22)
    # presets: glorot_normal / he_normal / lecun_normal are truncated in jax
    for k, (jfn, sfn) in enumerate([
            (init.glorot_uniform(), lambda s: sbi.variance_scaling_params(s, 1.0, "fan_avg", "uniform")),
            (init.he_normal(), lambda s: sbi.variance_scaling_params(s, 2.0, "fan_in", "truncated_normal")),
            (init.lecun_normal(), lambda s: sbi.variance_scaling_params(s, 1.0, "fan_in", "truncated_normal"))]):
        x = np.asarray(jfn(jax.random.PRNGKey(100 + k), BIG_IO))
        kind, value = sfn(BIG_IO)
        check_draw_stats(x, kind, value, f"jax preset {k}", rel_slack=2 ** -22)


# ---------------------------------------------------------------------------
# 3. fewer than 2 dims
# ---------------------------------------------------------------------------
FAN_BASED = {
    "variance_scaling": lambda s: sbf.variance_scaling(s, KEY),
    "xavier_uniform": lambda s: sbf.xavier_uniform(s, KEY),
    "glorot_uniform": lambda s: sbf.glorot_uniform(s, KEY),
    "xavier_normal": lambda s: sbf.xavier_normal(s, KEY),
    "glorot_normal": lambda s: sbf.glorot_normal(s, KEY),
    "he_uniform": lambda s: sbf.he_uniform(s, KEY),
    "kaiming_uniform": lambda s: sbf.kaiming_uniform(s, KEY),
    "he_normal": lambda s: sbf.he_normal(s, KEY),
    "kaiming_normal": lambda s: sbf.kaiming_normal(s, KEY),
    "lecun_uniform": lambda s: sbf.lecun_uniform(s, KEY),
    "lecun_normal": lambda s: sbf.lecun_normal(s, KEY),
    "fan_in_fan_out": lambda s: sbf.fan_in_fan_out(s),
    "fan_in_fan_out-oi": lambda s: sbf.fan_in_fan_out(s, "oi"),
    "variance_scaling_params": lambda s: sbi.variance_scaling_params(s),
    "with-axes": lambda s: sbf.he_normal(s, KEY, in_axis=0, out_axis=-1),
}


@pytest.mark.parametrize("name", FAN_BASED)
@pytest.mark.parametrize("shape", [(), (5,), 5, [7], (0,)], ids=["()", "(5,)", "5", "[7]", "(0,)"])
def test_fan_based_needs_two_dims(name, shape):
    with pytest.raises(ValueError, match="at least 2 dims"):
        FAN_BASED[name](shape)


# ---------------------------------------------------------------------------
# 4. orthogonal
# ---------------------------------------------------------------------------
def matrix_view(shape, layout):
    """The 2-D matrix torch (oi: (shape[0], rest)) / JAX (io: (rest, shape[-1])) orthogonalize."""
    if layout == "oi":
        return shape[0], math.prod(shape[1:])
    return math.prod(shape[:-1]), shape[-1]


ORTH_CASES = [((40, 12), "io"), ((40, 12), "oi"), ((12, 40), "io"), ((12, 40), "oi"), ((25, 25), "io"),
              ((25, 25), "oi"), ((1, 7), "io"), ((7, 1), "oi"), ((6, 4, 3, 5), "oi"), ((6, 4, 3, 5), "io"),
              ((32, 16, 3, 3), "oi"), ((3, 3, 16, 32), "io"), ((8, 2, 3), "io"), ((2, 3, 4), "oi")]


@pytest.mark.parametrize("shape,layout", ORTH_CASES, ids=[f"{s}-{l}" for s, l in ORTH_CASES])
def test_orthogonal(shape, layout):
    rows, cols = matrix_view(shape, layout)
    k = min(rows, cols)
    for dt, tol in (("float32", 1e-6), ("float64", 1e-12)):
        # tolerance: the float64 Q is orthogonal to ~1e-15 * n; rounding each entry to float32
        # (relative error <= 2^-24) moves an entry of Q^T Q by <= 2 * 2^-24 * sum_k |a_k b_k|
        # <= 2^-23 = 1.2e-7 (Cauchy-Schwarz, unit columns): 1e-6 leaves 8x margin, while a matrix
        # that is not (semi-)orthogonal, e.g. the normal draw itself, is off by O(1).
        for gain in (1.0, 2.5):
            w = sbf.orthogonal(shape, KEY / str(shape), gain, layout=layout, dtype=dt)
            assert w.shape == shape and w.dtype == np.dtype(dt)
            m = w.astype(np.float64).reshape(rows, cols) / gain
            gram = m.T @ m if rows >= cols else m @ m.T
            assert np.abs(gram - np.eye(k)).max() < tol, (dt, gain)
            if gain != 1.0:
                assert_same_bits(w, (gain * sbf.orthogonal(shape, KEY / str(shape), layout=layout,
                                                           dtype="float64")).astype(dt))
    # the torch / JAX recipe: Q of the QR of a (max, min) float64 normal draw from the key, with
    # signs fixed so that R = Q^T A has a positive diagonal (without the fix Q is not Haar)
    q = sbf.orthogonal(shape, KEY / str(shape), layout=layout, dtype="float64").reshape(rows, cols)
    tall = q if rows >= cols else q.T
    a = sbf.normal(tall.shape, KEY / str(shape), dtype="float64")
    r = tall.T @ a
    assert np.abs(np.tril(r, -1)).max(initial=0) < 1e-9
    assert (np.diagonal(r) > 0).all()
    # not a signed permutation or other degenerate matrix: most entries are O(1 / sqrt(max))
    if k > 1:
        assert np.mean(np.abs(q) > 1e-3 / math.sqrt(max(rows, cols))) > 0.9


def test_orthogonal_square_is_orthogonal_both_ways_and_layouts_differ():
    a = sbf.orthogonal((30, 30), KEY).astype(np.float64)
    assert np.abs(a @ a.T - np.eye(30)).max() < 1e-6 and np.abs(a.T @ a - np.eye(30)).max() < 1e-6
    # oi (6, 60) and io (72, 5) views of the same 4-D shape are different matrices
    assert not np.array_equal(sbf.orthogonal((6, 4, 3, 5), KEY, layout="oi"),
                              sbf.orthogonal((6, 4, 3, 5), KEY, layout="io"))
    # 2-D: both layouts orthogonalize the matrix itself, so they give the same result
    assert_same_bits(sbf.orthogonal((40, 12), KEY, layout="oi"), sbf.orthogonal((40, 12), KEY, layout="io"))


def test_orthogonal_zero_size():
    assert sbf.orthogonal((0, 5), KEY).shape == (0, 5)
    assert sbf.orthogonal((3, 0, 2), KEY, layout="oi").shape == (3, 0, 2)


# ---------------------------------------------------------------------------
# 5. identity / eye, dirac, sparse
# ---------------------------------------------------------------------------
def _as(dt, a):
    """a (float64) rounded to dtype dt the way a single correct rounding would."""
    return np.asarray(a, np.float64).astype(DTYPES[dt])


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4), (1, 1), (0, 3), (1, 6)])
def test_identity(shape):
    for dt in FLOAT_DTYPES:
        for gain in (1.0, 0.5, 3):
            got = sbf.identity(shape, gain=gain, dtype=dt)
            assert_same_bits(got, _as(dt, gain * np.eye(*shape)))
            assert_same_bits(sbf.eye(shape, None, gain, dtype=dt), got)
    assert_same_bits(sbf.identity(shape, 123), sbf.identity(shape))      # the key is ignored


def ref_dirac_oi(shape, groups):
    """torch.nn.init.dirac_ as documented: in each group, output d of the group gets a 1 at
    input channel d, kernel centre k // 2, for d < min(out // groups, in)."""
    w = np.zeros(shape)
    per = shape[0] // groups
    centre = tuple(k // 2 for k in shape[2:])
    for g in range(groups):
        for d in range(min(per, shape[1])):
            w[(g * per + d, d) + centre] = 1.0
    return w


def oi_to_io(w):
    """(out, in, *k) -> (*k, in, out)."""
    nd = w.ndim - 2
    return np.transpose(w, tuple(range(2, 2 + nd)) + (1, 0))


def conv_same(x, w, groups=1):
    """Cross-correlation (torch's conv) with zero 'same' padding of x (C_in, *spatial) by an
    (out, in // groups, *k) weight with odd k."""
    k = w.shape[2:]
    nd = len(k)
    xp = np.pad(x, [(0, 0)] + [(kk // 2, kk // 2) for kk in k])
    win = sliding_window_view(xp, k, axis=tuple(range(1, 1 + nd)))      # (C_in, *spatial, *k)
    sp, kk = "abc"[:nd], "xyz"[:nd]
    out_per, in_per = w.shape[0] // groups, x.shape[0] // groups
    ys = [np.einsum(f"oi{kk},i{sp}{kk}->o{sp}", w[g * out_per:(g + 1) * out_per],
                    win[g * in_per:(g + 1) * in_per]) for g in range(groups)]
    return np.concatenate(ys, axis=0)


DIRAC_CASES = [((4, 4, 3), 1), ((6, 3, 3, 5), 2), ((8, 2, 3, 3, 3), 2), ((2, 5, 5), 1), ((6, 6, 1, 3), 3),
               ((4, 2, 4), 1), ((9, 3, 2, 2), 3)]


@pytest.mark.parametrize("shape,groups", DIRAC_CASES, ids=[f"{s}-g{g}" for s, g in DIRAC_CASES])
def test_dirac(shape, groups):
    ref = ref_dirac_oi(shape, groups)
    for dt in FLOAT_DTYPES:
        oi = sbf.dirac(shape, groups=groups, dtype=dt)
        assert_same_bits(oi, _as(dt, ref))
        io = sbf.dirac(oi_to_io(ref).shape, groups=groups, layout="io", dtype=dt)
        assert_same_bits(io, np.ascontiguousarray(oi_to_io(oi)))
    assert_same_bits(sbf.dirac(shape, 7, groups), sbf.dirac(shape, None, groups))     # key ignored
    if all(k % 2 for k in shape[2:]):
        # as a conv weight: output g * per + d is input channel d (a plain conv) ...
        w = sbf.dirac(shape, groups=groups).astype(np.float64)
        per, n_in = shape[0] // groups, shape[1]
        rng = np.random.default_rng(1)
        x = rng.standard_normal((n_in,) + (5, 4, 3)[:len(shape) - 2])
        y = conv_same(x, w)
        for o in range(shape[0]):
            d = o - (o // per) * per
            np.testing.assert_array_equal(y[o], x[d] if d < n_in else 0 * x[0])
        # ... and with the weight of a grouped conv (in // groups channels per group) whose
        # groups are as wide as the output groups, the conv is the identity (torch's use case)
        if per == n_in:
            xg = rng.standard_normal((n_in * groups,) + (5, 4, 3)[:len(shape) - 2])
            np.testing.assert_array_equal(conv_same(xg, w, groups), xg)
            # the io layout's weight acts the same after transposing back
            wio = sbf.dirac(oi_to_io(w).shape, groups=groups, layout="io").astype(np.float64)
            w_back = np.transpose(wio, (wio.ndim - 1, wio.ndim - 2) + tuple(range(wio.ndim - 2)))
            np.testing.assert_array_equal(conv_same(xg, w_back, groups), xg)


SPARSE_CASES = [((50, 30), 0.25), ((7, 40), 0.1), ((33, 9), 0.9), ((20, 20), 0.0), ((1, 5), 0.5),
                ((64, 3), 0.5)]


@pytest.mark.parametrize("shape,sparsity", SPARSE_CASES, ids=[f"{s}-{p}" for s, p in SPARSE_CASES])
def test_sparse_structure(shape, sparsity):
    std = 0.02
    x = sbf.sparse(shape, KEY, sparsity, std)
    assert x.shape == shape and x.dtype == np.float32
    # torch.nn.init.sparse_: in each column of the (out, in) matrix, ceil(sparsity * rows) zeros
    assert ((x == 0).sum(axis=0) == math.ceil(sparsity * shape[0])).all()
    # the others are the N(0, std^2) draw from the key (docstring: "values are N(0, std^2) from key")
    vals = sbf.normal(shape, KEY, 0.0, std)
    assert_same_bits(x[x != 0], vals[x != 0])
    # deterministic, and the key changes the mask
    assert_same_bits(sbf.sparse(shape, KEY, sparsity, std), x)
    if 0 < math.ceil(sparsity * shape[0]) < shape[0] and shape[1] > 5:
        assert not np.array_equal(sbf.sparse(shape, KEY / "other", sparsity, std) == 0, x == 0)
    # io layout: the transpose convention, zeros per row: its mask is the oi mask of the transpose
    xt = sbf.sparse(shape[::-1], KEY, sparsity, std, layout="io")
    assert ((xt == 0).sum(axis=1) == math.ceil(sparsity * shape[0])).all()
    np.testing.assert_array_equal(xt == 0, (x == 0).T)


def test_sparse_mask_is_the_documented_rule():
    # docs/INIT.md: the zeros of each column of the (rows, cols) matrix are the ceil(sparsity * rows)
    # rows with the smallest random_bits(key / "sparse.mask"), ties broken by row index
    for shape, layout in [((50, 30), "oi"), ((30, 50), "io"), ((9, 4), "oi")]:
        mat = shape if layout == "oi" else shape[::-1]
        ranks = sbf.random_bits(mat, KEY / "sparse.mask")
        n_zero = math.ceil(0.25 * mat[0])
        expected = np.zeros(mat, dtype=bool)
        for j in range(mat[1]):
            order = sorted(range(mat[0]), key=lambda i: (int(ranks[i, j]), i))
            expected[order[:n_zero], j] = True
        x = sbf.sparse(shape, KEY, 0.25, layout=layout)
        np.testing.assert_array_equal(x == 0, expected if layout == "oi" else expected.T)


def test_sparse_statistics():
    # n = 2 * 10**6 entries, half of them zero: 10**6 nonzeros ~ N(0, std^2) (see check_draw_stats)
    std = 0.01
    x = sbf.sparse((1000, 2000), KEY / "stats", 0.5, std)
    nz = x[x != 0]
    assert nz.size == 10 ** 6
    check_draw_stats(nz, "normal", std, "sparse nonzeros")
    # the zero rows of different columns are chosen independently and uniformly: the number of
    # columns in which a given row is zero is Binomial(2000, 0.5) -> |z| < 6 for each of the 1000 rows
    # (1000 checks at 2e-9 each)
    per_row = (x == 0).sum(axis=1)
    z = (per_row - 1000) / math.sqrt(2000 * 0.25)
    assert np.abs(z).max() < Z_MAX


def test_sparse_masks_differ_between_columns():
    # every column has its own random zero set (not one row pattern repeated): 3 zeros among 50
    # rows give C(50, 3) = 19600 equally likely sets; 40 independent columns have 780 pairs, so
    # 0.04 equal pairs on average, and 10 or more (needed for <= 30 distinct sets) has
    # probability < 0.04^10 / 10! < 1e-20
    x = sbf.sparse((50, 40), KEY, 0.05)
    patterns = {tuple(np.flatnonzero(x[:, j] == 0)) for j in range(40)}
    assert len(patterns) > 30


# ---------------------------------------------------------------------------
# 6. zeros / ones / constant
# ---------------------------------------------------------------------------
CONST_INDICES = [None, (1,), (slice(0, 2), slice(1, None)), (-1, 2), (slice(1, 3),)]


@pytest.mark.parametrize("dt", FLOAT_DTYPES)
@pytest.mark.parametrize("index", CONST_INDICES, ids=str)
def test_constants(dt, index):
    shape = (4, 5)
    full_shape = np.empty(shape)[index if index is not None else ()].shape
    for fn, value in [(lambda **kw: sbf.zeros(shape, **kw), 0.0), (lambda **kw: sbf.ones(shape, **kw), 1.0),
                      (lambda **kw: sbf.constant(shape, None, 0.1, **kw), 0.1),
                      (lambda **kw: sbf.constant(shape, KEY, -2.5, **kw), -2.5),
                      (lambda **kw: sbf.constant(shape, value=3, **kw), 3.0),
                      (lambda **kw: sbf.constant(shape, value=np.float32(1e-3), **kw), float(np.float32(1e-3)))]:
        got = fn(dtype=dt, index=index)
        assert_same_bits(got, np.full(full_shape, _as(dt, value)))
        out = np.full(full_shape, 7, dtype=got.dtype)
        assert fn(dtype=dt, index=index, out=out) is out
        assert_same_bits(out, got)
    # zeros are +0.0 (all bits clear)
    assert not bits_of(sbf.zeros(shape, dtype=dt)).any()


def test_constant_default_dtype_and_shapes():
    assert sbf.zeros(3).dtype == np.float32 and sbf.zeros(3).shape == (3,)
    assert sbf.ones(()).shape == ()
    assert sbf.constant((0, 4), value=5.0).shape == (0, 4)


# ---------------------------------------------------------------------------
# 7. init_params
# ---------------------------------------------------------------------------
SPEC = {
    "enc.w": ((20, 12), "he_normal"),
    "enc.b": ((12,), "zeros"),
    "dec.w": {"shape": (12, 7), "init": "xavier_uniform", "gain": 2.0},
    "emb": ((9, 4), "normal", {"std": 0.02}),
    "rec": ([6, 6], "orthogonal"),
    "conv": ((4, 4, 3, 3), "dirac", {"layout": "oi"}),
    "sp": ((10, 8), "sparse", {"sparsity": 0.3}),
    "scale": (5, "constant", {"value": 1.5}),
    "eye": ((3, 3), "eye"),
    "tn": ((5, 3), "truncated_normal", {"std": 0.5}),
    "vs": ((3, 5, 8, 16), "variance_scaling", {"scale": 2.0, "mode": "fan_avg", "distribution": "uniform"}),
    "u": ((4, 2), "uniform", {"low": -0.1, "high": 0.3}),
}
DIRECT = {   # what init_params must give for each name: the initializer called with key / name
    "enc.w": lambda k, **kw: sbf.he_normal((20, 12), k, **kw),
    "enc.b": lambda k, **kw: sbf.zeros((12,), k, **kw),
    "dec.w": lambda k, **kw: sbf.xavier_uniform((12, 7), k, gain=2.0, **kw),
    "emb": lambda k, **kw: sbf.normal((9, 4), k, std=0.02, **kw),
    "rec": lambda k, **kw: sbf.orthogonal((6, 6), k, **kw),
    "conv": lambda k, **kw: sbf.dirac((4, 4, 3, 3), k, layout="oi", **kw),
    "sp": lambda k, **kw: sbf.sparse((10, 8), k, 0.3, **kw),
    "scale": lambda k, **kw: sbf.constant((5,), k, 1.5, **kw),
    "eye": lambda k, **kw: sbf.eye((3, 3), k, **kw),
    "tn": lambda k, **kw: sbf.truncated_normal((5, 3), k, std=0.5, **kw),
    "vs": lambda k, **kw: sbf.variance_scaling((3, 5, 8, 16), k, 2.0, "fan_avg", "uniform", **kw),
    "u": lambda k, **kw: sbf.uniform((4, 2), k, -0.1, 0.3, **kw),
}


def test_init_params_is_key_slash_name():
    params = sbf.init_params(SPEC, KEY)
    assert list(params) == list(SPEC)
    for name, arr in params.items():
        assert_same_bits(arr, DIRECT[name](KEY / name))
    # an int seed is Key(seed)
    for name, arr in sbf.init_params(SPEC, 1234).items():
        assert_same_bits(arr, DIRECT[name](sbf.Key(1234) / name))


def test_init_params_order_invariance():
    ref = sbf.init_params(SPEC, KEY)
    names = list(SPEC)
    variants = [
        dict(reversed(list(SPEC.items()))),                               # reordered
        {n: SPEC[n] for n in names[::2]},                                 # removed entries
        {"new.first": ((30, 30), "he_uniform"), **SPEC, "new.last": ((2, 2), "ones")},   # added entries
        {n: SPEC[n] for n in [names[i] for i in (3, 0, 9, 11, 5, 1, 10, 7, 2, 8, 4, 6)]},   # shuffled
    ]
    for spec in variants:
        got = sbf.init_params(spec, KEY)
        for name in spec:
            if name in ref:
                assert_same_bits(got[name], ref[name])


def test_init_params_name_and_key_dependence():
    a = sbf.init_params({"w": ((16, 16), "he_normal")}, KEY)["w"]
    b = sbf.init_params({"w_": ((16, 16), "he_normal")}, KEY)["w_"]
    c = sbf.init_params({"w": ((16, 16), "he_normal")}, KEY / "x")["w"]
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # two parameters with the same entry but different names are different tensors
    p = sbf.init_params({"q": ((8, 8), "xavier_uniform"), "k": ((8, 8), "xavier_uniform")}, KEY)
    assert not np.array_equal(p["q"], p["k"])


def test_init_params_spec_forms_and_kwargs():
    tup = sbf.init_params({"w": ((12, 7), "he_uniform", {"mode": "fan_out", "a": 0.1})}, KEY)["w"]
    lst = sbf.init_params({"w": [[12, 7], "he_uniform", {"mode": "fan_out", "a": 0.1}]}, KEY)["w"]
    dct = sbf.init_params({"w": {"shape": [12, 7], "init": "he_uniform", "mode": "fan_out", "a": 0.1}}, KEY)["w"]
    fn = sbf.init_params({"w": ((12, 7), sbf.he_uniform, {"mode": "fan_out", "a": 0.1})}, KEY)["w"]
    direct = sbf.he_uniform((12, 7), KEY / "w", 0.1, "fan_out")
    for x in (tup, lst, dct, fn):
        assert_same_bits(x, direct)
    # the spec dict and its kwargs dict are not modified
    entry = {"shape": (3, 3), "init": "constant", "value": 2.0}
    kw = {"value": 2.0}
    sbf.init_params({"a": entry, "b": ((3, 3), "constant", kw)}, KEY)
    assert entry == {"shape": (3, 3), "init": "constant", "value": 2.0} and kw == {"value": 2.0}


def test_init_params_callable():
    calls = []

    def my_init(shape, key, *, scale, dtype, backend=None, out=None):
        calls.append((shape, key, scale, dtype, backend))
        return sbf.normal(shape, key, 0.0, scale, dtype=dtype, backend=backend, out=out)

    p = sbf.init_params({"w": ((3, 4), my_init, {"scale": 0.5})}, 7, dtype="float64", backend="numpy")
    assert calls == [((3, 4), sbf.Key(7) / "w", 0.5, "float64", "numpy")]
    assert_same_bits(p["w"], sbf.normal((3, 4), sbf.Key(7) / "w", 0.0, 0.5, dtype="float64"))


def test_init_params_dtype():
    for dt in FLOAT_DTYPES:
        p = sbf.init_params(SPEC, KEY, dtype=dt)
        for name, arr in p.items():
            assert arr.dtype == DTYPES[dt]
            assert_same_bits(arr, DIRECT[name](KEY / name, dtype=dt))
    # a per-entry dtype overrides the default
    p = sbf.init_params({"a": ((4, 4), "he_normal", {"dtype": "float16"}), "b": ((4, 4), "he_normal")}, KEY,
                        dtype="float64")
    assert p["a"].dtype == np.float16 and p["b"].dtype == np.float64
    assert_same_bits(p["a"], sbf.he_normal((4, 4), KEY / "a", dtype="float16"))


@pytest.mark.parametrize("dt", ["float32", "bfloat16"])
def test_init_params_flat(dt):
    ref = sbf.init_params(SPEC, KEY, dtype=dt)
    buf, views = sbf.init_params(SPEC, KEY, dtype=dt, flat=True)
    sizes = [ref[n].size for n in SPEC]
    assert buf.ndim == 1 and buf.dtype == DTYPES[dt] and buf.size == sum(sizes)
    assert buf.flags.c_contiguous
    assert list(views) == list(SPEC)
    off = 0
    for name, n in zip(SPEC, sizes):
        v = views[name]
        assert v.shape == ref[name].shape
        assert np.shares_memory(v, buf)
        # in spec order, back to back
        assert v.__array_interface__["data"][0] == buf.__array_interface__["data"][0] + off * buf.itemsize
        assert_same_bits(v, ref[name])
        assert_same_bits(buf[off:off + n], ref[name].reshape(-1))
        off += n
    # the views are views: writing the buffer shows through
    buf[:] = 0
    assert all(not bits_of(v).any() for v in views.values())


def test_init_params_flat_edge_cases():
    buf, views = sbf.init_params({}, KEY, flat=True)
    assert buf.size == 0 and buf.dtype == np.float32 and views == {}
    assert sbf.init_params({}, KEY) == {}
    with pytest.raises(ValueError, match="one dtype"):
        sbf.init_params({"a": ((2, 2), "zeros", {"dtype": "float16"}), "b": ((2, 2), "zeros")}, KEY, flat=True)


def test_register_initializer(monkeypatch):
    monkeypatch.setattr(sbi, "INITIALIZERS", dict(sbi.INITIALIZERS))    # keep the registry clean
    before = sbi.INITIALIZERS["he_normal"]
    with pytest.raises(ValueError, match="'he_normal' is already registered"):
        sbf.register_initializer("he_normal", lambda shape, key, **kw: None)
    assert sbi.INITIALIZERS["he_normal"] is before

    def halves(shape, key, *, dtype, backend=None, out=None):
        return sbf.constant(shape, key, 0.5, dtype=dtype, out=out)

    sbf.register_initializer("halves", halves)
    with pytest.raises(ValueError, match="already registered"):
        sbf.register_initializer("halves", halves)
    assert_same_bits(sbf.init_params({"h": ((2, 3), "halves")}, KEY)["h"], np.full((2, 3), 0.5, np.float32))


def test_init_params_unknown_initializer_lists_known():
    with pytest.raises(ValueError, match="parameter 'w': unknown initializer 'he_norml'") as ei:
        sbf.init_params({"w": ((3, 3), "he_norml")}, KEY)
    for name in sbi.INITIALIZERS:
        assert repr(name) in str(ei.value)


@pytest.mark.parametrize("spec,exc,msg", [
    ({"w": ((3, 3),)}, ValueError, "expected \\(shape, init\\[, kwargs\\]\\)"),
    ({"w": ((3, 3), "zeros", {}, 1)}, ValueError, "expected"),
    ({"w": "zeros"}, ValueError, "expected"),
    ({"w": {"shape": (3, 3)}}, ValueError, "'shape' and 'init'"),
    ({"w": {"init": "zeros"}}, ValueError, "'shape' and 'init'"),
    ({3: ((3, 3), "zeros")}, TypeError, "names must be str"),
    ([("w", ((3, 3), "zeros"))], TypeError, "mapping"),
    ({"w": ((3, 3), 5)}, ValueError, "unknown initializer 5"),
])
def test_init_params_bad_spec(spec, exc, msg):
    with pytest.raises(exc, match=msg):
        sbf.init_params(spec, KEY)


# ---------------------------------------------------------------------------
# 8. every initializer: numpy == other backends bit for bit, index= == full[index], out=
# ---------------------------------------------------------------------------
FAN_SHAPES = [(7, 33), (3, 5, 2, 2), (64, 48), (1, 1), (0, 4), (2, 3, 4, 5, 3)]
MAT_SHAPES = [(7, 33), (33, 7), (64, 48), (1, 1)]
CONV_SHAPES = [(3, 5, 2, 2), (4, 4, 3), (6, 2, 3, 3, 3), (6, 3, 3, 5)]
INITS = {   # name -> (call(shape, key, **kw), shapes)
    "variance_scaling": (lambda s, k, **kw: sbf.variance_scaling(s, k, 0.7, "fan_geo_avg", **kw), FAN_SHAPES),
    "xavier_uniform": (lambda s, k, **kw: sbf.xavier_uniform(s, k, 1.3, layout="oi", **kw), FAN_SHAPES),
    "glorot_uniform": (lambda s, k, **kw: sbf.glorot_uniform(s, k, **kw), FAN_SHAPES),
    "xavier_normal": (lambda s, k, **kw: sbf.xavier_normal(s, k, **kw), FAN_SHAPES),
    "glorot_normal": (lambda s, k, **kw: sbf.glorot_normal(s, k, distribution="truncated_normal", **kw),
                      FAN_SHAPES),
    "he_uniform": (lambda s, k, **kw: sbf.he_uniform(s, k, **kw), FAN_SHAPES),
    "kaiming_uniform": (lambda s, k, **kw: sbf.kaiming_uniform(s, k, math.sqrt(5), layout="oi", **kw),
                        FAN_SHAPES),
    "he_normal": (lambda s, k, **kw: sbf.he_normal(s, k, mode="fan_out", **kw), FAN_SHAPES),
    "kaiming_normal": (lambda s, k, **kw: sbf.kaiming_normal(s, k, distribution="truncated_normal",
                                                             in_axis=0, out_axis=1, **kw), FAN_SHAPES),
    "lecun_uniform": (lambda s, k, **kw: sbf.lecun_uniform(s, k, **kw), FAN_SHAPES),
    "lecun_normal": (lambda s, k, **kw: sbf.lecun_normal(s, k, **kw), FAN_SHAPES),
    "zeros": (lambda s, k, **kw: sbf.zeros(s, k, **kw), FAN_SHAPES),
    "ones": (lambda s, k, **kw: sbf.ones(s, k, **kw), FAN_SHAPES),
    "constant": (lambda s, k, **kw: sbf.constant(s, k, -0.375, **kw), FAN_SHAPES),
    "orthogonal": (lambda s, k, **kw: sbf.orthogonal(s, k, 1.5, **kw), FAN_SHAPES),
    "orthogonal-oi": (lambda s, k, **kw: sbf.orthogonal(s, k, layout="oi", **kw), FAN_SHAPES),
    "identity": (lambda s, k, **kw: sbf.identity(s, k, 2.0, **kw), MAT_SHAPES),
    "eye": (lambda s, k, **kw: sbf.eye(s, k, **kw), MAT_SHAPES),
    "dirac": (lambda s, k, **kw: sbf.dirac(s, k, **kw), CONV_SHAPES),
    "dirac-io-groups": (lambda s, k, **kw: sbf.dirac(s, k, 2 if s[-1] % 2 == 0 else 1, layout="io", **kw),
                        CONV_SHAPES),
    "sparse": (lambda s, k, **kw: sbf.sparse(s, k, 0.3, 0.1, **kw), MAT_SHAPES + [(0, 4)]),
    "sparse-io": (lambda s, k, **kw: sbf.sparse(s, k, 0.6, layout="io", **kw), MAT_SHAPES),
}
GENERATOR_NAMES = {"uniform", "normal", "truncated_normal"}      # covered by test_backends.py


def test_numba_is_among_the_compared_backends():
    # numba is a core dependency: the bit-identity checks below must not silently compare nothing
    pytest.importorskip("numba")
    assert "numba" in OTHER_BACKENDS


def test_every_registered_initializer_is_covered():
    assert set(sbi.INITIALIZERS) - GENERATOR_NAMES <= {n.split("-")[0] for n in INITS}


def indices_for(shape):
    idx = [tuple(slice(d // 3, d - d // 4) for d in shape)]
    if all(shape):
        idx += [(-1,), (slice(None), shape[1] - 1), tuple(d // 2 for d in shape), (0, slice(1, None))]
    return idx


@pytest.mark.parametrize("name", INITS)
def test_backends_index_out(name):
    from conftest import CPU_BACKENDS          # numpy-array backends; the GPU's: tests/test_gpu.py
    cpu_other = [b for b in CPU_BACKENDS if b != "numpy"]
    fn, shapes = INITS[name]
    for shape in shapes:
        for dt in FLOAT_DTYPES:
            key = KEY / name / str(shape)
            full = fn(shape, key, dtype=dt, backend="numpy")
            assert full.shape == shape and full.dtype == DTYPES[dt]
            for b in cpu_other:
                assert_same_bits(fn(shape, key, dtype=dt, backend=b), full)
            assert_same_bits(fn(shape, key, dtype=dt), full)                       # auto backend
            for index in indices_for(shape):
                for b in CPU_BACKENDS:
                    assert_same_bits(fn(shape, key, dtype=dt, index=index, backend=b), full[index])
            out = np.full(shape, 9, dtype=full.dtype)
            assert fn(shape, key, dtype=dt, out=out) is out
            assert_same_bits(out, full)


@pytest.mark.parametrize("name", INITS)
def test_bad_out_rejected(name):
    fn, shapes = INITS[name]
    shape = shapes[0]
    for out, exc, msg in [(np.zeros(shape[::-1] + (2,), np.float32), ValueError, "shape"),
                          (np.zeros(shape, np.float64), ValueError, "dtype"),
                          ([0.0], TypeError, "numpy.ndarray")]:
        with pytest.raises(exc, match=msg):
            fn(shape, KEY, out=out)


# ---------------------------------------------------------------------------
# 9. bad input
# ---------------------------------------------------------------------------
S = (6, 4)
BAD = [
    # schemes, modes, distributions
    (lambda: sbf.variance_scaling(S, KEY, mode="fan_sum"), ValueError, "mode must be one of"),
    (lambda: sbf.variance_scaling(S, KEY, mode="FAN_IN"), ValueError, "mode must be one of"),
    (lambda: sbf.variance_scaling(S, KEY, distribution="gaussian"), ValueError, "distribution must be one of"),
    (lambda: sbf.xavier_normal(S, KEY, distribution="truncated"), ValueError, "presets take distribution"),
    (lambda: sbf.he_normal(S, KEY, distribution="Normal"), ValueError, "presets take distribution"),
    (lambda: sbi.variance_scaling_params(S, 1.0, "fan_in", "cauchy"), ValueError, "distribution must be one of"),
    (lambda: sbf.he_uniform(S, KEY, mode="fan_avg"), ValueError, "'fan_in' or 'fan_out'"),
    (lambda: sbf.he_normal(S, KEY, mode="fan_geo_avg"), ValueError, "'fan_in' or 'fan_out'"),
    (lambda: sbf.he_uniform(S, KEY, nonlinearity="gelu"), ValueError, "Unsupported nonlinearity gelu"),
    (lambda: sbf.kaiming_normal(S, KEY, a="0.1"), ValueError, "not a valid number"),
    # scale and gain
    (lambda: sbf.variance_scaling(S, KEY, scale=0.0), ValueError, "scale must be a positive finite"),
    (lambda: sbf.variance_scaling(S, KEY, scale=-1.0), ValueError, "scale must be a positive finite"),
    (lambda: sbf.variance_scaling(S, KEY, scale=float("nan")), ValueError, "scale must be a positive finite"),
    (lambda: sbf.variance_scaling(S, KEY, scale=float("inf")), ValueError, "scale must be a positive finite"),
    (lambda: sbf.variance_scaling(S, KEY, scale="1"), ValueError, "scale must be a positive finite"),
    (lambda: sbf.xavier_uniform(S, KEY, gain=0.0), ValueError, "gain must be a positive finite"),
    (lambda: sbf.xavier_uniform(S, KEY, gain=-1.0), ValueError, "gain must be a positive finite"),
    (lambda: sbf.xavier_normal(S, KEY, gain=float("nan")), ValueError, "gain must be a positive finite"),
    (lambda: sbf.glorot_normal(S, KEY, gain=float("inf")), ValueError, "gain must be a positive finite"),
    (lambda: sbf.xavier_uniform(S, KEY, gain=True), ValueError, "gain must be a positive finite"),
    (lambda: sbf.orthogonal(S, KEY, gain=0), ValueError, "gain must be a positive finite"),
    (lambda: sbf.orthogonal(S, KEY, gain=-2.0), ValueError, "gain must be a positive finite"),
    # sparse
    (lambda: sbf.sparse(S, KEY, 1.0), ValueError, "sparsity must be in \\[0, 1\\)"),
    (lambda: sbf.sparse(S, KEY, 1.5), ValueError, "sparsity must be in \\[0, 1\\)"),
    (lambda: sbf.sparse(S, KEY, -0.1), ValueError, "sparsity must be in \\[0, 1\\)"),
    (lambda: sbf.sparse(S, KEY, float("nan")), ValueError, "sparsity must be in \\[0, 1\\)"),
    (lambda: sbf.sparse(S, KEY, "0.5"), ValueError, "sparsity must be in \\[0, 1\\)"),
    (lambda: sbf.sparse(S, KEY, 0.5, std=-0.01), ValueError, "std must be a finite number >= 0"),
    (lambda: sbf.sparse(S, KEY, 0.5, std=float("inf")), ValueError, "std must be a finite number >= 0"),
    (lambda: sbf.sparse((6, 4, 2), KEY, 0.5), ValueError, "sparse needs a 2-D shape"),
    (lambda: sbf.sparse((6,), KEY, 0.5), ValueError, "sparse needs a 2-D shape"),
    (lambda: sbf.sparse(S, "key", 0.5), TypeError, "seed must be an int"),
    # orthogonal, identity, dirac shapes and groups
    (lambda: sbf.orthogonal((5,), KEY), ValueError, "orthogonal needs at least 2 dims"),
    (lambda: sbf.orthogonal((), KEY), ValueError, "orthogonal needs at least 2 dims"),
    (lambda: sbf.identity((3, 3, 3)), ValueError, "2-D shape"),
    (lambda: sbf.eye((3,)), ValueError, "2-D shape"),
    (lambda: sbf.dirac((4, 4)), ValueError, "3-, 4- or 5-D"),
    (lambda: sbf.dirac((4, 4, 3, 3, 3, 3)), ValueError, "3-, 4- or 5-D"),
    (lambda: sbf.dirac((4, 4, 3), groups=3), ValueError, "divisible by groups=3"),
    (lambda: sbf.dirac((3, 4, 5), groups=2, layout="io"), ValueError, "out channels \\(5, dim 2.*groups=2"),
    (lambda: sbf.dirac((4, 4, 3), groups=0), ValueError, "groups must be a positive int"),
    (lambda: sbf.dirac((4, 4, 3), groups=2.0), ValueError, "groups must be a positive int"),
    (lambda: sbf.dirac((4, 4, 3), groups=True), ValueError, "groups must be a positive int"),
    # layouts and axes
    (lambda: sbf.fan_in_fan_out(S, "OI"), ValueError, "layout must be 'io'"),
    (lambda: sbf.fan_in_fan_out(S, "torch"), ValueError, "layout must be 'io'"),
    (lambda: sbf.xavier_uniform(S, KEY, layout="pytorch"), ValueError, "layout must be"),
    (lambda: sbf.he_normal((3, 3, 4, 8), KEY, layout="hwio"), ValueError, "layout must be"),
    (lambda: sbf.lecun_uniform(S, KEY, layout=None), ValueError, "layout must be"),
    (lambda: sbf.orthogonal(S, KEY, layout="xy"), ValueError, "layout must be 'io' or 'oi'"),
    (lambda: sbf.dirac((4, 4, 3), layout="xy"), ValueError, "layout must be 'io' or 'oi'"),
    (lambda: sbf.sparse(S, KEY, 0.5, layout="xy"), ValueError, "layout must be 'io' or 'oi'"),
    (lambda: sbf.fan_in_fan_out(S, in_axis=2), ValueError, "in_axis=2 is not a valid axis for a 2-D shape"),
    (lambda: sbf.fan_in_fan_out(S, out_axis=-3), ValueError, "out_axis=-3 is not a valid axis"),
    (lambda: sbf.fan_in_fan_out(S, in_axis=True), ValueError, "not a valid axis"),
    (lambda: sbf.fan_in_fan_out(S, in_axis="0"), ValueError, "not a valid axis"),
    (lambda: sbf.fan_in_fan_out((2, 3, 4), in_axis=(0, 1), out_axis=1), ValueError, "overlap"),
    (lambda: sbf.fan_in_fan_out(S, in_axis=-1), ValueError, "overlap"),       # out_axis defaults to -1
    # constants
    (lambda: sbf.constant(S, value=float("nan")), ValueError, "value must be a finite number"),
    (lambda: sbf.constant(S, value=float("inf")), ValueError, "value must be a finite number"),
    (lambda: sbf.constant(S, value="1"), ValueError, "value must be a finite number"),
    (lambda: sbf.constant(S, value=None), ValueError, "value must be a finite number"),
    (lambda: sbf.zeros(S, dtype="int32"), TypeError, "unsupported dtype"),
    (lambda: sbf.orthogonal(S, KEY, dtype="float8"), TypeError, "unsupported dtype"),
    (lambda: sbf.dirac((4, 4, 3), dtype="int8"), TypeError, "unsupported dtype"),
    # init_params
    (lambda: sbf.init_params({"w": ((3, 3), "glorot")}, KEY), ValueError, "unknown initializer 'glorot'"),
    (lambda: sbf.init_params({"w": ((3,), "he_normal")}, KEY), ValueError, "at least 2 dims"),
]


@pytest.mark.parametrize("call,exc,msg", BAD, ids=[f"{i:02d}-{m[:28]}" for i, (_, _, m) in enumerate(BAD)])
def test_bad_input(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


def test_bad_input_leaves_out_untouched():
    out = np.full(S, 7.0, np.float32)
    for call in [lambda: sbf.xavier_uniform(S, KEY, gain=-1.0, out=out),
                 lambda: sbf.orthogonal(S, KEY, layout="xy", out=out),
                 lambda: sbf.sparse(S, KEY, 2.0, out=out),
                 lambda: sbf.he_normal(S, KEY, mode="fan_avg", out=out),
                 lambda: sbf.constant(S, value=float("nan"), out=out)]:
        with pytest.raises(ValueError):
            call()
        assert (out == 7.0).all()


# ---------------------------------------------------------------------------
# formerly known defects (found by these tests, fixed in init.py): regression guards
# ---------------------------------------------------------------------------
def test_float_axis_is_a_helpful_error():
    with pytest.raises(ValueError, match="in_axis=1.0 is not a valid axis"):
        sbf.fan_in_fan_out((6, 4), in_axis=1.0)


def test_repeated_axes_are_rejected():
    with pytest.raises(ValueError):
        sbf.fan_in_fan_out((4, 5, 6), in_axis=(0, 0))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("call", [
    lambda: sbf.constant((2,), value=1e5, dtype="float16"),
    lambda: sbf.constant((2,), value=1e300),
    lambda: sbf.identity((2, 2), gain=1e5, dtype="float16"),
    lambda: sbf.orthogonal((4, 4), KEY, gain=1e6, dtype="float16"),
], ids=["constant-f16", "constant-f32", "identity-f16", "orthogonal-f16"])
def test_overflow_to_inf_is_rejected(call):
    with pytest.raises(ValueError):
        call()


def test_identity_rejects_non_finite_gain():
    with pytest.raises(ValueError, match="gain"):
        sbf.identity((2, 2), gain=float("nan"))


def test_constant_huge_int_is_a_value_error():
    with pytest.raises(ValueError, match="value must be a finite number"):
        sbf.constant((2,), value=10 ** 400)


@pytest.mark.parametrize("dt,value", [("float16", 1 + 2 ** -11 + 2 ** -40), ("bfloat16", 1 + 2 ** -8 + 2 ** -40)])
def test_constant_is_correctly_rounded(dt, value):
    # value lies just above the midpoint between two representable numbers: correct rounding goes up,
    # rounding to float32 first lands exactly on the midpoint and ties-to-even goes down
    assert_same_bits(sbf.constant((1,), value=value, dtype=dt), _as(dt, [value]))


def test_flat_init_params_uses_the_returned_array():
    def no_out(shape, key, **kw):
        return np.full(shape, 0.1234567, np.float32)
    try:
        _, views = sbf.init_params({"a": ((3, 5), no_out)}, KEY, flat=True)
    except (TypeError, ValueError):      # refusing is an acceptable fix too
        return
    np.testing.assert_array_equal(views["a"], np.full((3, 5), 0.1234567, np.float32))
