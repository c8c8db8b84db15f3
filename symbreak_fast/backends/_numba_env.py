"""Process-wide Numba matters of the backends: where the compiled kernels are cached (and
what happens when no folder is writable), and parallel launches from several Python threads.

Cache
-----

The Numba backends compile with ``cache=True``. Numba looks for a writable cache folder in
this order: ``NUMBA_CACHE_DIR``, the package's own ``__pycache__``, the user cache folder
(``~/.cache/numba``). When none is writable (a read-only install such as a system
site-packages or a container image, run by a user whose home is read-only) Numba refuses to
define the functions at all ("cannot cache function ...: no locator available"), so importing
a backend would fail.

``CACHE`` resolves that once, before any kernel is defined:

1. If Numba finds a writable folder, nothing changes (``CACHE`` is True).
2. Otherwise ``numba.config.CACHE_DIR`` is pointed at a private folder in the temporary
   directory, ``<tmp>/symbreak_fast-numba-<uid>`` (created with mode 0700, used only if it
   is owned by this user and not writable by others, since Numba loads code from it); the
   kernels compile once and later processes load them from there. ``NUMBA_CACHE_DIR`` is
   the documented way to choose that folder yourself.
3. If even that folder can't be used, the kernels are compiled in memory in every process
   (``CACHE`` is False) and a ``RuntimeWarning`` says how to get a cache.

The cache never changes results: compiled code is the same whichever folder holds it.

Threads
-------
The kernels release the GIL (``nogil=True``), so Python threads run them at the same time.
Numba's "omp" and "tbb" threading layers accept parallel launches from several threads;
its fallback "workqueue" layer (chosen where neither OpenMP nor TBB is found) aborts the
process on a concurrent launch. ``parallel_launch`` serializes launches under that layer
only (results never depend on it: every element is a pure function of its index).
"""
from __future__ import annotations

import os
import stat
import tempfile
import threading
import warnings

from numba.core import caching, config


def _numba_finds_a_folder(py_file: str) -> bool:
    """Whether one of Numba's own cache locators accepts a function defined in ``py_file``."""
    def probe():  # a stand-in function "defined" in py_file: locators only read its code object
        pass
    probe.__code__ = probe.__code__.replace(co_filename=py_file)
    for cls in caching.CompileResultCacheImpl._locator_classes:
        try:
            if cls.from_function(probe, py_file) is not None:
                return True
        except Exception:   # a locator that can't handle this file: try the next one
            continue
    return False


def _private_tmp_dir() -> str | None:
    """``<tmp>/symbreak_fast-numba-<uid>`` if it exists or can be made, is ours and is private."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = os.path.join(tempfile.gettempdir(), f"symbreak_fast-numba-{uid}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != uid) \
                or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return None
    return path


def resolve_cache(py_file: str) -> bool:
    """True when kernels defined in ``py_file`` can be cached on disk (see the module doc)."""
    if _numba_finds_a_folder(py_file):
        return True
    path = _private_tmp_dir()
    if path is not None:
        config.CACHE_DIR = path
        if _numba_finds_a_folder(py_file):
            return True
    warnings.warn("symbreak_fast: no writable folder for Numba's kernel cache (the install folder, "
                  "~/.cache/numba and the temporary directory are not writable); kernels will be "
                  "compiled in every process. Set NUMBA_CACHE_DIR to a writable folder to cache them.",
                  RuntimeWarning, stacklevel=2)
    return False


CACHE = resolve_cache(os.path.join(os.path.dirname(os.path.abspath(__file__)), "numba_cpu.py"))


_LAUNCH_LOCK = threading.Lock()
_SERIALIZE: bool | None = None      # unknown until the first parallel launch has chosen a layer


def parallel_launch(kernel, *args):
    """``kernel(*args)`` for a ``parallel=True`` kernel, serialized under the workqueue layer.

    The first launch holds the lock (Numba picks its threading layer then); afterwards the
    lock is taken only if that layer is "workqueue"."""
    global _SERIALIZE
    if _SERIALIZE is False:
        return kernel(*args)
    with _LAUNCH_LOCK:
        result = kernel(*args)
        if _SERIALIZE is None:
            import numba
            _SERIALIZE = numba.threading_layer() == "workqueue"
        return result
