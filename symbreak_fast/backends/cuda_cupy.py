"""The CuPy backend: the CUDA kernels in ``kernels/`` launched through ``cupy.RawModule``.

The per-element arithmetic lives in ``kernels/sbf_random.cuh``, which mirrors
``symbreak_fast._spec`` function by function and also compiles as host C++ (the
CPU emulation that proves the kernels' bits without a GPU). This module compiles
``kernels/sbf_fill.cu`` with NVRTC itself (exact options, see ``compile_kernels``) to a
cubin cached on disk, loads it with ``cupy.RawModule(path=...)`` once per device and
option set (its kernel functions memoized with it), and computes launch plans.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np

from .._request import Request, is_bfloat16

NAME = "cupy"
DEVICE = "cuda"


NVRTC_HINT = ('pip install "cupy-cuda13x[ctk]" (CuPy together with the CUDA components from PyPI, NVRTC '
              'included) or pip install nvidia-cuda-nvrtc, or install a CUDA toolkit')


def probe() -> tuple[bool, str]:
    """(usable, why); never raises and never initializes more than cupy's runtime query and
    loading NVRTC (which compiles the kernels: plain ``cupy-cuda13x`` wheels do not bring it)."""
    if importlib.util.find_spec("cupy") is None:
        return False, "cupy is not installed"
    n, why = _device_count()
    if n == 0:
        return False, f"no CUDA device found ({why})"
    ok, why = nvrtc_status()
    if not ok:
        return False, why
    return True, f"cupy sees {n} CUDA device(s); NVRTC {why}"


def nvrtc_status() -> tuple[bool, str]:
    """(True, "13.0") when CuPy's NVRTC bindings can load libnvrtc, else (False, what to install)."""
    try:
        major, minor = _nvrtc_version()
    except Exception as e:  # ImportError (no cupy_backends), OSError/RuntimeError (libnvrtc not found), ...
        msg = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        return False, (f"CuPy is installed but NVRTC, which compiles the kernels, cannot be loaded ({msg}); "
                       f"{NVRTC_HINT}")
    return True, f"{major}.{minor}"


def _device_count() -> tuple[int, str]:
    try:
        import cupy
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as e:  # no driver, driver too old, no device, broken install, ...
        return 0, f"{type(e).__name__}: {e}"
    return n, "" if n else "the CUDA runtime reports 0 devices"


def device_count() -> int:
    """Number of CUDA devices cupy can use (0 without cupy, a driver or a device)."""
    if importlib.util.find_spec("cupy") is None:
        return 0
    return _device_count()[0]


def storage_dtype(dt: np.dtype) -> np.dtype:
    """The cupy dtype that holds results of ``dt``: bfloat16 bits in uint16 (cupy has no bfloat16)."""
    return np.dtype(np.uint16) if is_bfloat16(dt) else np.dtype(dt)


def empty(shape, dt: np.dtype, device_id: int):
    """A new result array on ``cuda:<device_id>``; a clear MemoryError when it does not fit."""
    import cupy
    sdt = storage_dtype(dt)
    with cupy.cuda.Device(device_id):
        try:
            return cupy.empty(shape, dtype=sdt)
        except MemoryError as e:    # cupy.cuda.memory.OutOfMemoryError is a MemoryError
            nbytes = math.prod(shape) * sdt.itemsize
            raise MemoryError(
                f"cuda:{device_id} has not enough free memory for the {tuple(shape)} {np.dtype(dt).name} "
                f"result ({nbytes / 2**30:.2f} GiB; CuPy: {e}). Generate it in pieces with index= (each piece "
                "is bit-identical to that slice of the whole tensor), release CuPy's cached blocks with "
                "cupy.get_default_memory_pool().free_all_blocks(), or pass device=\"cpu\"") from None


# ---------------------------------------------------------------------------
# kernel sources and the memoized loader
# ---------------------------------------------------------------------------
KERNEL_FILE = "sbf_fill.cu"
# -fmad=false: NVCC/NVRTC contract a*b+c into one FMA by default, which rounds once instead of
# twice and so changes the last bits; the contract (docs/RNG.md) is "each operation rounded".
# Division and square root are IEEE (-prec-div=true -prec-sqrt=true are NVRTC's defaults and
# the header also calls __fsqrt_rn/__dsqrt_rn); -ftz=false (the default) keeps subnormals.
NVRTC_OPTIONS = ("-std=c++17", "-fmad=false", "-prec-div=true", "-prec-sqrt=true", "-ftz=false")
THREADS = 256            # matches __launch_bounds__(256) in sbf_fill.cu
BLOCKS_PER_SM = 8        # grid-stride loop: enough resident warps to saturate memory bandwidth

_DIST = {"bits": 0, "uniform": 1, "normal": 2, "truncated_normal": 3}   # SBF_DIST_* in the header


def kernel_dir() -> Path:
    """``kernels/``: inside the installed package (wheel) or beside it (source checkout)."""
    here = Path(__file__).resolve().parent.parent
    for d in (here / "kernels", here.parent / "kernels"):
        if (d / KERNEL_FILE).is_file():
            return d
    raise FileNotFoundError(f"the CUDA sources ({KERNEL_FILE}) are missing from {here / 'kernels'} and "
                            f"{here.parent / 'kernels'}; reinstall symbreak-fast")


def expand_source(filename: str) -> str:
    """``kernels/<filename>`` with its local ``#include "..."`` files inlined (recursively, once
    each), so the source handed to NVRTC (and the cache key) covers every line that is compiled."""
    d = kernel_dir()
    seen: set[str] = set()

    def expand(name: str) -> str:
        if name in seen:
            return ""
        seen.add(name)
        lines = []
        for line in (d / name).read_text().splitlines():
            s = line.strip()
            if s.startswith('#include "') and '"' in s[len('#include "'):]:
                lines.append(expand(s[len('#include "'):].split('"')[0]))
            else:
                lines.append(line)
        return "\n".join(lines)

    return expand(filename)


def kernel_source() -> str:
    """sbf_fill.cu with its local includes inlined."""
    return expand_source(KERNEL_FILE)


def kernel_name(req: Request) -> str:
    if req.dist == "bits":
        return "sbf_random_bits_uint32"
    dt = "bfloat16" if is_bfloat16(req.dtype) else np.dtype(req.dtype).name
    return f"sbf_{req.dist}_{dt}"


KERNEL_NAMES = tuple(["sbf_random_bits_uint32"] + [
    f"sbf_{d}_{t}" for t in ("float32", "float16", "bfloat16", "float64")
    for d in ("uniform", "normal", "truncated_normal")])

_MODULES: dict = {}
_SM_COUNT: dict = {}
_EMPTY_OUTER: dict = {}


def compile_kernels(arch: str, target: str = "cubin", options: tuple[str, ...] = NVRTC_OPTIONS) -> bytes:
    """Compile ``kernel_source()`` with NVRTC for ``sm_<arch>`` (``target`` "cubin" or "ptx").

    We call NVRTC ourselves instead of letting ``cupy.RawModule(code=...)`` compile, because
    CuPy appends ``-ftz=true`` to every RawModule/RawKernel compile (flushing float32 subnormals,
    which the contract keeps: a tiny std gives subnormal outputs). Needs no GPU or driver."""
    return nvrtc_compile(kernel_source(), KERNEL_FILE, arch, target, options)


def nvrtc_compile(source: str, filename: str, arch: str, target: str, options: tuple[str, ...]) -> bytes:
    """NVRTC ``source`` to a cubin for ``sm_<arch>`` or PTX for ``compute_<arch>``, with exactly
    ``options`` (nothing added). Needs no GPU or driver."""
    from cupy_backends.cuda.libs import nvrtc
    if target not in ("cubin", "ptx"):
        raise ValueError(f"target must be 'cubin' or 'ptx', got {target!r}")
    arch_opt = f"-arch=sm_{arch}" if target == "cubin" else f"-arch=compute_{arch}"
    prog = nvrtc.createProgram(source, filename, [], [])
    try:
        try:
            nvrtc.compileProgram(prog, [arch_opt, *options])
        except Exception as e:
            raise RuntimeError(f"NVRTC failed to compile {filename} for sm_{arch} with {options}: {e}\n"
                               f"{nvrtc.getProgramLog(prog)}") from e
        return nvrtc.getCUBIN(prog) if target == "cubin" else nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)


def _nvrtc_version() -> tuple[int, int]:
    from cupy_backends.cuda.libs import nvrtc
    return tuple(nvrtc.getVersion())


def _cache_dir() -> Path:
    import os
    root = os.environ.get("SYMBREAK_KERNEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "symbreak_fast")
    return Path(root)


def _binary_path(arch: str, options: tuple[str, ...]) -> Path:
    """The compiled sbf_fill.cu for ``arch`` (see ``cached_binary``)."""
    return cached_binary("sbf_fill", kernel_source(), arch, options,
                         lambda: compile_kernels(arch, "cubin", options))


def cached_binary(stem: str, source: str, arch: str, options: tuple[str, ...], compile_cubin) -> Path:
    """A cubin compiled once, then reused from a file named by the hash of (source, options,
    arch, NVRTC version), so any change of those recompiles; ``compile_cubin()`` makes it."""
    import hashlib
    import os
    import tempfile
    h = hashlib.sha256(repr((source, options, arch, _nvrtc_version())).encode()).hexdigest()[:24]
    for d in (_cache_dir(), Path(tempfile.gettempdir()) / f"symbreak_fast-{os.getuid()}"):
        path = d / f"{stem}_sm{arch}_{h}.cubin"
        if path.is_file():
            return path
        try:
            d.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(compile_cubin())
            os.replace(tmp, path)      # atomic: concurrent processes never read half a file
            return path
        except OSError:
            continue                   # unwritable cache: try the next location
    raise RuntimeError(f"cannot write the compiled kernels to {_cache_dir()} or the temp dir; set "
                       "SYMBREAK_KERNEL_CACHE to a writable directory")


def load_module(device_id: int, options: tuple[str, ...] = NVRTC_OPTIONS) -> tuple:
    """(``cupy.RawModule``, {kernel name: function}) for ``device_id``: loaded once per (device,
    options) and process, from a cubin compiled once per machine; never rebuilt per call."""
    k = (device_id, options)
    entry = _MODULES.get(k)
    if entry is None:
        entry = _MODULES[k] = load_cubin(device_id, lambda arch: _binary_path(arch, options), KERNEL_NAMES)
    return entry


def kernel_function(device_id: int, name: str, options: tuple[str, ...] = NVRTC_OPTIONS):
    """The loaded kernel ``name`` on ``device_id`` (memoized with its module)."""
    return load_module(device_id, options)[1][name]


def load_cubin(device_id: int, binary_path, names) -> tuple:
    """(``cupy.RawModule``, {name: function}) of the cubin ``binary_path(arch)`` for the device's
    architecture, every kernel of ``names`` loaded now, on that device."""
    import cupy
    dev = cupy.cuda.Device(device_id)
    with dev:
        mod = cupy.RawModule(path=str(binary_path(str(dev.compute_capability))))
        return mod, {name: mod.get_function(name) for name in names}


def _sm_count(device_id: int) -> int:
    n = _SM_COUNT.get(device_id)
    if n is None:
        import cupy
        n = _SM_COUNT[device_id] = int(cupy.cuda.Device(device_id).attributes["MultiProcessorCount"])
    return n


# ---------------------------------------------------------------------------
# launch plans (pure Python: the host emulation runs the same plans)
# ---------------------------------------------------------------------------
class LaunchPlan:
    """Kernel, grid and arguments for one request (see the comment at the top of sbf_fill.cu)."""
    __slots__ = ("name", "grid", "block", "n_rows", "row_len", "base", "outer", "scalars")

    def __init__(self, name, grid, block, n_rows, row_len, base, outer, scalars):
        self.name, self.grid, self.block = name, grid, block
        self.n_rows, self.row_len, self.base, self.outer, self.scalars = n_rows, row_len, base, outer, scalars

    def args(self, out, outer_ptr) -> tuple:
        """Kernel arguments in sbf_fill.cu's order, with ``out`` and the ``outer`` table as given
        (cupy arrays on the GPU, pointers in the host emulation)."""
        return (out, np.int64(self.n_rows), np.int64(self.row_len), np.int64(self.base),
                np.int32(self.outer.size // 2), outer_ptr) + self.scalars


def row_map(box) -> tuple[int, int, int, np.ndarray]:
    """(n_rows, row_len, base, outer) of a box: the device-side form of ``_indexing.row_plan``.

    Row r starts at base + sum_i digit_i(r) * stride_i, the digits of r over the box's outer
    extents (C order); ``outer`` = int64[sizes..., strides...] (size-1 dims dropped)."""
    shape, starts, sizes = box.shape, box.starts, box.sizes
    nd = len(shape)
    size = math.prod(sizes)
    none = np.zeros(0, np.int64)
    if size == 0:
        return 0, 0, 0, none
    if nd == 0 or sizes == shape:
        return 1, size, 0, none
    d = nd - 1
    while d > 0 and sizes[d] == shape[d]:
        d -= 1
    strides = [math.prod(shape[i + 1:]) for i in range(nd)]
    row_len = sizes[d] * strides[d]
    base = sum(st * sd for st, sd in zip(starts, strides))
    dims = [(sizes[i], strides[i]) for i in range(d) if sizes[i] > 1]
    n_rows = math.prod(s for s, _ in dims)
    outer = np.array([s for s, _ in dims] + [t for _, t in dims], np.int64)
    return n_rows, row_len, base, outer


def launch_plan(req: Request, sm_count: int, threads: int = THREADS,
                blocks_per_sm: int = BLOCKS_PER_SM) -> LaunchPlan | None:
    """The launch for ``req`` on a device with ``sm_count`` multiprocessors (None: nothing to do)."""
    n_rows, row_len, base, outer = row_map(req.box)
    if n_rows == 0:
        return None
    per_block = 2 if req.compute == "float64" else 4
    per_row = (row_len + per_block - 2) // per_block + 1      # sbf_blocks_per_row in sbf_fill.cu
    items = n_rows * per_row
    grid = max(1, min(-(-items // threads), sm_count * blocks_per_sm))
    if req.compute == "float64":
        vals = (req.shift, req.scale, req.lo, req.hi, req.pa, req.qb, req.mass)
    else:  # float32 values carried in doubles (exact); the kernel converts back exactly
        vals = tuple(float(np.float32(v)) for v in (req.shift, req.scale, req.lo, req.hi, req.pa, req.qb,
                                                     req.mass))
    scalars = (np.uint32(req.k0), np.uint32(req.k1)) + tuple(np.float64(v) for v in vals)
    return LaunchPlan(kernel_name(req), grid, threads, n_rows, row_len, base, outer, scalars)


def generate(req: Request, out_flat) -> None:
    """Fill the 1-D C-contiguous cupy array ``out_flat`` on its device, on the current stream."""
    import cupy
    dev = out_flat.device.id
    plan = launch_plan(req, _sm_count(dev))
    if plan is None:
        return
    with cupy.cuda.Device(dev):
        fn = kernel_function(dev, plan.name)
        if plan.outer.size:
            outer = cupy.asarray(plan.outer)   # a few dozen bytes, stream-ordered before the launch
        else:
            outer = _EMPTY_OUTER.get(dev)
            if outer is None:
                outer = _EMPTY_OUTER[dev] = cupy.zeros(1, np.int64)
        fn((plan.grid,), (plan.block,), plan.args(out_flat, outer))
