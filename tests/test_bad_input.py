"""Bad input raises a clear error before anything is written."""
import numpy as np
import pytest

import symbreak_fast as sbf

GENS = {
    "random_bits": lambda *a, **k: sbf.random_bits(*a, **k),
    "uniform": lambda *a, **k: sbf.uniform(*a, **k),
    "normal": lambda *a, **k: sbf.normal(*a, **k),
    "truncated_normal": lambda *a, **k: sbf.truncated_normal(*a, **k),
}

SHAPE_CASES = [
    ((-1, 3), ValueError, ">= 0"),
    ((2.0, 3), TypeError, "ints"),
    ("abc", TypeError, "ints"),
    (None, TypeError, "shape"),
    (True, TypeError, "shape"),
    ((2 ** 32, 2 ** 32), ValueError, "2\\*\\*63"),
]


@pytest.mark.parametrize("gen", GENS)
@pytest.mark.parametrize("shape,exc,msg", SHAPE_CASES)
def test_bad_shape(gen, shape, exc, msg):
    with pytest.raises(exc, match=msg):
        GENS[gen](shape, 0)


@pytest.mark.parametrize("gen", GENS)
@pytest.mark.parametrize("index,exc,msg", [
    ((slice(0, 4, 2),), ValueError, "step 1"),
    ((10,), IndexError, "out of range"),
    ((-11,), IndexError, "out of range"),
    ((slice(0, 11),), IndexError, "out of range"),
    ((0, 0, 0), IndexError, "3 entries"),
    ((Ellipsis,), TypeError, "Ellipsis"),
    ((np.array([1, 2]),), TypeError, "ints or step-1 slices"),
    ((1.0,), TypeError, "ints or step-1 slices"),
])
def test_bad_index(gen, index, exc, msg):
    with pytest.raises(exc, match=msg):
        GENS[gen]((10, 4), 0, index=index)


def test_index_errors_are_value_errors_too():
    with pytest.raises(ValueError):
        sbf.normal((10,), 0, index=(10,))


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(std=-1.0), ValueError, "std must be >= 0"),
    (dict(std=float("nan")), ValueError, "NaN"),
    (dict(mean=float("inf")), ValueError, "finite"),
    (dict(std=float("inf")), ValueError, "finite"),
    (dict(mean="0"), TypeError, "real number"),
    (dict(std=1e5, dtype="float16"), ValueError, "float16"),
    (dict(dtype="int32"), TypeError, "unsupported dtype"),
    (dict(dtype="float8"), TypeError, "unsupported dtype"),
])
def test_bad_normal_params(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        sbf.normal(5, 0, **kw)


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(low=1.0, high=0.0), ValueError, "low <= high"),
    (dict(low=float("nan")), ValueError, "NaN"),
    (dict(high=float("inf")), ValueError, "finite"),
    (dict(low=-3e38, high=3e38), ValueError, "overflows"),
    (dict(low=0.0, high=1e5, dtype="float16"), ValueError, "overflow"),
])
def test_bad_uniform_params(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        sbf.uniform(5, 0, **kw)


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(lower=1.0, upper=1.0), ValueError, "lower < upper"),
    (dict(lower=2.0, upper=-2.0), ValueError, "lower < upper"),
    (dict(lower=float("nan")), ValueError, "NaN"),
    (dict(lower=20.0, upper=30.0), ValueError, "beyond"),
    (dict(lower=-30.0, upper=-20.0), ValueError, "beyond"),
    (dict(std=-0.5), ValueError, "std must be >= 0"),
])
def test_bad_truncated_params(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        sbf.truncated_normal(5, 0, **kw)


@pytest.mark.parametrize("gen", GENS)
def test_bad_out_leaves_it_untouched(gen):
    dt = np.uint32 if gen == "random_bits" else np.float32
    cases = [
        (np.zeros((3, 4), dt), ValueError, "shape"),
        (np.zeros((4, 3), np.float64 if dt is np.float32 else np.int32), ValueError, "dtype"),
        (np.zeros((4, 6), dt)[:, ::2], ValueError, "C-contiguous"),
        ([0.0] * 12, TypeError, "numpy.ndarray"),
    ]
    ro = np.zeros((4, 3), dt)
    ro.flags.writeable = False
    cases.append((ro, ValueError, "read-only"))
    for out, exc, msg in cases:
        before = np.array(out, copy=True)
        with pytest.raises(exc, match=msg):
            GENS[gen]((4, 3), 0, out=out)
        np.testing.assert_array_equal(np.asarray(out), before)


def test_bad_params_leave_out_untouched():
    out = np.full(5, 7.0, np.float32)
    with pytest.raises(ValueError):
        sbf.normal(5, 0, std=-1.0, out=out)
    assert (out == 7.0).all()


def test_unknown_or_unavailable_backend():
    with pytest.raises(ValueError, match="unknown backend"):
        sbf.normal(5, 0, backend="tpu")
    with pytest.raises(TypeError, match="backend must be a str"):
        sbf.normal(5, 0, backend=3)


def test_zero_size_shapes_work():
    for gen in GENS.values():
        assert gen((0, 3), 0).shape == (0, 3)
        assert gen(0, 0).shape == (0,)


def test_truncated_infinite_bound_overflow_is_rejected():
    # with an infinite bound draws reach ~14-16 std, so the check can't use the finite bound alone
    with pytest.raises(ValueError, match="float16"):
        sbf.truncated_normal(10, 7, std=5000.0, lower=-float("inf"), upper=-13.0, dtype="float16")
    x = sbf.truncated_normal(10 ** 5, 7, std=1000.0, lower=-float("inf"), upper=-13.0, dtype="float16")
    assert np.isfinite(x.astype(np.float32)).all()
