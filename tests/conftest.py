import numpy as np
import pytest

import symbreak_fast as sbf
from symbreak_fast import _dispatch


def cpu_backends() -> tuple[str, ...]:
    """The usable backends whose results are NumPy arrays (device "cpu"). The CPU test files
    compare with numpy ``out=`` arrays and np.ascontiguousarray, so they loop over these; the
    GPU backend's comparisons with the CPU live in tests/test_gpu.py (marker gpu)."""
    return tuple(b for b in sbf.available_backends() if _dispatch._REGISTRY[b].device == "cpu")


BACKENDS = sbf.available_backends()
CPU_BACKENDS = cpu_backends()
FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")


def bits_of(a: np.ndarray) -> np.ndarray:
    """The raw bit patterns of ``a`` (for exact, NaN-safe, -0.0-aware comparison)."""
    a = np.ascontiguousarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def assert_same_bits(a: np.ndarray, b: np.ndarray):
    assert a.shape == b.shape, (a.shape, b.shape)
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    ba, bb = bits_of(a), bits_of(b)
    if not np.array_equal(ba, bb):
        bad = np.flatnonzero(ba.reshape(-1) != bb.reshape(-1))
        raise AssertionError(f"{bad.size} of {a.size} elements differ; first at flat {bad[:5]}: "
                             f"{a.reshape(-1)[bad[:5]]} vs {b.reshape(-1)[bad[:5]]}")


# (name, callable(shape, key, **kw)) for every public generator, with non-default parameters
GENERATORS = {
    "random_bits": lambda shape, key, **kw: sbf.random_bits(shape, key, **kw),
    "uniform": lambda shape, key, **kw: sbf.uniform(shape, key, -0.75, 1.5, **kw),
    "normal": lambda shape, key, **kw: sbf.normal(shape, key, 0.25, 2.0, **kw),
    "truncated_normal": lambda shape, key, **kw: sbf.truncated_normal(shape, key, 0.5, 1.5, -1.0, 2.5, **kw),
}


def generator_cases():
    for name in GENERATORS:
        for dt in ((None,) if name == "random_bits" else FLOAT_DTYPES):
            yield pytest.param(name, dt, id=f"{name}-{dt or 'uint32'}")


def call(name, dt, shape, key, **kw):
    if dt is not None:
        kw["dtype"] = dt
    return GENERATORS[name](shape, key, **kw)
