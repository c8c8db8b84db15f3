"""Where the Numba backend starts to pay: warm per-call cost of each backend by size.

The auto threshold (symbreak_fast._dispatch.NUMBA_MIN_ELEMENTS) also weighs the
one-time ~0.5-1 s Numba import + cache load that a small one-off call would pay.
"""
import pytest

import symbreak_fast as sbf


@pytest.mark.parametrize("log2n", [10, 12, 14, 16, 18])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_symbreak_normal_by_size(benchmark, backend, log2n):
    benchmark.group = f"dispatch-normal-2^{log2n}"
    n = 1 << log2n
    sbf.normal(n, 0, backend=backend)
    benchmark(lambda: sbf.normal(n, 0, backend=backend))
