"""Every CPU backend produces the NumPy reference's bits, for every generator x dtype x shape
(the GPU backend's comparisons: tests/test_gpu.py)."""
import numpy as np
import pytest

import symbreak_fast as sbf
from conftest import CPU_BACKENDS, assert_same_bits, call, generator_cases

SHAPES = [0, 1, 3, 4, 5, 1023, 4097, (7, 33), (3, 4, 5, 6), (0, 5), (2, 0, 3), (), 65536 + 17]
OTHER = [b for b in CPU_BACKENDS if b != "numpy"]


@pytest.mark.skipif(not OTHER, reason="only the numpy backend is installed")
@pytest.mark.parametrize("backend", OTHER)
@pytest.mark.parametrize("name,dt", list(generator_cases()))
def test_backend_matches_reference(backend, name, dt):
    for shape in SHAPES:
        ref = call(name, dt, shape, 1234, backend="numpy")
        got = call(name, dt, shape, 1234, backend=backend)
        assert_same_bits(ref, got)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name,dt", list(generator_cases()))
def test_out_fills_in_place(backend, name, dt):
    ref = call(name, dt, (5, 7), 99, backend="numpy")
    out = np.full((5, 7), 3, dtype=ref.dtype)
    res = call(name, dt, (5, 7), 99, backend=backend, out=out)
    assert res is out
    assert_same_bits(ref, out)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_large_counter_blocks(backend):
    # blocks beyond 2**32 use the counter's high word: check the reference agrees there too
    shape = (2 ** 20, 2 ** 20)          # 2**40 elements, never materialized
    idx = (slice(2 ** 20 - 3, 2 ** 20), slice(5, 300))
    for dt in ("float32", "float64"):
        ref = sbf.normal(shape, 5, dtype=dt, index=idx, backend="numpy")
        got = sbf.normal(shape, 5, dtype=dt, index=idx, backend=backend)
        assert_same_bits(ref, got)


def test_reseed_reproduces():
    a = sbf.normal((64, 64), sbf.Key(3) / "w")
    b = sbf.normal((64, 64), sbf.Key(3) / "w")
    c = sbf.normal((64, 64), sbf.Key(3) / "v")
    assert_same_bits(a, b)
    assert not np.array_equal(a, c)


def test_uniform_golden_from_kat():
    # Independent of the library: Key(0) elements 0..3 are the zero-counter KAT words
    # 6627e8d5 e169c58d bc57ac4c 9b00dbd8, and float32 uniform = (w >> 8) * 2**-24.
    words = [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    expected = np.array([(w >> 8) / 2 ** 24 for w in words], dtype=np.float32)
    for backend in CPU_BACKENDS:
        np.testing.assert_array_equal(sbf.uniform(4, 0, backend=backend), expected)
        # float64: block 0 of the float64 map -> elements 0, 1 from (w0:w1), (w2:w3)
        e64 = np.array([((words[0] << 32 | words[1]) >> 11) / 2 ** 53,
                        ((words[2] << 32 | words[3]) >> 11) / 2 ** 53])
        np.testing.assert_array_equal(sbf.uniform(2, 0, dtype="float64", backend=backend), e64)


def test_normal_golden_from_kat():
    # Box-Muller of the KAT words in float64 libm math, independent of the library's
    # polynomials: the float32 results must agree to a few float32 ulps.
    import math
    w = [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    exp = []
    for rw, aw in ((w[0], w[1]), (w[2], w[3])):
        u1 = float(np.float32((rw >> 1)) * np.float32(2 ** -31) + np.float32(2 ** -32))
        theta = 2 * math.pi * ((aw >> 8) + 0.5) / 2 ** 24
        r = math.sqrt(-2 * math.log(u1))
        exp += [r * math.cos(theta), r * math.sin(theta)]
    got = sbf.normal(4, 0)
    np.testing.assert_allclose(got, exp, rtol=4 * 2 ** -23, atol=0)


@pytest.mark.parametrize("backend", OTHER)
def test_signed_zero_agrees(backend):
    # the clamp is written with comparisons, not min/max (which differ on -0.0 vs +0.0)
    cases = [
        lambda **kw: sbf.uniform(16, sbf.Key(1234), -0.0, 0.0, **kw),
        lambda **kw: sbf.uniform((2 ** 26,), 0, -0.0, 1.0, index=(slice(59535970, 59535990),), **kw),
        lambda **kw: sbf.truncated_normal(16, 3, -0.0, 0.0, **kw),
        lambda **kw: sbf.normal(16, 3, -0.0, 0.0, **kw),
    ]
    for f in cases:
        for dt in ("float32", "float64", "float16", "bfloat16"):
            assert_same_bits(f(dtype=dt, backend="numpy"), f(dtype=dt, backend=backend))
