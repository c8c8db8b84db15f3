"""The CUDA kernels, compiled for the host, against the NumPy reference, bit for bit.

kernels/sbf_fill.cu and kernels/sbf_random.cuh are built by the system C++ compiler with
-ffp-contract=off (tests/cuda_host.py) and run over an emulated grid with the launch plans of
the CuPy backend. This proves the kernels' arithmetic, element map, row/slice decomposition
and argument order without a GPU, and when the kernels take the whole-block vector store (the
host build copies the same bytes with memcpy and counts those stores; the counts are checked
against an independent computation). What it cannot prove: the device's own IEEE operations
(NVRTC -fmad=false, IEEE div/sqrt; checked in test_nvrtc.py on the PTX, which also checks that
every kernel has its vector store instruction) and the vector store instruction itself
(tests/test_gpu.py, with aligned and misaligned out= arrays, when a GPU is present).
"""
import ctypes
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from symbreak_fast import _spec as S
from symbreak_fast._key import Key
from symbreak_fast._request import make_request
from symbreak_fast.backends import cuda_cupy, numpy_ref

from cuda_host import Emulator, build, compiler, ptr

pytestmark = pytest.mark.skipif(compiler() is None and not __import__("os").environ.get("CI"),
                                reason="no C++ compiler (CI requires one)")

KEY = Key(20261203)
PARAMS = {
    "bits": {},
    "uniform": dict(low=-0.75, high=1.5),
    "normal": dict(mean=0.25, std=2.0),
    "truncated_normal": dict(mean=0.5, std=1.5, lower=-1.0, upper=2.5),
}
DTYPES = ("float32", "float64", "float16", "bfloat16")


def cases():
    for dist in PARAMS:
        for dt in ((None,) if dist == "bits" else DTYPES):
            yield pytest.param(dist, dt, id=f"{dist}-{dt or 'uint32'}")


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    return Emulator(build(tmp_path_factory.mktemp("sbf_emulate")))


def storage(req):
    return np.dtype(np.uint32) if req.dist == "bits" else cuda_cupy.storage_dtype(req.dtype)


def reference(req) -> np.ndarray:
    """The NumPy reference's output bits (flat, storage dtype)."""
    out = np.empty(req.size, dtype=storage(req) if req.dtype.itemsize != 2 else np.uint16)
    numpy_ref.generate(req, out)
    return out


def aligned_bytes(nbytes: int, align: int = 64) -> np.ndarray:
    """A uint8 buffer whose first byte is ``align``-aligned (as cupy's allocations are)."""
    raw = np.empty(nbytes + align, np.uint8)
    skip = -raw.ctypes.data % align
    return raw[skip:skip + nbytes]


def emulate(emu, req, sm_count=4, offset=0) -> np.ndarray:
    """The kernel's output through the host emulation; the output starts ``offset`` elements
    after a 64-byte-aligned address (offset 0: the vector stores' alignment, as from cupy).
    The buffer starts as 0xA5 bytes, so an element the kernel skips cannot pass as correct,
    and the byte after the output must stay untouched. Checks the number of vector stores the
    kernel made against ``expected_vector_stores``."""
    st = storage(req) if req.dtype.itemsize != 2 else np.dtype(np.uint16)
    raw = aligned_bytes((req.size + offset + 1) * st.itemsize)
    raw[:] = 0xA5
    out = raw[offset * st.itemsize:(offset + req.size) * st.itemsize].view(st)
    plan = cuda_cupy.launch_plan(req, sm_count)
    emu.lib.sbf_host_take_vector_stores()
    if plan is not None:
        emu.launch(plan, out)
    n_vec = emu.lib.sbf_host_take_vector_stores()
    assert (raw[(offset + req.size) * st.itemsize:] == 0xA5).all(), "wrote past the end"
    assert (raw[:offset * st.itemsize] == 0xA5).all(), "wrote before the start"
    assert n_vec == expected_vector_stores(req, out), (n_vec, expected_vector_stores(req, out))
    return out


def expected_vector_stores(req, out: np.ndarray) -> int:
    """How many whole Philox blocks should go out as one vector store, computed from
    _indexing.row_plan (not from the kernel's row map): a block whose E elements all lie in one
    row, when its destination address is a multiple of the vector's size (E * itemsize bytes;
    E = 2 for float64, else 4). Element g of the row starting at global index s lands at
    out[r * row_len + g - s]; the block containing it starts at E * (g // E)."""
    from symbreak_fast._indexing import row_plan
    starts, row_len = row_plan(req.box)
    if req.size == 0:
        return 0
    e = 2 if req.compute == "float64" else 4
    item = out.dtype.itemsize
    starts = np.asarray(starts, np.int64)
    first = -(-starts // e)                            # first whole block of each row
    end = (starts + row_len) // e                      # one past the last whole block
    r = np.arange(starts.size, dtype=np.int64)
    addr = out.ctypes.data + item * (r * row_len + e * first - starts)   # address of the first one
    aligned = addr % (e * item) == 0                   # a row's whole blocks share one alignment
    return int(np.maximum(end - first, 0)[aligned].sum())


def assert_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    bad = np.flatnonzero(a != b)
    assert bad.size == 0, f"{bad.size} of {a.size} differ, first at {bad[:5]}: {a[bad[:5]]} vs {b[bad[:5]]}"


def make(dist, dt, shape, index=None):
    kw = dict(PARAMS[dist])
    if dt is not None:
        kw["dtype"] = dt
    return make_request(dist, shape, KEY, index=index, **kw)


# --- the constants header is generated from the spec -----------------------------------------
def test_constants_header_is_generated_from_the_spec():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    try:
        import make_kernel_constants as M
    finally:
        sys.path.pop(0)
    assert (cuda_cupy.kernel_dir() / "sbf_constants.cuh").read_text() == M.render(), \
        "kernels/sbf_constants.cuh is stale: run python scripts/make_kernel_constants.py"


# --- whole kernels ------------------------------------------------------------------------------
@pytest.mark.parametrize("dist,dt", list(cases()))
def test_kernel_matches_reference_1e6(emu, dist, dt):
    """>= 10**6 elements of every stream x dtype; the plan's grid strides many times (sm_count=2)."""
    req = make(dist, dt, (1000, 1003))
    assert_bits(emulate(emu, req, sm_count=2), reference(req))


# index= boxes: misaligned row starts and lengths, int-indexed dims, size-1 dims, deep boxes
BOXES = [
    ((37, 53), (slice(3, 30), slice(5, 50))),
    ((37, 53), (slice(1, 2), slice(0, 53))),
    ((37, 53), (7,)),
    ((37, 53), (slice(None), 11)),
    ((5, 6, 7, 9), (slice(1, 4), 2, slice(2, 7), slice(3, 8))),
    ((5, 6, 7, 9), (slice(0, 5), slice(1, 6), slice(0, 7), slice(0, 9))),
    ((3, 2, 3, 2, 3, 2, 5), tuple(slice(1, None) for _ in range(6)) + (slice(1, 4),)),
    ((4097,), (slice(1, 4094),)),
    ((), ()),
    ((8, 0, 3), None),
    ((40, 40), (slice(7, 7), slice(0, 40))),
]


@pytest.mark.parametrize("dist,dt", list(cases()))
def test_kernel_slices_match_reference(emu, dist, dt):
    for shape, index in BOXES:
        req = make(dist, dt, shape, index)
        for sm in (1, 1000):
            got = emulate(emu, req, sm_count=sm, offset=1)
            assert_bits(got, reference(req))


# index= boxes of >= 10**6 elements: rows starting mid-block and at every residue mod 4 of the
# output position (so both the vector and the element-by-element paths run many times), an
# int-indexed dimension, and a 1-D slice
BIG_BOXES = [
    ((1400, 1500), (slice(3, 1397), slice(5, 1498))),              # 1394 rows x 1493
    ((1100, 3, 1011), (slice(50, 1050), 1, slice(2, 1005))),       # an int-indexed middle dim: 1000 x 1003
    ((3, 1004, 1003), (1, slice(1, 1003), slice(2, 1001))),        # a 2-D box of a 3-D tensor: 1002 x 999
    ((4, 600, 1003), (slice(1, 3), slice(50, 550), slice(None))),  # whole rows merge: 2 rows of 501500
    ((2_000_003,), (slice(12345, 1_400_000),)),
]


@pytest.mark.parametrize("dist,dt", list(cases()))
def test_kernel_slices_match_reference_1e6(emu, dist, dt):
    """>= 10**6-element index= boxes of every stream x dtype, output aligned and misaligned."""
    for shape, index in BIG_BOXES:
        req = make(dist, dt, shape, index)
        ref = reference(req)
        for offset in (0, 1):
            assert_bits(emulate(emu, req, sm_count=2, offset=offset), ref)
        assert req.size >= 10 ** 6, (shape, index)


def test_vector_stores_are_taken_and_skipped(emu):
    """The store path follows alignment: a whole aligned tensor goes out in vector stores only
    (all but a partial last block), a misaligned one in none (16-byte vectors; a one-element
    offset breaks the alignment), a box's rows in some of each. (emulate() compares each count
    with the kernel's; here the expected counts themselves are pinned.)"""
    for dist, dt, e in (("normal", "float32", 4), ("uniform", "float64", 2), ("normal", "bfloat16", 4),
                        ("bits", None, 4)):
        req = make(dist, dt, (1001, 1003))
        out = emulate(emu, req, sm_count=2)                  # emulate() checks the count it made
        assert expected_vector_stores(req, out) == req.size // e
        out = emulate(emu, req, sm_count=2, offset=1)        # one element off: not 16/8-byte aligned
        assert expected_vector_stores(req, out) == 0
        box = make(dist, dt, (1400, 1500), (slice(3, 1397), slice(5, 1498)))
        out = emulate(emu, box, sm_count=2)
        n = expected_vector_stores(box, out)
        assert 0 < n < box.size // e, (dist, dt, n)


def test_row_map_matches_row_plan():
    from symbreak_fast._indexing import normalize_index, row_plan
    for shape, index in BOXES:
        box = normalize_index(index, shape)
        n_rows, row_len, base, outer = cuda_cupy.row_map(box)
        starts, rl = row_plan(box)
        assert n_rows == starts.size and (row_len == rl or n_rows == 0)
        k = outer.size // 2
        r = np.arange(n_rows, dtype=np.int64)
        s = np.full(n_rows, base, np.int64)
        for i in range(k - 1, -1, -1):
            s += (r % outer[i]) * outer[k + i]
            r //= outer[i]
        assert np.array_equal(s, starts), (shape, index)


def test_high_counter_words(emu):
    """Blocks >= 2**32 (the counter's second word) through a box far into a huge tensor."""
    shape = (1 << 20, 1 << 20, 1 << 20)
    for dist, dt in (("bits", None), ("normal", "float32"), ("uniform", "float64")):
        req = make(dist, dt, shape, (5 << 16, 77, slice(1000, 1400)))
        assert_bits(emulate(emu, req, sm_count=3, offset=1), reference(req))


# --- the header's functions one by one against the spec ----------------------------------------
WORDS = np.concatenate([
    np.random.default_rng(1).integers(0, 2 ** 32, 1 << 18, dtype=np.uint64).astype(np.uint32),
    np.array([0, 1, 2, 0xFF, 0x100, 0x1FF, 0x200, 0x7FFFFFFF, 0x80000000, 0xFFFFFEFF, 0xFFFFFF00,
              0xFFFFFFFE, 0xFFFFFFFF, 0x3FFFFF00, 0x40000000, 0x7FFFFF00, 0xBFFFFF00, 0xC0000000],
             np.uint32)])


def host_bits(emu, which, w, out_dtype, pairs=False):
    n = w.size // 2 if pairs else w.size
    out = np.empty(n, out_dtype)
    emu.lib.sbf_host_bits(ctypes.c_int(which), ctypes.c_int64(n), ptr(np.ascontiguousarray(w)), ptr(out))
    return out


def test_philox_kat(emu):
    # Random123 known-answer vectors (kat_vectors: philox4x32 10 rounds)
    c = np.array([[0, 0, 0, 0], [0xFFFFFFFF] * 4, [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344]], np.uint32)
    k = np.array([[0, 0], [0xFFFFFFFF] * 2, [0xA4093822, 0x299F31D0]], np.uint32)
    want = np.array([[0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8],
                     [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD],
                     [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]], np.uint32)
    out = np.empty_like(c)
    emu.lib.sbf_host_philox4x32_10(ctypes.c_int64(3), ptr(c), ptr(k), ptr(out))
    assert np.array_equal(out, want)
    ref = np.stack(S.philox4x32_10(*c.T, k[:, 0], k[:, 1]), axis=1)
    assert np.array_equal(out, ref)


def test_bits_conversions(emu):
    w = WORDS
    assert_bits(host_bits(emu, 0, w, np.float32).view(np.uint32), S.bits_to_unit_float32(w).view(np.uint32))
    assert_bits(host_bits(emu, 1, w, np.float32).view(np.uint32),
                S.bits_to_open_unit_float32(w).view(np.uint32))
    assert_bits(host_bits(emu, 2, w, np.float32).view(np.uint32), S.bits_to_radius_float32(w).view(np.uint32))
    hi, lo = w[0::2], w[1::2]
    for which, fn in ((3, S.bits_to_unit_float64), (4, S.bits_to_open_unit_float64),
                      (5, S.bits_to_radius_float64)):
        assert_bits(host_bits(emu, which, w, np.float64, pairs=True).view(np.uint64), fn(hi, lo).view(np.uint64))
    cos_t, sin_t = S.angle_cos_sin_float32(w)
    assert_bits(host_bits(emu, 8, w, np.float32).view(np.uint32), cos_t.view(np.uint32))
    assert_bits(host_bits(emu, 9, w, np.float32).view(np.uint32), sin_t.view(np.uint32))


def test_float16_bfloat16_rounding(emu):
    """Every exponent and the rounding-critical low mantissa patterns, plus random bits."""
    e = np.arange(256, dtype=np.uint32) << np.uint32(23)
    low = np.arange(1 << 14, dtype=np.uint32)
    pats = (e[:, None] | low[None, :]).ravel()
    pats = np.concatenate([pats, pats | np.uint32(0x7FC000), pats | np.uint32(0x1000) | np.uint32(0x2000),
                           WORDS])
    pats = np.concatenate([pats, pats | np.uint32(0x80000000)])
    x = pats.view(np.float32)
    assert_bits(host_bits(emu, 6, pats, np.uint16), S.round_float32_to_bfloat16_bits(x))
    assert_bits(host_bits(emu, 7, pats, np.uint16), S.round_float32_to_float16_bits(x))


def map32(emu, which, x, k_offset=0, pa=0.0, qb=0.0, mass=1.0):
    out = np.empty_like(x)
    emu.lib.sbf_host_map_float32(ctypes.c_int(which), ctypes.c_int64(x.size), ptr(x), ptr(out),
                                 ctypes.c_int32(k_offset), ctypes.c_float(pa), ctypes.c_float(qb),
                                 ctypes.c_float(mass))
    return out


def map64(emu, which, x, pa=0.0, qb=0.0, mass=1.0):
    out = np.empty_like(x)
    emu.lib.sbf_host_map_float64(ctypes.c_int(which), ctypes.c_int64(x.size), ptr(x), ptr(out),
                                 ctypes.c_double(pa), ctypes.c_double(qb), ctypes.c_double(mass))
    return out


def test_transcendentals_float32(emu):
    rng = np.random.default_rng(2)
    u = S.bits_to_radius_float32(WORDS)                      # (0, 1]: the Box-Muller inputs
    big = (rng.integers(1, 2 ** 31 - 2 ** 23, 1 << 16) | 0x800000).astype(np.uint32).view(np.float32)
    big = np.abs(big[np.isfinite(big) & (big > 0)])
    for x in (u, big):
        assert_bits(map32(emu, 0, x).view(np.uint32), S.log_float32(x).view(np.uint32))
        assert_bits(map32(emu, 0, x, k_offset=-64).view(np.uint32), S.log_float32(x, -64).view(np.uint32))
    assert_bits(map32(emu, 1, u).view(np.uint32), S.box_muller_radius_float32(u).view(np.uint32))
    s = (S.bits_to_open_unit_float32(WORDS) * np.float32(2.0 ** 63)).astype(np.float32)   # scaled (0, 2**63)
    tiny = np.float32(2.0 ** -60) * S.bits_to_open_unit_float32(WORDS[:4096])
    for x in (s, tiny):
        assert_bits(map32(emu, 2, x).view(np.uint32), S.ndtri_lower_float32(x).view(np.uint32))
    uo = S.bits_to_open_unit_float32(WORDS)
    for a, b in ((-2.0, 2.0), (-1.0, 2.5), (3.0, 9.0), (-math.inf, -12.0)):
        req = make_request("truncated_normal", 4, KEY, lower=a, upper=b, mean=0.0, std=1.0)
        pa, qb, mass = (np.float32(v) for v in (req.pa, req.qb, req.mass))
        assert_bits(map32(emu, 3, uo, pa=pa, qb=qb, mass=mass).view(np.uint32),
                    S.truncated_standard_normal_float32(uo, pa, qb, mass).view(np.uint32))


def test_transcendentals_float64(emu):
    u = S.bits_to_radius_float64(WORDS[0::2], WORDS[1::2])
    assert_bits(map64(emu, 0, u).view(np.uint64), S.log_float64(u).view(np.uint64))
    assert_bits(map64(emu, 1, u).view(np.uint64), S.box_muller_radius_float64(u).view(np.uint64))
    s = S.bits_to_open_unit_float64(WORDS[0::2], WORDS[1::2]) * 0.5
    tiny = s[:4096] * 2.0 ** -120
    for x in (s, tiny):
        assert_bits(map64(emu, 2, x).view(np.uint64), S.ndtri_lower_float64(x).view(np.uint64))
    uo = S.bits_to_open_unit_float64(WORDS[0::2], WORDS[1::2])
    for a, b in ((-2.0, 2.0), (-1.0, 2.5), (3.0, 9.0), (-math.inf, -12.0)):
        req = make_request("truncated_normal", 4, KEY, lower=a, upper=b, mean=0.0, std=1.0, dtype="float64")
        assert_bits(map64(emu, 3, uo, req.pa, req.qb, req.mass).view(np.uint64),
                    S.truncated_standard_normal_float64(uo, req.pa, req.qb, req.mass).view(np.uint64))


def test_element_functions_far_indices(emu):
    """The spec's *_elements at indices across the whole counter range (incl. >= 2**34, 2**63 - 1)."""
    rng = np.random.default_rng(3)
    g = np.concatenate([np.arange(64), rng.integers(0, 2 ** 63 - 1, 4096, dtype=np.int64),
                        np.array([2 ** 32 - 1, 2 ** 32, 2 ** 34 - 1, 2 ** 34, 2 ** 63 - 4, 2 ** 63 - 1])])
    g = g.astype(np.int64)
    gu = g.astype(np.uint64)
    k0, k1 = (np.uint32(w) for w in KEY.words)
    cases = [(0, np.uint32, S.random_bits_elements), (1, np.float32, S.standard_uniform_float32_elements),
             (2, np.float32, S.open_uniform_float32_elements), (3, np.float32, S.standard_normal_float32_elements),
             (4, np.float64, S.standard_uniform_float64_elements), (5, np.float64, S.open_uniform_float64_elements),
             (6, np.float64, S.standard_normal_float64_elements)]
    for which, dt, fn in cases:
        out = np.empty(g.size, dt)
        emu.lib.sbf_host_elements(ctypes.c_int(which), ctypes.c_int64(g.size), ptr(gu), ctypes.c_uint32(k0),
                                  ctypes.c_uint32(k1), ptr(out))
        ref = np.asarray(fn(g, k0, k1), dtype=dt)
        u = {4: np.uint32, 8: np.uint64}[np.dtype(dt).itemsize]
        assert_bits(out.view(u), ref.view(u))


def test_emulation_detects_a_wrong_plan(emu):
    """The comparison can fail: a plan with a shifted base must not match the reference."""
    req = make("normal", "float32", (64, 64), (slice(3, 9), slice(5, 60)))
    plan = cuda_cupy.launch_plan(req, 2)
    plan.base += 1
    out = np.empty(req.size, np.float32)
    emu.launch(plan, out)
    assert not np.array_equal(out.view(np.uint32), reference(req).view(np.uint32))


# --- the backend's generate() glue, with a stand-in for cupy that runs the emulation ------------
class _FakeDevice:
    compute_capability = "90"

    def __init__(self, i=0):
        self.id = i
        self.attributes = {"MultiProcessorCount": 3}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _FakeArray(np.ndarray):
    """A NumPy array that answers ``.device`` like a cupy array."""
    device = _FakeDevice(0)


def fake_cupy(emu, calls):
    import types

    class RawModule:
        def __init__(self, path):
            assert Path(path).read_bytes() == b"cubin for 90"
            calls.append(("module", Path(path).name))

        def get_function(self, name):
            assert name in cuda_cupy.KERNEL_NAMES, name
            calls.append(("get_function", name))

            def kernel(grid, block, args):
                calls.append(("launch", name, grid, block))
                emu.launch_args(name, grid[0], block[0], tuple(np.asarray(a) if isinstance(a, _FakeArray) else a
                                                               for a in args))
            return kernel

    cuda = types.SimpleNamespace(Device=_FakeDevice)
    return types.SimpleNamespace(cuda=cuda, RawModule=RawModule, asarray=lambda a: np.array(a),
                                 zeros=lambda n, dt: np.zeros(n, dt))


def test_generate_glue_with_stand_in_cupy(emu, monkeypatch, tmp_path):
    """cuda_cupy.generate end to end (module loading once, plan, argument packing, outer table)
    with cupy replaced by a stand-in whose kernels run the host emulation."""
    calls = []
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(emu, calls))
    monkeypatch.setenv("SYMBREAK_KERNEL_CACHE", str(tmp_path))

    def compile_kernels(arch, target, options):
        calls.append(("compile", arch, target, options))
        return f"cubin for {arch}".encode()
    monkeypatch.setattr(cuda_cupy, "compile_kernels", compile_kernels)
    monkeypatch.setattr(cuda_cupy, "_nvrtc_version", lambda: (13, 0))
    monkeypatch.setattr(cuda_cupy, "_MODULES", {})
    monkeypatch.setattr(cuda_cupy, "_SM_COUNT", {})
    monkeypatch.setattr(cuda_cupy, "_EMPTY_OUTER", {})
    for dist, dt, shape, index in (("normal", "float32", (301, 77), None),
                                   ("truncated_normal", "bfloat16", (9, 40, 33), (slice(2, 7), 3, slice(1, 30))),
                                   ("uniform", "float64", (1000,), (slice(1, 999),)),
                                   ("bits", None, (64, 64), (slice(5, 60), slice(3, 61)))):
        req = make(dist, dt, shape, index)
        out = np.zeros(req.size, storage(req) if req.dtype.itemsize != 2 else np.uint16).view(_FakeArray)
        cuda_cupy.generate(req, out)
        assert_bits(np.asarray(out), reference(req))
    # compiled once for the device's arch with the production options, loaded once
    assert [c for c in calls if c[0] == "compile"] == [("compile", "90", "cubin", cuda_cupy.NVRTC_OPTIONS)]
    assert len([c for c in calls if c[0] == "module"]) == 1
    cuda_cupy._MODULES.clear()          # a new process: the cubin comes from the cache, no compile
    cuda_cupy.load_module(0)
    assert len([c for c in calls if c[0] == "compile"]) == 1
    assert len([c for c in calls if c[0] == "module"]) == 2
    launches = [c for c in calls if c[0] == "launch"]
    assert len(launches) == 4 and all(c[3] == (cuda_cupy.THREADS,) for c in launches)
    # each kernel function is looked up once per module load, not per call
    got = sorted(c[1] for c in calls if c[0] == "get_function")
    assert got == sorted(cuda_cupy.KERNEL_NAMES * 2)


def test_header_mirrors_every_spec_function():
    """Each public function of _spec.py has its namesake in the header (the vectorized
    ``*_elements`` as the per-element ``*_element``)."""
    import inspect
    text = (cuda_cupy.kernel_dir() / "sbf_random.cuh").read_text()
    names = [n for n, f in vars(S).items() if inspect.isfunction(f) and not n.startswith("_")
             and f.__module__ == S.__name__]
    assert len(names) > 25
    missing = []
    for n in names:
        c = n[:-1] if n.endswith("_elements") else n
        if not __import__("re").search(rf"\b{c}\(", text):
            missing.append(n)
    assert not missing, f"functions of _spec.py without a namesake in sbf_random.cuh: {missing}"


# --- the wheel ships the kernels ------------------------------------------------------------------
def test_wheel_ships_the_kernels(tmp_path):
    """A wheel built from this checkout holds every file of kernels/ as symbreak_fast/kernels/,
    and the installed layout finds them there (kernel_dir) and expands the same source. Built with
    hatchling from this environment when it is importable, else by pip in an isolated build
    environment (pip fetches hatchling). Skipped only when neither can build, and never under CI."""
    import os
    import subprocess
    import zipfile
    root = Path(__file__).resolve().parents[1]
    dist = tmp_path / "dist"
    try:
        import hatchling  # noqa: F401
        isolation = ["--no-build-isolation"]
    except ImportError:
        isolation = []
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(dist), str(root)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode:
        msg = f"building the wheel failed ({' '.join(cmd)}):\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
        if os.environ.get("CI") or isolation:
            pytest.fail(msg + "\n(CI needs the build backend: pip install hatchling)")
        pytest.skip("no build backend here: " + msg.splitlines()[0])
    (wheel,) = dist.glob("symbreak_fast-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {f"symbreak_fast/kernels/{p.name}" for p in cuda_cupy.kernel_dir().iterdir() if p.is_file()}
    assert {"symbreak_fast/kernels/sbf_fill.cu", "symbreak_fast/kernels/sbf_random.cuh",
            "symbreak_fast/kernels/sbf_constants.cuh", "symbreak_fast/kernels/sbf_mlp.cu"} <= want
    assert want <= names, sorted(want - names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import hashlib, symbreak_fast; from symbreak_fast.backends import cuda_cupy as c; "
            "print(symbreak_fast.__file__); print(c.kernel_dir()); "
            "print(hashlib.sha256(c.kernel_source().encode()).hexdigest())")
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=tmp_path).stdout.split()
    assert out[0].startswith(str(site)) and out[1] == str(site / "symbreak_fast" / "kernels"), out
    assert out[2] == __import__("hashlib").sha256(cuda_cupy.kernel_source().encode()).hexdigest()
