"""Throughput at 2**25 float32 elements: symbreak (numba) beside the peers, one group each.

Run:  pytest benchmarks/ --benchmark-enable -p no:randomly
(the repo's pytest config disables benchmarks in the default test run).
"""
import importlib.util
import math

import numpy as np
import pytest

import symbreak_fast as sbf

N = 1 << 25
N_IN = 4096
SHAPE2D = (N_IN, N // N_IN)
SCALE = math.sqrt(2.0 / N_IN)


@pytest.fixture(scope="module")
def out32():
    a = np.empty(N, np.float32)
    a.fill(0)  # fault the pages in once
    return a


@pytest.fixture(scope="module")
def gen():
    return np.random.default_rng(0)


def _bench(benchmark, fn):
    fn()  # compile / warm caches outside the timing
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)


# ---- uniform ---------------------------------------------------------------
@pytest.mark.benchmark(group="uniform-f32")
def test_symbreak_uniform(benchmark, out32):
    _bench(benchmark, lambda: sbf.uniform(N, 1, out=out32, backend="numba"))


@pytest.mark.benchmark(group="uniform-f32")
def test_numpy_random(benchmark, out32, gen):
    _bench(benchmark, lambda: gen.random(N, dtype=np.float32, out=out32))


@pytest.mark.benchmark(group="uniform-f32")
def test_ndarray_fill(benchmark, out32):
    _bench(benchmark, lambda: out32.fill(1.0))


# ---- normal ----------------------------------------------------------------
@pytest.mark.benchmark(group="normal-f32")
def test_symbreak_normal(benchmark, out32):
    _bench(benchmark, lambda: sbf.normal(N, 1, out=out32, backend="numba"))


@pytest.mark.benchmark(group="normal-f32")
def test_numpy_standard_normal(benchmark, out32, gen):
    _bench(benchmark, lambda: gen.standard_normal(N, dtype=np.float32, out=out32))


@pytest.mark.benchmark(group="normal-f32")
def test_numpy_philox_standard_normal(benchmark, out32):
    g = np.random.Generator(np.random.Philox(0))
    _bench(benchmark, lambda: g.standard_normal(N, dtype=np.float32, out=out32))


# ---- the seed's He init: np.random.randn(n_in, n_out) * sqrt(2 / n_in) --------
@pytest.mark.benchmark(group="he-init")
def test_symbreak_he_normal(benchmark, out32):
    out = out32.reshape(SHAPE2D)
    _bench(benchmark, lambda: sbf.normal(SHAPE2D, 1, std=SCALE, out=out, backend="numba"))


@pytest.mark.benchmark(group="he-init")
def test_seed_style_randn_times_scale(benchmark):
    _bench(benchmark, lambda: np.random.randn(*SHAPE2D) * SCALE)


# ---- truncated normal ------------------------------------------------------
@pytest.mark.benchmark(group="truncated-normal-f32")
def test_symbreak_truncated_normal(benchmark, out32):
    _bench(benchmark, lambda: sbf.truncated_normal(N, 1, out=out32, backend="numba"))


@pytest.mark.benchmark(group="truncated-normal-f32")
def test_ndtri_inverse_cdf_baseline(benchmark, gen):
    special = pytest.importorskip("scipy.special")
    lo, hi = special.ndtr(-2.0), special.ndtr(2.0)
    _bench(benchmark, lambda: special.ndtri(lo + (hi - lo) * gen.random(N)).astype(np.float32))


# ---- raw bits --------------------------------------------------------------
@pytest.mark.benchmark(group="bits-u32")
def test_symbreak_random_bits(benchmark, out32):
    _bench(benchmark, lambda: sbf.random_bits(N, 1, out=out32.view(np.uint32), backend="numba"))


@pytest.mark.benchmark(group="bits-u32")
def test_numpy_integers_u32(benchmark, gen):
    _bench(benchmark, lambda: gen.integers(0, 2 ** 32, size=N, dtype=np.uint32))


# ---- torch, when installed ---------------------------------------------------
torch_missing = importlib.util.find_spec("torch") is None


@pytest.mark.skipif(torch_missing, reason="torch not installed")
@pytest.mark.benchmark(group="normal-f32")
def test_torch_normal_(benchmark):
    import torch
    t = torch.empty(N)
    _bench(benchmark, lambda: t.normal_())


@pytest.mark.skipif(torch_missing, reason="torch not installed")
@pytest.mark.benchmark(group="truncated-normal-f32")
def test_torch_trunc_normal_(benchmark):
    import torch
    t = torch.empty(N)
    _bench(benchmark, lambda: torch.nn.init.trunc_normal_(t))
