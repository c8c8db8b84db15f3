"""Build and drive the host emulation of the MLP kernels (kernels/emulate_mlp_host.cpp).

Like tests/cuda_host.py for sbf_fill.cu: sbf_mlp.cu is compiled by the system C++ compiler into a
shared library loaded with ctypes. ``MlpEmulator.launch_args`` has the interface of
``cuda_host.Emulator.launch_args`` (kernel name, grid, block, the argument tuple a cupy RawKernel
call receives, NumPy arrays standing in for device arrays), so ``cuda_host.make_emulated_cupy``
accepts it as is: its RawModule then runs the MLP kernels on the host.

Each argument is checked against the kernel's C++ parameter types (reported by the library,
derived there from the function type): a buffer must be a C-contiguous array of the pointer's
element type, an int64 parameter an ``np.int64``, a double an ``np.float64``.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import cuda_host
import numpy as np

from symbreak_fast.backends import cuda_cupy

KDIR = cuda_cupy.kernel_dir()
SOURCES = ("emulate_mlp_host.cpp", "emulate_grid.h", "sbf_mlp.cu")
_PTR = {"float*": np.dtype(np.float32), "double*": np.dtype(np.float64), "int64*": np.dtype(np.int64)}
_SCALAR = {"int64": np.int64, "double": np.float64}


def build(build_dir: Path) -> Path:
    """Compile the MLP emulation library into ``build_dir`` (reused while the sources are unchanged)."""
    return cuda_host.build(build_dir, "emulate_mlp_host.cpp", SOURCES, "libsbf_mlp_emulate")


class MlpEmulator:
    def __init__(self, lib_path: Path):
        lib = self.lib = ctypes.CDLL(str(lib_path))
        lib.sbf_mlp_host_count.restype = ctypes.c_int
        lib.sbf_mlp_host_name.restype = ctypes.c_char_p
        lib.sbf_mlp_host_name.argtypes = [ctypes.c_int]
        lib.sbf_mlp_host_signature.restype = ctypes.c_char_p
        lib.sbf_mlp_host_signature.argtypes = [ctypes.c_char_p]
        lib.sbf_mlp_host_launch.restype = ctypes.c_int
        lib.sbf_mlp_host_launch.argtypes = [ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p]
        lib.sbf_mlp_host_act.restype = None
        lib.sbf_mlp_host_act.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_void_p,
                                         ctypes.c_double, ctypes.c_void_p, ctypes.c_void_p]
        self.launches: list = []

    def kernel_names(self) -> list[str]:
        return [self.lib.sbf_mlp_host_name(i).decode() for i in range(self.lib.sbf_mlp_host_count())]

    def signature(self, name: str) -> list[str]:
        s = self.lib.sbf_mlp_host_signature(name.encode())
        assert s is not None, f"unknown kernel {name}"
        return s.decode().split()

    def launch_args(self, name: str, grid: int, block: int, args: tuple) -> None:
        """Run kernel ``name`` over ``grid`` x ``block`` threads with a RawKernel-style argument tuple."""
        sig = self.signature(name)
        assert len(args) == len(sig), f"{name}: {len(args)} arguments for {len(sig)} parameters {sig}"
        slots = np.zeros(max(1, len(sig)), np.uint64)
        for i, (a, t) in enumerate(zip(args, sig)):
            if t in _PTR:
                assert isinstance(a, np.ndarray), f"{name} arg {i}: {t} needs an array, got {type(a)}"
                assert a.dtype == _PTR[t], f"{name} arg {i}: {t} got a {a.dtype} array"
                assert a.flags.c_contiguous, f"{name} arg {i}: not C-contiguous"
                slots[i] = a.ctypes.data
            else:   # the caller must hand each scalar over in the kernel's exact C type
                assert type(a) is _SCALAR[t], f"{name} arg {i}: {t} got {type(a).__name__} {a!r}"
                slots[i] = np.array([a], _SCALAR[t]).view(np.uint64)[0]
        assert grid >= 1 and block >= 1
        self.launches.append((name, grid, block))
        rc = self.lib.sbf_mlp_host_launch(name.encode(), grid, block, slots.ctypes.data)
        assert rc == 0, f"unknown kernel {name}"

    def act(self, code: int, z: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """(f(z), f'(z)) elementwise through the header's functions."""
        z = np.ascontiguousarray(z)
        f, df = np.empty_like(z), np.empty_like(z)
        self.lib.sbf_mlp_host_act(code, 0 if z.dtype == np.float32 else 1, z.size, z.ctypes.data, alpha,
                                  f.ctypes.data, df.ctypes.data)
        return f, df
