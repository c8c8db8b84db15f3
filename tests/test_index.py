"""index= returns exactly full[index] without computing the rest (sharding invariance)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symbreak_fast as sbf
from conftest import CPU_BACKENDS, assert_same_bits, call, generator_cases


@st.composite
def shape_and_index(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(0, 9)) for _ in range(ndim))
    idx = []
    for d in shape:
        kind = draw(st.sampled_from(["slice", "int", "full"])) if d else "slice"
        if kind == "int":
            idx.append(draw(st.integers(-d, d - 1)))
        elif kind == "full":
            idx.append(slice(None))
        else:
            a = draw(st.integers(-d, d))
            b = draw(st.integers(-d, d))
            idx.append(slice(draw(st.sampled_from([a, None])), draw(st.sampled_from([b, None]))))
    n = draw(st.integers(0, ndim))
    return shape, tuple(idx[:n])


CASES = list(generator_cases())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(si=shape_and_index(), case=st.sampled_from(CASES), seed=st.integers(0, 2 ** 64 - 1),
       backend=st.sampled_from(CPU_BACKENDS))
def test_index_equals_full_slice(si, case, seed, backend):
    shape, idx = si
    name, dt = case.values
    full = call(name, dt, shape, seed, backend="numpy")
    part = call(name, dt, shape, seed, index=idx, backend=backend)
    assert_same_bits(full[idx], part)


@pytest.mark.parametrize("name,dt", CASES)
def test_shards_reassemble(name, dt):
    # row- and column-sharded ranks (4 x 3 grid with uneven cuts) rebuild the full tensor
    shape = (1000, 300)
    full = call(name, dt, shape, 77)
    rows, cols = [0, 1, 333, 700, 1000], [0, 7, 150, 300]
    rebuilt = np.empty_like(full)
    for r0, r1 in zip(rows, rows[1:]):
        for c0, c1 in zip(cols, cols[1:]):
            rebuilt[r0:r1, c0:c1] = call(name, dt, shape, 77, index=(slice(r0, r1), slice(c0, c1)))
    assert_same_bits(full, rebuilt)


def test_index_does_not_compute_rest():
    # a 2**62-element tensor could never be materialized; one shard of it is cheap
    shape = (2 ** 31, 2 ** 31)
    x = sbf.normal(shape, 1, index=(slice(2 ** 31 - 2, None), slice(0, 1000)))
    assert x.shape == (2, 1000)
    y = sbf.normal(shape, 1, index=(-1, slice(0, 1000)), backend="numpy")
    assert_same_bits(x[1], y)
