"""Public generators: random_bits, uniform, normal, truncated_normal.

Every function is a pure function of (key, shape, parameters): element ``i`` of
the flattened C-order tensor depends only on the key and ``i`` (docs/RNG.md), so
results are identical on every backend and thread count, and ``index=``
returns exactly ``full[index]`` without computing the rest.

``device=``: "cpu", "cuda" (the current CUDA device), "cuda:N", or None: a cupy
``out=`` selects its GPU, a chosen "cupy" backend the current GPU, else the CPU. CUDA
results are cupy arrays; bfloat16 ones are uint16 arrays of the bf16 bits (for torch:
``torch.from_dlpack(a).view(torch.bfloat16)``). Backend choice: see ``_dispatch``.

Every argument is checked before anything is allocated or written; a new result larger
than the machine's physical memory is a MemoryError up front (pass ``out=``, e.g. a
numpy.memmap, or generate pieces with ``index=``).
"""
from __future__ import annotations

import math
import os

import numpy as np

from . import _dispatch
from ._request import Request, dtype_name, is_bfloat16, make_request


_HOST_MEMORY: list = []


def host_memory_bytes() -> int | None:
    """Physical memory of this machine in bytes (None where the OS does not say)."""
    if not _HOST_MEMORY:
        try:
            _HOST_MEMORY.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (AttributeError, ValueError, OSError):      # pragma: no cover - non-POSIX
            _HOST_MEMORY.append(None)
    return _HOST_MEMORY[0]


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:.4g} {unit}"
        n /= 1024


_PIECES_HINT = ("generate it in pieces with index= (each piece is exactly full[index]), pass out= (e.g. a "
                "numpy.memmap), stream it to disk with save_init, or use symbreak_fast.dask")


def check_host_alloc(n_elements: int, dtype: np.dtype, what: str = "the result", hint: str = _PIECES_HINT) -> None:
    """MemoryError, before allocating, when ``n_elements`` of ``dtype`` exceed this machine's
    physical memory: np.empty would either fail with a less helpful message or (with memory
    overcommit) succeed and get the process killed while it is being filled."""
    nbytes = n_elements * dtype.itemsize
    limit = host_memory_bytes()
    if limit is not None and nbytes > limit:
        raise MemoryError(f"{what} needs {_fmt_bytes(nbytes)} ({n_elements} x {dtype_name(dtype)}), more than "
                          f"this machine's {_fmt_bytes(limit)} of memory; {hint}")


def prepare_out(out, shape, dtype: np.dtype) -> np.ndarray:
    """A new array of ``shape``/``dtype``, or ``out`` after checking it can hold the result."""
    if out is None:
        check_host_alloc(math.prod(shape), dtype)
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray) or _dispatch.is_device_array(out):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"out has shape {out.shape} but the result has shape {tuple(shape)}; "
                         "allocate np.empty(result_shape, dtype)")
    if out.dtype != dtype:
        raise ValueError(f"out has dtype {out.dtype} but dtype={dtype_name(dtype)} was requested; "
                         "pass a matching dtype= or out array")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous; pass np.ascontiguousarray(out) and copy back")
    if not out.flags.writeable:
        raise ValueError("out is read-only; pass a writeable array")
    return out


def prepare_device_out(out, shape, dtype: np.dtype, impl, dev_id: int):
    """A new device array (storage dtype: uint16 for bfloat16) on ``dev_id``, or the checked ``out``."""
    sdt = np.dtype(impl.storage_dtype(dtype))
    if out is None:
        return impl.empty(tuple(shape), dtype, dev_id)
    if not _dispatch.is_device_array(out):
        raise TypeError(f"out must be a cupy.ndarray for a CUDA result, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out has shape {tuple(out.shape)} but the result has shape {tuple(shape)}; "
                         "allocate cupy.empty(result_shape, dtype)")
    if out.dtype != sdt:
        hint = " (cupy has no bfloat16: pass a uint16 array, it receives the bf16 bits)" \
            if is_bfloat16(dtype) else ""
        raise ValueError(f"out has dtype {out.dtype} but dtype={dtype_name(dtype)} needs a {sdt} cupy "
                         f"array{hint}; pass a matching dtype= or out array")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous; pass cupy.ascontiguousarray(out) and copy back")
    if int(out.device.id) != dev_id:
        raise ValueError(f"out is on cuda:{int(out.device.id)} but cuda:{dev_id} was requested")
    return out


def place(out, shape, dtype: np.dtype, backend, device):
    """(result, backend name, backend module, device id or None) for a result written by
    the caller (initializers that do not call a generator); every check done first."""
    name, impl, dev = _dispatch.select(backend, 0, device, out)
    if dev is None:
        return prepare_out(out, shape, dtype), name, impl, None
    return prepare_device_out(out, shape, dtype, impl, dev), name, impl, dev


def _run(req: Request, out, backend, device=None):
    name, impl, dev = _dispatch.select(backend, req.size, device, out)   # raises before any write
    if dev is None:
        result = prepare_out(out, req.out_shape, req.dtype)
        if req.size:
            flat = result.reshape(-1)
            if is_bfloat16(req.dtype) or req.dtype == np.float16:
                flat = flat.view(np.uint16)
            impl.generate(req, flat)
        return result
    result = prepare_device_out(out, req.out_shape, req.dtype, impl, dev)
    if req.size:
        flat = result.reshape(-1)
        if req.dtype == np.float16:
            flat = flat.view(np.uint16)        # bfloat16 storage is uint16 already
        impl.generate(req, flat)
    return result


def which_backend(shape, *, index=None, backend=None, device=None, out=None) -> tuple[str, str]:
    """(name, reason): the backend a call with these arguments would use, and the rule
    that decided (explicit backend=, use_backend block, SYMBREAK_BACKEND, or auto).
    Raises for a bad device= or a backend/device conflict; does not check availability."""
    from ._indexing import normalize_index, normalize_shape
    box = normalize_index(index, normalize_shape(shape))
    if out is not None and not isinstance(out, np.ndarray) and not _dispatch.is_device_array(out):
        raise TypeError(f"out must be a numpy.ndarray or a cupy.ndarray, got {type(out).__name__}")
    return _dispatch.which(backend, box.size, device, out)


def random_bits(shape, key, *, index=None, backend=None, device=None, out=None) -> np.ndarray:
    """uint32 array of ``shape``: flat element i is word i % 4 of Philox4x32-10 at
    counter (i // 4 mod 2**32, i // 4 div 2**32, 0, 0) under the key's words."""
    return _run(make_request("bits", shape, key, index=index), out, backend, device)


def uniform(shape, key, low=0.0, high=1.0, *, dtype="float32", index=None, backend=None, device=None, out=None):
    """Uniform on [low, high): never returns ``high`` (bounds rounded to ``dtype``).

    float32/float16/bfloat16: 24-bit uniforms in float32, rounded to the dtype;
    float64: 53-bit uniforms. Deterministic: a pure function of (key, index).
    """
    return _run(make_request("uniform", shape, key, dtype=dtype, index=index, low=low, high=high),
                out, backend, device)


def normal(shape, key, mean=0.0, std=1.0, *, dtype="float32", index=None, backend=None, device=None, out=None):
    """Normal(mean, std**2) by Box-Muller from IEEE basic operations (docs/RNG.md).

    Tails reach 6.66 std (float32 family) / 8.57 std (float64). Deterministic.
    """
    return _run(make_request("normal", shape, key, dtype=dtype, index=index, mean=mean, std=std),
                out, backend, device)


def truncated_normal(shape, key, mean=0.0, std=1.0, lower=-2.0, upper=2.0, *, dtype="float32",
                     index=None, backend=None, device=None, out=None):
    """Normal(mean, std**2) conditioned on [mean + lower*std, mean + upper*std].

    ``lower``/``upper`` are in units of std, like JAX/Keras; infinite bounds are
    allowed. Sampled by inverting the CDF (AS 241), so the cost per element
    never depends on the draw. The std of the result is *not* rescaled
    (for [-2, 2] it is 0.8796 * std). Output lies in the closed interval,
    bounds rounded inward to ``dtype``.
    """
    return _run(make_request("truncated_normal", shape, key, dtype=dtype, index=index, mean=mean,
                             std=std, lower=lower, upper=upper), out, backend, device)


def available_backends() -> tuple[str, ...]:
    """Names of the backends usable in this process, e.g. ("numpy", "numba") or with a GPU
    and CuPy ("numpy", "numba", "cupy")."""
    return _dispatch.available_backends()


use_backend = _dispatch.use_backend
