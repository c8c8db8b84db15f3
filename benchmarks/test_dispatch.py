"""Where the Numba backend starts to pay: the measurements behind the auto threshold
(symbreak_fast._dispatch.NUMBA_MIN_ELEMENTS).

Under pytest-benchmark: the warm per-call cost of each backend by size. As a script, all three
numbers the threshold is chosen from:

    python benchmarks/test_dispatch.py        # ~1-2 minutes; prints a table and the break-even size

1. cold: the first Numba call in a fresh process whose Numba disk cache is warm (import numba +
   load the cached kernel), minus that call's warm cost; and the first call of another output
   dtype once Numba is loaded (another cached specialization);
2. warm per-call time of numpy and numba, normal float32, 2**12 .. 2**24 elements;
3. the break-even size: the smallest n where numpy's time reaches cold + numba's time, i.e. where
   a one-off call of n elements pays for loading Numba by itself.
"""
import statistics
import subprocess
import sys
import time

import pytest

import symbreak_fast as sbf


@pytest.mark.parametrize("log2n", [10, 12, 14, 16, 18, 20, 22])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_symbreak_normal_by_size(benchmark, backend, log2n):
    benchmark.group = f"dispatch-normal-2^{log2n}"
    n = 1 << log2n
    sbf.normal(n, 0, backend=backend)
    benchmark(lambda: sbf.normal(n, 0, backend=backend))


_COLD = r"""
import time, sys
import ml_dtypes                                 # its import (~0.1-1 s) is paid by any first bfloat16 call
import symbreak_fast as s
s.normal(16, 0, backend="numpy")                 # numpy path warm; numba not imported yet
assert "numba" not in sys.modules
t0 = time.perf_counter(); s.normal(1 << 12, 0, backend="numba"); t1 = time.perf_counter()
s.normal(1 << 12, 0, backend="numba"); t2 = time.perf_counter()
s.uniform(1 << 12, 0, dtype="float64", backend="numba"); t3 = time.perf_counter()
s.uniform(1 << 12, 0, dtype="bfloat16", backend="numba"); t4 = time.perf_counter()
print((t1 - t0) - (t2 - t1), t3 - t2, t4 - t3)
"""


def _best(f, repeat):
    f()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def measure(repeat_cold=5):
    subprocess.run([sys.executable, "-c", _COLD], check=True, capture_output=True)   # warm the disk cache
    cold = [tuple(map(float, subprocess.run([sys.executable, "-c", _COLD], check=True, capture_output=True,
                                            text=True).stdout.split())) for _ in range(repeat_cold)]
    c_first = statistics.median(c[0] for c in cold)
    c_f64 = statistics.median(c[1] for c in cold)
    c_bf16 = statistics.median(c[2] for c in cold)
    print(f"cold first numba call (import + cached kernel load), fresh process, median of {repeat_cold}: "
          f"{c_first * 1e3:.0f} ms; then first float64 call {c_f64 * 1e3:.0f} ms, first bfloat16 call "
          f"{c_bf16 * 1e3:.0f} ms")
    print("| n | numpy ms | numba ms (warm) | numpy us/elem | numba us/elem | numpy >= cold + numba? |")
    print("|---|---|---|---|---|---|")
    breakeven = None
    for log2n in range(12, 25, 2):
        n = 1 << log2n
        rep = 7 if log2n <= 18 else 3
        t_np = _best(lambda: sbf.normal(n, 0, backend="numpy"), rep)
        t_nb = _best(lambda: sbf.normal(n, 0, backend="numba"), rep)
        pays = t_np >= c_first + t_nb
        if pays and breakeven is None:
            breakeven = n
        print(f"| 2^{log2n} | {t_np * 1e3:.3f} | {t_nb * 1e3:.3f} | {t_np / n * 1e6:.3f} | {t_nb / n * 1e6:.4f} | "
              f"{'yes' if pays else 'no'} |")
    print(f"break-even (smallest measured 2^k where a one-off call pays for loading numba): {breakeven}")
    return breakeven


if __name__ == "__main__":
    measure()
