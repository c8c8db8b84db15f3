"""GPU throughput at 2**28 float32 elements (1 GiB; SBF_GPU_BENCH_N overrides): symbreak (cupy
backend) beside cupy.random, torch and the device's fill bandwidth, one group per distribution.

Run on a GPU machine:  PYTHONPATH=. python -m pytest benchmarks/test_gpu_throughput.py --benchmark-enable
pytest-benchmark times with a host clock, so every timed call ends with a device synchronize
(the launch + sync latency, ~10-20 us, is included; `symbreak-fast bench --device cuda` times
with CUDA events instead and is the figure to quote). Skipped without a CUDA device.
"""
import os

import pytest

import symbreak_fast as sbf
from symbreak_fast.backends import cuda_cupy

N_DEVICES = cuda_cupy.device_count()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(N_DEVICES == 0, reason=f"no usable CUDA device: {cuda_cupy.probe()[1]}"),
]
if N_DEVICES:
    import cupy

N = int(os.environ.get("SBF_GPU_BENCH_N", 1 << 28))
KEY = 1


def _sync():
    cupy.cuda.Device().synchronize()


def _bench(benchmark, fn):
    def timed():
        fn()
        _sync()

    timed()  # compile (NVRTC) / load the module / warm up outside the timing
    benchmark.pedantic(timed, rounds=15, iterations=1, warmup_rounds=2)


@pytest.fixture(scope="module")
def out32():
    a = cupy.empty(N, cupy.float32)
    a.fill(0)
    yield a
    del a
    cupy.get_default_memory_pool().free_all_blocks()


@pytest.fixture(scope="module")
def out_bf16():
    a = cupy.zeros(N, cupy.uint16)          # bfloat16 results are uint16 bits on the GPU
    yield a
    del a
    cupy.get_default_memory_pool().free_all_blocks()


@pytest.fixture(scope="module")
def rng():
    return cupy.random.default_rng(0)


@pytest.fixture(scope="module")
def torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    return torch


@pytest.fixture
def t32(torch_cuda):
    t = torch_cuda.empty(N, dtype=torch_cuda.float32, device="cuda")
    yield t
    del t
    torch_cuda.cuda.empty_cache()


# ---- uniform ---------------------------------------------------------------
@pytest.mark.benchmark(group="gpu-uniform-f32")
def test_symbreak_uniform_gpu(benchmark, out32):
    _bench(benchmark, lambda: sbf.uniform(N, KEY, out=out32))


@pytest.mark.benchmark(group="gpu-uniform-f32")
def test_cupy_fill(benchmark, out32):
    _bench(benchmark, lambda: out32.fill(1.0))


@pytest.mark.benchmark(group="gpu-uniform-f32")
def test_cupy_generator_random(benchmark, out32, rng):
    _bench(benchmark, lambda: rng.random(N, dtype=cupy.float32, out=out32))


@pytest.mark.benchmark(group="gpu-uniform-f32")
def test_torch_rand(benchmark, t32, torch_cuda):
    _bench(benchmark, lambda: torch_cuda.rand(N, out=t32))


# ---- normal ----------------------------------------------------------------
@pytest.mark.benchmark(group="gpu-normal-f32")
def test_symbreak_normal_gpu(benchmark, out32):
    _bench(benchmark, lambda: sbf.normal(N, KEY, out=out32))


@pytest.mark.benchmark(group="gpu-normal-f32")
def test_cupy_generator_standard_normal(benchmark, out32, rng):
    _bench(benchmark, lambda: rng.standard_normal(N, dtype=cupy.float32, out=out32))


@pytest.mark.benchmark(group="gpu-normal-f32")
def test_cupy_random_standard_normal(benchmark):
    _bench(benchmark, lambda: cupy.random.standard_normal(N, dtype=cupy.float32))


@pytest.mark.benchmark(group="gpu-normal-f32")
def test_torch_randn(benchmark, t32, torch_cuda):
    _bench(benchmark, lambda: torch_cuda.randn(N, out=t32))


@pytest.mark.benchmark(group="gpu-normal-bf16")
def test_symbreak_normal_gpu_bf16(benchmark, out_bf16):
    _bench(benchmark, lambda: sbf.normal(N, KEY, dtype="bfloat16", out=out_bf16))


@pytest.mark.benchmark(group="gpu-normal-bf16")
def test_torch_randn_bf16(benchmark, torch_cuda):
    t = torch_cuda.empty(N, dtype=torch_cuda.bfloat16, device="cuda")
    _bench(benchmark, lambda: torch_cuda.randn(N, out=t))
    del t
    torch_cuda.cuda.empty_cache()


# ---- truncated normal ------------------------------------------------------
@pytest.mark.benchmark(group="gpu-truncated-normal-f32")
def test_symbreak_truncated_normal_gpu(benchmark, out32):
    _bench(benchmark, lambda: sbf.truncated_normal(N, KEY, out=out32))


@pytest.mark.benchmark(group="gpu-truncated-normal-f32")
def test_torch_trunc_normal_(benchmark, t32, torch_cuda):
    _bench(benchmark, lambda: torch_cuda.nn.init.trunc_normal_(t32))


# ---- raw bits --------------------------------------------------------------
@pytest.mark.benchmark(group="gpu-bits-u32")
def test_symbreak_random_bits_gpu(benchmark, out32):
    out = out32.view(cupy.uint32)
    _bench(benchmark, lambda: sbf.random_bits(N, KEY, out=out))


@pytest.mark.benchmark(group="gpu-bits-u32")
def test_cupy_fill_u32(benchmark, out32):
    out = out32.view(cupy.uint32)
    _bench(benchmark, lambda: out.fill(7))
