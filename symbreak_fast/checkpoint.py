"""Write a model's initial weights straight to a safetensors file, chunk by chunk.

``save_init(spec, path, key)`` initializes every parameter of an ``init_params`` spec and
writes it to ``path`` in the safetensors format without ever holding a whole model (or,
for the index-capable initializers, a whole tensor) in memory:

* the header (names, dtypes, shapes, offsets, metadata) is known up front and written
  first; tensors follow in spec order within each itemsize, largest itemsize first (as
  ``safetensors.save_file`` does, so every tensor starts at a multiple of its itemsize);
* each tensor is cut into *chunks* of at most ``chunk_bytes // 2 - 4 KiB``: slabs along
  axis 0, or, when one index along axis 0 is bigger than that, the earlier axes fixed as
  ints and slabs along the first axis whose trailing block fits. Each chunk is generated
  with the initializer's ``index=`` and ``out=`` straight into one of TWO reusable
  page-aligned buffers (chunk i+1 is generated while a writer thread writes chunk i), so
  all generation memory together is at most ``chunk_bytes`` (exactly: the 4 KiB carried
  between O_DIRECT blocks is inside the budget; ``plan_init``) whatever the model size.
  With ``engine="dask"`` the budget is shared by the two buffers and the chunks computed
  ahead (``max_in_flight``), so it holds for that engine too. Because ``f(shape, key,
  index=ix) == f(shape, key)[ix]`` bit for bit, the file equals ``init_params(spec, key,
  dtype=dtype)`` bit for bit whatever ``chunk_bytes`` or the engine;
* where the filesystem allows it the data is written with O_DIRECT, in whole 4 KiB blocks
  from the buffers (no page-cache copy: on a small machine that copy costs as much CPU as
  the generation, and the disk then works while the CPU generates); otherwise through
  the page cache with writeback started as it goes. ``USE_O_DIRECT = False`` turns it off;
* ``GLOBAL_INITIALIZERS`` (``orthogonal``, ``sparse``, ``dirac``) compute the whole matrix
  whatever ``index=`` asks for, so slicing them would redo that work per chunk. Their
  tensors are generated in one call each, into a buffer when they fit one, else into a
  separate array of the tensor's size, plus their own working arrays (orthogonal's float64
  QR: ~32 bytes per element at its peak); a ``ResourceWarning`` says so when that clearly
  leaves the ``chunk_bytes`` budget (the tensor does not fit a buffer, or 8 bytes per
  element exceed ``chunk_bytes``). Use them for the matrices
  they are meant for (recurrent weights, conv kernels), not for embedding tables;
* the file is written to a temporary file in the target folder (``.<name>.<random>.tmp``),
  fsynced and renamed over ``path`` (``os.replace``, atomic on POSIX): an interrupted or
  failed run (any exception, KeyboardInterrupt included) removes the temporary file and
  leaves ``path`` as it was (absent, or the previous file). Free space is checked with
  ``shutil.disk_usage`` before anything is written.

Metadata (strings only, safetensors' rule): ``format`` = "pt", ``symbreak_fast.version``,
``symbreak_fast.seed`` (the 64-bit seed ``Key(seed) == key``) and ``symbreak_fast.params``:
a JSON spec ``{name: {"shape": [...], "init": ..., **kwargs, "dtype": ...}}`` so that
``init_params(json.loads(params), int(seed))`` reproduces the file.

SPEC files (``load_spec``): JSON or YAML ``{"params": {name: {"shape": [...], "init":
"<initializer>", **kwargs}}}``, the mapping ``init_params`` takes. An entry may carry its
own ``"dtype"``; the others get ``save_init``'s ``dtype`` (bfloat16 by default, while
``init_params`` defaults to float32), so the file equals ``init_params(load_spec(f), key,
dtype=<the same dtype>)``; the metadata's spec records every entry's dtype and needs none.
"""
from __future__ import annotations

import contextlib
import errno
import itertools
import json
import math
import mmap
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from . import _dispatch
from ._indexing import normalize_shape
from ._key import Key, as_key
from ._request import dtype_name, is_bfloat16, normalize_dtype

DEFAULT_CHUNK_BYTES = 256 << 20
#: initializers that compute the whole matrix for any ``index=``: generated in one piece
GLOBAL_INITIALIZERS = frozenset({"orthogonal", "sparse", "dirac"})
_RESERVED = frozenset({"key", "out", "backend", "device", "index"})
_ST_DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32", "float64": "F64"}


class SpecError(ValueError):
    """A malformed SPEC file or entry (the message names the file, line/column or key)."""


# ---------------------------------------------------------------------------
# SPEC files
# ---------------------------------------------------------------------------
def _is_yaml(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in (".yaml", ".yml")


def load_spec(path) -> dict:
    """The ``params`` mapping of a JSON (``.json`` or anything else) or YAML (``.yaml``/``.yml``)
    SPEC file ``{"params": {name: {"shape": [...], "init": "<initializer>", **kwargs}}}``.

    Syntax errors raise ``SpecError`` with the file, line and column; a wrong structure
    raises ``SpecError`` naming the key."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"SPEC file {path} does not exist") from None
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    if _is_yaml(path):
        try:
            import yaml
        except ImportError as e:
            raise ImportError(f"reading the YAML SPEC {path} needs PyYAML: pip install pyyaml "
                              "(or write the SPEC as JSON)") from e
        try:
            doc = yaml.safe_load(text)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
            what = " ".join(str(s) for s in (e.context, e.problem) if s)
            raise SpecError(f"{path}{where}: malformed YAML: {what}") from None
        except yaml.YAMLError as e:
            raise SpecError(f"{path}: malformed YAML: {e}") from None
    else:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"{path}:{e.lineno}:{e.colno}: malformed JSON: {e.msg}") from None
    return spec_from_document(doc, source=path)


def spec_from_document(doc, source: str = "SPEC") -> dict:
    """The ``params`` mapping of a parsed SPEC document, its structure checked."""
    if not isinstance(doc, dict) or "params" not in doc:
        got = f"keys {sorted(map(str, doc))}" if isinstance(doc, dict) else type(doc).__name__
        raise SpecError(f"{source}: expected a mapping with a 'params' key "
                        f"({{\"params\": {{name: {{\"shape\": [...], \"init\": ...}}}}}}), got {got}")
    extra = set(doc) - {"params"}
    if extra:
        raise SpecError(f"{source}: unknown top-level keys {sorted(map(str, extra))}; only 'params' is read")
    params = doc["params"]
    if not isinstance(params, dict) or not params:
        raise SpecError(f"{source}: 'params' must be a non-empty mapping name -> "
                        f"{{\"shape\": [...], \"init\": ...}}, got {params!r:.80}")
    for name, entry in params.items():
        where = f"{source}: params[{name!r}]"
        if not isinstance(name, str):
            raise SpecError(f"{where}: parameter names must be strings")
        if not isinstance(entry, dict):
            raise SpecError(f"{where}: expected a mapping {{\"shape\": [...], \"init\": ...}}, got {entry!r:.80}")
        for k in ("shape", "init"):
            if k not in entry:
                raise SpecError(f"{where}: missing key {k!r} (has {sorted(entry)})")
        if not isinstance(entry["init"], str):
            raise SpecError(f"{where}.init: expected an initializer name, got {entry['init']!r}")
    return params


# ---------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------
class ChunkTask(NamedTuple):
    """One chunk: ``f(shape, Key.from_words(*key_words), index=index, dtype=dtype, **kwargs)``.

    Small and picklable (``init`` is a registered name, or a callable for Python specs)."""
    name: str
    shape: tuple
    init: Any
    kwargs: tuple          # sorted (name, value) pairs, without dtype
    dtype: str
    key_words: tuple
    index: Any             # None (the whole tensor) or a tuple of ints and one step-1 slice
    nbytes: int


class TensorPlan(NamedTuple):
    name: str
    shape: tuple
    init: str              # the initializer's name (module.qualname for a callable)
    fn: Any                # what the chunks call: the registered name, or the callable
    kwargs: dict           # without dtype
    dtype: str             # "bfloat16" | "float16" | "float32" | "float64"
    offset: int            # data_offsets[0]
    nbytes: int
    whole: bool            # generated in one piece (GLOBAL_INITIALIZERS)
    rank: int              # position in the spec (the file is ordered by itemsize first)


class Plan(NamedTuple):
    tensors: list
    header: bytes          # 8-byte length + padded JSON header
    data_bytes: int
    chunk_bytes: int       # the largest chunk allowed (see _slot_layout)
    buffer_bytes: int      # every buffer and in-flight result together (<= the chunk_bytes given)
    seed: int
    buffers: int           # reusable write buffers (2: one filled while the other is written)
    piece: int = 0         # data bytes per write buffer (the largest chunk, at least the header pieces)
    in_flight: int = 0     # engine="dask": chunk results computed ahead (the map_ordered window)

    @property
    def file_bytes(self) -> int:
        return len(self.header) + self.data_bytes

    @property
    def params(self) -> int:
        return sum(math.prod(t.shape) for t in self.tensors)

    def tasks(self) -> Iterator[ChunkTask]:
        key = Key(self.seed)
        for t in self.tensors:
            yield from _tensor_tasks(t, key / t.name, self.chunk_bytes)


def _init_name(init) -> str:
    if isinstance(init, str):
        return init
    return f"{getattr(init, '__module__', '?')}.{getattr(init, '__qualname__', repr(init))}"


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return repr(v)


def chunk_indices(shape: tuple, itemsize: int, chunk_bytes: int) -> Iterator[tuple[Any, int]]:
    """(index, nbytes) of the chunks of a C-ordered tensor, in file order, each <= chunk_bytes
    (index None: the whole tensor). Zero-size tensors have no chunks."""
    n = math.prod(shape)
    if n == 0:
        return
    if n * itemsize <= chunk_bytes:
        yield None, n * itemsize
        return
    inner = [math.prod(shape[d + 1:]) * itemsize for d in range(len(shape))]
    d = next(d for d in range(len(shape)) if inner[d] <= chunk_bytes)
    k = chunk_bytes // inner[d]
    for prefix in itertools.product(*(range(s) for s in shape[:d])):
        for a in range(0, shape[d], k):
            b = min(a + k, shape[d])
            yield prefix + (slice(a, b),), (b - a) * inner[d]


def largest_chunk(shape: tuple, itemsize: int, chunk_bytes: int) -> int:
    """``max(nbytes for _, nbytes in chunk_indices(shape, itemsize, chunk_bytes))`` (0 for a
    zero-size tensor) in O(len(shape)): the first chunk is the largest (the others have as many
    rows along the slab axis, or the remainder), so a tensor of 2**33 chunks is planned at once."""
    n = math.prod(shape)
    if n == 0:
        return 0
    if n * itemsize <= chunk_bytes:
        return n * itemsize
    inner = [math.prod(shape[d + 1:]) * itemsize for d in range(len(shape))]
    d = next(d for d in range(len(shape)) if inner[d] <= chunk_bytes)
    return min(chunk_bytes // inner[d], shape[d]) * inner[d]


def _tensor_tasks(t: TensorPlan, key: Key, chunk_bytes: int) -> Iterator[ChunkTask]:
    kw = tuple(sorted(t.kwargs.items()))
    fn = t.fn
    if t.whole:
        if t.nbytes:
            yield ChunkTask(t.name, t.shape, fn, kw, t.dtype, key.words, None, t.nbytes)
        return
    itemsize = normalize_dtype(t.dtype).itemsize
    for index, nbytes in chunk_indices(t.shape, itemsize, chunk_bytes):
        yield ChunkTask(t.name, t.shape, fn, kw, t.dtype, key.words, index, nbytes)


def _slot_layout(chunk_bytes: int, slots: int) -> tuple[int, bool]:
    """(largest chunk, exact) for ``chunk_bytes`` shared by ``slots`` (write buffers and
    in-flight results). A write buffer holds the < 4 KiB carried from the previous chunk
    (O_DIRECT writes whole blocks) plus one chunk, in whole pages: with ``slot =
    chunk_bytes // slots`` and chunks <= ``(slot // 4096 - 1) * 4096`` every buffer fits in
    ``slot`` bytes, so all of them together fit in ``chunk_bytes`` exactly (``exact``). Budgets
    under 8 KiB per slot (tests) keep chunks of ``slot`` bytes and add the carry room and page
    rounding on top (``exact`` False)."""
    slot = chunk_bytes // slots
    if slot >= 2 * _ALIGN:
        return (slot // _ALIGN - 1) * _ALIGN, True
    return slot, False


def _buffer_alloc(piece: int) -> int:
    """Bytes allocated for one write buffer of ``piece`` data bytes (+ carry), in whole pages."""
    return -(-(piece + _ALIGN - 1) // _ALIGN) * _ALIGN


def plan_init(spec, key=0, *, dtype="bfloat16", chunk_bytes: int = DEFAULT_CHUNK_BYTES,
              validate: bool = True, buffers: int = 2, in_flight: int = 0) -> Plan:
    """Check ``spec`` and lay out the file: tensors, offsets, header and chunks.

    ``chunk_bytes`` bounds every buffer together: ``buffers`` write buffers (2: one
    generated while the other is written) and, for ``engine="dask"``, ``in_flight``
    chunk results computed ahead; each chunk is at most ``chunk_bytes // (buffers +
    in_flight)`` less one 4 KiB page (``_slot_layout``), so ``Plan.buffer_bytes <=
    chunk_bytes`` (for ``chunk_bytes >= 8 KiB`` per slot).

    Every entry is resolved and (``validate=True``) its initializer called on one element,
    so an unknown initializer, a bad kwarg or shape raises here, before any file exists."""
    from . import __version__
    from .init import _entry, _resolve

    key = as_key(key)
    if isinstance(buffers, bool) or not isinstance(buffers, int) or buffers < 1:
        raise ValueError(f"buffers must be a positive int, got {buffers!r}")
    if isinstance(in_flight, bool) or not isinstance(in_flight, int) or in_flight < 0:
        raise ValueError(f"in_flight must be an int >= 0, got {in_flight!r}")
    slots = buffers + in_flight
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 8 * slots:
        raise ValueError(f"chunk_bytes must be an int >= {8 * slots} ({slots} buffers of at least the largest "
                         f"itemsize, 8), got {chunk_bytes!r}")
    total_bytes = chunk_bytes
    chunk_bytes, _ = _slot_layout(total_bytes, slots)
    if not hasattr(spec, "items"):
        raise TypeError(f"spec must be a mapping name -> entry, got {type(spec).__name__}")
    if not spec:
        raise ValueError("spec is empty: nothing to write")
    tensors, off, meta_params = [], 0, {}
    for name, entry in spec.items():
        if not isinstance(name, str):
            raise TypeError(f"parameter names must be str, got {name!r}")
        shape, init, kwargs = _entry(name, entry)
        reserved = _RESERVED & set(kwargs)
        if reserved:
            raise ValueError(f"parameter {name!r}: {sorted(reserved)} are set by save_init, not per parameter")
        fn = _resolve(name, init)
        try:
            shape = normalize_shape(shape)
        except (TypeError, ValueError) as e:
            raise ValueError(f"parameter {name!r}: {e}") from None
        try:
            dt = normalize_dtype(kwargs.pop("dtype", dtype))
        except TypeError as e:
            raise ValueError(f"parameter {name!r}: {e}") from None
        dname = dtype_name(dt)
        nbytes = math.prod(shape) * dt.itemsize
        iname = _init_name(init)
        whole = isinstance(init, str) and init in GLOBAL_INITIALIZERS
        if validate and nbytes:
            probe = None if whole else (0,) * len(shape)
            if not whole:       # one element: checks kwargs, fans and dtype cheaply
                try:
                    fn(shape, key / name, index=probe, dtype=dt, **kwargs)
                except (TypeError, ValueError) as e:
                    raise ValueError(f"parameter {name!r} ({iname}, shape {list(shape)}): {e}") from None
        # a whole-matrix tensor needs working arrays of its own (orthogonal's float64 QR:
        # ~32 bytes per element at its peak), and its own output array when it does not fit
        # a buffer: warn when that clearly leaves the budget
        if whole and (nbytes > chunk_bytes or 8 * math.prod(shape) > total_bytes):
            warnings.warn(f"parameter {name!r}: {iname} computes the whole {list(shape)} matrix at once "
                          f"({nbytes / 2**20:.0f} MiB of {dname}, plus float64 work of 8-32 bytes per element), "
                          f"beyond the chunk_bytes = {total_bytes / 2**20:.0f} MiB budget", ResourceWarning,
                          stacklevel=3)
        tensors.append(TensorPlan(name, shape, iname, init if isinstance(init, str) else fn, kwargs, dname,
                                  0, nbytes, whole, len(tensors)))
        meta_params[name] = {"shape": list(shape), "init": iname, **kwargs, "dtype": dname}
    # file order: by itemsize, largest first (stable: spec order within a dtype), as
    # safetensors.save_file does, so every tensor starts at a multiple of its itemsize
    tensors.sort(key=lambda t: -normalize_dtype(t.dtype).itemsize)
    for i, t in enumerate(tensors):
        tensors[i] = t._replace(offset=off)
        off += t.nbytes
    header = {"__metadata__": {
        "format": "pt",
        "symbreak_fast.version": __version__,
        "symbreak_fast.seed": str(key.seed),
        "symbreak_fast.params": json.dumps(meta_params, default=_json_default),
    }}
    for t in tensors:
        header[t.name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape),
                          "data_offsets": [t.offset, t.offset + t.nbytes]}
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    head = len(raw).to_bytes(8, "little") + raw
    # the buffers are as big as the largest chunk needs (a small model does not allocate
    # chunk_bytes), and at least 64 KiB (or the chunk limit) for the header's pieces; O(tensors):
    # the chunks themselves are only enumerated while writing (Plan.tasks)
    largest = 0
    for t in tensors:
        if t.nbytes and not t.whole:
            largest = max(largest, largest_chunk(t.shape, normalize_dtype(t.dtype).itemsize, chunk_bytes))
        elif t.nbytes <= chunk_bytes:        # a whole-matrix tensor that fits is generated in place
            largest = max(largest, t.nbytes)
    piece = max(largest, min(chunk_bytes, 1 << 16))
    buffer_bytes = buffers * _buffer_alloc(piece) + in_flight * largest
    return Plan(tensors, head, off, chunk_bytes, buffer_bytes, key.seed, buffers, piece, in_flight)


# ---------------------------------------------------------------------------
# rendering one chunk (pure, picklable: runs on dask workers too)
# ---------------------------------------------------------------------------
def _out_shape(shape, index):
    if index is None:
        return shape
    n_int = len(index) - 1
    s = index[-1]
    return (s.stop - s.start,) + tuple(shape[n_int + 1:])


def render_chunk(task: ChunkTask, out: np.ndarray | None = None) -> np.ndarray:
    """The bytes of one chunk (a C-ordered little-endian uint8 array of ``task.nbytes``).

    With ``out`` (a uint8 array of at least ``task.nbytes``) the chunk is generated in place
    into ``out[:task.nbytes]`` and that view is returned; otherwise a new array."""
    from .init import INITIALIZERS
    fn = INITIALIZERS[task.init] if isinstance(task.init, str) else task.init
    dt = normalize_dtype(task.dtype)
    key = Key.from_words(*task.key_words)
    shape = _out_shape(task.shape, task.index)
    view = None if out is None else out[:task.nbytes].view(dt).reshape(shape)
    got = fn(task.shape, key, index=task.index, dtype=dt, out=view, **dict(task.kwargs))
    if view is not None and got is view:
        return out[:task.nbytes]
    got = np.asarray(got)
    if got.shape != shape or got.dtype != dt:
        raise ValueError(f"parameter {task.name!r}: the initializer returned {got.dtype} {got.shape}, "
                         f"expected {dtype_name(dt)} {shape}")
    if view is not None:
        view[...] = got
        return out[:task.nbytes]
    if sys.byteorder != "little" and not is_bfloat16(dt):     # pragma: no cover - big-endian hosts
        got = got.astype(dt.newbyteorder("<"))
    return np.ascontiguousarray(got).reshape(-1).view(np.uint8)


def render_chunk_fresh(task: ChunkTask) -> np.ndarray:
    """``render_chunk`` into a new page-aligned anonymous mapping of ``task.nbytes`` (what
    ``engine="dask"`` runs for each chunk). Unlike a malloc'd array, the mapping goes back to
    the OS when the result is dropped, so the chunks computed ahead cost exactly their bytes
    (the allocator keeps no freed multi-MiB blocks in per-thread arenas)."""
    if not task.nbytes:                           # pragma: no cover - zero-size tensors have no chunks
        return render_chunk(task)
    return render_chunk(task, _aligned_buffer(task.nbytes))


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------
def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _check_target(path: str, need: int) -> str:
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, f"target folder {folder} does not exist (create it first)")
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"target {path} is a directory; give a file name such as "
                                              f"{os.path.join(path, 'model.safetensors')}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"target folder {folder} is not writable")
    free = shutil.disk_usage(folder).free
    if free < need:
        raise OSError(errno.ENOSPC, f"not enough disk space in {folder}: the file needs {need / 1e9:.3f} GB "
                                    f"({need} bytes), {free / 1e9:.3f} GB are free")
    return folder


_SYNC_FILE_RANGE = []


def _start_writeback(fd: int, offset: int, nbytes: int, wait_before: int = 0) -> None:
    """Linux: start writing ``[offset, offset + nbytes)`` to disk now (sync_file_range
    SYNC_FILE_RANGE_WRITE, asynchronous) and wait for the range written ``wait_before``
    bytes earlier, then drop it from the page cache. So the disk works while the next
    chunks are generated (instead of everything waiting for the final fsync) and the
    page cache does not fill with gigabytes of dirty pages. A no-op elsewhere; the final
    fsync is what guarantees durability either way."""
    if not _SYNC_FILE_RANGE:
        fn = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes
                fn = ctypes.CDLL(None, use_errno=True).sync_file_range
                fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
                fn.restype = ctypes.c_int
            except (OSError, AttributeError):    # pragma: no cover - no libc symbol
                fn = None
        _SYNC_FILE_RANGE.append(fn)
    fn = _SYNC_FILE_RANGE[0]
    if fn is None or nbytes <= 0:
        return
    fn(fd, offset, nbytes, 2)                                   # SYNC_FILE_RANGE_WRITE
    if wait_before and offset > wait_before:
        fn(fd, 0, offset - wait_before, 1 | 2 | 4)              # WAIT_BEFORE | WRITE | WAIT_AFTER
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, offset - wait_before, os.POSIX_FADV_DONTNEED)


def _progress_bar(enabled: bool, total: int, desc: str):
    if not enabled or not getattr(sys.stderr, "isatty", lambda: False)():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=True)


def save_init(spec, path, key, *, dtype="bfloat16", chunk_bytes: int = DEFAULT_CHUNK_BYTES,
              progress: bool = True, engine: str | None = None, client=None,
              max_in_flight: int | None = None) -> dict:
    """Initialize every parameter of ``spec`` from ``key / name`` and write a safetensors file.

    ``spec``: as ``init_params`` (``{name: {"shape": [...], "init": "he_normal", **kwargs}}``
    or ``(shape, init[, kwargs])``); ``dtype`` (default bfloat16) applies where an entry has
    no ``"dtype"``. The file equals ``init_params(spec, key, dtype=dtype)`` bit for bit
    (note ``init_params``' own default is float32: pass the same dtype).

    Memory: ``chunk_bytes`` bounds every buffer together (``buffer_bytes`` in the result),
    whatever the model size or the number of cores: two write buffers (one generated while
    the other is written) and, with ``engine="dask"``, the ``max_in_flight`` chunk results
    computed ahead; see ``plan_init``, and the module docstring for the whole-matrix
    initializers. ``progress``: a tqdm bar (bytes, rate) when stderr is a terminal.

    ``engine="dask"`` renders the chunks through ``symbreak_fast.dask.map_ordered`` on
    ``client`` (a ``distributed.Client``), else on the current / default client if there is
    one, else on a pool of local threads; at most ``max_in_flight`` (default 2 x the worker
    threads) chunks are computed ahead; writing stays here, in file order. The file is
    byte-identical to the local engine's.

    Returns ``{"path", "tensors", "params", "bytes" (file size), "chunks", "buffer_bytes",
    "seconds", "generate_seconds" (generating chunks, or with engine="dask" waiting for
    them), "write_seconds" (the writer thread in write calls), "stall_seconds" (waiting for
    a free buffer, i.e. for the disk), "o_direct"}``. Raises before creating anything for a
    bad spec, a missing or unwritable folder or too little free space; on any error (or
    KeyboardInterrupt) while writing, the temporary file is removed and ``path`` is
    untouched.
    """
    t0 = time.perf_counter()
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path must be the target file name (a str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    if engine not in (None, "local", "dask"):
        raise ValueError(f"engine must be None, 'local' or 'dask', got {engine!r}")
    if (client is not None or max_in_flight is not None) and engine != "dask":
        raise ValueError("client= and max_in_flight= are used with engine='dask' only")
    window = 0
    if engine == "dask":
        try:
            from .dask import _current_client, default_max_in_flight, map_ordered
        except ImportError as e:
            raise ImportError(f"engine='dask' needs symbreak_fast.dask and dask[distributed] "
                              f"(pip install 'dask[distributed]'): {e}") from e
        if max_in_flight is not None and (isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int)
                                          or max_in_flight < 1):
            raise ValueError(f"max_in_flight must be a positive int, got {max_in_flight!r}")
        if client is None:
            client = _current_client()
        window = max_in_flight or default_max_in_flight(client)
    plan = plan_init(spec, key, dtype=dtype, chunk_bytes=chunk_bytes, in_flight=window)
    folder = _check_target(path, plan.file_bytes)
    results = None if engine != "dask" else map_ordered(render_chunk_fresh, plan.tasks(), client=client,
                                                        max_in_flight=window)

    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    bar = None
    try:
        with os.fdopen(fd, "wb", buffering=0) as f:
            bar = _progress_bar(progress, plan.file_bytes, os.path.basename(path))
            # the whole job's element count decides the auto backend once (not each small chunk)
            job_backend = None if results is not None else _dispatch.planned_cpu_backend(plan.params)
            with _dispatch.use_backend(job_backend) if job_backend else contextlib.nullcontext():
                stats = _write_pipelined(f.fileno(), plan, bar, direct=USE_O_DIRECT, results=results)
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        if results is not None:
            results.close()             # cancels what is still computing ahead
        if bar is not None:
            bar.close()
    try:                                # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:                     # pragma: no cover - e.g. filesystems without dir fsync
        pass
    return {"path": path, "tensors": len(plan.tensors), "params": plan.params, "bytes": plan.file_bytes,
            "chunks": stats["chunks"], "buffer_bytes": plan.buffer_bytes, "seconds": time.perf_counter() - t0,
            "generate_seconds": stats["generate"], "write_seconds": stats["write"],
            "stall_seconds": stats["stall"], "o_direct": stats["direct"]}


#: write with O_DIRECT where the filesystem allows it (see _write_pipelined)
USE_O_DIRECT = True
_ALIGN = 4096      # O_DIRECT: file offsets, lengths and buffer addresses aligned to this


def _aligned_buffer(nbytes: int) -> np.ndarray:
    """A page-aligned uint8 array of exactly ``nbytes`` (anonymous mmap: no alignment slack,
    returned to the OS when the array is freed)."""
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=np.uint8)


def _pwrite_all(fd: int, mv: memoryview, offset: int) -> None:
    while mv:
        n = os.pwrite(fd, mv, offset)
        mv, offset = mv[n:], offset + n


def _set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for ``fd``; False where the platform or filesystem refuses."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    import fcntl
    try:
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, (fl | flag) if on else (fl & ~flag))
    except OSError:
        return False
    return True


def _write_pipelined(fd: int, plan: Plan, bar, direct: bool = True, results=None) -> dict:
    """Write header and data of ``plan`` to ``fd`` (an empty file), generating chunk i+1
    while chunk i is written: ``plan.buffers`` reusable buffers of ``plan.piece`` bytes
    (+ carry), a writer thread, file order kept. ``results``: an iterator of the chunks'
    bytes in task order (engine="dask"), copied through the same buffers instead of
    generated into them. Returns {"chunks", "generate", "write", "stall" (seconds),
    "direct" (O_DIRECT used to the end)}.

    Where the filesystem allows it (Linux ext4/xfs/...; not tmpfs) the file is written
    with O_DIRECT: no copy into the page cache (on a small machine that copy costs as
    much CPU as the generation) and the disk works while the next chunk is generated.
    Every write then covers whole 4 KiB blocks: the bytes of a chunk past its last full
    block are carried to the front of the next buffer (under 4 KiB), and the last ones
    are written after O_DIRECT is switched off. Without O_DIRECT (or if the first direct
    write is refused) the same writes go through the page cache, with writeback started
    early (``_start_writeback``)."""
    piece = plan.piece
    free: queue.Queue = queue.Queue()
    for _ in range(plan.buffers):
        free.put(_aligned_buffer(_buffer_alloc(piece)))
    todo: queue.Queue = queue.Queue()
    errors: list = []
    mode = {"direct": direct and _set_direct(fd, True)}
    times = {"generate": 0.0, "write": 0.0, "stall": 0.0}
    clock = time.perf_counter

    def write(buf, n, off):
        mv = memoryview(buf)[:n]
        if mode["direct"]:
            try:
                _pwrite_all(fd, mv, off)
                return
            except OSError as e:                 # e.g. EINVAL: alignment the device refuses
                if e.errno != errno.EINVAL:
                    raise
                mode["direct"] = False
                _set_direct(fd, False)
        _pwrite_all(fd, mv, off)
        _start_writeback(fd, off, n, wait_before=2 * piece)

    def writer():
        while True:
            item = todo.get()
            if item is None:
                return
            buf, n, off = item
            try:
                if not errors and n:
                    t = clock()
                    write(buf, n, off)
                    times["write"] += clock() - t
                    if bar is not None:
                        bar.update(n)
            except BaseException as e:  # noqa: BLE001 - handed to the main thread, re-raised there
                errors.append(e)
            finally:
                free.put(buf)

    th = threading.Thread(target=writer, name="save_init-writer", daemon=True)
    th.start()
    carry = b""          # bytes produced but not yet written (under _ALIGN)
    pos = 0              # file offset of carry[0]
    chunks = 0

    def submit(buf, m):
        # buf[:m] holds file bytes [pos, pos + m): write the whole blocks, carry the rest
        nonlocal carry, pos
        w = m - m % _ALIGN
        carry = bytes(buf[w:m])
        todo.put((buf, w, pos))
        pos += w

    def take():
        t = clock()
        buf = free.get()
        times["stall"] += clock() - t
        if errors:
            raise _Stop
        buf[:len(carry)] = np.frombuffer(carry, dtype=np.uint8)
        return buf

    def feed(data):      # bytes-like, copied through the buffers piece by piece
        data = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
        for a in range(0, data.size, piece):
            part = data[a:a + piece]
            buf = take()
            c = len(carry)
            buf[c:c + part.size] = part
            submit(buf, c + part.size)

    def timed(fn, *args):
        t = clock()
        try:
            return fn(*args)
        finally:
            times["generate"] += clock() - t

    try:
        feed(plan.header)
        for task in plan.tasks():
            chunks += 1
            if results is not None:              # computed elsewhere (engine="dask"): copy it in
                data = timed(next, results)
                if data.nbytes != task.nbytes:   # pragma: no cover - a worker bug
                    raise RuntimeError(f"chunk {chunks} of {task.name!r}: got {data.nbytes} bytes, "
                                       f"expected {task.nbytes}")
                feed(data)
                del data
                continue
            if task.nbytes > piece:              # a whole-matrix initializer bigger than a buffer
                feed(timed(render_chunk, task))
                continue
            buf = take()
            c = len(carry)
            timed(render_chunk, task, buf[c:])
            submit(buf, c + task.nbytes)
    except _Stop:
        pass
    finally:
        todo.put(None)
        th.join()
    if errors:
        raise errors[0]
    o_direct = mode["direct"]                    # every whole block went out with O_DIRECT
    if carry:
        _set_direct(fd, False)
        mode["direct"] = False
        _pwrite_all(fd, memoryview(carry), pos)
        if bar is not None:
            bar.update(len(carry))
        pos += len(carry)
    if pos != plan.file_bytes:                   # pragma: no cover - a planning bug
        raise RuntimeError(f"wrote {pos} bytes, the header promises {plan.file_bytes}")
    return {"chunks": chunks, "direct": o_direct, **times}


class _Stop(Exception):
    """The writer failed: stop generating (its error is raised instead)."""


# ---------------------------------------------------------------------------
# the parameter table (symbreak-fast init --dry-run)
# ---------------------------------------------------------------------------
def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def format_plan(plan: Plan) -> str:
    """The parameter table: name, shape, initializer (and kwargs), dtype, bytes; a total line."""
    rows = []
    for t in sorted(plan.tensors, key=lambda t: t.rank):
        scheme = t.init
        if t.kwargs:
            scheme += "(" + ", ".join(f"{k}={v!r}" for k, v in sorted(t.kwargs.items())) + ")"
        rows.append((t.name, "x".join(map(str, t.shape)) or "()", scheme, t.dtype, _fmt_bytes(t.nbytes)))
    head = ("name", "shape", "init", "dtype", "bytes")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
    line = lambda r: "  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    out = [line(head), line(tuple("-" * w for w in widths))]
    out += [line(r) for r in rows]
    out.append(f"total: {len(plan.tensors)} tensors, {plan.params:,} parameters, data {_fmt_bytes(plan.data_bytes)}"
               f" ({plan.data_bytes:,} bytes), file {plan.file_bytes:,} bytes, seed {plan.seed}")
    return "\n".join(out)
