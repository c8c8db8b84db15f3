"""A small multilayer perceptron trained in place on one flat parameter buffer.

``MLP(sizes, ...)`` holds every weight and bias in one contiguous 1-D buffer
(``init_params(flat=True)``): ``net.params["layers.{i}.weight"]`` is a view of shape
``(sizes[i], sizes[i+1])`` (layout "io": ``z = x @ W + b``) and ``"layers.{i}.bias"`` one
of shape ``(sizes[i+1],)``. Layer ``i``'s weights come from ``key / "layers.{i}.weight"``,
so they equal ``init_params`` of the same spec bit for bit. Hidden layers use
``activation``; the last layer is linear (logits for softmax cross-entropy, predictions
for MSE).

Options that take parameters are given as ``name`` or ``(name, kwargs)`` - the same
convention everywhere:

* ``activation``: "linear", "relu", "leaky_relu" (``("leaky_relu", {"negative_slope": 0.2})``,
  default 0.01), "tanh", "sigmoid", "gelu" (exact, erf; ``("gelu", {"approximate": "tanh"})``
  or "gelu_tanh" for the tanh approximation), "selu".
* ``init`` / ``bias_init``: a registered initializer name (``symbreak_fast.init.INITIALIZERS``)
  or a callable with init_params' signature, optionally with kwargs:
  ``init=("constant", {"value": 0.5})``, ``init=("he_normal", {"distribution": "truncated_normal"})``.
  Weight initializers that take ``layout`` get ``layout="io"``.
* ``loss``: "softmax_cross_entropy" (integer labels ``y`` of shape (B,)) or "mse"
  (targets of shape (B, sizes[-1]); (B,) when sizes[-1] == 1). Both are batch means.
* ``optimizer``: "sgd", "momentum" (``{"momentum": 0.9}``), "adam"
  (``{"betas": (0.9, 0.999), "eps": 1e-8}``): the torch.optim updates, one pass over the flat buffer.

Backends: ``backend="numpy"`` runs the readable reference (``symbreak_fast._mlp_ref``),
"numba" the fused CPU ops (``symbreak_fast.backends.mlp_numba``), "cupy" (or
``device="cuda"``) the CUDA ops (``symbreak_fast.backends.mlp_cupy``); the default is
numba when it is installed, else numpy (``use_backend`` / ``SYMBREAK_BACKEND`` apply).

Fast path: when the ops module has ``FusedStep`` (and ``use_fused(sizes, batch)`` says it
applies), ``step``/``fit`` run the whole step through one prepared ``FusedStep(sizes, batch,
dtype, activation, alpha, loss)`` per batch size: forward + backward in one call, gradients into
the flat gradient buffer (layout [W0, b0, W1, b1, ...]), the SGD update inside the same call
(other optimizers: the optimizer op afterwards); ``net.use_fused_step = False`` forces the
op-by-op path. ``loss_and_grad`` and ``forward`` always go op by op.

Workspaces (activations, deltas) are allocated once per batch size and reused, so a
``step`` allocates nothing after the first call with that batch size (beyond what the
ops themselves do).

Safety: every input is checked before anything is written; a step computes the loss and
gradients, checks that they are finite, and only then updates, so a diverging run
raises ``DivergenceError`` with the parameters (and optimizer state) of the last good step.
On the fused path the value checks cost no extra pass: a NaN/inf in X always makes a gradient
entry non-finite, a bad label or a non-finite MSE target makes the loss NaN/inf, and the kernel
counts non-finite gradient entries while it sums them and updates only when there are none. So
``step`` checks shapes and dtypes up front (O(1)) and scans X and y only after a step failed, to
tell bad input (ValueError, nothing changed) from divergence (DivergenceError, nothing changed).
The op-by-op path scans X, y and the gradients (one read each) before the update.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import numbers
import sys
import time

import numpy as np

from . import _dispatch

ACTIVATIONS: dict[str, dict] = {
    "linear": {}, "relu": {}, "leaky_relu": {"negative_slope": 0.01}, "tanh": {}, "sigmoid": {},
    "gelu": {"approximate": "none"}, "gelu_tanh": {}, "selu": {},
}
LOSSES = ("softmax_cross_entropy", "mse")
OPTIMIZERS: dict[str, dict] = {
    "sgd": {},
    "momentum": {"momentum": 0.9},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8},
}
DTYPES = ("float32", "float64")
_OPS_MODULES = {"numpy": "symbreak_fast._mlp_ref", "numba": "symbreak_fast.backends.mlp_numba",
                "cupy": "symbreak_fast.backends.mlp_cupy"}
_MAX_WORKSPACES = 8


_CONSTANT_INITS = ("zeros", "ones", "constant")


def _is_constant_init(fn) -> bool:
    """``fn`` (the name or callable of a parsed init) fills every entry with one value: a constant
    initializer by registered name, or the registered function itself. Other callables: False."""
    if isinstance(fn, str):
        return fn in _CONSTANT_INITS
    from .init import INITIALIZERS
    return any(fn is INITIALIZERS.get(name) for name in _CONSTANT_INITS)


class DivergenceError(FloatingPointError):
    """The loss or a gradient became NaN/inf; the parameters are those before the bad step.

    Attributes: ``loss``, ``epoch`` and ``step`` (None outside ``fit``), ``history`` (fit's
    history up to the failure)."""

    def __init__(self, msg, loss=None, epoch=None, step=None, history=None):
        super().__init__(msg)
        self.loss, self.epoch, self.step, self.history = loss, epoch, step, history


# ---------------------------------------------------------------------------
# option parsing
# ---------------------------------------------------------------------------
def _name_kwargs(value, what):
    """'name' | callable | (name or callable, kwargs) -> (name or callable, dict)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not isinstance(value[1], dict):
            raise ValueError(f"{what} must be a name or a (name, kwargs dict) pair, got {value!r}")
        return value[0], dict(value[1])
    return value, {}


def _check_real(x, what, positive=False, lo=None, hi=None):
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(float(x)):
        raise ValueError(f"{what} must be a finite number, got {x!r}")
    x = float(x)
    if positive and not x > 0:
        raise ValueError(f"{what} must be > 0, got {x!r}")
    if lo is not None and not (lo <= x < hi):
        raise ValueError(f"{what} must be in [{lo}, {hi}), got {x!r}")
    return x


def _check_lr(lr):
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(float(lr)) \
            or not float(lr) > 0:
        raise ValueError(f"lr (learning rate) must be a positive finite number, got {lr!r}")
    return float(lr)


def _parse_activation(activation):
    name, kw = _name_kwargs(activation, "activation")
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {tuple(ACTIVATIONS)} "
                         "(parameters as (name, kwargs), e.g. ('leaky_relu', {'negative_slope': 0.2}))")
    allowed = ACTIVATIONS[name]
    bad = set(kw) - set(allowed)
    if bad:
        raise ValueError(f"activation {name!r} takes {sorted(allowed) or 'no parameters'}, got {sorted(bad)}")
    alpha = 0.0
    if name == "leaky_relu":
        alpha = _check_real(kw.get("negative_slope", 0.01), "leaky_relu negative_slope")
    if name == "gelu":
        approx = kw.get("approximate", "none")
        if approx not in ("none", "tanh"):
            raise ValueError(f"gelu approximate must be 'none' (exact, erf) or 'tanh', got {approx!r}")
        if approx == "tanh":
            name = "gelu_tanh"
    return name, alpha


def _parse_optimizer(optimizer):
    name, kw = _name_kwargs(optimizer, "optimizer")
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {tuple(OPTIMIZERS)} "
                         "(parameters as (name, kwargs), e.g. ('adam', {'betas': (0.9, 0.99)}))")
    bad = set(kw) - set(OPTIMIZERS[name])
    if bad:
        raise ValueError(f"optimizer {name!r} takes {sorted(OPTIMIZERS[name]) or 'no parameters'}, "
                         f"got {sorted(bad)}")
    hyper = {"momentum": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    if name == "momentum":
        hyper["momentum"] = _check_real(kw.get("momentum", 0.9), "momentum", lo=0.0, hi=1.0)
    if name == "adam":
        betas = kw.get("betas", (0.9, 0.999))
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"adam betas must be a pair (beta1, beta2), got {betas!r}")
        hyper["beta1"] = _check_real(betas[0], "adam beta1", lo=0.0, hi=1.0)
        hyper["beta2"] = _check_real(betas[1], "adam beta2", lo=0.0, hi=1.0)
        hyper["eps"] = _check_real(kw.get("eps", 1e-8), "adam eps", positive=True)
    return name, hyper


def _parse_init(init, what):
    fn, kw = _name_kwargs(init, what)
    from .init import (
        INITIALIZERS,  # symbreak_fast.init is imported by the package anyway
    )
    if callable(fn):
        target = fn
    elif isinstance(fn, str) and fn in INITIALIZERS:
        target = INITIALIZERS[fn]
    else:
        raise ValueError(f"unknown {what} {fn!r}; use a registered initializer name "
                         f"({', '.join(sorted(INITIALIZERS))}), a callable, or a (name, kwargs) pair such as "
                         "('constant', {'value': 0.5})")
    reserved = {"key", "out", "backend", "device", "index", "dtype"} & set(kw)
    if reserved:
        raise ValueError(f"{what} kwargs {sorted(reserved)} are set by the MLP (pass key=/dtype=/backend=/device= "
                         "to MLP itself)")
    return fn, kw, target


def _takes(fn, name):
    import inspect
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _parse_sizes(sizes):
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise ValueError(f"sizes must be a sequence of layer widths such as [784, 128, 10], got {sizes!r}") from None
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least an input and an output width, got {list(sizes)}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"every layer width must be a positive int, got sizes={list(sizes)}")
    return tuple(int(s) for s in sizes)


def _parse_dtype(dtype):
    try:
        dt = None if dtype is None else np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


def _ops_available(name):
    """True when the ops module for ``name`` can be imported (module and its array library found)."""
    if importlib.util.find_spec(_OPS_MODULES[name]) is None:
        return False
    dep = {"numba": "numba", "cupy": "cupy"}.get(name)
    return dep is None or importlib.util.find_spec(dep) is not None


def _select_ops(backend, device):
    """(backend name, ops module, device kind) with every check first."""
    kind, _ = _dispatch.parse_device(device)
    name, _reason = _dispatch.requested_backend(backend)
    if name is None:
        if kind == "cuda":
            name = "cupy"
        else:
            name = "numba" if _ops_available("numba") else "numpy"
    if name not in _OPS_MODULES:
        raise ValueError(f"unknown backend {name!r} for MLP; choose one of {tuple(_OPS_MODULES)}")
    on_gpu = name == "cupy"
    if kind == "cuda" and not on_gpu:
        raise ValueError(f"backend {name!r} runs on the CPU but device={device!r} asks for a CUDA device; "
                         "pass backend='cupy' or drop one of them")
    if kind == "cpu" and on_gpu:
        raise ValueError(f"backend 'cupy' runs on a CUDA GPU but device={device!r} asks for the CPU; "
                         "pass backend='numba' or 'numpy'")
    if name != "numpy":
        if name == "cupy":
            _dispatch.get_backend("cupy")   # RuntimeError with how to get a GPU/CuPy if unusable
        elif importlib.util.find_spec("numba") is None:
            raise RuntimeError("backend 'numba' is not available: numba is not installed; pip install numba "
                               "or pass backend='numpy'")
        if importlib.util.find_spec(_OPS_MODULES[name]) is None:
            raise RuntimeError(f"backend {name!r} has no MLP ops in this installation "
                               f"({_OPS_MODULES[name]} is missing); pass backend='numpy'")
    ops = importlib.import_module(_OPS_MODULES[name])
    return name, ops, ("cuda" if on_gpu else "cpu")


class _Workspace:
    """Activations and gradients of one batch size (allocated once, reused by every step)."""

    def __init__(self, xp, sizes, dtype, batch, acts):
        self.batch = batch
        self.z, self.a, self.d = [], [], []
        for n, act in zip(sizes[1:], acts):
            z = xp.empty((batch, n), dtype=dtype)
            self.z.append(z)
            self.a.append(z if act == "linear" else xp.empty((batch, n), dtype=dtype))
            self.d.append(xp.empty((batch, n), dtype=dtype))
        self.x = None          # input copy when X needs a dtype/layout change or a gather (fit)
        self.y = None


# ---------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------
class MLP:
    """Multilayer perceptron with parameters in one flat buffer; see the module docstring.

    ``MLP(sizes, activation="relu", init="he_normal", bias_init="zeros", key=0,
    dtype="float32", loss="softmax_cross_entropy", optimizer="sgd", lr=0.01,
    backend=None, device=None, exact_symmetry=None)``.

    ``exact_symmetry``: BLAS GEMMs (OpenBLAS, cuBLAS) can round identical columns
    differently, so neurons that start identical may drift apart in their last bits. With
    ``exact_symmetry=True`` every backend uses its own column-exact GEMM (the ops' ``matmul``:
    each output element a sum over k in order of rounded products, so identical weight columns
    give bitwise identical outputs): a Numba GEMM on the CPU (about 3x slower than OpenBLAS),
    the ``sbf_mlp_gemm_exact`` kernel of ``kernels/sbf_mlp.cu`` on the GPU (far slower than
    cuBLAS; meant for the small nets of symmetry experiments). The fused narrow-net step is
    column-exact either way. Default: True when ``init`` is a constant initializer, given by
    name ("zeros", "ones", "constant"), as ``(name, kwargs)`` / ``[name, kwargs]``, or as the
    function itself (``symbreak_fast.init.constant``); False otherwise, including for any other
    callable (the MLP cannot know what it fills in: pass ``exact_symmetry=True`` for a custom
    init whose columns start equal).
    """

    def __init__(self, sizes, activation="relu", init="he_normal", bias_init="zeros", key=0, dtype="float32",
                 loss="softmax_cross_entropy", optimizer="sgd", lr=0.01, backend=None, device=None,
                 exact_symmetry=None):
        from ._key import as_key
        from .init import init_params
        # every check before anything is allocated
        self.sizes = _parse_sizes(sizes)
        self.activation, self.alpha = _parse_activation(activation)
        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
        self.loss = loss
        self.optimizer, self._hyper = _parse_optimizer(optimizer)
        self.lr = _check_lr(lr)
        self.dtype = _parse_dtype(dtype)
        self.key = as_key(key)
        wfn, wkw, wtarget = _parse_init(init, "init")
        bfn, bkw, _ = _parse_init(bias_init, "bias_init")
        if _takes(wtarget, "layout") and "layout" not in wkw:
            wkw["layout"] = "io"
        self.backend, self.ops, self.device_kind = _select_ops(backend, device)
        self.xp = self.ops.xp
        n_layers = len(self.sizes) - 1
        self._acts = tuple([self.activation] * (n_layers - 1) + ["linear"])
        spec = {}
        for i in range(n_layers):
            spec[f"layers.{i}.weight"] = ((self.sizes[i], self.sizes[i + 1]), wfn, wkw)
            spec[f"layers.{i}.bias"] = ((self.sizes[i + 1],), bfn, bkw)
        self.spec = spec
        nbuf = {"sgd": 0, "momentum": 1, "adam": 2}[self.optimizer]
        if self.device_kind == "cpu":    # before init_params, whose hint (flat=False) does not apply here
            from .random import check_host_alloc
            n_params = sum(a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:]))
            check_host_alloc((2 + nbuf) * n_params, self.dtype,
                             f"MLP {list(self.sizes)} ({n_params:,} parameters; {2 + nbuf} flat buffers: "
                             f"parameters, gradients{f' and {nbuf} of {self.optimizer} state' if nbuf else ''})",
                             "use smaller layer widths in sizes= (an MLP holds every parameter, its gradient and "
                             "the optimizer state in memory; to only write huge initial weights use save_init)")
        rng_backend = "cupy" if self.device_kind == "cuda" else None
        self._flat, self._params = init_params(spec, self.key, dtype=self.dtype.name, backend=rng_backend,
                                               device=device, flat=True)
        xp = self.xp
        self._gflat = xp.zeros_like(self._flat)
        self._grads = {}
        off = 0
        for name, v in self._params.items():
            self._grads[name] = self._gflat[off:off + v.size].reshape(v.shape)
            off += v.size
        self._W = [self._params[f"layers.{i}.weight"] for i in range(n_layers)]
        self._b = [self._params[f"layers.{i}.bias"] for i in range(n_layers)]
        self._gW = [self._grads[f"layers.{i}.weight"] for i in range(n_layers)]
        self._gb = [self._grads[f"layers.{i}.bias"] for i in range(n_layers)]
        self._opt_bufs = tuple(xp.zeros_like(self._flat) for _ in range(nbuf))
        self._t = 0                      # optimizer steps taken (Adam's t)
        self._workspaces: dict[int, _Workspace] = {}
        self.history: dict[str, list] = {"loss": [], "seconds": []}
        self._epochs_done = 0
        # optional fast path of the ops module: forward + backward (+ SGD) of a whole (narrow) net
        # in one prepared call per batch size (see _step_fused)
        self._fused_cls = getattr(self.ops, "FusedStep", None)
        self._use_fused = getattr(self.ops, "use_fused", None)
        self._plans: dict = {}
        self.use_fused_step = self._fused_cls is not None
        # BLAS/cuBLAS GEMMs round identical columns differently (their edge kernels), which breaks
        # the exact symmetry of a constant init; the ops' own ``matmul`` sums every element the
        # same way (bitwise-identical neurons stay identical) but is slower than BLAS.
        # Default: exact for constant weight inits, BLAS otherwise.
        if exact_symmetry is None:
            exact_symmetry = _is_constant_init(wfn)
        self.exact_symmetry = bool(exact_symmetry)

    @property
    def exact_symmetry(self) -> bool:
        """True: GEMMs that keep identical neurons bitwise identical (the ops' ``matmul``); False:
        the fastest GEMM of the backend (``blas_matmul`` when it has one). Settable."""
        return self._exact_symmetry

    @exact_symmetry.setter
    def exact_symmetry(self, value) -> None:
        self._exact_symmetry = bool(value)
        self._plans = {}                 # the fused-or-not choice depends on the GEMM it competes with
        blas = getattr(self.ops, "blas_matmul", None)
        self._matmul = self.ops.matmul if value or blas is None else blas
        # around BLAS GEMMs the ops run in the calling thread where the ops module says that is
        # faster (mlp_numba.serial_ops: OpenBLAS's and Numba's spinning thread pools starve each other)
        serial = getattr(self.ops, "serial_ops", None)
        self._op_section = serial if serial is not None and self._matmul is blas else contextlib.nullcontext

    # -- views ------------------------------------------------------------
    @property
    def params(self) -> dict:
        """{"layers.{i}.weight": (in, out) view, "layers.{i}.bias": (out,) view} of the flat buffer."""
        return self._params

    @property
    def flat_params(self):
        """The one contiguous 1-D buffer every parameter view points into."""
        return self._flat

    @property
    def steps(self) -> int:
        """Optimizer steps taken so far."""
        return self._t

    def reset_optimizer(self):
        """Zero the optimizer state (momentum / Adam moments) and the step count, e.g. after
        overwriting ``params`` in place with a new initialization."""
        for buf in self._opt_bufs:
            buf[...] = 0
        self._t = 0

    def __repr__(self):
        return (f"MLP(sizes={list(self.sizes)}, activation={self.activation!r}, loss={self.loss!r}, "
                f"optimizer={self.optimizer!r}, lr={self.lr}, dtype={self.dtype.name!r}, "
                f"backend={self.backend!r}, params={self._flat.size})")

    # -- input checks -----------------------------------------------------
    # _check_X / _check_y: shapes, dtypes, layout (O(1), plus a conversion copy when needed);
    # with scan=True also the values (_scan_X / _scan_y: one read each).
    def _all_finite(self, a) -> bool:
        f = getattr(self.ops, "all_finite", None)
        if f is not None:
            return f(a)
        with np.errstate(over="ignore", invalid="ignore"):
            s = a.sum()                  # one pass, no temporary; inf/NaN in a -> non-finite sum
        if math.isfinite(float(s)):
            return True
        return bool(self.xp.isfinite(a).all())     # the sum may overflow with finite entries

    def _as_array(self, a, what):
        if self.device_kind == "cpu" and _dispatch.is_device_array(a):
            raise TypeError(f"{what} is a cupy array but this net lives on the CPU; pass {what}.get() "
                            "or build the net with device='cuda'")
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            a = np.asarray(a)
        return a

    def _check_X(self, X, what="X", scan=True):
        if type(X) is not np.ndarray:
            X = self._as_array(X, what)
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"{what} must have shape (batch, {self.sizes[0]}) for sizes={list(self.sizes)}, "
                             f"got {tuple(X.shape)}")
        if X.shape[0] < 1:
            raise ValueError(f"{what} is empty (shape {tuple(X.shape)}); pass at least one row")
        if X.dtype != self.dtype or self.device_kind == "cuda" or not X.flags.c_contiguous:
            if X.dtype.kind not in "fiub":
                raise ValueError(f"{what} must hold real numbers, got dtype {X.dtype}")
            X = self.xp.ascontiguousarray(self.xp.asarray(X), dtype=self.dtype)
        if scan:
            self._scan_X(X, what)
        return X

    def _scan_X(self, X, what="X"):
        if not self._all_finite(X):
            xp = self.xp
            raise ValueError(f"{what} contains NaN or inf (first bad row "
                             f"{int(xp.argmax(~xp.isfinite(X).all(axis=1)))}); clean the data first")

    def _check_y(self, y, batch, scan=True):
        xp = self.xp
        if type(y) is not np.ndarray:
            y = self._as_array(y, "y")
        n_out = self.sizes[-1]
        if self.loss == "softmax_cross_entropy":
            if y.ndim != 1 or y.shape[0] != batch:
                raise ValueError(f"softmax_cross_entropy takes integer class labels y of shape ({batch},) "
                                 f"(one per row of X), got shape {tuple(y.shape)}")
            if y.dtype.kind not in "iu":
                raise ValueError(f"softmax_cross_entropy takes integer class labels, got dtype {y.dtype}; "
                                 "use y.astype(int) for whole-number floats (or loss='mse' for targets)")
            if scan:
                self._scan_labels(y)
            if y.dtype != np.int64 or self.device_kind == "cuda" or not y.flags.c_contiguous:
                y = xp.ascontiguousarray(xp.asarray(y), dtype=np.int64)
            return y
        if y.ndim == 1 and n_out == 1:
            y = y.reshape(-1, 1)
        if y.ndim != 2 or y.shape != (batch, n_out):
            raise ValueError(f"mse takes targets y of shape ({batch}, {n_out}) (one row per row of X"
                             f"{'; (batch,) also works for one output' if n_out == 1 else ''}), "
                             f"got shape {tuple(y.shape)}")
        if y.dtype != self.dtype or self.device_kind == "cuda" or not y.flags.c_contiguous:
            if y.dtype.kind not in "fiub":
                raise ValueError(f"mse targets must be real numbers, got dtype {y.dtype}")
            y = xp.ascontiguousarray(xp.asarray(y), dtype=self.dtype)
        if scan:
            self._scan_y(y)
        return y

    def _scan_labels(self, y):
        n_out = self.sizes[-1]
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= n_out:
            bad = lo if lo < 0 else hi
            raise ValueError(f"label {bad} is out of range: labels must be in [0, {n_out}) "
                             f"(sizes[-1] = {n_out} classes)")

    def _scan_y(self, y):
        if self.loss == "softmax_cross_entropy":
            self._scan_labels(y)
        elif not self._all_finite(y):
            raise ValueError("y (mse targets) contains NaN or inf; clean the data first")

    def _check_Xy(self, X, y, scan=True):
        X = self._check_X(X, scan=scan)
        return X, self._check_y(y, X.shape[0], scan=scan)

    # -- workspaces -------------------------------------------------------
    def _workspace(self, batch) -> _Workspace:
        ws = self._workspaces.get(batch)
        if ws is None:
            if len(self._workspaces) >= _MAX_WORKSPACES:
                self._workspaces.pop(next(iter(self._workspaces)))
            ws = _Workspace(self.xp, self.sizes, self.dtype, batch, self._acts)
            self._workspaces[batch] = ws
        return ws

    # -- passes (inputs already checked) ----------------------------------
    def _forward(self, X, ws):
        ops = self.ops
        h = X
        for i, act in enumerate(self._acts):
            self._matmul(h, self._W[i], ws.z[i])
            ops.bias_act_forward(ws.z[i], self._b[i], act, self.alpha, ws.a[i])
            h = ws.a[i]
        return h

    def _loss_and_grad(self, X, y, ws) -> float:
        """Loss into a float, gradients into the flat gradient buffer."""
        ops = self.ops
        out = self._forward(X, ws)
        last = len(self._acts) - 1
        if self.loss == "softmax_cross_entropy":
            loss = ops.softmax_xent(out, y, ws.d[last])
        else:
            loss = ops.mse(out, y, ws.d[last])
        for i in range(last, -1, -1):
            ops.act_backward_bias_grad(ws.d[i], ws.z[i], ws.a[i], self._acts[i], self.alpha, self._gb[i])
            self._matmul((X if i == 0 else ws.a[i - 1]).T, ws.d[i], self._gW[i])
            if i > 0:
                self._matmul(ws.d[i], self._W[i].T, ws.d[i - 1])
        return float(loss)

    def _update(self, lr):
        ops, h = self.ops, self._hyper
        if self.optimizer == "sgd":
            ops.sgd(self._flat, self._gflat, lr)
        elif self.optimizer == "momentum":
            ops.momentum(self._flat, self._gflat, self._opt_bufs[0], lr, h["momentum"])
        else:
            ops.adam(self._flat, self._gflat, self._opt_bufs[0], self._opt_bufs[1], lr, h["beta1"], h["beta2"],
                     h["eps"], self._t + 1)
        self._t += 1

    def _plan(self, batch):
        """The ops' prepared fused step for this batch size, or None (op-by-op path)."""
        if not self.use_fused_step or self._fused_cls is None:
            return None
        plan = self._plans.get(batch, False)
        if plan is False:
            plan = None
            if self._use_fused is None or self._use_fused(self.sizes, batch, exact=self._exact_symmetry):
                plan = self._fused_cls(self.sizes, batch, self.dtype, self.activation, self.alpha, self.loss)
            if len(self._plans) >= _MAX_WORKSPACES:
                self._plans.pop(next(iter(self._plans)))
            self._plans[batch] = plan
        return plan

    def _step_checked(self, X, y, lr) -> float:
        """One optimizer step on inputs whose shapes and dtypes are checked (values checked too
        when the op-by-op path runs: the fused path checks them itself). Raises ValueError for bad
        values or DivergenceError for a non-finite loss/gradient, nothing updated either way."""
        plan = self._plan(X.shape[0])
        if plan is not None:
            return self._step_fused(plan, X, y, lr)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), self._op_section():
            loss = self._loss_and_grad(X, y, self._workspace(X.shape[0]))
            if not (math.isfinite(loss) and self._all_finite(self._gflat)):
                raise self._divergence(loss, lr)         # reported here: nothing updated yet
            self._update(lr)
        return loss

    def _step_fused(self, plan, X, y, lr) -> float:
        sgd = self.optimizer == "sgd"
        # plan(X, y, params, grads, lr) -> (loss, non-finite gradient entries); with lr (SGD) it
        # updates in the same call, only when both are clean
        loss, n_bad = plan(X, y, self._flat, self._gflat, lr if sgd else None)
        if n_bad or not math.isfinite(loss):
            # nothing was updated; bad input (ValueError) or divergence?
            self._scan_X(X)
            self._scan_y(y)
            raise self._divergence(loss, lr)
        if sgd:
            self._t += 1
        else:
            self._update(lr)
        return loss

    def _divergence(self, loss, lr, epoch=None, step=None, history=None, n_steps=None):
        where = "" if epoch is None else f" at epoch {epoch}, step {step} (0-based; {n_steps} steps per epoch)"
        what = f"the loss is {loss}" if not math.isfinite(loss) else "a gradient is NaN or inf"
        return DivergenceError(
            f"training diverged{where}: {what} (after {self._t} good optimizer steps); the parameters were "
            f"left as they were before this step. Try a smaller learning rate (lr={lr:g} now, e.g. "
            f"lr={lr / 10:g}), another init or gradient-friendlier inputs (scaled features).",
            loss=loss, epoch=epoch, step=step, history=history)

    # -- public API -------------------------------------------------------
    def forward(self, X):
        """The last layer's output (logits for softmax cross-entropy), a new (B, sizes[-1]) array."""
        with self._op_section():
            X = self._check_X(X)
            return self._forward(X, self._workspace(X.shape[0])).copy()

    def predict(self, X):
        """Class indices (argmax of the logits) for softmax cross-entropy; the outputs for MSE."""
        out = self.forward(X)
        if self.loss == "softmax_cross_entropy":
            return out.argmax(axis=1)
        return out[:, 0] if self.sizes[-1] == 1 else out

    def loss_and_grad(self, X, y):
        """(loss, grads): the batch-mean loss and ``{name: gradient}`` keyed like ``params``
        (views of a new flat gradient buffer; the parameters are not changed)."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), self._op_section():
            X, y = self._check_Xy(X, y)
            loss = self._loss_and_grad(X, y, self._workspace(X.shape[0]))   # a NaN/inf loss is returned as is
        g = self._gflat.copy()
        grads, off = {}, 0
        for name, v in self._params.items():
            grads[name] = g[off:off + v.size].reshape(v.shape)
            off += v.size
        return loss, grads

    def step(self, X, y, lr=None) -> float:
        """One optimizer step on the batch (X, y); returns the loss before the update.

        Raises DivergenceError, leaving parameters and optimizer state unchanged, when the
        loss or a gradient is not finite."""
        lr = self.lr if lr is None else _check_lr(lr)
        X = self._check_X(X, scan=False)
        B = X.shape[0]
        if self._plan(B) is not None:                # the fused step checks the values itself
            y = self._check_y(y, B, scan=False)
        else:
            with self._op_section():
                self._scan_X(X)
                y = self._check_y(y, B)
        return self._step_checked(X, y, lr)

    def fit(self, X, y, epochs=1, batch_size=32, lr=None, progress=True, shuffle=True) -> dict:
        """Train for ``epochs`` passes over (X, y) in mini-batches of ``batch_size``.

        ``shuffle``: a new order every epoch from ``key / "fit" / epoch`` (reproducible;
        epochs are counted across fit calls). ``progress``: a tqdm bar when stderr is a
        terminal. Returns the history of this call ``{"loss": [mean loss per epoch],
        "seconds": [...]}``; ``net.history`` accumulates across calls. On divergence raises
        DivergenceError naming the epoch and step, parameters as before the bad step."""
        lr = self.lr if lr is None else _check_lr(lr)
        for v, what in ((epochs, "epochs"), (batch_size, "batch_size")):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{what} must be a positive int, got {v!r}")
        for v, what in ((shuffle, "shuffle"), (progress, "progress")):
            if not isinstance(v, (bool, np.bool_)):      # shuffle="no" is truthy: it would shuffle
                raise TypeError(f"{what} must be True or False, got {v!r}")
        with self._op_section():
            X, y = self._check_Xy(X, y)
        xp = self.xp
        n = X.shape[0]
        bs = min(int(batch_size), n)
        n_steps = -(-n // bs)
        hist = {"loss": [], "seconds": []}
        bar = _progress_bar(progress, epochs * n_steps)
        try:
            for e in range(int(epochs)):
                t0 = time.perf_counter()
                epoch = self._epochs_done
                if shuffle:
                    from .random import random_bits
                    order = np.argsort(random_bits((n,), self.key / "fit" / str(epoch)), kind="stable")
                    order = xp.asarray(order)
                total = 0.0
                for s in range(n_steps):
                    lo, hi = s * bs, min(n, (s + 1) * bs)
                    ws = self._workspace(hi - lo)
                    if shuffle:
                        idx = order[lo:hi]
                        if ws.x is None:
                            ws.x = xp.empty((hi - lo, self.sizes[0]), dtype=self.dtype)
                            ws.y = xp.empty((hi - lo,) + tuple(y.shape[1:]), dtype=y.dtype)
                        xp.take(X, idx, axis=0, out=ws.x)
                        xp.take(y, idx, axis=0, out=ws.y)
                        xb, yb = ws.x, ws.y
                    else:
                        xb, yb = X[lo:hi], y[lo:hi]
                    try:
                        loss = self._step_checked(xb, yb, lr)
                    except DivergenceError as err:
                        raise self._divergence(err.loss, lr, epoch=epoch, step=s, history=hist,
                                               n_steps=n_steps) from None
                    total += loss * (hi - lo)
                    if bar is not None:
                        bar.update(1)
                self._epochs_done += 1
                hist["loss"].append(total / n)
                hist["seconds"].append(time.perf_counter() - t0)
                self.history["loss"].append(hist["loss"][-1])
                self.history["seconds"].append(hist["seconds"][-1])
                if bar is not None:
                    bar.set_postfix(epoch=epoch, loss=f"{hist['loss'][-1]:.4g}")
        finally:
            if bar is not None:
                bar.close()
        return hist


def _progress_bar(enabled, total):
    if not enabled or not getattr(sys.stderr, "isatty", lambda: False)():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="step", desc="fit", leave=True)
