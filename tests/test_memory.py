"""Scale/shift and dtype conversion happen in-kernel: no full-size temporaries.

Peak RSS growth while generating a tensor must stay within the output's bytes plus a
small constant (tile buffers, row plan). Measured in a fresh subprocess.
"""
import json
import subprocess
import sys

import pytest

pytest.importorskip("numba")

SCRIPT = r"""
import json, resource, sys
import numpy as np
import symbreak_fast as sbf
dist, dtype, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
kw = {} if dtype == "None" else {"dtype": dtype}
f = getattr(sbf, dist)
f(4096 * 32, 0, backend="numba", **kw)      # load kernels, warm allocator
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before = peak()
x = f((n // 4096, 4096), 1, backend="numba", **kw)
after = peak()
print(json.dumps({"delta": after - before, "out": x.nbytes}))
"""


@pytest.mark.parametrize("dist,dtype,n", [
    ("normal", "float32", 1 << 28),             # the case: a 1 GiB float32 tensor
    ("truncated_normal", "bfloat16", 1 << 26),
    ("uniform", "float64", 1 << 26),
    ("random_bits", None, 1 << 26),
])
def test_peak_memory_is_output_plus_constant(dist, dtype, n):
    r = subprocess.run([sys.executable, "-c", SCRIPT, dist, str(dtype), str(n)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    extra = m["delta"] - m["out"]
    # allowance: 4 MiB for thread stacks/tile buffers/row plan, far below one temporary
    # copy of the output (>= 128 MiB here), which is what this test exists to catch; for the
    # 1 GiB tensor that is <= 1.004x the output (the issue asks for <= 1.05x over the baseline)
    assert m["out"] == n * (2 if dtype in ("bfloat16", "float16") else 8 if dtype == "float64" else 4)
    assert extra <= 4 * 2 ** 20, f"peak grew by {m['delta']} bytes for a {m['out']}-byte output"
