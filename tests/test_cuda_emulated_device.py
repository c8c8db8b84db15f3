"""The public API's whole CUDA path on an emulated device, against the CPU, bit for bit.

``cupy`` is replaced by tests/cuda_host.make_emulated_cupy: arrays are NumPy arrays tagged
with a device, and the kernels are the real kernels/sbf_fill.cu compiled for the host. So
``sbf.normal(..., device="cuda")`` runs the real dispatch, device checks, cuda_cupy launch
plans, module loading and argument packing. Only NVRTC (tests/test_nvrtc.py) and the device
itself (tests/test_gpu.py) are left out.
"""
import sys

import numpy as np
import pytest

import symbreak_fast as sbf
from symbreak_fast import _dispatch
from symbreak_fast.backends import cuda_cupy

from conftest import FLOAT_DTYPES, GENERATORS, assert_same_bits, generator_cases
from cuda_host import Emulator, build, make_emulated_cupy

KEY = sbf.Key(7)


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    return Emulator(build(tmp_path_factory.mktemp("sbf_emulate")))


@pytest.fixture
def cp(emu, monkeypatch, tmp_path):
    """Two emulated CUDA devices in place of cupy for the duration of a test."""
    fake = make_emulated_cupy(emu, n_devices=2)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setenv("SYMBREAK_KERNEL_CACHE", str(tmp_path))
    monkeypatch.delenv("SYMBREAK_BACKEND", raising=False)
    monkeypatch.setattr(cuda_cupy, "compile_kernels", lambda arch, target, options: b"cubin")
    monkeypatch.setattr(cuda_cupy, "_nvrtc_version", lambda: (13, 0))
    for cache in ("_MODULES", "_SM_COUNT", "_EMPTY_OUTER"):
        monkeypatch.setattr(cuda_cupy, cache, {})
    _dispatch._LOADED.pop("cupy", None)
    yield fake
    _dispatch._LOADED.pop("cupy", None)


def host_bits(a):
    a = np.asarray(a)
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def same_as_cpu(gpu, cpu):
    assert type(gpu).__module__.startswith("cupy"), type(gpu)
    cpu = np.asarray(cpu)
    if cpu.dtype.name == "bfloat16":
        assert np.asarray(gpu).dtype == np.uint16           # bf16 bits in a uint16 cupy array
    assert np.asarray(gpu).shape == cpu.shape
    assert np.array_equal(host_bits(gpu), host_bits(cpu))


@pytest.mark.parametrize("name,dtype", list(generator_cases()))
def test_generators_on_the_emulated_device(cp, name, dtype):
    fn = GENERATORS[name]
    kw = {} if dtype is None else {"dtype": dtype}
    for shape, index in (((67, 45), None), ((67, 45), (slice(3, 60), slice(1, 44))), ((5, 7, 9), (2, slice(1, 6))),
                         ((4099,), None), ((0, 3), None)):
        got = fn(shape, KEY, device="cuda", index=index, **kw)
        same_as_cpu(got, fn(shape, KEY, backend="numpy", index=index, **kw))
        assert got.device.id == 0
    assert any(c[0] == "launch" for c in cp.calls)


def test_out_selects_its_device(cp):
    with cp.cuda.Device(1):
        out = cp.empty((33, 17), np.float32)
    got = sbf.normal((33, 17), KEY, 0.5, 2.0, out=out)
    assert got is out and out.device.id == 1
    assert cp.calls[-1] == ("launch", 1, "sbf_normal_float32")
    same_as_cpu(out, sbf.normal((33, 17), KEY, 0.5, 2.0, backend="numpy"))
    bf = cp.empty((40,), np.uint16)
    sbf.truncated_normal(40, KEY, dtype="bfloat16", out=bf)
    same_as_cpu(bf, sbf.truncated_normal(40, KEY, dtype="bfloat16", backend="numpy"))


def test_device_strings(cp):
    a = sbf.uniform(100, KEY, device="cuda:1")
    assert a.device.id == 1
    with cp.cuda.Device(1):
        assert sbf.uniform(100, KEY, device="cuda").device.id == 1       # "cuda" = current device
    with pytest.raises(ValueError, match="cuda:2 does not exist"):
        sbf.uniform(100, KEY, device="cuda:2")
    assert sbf.which_backend(100, device="cuda")[0] == "cupy"
    with sbf.use_backend("cupy"):
        assert sbf.normal(10, KEY).device.id == 0


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_initializers_on_the_emulated_device(cp, dtype):
    cases = [
        lambda **kw: sbf.he_normal((48, 30), KEY, **kw),
        lambda **kw: sbf.xavier_uniform((3, 3, 8, 16), KEY, gain=1.5, **kw),
        lambda **kw: sbf.lecun_normal((40, 20), KEY, distribution="truncated_normal", **kw),
        lambda **kw: sbf.constant((5, 6), None, 0.1, **kw),
        lambda **kw: sbf.zeros((5, 6), **kw),
        lambda **kw: sbf.identity((7, 9), gain=2.0, index=(slice(1, 6), slice(2, 9)), **kw),
        lambda **kw: sbf.dirac((8, 4, 3, 3), groups=2, **kw),
        lambda **kw: sbf.sparse((30, 12), KEY, 0.3, std=0.5, **kw),
        # numpy's QR stands in for cuSOLVER here, so even orthogonal matches bit for bit
        lambda **kw: sbf.orthogonal((20, 12), KEY, gain=1.3, **kw),
    ]
    for f in cases:
        same_as_cpu(f(dtype=dtype, device="cuda"), f(dtype=dtype, backend="numpy"))


def test_init_params_on_the_emulated_device(cp):
    spec = {"w1": ((64, 32), "he_normal"), "b1": ((32,), "zeros"),
            "w2": ((32, 10), "xavier_uniform", {"gain": 0.5}), "w3": ((10, 10), "orthogonal")}
    cpu = sbf.init_params(spec, KEY, backend="numpy")
    gpu = sbf.init_params(spec, KEY, device="cuda")
    for k in spec:
        same_as_cpu(gpu[k], cpu[k])
    buf, views = sbf.init_params(spec, KEY, device="cuda:1", flat=True)
    assert buf.device.id == 1 and buf.size == sum(np.asarray(v).size for v in cpu.values())
    for k in spec:
        same_as_cpu(views[k], cpu[k])
        assert np.shares_memory(np.asarray(views[k]), np.asarray(buf))


def test_cpu_backend_list_leaves_out_the_gpu(cp):
    """With a CUDA device (here emulated) available_backends() includes "cupy"; the list the CPU
    test files loop over (conftest.cpu_backends) does not, since they hand the backend numpy out=
    arrays and np.ascontiguousarray its results (what a GPU machine's CPU run needs)."""
    from conftest import cpu_backends
    assert "cupy" in sbf.available_backends()
    assert "cupy" not in cpu_backends() and "numpy" in cpu_backends()
    assert set(cpu_backends()) == set(sbf.available_backends()) - {"cupy"}
    for b in cpu_backends():
        out = np.empty(8, np.float32)
        assert sbf.normal(8, KEY, backend=b, out=out) is out and type(out) is np.ndarray


def test_nvrtc_missing_is_a_clear_error(cp, monkeypatch):
    """CuPy and a device but no NVRTC (plain cupy-cuda13x without a toolkit): the backend is
    unavailable, and the error names the library and what to install, before anything runs."""
    def no_nvrtc():
        raise OSError("libnvrtc.so.13: cannot open shared object file: No such file or directory")
    monkeypatch.setattr(cuda_cupy, "_nvrtc_version", no_nvrtc)
    ok, why = cuda_cupy.probe()
    assert not ok and "NVRTC" in why and "nvidia-cuda-nvrtc" in why and '"cupy-cuda13x[ctk]"' in why
    assert "cupy" not in sbf.available_backends()
    with pytest.raises(RuntimeError, match="backend 'cupy' is not available: CuPy is installed but NVRTC") as ei:
        sbf.normal(4, KEY, device="cuda")
    assert "libnvrtc.so.13" in str(ei.value)
    assert not any(c[0] in ("module", "launch") for c in cp.calls)


def test_the_comparison_can_fail(cp, monkeypatch):
    """A wrong kernel argument (the key's words swapped) is caught."""
    real = cuda_cupy.LaunchPlan.args

    def swapped(self, out, outer):
        a = list(real(self, out, outer))
        a[6], a[7] = a[7], a[6]
        return tuple(a)
    monkeypatch.setattr(cuda_cupy.LaunchPlan, "args", swapped)
    got = sbf.normal(64, KEY, device="cuda")
    assert not np.array_equal(host_bits(got), host_bits(sbf.normal(64, KEY, backend="numpy")))


def test_device_bfloat16_rounding_from_float64_is_correct():
    """init._round_checked_xp (float64 -> bfloat16 on the device by round-to-odd float32 then RNE)
    equals ml_dtypes' correctly rounded conversion, also just off the bf16 midpoints where a
    plain float64 -> float32 -> bfloat16 double rounding goes wrong."""
    import ml_dtypes
    from symbreak_fast.init import _round_checked_xp
    rng = np.random.default_rng(11)
    bf = rng.integers(0, 0x7F7F, 4096, dtype=np.uint32).astype(np.uint16)        # finite bf16 patterns
    mid = (bf.astype(np.uint32) << np.uint32(16) | np.uint32(0x8000)).view(np.float32).astype(np.float64)
    ulp = np.abs(mid) * 2.0 ** -40
    x = np.concatenate([mid, mid + ulp, mid - ulp, -mid - ulp, rng.standard_normal(4096) * 1e3,
                        np.array([0.0, -0.0, 1e-40, -3e-39, 3.3e38])])
    got = _round_checked_xp(np, x, np.dtype(ml_dtypes.bfloat16), "x")
    want = x.astype(ml_dtypes.bfloat16).view(np.uint16)
    assert np.array_equal(got, want)
    naive = x.astype(np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)
    assert not np.array_equal(naive, want)         # the inputs do exercise the double-rounding trap


def _bench_result(bits_ok=True, error="", peer_error=""):
    from symbreak_fast import bench_gpu as G
    n = 1 << 20
    rows = [G.Row("roofline", "float32", "cupy ndarray.fill(1.0)", n, 4 * n, seconds=1e-4),
            G.Row("normal", "float32", "symbreak normal", n, 4 * n, ours=True, seconds=2e-4, bits_ok=bits_ok),
            G.Row("uniform", "bfloat16", "symbreak uniform", n, 2 * n, ours=True, seconds=1e-4, bits_ok=True,
                  error=error),
            G.Row("normal", "float32", "torch.randn(out=)", n, 4 * n, seconds=3e-4 if not peer_error else None,
                  error=peer_error)]
    if error:
        rows[2].seconds, rows[2].bits_ok = None, None
    info = {"name": "emulated", "compute_capability": "90", "memory_GiB": 1, "driver": 0, "runtime": 0, "cupy": "-"}
    return G._summarize(rows, info, [], n=n, repeat=3, inner=1, warmup=1)


@pytest.mark.parametrize("case,rc", [({}, 0), ({"bits_ok": False}, 1), ({"error": "CUDARuntimeError: boom"}, 1),
                                     ({"peer_error": "torch OOM"}, 0)])
def test_bench_cuda_exit_status(monkeypatch, tmp_path, capsys, case, rc):
    """`symbreak-fast bench --device cuda` exits non-zero when any of our rows is not bit-identical
    to the CPU or failed (scripts/gpu_check.sh then reports failure); a peer's error is only shown."""
    from symbreak_fast import bench_gpu as G
    from symbreak_fast.cli import main
    res = _bench_result(**case)
    monkeypatch.setattr(cuda_cupy, "probe", lambda: (True, "emulated"))
    monkeypatch.setattr(G, "run", lambda **kw: res)
    assert main(["bench", "--device", "cuda", "--n", str(1 << 20), "--json", str(tmp_path / "b.json")]) == rc
    captured = capsys.readouterr()
    assert (tmp_path / "b.json").is_file()            # results are kept either way
    assert ("FAILED" in captured.err) == bool(rc)
    if case.get("bits_ok") is False:
        assert "normal float32 symbreak normal: bits differ" in captured.err and "DIFFER" in captured.out
    assert G.failures(_bench_result()) == []


def test_out_of_device_memory_is_a_clear_error_before_any_launch(cp, monkeypatch):
    """A result that does not fit on the device: MemoryError saying what to do (index= pieces,
    free the pool, device="cpu"), raised before a kernel runs; the device keeps working."""
    real_empty = cp.empty
    limit = 1 << 20                                     # bytes this emulated device can hold

    def empty(shape, dtype=np.float64, **kw):
        if int(np.prod(shape)) * np.dtype(dtype).itemsize > limit:
            raise MemoryError(f"Out of memory allocating {int(np.prod(shape)) * np.dtype(dtype).itemsize:,} bytes")
        return real_empty(shape, dtype, **kw)

    monkeypatch.setattr(cp, "empty", empty)
    launches = sum(c[0] == "launch" for c in cp.calls)
    for call in (lambda: sbf.normal((1024, 1024), KEY, device="cuda"),
                 lambda: sbf.truncated_normal((1024, 600), KEY, dtype="bfloat16", device="cuda:1"),
                 lambda: sbf.he_normal((1024, 1024), KEY, device="cuda"),
                 lambda: sbf.init_params({"a": ((512, 512), "zeros"), "b": ((512, 512), "he_uniform")}, KEY,
                                         device="cuda", flat=True)):
        with pytest.raises(MemoryError, match=r"index=.*free_all_blocks.*device=\"cpu\""):
            call()
    assert sum(c[0] == "launch" for c in cp.calls) == launches
    same_as_cpu(sbf.normal((64, 64), KEY, device="cuda"), sbf.normal((64, 64), KEY, backend="numpy"))
