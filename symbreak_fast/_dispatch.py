"""Backend registry, ``device=`` parsing and the choice rule. Backends never change results.

Order of precedence: explicit ``backend=`` > ``with use_backend(name):`` >
``SYMBREAK_BACKEND`` environment variable > auto. Auto: ``device="cuda"`` or a cupy
``out=`` -> "cupy"; on the CPU, Numba when this process has already loaded it (a warm
call beats the NumPy reference at every size), or when it is installed and the elements
the auto rule has given NumPy in this process, this call's included, reach
``NUMBA_MIN_ELEMENTS`` (the measurements are next to the constant); else the NumPy
reference. A backend that runs on another device than the one ``device=`` / ``out=``
asks for is an error, whichever rule chose it.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

# The auto rule on the CPU "rents" the NumPy reference until the elements it has generated in this
# process (this call's included) reach NUMBA_MIN_ELEMENTS, then "buys" Numba: imports it and loads
# its cached kernels once, and uses it for every later call at any size. So a process that only
# makes small tensors never pays Numba's start-up, many medium tensors switch to Numba after
# ~one start-up's worth of NumPy time, and the total is at most the better of all-NumPy and
# all-Numba plus one start-up (the ski-rental bound).
# Measured with `python benchmarks/test_dispatch.py` (2-core dev machine shared with other jobs,
# so +-50%): Numba's first call in a fresh process with a warm disk cache costs 0.70-0.81 s
# (import numba + load the cached kernel); the first call of each further output dtype 11-55 ms.
# normal float32 per call, warm:   2**12    2**16    2**20    2**22    2**24 elements
#                        numpy    0.45 ms  6.1 ms   183 ms   394 ms   2.09 s   (0.06-0.2 us/element)
#                        numba    0.03 ms  0.16 ms  15 ms    16 ms    93 ms
# NumPy's time reaches the start-up cost at ~0.75 s / ~0.1 us = ~7.5e6 elements, so 2**23: less
# NumPy work than that is cheaper than starting Numba; more, and Numba (20x faster warm) has paid
# for itself. Once Numba is loaded its warm calls beat NumPy at every size measured (15x at 2**12),
# so it is then used at any size; a new dtype's first call (<= 55 ms, once per process) is the cost.
NUMBA_MIN_ELEMENTS = 1 << 23

DEVICE_KINDS = ("cpu", "cuda")


@dataclass(frozen=True)
class BackendSpec:
    name: str
    module: str                      # imported only when the backend is first used
    probe: Callable[[], tuple[bool, str]]
    install_hint: str
    device: str = "cpu"              # "cpu" | "cuda": where its arrays live


_REGISTRY: dict[str, BackendSpec] = {}
_LOADED: dict[str, object] = {}
_CURRENT: contextvars.ContextVar = contextvars.ContextVar("symbreak_fast_backend", default=None)
# elements the auto rule has sent to the NumPy reference in this process (see NUMBA_MIN_ELEMENTS);
# updated without a lock: a lost update under threads only delays the switch to Numba
_AUTO_NUMPY_ELEMENTS = [0]


def register_backend(spec: BackendSpec) -> None:
    """Add a backend; its module provides ``generate(request, out_flat)`` (and, for "cuda",
    probe/device_count/storage_dtype/empty). A name can be registered once."""
    if spec.name in _REGISTRY:
        raise ValueError(f"backend {spec.name!r} is already registered")
    if spec.device not in DEVICE_KINDS:
        raise ValueError(f"backend {spec.name!r}: device must be one of {DEVICE_KINDS}, got {spec.device!r}")
    _REGISTRY[spec.name] = spec


def _probe_numba() -> tuple[bool, str]:
    if importlib.util.find_spec("numba") is None:
        return False, "numba is not installed"
    return True, "numba is installed"


def _probe_cupy() -> tuple[bool, str]:
    from .backends import cuda_cupy      # imports numpy only; cupy is imported by its probe
    return cuda_cupy.probe()


register_backend(BackendSpec("numpy", "symbreak_fast.backends.numpy_ref", lambda: (True, "always available"),
                             ""))
register_backend(BackendSpec("numba", "symbreak_fast.backends.numba_cpu", _probe_numba,
                             'pip install "symbreak-fast" (numba is a core dependency) or pip install numba'))
register_backend(BackendSpec("cupy", "symbreak_fast.backends.cuda_cupy", _probe_cupy,
                             'it needs an NVIDIA GPU with a working driver and CuPy: pip install '
                             '"symbreak-fast[gpu]" (CuPy for CUDA 13; or the cupy-cudaXXx wheel matching your '
                             'driver); to stay on the CPU leave device= unset or pass device="cpu"',
                             device="cuda"))


def available_backends() -> tuple[str, ...]:
    """Names of the backends usable in this process, e.g. ("numpy", "numba")."""
    return tuple(n for n, s in _REGISTRY.items() if s.probe()[0])


def _spec(name) -> BackendSpec:
    if not isinstance(name, str):
        raise TypeError(f"backend must be a str such as 'numba', 'numpy' or 'cupy', got {name!r}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose one of {tuple(_REGISTRY)}") from None


def get_backend(name: str):
    """The backend's module, imported on first use; RuntimeError (with how to get it) if unusable."""
    try:
        return _LOADED[name]
    except (KeyError, TypeError):
        pass
    spec = _spec(name)
    ok, why = spec.probe()
    if not ok:
        raise RuntimeError(f"backend {name!r} is not available: {why}; {spec.install_hint}")
    _LOADED[name] = importlib.import_module(spec.module)
    return _LOADED[name]


@contextlib.contextmanager
def use_backend(name):
    """``with use_backend("numba"):`` calls without ``backend=`` use this backend.

    Nestable; restored on exit (also on an exception); per thread and per asyncio
    task (a contextvar). ``None`` restores the automatic choice inside the block.
    Unknown names raise ValueError and unusable ones RuntimeError on entry."""
    if name is not None:
        spec = _spec(name)
        ok, why = spec.probe()
        if not ok:
            raise RuntimeError(f"backend {name!r} is not available: {why}; {spec.install_hint}")
    token = _CURRENT.set(name)
    try:
        yield name
    finally:
        _CURRENT.reset(token)


def _requested(backend):
    """(name, rule) from backend= / use_backend / SYMBREAK_BACKEND, or (None, None): auto."""
    if backend is not None:
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a str such as 'numba', 'numpy' or 'cupy', got {backend!r}")
        return backend, "explicit"
    ctx = _CURRENT.get()
    if ctx is not None:
        return ctx, "context"
    env = os.environ.get("SYMBREAK_BACKEND")
    if env:
        return env, "env"
    return None, None


def requested_backend(backend) -> tuple[str | None, str]:
    """(name, reason) from backend= / use_backend / SYMBREAK_BACKEND, or (None, "") for auto."""
    name, rule = _requested(backend)
    return (None, "") if name is None else (name, _reason(name, rule, 0))


def _choose(backend, size: int, kind) -> tuple[str, str]:
    """(name, rule code); the text comes from _reason only when needed (it costs ~1 us)."""
    name, rule = _requested(backend)
    if name is not None:
        return name, rule
    if kind == "cuda":
        return "cupy", "auto-cuda"
    if "numba" in _LOADED:
        return "numba", "auto-loaded"
    if size + _AUTO_NUMPY_ELEMENTS[0] >= NUMBA_MIN_ELEMENTS:
        return ("numba", "auto-large") if _REGISTRY["numba"].probe()[0] else ("numpy", "auto-no-numba")
    return "numpy", "auto-small"


def _reason(name: str, rule: str, size: int) -> str:
    if rule == "explicit":
        return f"explicit backend={name!r}"
    if rule == "context":
        return f"use_backend({name!r}) block"
    if rule == "env":
        return f"SYMBREAK_BACKEND={name!r} environment variable"
    return {"auto-cuda": "auto: a CUDA device was asked for (device= or a cupy out=)",
            "auto-loaded": "auto: the numba backend is already loaded in this process (no start-up left to pay)",
            "auto-large": f"auto: {size} elements + {_AUTO_NUMPY_ELEMENTS[0]} given to numpy earlier in this "
                          f"process >= {NUMBA_MIN_ELEMENTS}: starting numba now costs less than numpy would",
            "auto-no-numba": "auto: numba is not installed",
            "auto-small": f"auto: {size} elements + {_AUTO_NUMPY_ELEMENTS[0]} given to numpy earlier in this "
                          f"process < {NUMBA_MIN_ELEMENTS}: cheaper than starting numba"}[rule]


def planned_cpu_backend(total_elements: int) -> str | None:
    """For one job that generates ``total_elements`` on the CPU in many calls (``save_init``'s
    chunks): the backend the auto rule settles on for the whole job, so that its first chunks
    don't go to the reference only because each is small; None when the choice is not
    automatic (a ``use_backend`` block or ``SYMBREAK_BACKEND`` decides)."""
    name, rule = _choose(None, total_elements, "cpu")
    return name if rule.startswith("auto") else None


def auto_cpu_backend(size: int) -> str:
    """The CPU backend auto would pick for ``size`` elements (ignores backend=/use_backend/env)."""
    if "numba" in _LOADED or (size + _AUTO_NUMPY_ELEMENTS[0] >= NUMBA_MIN_ELEMENTS
                              and _REGISTRY["numba"].probe()[0]):
        return "numba"
    return "numpy"


def choose_backend(backend, size: int, device_kind: str | None = None) -> tuple[str, str]:
    """(backend name, reason) for a request of ``size`` elements on ``device_kind``
    ("cpu", "cuda" or None: not asked for). Checks nothing about availability."""
    name, rule = _choose(backend, size, device_kind)
    return name, _reason(name, rule, size)


# ---------------------------------------------------------------------------
# devices
# ---------------------------------------------------------------------------
def parse_device(device) -> tuple[str | None, int | None]:
    """None -> (None, None); "cpu" -> ("cpu", None); "cuda" -> ("cuda", None); "cuda:N" -> ("cuda", N)."""
    if device is None:
        return None, None
    if isinstance(device, str):
        if device == "cpu" or device == "cuda":
            return device, None
        if device.startswith("cuda:"):
            n = device[5:]
            if n.isascii() and n.isdigit():
                return "cuda", int(n)
    raise ValueError(f"device must be None, 'cpu', 'cuda' (the current CUDA device) or 'cuda:N' with N >= 0 "
                     f"a device index, got {device!r}")


def is_device_array(a) -> bool:
    """True for a cupy array (checked by its class's module: cupy is never imported here)."""
    t = type(a)
    if t is np.ndarray or a is None:
        return False
    return any((getattr(c, "__module__", None) or "").partition(".")[0] == "cupy" for c in t.__mro__)


def _out_device(out) -> tuple[str | None, int | None]:
    if out is None:
        return None, None
    if type(out) is np.ndarray:
        return "cpu", None
    if is_device_array(out):
        return "cuda", int(out.device.id)
    if isinstance(out, np.ndarray):
        return "cpu", None
    return None, None        # not an array: prepare_out says what is expected


def _requested_device(device, out) -> tuple[str | None, int | None]:
    kind, dev_id = parse_device(device)
    okind, oid = _out_device(out)
    if okind is None:
        return kind, dev_id
    if kind is None:
        return okind, oid
    if kind != okind:
        what = "a cupy array (on the GPU)" if okind == "cuda" else "a numpy array (on the CPU)"
        raise ValueError(f"out= is {what} but device={device!r} was requested; pass an out= array on "
                         f"that device or drop device= (out= alone selects its device)")
    if dev_id is not None and oid is not None and dev_id != oid:
        raise ValueError(f"out= is on cuda:{oid} but device={device!r} was requested; pass device='cuda:{oid}' "
                         f"or an out= array on cuda:{dev_id}")
    return kind, oid if oid is not None else dev_id


def current_device(impl) -> int:
    f = getattr(impl, "current_device", None)
    if f is not None:
        return int(f())
    import cupy
    return int(cupy.cuda.runtime.getDevice())


def device_scope(impl, dev_id: int):
    """Context manager making ``dev_id`` the current CUDA device (allocations land there)."""
    f = getattr(impl, "device_scope", None)
    if f is not None:
        return f(dev_id)
    import cupy
    return cupy.cuda.Device(dev_id)


def array_module(impl):
    """The backend's array namespace (cupy for "cupy")."""
    xp = getattr(impl, "xp", None)
    if xp is None:
        import cupy as xp
    return xp


def _check_kind(name: str, rule: str, size: int, kind: str | None, device) -> BackendSpec:
    spec = _spec(name)
    if kind is not None and spec.device != kind:
        asked = f"device={device!r}" if device is not None else \
            ("a cupy out= array" if kind == "cuda" else "a numpy out= array")
        where = "on the CPU" if spec.device == "cpu" else "on a CUDA GPU"
        fix = {"cpu": "pass backend='numba' or 'numpy'", "cuda": "pass backend='cupy'"}[kind]
        raise ValueError(f"backend {name!r} ({_reason(name, rule, size)}) runs {where} but {asked} asks for "
                         f"{'the CPU' if kind == 'cpu' else 'a CUDA device'}; drop one of them or {fix}")
    return spec


def select(backend, size: int, device=None, out=None) -> tuple[str, object, int | None]:
    """(name, backend module, CUDA device id or None for the CPU) for a call; every
    check (device string, device/out/backend agreement, availability, device index)
    happens here, before anything is allocated or written."""
    if device is None and (out is None or type(out) is np.ndarray):
        kind, dev_id = (None if out is None else "cpu"), None          # the common CPU case, fast
    else:
        kind, dev_id = _requested_device(device, out)
    name, rule = _choose(backend, size, kind)
    spec = _check_kind(name, rule, size, kind, device)
    impl = get_backend(name)
    if spec.device == "cpu":
        if rule == "auto-small":
            _AUTO_NUMPY_ELEMENTS[0] += size
        return name, impl, None
    n = int(impl.device_count())
    if dev_id is None:
        dev_id = current_device(impl)
    if not 0 <= dev_id < n:
        raise ValueError(f"CUDA device cuda:{dev_id} does not exist: {n} device(s) visible "
                         f"(cuda:0 .. cuda:{n - 1}); pass one of those or device='cuda'")
    return name, impl, dev_id


def which(backend, size: int, device=None, out=None) -> tuple[str, str]:
    """(name, reason) as ``select`` would choose, without loading backends or probing devices."""
    kind, _ = _requested_device(device, out)
    name, rule = _choose(backend, size, kind)
    _check_kind(name, rule, size, kind, device)
    return name, _reason(name, rule, size)
