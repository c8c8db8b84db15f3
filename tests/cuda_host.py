"""Build and drive the host emulation of the CUDA kernels (kernels/emulate_host.cpp).

The shared header and the kernel file are compiled by the system C++ compiler with
``-O2 -ffp-contract=off`` (the host's ``-fmad=false``) into a shared library, loaded with
ctypes. ``launch`` runs a kernel over an emulated grid with exactly the ``LaunchPlan`` (kernel
name, grid, block, argument list) that the CuPy backend uses on a GPU.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from symbreak_fast.backends import cuda_cupy

KDIR = cuda_cupy.kernel_dir()
SOURCES = ("emulate_host.cpp", "emulate_grid.h", "sbf_fill.cu", "sbf_random.cuh", "sbf_constants.cuh")
CXXFLAGS = ["-std=c++17", "-O2", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC", "-Wall"]


def compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


def build(build_dir: Path, main: str = "emulate_host.cpp", sources=SOURCES, stem: str = "libsbf_emulate") -> Path:
    """Compile ``kernels/<main>`` into a shared library in ``build_dir`` (reused while ``sources``
    are unchanged)."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (install g++) - the host emulation needs one")
    h = hashlib.sha256(" ".join(CXXFLAGS).encode())
    for name in sources:
        h.update((KDIR / name).read_bytes())
    lib = build_dir / f"{stem}_{h.hexdigest()[:16]}.so"
    if not lib.exists():
        build_dir.mkdir(parents=True, exist_ok=True)
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")
        cmd = [cxx, *CXXFLAGS, "-I", str(KDIR), str(KDIR / main), "-o", str(tmp)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(f"host build failed:\n{' '.join(cmd)}\n{res.stderr}")
        os.replace(tmp, lib)
    return lib


# C parameter types of every kernel, read from the SBF_PARAMS macro in sbf_fill.cu
_CTYPE = {"sbf_i64": np.int64, "int": np.int32, "sbf_u32": np.uint32, "double": np.float64}


def kernel_param_types() -> list:
    """[np.dtype or 'ptr'] for the parameters after ``out``, as declared in sbf_fill.cu."""
    src = (KDIR / "sbf_fill.cu").read_text()
    m = re.search(r"#define SBF_PARAMS (.*?)\n(?!\s)", src, re.S)
    decl = m.group(1).replace("\\\n", " ")
    types = []
    for p in decl.split(","):
        words = p.replace("const", "").split()
        if "*" in p:
            types.append("ptr")
        else:
            types.append(np.dtype(_CTYPE[words[0]]))
    return types


class Emulator:
    def __init__(self, lib_path: Path):
        self.lib = ctypes.CDLL(str(lib_path))
        self.param_types = kernel_param_types()
        argtypes = [ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p]
        conv = {np.dtype(np.int64): ctypes.c_int64, np.dtype(np.int32): ctypes.c_int32,
                np.dtype(np.uint32): ctypes.c_uint32, np.dtype(np.float64): ctypes.c_double}
        argtypes += [ctypes.c_void_p if t == "ptr" else conv[t] for t in self.param_types]
        self.lib.sbf_host_launch.argtypes = argtypes
        self.lib.sbf_host_launch.restype = ctypes.c_int
        self.lib.sbf_host_take_vector_stores.argtypes = []
        self.lib.sbf_host_take_vector_stores.restype = ctypes.c_longlong

    def launch(self, plan, out: np.ndarray) -> None:
        """Run ``plan`` (cuda_cupy.LaunchPlan) writing into the NumPy array ``out``."""
        outer = np.ascontiguousarray(plan.outer, dtype=np.int64)
        if outer.size == 0:
            outer = np.zeros(1, np.int64)
        self.launch_args(plan.name, plan.grid, plan.block, plan.args(out, outer))

    def launch_args(self, name: str, grid: int, block: int, args: tuple) -> None:
        """Run kernel ``name`` with a kernel argument tuple as a RawKernel call receives it
        (NumPy arrays standing in for device arrays)."""
        assert len(args) - 1 == len(self.param_types), "argument count does not match SBF_PARAMS"
        assert isinstance(args[0], np.ndarray) and args[0].flags.c_contiguous
        cargs = []
        for a, t in zip(args[1:], self.param_types):
            if t == "ptr":
                assert isinstance(a, np.ndarray) and a.dtype == np.int64, a
                cargs.append(a.ctypes.data)
            else:   # the plan must hand each parameter over in the kernel's exact C type
                assert isinstance(a, np.generic) and a.dtype == t, (a, type(a), t)
                cargs.append(a.item())
        rc = self.lib.sbf_host_launch(name.encode(), grid, block, args[0].ctypes.data, *cargs)
        assert rc == 0, f"unknown kernel {name}"

    def call(self, fname: str, *args):
        return getattr(self.lib, fname)(*args)


def ptr(a: np.ndarray):
    return ctypes.c_void_p(a.ctypes.data)


# ---------------------------------------------------------------------------
# an emulated CUDA device: a stand-in "cupy" module whose arrays are NumPy arrays tagged with a
# device and whose RawModule runs the host-compiled kernels. With it the public API runs its
# real GPU path (dispatch, device checks, cuda_cupy's plans/loader/launch) end to end on the CPU.
# ---------------------------------------------------------------------------
def make_emulated_cupy(emu: Emulator, n_devices: int = 1, calls: list | None = None):
    import importlib.machinery
    import types

    calls = [] if calls is None else calls
    state = {"current": 0}
    mod = types.ModuleType("cupy")
    mod.__spec__ = importlib.machinery.ModuleSpec("cupy", None)

    class _Device:
        compute_capability = "90"

        def __init__(self, i=None):
            self.id = state["current"] if i is None else int(i)
            self.attributes = {"MultiProcessorCount": 3}
            self._prev = []

        def __enter__(self):
            if not 0 <= self.id < n_devices:
                raise RuntimeError(f"cudaErrorInvalidDevice: {self.id}")
            self._prev.append(state["current"])
            state["current"] = self.id
            return self

        def __exit__(self, *exc):
            state["current"] = self._prev.pop()
            return False

        def synchronize(self):
            pass

    class ndarray(np.ndarray):
        """A NumPy array that says it lives on an (emulated) CUDA device."""
        def __array_finalize__(self, obj):
            self._dev = getattr(obj, "_dev", state["current"])

        @property
        def device(self):
            return _Device(self._dev)

        def get(self):
            return np.array(self.view(np.ndarray))

    ndarray.__module__ = "cupy._core.core"

    def to_dev(a):
        if isinstance(a, np.ndarray) and not isinstance(a, ndarray):
            a = a.view(ndarray)
            a._dev = state["current"]
        return a

    def wrap(f):
        def g(*args, **kw):
            args = [np.asarray(a) if isinstance(a, ndarray) else a for a in args]
            r = f(*args, **kw)
            return tuple(to_dev(x) for x in r) if isinstance(r, tuple) else to_dev(r)
        return g

    class RawModule:
        def __init__(self, path):
            calls.append(("module", state["current"], Path(path).name))

        def get_function(self, name):
            def kernel(grid, block, args):
                for a in args:
                    if isinstance(a, ndarray):
                        assert a._dev == state["current"], "kernel argument on another device"
                calls.append(("launch", state["current"], name))
                emu.launch_args(name, grid[0], block[0], tuple(np.asarray(a) if isinstance(a, ndarray) else a
                                                               for a in args))
            return kernel

    mod.ndarray = ndarray
    mod.RawModule = RawModule
    mod.asarray = wrap(lambda a, dtype=None: np.array(a, dtype=dtype))
    mod.empty = wrap(np.empty)
    mod.zeros = wrap(np.zeros)
    mod.full = wrap(np.full)
    mod.linalg = types.SimpleNamespace(qr=wrap(np.linalg.qr))
    mod.cuda = types.SimpleNamespace(
        Device=_Device,
        runtime=types.SimpleNamespace(getDeviceCount=lambda: n_devices, getDevice=lambda: state["current"]),
        get_current_stream=lambda: types.SimpleNamespace(synchronize=lambda: None))

    def __getattr__(name):          # everything else: NumPy's, results placed on the current device
        f = getattr(np, name)
        return wrap(f) if callable(f) and not isinstance(f, type) else f
    mod.__getattr__ = __getattr__
    mod.calls = calls
    mod.state = state
    return mod
