"""GPU (CuPy backend) results equal the CPU backends' bits: every generator x dtype on >= 10**8
elements, slices (index=), out=, initializers, init_params(device="cuda"), every device present.

Skipped (not failed) without a usable CUDA device. Run on a GPU machine:

    PYTHONPATH=. python -m pytest tests/test_gpu.py -m gpu -q

The 10**8-element comparisons use the Numba backend as the CPU side (fast on many cores, and
proven bit-identical to the NumPy reference by tests/test_backends.py); smaller sizes, edge
shapes and slices compare with the NumPy reference itself (backend="numpy").
"""
import gc
import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import pytest

import symbreak_fast as sbf
from symbreak_fast.backends import cuda_cupy


def _tests_conftest():
    # by path, not `from conftest import`: that name is ambiguous when one pytest run also
    # collects benchmarks/ (whose conftest.py may be the module called `conftest` then)
    spec = importlib.util.spec_from_file_location("_sbf_tests_conftest", Path(__file__).with_name("conftest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_c = _tests_conftest()
FLOAT_DTYPES, bits_of, call, generator_cases = _c.FLOAT_DTYPES, _c.bits_of, _c.call, _c.generator_cases

N_DEVICES = cuda_cupy.device_count()          # 0 without cupy / driver / device; never raises
if os.environ.get("SBF_REQUIRE_GPU") and not cuda_cupy.probe()[0]:
    # scripts/gpu_check.sh sets this: there, skipping every GPU test would pass for a GPU check
    raise RuntimeError(f"SBF_REQUIRE_GPU is set but the cupy backend is unusable: {cuda_cupy.probe()[1]}")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(N_DEVICES == 0, reason=f"no usable CUDA device: {cuda_cupy.probe()[1]}"),
]
if N_DEVICES:
    import cupy
else:
    cupy = None

KEY = sbf.Key(1234) / "gpu"
BIG = 100_000_007                    # >= 10**8, odd: exercises the partial last Philox block
MID = 1_000_003
CASES = list(generator_cases())


@pytest.fixture(autouse=True)
def _clean_env_and_free_gpu_memory(monkeypatch):
    monkeypatch.delenv("SYMBREAK_BACKEND", raising=False)   # device="cuda" must pick cupy
    yield
    gc.collect()
    cupy.get_default_memory_pool().free_all_blocks()
    cupy.get_default_pinned_memory_pool().free_all_blocks()


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def storage_dtype(cpu_dtype) -> np.dtype:
    """The dtype a GPU result of ``cpu_dtype`` has: bfloat16 bits live in uint16."""
    dt = np.dtype(cpu_dtype)
    return np.dtype(np.uint16) if dt.name == "bfloat16" else dt


def check_gpu_array(g, shape, cpu_dtype, device_id=None):
    assert isinstance(g, cupy.ndarray), f"expected a cupy.ndarray, got {type(g).__name__}"
    assert g.shape == tuple(shape), (g.shape, shape)
    assert g.dtype == storage_dtype(cpu_dtype), (g.dtype, cpu_dtype)
    assert g.flags.c_contiguous
    if device_id is not None:
        assert g.device.id == device_id, (g.device.id, device_id)


def assert_bits_equal(got_host: np.ndarray, ref: np.ndarray, what=""):
    """``got_host``: a GPU result brought over with .get(); ``ref``: the CPU result."""
    assert got_host.shape == ref.shape, (what, got_host.shape, ref.shape)
    a, b = bits_of(got_host), bits_of(ref)
    assert a.dtype == b.dtype, (what, got_host.dtype, ref.dtype)
    if not np.array_equal(a, b):
        bad = np.flatnonzero(a.reshape(-1) != b.reshape(-1))
        raise AssertionError(f"{what}: {bad.size} of {a.size} elements differ from the CPU bits; "
                             f"first at flat {bad[:5]}: gpu bits {a.reshape(-1)[bad[:5]]} vs cpu bits "
                             f"{b.reshape(-1)[bad[:5]]}")


def gpu_vs_cpu(g, ref, what="", device_id=None):
    check_gpu_array(g, ref.shape, ref.dtype, device_id)
    assert_bits_equal(g.get(), ref, what)


def as_float64(host, cpu_dtype):
    """A GPU result on the host (bfloat16 as uint16 bits) as float64 values."""
    if np.dtype(cpu_dtype).name == "bfloat16":
        host = host.view(cpu_dtype)
    return host.astype(np.float64)


# ---------------------------------------------------------------------------
# 1. generators: every function x dtype, >= 10**8 elements, vs Numba
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name,dt", CASES)
def test_big_matches_cpu(name, dt):
    g = call(name, dt, BIG, KEY, device="cuda")
    cupy.cuda.Device().synchronize()
    assert isinstance(g, cupy.ndarray)
    got = g.get()
    del g
    cupy.get_default_memory_pool().free_all_blocks()
    ref = call(name, dt, BIG, KEY, backend="numba")
    assert got.dtype == storage_dtype(ref.dtype)
    assert_bits_equal(got, ref, f"{name} {dt or 'uint32'} n={BIG}")


# ---------------------------------------------------------------------------
# 2. vs the NumPy reference: edge shapes, ~10**6 elements, slices, huge counters
# ---------------------------------------------------------------------------
SHAPES = [0, 1, 3, 4, 5, 1023, 4097, (7, 33), (3, 4, 5, 6), (0, 5), (2, 0, 3), (), MID]


@pytest.mark.parametrize("name,dt", CASES)
def test_shapes_match_reference(name, dt):
    for shape in SHAPES:
        ref = call(name, dt, shape, KEY, backend="numpy")
        gpu_vs_cpu(call(name, dt, shape, KEY, device="cuda"), ref, f"{name} {dt} shape {shape}", 0)


INDEX_CASES = [
    ((1000, 1003), (slice(17, 900), slice(5, 1000))),
    ((1000, 1003), (-1, slice(0, 1000))),
    ((1000, 1003), (slice(333, 334),)),
    ((1000, 1003), (5,)),
    ((1000, 1003), (slice(None), slice(1002, None))),
    ((1000, 1003), (slice(0, 0),)),
    ((50, 60, 70), (slice(3, 40), 7, slice(1, 69))),
    ((MID,), (slice(12345, MID - 3),)),
]


@pytest.mark.parametrize("name,dt", CASES)
def test_index_slices(name, dt):
    for shape, idx in INDEX_CASES:
        what = f"{name} {dt} shape {shape} index {idx}"
        ref = call(name, dt, shape, KEY, index=idx, backend="numpy")
        part = call(name, dt, shape, KEY, index=idx, device="cuda")
        gpu_vs_cpu(part, ref, what)
        full = call(name, dt, shape, KEY, device="cuda")          # index= is exactly full[index]
        assert_bits_equal(cupy.ascontiguousarray(full[idx]).get(), ref, what + " (full[index])")


@pytest.mark.parametrize("dt", ["float32", "float64", "float16", "bfloat16"])
def test_large_counter_blocks(dt):
    # blocks beyond 2**32 use the counter's high word (the kernel's 64-bit counter arithmetic)
    shape = (2 ** 20, 2 ** 20)          # 2**40 elements, never materialized
    for idx in ((slice(2 ** 20 - 3, 2 ** 20), slice(5, 300)), (slice(2 ** 12, 2 ** 12 + 2), slice(None))):
        for name in ("normal", "truncated_normal", "uniform"):
            ref = call(name, dt, shape, 5, index=idx, backend="numpy")
            gpu_vs_cpu(call(name, dt, shape, 5, index=idx, device="cuda"), ref, f"{name} {dt} {idx}")
    idx = (slice(2 ** 20 - 2, None), slice(2 ** 20 - 1000, None))
    ref = sbf.random_bits(shape, 5, index=idx, backend="numpy")
    gpu_vs_cpu(sbf.random_bits(shape, 5, index=idx, device="cuda"), ref, "random_bits high counter")


def test_golden_digests_on_gpu():
    """The recorded golden table (tests/golden.json, scripts/make_golden.py) on the GPU: the
    same SHA-256 of the bytes as every CPU backend (tests/test_golden.py)."""
    import hashlib
    import json
    import sys
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "scripts"))
    try:
        import make_golden
    finally:
        sys.path.pop(0)
    golden = json.loads((root / "tests" / "golden.json").read_text())["cases"]
    for name, dt, f in make_golden.cases():
        g = f(device="cuda")
        assert isinstance(g, cupy.ndarray), name
        digest = hashlib.sha256(np.ascontiguousarray(g.get()).tobytes()).hexdigest()
        assert digest == golden[f"{name}/{dt or 'uint32'}"]["sha256"], f"{name}/{dt}"


def test_kat_and_signed_zero_on_gpu():
    """Key(0) elements 0..3 are the Random123 zero-counter KAT words; the clamp keeps -0.0 vs 0.0
    as the CPU does (comparisons, not min/max)."""
    words = [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    assert [int(x) for x in sbf.random_bits(4, sbf.Key(0), device="cuda").get()] == words
    cases = [lambda **kw: sbf.uniform(16, sbf.Key(1234), -0.0, 0.0, **kw),
             lambda **kw: sbf.truncated_normal(16, 3, -0.0, 0.0, **kw),
             lambda **kw: sbf.normal(16, 3, -0.0, 0.0, **kw)]
    for f in cases:
        for dt in FLOAT_DTYPES:
            gpu_vs_cpu(f(dtype=dt, device="cuda"), f(dtype=dt, backend="numpy"), f"signed zero {dt}")


@pytest.mark.parametrize("name,dt", CASES)
def test_vector_and_scalar_store_paths(name, dt):
    """out= views starting 0..3 elements past an aligned address: offset 0 takes the kernels'
    16-byte (8-byte for 16-bit) whole-block vector stores, the others the element-by-element
    path (and an index= box mixes both row by row); the bytes around the view stay untouched."""
    n = 10_007
    ref = call(name, dt, n, KEY, backend="numpy")
    st = storage_dtype(ref.dtype)
    for off in range(4):
        raw = cupy.full(n + 8, 0x5A, dtype=st)
        out = raw[off:off + n]
        assert call(name, dt, n, KEY, out=out) is out
        gpu_vs_cpu(out, ref, f"{name} {dt} out offset {off}")
        rest = cupy.concatenate([raw[:off], raw[off + n:]]).get()
        assert (rest == np.array(0x5A, st)).all(), f"{name} {dt}: wrote outside out (offset {off})"
    shape, idx = (301, 203), (slice(3, 298), slice(1, 202))
    ref = call(name, dt, shape, KEY, index=idx, backend="numpy")
    for off in range(4):
        raw = cupy.zeros(ref.size + 4, dtype=st)
        out = raw[off:off + ref.size].reshape(ref.shape)
        assert call(name, dt, shape, KEY, index=idx, out=out) is out
        gpu_vs_cpu(out, ref, f"{name} {dt} index= out offset {off}")


# ---------------------------------------------------------------------------
# 3. out= (device taken from the cupy array) and bad out=
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name,dt", CASES)
def test_out_fills_in_place(name, dt):
    shape = (517, 33)
    ref = call(name, dt, shape, KEY, backend="numpy")
    out = cupy.full(shape, 3, dtype=storage_dtype(ref.dtype))
    res = call(name, dt, shape, KEY, out=out)                    # no device=: taken from out
    assert res is out
    gpu_vs_cpu(out, ref, f"{name} {dt} out=")
    idx = (slice(100, 200), slice(4, 30))
    ref = call(name, dt, shape, KEY, index=idx, backend="numpy")
    out = cupy.full(ref.shape, 3, dtype=storage_dtype(ref.dtype))
    assert call(name, dt, shape, KEY, index=idx, out=out, device="cuda") is out
    gpu_vs_cpu(out, ref, f"{name} {dt} out= index=")


def test_bad_out_is_refused_before_writing():
    sentinel = 7
    cases = [
        ("wrong shape", dict(dtype="float32"), cupy.full((5, 8), sentinel, cupy.float32)),
        ("wrong dtype", dict(dtype="float64"), cupy.full((5, 7), sentinel, cupy.float32)),
        ("bfloat16 needs uint16 storage", dict(dtype="bfloat16"), cupy.full((5, 7), sentinel, cupy.float32)),
        ("not C-contiguous", dict(dtype="float32"), cupy.full((7, 5), sentinel, cupy.float32).T),
        ("cupy out with device='cpu'", dict(dtype="float32", device="cpu"),
         cupy.full((5, 7), sentinel, cupy.float32)),
    ]
    for what, kw, out in cases:
        with pytest.raises((ValueError, TypeError)):
            sbf.normal((5, 7), KEY, out=out, **kw)
        assert bool((out == sentinel).all()), f"{what}: out was written before the error"
    host = np.full((5, 7), sentinel, np.float32)
    with pytest.raises((ValueError, TypeError)):
        sbf.normal((5, 7), KEY, out=host, device="cuda")           # NumPy out= with device="cuda"
    assert (host == sentinel).all()


def test_out_of_memory_is_a_clear_error_and_leaks_nothing():
    free, total = cupy.cuda.Device(0).mem_info
    n = 2 * total // 4 + 4                         # float32 elements: twice the device's memory
    pool = cupy.get_default_memory_pool()
    gc.collect()
    pool.free_all_blocks()
    used = pool.used_bytes()
    for call in (lambda: sbf.normal((n,), KEY, device="cuda"),
                 lambda: sbf.he_normal((n // 4096, 4096), KEY, device="cuda"),
                 lambda: sbf.init_params({"w": ((n // 4096, 4096), "xavier_uniform")}, KEY, device="cuda",
                                         flat=True)):
        with pytest.raises(MemoryError, match="index="):
            call()
        gc.collect()
        assert pool.used_bytes() == used               # nothing held after the error
    # and the device still works, with the same bits
    gpu_vs_cpu(sbf.normal(MID, KEY, device="cuda"), sbf.normal(MID, KEY, backend="numpy"), "after OOM")


# ---------------------------------------------------------------------------
# 4. devices: "cuda" is the current device, "cuda:N", every device gives the same bits
# ---------------------------------------------------------------------------
def test_device_strings_single_device():
    ref = sbf.normal(MID, KEY, 0.25, 2.0, backend="numpy")
    for dev in ("cuda", "cuda:0"):
        gpu_vs_cpu(sbf.normal(MID, KEY, 0.25, 2.0, device=dev), ref, dev, device_id=0)
    with pytest.raises((ValueError, RuntimeError)):
        sbf.normal(16, KEY, device=f"cuda:{N_DEVICES + 7}")
    with pytest.raises(ValueError):
        sbf.normal(16, KEY, device="gpu")


@pytest.mark.skipif(N_DEVICES < 2, reason="only one CUDA device")
def test_every_device_same_bits():
    n = 10 ** 7 + 1
    ref = sbf.normal(n, KEY, 0.25, 2.0, backend="numba")
    ref_b = sbf.uniform(n, KEY, -0.75, 1.5, dtype="bfloat16", backend="numba")
    for i in range(N_DEVICES):
        gpu_vs_cpu(sbf.normal(n, KEY, 0.25, 2.0, device=f"cuda:{i}"), ref, f"cuda:{i}", device_id=i)
        with cupy.cuda.Device(i):
            g = sbf.uniform(n, KEY, -0.75, 1.5, dtype="bfloat16", device="cuda")   # current device
            out = cupy.empty(n, cupy.float32)
        gpu_vs_cpu(g, ref_b, f"current device {i}", device_id=i)
        assert sbf.normal(n, KEY, 0.25, 2.0, out=out) is out                      # device from out
        gpu_vs_cpu(out, ref, f"out= on cuda:{i}", device_id=i)
        del g, out
        with cupy.cuda.Device(i):
            cupy.get_default_memory_pool().free_all_blocks()


# ---------------------------------------------------------------------------
# 5. initializers
# ---------------------------------------------------------------------------
INITS = {
    "he_normal": lambda shape, key, **kw: sbf.he_normal(shape, key, **kw),
    "xavier_uniform": lambda shape, key, **kw: sbf.xavier_uniform(shape, key, 1.5, **kw),
    "lecun_normal_truncated": lambda shape, key, **kw: sbf.lecun_normal(
        shape, key, distribution="truncated_normal", **kw),
}


@pytest.mark.parametrize("dt", FLOAT_DTYPES)
@pytest.mark.parametrize("init", list(INITS))
def test_initializers(init, dt):
    f = INITS[init]
    key = KEY / init
    shape = (4096, 3001)                         # 12.3 M elements, vs Numba
    gpu_vs_cpu(f(shape, key, dtype=dt, device="cuda"), f(shape, key, dtype=dt, backend="numba"), init)
    conv = (3, 3, 64, 96)                        # io conv kernel: fans from the receptive field
    gpu_vs_cpu(f(conv, key, dtype=dt, device="cuda"), f(conv, key, dtype=dt, backend="numpy"), init + " conv")
    idx = (slice(100, 357), slice(2000, 3001))
    ref = f(shape, key, dtype=dt, index=idx, backend="numpy")
    gpu_vs_cpu(f(shape, key, dtype=dt, index=idx, device="cuda"), ref, init + " index=")
    out = cupy.empty(ref.shape, storage_dtype(ref.dtype))
    assert f(shape, key, dtype=dt, index=idx, out=out) is out
    gpu_vs_cpu(out, ref, init + " out=")


ORTH_EPS = {"float32": 2.0 ** -23, "float64": 1e-11, "float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}
ORTH_CASES = [((512, 256), "io"), ((256, 512), "io"), ((300, 300), "oi"), ((64, 32, 3, 3), "oi")]


@pytest.mark.parametrize("shape,layout", ORTH_CASES, ids=[f"{s}-{l}" for s, l in ORTH_CASES])
def test_orthogonal_close_not_bitwise(shape, layout):
    """Not bit-identical by design: the GPU factors the same (bit-identical) float64 normal draw
    with cupy.linalg.qr (cuSOLVER), whose blocked Householder reductions round in a different
    order than LAPACK on the CPU (and than another BLAS build). Both float64 Q's are orthogonal
    to ~1e-15 and, with the sign fix R_ii > 0 making Q unique, agree to ~1e-13; rounding to the
    output dtype then gives at most one ulp of difference, on very few elements."""
    gain = 1.5
    rows = shape[0] if layout == "oi" else math.prod(shape[:-1])
    cols = shape[-1] if layout == "io" else math.prod(shape[1:])
    k = min(rows, cols)
    for dt in ("float32", "float64", "bfloat16"):
        key = KEY / f"orth{shape}"
        g = sbf.orthogonal(shape, key, gain, layout=layout, dtype=dt, device="cuda")
        ref = sbf.orthogonal(shape, key, gain, layout=layout, dtype=dt, backend="numpy")
        check_gpu_array(g, shape, ref.dtype)
        host = g.get()
        w, r = as_float64(host, ref.dtype), ref.astype(np.float64)
        m = w.reshape(rows, cols) / gain
        gram = m.T @ m if rows >= cols else m @ m.T
        orth_tol = {"float32": 1e-6, "float64": 1e-12, "bfloat16": 2 * 2.0 ** -8 * 2}[dt]
        assert np.abs(gram - np.eye(k)).max() < orth_tol, (dt, np.abs(gram - np.eye(k)).max())
        diff = np.abs(w - r).max()
        assert diff <= gain * ORTH_EPS[dt], (dt, diff)
        if dt != "float64":   # rounding hides the float64 differences almost everywhere
            same = np.mean(bits_of(host).reshape(-1) == bits_of(ref).reshape(-1))
            assert same > 0.99, (dt, same)
        idx = (slice(3, 40),) + (slice(None),) * (len(shape) - 1)
        part = sbf.orthogonal(shape, key, gain, layout=layout, dtype=dt, index=idx, device="cuda")
        check_gpu_array(part, ref[idx].shape, ref.dtype)
        assert np.abs(as_float64(part.get(), ref.dtype) - r[idx]).max() <= gain * ORTH_EPS[dt]


@pytest.mark.parametrize("dt", FLOAT_DTYPES)
def test_constant_zeros_ones(dt):
    shape, idx = (1000, 37), (slice(10, 20), 3)
    for what, f in (("constant 0.1", lambda **kw: sbf.constant(shape, None, 0.1, **kw)),
                    ("constant -3.75", lambda **kw: sbf.constant(shape, KEY, -3.75, **kw)),
                    ("zeros", lambda **kw: sbf.zeros(shape, **kw)),
                    ("ones", lambda **kw: sbf.ones(shape, **kw))):
        ref = f(dtype=dt, backend="numpy")
        gpu_vs_cpu(f(dtype=dt, device="cuda"), ref, what)
        gpu_vs_cpu(f(dtype=dt, index=idx, device="cuda"), f(dtype=dt, index=idx, backend="numpy"), what + " index")
        out = cupy.full(shape, 9, storage_dtype(ref.dtype))
        assert f(dtype=dt, out=out) is out
        gpu_vs_cpu(out, ref, what + " out=")


# ---------------------------------------------------------------------------
# 6. init_params(device="cuda")
# ---------------------------------------------------------------------------
SPEC = {
    "embed": ((3000, 512), "normal", {"std": 0.02}),
    "enc.w": ((512, 2048), "he_normal"),
    "enc.b": ((2048,), "zeros"),
    "dec.w": {"shape": (2048, 512), "init": "xavier_uniform", "gain": 2.0},
    "proj": ((512, 512), "lecun_normal", {"distribution": "truncated_normal"}),
    "tn": ((1000, 3), "truncated_normal", {"std": 0.5}),
    "u": ((4, 2), "uniform", {"low": -0.1, "high": 0.3}),
    "rec": ((128, 128), "orthogonal"),
    "conv": ((4, 4, 3, 3), "dirac", {"layout": "oi"}),
    "sp": ((100, 80), "sparse", {"sparsity": 0.3}),
    "scale": (5, "constant", {"value": 1.5}),
    "eye": ((3, 3), "eye"),
    "norm": ((512,), "ones"),
}
NOT_BITWISE = {"rec"}      # orthogonal: see test_orthogonal_close_not_bitwise


def _compare_param(name, g, ref):
    if name in NOT_BITWISE:
        check_gpu_array(g, ref.shape, ref.dtype)
        w = as_float64(g.get(), ref.dtype)
        assert np.abs(w - ref.astype(np.float64)).max() <= ORTH_EPS[ref.dtype.name], name
    else:
        gpu_vs_cpu(g, ref, f"init_params {name}")


@pytest.mark.parametrize("dt", ["float32", "bfloat16"])
def test_init_params_on_gpu(dt):
    ref = sbf.init_params(SPEC, KEY, dtype=dt, backend="numpy")
    got = sbf.init_params(SPEC, KEY, dtype=dt, device="cuda")
    assert list(got) == list(SPEC)
    for name in SPEC:
        _compare_param(name, got[name], ref[name])
    del got
    buf, views = sbf.init_params(SPEC, KEY, dtype=dt, device="cuda", flat=True)
    ref_buf, _ = sbf.init_params(SPEC, KEY, dtype=dt, backend="numpy", flat=True)
    check_gpu_array(buf, ref_buf.shape, ref_buf.dtype, device_id=0)
    lo, hi = buf.data.ptr, buf.data.ptr + buf.nbytes
    for name in SPEC:
        v = views[name]
        assert lo <= v.data.ptr and v.data.ptr + v.nbytes <= hi, f"{name} is not a view of the flat buffer"
        _compare_param(name, v, ref[name])


# ---------------------------------------------------------------------------
# 7. the documented bfloat16 recipe for torch
# ---------------------------------------------------------------------------
def test_bfloat16_to_torch_via_dlpack():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    ref = sbf.normal((300, 200), KEY, 0.25, 2.0, dtype="bfloat16", backend="numpy")
    g = sbf.normal((300, 200), KEY, 0.25, 2.0, dtype="bfloat16", device="cuda")
    t = torch.from_dlpack(g).view(torch.bfloat16)
    assert t.dtype == torch.bfloat16 and t.is_cuda and tuple(t.shape) == (300, 200)
    np.testing.assert_array_equal(t.float().cpu().numpy(), ref.astype(np.float32))
