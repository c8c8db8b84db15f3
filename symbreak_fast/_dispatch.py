"""Backend registry and the choice rule. Backends never change results.

Order of precedence: explicit ``backend=`` > ``SYMBREAK_BACKEND`` environment
variable > auto. Auto: Numba when this process has already loaded it (a warm call
costs ~6 us at any size, far below the reference's ~300 us for a tiny tensor), or when
it is installed and the request has at least ``NUMBA_MIN_ELEMENTS`` elements; else
the NumPy reference (see the constant).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from typing import Callable

# Below 2**16 elements the NumPy reference takes < ~15 ms (0.2 us/element), less than the
# one-time cost of importing Numba and loading the cached kernels (~0.5-1 s per process);
# above it a warm Numba call is 3x (2**16) to 40x (2**25) faster. Measured with
# benchmarks/test_dispatch.py; warm per-call overhead is ~6 us.
NUMBA_MIN_ELEMENTS = 1 << 16


@dataclass(frozen=True)
class BackendSpec:
    name: str
    module: str                      # imported only when the backend is first used
    probe: Callable[[], tuple[bool, str]]
    install_hint: str


_REGISTRY: dict[str, BackendSpec] = {}
_LOADED: dict[str, object] = {}


def register_backend(spec: BackendSpec) -> None:
    if spec.name in _REGISTRY:
        raise ValueError(f"backend {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec


def _probe_numba() -> tuple[bool, str]:
    if importlib.util.find_spec("numba") is None:
        return False, "numba is not installed"
    return True, "numba is installed"


register_backend(BackendSpec("numpy", "symbreak_fast.backends.numpy_ref", lambda: (True, "always available"),
                             ""))
register_backend(BackendSpec("numba", "symbreak_fast.backends.numba_cpu", _probe_numba,
                             'pip install "symbreak-fast" (numba is a core dependency) or pip install numba'))


def available_backends() -> tuple[str, ...]:
    """Names of the backends usable in this process, e.g. ("numpy", "numba")."""
    return tuple(n for n, s in _REGISTRY.items() if s.probe()[0])


def get_backend(name: str):
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; choose one of {tuple(_REGISTRY)} "
                         f"(available here: {available_backends()})")
    if name not in _LOADED:
        spec = _REGISTRY[name]
        ok, why = spec.probe()
        if not ok:
            raise RuntimeError(f"backend {name!r} is not available: {why}; {spec.install_hint}")
        _LOADED[name] = importlib.import_module(spec.module)
    return _LOADED[name]


def choose_backend(backend, size: int) -> tuple[str, str]:
    """(backend name, reason) for a request of ``size`` elements."""
    if backend is not None:
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a str such as 'numba' or 'numpy', got {backend!r}")
        return backend, "explicit backend="
    env = os.environ.get("SYMBREAK_BACKEND")
    if env:
        return env, "SYMBREAK_BACKEND environment variable"
    if "numba" in _LOADED:
        return "numba", "auto: the numba backend is already loaded in this process (no start-up left to pay)"
    if size >= NUMBA_MIN_ELEMENTS and _REGISTRY["numba"].probe()[0]:
        return "numba", f"auto: {size} >= {NUMBA_MIN_ELEMENTS} elements and numba is installed"
    if size < NUMBA_MIN_ELEMENTS:
        return "numpy", f"auto: {size} < {NUMBA_MIN_ELEMENTS} elements"
    return "numpy", "auto: numba is not installed"
