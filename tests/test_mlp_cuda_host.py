"""The MLP CUDA kernels (kernels/sbf_mlp.cu) and the CuPy ops (backends/mlp_cupy.py) without a GPU.

1. NVRTC compiles sbf_mlp.cu for sm_80 / sm_90 with mlp_cupy's options; every kernel entry is there.
2. The kernels, compiled for the host (tests/mlp_cuda_host.py) and run over an emulated grid,
   against NumPy: every activation, float32 and float64, odd sizes, batch 1, grids with fewer and
   more threads than work, guard elements after every output.
3. The ops of mlp_cupy end to end through an emulated cupy (cuda_host.make_emulated_cupy, whose
   RawModule runs the host-compiled kernels and whose matmul is NumPy's), against _mlp_ref, and
   an MLP(device="cuda") training run on the emulated device against the CPU.

Tolerances (not bit equality: the kernels call libm's exp/tanh/erf/expm1/log, <= 2 ulp on CUDA and
in glibc, and the GPU build contracts a*b+c into FMAs): a value computed with at most ~8 roundings
and libm calls is within ~10 ulp (float32: 1.2e-6 relative) of the exact value; where the formula
cancels (1 + erf(x) and 1 + tanh(u) near -1, 1 - a^2, sigmoid tails) the error is a few float32
eps of the O(1) terms, i.e. absolute ~1e-6 (times max(1, |z|) where the derivative scales with z).
Both sides of an op-level comparison carry such errors (_mlp_ref is float32 too), and sums add
rows * eps. So float32 uses rtol 1e-5 + atol 2e-6 * scale, float64 rtol 1e-12 + atol 1e-13 * scale;
on the activation grid the measured worst error is 5% of that bound (float32 and float64). A wrong
formula fails by far more (gelu vs gelu_tanh differ by up to 4.7e-4;
test_tolerance_catches_a_wrong_activation checks that the comparison can fail).
"""
import math
import sys

import numpy as np
import pytest
from cuda_host import compiler
from mlp_cuda_host import MlpEmulator, build

from symbreak_fast.backends import cuda_cupy, mlp_cupy

pytestmark = pytest.mark.skipif(compiler() is None and not __import__("os").environ.get("CI"),
                                reason="no C++ compiler (CI requires one)")

ACTS = mlp_cupy.ACTIVATIONS
TOL = {np.float32: (1e-5, 2e-6), np.float64: (1e-12, 1e-13)}
SELU_L, SELU_A = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    return MlpEmulator(build(tmp_path_factory.mktemp("sbf_mlp_emulate")))


def close(got, want, dt, scale=1.0, what=""):
    rtol, atol = TOL[np.dtype(dt).type]
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.abs(got - want)
    lim = rtol * np.abs(want) + atol * scale
    bad = np.flatnonzero(~(err <= lim) & ~(np.isnan(got) & np.isnan(want)))
    assert bad.size == 0, (f"{what}: {bad.size} of {got.size} off, worst {err.ravel()[bad].max():.3g} at "
                           f"{bad[:4]}: {got.ravel()[bad[:4]]} vs {want.ravel()[bad[:4]]}")


# --- float64 reference of each activation (f, f') from the (rounded) inputs ----------------------
def ref_act(act, z, alpha):
    z = np.asarray(z, np.float64)
    erf = np.vectorize(math.erf, otypes=[np.float64])
    with np.errstate(over="ignore", invalid="ignore"):
        if act == "linear":
            return z, np.ones_like(z)
        if act == "relu":
            return np.where(z > 0, z, 0.0), (z > 0).astype(np.float64)
        if act == "leaky_relu":
            return np.where(z > 0, z, alpha * z), np.where(z > 0, 1.0, alpha)
        if act == "tanh":
            t = np.tanh(z)
            return t, 1 - t * t
        if act == "sigmoid":
            s = 0.5 * (1 + np.tanh(0.5 * z))
            return s, s * (1 - s)
        if act == "gelu":
            cdf = 0.5 * (1 + erf(z / math.sqrt(2)))
            return z * cdf, cdf + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        if act == "gelu_tanh":
            k = math.sqrt(2 / math.pi)
            t = np.tanh(k * (z + 0.044715 * z ** 3))
            return 0.5 * z * (1 + t), 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * k * (1 + 3 * 0.044715 * z * z)
        if act == "selu":
            return (np.where(z > 0, SELU_L * z, SELU_L * SELU_A * np.expm1(np.minimum(z, 0))),
                    np.where(z > 0, SELU_L, SELU_L * SELU_A * np.exp(np.minimum(z, 0))))
    raise ValueError(act)


def zgrid(dt):
    z = np.concatenate([np.linspace(-12, 12, 2001), [-90.0, -30.0, -1e-30, 0.0, 1e-30, 30.0, 90.0]])
    return z.astype(dt)


# --- 1. NVRTC ----------------------------------------------------------------------------------
def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
    except Exception as e:  # noqa: BLE001 - cupy missing, or the NVRTC library missing
        if __import__("os").environ.get("CI"):
            pytest.fail(f"CI must run the NVRTC compile check but NVRTC is unusable: {e!r}")
        pytest.skip(f"NVRTC not available ({e!r})")


def test_nvrtc_compiles_every_kernel(emu):
    """PTX for compute_80: every entry, no shared memory / barriers / atomics, IEEE div/sqrt, no ftz."""
    import re
    _nvrtc()
    ptx = mlp_cupy.compile_mlp_kernels("80", "ptx")
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    assert ".target sm_80" in ptx
    entries = set(re.findall(r"\.entry\s+(\w+)", ptx))
    assert entries == set(mlp_cupy.KERNEL_NAMES), entries ^ set(mlp_cupy.KERNEL_NAMES)
    assert len(mlp_cupy.KERNEL_NAMES) == len(set(mlp_cupy.KERNEL_NAMES)) == 46
    assert sorted(emu.kernel_names()) == sorted(mlp_cupy.KERNEL_NAMES)   # the emulation has them all
    # -ftz=false, IEEE div/sqrt: the only approximate / flush-to-zero instructions left are the
    # seeds inside CUDA's own accurate expf/tanhf/erff and double division (ex2.approx, rcp.approx)
    approx = set(re.findall(r"\b[a-z0-9]+(?:\.[a-z0-9]+)*\.(?:ftz|approx)(?:\.[a-z0-9]+)*", ptx))
    assert approx <= {"ex2.approx.f32", "ex2.approx.ftz.f32", "rcp.approx.ftz.f32", "rcp.approx.ftz.f64"}, approx
    assert re.search(r"\bdiv\.rn\.f32", ptx) and re.search(r"\bsqrt\.rn\.f32", ptx)
    assert not re.search(r"\b(ld|st)\.shared|bar\.sync|\batom\.|\bred\.|shfl\.", ptx), \
        "shared memory, barriers, atomics or shuffles: the sequential host emulation would not be faithful"
    # the column-exact GEMM: products and sums rounded separately (no FMA despite -fmad=true), so the
    # device computes the host emulation's (and _mlp_ref.matmul's) bits
    for name, t in (("sbf_mlp_gemm_exact_float32", "f32"), ("sbf_mlp_gemm_exact_float64", "f64")):
        body = ptx[ptx.index(f".entry {name}"):]
        body = body[:body.index("\n}")]
        assert re.search(rf"\bmul\.rn\.{t}", body) and re.search(rf"\badd\.rn\.{t}", body), name
        assert not re.search(r"\bfma\.", body), f"{name} contracts into FMAs"
    assert re.search(r"\bfma\.rn\.f32", ptx), "the other kernels still get FMAs (-fmad=true)"


def test_cubin_for_sm90_and_cache(monkeypatch, tmp_path):
    """load_module's path: a real sm_90 cubin (ptxas accepts every kernel), compiled once, then
    reused from the cache file; the name carries the arch."""
    _nvrtc()
    monkeypatch.setenv("SYMBREAK_KERNEL_CACHE", str(tmp_path))
    n = []
    real = mlp_cupy.compile_mlp_kernels
    monkeypatch.setattr(mlp_cupy, "compile_mlp_kernels", lambda *a: n.append(a) or real(*a))
    p = mlp_cupy._binary_path("90", mlp_cupy.NVRTC_OPTIONS)
    data = p.read_bytes()
    assert data[:4] == b"\x7fELF" and all(k.encode() in data for k in mlp_cupy.KERNEL_NAMES)
    assert mlp_cupy._binary_path("90", mlp_cupy.NVRTC_OPTIONS) == p and len(n) == 1
    assert p.name.startswith("sbf_mlp_sm90_") and n[0][1:] == ("cubin", mlp_cupy.NVRTC_OPTIONS)


# --- 2. kernels on the emulated grid vs NumPy ----------------------------------------------------
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_activation_functions(emu, dt):
    z = zgrid(dt)
    for code, act in enumerate(ACTS):
        f, df = emu.act(code, z, 0.1)
        rf, rdf = ref_act(act, z, 0.1)
        close(f, rf, dt, scale=np.maximum(1, np.abs(z)), what=f"{act} f")
        close(df, rdf, dt, scale=np.maximum(1, np.abs(z)), what=f"{act} f'")
        fn, _ = emu.act(code, np.array([np.nan], dt), 0.1)
        if act != "linear":
            assert np.isnan(fn[0]), f"{act}: NaN must propagate"


def test_tolerance_catches_a_wrong_activation(emu):
    z = zgrid(np.float32)
    f, _ = emu.act(ACTS.index("gelu"), z, 0.0)
    with pytest.raises(AssertionError):
        close(f, ref_act("gelu_tanh", z, 0.0)[0], np.float32)


def guarded(a, fill=np.nan):
    """A C-contiguous copy of ``a`` followed by 3 guard elements; returns (view, whole buffer)."""
    buf = np.full(a.size + 3, fill, a.dtype)
    buf[:a.size] = a.ravel()
    return buf[:a.size].reshape(a.shape), buf


def check_guard(buf, n, fill=np.nan):
    tail = buf[n:]
    assert (np.isnan(tail) if np.isnan(fill) else tail == fill).all(), "a kernel wrote past its output"


SHAPES = [(1, 1), (1, 7), (7, 13), (33, 5), (130, 3)]
GRIDS = [(1, 1), (2, 5), (3, 256)]          # 1 thread, fewer threads than work, more threads


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_bias_act_and_act_grad_kernels(emu, dt):
    rng = np.random.default_rng(1)
    name = "float32" if dt == np.float32 else "float64"
    for k, act in enumerate(ACTS):
        rows, cols = SHAPES[k % len(SHAPES)]
        grid, block = GRIDS[k % len(GRIDS)]
        z0 = (rng.standard_normal((rows, cols)) * 3).astype(dt)
        b = rng.standard_normal(cols).astype(dt)
        z, zb = guarded(z0)
        a, ab = guarded(np.zeros_like(z0))
        emu.launch_args(f"sbf_mlp_bias_act_{act}_{name}", grid, block,
                        (z, b, a, np.int64(rows), np.int64(cols), np.float64(0.2)))
        check_guard(zb, z.size), check_guard(ab, a.size)
        want_z = (z0 + b).astype(dt)
        assert np.array_equal(z, want_z), "z += b is one rounding: exact"
        rf, rdf = ref_act(act, want_z, 0.2)
        close(a, rf, dt, scale=np.maximum(1, np.abs(want_z)), what=f"{act} forward")
        # backward: g *= f'(z), db = g.sum(0); chunked (3 rows per item) + finish, and unchunked
        g0 = rng.standard_normal((rows, cols)).astype(dt)
        for chunk_rows in (rows, 3):
            n_chunks = -(-rows // chunk_rows)
            g, gb = guarded(g0.copy())
            db, dbb = guarded(np.full(cols, np.nan, dt))
            part = np.full(n_chunks * cols, np.nan)
            emu.launch_args(f"sbf_mlp_act_grad_{act}_{name}", grid, block,
                            (g, z, a, np.int64(rows), np.int64(cols), np.float64(0.2), np.int64(chunk_rows),
                             np.int64(n_chunks), part, db))
            if n_chunks > 1:
                assert np.isnan(db).all(), "chunked: db is written by the finish kernel only"
                emu.launch_args(f"sbf_mlp_colsum_finish_{name}", grid, block,
                                (part, np.int64(n_chunks), np.int64(cols), db))
            check_guard(gb, g.size), check_guard(dbb, db.size)
            want_g = g0 * rdf
            close(g, want_g, dt, scale=np.maximum(1, np.abs(g0 * want_z)), what=f"{act} backward")
            close(db, g.astype(np.float64).sum(0), dt, scale=rows, what=f"{act} db")


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_softmax_mse_optimizer_kernels(emu, dt):
    rng = np.random.default_rng(2)
    name = "float32" if dt == np.float32 else "float64"
    for (rows, cols), (grid, block) in zip([(1, 1), (1, 10), (9, 3), (40, 7)], GRIDS + [(1, 3)]):
        x = (rng.standard_normal((rows, cols)) * 5).astype(dt)
        x[0, 0] += 500                        # max subtraction: exp never overflows
        y = rng.integers(0, cols, rows).astype(np.int64)
        d, db_ = guarded(np.zeros_like(x))
        loss = np.full(rows, np.nan)
        emu.launch_args(f"sbf_mlp_softmax_xent_{name}", grid, block,
                        (x, y, d, loss, np.int64(rows), np.int64(cols), np.float64(1 / rows)))
        check_guard(db_, d.size)
        x64 = x.astype(np.float64)
        m = x64.max(1, keepdims=True)
        lse = (m + np.log(np.exp(x64 - m).sum(1, keepdims=True)))[:, 0]
        close(loss, lse - x64[np.arange(rows), y], dt, scale=np.maximum(1, np.abs(lse)), what="row loss")
        p = np.exp(x64 - lse[:, None])
        p[np.arange(rows), y] -= 1
        close(d, p / rows, dt, what="dlogits")
    # a bad label: NaN row loss and gradient, the other rows untouched by it
    x = rng.standard_normal((3, 4)).astype(dt)
    loss, d = np.zeros(3), np.zeros_like(x)
    emu.launch_args(f"sbf_mlp_softmax_xent_{name}", 1, 4, (x, np.array([0, 4, -1], np.int64), d, loss,
                                                            np.int64(3), np.int64(4), np.float64(1 / 3)))
    assert np.isfinite(loss[0]) and np.isnan(loss[1:]).all() and np.isnan(d[1:]).all()
    # mse: per-thread partials over a grid-stride; the partials sum to the loss
    n = 1001
    pr, tg = rng.standard_normal(n).astype(dt), rng.standard_normal(n).astype(dt)
    for grid, block in GRIDS:
        dp, dpb = guarded(np.zeros(n, dt))
        part = np.full(grid * block, np.nan)
        emu.launch_args(f"sbf_mlp_mse_{name}", grid, block, (pr, tg, dp, part, np.int64(n), np.float64(2 / n)))
        check_guard(dpb, n)
        diff = pr.astype(np.float64) - tg
        close(part.sum() / n, np.mean(diff ** 2), dt, what="mse")
        close(dp, 2 * diff / n, dt, what="dmse")
    # optimizers, one pass over the flat buffer
    p0, g = rng.standard_normal(n).astype(dt), rng.standard_normal(n).astype(dt)
    m0, v0 = rng.standard_normal(n).astype(dt), np.abs(rng.standard_normal(n)).astype(dt)
    for grid, block in GRIDS:
        p, pb = guarded(p0.copy())
        emu.launch_args(f"sbf_mlp_sgd_{name}", grid, block, (p, g, np.int64(n), np.float64(0.1)))
        check_guard(pb, n)
        close(p, p0 - 0.1 * g.astype(np.float64), dt, what="sgd")
        p, v = p0.copy(), m0.copy()
        emu.launch_args(f"sbf_mlp_momentum_{name}", grid, block, (p, g, v, np.int64(n), np.float64(0.1),
                                                                  np.float64(0.9)))
        close(v, 0.9 * m0.astype(np.float64) + g, dt, what="momentum v")
        close(p, p0 - 0.1 * (0.9 * m0.astype(np.float64) + g), dt, what="momentum p")
        p, m, v = p0.copy(), m0.copy(), v0.copy()
        b1, b2, eps, lr, t = 0.9, 0.999, 1e-8, 1e-3, 3
        emu.launch_args(f"sbf_mlp_adam_{name}", grid, block,
                        (p, g, m, v, np.int64(n), np.float64(1 - b1), np.float64(b2), np.float64(1 - b2),
                         np.float64(eps), np.float64(lr / (1 - b1 ** t)), np.float64(math.sqrt(1 - b2 ** t))))
        g64 = g.astype(np.float64)
        wm, wv = b1 * m0 + (1 - b1) * g64, b2 * v0.astype(np.float64) + (1 - b2) * g64 ** 2
        close(m, wm, dt, what="adam m"), close(v, wv, dt, what="adam v")
        want = p0 - lr / (1 - b1 ** t) * wm / (np.sqrt(wv) / math.sqrt(1 - b2 ** t) + eps)
        close(p, want, dt, scale=1e-2, what="adam p")


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_gemm_exact_kernel_is_the_reference_bit_for_bit(emu, dt):
    """sbf_mlp_gemm_exact on the emulated grid: _mlp_ref.matmul's bits (k in order, products
    rounded, no FMA) for plain and transposed operands (strides), odd shapes, every grid; identical
    columns of b give bitwise identical columns of out."""
    R = _ref()
    rng = np.random.default_rng(7)
    name = np.dtype(dt).name
    for (m, k, n), (grid, block) in zip([(1, 1, 1), (1, 7, 5), (9, 33, 13), (40, 3, 70), (17, 64, 64)],
                                        GRIDS + [(2, 128), (1, 3)]):
        a = rng.standard_normal((m, k)).astype(dt)
        b = rng.standard_normal((k, n)).astype(dt)
        want = np.empty((m, n), dt)
        R.matmul(a, b, want)
        aT, bT = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)    # a = aT.T, b = bT.T (views)
        for a_base, sa, b_base, sb in ((a, (k, 1), b, (n, 1)), (aT, (1, m), b, (n, 1)),
                                       (a, (k, 1), bT, (1, k)), (aT, (1, m), bT, (1, k))):
            out, ob = guarded(np.zeros((m, n), dt))
            emu.launch_args(f"sbf_mlp_gemm_exact_{name}", grid, block,
                            (a_base, b_base, out, np.int64(m), np.int64(n), np.int64(k), np.int64(sa[0]),
                             np.int64(sa[1]), np.int64(sb[0]), np.int64(sb[1])))
            check_guard(ob, out.size)
            assert np.array_equal(out.view(np.uint8), want.view(np.uint8)), (m, k, n, sa, sb)
        # identical columns: every column of out bitwise equal to the first
        bc = np.repeat(b[:, :1], n, axis=1)
        out = np.zeros((m, n), dt)
        emu.launch_args(f"sbf_mlp_gemm_exact_{name}", grid, block,
                        (a, bc, out, np.int64(m), np.int64(n), np.int64(k), np.int64(k), np.int64(1),
                         np.int64(n), np.int64(1)))
        assert (out.view(np.uint8).reshape(m, n, -1) == out.view(np.uint8).reshape(m, n, -1)[:, :1]).all()


def test_argument_checks_catch_wrong_packing(emu):
    """The emulator refuses what a RawKernel call would misread: a Python float, a wrong dtype."""
    z, b = np.zeros((2, 3), np.float32), np.zeros(3, np.float32)
    with pytest.raises(AssertionError):
        emu.launch_args("sbf_mlp_bias_act_relu_float32", 1, 1, (z, b, z, np.int64(2), np.int64(3), 0.1))
    with pytest.raises(AssertionError):
        emu.launch_args("sbf_mlp_bias_act_relu_float32", 1, 1, (z, b.astype(np.float64), z, np.int64(2),
                                                                 np.int64(3), np.float64(0.1)))
    assert emu.signature("sbf_mlp_act_grad_gelu_float64") == [
        "double*", "double*", "double*", "int64", "int64", "double", "int64", "int64", "double*", "double*"]


# --- 3. the ops through an emulated cupy -----------------------------------------------------------
class _BothEmulators:
    """Dispatches a launch to the MLP emulation (sbf_mlp_*) or the fill emulation (the rest)."""

    def __init__(self, mlp, fill):
        self.mlp, self.fill = mlp, fill

    def launch_args(self, name, grid, block, args):
        (self.mlp if name.startswith("sbf_mlp_") else self.fill).launch_args(name, grid, block, args)


@pytest.fixture(scope="module")
def fill_emu(tmp_path_factory):
    from cuda_host import Emulator
    from cuda_host import build as build_fill
    return Emulator(build_fill(tmp_path_factory.mktemp("sbf_emulate")))


@pytest.fixture
def cp(emu, fill_emu, monkeypatch, tmp_path):
    from cuda_host import make_emulated_cupy

    from symbreak_fast import _dispatch
    fake = make_emulated_cupy(_BothEmulators(emu, fill_emu), n_devices=1)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setenv("SYMBREAK_KERNEL_CACHE", str(tmp_path))
    monkeypatch.delenv("SYMBREAK_BACKEND", raising=False)
    fake.compiles = []
    monkeypatch.setattr(mlp_cupy, "compile_mlp_kernels",
                        lambda arch, target, options: fake.compiles.append((arch, target, options)) or b"cubin")
    monkeypatch.setattr(cuda_cupy, "compile_kernels", lambda arch, target, options: b"cubin")
    monkeypatch.setattr(cuda_cupy, "_nvrtc_version", lambda: (13, 0))
    for mod, cache in ((cuda_cupy, "_MODULES"), (cuda_cupy, "_SM_COUNT"), (cuda_cupy, "_EMPTY_OUTER"),
                       (mlp_cupy, "_MODULES")):
        monkeypatch.setattr(mod, cache, {})
    _dispatch._LOADED.pop("cupy", None)
    yield fake
    _dispatch._LOADED.pop("cupy", None)


def _ref():
    return pytest.importorskip("symbreak_fast._mlp_ref")


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_ops_match_reference(cp, dt):
    """Every op of mlp_cupy (emulated device) against _mlp_ref (NumPy), batch 1 and a chunked batch."""
    R = _ref()
    assert mlp_cupy.xp is cp
    rng = np.random.default_rng(3)
    for k, act in enumerate(ACTS):
        rows, n_in, cols = [(1, 3, 5), (200, 4, 6), (17, 9, 1)][k % 3]   # 200 rows: 7 chunks of 29
        x = rng.standard_normal((rows, n_in)).astype(dt)
        W = rng.standard_normal((n_in, cols)).astype(dt)
        b = rng.standard_normal(cols).astype(dt)
        z_r = np.empty((rows, cols), dt)
        R.matmul(x, W, z_r)
        z_g = cp.empty((rows, cols), dt)
        mlp_cupy.matmul(cp.asarray(x), cp.asarray(W), z_g)
        close(z_g.get(), z_r, dt, scale=n_in)
        z_g = cp.asarray(z_r)                    # same pre-activation on both sides from here
        a_r = z_r if act == "linear" else np.empty_like(z_r)
        a_g = z_g if act == "linear" else cp.empty((rows, cols), dt)
        R.bias_act_forward(z_r, b, act, 0.05, a_r)
        mlp_cupy.bias_act_forward(z_g, cp.asarray(b), act, 0.05, a_g)
        assert np.array_equal(z_g.get(), z_r)
        close(a_g.get(), a_r, dt, scale=np.maximum(1, np.abs(z_r)), what=f"{act} forward")
        g0 = rng.standard_normal((rows, cols)).astype(dt)
        g_r, g_g = g0.copy(), cp.asarray(g0)
        db_r, db_g = np.empty(cols, dt), cp.empty(cols, dt)
        R.act_backward_bias_grad(g_r, z_r, a_r, act, 0.05, db_r)
        mlp_cupy.act_backward_bias_grad(g_g, z_g, cp.asarray(a_r), act, 0.05, db_g)
        close(g_g.get(), g_r, dt, scale=np.maximum(1, np.abs(g0 * z_r)), what=f"{act} backward")
        close(db_g.get(), db_r, dt, scale=rows, what=f"{act} db")
        # transposed views through matmul (the weight-gradient and backprop GEMMs)
        gw = cp.empty((n_in, cols), dt)
        mlp_cupy.matmul(cp.asarray(x).T, g_g, gw)
        close(gw.get(), x.T @ g_g.get(), dt, scale=rows)
    launched = {c[2] for c in cp.calls if c[0] == "launch"}
    assert {f"sbf_mlp_bias_act_{a}_{np.dtype(dt).name}" for a in ACTS} <= launched
    assert f"sbf_mlp_colsum_finish_{np.dtype(dt).name}" in launched        # the 200-row case chunked
    assert len(cp.compiles) == 1 and len([c for c in cp.calls if c[0] == "module"]) == 1


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_loss_and_optimizer_ops_match_reference(cp, dt):
    R = _ref()
    rng = np.random.default_rng(4)
    for rows, cols in ((1, 1), (1, 10), (37, 3), (300, 10)):
        x = (rng.standard_normal((rows, cols)) * 4).astype(dt)
        y = rng.integers(0, cols, rows).astype(np.int64)
        d_r, d_g = np.empty_like(x), cp.empty((rows, cols), dt)
        l_r = R.softmax_xent(x, y, d_r)
        l_g = mlp_cupy.softmax_xent(cp.asarray(x), cp.asarray(y), d_g)
        assert isinstance(l_g, float)
        close(l_g, l_r, dt, scale=max(1, abs(l_r)), what="xent")
        close(d_g.get(), d_r, dt, what="dlogits")
        t = rng.standard_normal((rows, cols)).astype(dt)
        l_r = R.mse(x, t, d_r)
        l_g = mlp_cupy.mse(cp.asarray(x), cp.asarray(t), d_g)
        close(l_g, l_r, dt, scale=max(1, l_r), what="mse")
        close(d_g.get(), d_r, dt, what="dmse")
    with pytest.raises(ValueError, match="outside"):
        mlp_cupy.softmax_xent(cp.asarray(x), cp.asarray(np.full(rows, cols, np.int64)), d_g)
    n = 777
    p0, m0, v0 = (rng.standard_normal(n).astype(dt) for _ in range(3))
    v0 = np.abs(v0)
    pr, mr, vr = p0.copy(), m0.copy(), v0.copy()
    pg, mg, vg = cp.asarray(p0), cp.asarray(m0), cp.asarray(v0)
    for t in (1, 2, 3):
        g = rng.standard_normal(n).astype(dt)
        R.adam(pr, g, mr, vr, 1e-2, 0.9, 0.999, 1e-8, t)
        mlp_cupy.adam(pg, cp.asarray(g), mg, vg, 1e-2, 0.9, 0.999, 1e-8, t)
    close(pg.get(), pr, dt, scale=0.1, what="adam")
    close(mg.get(), mr, dt), close(vg.get(), vr, dt)
    mlp_cupy.momentum(pg, cp.asarray(g), vg, 0.1, 0.9)
    R.momentum(pr, g, vr, 0.1, 0.9)
    close(pg.get(), pr, dt, scale=0.1, what="momentum")
    mlp_cupy.sgd(pg, cp.asarray(g), 0.1)
    R.sgd(pr, g, 0.1)
    close(pg.get(), pr, dt, scale=0.1, what="sgd")


def test_equal_columns_stay_bitwise_equal(cp):
    """Columns that start equal (constant init) get bitwise equal results through every kernel."""
    rng = np.random.default_rng(5)
    rows = 150                                   # chunked bias gradient (sm_count 3)
    col = rng.standard_normal((rows, 1)).astype(np.float32)
    for act in ACTS:
        z = cp.asarray(np.repeat(col, 9, axis=1))
        a = z if act == "linear" else cp.empty((rows, 9), np.float32)
        mlp_cupy.bias_act_forward(z, cp.asarray(np.full(9, 0.3, np.float32)), act, 0.01, a)
        g = cp.asarray(np.repeat(col[::-1].copy(), 9, axis=1))
        db = cp.empty(9, np.float32)
        mlp_cupy.act_backward_bias_grad(g, z, a, act, 0.01, db)
        for arr in (a.get(), g.get(), db.get()[None, :]):
            assert (arr.view(np.uint32) == arr[:, :1].view(np.uint32)).all(), act
    p = cp.asarray(np.full(64, 0.5, np.float32))
    m, v = cp.zeros(64, np.float32), cp.zeros(64, np.float32)
    mlp_cupy.adam(p, cp.asarray(np.full(64, 0.25, np.float32)), m, v, 1e-3, 0.9, 0.999, 1e-8, 1)
    assert (p.get() == p.get()[0]).all()


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_matmul_ops_exact_and_blas(cp, dt):
    """mlp_cupy.matmul (the exact kernel) equals _mlp_ref.matmul bit for bit, transposed views
    included (the three GEMMs of a step); blas_matmul (cuBLAS, NumPy's matmul on this emulated
    device) agrees within tolerance."""
    R = _ref()
    rng = np.random.default_rng(8)
    x = rng.standard_normal((37, 9)).astype(dt)
    W = rng.standard_normal((9, 21)).astype(dt)
    g = rng.standard_normal((37, 21)).astype(dt)
    for a, b in ((x, W), (x.T, g), (g, W.T)):
        want = np.empty((a.shape[0], b.shape[1]), dt)
        R.matmul(a, b, want)
        ga, gb = cp.asarray(np.ascontiguousarray(a.T)).T if not a.flags.c_contiguous else cp.asarray(a), \
            cp.asarray(np.ascontiguousarray(b.T)).T if not b.flags.c_contiguous else cp.asarray(b)
        out = cp.empty(want.shape, dt)
        mlp_cupy.matmul(ga, gb, out)
        assert np.array_equal(out.get(), want)
        mlp_cupy.blas_matmul(ga, gb, out)
        close(out.get(), want, dt, scale=a.shape[1])
    with pytest.raises(ValueError, match="shapes"):
        mlp_cupy.matmul(cp.asarray(x), cp.asarray(x), cp.empty((37, 9), dt))


@pytest.mark.parametrize("init", [("constant", {"value": 0.05}), ["constant", {"value": 0.05}], "ones"])
def test_constant_init_on_the_device_keeps_neurons_bitwise_identical(cp, init):
    """MLP(device="cuda") with a constant init: exact_symmetry picks the exact GEMM kernel, and
    after training every hidden neuron is still a bitwise copy of the first (and did move)."""
    from symbreak_fast.mlp import MLP
    rng = np.random.default_rng(9)
    sizes = [5, 12, 9, 3]
    X = rng.standard_normal((40, 5)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    net = MLP(sizes, init=init, device="cuda", activation="tanh", optimizer="adam", lr=0.01, key=2)
    assert net.exact_symmetry and net._matmul is mlp_cupy.matmul
    W0 = net.params["layers.0.weight"].get().copy()
    for _ in range(4):
        net.step(cp.asarray(X), cp.asarray(y))
    for i in range(len(sizes) - 2):
        W = net.params[f"layers.{i}.weight"].get()
        b = net.params[f"layers.{i}.bias"].get()
        nxt = net.params[f"layers.{i + 1}.weight"].get()
        assert (W == W[:, :1]).all() and (b == b[0]).all() and (nxt == nxt[:1]).all(), f"layer {i} drifted"
    assert not np.array_equal(net.params["layers.0.weight"].get(), W0), "it trained"
    rnd = MLP(sizes, device="cuda", key=2)
    assert not rnd.exact_symmetry and rnd._matmul is mlp_cupy.blas_matmul


def test_op_argument_errors(cp):
    z = cp.empty((4, 3), np.float32)
    with pytest.raises(ValueError, match="unknown activation"):
        mlp_cupy.bias_act_forward(z, cp.empty(3, np.float32), "swish", 0.0, z)
    with pytest.raises(TypeError, match="mixed dtypes"):
        mlp_cupy.bias_act_forward(z, cp.empty(3, np.float64), "relu", 0.0, cp.empty((4, 3), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        mlp_cupy.sgd(cp.empty(8, np.float32)[::2], cp.empty(4, np.float32), 0.1)
    with pytest.raises(ValueError, match="needs a = f"):
        mlp_cupy.act_backward_bias_grad(z, z, None, "tanh", 0.0, cp.empty(3, np.float32))


@pytest.mark.parametrize("loss,opt,act,dt", [("softmax_cross_entropy", "adam", "gelu", "float32"),
                                             ("mse", "momentum", "tanh", "float64")])
def test_mlp_on_the_emulated_device_trains_like_the_cpu(cp, loss, opt, act, dt):
    """MLP(device="cuda") (init on the emulated device, mlp_cupy ops) against MLP(backend="numpy")."""
    import symbreak_fast as sbf
    if not hasattr(sbf, "MLP"):
        from symbreak_fast.mlp import MLP
    else:
        MLP = sbf.MLP
    rng = np.random.default_rng(6)
    sizes = [5, 16, 8, 3]
    X = rng.standard_normal((40, 5)).astype(dt)
    y = rng.integers(0, 3, 40) if loss == "softmax_cross_entropy" else rng.standard_normal((40, 3)).astype(dt)
    kw = {"activation": act, "loss": loss, "optimizer": opt, "lr": 0.05, "key": 11, "dtype": dt}
    gpu, cpu = MLP(sizes, device="cuda", **kw), MLP(sizes, backend="numpy", **kw)
    assert gpu.ops is mlp_cupy
    for name, v in gpu.params.items():
        assert np.array_equal(v.get(), cpu.params[name]), "the init is bit-identical on the device"
    for _ in range(3):
        lg, lc = gpu.step(cp.asarray(X), cp.asarray(y)), cpu.step(X, y)
        close(lg, lc, dt, scale=max(1, abs(lc)) * 10, what="loss")
    for name, v in gpu.params.items():
        close(v.get(), cpu.params[name], dt, scale=10, what=name)
