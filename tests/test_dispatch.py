"""The dispatch layer: backend choice (backend= > use_backend > SYMBREAK_BACKEND > auto),
the registry, ``device=`` parsing and checks, and the device plumbing of every public
function.

No GPU is needed. The GPU branches run against a *fake* "cupy" backend: numpy memory in
an ndarray subclass whose class claims the module "cupy", a generate() that runs the
NumPy reference, and ``xp`` = a small numpy-backed namespace that counts its calls. This
checks routing, placement, out= handling and the host/device split of the initializers;
it says nothing about CuPy or the CUDA kernels themselves.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import types

import ml_dtypes
import numpy as np
import pytest

import symbreak_fast as sbf
from symbreak_fast import _dispatch as D
from symbreak_fast import init as sbi
from symbreak_fast.backends import numpy_ref
from conftest import FLOAT_DTYPES, assert_same_bits, bits_of, call, generator_cases
from test_init import INITS, indices_for

KEY = sbf.Key(2024) / "dispatch"
BF16 = np.dtype(ml_dtypes.bfloat16)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("SYMBREAK_BACKEND", raising=False)
    monkeypatch.setattr(D, "_AUTO_NUMPY_ELEMENTS", [0])     # each test starts as a fresh process would


# ---------------------------------------------------------------------------
# the fake device backend
# ---------------------------------------------------------------------------
class FakeCupyArray(np.ndarray):
    """numpy memory posing as a cupy array on fake CUDA device ``_dev``."""

    def __array_finalize__(self, obj):
        self._dev = getattr(obj, "_dev", 0)

    @property
    def device(self):
        return types.SimpleNamespace(id=self._dev)


FakeCupyArray.__module__ = "cupy"


def fake_array(a, dev=0):
    r = np.array(a, copy=True).view(FakeCupyArray)
    r._dev = dev
    return r


def host(a):
    """A device result as the equivalent CPU array (bfloat16 uint16 storage -> bfloat16)."""
    return np.asarray(a).view(np.ndarray)


class FakeGPU:
    """Module-like fake of backends/cuda_cupy.py with 2 devices; records what it is asked."""
    NAME, DEVICE = "cupy", "cuda"

    def __init__(self, n_devices=2):
        self.n = n_devices
        self.current = 0
        self.calls = []          # ("generate" | "empty" | "scope" | "qr" | "asarray", detail)
        self.scope_stack = []
        counting = self._counting
        self.xp = types.SimpleNamespace(
            asarray=counting("asarray", lambda a: fake_array(a, self._scoped())),
            linalg=types.SimpleNamespace(qr=counting("qr", np.linalg.qr)),
            sign=np.sign, diagonal=np.diagonal, where=np.where, abs=np.abs, isfinite=np.isfinite)

    def _counting(self, what, f):
        def g(*a, **k):
            self.calls.append((what, self._scoped()))
            return f(*a, **k)
        return g

    def _scoped(self):
        return self.scope_stack[-1] if self.scope_stack else self.current

    def probe(self):
        return True, f"fake: {self.n} devices"

    def device_count(self):
        return self.n

    def current_device(self):
        return self.current

    @contextlib.contextmanager
    def device_scope(self, dev):
        self.calls.append(("scope", dev))
        self.scope_stack.append(dev)
        try:
            yield
        finally:
            self.scope_stack.pop()

    def storage_dtype(self, dt):
        return np.dtype(np.uint16) if dt == BF16 else np.dtype(dt)

    def empty(self, shape, dt, device_id):
        assert isinstance(device_id, int) and 0 <= device_id < self.n
        self.calls.append(("empty", (tuple(shape), device_id, self.storage_dtype(dt))))
        a = np.full(shape, 0xAB, dtype=self.storage_dtype(dt)).view(FakeCupyArray)   # garbage, as empty()
        a._dev = device_id
        return a

    def generate(self, req, out_flat):
        assert type(out_flat) is FakeCupyArray and out_flat.ndim == 1 and out_flat.flags.c_contiguous
        want = {"bits": np.uint32}.get(req.dist) or (np.uint16 if req.dtype.itemsize == 2 else req.dtype)
        assert out_flat.dtype == want, (out_flat.dtype, want)
        self.calls.append(("generate", (req.dist, out_flat._dev, out_flat.size)))
        numpy_ref.generate(req, out_flat.view(np.ndarray))

    def count(self, what):
        return sum(1 for c in self.calls if c[0] == what)


@pytest.fixture
def gpu(monkeypatch):
    fake = FakeGPU()
    spec = D.BackendSpec("cupy", "fake.cuda", fake.probe, "fake hint", device="cuda")
    monkeypatch.setitem(D._REGISTRY, "cupy", spec)
    monkeypatch.setitem(D._LOADED, "cupy", fake)
    return fake


REAL_CUPY_OK, REAL_CUPY_WHY = D._REGISTRY["cupy"].probe()


# ---------------------------------------------------------------------------
# 1. the choice rule
# ---------------------------------------------------------------------------
NUMBA_OK = D._REGISTRY["numba"].probe()[0]


def test_auto_threshold_boundary(monkeypatch):
    """The auto rule's two sides of NUMBA_MIN_ELEMENTS in a fresh process (Numba not loaded,
    nothing generated yet), with the reason it gives. Protects the boundary (>=, not >) and the
    reasons' wording; the constant's value comes from benchmarks/test_dispatch.py (see _dispatch)."""
    monkeypatch.delitem(D._LOADED, "numba", raising=False)
    n = D.NUMBA_MIN_ELEMENTS
    assert sbf.which_backend(n - 1) == (
        "numpy", f"auto: {n - 1} elements + 0 given to numpy earlier in this process < {n}: cheaper than "
                 "starting numba")
    name, why = sbf.which_backend(n)
    if NUMBA_OK:
        assert name == "numba" and why.startswith(f"auto: {n} elements + 0 given to numpy") and f">= {n}" in why
    else:
        assert name == "numpy" and "not installed" in why


def test_auto_counts_numpy_work_then_switches_to_numba(monkeypatch):
    """Ski rental: auto sends calls to NumPy and counts their elements until that total plus the
    next call reaches the threshold; that call and every later one (any size) use Numba. Explicit
    and which_backend calls are not counted. The threshold is lowered to keep the test fast."""
    monkeypatch.delitem(D._LOADED, "numba", raising=False)
    monkeypatch.setattr(D, "NUMBA_MIN_ELEMENTS", 1000)
    seen = []
    real = numpy_ref.generate
    monkeypatch.setattr(numpy_ref, "generate", lambda req, out: (seen.append(req.size), real(req, out)))
    a = sbf.normal(600, KEY)
    assert seen == [600] and D._AUTO_NUMPY_ELEMENTS[0] == 600
    sbf.normal(5000, KEY, backend="numpy")                  # explicit: not the auto rule's, not counted
    assert D._AUTO_NUMPY_ELEMENTS[0] == 600
    assert sbf.which_backend(399)[0] == "numpy"
    assert "399 elements + 600 given to numpy" in sbf.which_backend(399)[1]
    assert D._AUTO_NUMPY_ELEMENTS[0] == 600                 # which_backend only asks
    if not NUMBA_OK:
        assert sbf.which_backend(400)[0] == "numpy"
        return
    assert sbf.which_backend(400)[0] == "numba"
    seen.clear()
    b = sbf.normal(400, KEY)
    assert seen == [] and "numba" in D._LOADED
    assert sbf.which_backend(1) == ("numba", "auto: the numba backend is already loaded in this process (no "
                                             "start-up left to pay)")
    assert_same_bits(a, sbf.normal(600, KEY, backend="numpy"))
    assert_same_bits(b, sbf.normal(400, KEY, backend="numpy"))


def test_precedence_explicit_context_env_auto(monkeypatch):
    monkeypatch.delitem(D._LOADED, "numba", raising=False)
    shape = (4, 4)
    assert sbf.which_backend(shape)[1].startswith("auto:")
    monkeypatch.setenv("SYMBREAK_BACKEND", "numba")
    assert sbf.which_backend(shape) == ("numba", "SYMBREAK_BACKEND='numba' environment variable")
    with sbf.use_backend("numpy"):                                  # beats the environment
        assert sbf.which_backend(shape) == ("numpy", "use_backend('numpy') block")
        assert sbf.which_backend(shape, backend="numba") == ("numba", "explicit backend='numba'")
    assert sbf.which_backend(shape)[0] == "numba"                  # restored: env again
    monkeypatch.delenv("SYMBREAK_BACKEND")
    assert sbf.which_backend(shape)[1].startswith("auto:")


def test_use_backend_routes_calls(monkeypatch):
    seen = []
    real = numpy_ref.generate
    monkeypatch.setattr(numpy_ref, "generate", lambda req, out: (seen.append(req.size), real(req, out)))
    monkeypatch.setattr(D, "NUMBA_MIN_ELEMENTS", 1000)
    n = 2000                               # auto would not pick numpy at this size (numba installed)
    ref = sbf.normal(n, KEY, backend="numpy")
    seen.clear()
    with sbf.use_backend("numpy"):
        got = sbf.normal(n, KEY)
    assert seen == [n]
    assert_same_bits(got, ref)


def test_use_backend_nests_and_restores_after_exceptions():
    assert D._CURRENT.get() is None
    with sbf.use_backend("numba"):
        with sbf.use_backend("numpy"):
            assert sbf.which_backend(3)[0] == "numpy"
            with sbf.use_backend(None):                       # back to auto inside
                assert sbf.which_backend(3)[1].startswith("auto:")
            assert sbf.which_backend(3)[0] == "numpy"
        assert sbf.which_backend(3)[0] == "numba"
        with pytest.raises(ZeroDivisionError):
            with sbf.use_backend("numpy"):
                1 / 0
        assert sbf.which_backend(3) == ("numba", "use_backend('numba') block")
    assert D._CURRENT.get() is None


def test_use_backend_is_per_thread():
    barrier = threading.Barrier(2)
    got, errors = {}, []

    def worker(name):
        try:
            with sbf.use_backend(name):
                barrier.wait(timeout=10)                  # both blocks are open at once
                got[name] = sbf.which_backend(3)
                barrier.wait(timeout=10)
        except Exception as e:   # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(n,)) for n in ("numpy", "numba")]
    with sbf.use_backend("numba"):
        outside = []
        t = threading.Thread(target=lambda: outside.append(sbf.which_backend(3)))
        t.start()
        t.join()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert got == {"numpy": ("numpy", "use_backend('numpy') block"),
                   "numba": ("numba", "use_backend('numba') block")}
    assert outside[0][1].startswith("auto:")          # a new thread does not inherit the block


def test_use_backend_is_per_task():
    async def task(name, ev_in, ev_other):
        with sbf.use_backend(name):
            ev_in.set()
            await ev_other.wait()
            return sbf.which_backend(3)[0]

    async def main():
        a, b = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(task("numpy", a, b), task("numba", b, a))

    assert asyncio.run(main()) == ["numpy", "numba"]


def test_unknown_backend_lists_names(monkeypatch):
    for make in (lambda: sbf.use_backend("tpu").__enter__(), lambda: sbf.normal(3, 0, backend="tpu"),
                 lambda: sbf.zeros(3, backend="tpu"), lambda: sbf.which_backend(3, backend="tpu")):
        with pytest.raises(ValueError, match="unknown backend 'tpu'") as ei:
            make()
        for name in ("numpy", "numba", "cupy"):
            assert repr(name) in str(ei.value)
    monkeypatch.setenv("SYMBREAK_BACKEND", "tpu")
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        sbf.normal(3, 0)
    with pytest.raises(TypeError, match="backend must be a str"):
        sbf.use_backend(3).__enter__()
    assert D._CURRENT.get() is None


def test_registering_a_name_twice_is_an_error():
    before = dict(D._REGISTRY)
    for name in ("numpy", "numba", "cupy"):
        with pytest.raises(ValueError, match=f"{name!r} is already registered"):
            D.register_backend(D.BackendSpec(name, "x", lambda: (True, ""), ""))
    with pytest.raises(ValueError, match="device must be one of"):
        D.register_backend(D.BackendSpec("tpu", "x", lambda: (True, ""), "", device="tpu"))
    assert D._REGISTRY == before
    assert D._REGISTRY["cupy"].device == "cuda"
    assert {D._REGISTRY[n].device for n in ("numpy", "numba")} == {"cpu"}


def test_which_backend_for_devices():
    assert sbf.which_backend(5, device="cuda") == ("cupy", "auto: a CUDA device was asked for (device= or a "
                                                           "cupy out=)")
    assert sbf.which_backend(5, out=fake_array(np.zeros(5, np.float32)))[0] == "cupy"
    assert sbf.which_backend(5, device="cpu")[0] in ("numpy", "numba")
    with sbf.use_backend("numpy"):
        with pytest.raises(ValueError, match=r"'numpy' \(use_backend\('numpy'\) block\) runs on the CPU"):
            sbf.which_backend(5, device="cuda:0")
    with pytest.raises(ValueError, match="explicit backend='cupy'.*runs on a CUDA GPU.*device='cpu'"):
        sbf.which_backend(5, device="cpu", backend="cupy")


# ---------------------------------------------------------------------------
# 2. device= strings and device/out/backend agreement (all before anything is written)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["gpu", "cuda:-1", "cuda:", "CUDA", "cuda:0x1", "cuda:1 ", "cuda:²", 0, "cpu:0",
                                    b"cuda"])
def test_bad_device_string(device):
    out = np.full(6, 7.0, np.float32)
    for f in (lambda **k: sbf.normal(6, 0, **k), lambda **k: sbf.zeros(6, **k),
              lambda **k: sbf.sparse((2, 3), 0, 0.5, out=k.pop("out").reshape(2, 3), **k),
              lambda **k: sbf.which_backend(6, **k)):
        with pytest.raises(ValueError, match="device must be None, 'cpu', 'cuda'.*'cuda:N'"):
            f(device=device, out=out)
        assert (out == 7.0).all()
    with pytest.raises(ValueError, match="device must be"):
        sbf.init_params({"w": ((2, 3), "he_normal")}, 0, device=device)


def test_numpy_out_with_cuda_device():
    out = np.full((4, 3), 7.0, np.float32)
    for f in (sbf.normal, sbf.he_normal, sbf.orthogonal, sbf.ones, sbf.identity):
        with pytest.raises(ValueError, match="out= is a numpy array .on the CPU. but device='cuda'"):
            f((4, 3), 0, device="cuda", out=out)
    assert (out == 7.0).all()


@pytest.mark.parametrize("kw,msg", [
    (dict(device="cpu"), "out= is a cupy array .on the GPU. but device='cpu'"),
    (dict(backend="numba"), "backend 'numba' .explicit backend='numba'. runs on the CPU but a cupy out= array"),
    (dict(backend="numpy", device="cuda"), "backend 'numpy'.*runs on the CPU but device='cuda'"),
])
def test_cupy_out_with_cpu_request(kw, msg):
    out = fake_array(np.full((4, 3), 7.0, np.float32))
    for f in (sbf.normal, sbf.he_uniform, sbf.orthogonal, sbf.zeros, sbf.identity,
              lambda s, k, **kw: sbf.sparse(s, k, 0.5, **kw)):
        with pytest.raises(ValueError, match=msg):
            f((4, 3), 0, out=out, **kw)
    assert (host(out) == 7.0).all()


def test_cupy_out_under_cpu_context_or_env(monkeypatch):
    out = fake_array(np.full(5, 7.0, np.float32))
    with sbf.use_backend("numpy"):
        with pytest.raises(ValueError, match=r"use_backend\('numpy'\) block.*runs on the CPU.*cupy out="):
            sbf.normal(5, 0, out=out)
    monkeypatch.setenv("SYMBREAK_BACKEND", "numba")
    with pytest.raises(ValueError, match="SYMBREAK_BACKEND='numba' environment variable"):
        sbf.uniform(5, 0, out=out)
    assert (host(out) == 7.0).all()


# ---------------------------------------------------------------------------
# 3. an unavailable GPU backend: a clear RuntimeError before anything happens
# ---------------------------------------------------------------------------
needs_real_cupy_without_device = pytest.mark.skipif(
    REAL_CUPY_OK or "no CUDA device" not in REAL_CUPY_WHY,
    reason=f"needs cupy installed and no usable CUDA device ({REAL_CUPY_WHY})")


@needs_real_cupy_without_device
def test_no_cuda_device_is_a_clear_error():
    assert "cupy" not in sbf.available_backends()
    calls = [lambda: sbf.normal(4, 0, device="cuda"), lambda: sbf.random_bits(4, 0, device="cuda:0"),
             lambda: sbf.normal(4, 0, backend="cupy"), lambda: sbf.zeros(4, device="cuda"),
             lambda: sbf.orthogonal((3, 3), 0, device="cuda"), lambda: sbf.identity((3, 3), device="cuda"),
             lambda: sbf.sparse((3, 3), 0, 0.5, device="cuda"), lambda: sbf.init_params({"w": ((3, 3), "zeros")}, 0,
                                                                                       device="cuda", flat=True),
             lambda: sbf.use_backend("cupy").__enter__()]
    for f in calls:
        with pytest.raises(RuntimeError, match="backend 'cupy' is not available: no CUDA device found") as ei:
            f()
        assert 'pip install "symbreak-fast[gpu]"' in str(ei.value)
    assert D._CURRENT.get() is None
    assert "cupy" not in D._LOADED


def test_cupy_not_installed_hint():
    # a subprocess where cupy cannot be found or imported, as if it were not installed
    code = r"""
import sys
sys.modules["cupy"] = None
import symbreak_fast as s
print(s.available_backends())
for f in (lambda: s.normal(3, 0, device="cuda"), lambda: s.ones(3, backend="cupy")):
    try:
        f()
    except RuntimeError as e:
        print(e)
print(s.normal(3, 0).dtype)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(sbf.__file__))))
    lines = r.stdout.strip().splitlines()
    assert "cupy" not in lines[0]
    for line in lines[1:3]:
        assert line.startswith("backend 'cupy' is not available: cupy is not installed")
        assert 'pip install "symbreak-fast[gpu]"' in line and "cupy-cudaXXx" in line
    assert lines[3] == "float32"


def test_cpu_calls_never_import_cupy():
    code = ("import sys, numpy as np, symbreak_fast as s; s.normal((8, 8), 0); s.zeros(3); s.orthogonal((4, 4), 1); "
            "s.identity((3, 3)); s.dirac((2, 2, 3)); s.sparse((4, 4), 0, 0.5); s.uniform(5, 0, out=np.empty(5, 'f4')); "
            "s.init_params({'w': ((3, 3), 'he_normal')}, 0, flat=True); s.which_backend(3, device='cuda'); "
            "s.normal(3, 0, device='cpu'); print('cupy' in sys.modules, 'numba' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------------
# 4. device plumbing, against the fake backend
# ---------------------------------------------------------------------------
def test_fake_device_count_checks(gpu):
    out = fake_array(np.full(5, 7.0, np.float32), dev=1)
    with pytest.raises(ValueError, match=r"cuda:7 does not exist: 2 device\(s\) visible \(cuda:0 .. cuda:1\)"):
        sbf.normal(5, 0, device="cuda:7")
    with pytest.raises(ValueError, match="out= is on cuda:1 but device='cuda:0'"):
        sbf.normal(5, 0, device="cuda:0", out=out)
    assert (host(out) == 7.0).all()
    assert gpu.count("generate") == 0 and gpu.count("empty") == 0
    assert sbf.normal(5, 0, device="cuda", out=out) is out             # "cuda" accepts any device's out=
    assert sbf.available_backends()[-1] == "cupy"


@pytest.mark.parametrize("out,exc,msg", [
    (fake_array(np.zeros((3, 4), np.float32)), ValueError, "shape"),
    (fake_array(np.zeros((4, 3), np.float64)), ValueError, "dtype"),
    (fake_array(np.zeros((4, 6), np.float32))[:, ::2], ValueError, "C-contiguous"),
])
def test_bad_cupy_out_untouched(gpu, out, exc, msg):
    before = host(out).copy()
    with pytest.raises(exc, match=msg):
        sbf.normal((4, 3), 0, out=out)
    with pytest.raises(exc, match=msg):
        sbf.orthogonal((4, 3), 0, out=out)
    assert_same_bits(host(out), before)
    assert gpu.count("generate") == 0


def test_bfloat16_cupy_out_is_uint16(gpu):
    with pytest.raises(ValueError, match="needs a uint16 cupy array .cupy has no bfloat16"):
        sbf.normal(4, 0, dtype="bfloat16", out=fake_array(np.zeros(4, np.float32)))
    out = fake_array(np.zeros(4, np.uint16))
    assert sbf.normal(4, 0, dtype="bfloat16", out=out) is out
    assert_same_bits(host(out), bits_of(sbf.normal(4, 0, dtype="bfloat16")))


@pytest.mark.parametrize("name,dt", list(generator_cases()))
def test_generators_on_fake_device(gpu, name, dt):
    for shape, index in [((5, 7), None), ((6, 9), (slice(1, 4), 2)), ((0, 3), None)]:
        ref = call(name, dt, shape, KEY, index=index, backend="numpy")
        for dev, kw in [(0, dict(device="cuda")), (1, dict(device="cuda:1")), (0, dict(backend="cupy"))]:
            n_gen = gpu.count("generate")
            got = call(name, dt, shape, KEY, index=index, **kw)
            assert type(got) is FakeCupyArray and got._dev == dev
            assert got.dtype == (np.uint16 if dt == "bfloat16" else ref.dtype)
            assert_same_bits(host(got), bits_of(ref) if dt == "bfloat16" else ref)
            assert gpu.count("generate") == n_gen + (ref.size > 0)
        out = fake_array(np.full(ref.shape, 3, gpu.storage_dtype(ref.dtype)), dev=1)
        assert call(name, dt, shape, KEY, index=index, out=out) is out
        assert_same_bits(host(out), bits_of(ref) if dt == "bfloat16" else ref)


def test_context_and_env_select_the_gpu(gpu, monkeypatch):
    ref = sbf.uniform(6, KEY)
    with sbf.use_backend("cupy"):
        got = sbf.uniform(6, KEY)
        z = sbf.zeros(6)
    assert type(got) is FakeCupyArray and type(z) is FakeCupyArray
    assert_same_bits(host(got), ref)
    monkeypatch.setenv("SYMBREAK_BACKEND", "cupy")
    assert type(sbf.uniform(6, KEY)) is FakeCupyArray
    assert type(sbf.uniform(6, KEY, backend="numpy")) is np.ndarray          # explicit beats env
    gpu.current = 1
    assert sbf.he_normal((3, 4), KEY)._dev == 1                              # the current device


def _ref_and_device(fn, shape, key, dt, **kw):
    ref = fn(shape, key, dtype=dt, backend="numpy", **kw)
    return ref, (bits_of(ref) if dt == "bfloat16" else ref)


@pytest.mark.parametrize("name", INITS)
def test_initializers_on_fake_device(gpu, name):
    fn, shapes = INITS[name]
    for shape in shapes:
        for dt in FLOAT_DTYPES:
            key = KEY / name / str(shape)
            ref, want = _ref_and_device(fn, shape, key, dt)
            got = fn(shape, key, dtype=dt, device="cuda:1")
            assert type(got) is FakeCupyArray and got._dev == 1, type(got)
            assert_same_bits(host(got), want)
            for index in indices_for(shape)[:2]:
                part = fn(shape, key, dtype=dt, index=index, device="cuda")
                assert type(part) is FakeCupyArray
                assert_same_bits(host(part), bits_of(ref[index]) if dt == "bfloat16" else ref[index])
            out = fake_array(np.full(shape, 9, gpu.storage_dtype(ref.dtype)))
            assert fn(shape, key, dtype=dt, out=out) is out
            assert_same_bits(host(out), want)


def test_gpu_branches_use_the_device(gpu):
    # orthogonal: float64 draw generated on the device, QR through xp, on the right device
    sbf.orthogonal((6, 4), KEY, device="cuda:1")
    assert ("generate", ("normal", 1, 24)) in gpu.calls and ("qr", 1) in gpu.calls
    # identity / dirac: built on the host, uploaded (no generate)
    gpu.calls.clear()
    sbf.identity((3, 5), device="cuda:1")
    sbf.dirac((4, 4, 3), device="cuda:1")
    assert gpu.count("asarray") == 2 and gpu.count("generate") == 0 and ("asarray", 1) in gpu.calls
    # constant: a device fill (neither a draw nor an upload)
    gpu.calls.clear()
    sbf.constant((3, 3), value=0.1, dtype="bfloat16", device="cuda")
    assert [c[0] for c in gpu.calls] == ["empty"]
    # sparse: values drawn on the device, the mask computed on the host and uploaded
    gpu.calls.clear()
    sbf.sparse((8, 5), KEY, 0.5, device="cuda:1")
    assert [c[1][0] for c in gpu.calls if c[0] == "generate"] == ["normal"]
    assert ("asarray", 1) in gpu.calls


def test_constant_fill_is_correctly_rounded(gpu):
    for dt in FLOAT_DTYPES:
        for v in (0.1, -1e-5, 1 / 3, 65504.0 if dt == "float16" else 3e5):
            ref = sbf.constant((2, 3), value=v, dtype=dt)
            got = sbf.constant((2, 3), value=v, dtype=dt, device="cuda")
            assert_same_bits(host(got), bits_of(ref) if dt == "bfloat16" else ref)
    with pytest.raises(ValueError, match="overflows"):
        sbf.constant(3, value=1e6, dtype="float16", device="cuda")


def test_orthogonal_rounding_on_device_matches_cpu():
    # the device rounding float64 -> dtype (run here with xp = numpy) is the CPU's, bit for bit
    rng = np.random.default_rng(7)
    x = rng.standard_normal(200_000) * np.exp(rng.uniform(-320, 80, 200_000))
    x = np.concatenate([x[np.abs(x) < 3.38e38], [(1 + 2.0 ** -8 + 2.0 ** -30), -(1 + 2.0 ** -8 + 2.0 ** -30),
                                                  0.0, -0.0, 2.0 ** -149, 2.0 ** -150 * 1.0001, 3.3e38]])
    for dt in (BF16, np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)):
        y = x if dt != np.float16 else x[np.abs(x) < 65504]
        want = sbi._round_checked(y, dt, "gain")
        assert_same_bits(sbi._round_checked_xp(np, y, dt, "gain"), bits_of(want) if dt == BF16 else want)
    with pytest.raises(ValueError, match="gain overflows bfloat16"):
        sbi._round_checked_xp(np, np.array([3.4e38]), BF16, "gain")


def test_orthogonal_bad_gain_on_device_leaves_out_untouched(gpu):
    out = fake_array(np.full((4, 4), 5, np.uint16))
    with pytest.raises(ValueError, match="overflows"):
        sbf.orthogonal((4, 4), KEY, 1e39, dtype="bfloat16", out=out)
    assert (host(out) == 5).all()


SPEC = {"w1": ((6, 5), "he_normal"), "b1": ((5,), "zeros"), "w2": ((5, 5), "orthogonal"),
        "g": ((5,), "constant", {"value": 0.5}), "e": ((4, 4), "eye"), "s": ((5, 4), "sparse", {"sparsity": 0.5})}


@pytest.mark.parametrize("dt", ["float32", "bfloat16"])
def test_init_params_on_fake_device(gpu, dt):
    ref = sbf.init_params(SPEC, KEY, dtype=dt)
    got = sbf.init_params(SPEC, KEY, dtype=dt, device="cuda:1")
    assert list(got) == list(SPEC)
    for name in SPEC:
        assert type(got[name]) is FakeCupyArray and got[name]._dev == 1
        assert_same_bits(host(got[name]), bits_of(ref[name]) if dt == "bfloat16" else ref[name])
    gpu.calls.clear()
    buf, views = sbf.init_params(SPEC, KEY, dtype=dt, device="cuda:1", flat=True)
    total = sum(a.size for a in ref.values())
    sdt = gpu.storage_dtype(ref["w1"].dtype)      # (orthogonal also allocates a float64 draw)
    assert [c for c in gpu.calls if c[0] == "empty" and c[1][2] == sdt] == [("empty", ((total,), 1, sdt))]
    assert type(buf) is FakeCupyArray and buf._dev == 1 and buf.shape == (total,)
    rbuf, _ = sbf.init_params(SPEC, KEY, dtype=dt, flat=True)
    assert_same_bits(host(buf), bits_of(rbuf) if dt == "bfloat16" else rbuf)
    assert all(np.shares_memory(v, buf) for v in views.values())
    with sbf.use_backend("cupy"):                 # a cupy choice alone puts the buffer on the GPU
        assert type(sbf.init_params(SPEC, KEY, dtype=dt, flat=True)[0]) is FakeCupyArray


def test_init_params_device_checks(gpu):
    def host_only(shape, key, *, dtype, backend=None, device=None, out=None):
        return np.zeros(shape, dtype)

    with pytest.raises(ValueError, match="parameter 'w': the initializer returned ndarray .* expected a cupy array"):
        sbf.init_params({"w": ((2, 2), host_only)}, 0, device="cuda")
    with pytest.raises(ValueError, match="expected a cupy array"):
        sbf.init_params({"w": ((2, 2), host_only)}, 0, device="cuda", flat=True)
    with pytest.raises(ValueError, match=r"\['device'\] are set by init_params"):
        sbf.init_params({"w": ((2, 2), "zeros", {"device": "cuda"})}, 0)
    with pytest.raises(ValueError, match="runs on the CPU but device='cuda'"):
        sbf.init_params({"w": ((2, 2), "zeros")}, 0, device="cuda", backend="numpy")
    # device= reaches callables only when given
    seen = []

    def spy(shape, key, *, dtype, backend=None, out=None, **kw):
        seen.append(kw)
        return sbf.zeros(shape, dtype=dtype, backend=backend, out=out, **kw)

    sbf.init_params({"w": ((2, 2), spy)}, 0)
    sbf.init_params({"w": ((2, 2), spy)}, 0, device="cuda")
    sbf.init_params({"w": ((2, 2), spy)}, 0, device="cuda", flat=True)      # out= carries the device
    assert seen == [{}, {"device": "cuda:0"}, {}]


# ---------------------------------------------------------------------------
# 5. torch: when CUDA parameters would be filled on the GPU (the fill itself needs a GPU)
# ---------------------------------------------------------------------------
def test_torch_gpu_fill_decision(gpu, monkeypatch):
    st = pytest.importorskip("symbreak_fast.torch")
    assert st._gpu_fill_wanted(None) is True
    assert st._gpu_fill_wanted("numba") is False
    assert st._gpu_fill_wanted("cupy") is True
    with sbf.use_backend("numpy"):
        assert st._gpu_fill_wanted(None) is False
    monkeypatch.setenv("SYMBREAK_BACKEND", "numba")
    assert st._gpu_fill_wanted(None) is False
    monkeypatch.delenv("SYMBREAK_BACKEND")
    monkeypatch.setitem(D._REGISTRY, "cupy", D.BackendSpec("cupy", "x", lambda: (False, "no"), "", device="cuda"))
    assert st._gpu_fill_wanted(None) is False      # no usable GPU backend: generate on the CPU and copy
    with pytest.raises(ValueError, match="unknown backend"):
        st._gpu_fill_wanted("tpu")


_FRESH_INIT_PARAMS = r"""
import symbreak_fast as sbf
from symbreak_fast import _dispatch
spec = {f"w{i}": ((1024, 1024), "he_normal") for i in range(9)}     # 9 x 2**20 > 2**23 elements
sbf.init_params(spec, 0)
small = sbf.init_params({"b": ((8,), "zeros"), "w": ((4, 4), "xavier_uniform")}, 0)
print(_dispatch._AUTO_NUMPY_ELEMENTS[0], "numba" in _dispatch._LOADED)
"""


def test_init_params_decides_the_auto_backend_for_the_whole_spec(tmp_path):
    """Every tensor is below 2**23 elements but the spec is above: a fresh process generates
    all of it with Numba instead of renting the reference for the first tensors."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "SYMBREAK_BACKEND"}
    r = subprocess.run([sys.executable, "-c", _FRESH_INIT_PARAMS], env=env, capture_output=True, text=True,
                       timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["0", "True"]
