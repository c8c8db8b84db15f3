"""Dask arrays of counter-based draws, and ordered task maps on a Dask cluster.

Optional extra: ``pip install "symbreak-fast[dask]"``. ``import symbreak_fast``
never imports Dask; this module does.

Every chunk of an array made here is generated on its own by the in-memory
function with ``index=`` set to the chunk's slice of the *global* shape, on whatever
worker runs it (backend chosen there: auto by default). Because each element is a
pure function of (key, global flat index) (docs/RNG.md §1, §8), the computed array
equals the in-memory result bit for bit, for every ``chunks=``, worker count and
scheduler. Parameters that depend on the shape (the fans of ``he_normal`` etc.) are
computed from the full shape, never the chunk's.

    import symbreak_fast as sbf, symbreak_fast.dask as sbd
    w = sbd.normal((200_000, 50_000), sbf.Key(0) / "w", std=0.02, chunks=(8192, 50_000))
    h = sbd.he_normal((4096, 4096), sbf.Key(0) / "h", dtype="bfloat16")   # any registered initializer
    w.sum().compute()             # runs on the current distributed Client, if any

``orthogonal``, ``sparse`` and ``dirac`` have a global property: each chunk computes the
whole tensor (as their ``index=`` does) and keeps its slice, so chunking them saves memory
on no worker and multiplies the work; use one chunk (``chunks=-1``) for them.
"""
from __future__ import annotations

import functools
import inspect
import itertools
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize

from . import _dispatch
from ._indexing import normalize_shape
from ._key import Key, as_key
from ._request import normalize_dtype
from . import init as _init
from . import random as _random

__all__ = ["from_initializer", "random_bits", "uniform", "normal", "truncated_normal", "map_ordered",
           "default_max_in_flight"]

# initializers whose index= computes the whole tensor (a global property): every chunk computes
# it all. They return at once for an empty index= box, so the client-side probe (an empty box)
# checks their arguments without computing the tensor, as for the others
_GLOBAL = (_init.orthogonal, _init.sparse, _init.dirac)


# ---------------------------------------------------------------------------
# arrays
# ---------------------------------------------------------------------------
def _key(words):
    return None if words is None else Key.from_words(*words)


def _render(fn, shape, words, args, kwargs, index):
    """One chunk: ``fn(shape, key, *args, index=index, **kwargs)`` (runs on the worker)."""
    return fn(shape, _key(words), *args, index=index, **kwargs)


def _render_bits(shape, words, index, backend):
    return _random.random_bits(shape, Key.from_words(*words), index=index, backend=backend)


def _resolve(fn_or_name):
    if fn_or_name == "random_bits":
        return _random.random_bits, "random_bits"
    if isinstance(fn_or_name, str):
        try:
            return _init.INITIALIZERS[fn_or_name], fn_or_name
        except KeyError:
            raise ValueError(f"unknown initializer {fn_or_name!r}; known: {sorted(_init.INITIALIZERS)}") from None
    if fn_or_name is _random.random_bits:
        return fn_or_name, "random_bits"
    if not callable(fn_or_name):
        raise TypeError(f"expected an initializer name or callable, got {type(fn_or_name).__name__}")
    for name, f in _init.INITIALIZERS.items():
        if f is fn_or_name:
            return f, name
    return fn_or_name, getattr(fn_or_name, "__name__", "initializer")


def _accepts_index(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == "index" or p.kind is p.VAR_KEYWORD for p in params)


def _check_cpu(backend, device, out):
    if out is not None:
        raise ValueError("out= is not supported for Dask arrays (every chunk is a new array); "
                         "use dask.array.store to write into an existing array")
    if device not in (None, "cpu"):
        raise ValueError(f"device={device!r} is not supported for Dask arrays: chunks are NumPy arrays "
                         "generated on the CPU of each worker")
    if backend is not None:
        spec = _dispatch._REGISTRY.get(backend)
        if spec is not None and spec.device != "cpu":
            raise ValueError(f"backend={backend!r} runs on a GPU; Dask arrays here are NumPy chunks "
                             "(use a CPU backend or leave backend=None)")


def _check_chunk_ints(chunks):
    """Dask's normalize_chunks divides by a 0 and turns other negative sizes into negative shapes:
    refuse them (-1 means "the whole axis")."""
    items = chunks.values() if isinstance(chunks, dict) else chunks if isinstance(chunks, (tuple, list)) \
        else (chunks,)
    for c in items:
        if isinstance(c, (tuple, list)):
            bad = [b for b in c if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 0]
            if bad:
                raise ValueError(f"chunks={chunks!r}: explicit block sizes must be ints >= 0, got {bad[0]!r}")
        elif isinstance(c, (int, np.integer)) and not isinstance(c, bool) and (c == 0 or c < -1):
            raise ValueError(f"chunks={chunks!r}: a chunk size must be a positive int, -1 (the whole axis), "
                             f"'auto' or None, got {c}")


def _normalize_chunks(chunks, shape, dt):
    _check_chunk_ints(chunks)
    try:
        out = da.core.normalize_chunks(chunks, shape, dtype=dt)
    except (ValueError, TypeError, ZeroDivisionError) as e:
        raise ValueError(f"chunks={chunks!r} does not fit shape {shape}: {e} (pass an int, a tuple with one "
                         "entry per axis, -1 for one chunk, or 'auto')") from None
    if len(out) != len(shape) or any(sum(c) != s or any(b < 0 for b in c) for c, s in zip(out, shape)):
        raise ValueError(f"chunks={chunks!r} does not fit shape {shape} (blocks {out}); pass an int, a tuple "
                         "with one entry per axis, -1 for one chunk, or 'auto'")
    return out


def _array(name, shape, chunks, dt, part):
    """A dask array whose block ``ix`` is ``part(index_of_block)()``."""
    chunks = _normalize_chunks(chunks, shape, dt)
    offsets = [tuple(itertools.accumulate((0,) + c[:-1])) for c in chunks]
    dsk = {}
    for ix in itertools.product(*(range(len(c)) for c in chunks)):
        index = tuple(slice(offsets[d][i], offsets[d][i] + chunks[d][i]) for d, i in enumerate(ix))
        dsk[(name,) + ix] = (part(index),)
    return da.Array(dsk, name, chunks, meta=np.empty((0,) * len(shape), dtype=dt))


def from_initializer(fn_or_name, shape, key, *args, chunks="auto", dtype="float32", index=None, backend=None,
                     device=None, out=None, **kwargs) -> da.Array:
    """A ``dask.array.Array`` equal bit for bit to ``fn(shape, key, *args, dtype=dtype, **kwargs)``.

    ``fn_or_name``: a registered initializer name (``init.INITIALIZERS``), one of the
    generators, or a callable ``f(shape, key, ..., *, dtype, index, backend)`` that
    honours ``index=`` (``f(shape, key, index=ix) == f(shape, key)[ix]``). ``chunks``:
    anything ``dask.array`` accepts ("auto", an int, a tuple, -1 ...). ``backend=`` is
    passed to every chunk (None: each worker chooses). ``index=`` slices the result
    lazily. The task name is deterministic: the same call gives the same ``.name``.
    """
    fn, label = _resolve(fn_or_name)
    _check_cpu(backend, device, out)
    if not _accepts_index(fn):
        raise ValueError(f"initializer {label!r} does not accept index=, which the Dask engine needs to "
                         "generate each chunk on its own (f(shape, key, index=ix) must equal f(shape, key)[ix])")
    shape = normalize_shape(shape)
    # key=None only for the key-less initializers (zeros, ones, constant, identity, dirac);
    # the others reject it in the client-side check below
    words = None if key is None else as_key(key).words
    if fn is _random.random_bits:
        if args or kwargs or dtype not in ("float32", "uint32", np.uint32):
            raise TypeError("random_bits takes no parameters and returns uint32")
        dt = np.dtype(np.uint32)
        _random.random_bits(shape, _key(words), index=tuple(slice(0, 0) for _ in shape),
                            backend=backend)   # every check on the client, no element computed
        name = f"random_bits-{tokenize('symbreak_fast.random_bits', shape, words, backend, chunks)}"
        arr = _array(name, shape, chunks, dt,
                     lambda ix: functools.partial(_render_bits, shape, words, ix, backend))
        return arr if index is None else arr[index]
    kw = dict(kwargs, dtype=dtype)
    if backend is not None:
        kw["backend"] = backend
    if fn in _GLOBAL and fn is not _init.dirac and words is None:
        raise TypeError(f"{label} needs a key (a symbreak_fast.Key or an int seed), got None")
    # validate every parameter on the client (an empty box computes nothing, also for the
    # whole-tensor initializers) and learn the dtype
    probe = fn(shape, _key(words), *args, index=tuple(slice(0, 0) for _ in shape), **kw)
    dt = np.asarray(probe).dtype if isinstance(probe, np.ndarray) else normalize_dtype(dtype)
    fn_token = label if _init.INITIALIZERS.get(label) is fn else fn
    name = f"{label}-{tokenize('symbreak_fast', fn_token, shape, words, args, sorted(kw.items()), dt.str, str(dt), chunks)}"
    arr = _array(name, shape, chunks, dt, lambda ix: functools.partial(_render, fn, shape, words, args, kw, ix))
    return arr if index is None else arr[index]


def random_bits(shape, key, *, chunks="auto", index=None, backend=None, device=None, out=None) -> da.Array:
    """Dask version of ``symbreak_fast.random_bits`` (uint32)."""
    return from_initializer(_random.random_bits, shape, key, chunks=chunks, dtype="uint32", index=index,
                            backend=backend, device=device, out=out)


def uniform(shape, key, low=0.0, high=1.0, *, chunks="auto", dtype="float32", index=None, backend=None,
            device=None, out=None) -> da.Array:
    """Dask version of ``symbreak_fast.uniform``."""
    return from_initializer(_random.uniform, shape, key, low, high, chunks=chunks, dtype=dtype, index=index,
                            backend=backend, device=device, out=out)


def normal(shape, key, mean=0.0, std=1.0, *, chunks="auto", dtype="float32", index=None, backend=None,
           device=None, out=None) -> da.Array:
    """Dask version of ``symbreak_fast.normal``."""
    return from_initializer(_random.normal, shape, key, mean, std, chunks=chunks, dtype=dtype, index=index,
                            backend=backend, device=device, out=out)


def truncated_normal(shape, key, mean=0.0, std=1.0, lower=-2.0, upper=2.0, *, chunks="auto", dtype="float32",
                     index=None, backend=None, device=None, out=None) -> da.Array:
    """Dask version of ``symbreak_fast.truncated_normal``."""
    return from_initializer(_random.truncated_normal, shape, key, mean, std, lower, upper, chunks=chunks,
                            dtype=dtype, index=index, backend=backend, device=device, out=out)


def _wrapper(name):
    def wrapped(shape, key=None, *args, chunks="auto", **kwargs):
        return from_initializer(name, shape, key, *args, chunks=chunks, **kwargs)
    wrapped.__name__ = wrapped.__qualname__ = name
    wrapped.__doc__ = (f"Dask version of the ``{name}`` initializer: same arguments plus ``chunks=``; "
                       "see ``from_initializer``.")
    return wrapped


def __getattr__(name):
    """``symbreak_fast.dask.<initializer>`` for every registered initializer (also ones
    registered later with ``register_initializer``)."""
    if name in _init.INITIALIZERS and not name.startswith("_"):
        return _wrapper(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_init.INITIALIZERS))


def _init_params(entries, key, *, backend, chunks):
    """init_params(engine="dask"): entries are (name, shape, fn, kwargs) as init_params builds them."""
    per_name = isinstance(chunks, dict) and all(isinstance(k, str) for k in chunks) and chunks
    out = {}
    for name, shape, fn, kwargs in entries:
        c = chunks.get(name, "auto") if per_name else chunks
        out[name] = from_initializer(fn, shape, key / name, chunks=c, backend=backend, **kwargs)
    return out


# ---------------------------------------------------------------------------
# ordered map with a bounded window
# ---------------------------------------------------------------------------
def _current_client():
    """The current distributed client, or None (distributed not installed / no client)."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def _cpu_threads() -> int:
    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)


def _check_client(client):
    """A ``distributed.Client`` (or anything with its submit / cancel / nthreads), or None."""
    if client is not None and not all(callable(getattr(client, m, None)) for m in ("submit", "cancel", "nthreads")):
        raise TypeError(f"client must be a distributed.Client (or None: the current client, else local threads), "
                        f"got {type(client).__name__}")


def default_max_in_flight(client=None) -> int:
    """``map_ordered``'s default window: 2 x the worker threads of ``client`` (a
    ``distributed.Client``), or 2 x the local threads (Dask's ``num_workers`` setting, else the
    CPU count) for ``client=None``. (Not the current client: resolve that first.)"""
    _check_client(client)
    if client is None:
        return 2 * _cpu_threads()
    return 2 * max(1, sum(client.nthreads().values()))


def map_ordered(func, tasks, client=None, max_in_flight=None):
    """Yield ``func(task)`` for every task, in task order, computing ahead.

    ``client``: a ``distributed.Client``; None uses the current one (``with client.as_current()``
    or the default client) if there is one, else a pool of local threads (Dask's
    ``num_workers`` setting, else the CPU count). At most ``max_in_flight`` tasks (default
    ``default_max_in_flight(client)``: 2 x the worker threads) are submitted and not yet
    consumed at any time, counting the result being yielded (consumed when the iterator is
    resumed): so at most ``max_in_flight`` results exist at once, on the workers or here,
    whatever the number of tasks or cores. ``func`` and the tasks must be picklable for a
    cluster with process workers. Closing the iterator early (or an error in ``func``)
    cancels what has not started and waits for what is running (local threads) or cancels
    it (cluster).
    """
    if not callable(func):
        raise TypeError(f"func must be callable (it is called as func(task)), got {type(func).__name__}")
    try:
        it = iter(tasks)
    except TypeError:
        raise TypeError(f"tasks must be an iterable of task arguments (a list, generator, ...), "
                        f"got {type(tasks).__name__}") from None
    _check_client(client)
    if client is None:
        client = _current_client()
    if max_in_flight is not None and (isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int)
                                      or max_in_flight < 1):
        raise ValueError(f"max_in_flight must be a positive int, got {max_in_flight!r}")
    if max_in_flight is None:
        max_in_flight = default_max_in_flight(client)
    if client is None:
        return _map_threads(func, it, max_in_flight)
    return _map_client(func, it, client, max_in_flight)


def _map_window(submit, tasks, max_in_flight, finish):
    """Yield ``submit(task).result()`` in task order with at most ``max_in_flight`` futures
    pending; ``finish(fut)`` releases a future once its result is out."""
    it = iter(tasks)
    pending = deque()
    try:
        while True:
            # the result yielded last was consumed: refill to the window
            while len(pending) < max_in_flight:
                t = next(it, _END)
                if t is _END:
                    break
                pending.append(submit(t))
            if not pending:
                return
            fut = pending.popleft()
            r = fut.result()
            finish(fut)
            del fut
            yield r            # alive now: r and len(pending) <= max_in_flight - 1 others
            del r
    finally:
        for fut in pending:
            fut.cancel()


def _map_threads(func, tasks, max_in_flight):
    pool = ThreadPoolExecutor(max_workers=min(_cpu_threads(), max_in_flight), thread_name_prefix="map_ordered")
    try:
        yield from _map_window(lambda t: pool.submit(func, t), tasks, max_in_flight, lambda fut: None)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _map_client(func, tasks, client, max_in_flight):
    yield from _map_window(lambda t: client.submit(func, t, pure=False), tasks, max_in_flight,
                           lambda fut: fut.release())


_END = object()
