"""Initializers on 8192 x 8192 float32 vs the seed's NumPy recipe and torch.nn.init, and
init_params on a ~1 B-parameter transformer-shaped spec (bfloat16 vs float32).

    pytest benchmarks/test_init.py --benchmark-enable
"""
import importlib.util
import math
import resource

import numpy as np
import pytest

import symbreak_fast as sbf

N = 8192
SHAPE = (N, N)
torch_missing = importlib.util.find_spec("torch") is None


@pytest.fixture(scope="module")
def out():
    a = np.empty(SHAPE, np.float32)
    a.fill(0)
    return a


def _bench(benchmark, fn, rounds=3):
    fn()
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)


@pytest.mark.benchmark(group="he_normal-8192^2")
def test_symbreak_he_normal(benchmark, out):
    _bench(benchmark, lambda: sbf.he_normal(SHAPE, 0, out=out))


@pytest.mark.benchmark(group="he_normal-8192^2")
def test_seed_numpy_he_normal(benchmark):
    _bench(benchmark, lambda: np.random.randn(N, N) * np.sqrt(2.0 / N))


@pytest.mark.skipif(torch_missing, reason="torch not installed")
@pytest.mark.benchmark(group="he_normal-8192^2")
def test_torch_kaiming_normal_(benchmark):
    import torch
    t = torch.empty(SHAPE)
    _bench(benchmark, lambda: torch.nn.init.kaiming_normal_(t))


@pytest.mark.benchmark(group="xavier_uniform-8192^2")
def test_symbreak_xavier_uniform(benchmark, out):
    _bench(benchmark, lambda: sbf.xavier_uniform(SHAPE, 0, out=out))


@pytest.mark.benchmark(group="xavier_uniform-8192^2")
def test_seed_numpy_xavier_uniform(benchmark):
    b = math.sqrt(6.0 / (2 * N))
    _bench(benchmark, lambda: np.random.uniform(-b, b, SHAPE))


@pytest.mark.skipif(torch_missing, reason="torch not installed")
@pytest.mark.benchmark(group="xavier_uniform-8192^2")
def test_torch_xavier_uniform_(benchmark):
    import torch
    t = torch.empty(SHAPE)
    _bench(benchmark, lambda: torch.nn.init.xavier_uniform_(t))


@pytest.mark.benchmark(group="truncated_normal-8192^2")
def test_symbreak_truncated_normal(benchmark, out):
    _bench(benchmark, lambda: sbf.truncated_normal(SHAPE, 0, std=0.02, out=out))


@pytest.mark.skipif(torch_missing, reason="torch not installed")
@pytest.mark.benchmark(group="truncated_normal-8192^2")
def test_torch_trunc_normal_(benchmark):
    import torch
    t = torch.empty(SHAPE)
    _bench(benchmark, lambda: torch.nn.init.trunc_normal_(t, std=0.02, a=-0.04, b=0.04), rounds=1)


def transformer_spec(d=2048, layers=19, vocab=32000, ff=4):
    """~1.1 B parameters shaped like a decoder-only transformer (io layout)."""
    spec = {"embed.weight": ((vocab, d), "normal", {"std": 0.02})}
    for i in range(layers):
        p = f"layers.{i}."
        spec.update({
            p + "attn.qkv.weight": ((d, 3 * d), "xavier_uniform"),
            p + "attn.out.weight": ((d, d), "truncated_normal", {"std": 0.02 / math.sqrt(2 * layers)}),
            p + "mlp.fc1.weight": ((d, ff * d), "he_normal"),
            p + "mlp.fc2.weight": ((ff * d, d), "truncated_normal", {"std": 0.02 / math.sqrt(2 * layers)}),
            p + "norm1.weight": ((d,), "ones"), p + "norm2.weight": ((d,), "ones"),
            p + "mlp.fc1.bias": ((ff * d,), "zeros"), p + "mlp.fc2.bias": ((d,), "zeros"),
        })
    return spec


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_symbreak_init_params_1b(benchmark, dtype):
    benchmark.group = "init_params-1B"
    spec = transformer_spec()
    n = sum(math.prod(s[0]) for s in spec.values())
    holder = {}

    def run():
        holder.pop("p", None)
        holder["p"] = sbf.init_params(spec, 0, dtype=dtype, flat=True)

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    benchmark.extra_info.update(params=n, params_per_s=n / benchmark.stats.stats.min,
                                param_bytes=holder["p"][0].nbytes, peak_rss_bytes=peak)
    print(f"\n{dtype}: {n / 1e9:.2f} B params, {n / benchmark.stats.stats.min / 1e9:.3f} Gparams/s, "
          f"buffer {holder['p'][0].nbytes / 2**30:.2f} GiB, process peak RSS {peak / 2**30:.2f} GiB")
