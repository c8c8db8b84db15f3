"""Why initialization matters, measured: symmetry, signal propagation, trainability.

Metrics
    ``distinct_neurons(W, tol=1e-5, bias=None)``  how many different output units a layer has
    ``symmetry_report(net)``                      distinct neurons per layer of an ``MLP``
    ``signal_propagation(net, X, y=None)``        per-layer activation mean/std, saturation, gradient norms

Synthetic data (generated from symbreak_fast keys, nothing downloaded)
    ``two_spirals``, ``gaussian_blobs``, ``teacher_task``  -> ``(X float, y int64)``

Experiments (return a ``Result``: tidy ``rows`` (list of dicts), ``curves``, ``config``)
    ``symmetry_experiment``  zeros / constant / random inits trained on the same net and data
    ``depth_signal``         activation std and gradient norm by layer at init for a deep net
    ``depth_training``       short training runs of the deep nets: which schemes train

Weight schemes are strings: ``"zeros"``, ``"constant(0.5)"``, ``"normal(1)"`` (N(0, 1^2)),
``"normal(0.01)"``, ``"xavier"`` (xavier_normal), ``"he"`` (he_normal), or any initializer name
that ``init_params`` knows (e.g. ``"lecun_normal"``, ``"orthogonal"``). Biases are always zero.
Everything is a pure function of the keys: the same arguments give the same numbers.
"""
from __future__ import annotations

import inspect
import math
import numbers
import os
import re
import time
from dataclasses import dataclass, field

import numpy as np

from ._key import as_key
from ._request import is_bfloat16, normalize_dtype
from .mlp import DivergenceError
from .random import normal as _normal
from .random import uniform as _uniform

__all__ = ["distinct_neurons", "symmetry_report", "signal_propagation", "two_spirals", "gaussian_blobs",
           "teacher_task", "make_data", "init_weights", "Result", "format_table", "symmetry_experiment",
           "depth_signal", "depth_training", "SCHEMES", "demo_settings", "pivot", "write_plots",
           "symmetry_conclusions", "depth_signal_conclusions", "depth_training_conclusions", "UNEXPECTED",
           "scheme_variance",
           "TRAINING_EXPECTED"]


# ---------------------------------------------------------------------------
# host/device helpers
# ---------------------------------------------------------------------------
def _host(a) -> np.ndarray:
    """A NumPy copy of a NumPy or CuPy array."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "get"):
        return a.get()
    return np.asarray(a)


def _xp_of(a):
    if isinstance(a, np.ndarray):
        return np
    import cupy
    return cupy.get_array_module(a)


# ---------------------------------------------------------------------------
# argument checks (every public function checks its arguments before it computes or writes)
# ---------------------------------------------------------------------------
def _int_arg(v, what: str, lo: int, exc=ValueError) -> int:
    """``v`` as an int >= ``lo``; ``exc`` (ValueError, or TypeError for the data sizes, as shapes
    do) when it is not an int, ValueError when it is too small."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise exc(f"{what} must be an int >= {lo}, got {v!r}")
    if v < lo:
        raise ValueError(f"{what} must be an int >= {lo}, got {v!r}")
    return int(v)


def _real_arg(v, what: str, lo=None) -> float:
    """``v`` as a finite float (>= ``lo`` when given)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {type(v).__name__} {v!r}")
    bound = "" if lo is None else f" >= {lo}"
    if not math.isfinite(float(v)):
        raise ValueError(f"{what} must be a finite number{bound}, not NaN or inf, got {v!r}")
    if lo is not None and not v >= lo:
        raise ValueError(f"{what} must be >= {lo}, got {v!r}")
    return float(v)


def _bool_arg(v, what: str) -> bool:
    if not isinstance(v, (bool, np.bool_)):      # a str such as "no" is truthy
        raise TypeError(f"{what} must be True or False, got {v!r}")
    return bool(v)


def _check_tol(tol) -> float:
    if not (isinstance(tol, (int, float, np.floating)) and not isinstance(tol, bool) and tol >= 0
            and math.isfinite(tol)):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    return tol


def _data_dtype(dtype) -> np.dtype:
    try:
        return normalize_dtype(dtype)        # float32 / float64 / float16 / bfloat16, else a TypeError
    except TypeError as e:
        raise TypeError(f"dtype of the features: {e}") from None


def _check_net(net, what: str, methods=()) -> None:
    """``net`` looks like an ``MLP``: ``params`` with "layers.{i}.weight" / ".bias" (checked by
    _n_layers) and the methods ``what`` calls."""
    params = getattr(net, "params", None)
    if not (hasattr(params, "__contains__") and hasattr(params, "__getitem__")) \
            or not all(callable(getattr(net, m, None)) for m in methods):
        need = "".join(f", .{m}()" for m in methods)
        raise TypeError(f"{what} needs a symbreak_fast.MLP (or a net with .params {{'layers.0.weight': ..., "
                        f"'layers.0.bias': ...}}{need}), got {type(net).__name__}")
    _n_layers(net)


def _check_real_array(a, what: str) -> None:
    if a.dtype.kind not in "biuf" and not is_bfloat16(a.dtype):
        raise ValueError(f"{what} must hold real numbers (a float or int array), got dtype {a.dtype}")


def _check_rows(rows, what: str) -> None:
    if not isinstance(rows, (list, tuple)):
        raise TypeError(f"{what}: rows must be a list of dicts (one per table row), got {type(rows).__name__}")
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise TypeError(f"{what}: rows must be a list of dicts (one per table row); row {i} is "
                            f"{type(r).__name__} {r!r:.60}")


def _seq_arg(v, what: str, example: str) -> tuple:
    """A list/tuple argument (a str would be iterated by character)."""
    if not isinstance(v, (list, tuple)):
        raise TypeError(f"{what} must be a list or tuple such as {example}, got {type(v).__name__} {v!r:.60}")
    return tuple(v)


def _check_activations(acts) -> None:
    from .mlp import _parse_activation
    for a in acts:
        _parse_activation(a)


def _check_schemes(schemes, sizes, dtype) -> None:
    """Every scheme known and its arguments valid for the first weight matrix (an empty box:
    nothing computed), so a bad scheme fails before any net trains."""
    dt = np.dtype(dtype)
    shape = (sizes[0], sizes[1])
    for s in schemes:
        fn = _scheme_fn(s)
        fn(shape, as_key(0), np.empty((0, shape[1]), dt), index=(slice(0, 0),))


# ---------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------
def distinct_neurons(W, tol: float = 1e-5, bias=None) -> int:
    """The number of different neurons (output units) of the io-layout weight ``W`` (fan_in, fan_out).

    Neuron j is column ``W[:, j]`` (with ``bias[j]`` appended when ``bias`` is given). Two neurons are
    the same when their columns differ by at most ``tol * s`` in every entry, ``s`` being the largest
    ``|entry|`` of the matrix (so ``tol`` is relative and the count is scale-free; ``tol=0`` asks for
    bit-equal columns). Columns are grouped greedily in order: each joins the first earlier
    representative it matches, else becomes a new one. A zero-width layer has 0 neurons.
    """
    W = _host(W)
    if W.ndim != 2:
        raise ValueError(f"W must be a 2-D (fan_in, fan_out) weight matrix, got shape {W.shape}")
    _check_real_array(W, "W")
    _check_tol(tol)
    cols = np.asarray(W, np.float64).T                          # (fan_out, fan_in): one row per neuron
    if bias is not None:
        bh = _host(bias)
        _check_real_array(bh, "bias")
        b = np.asarray(bh, np.float64).reshape(-1)
        if b.shape[0] != cols.shape[0]:
            raise ValueError(f"bias has {b.shape[0]} entries, W has {cols.shape[0]} columns")
        cols = np.concatenate([cols, b[:, None]], axis=1)
    if cols.shape[0] == 0:
        return 0
    if not np.isfinite(cols).all():
        raise ValueError("W (or bias) holds NaN or inf: the net diverged, neurons cannot be compared")
    atol = tol * float(np.abs(cols).max()) if cols.size else 0.0
    reps = np.empty((0, cols.shape[1]))
    for c in cols:
        if reps.shape[0] and (np.abs(reps - c).max(axis=1) <= atol).any():
            continue
        reps = np.vstack([reps, c])
    return int(reps.shape[0])


def _n_layers(net) -> int:
    n = 0
    while f"layers.{n}.weight" in net.params:
        n += 1
    if n == 0:
        raise ValueError("net.params has no 'layers.0.weight': expected a symbreak_fast.mlp.MLP")
    return n


def _activation(net) -> str:
    return getattr(net, "activation", "relu")


def symmetry_report(net, tol: float = 1e-5) -> list[dict]:
    """One dict per layer of ``net``: ``layer``, ``kind`` ("hidden" or "output"), ``fan_in``,
    ``width``, ``distinct`` (distinct neurons, weights and bias together, see ``distinct_neurons``),
    ``weight_std``. A hidden layer whose ``distinct`` is 1 computes one function ``width`` times."""
    _check_net(net, "symmetry_report")
    _check_tol(tol)
    rows = []
    L = _n_layers(net)
    for i in range(L):
        W = _host(net.params[f"layers.{i}.weight"])
        b = _host(net.params[f"layers.{i}.bias"])
        rows.append(dict(layer=i + 1, kind="output" if i == L - 1 else "hidden", fan_in=W.shape[0],
                         width=W.shape[1], distinct=distinct_neurons(W, tol, bias=b),
                         weight_std=float(np.std(W, dtype=np.float64))))
    return rows


def _act_np(name, z, alpha):
    from ._mlp_ref import activation
    return activation(z, name, alpha)


def _saturation(name, a) -> float | None:
    """Fraction of hidden units in the flat part of a bounded activation (tanh |a| > 0.99,
    sigmoid a < 0.01 or > 0.99); None for unbounded ones."""
    if name == "tanh":
        return float(np.mean(np.abs(a) > 0.99))
    if name == "sigmoid":
        return float(np.mean((a < 0.01) | (a > 0.99)))
    return None


def _labels_for(net, B):
    """Deterministic targets for gradient statistics when none are given."""
    n_out = _host(net.params[f"layers.{_n_layers(net) - 1}.weight"]).shape[1]
    if getattr(net, "loss", "softmax_cross_entropy") == "mse":
        return np.zeros((B, n_out), np.dtype(str(_host(net.params["layers.0.weight"]).dtype)))
    return np.arange(B, dtype=np.int64) % n_out


def signal_propagation(net, X, y=None) -> list[dict]:
    """Forward and backward signal of ``net`` on the batch ``X``, one dict per layer (1-based):

    ``layer``, ``kind``, ``pre_std`` (std of z = x W + b), ``act_mean`` / ``act_std`` (of the layer's
    output: f(z) for hidden layers, the logits for the last), ``saturation`` (tanh/sigmoid hidden
    layers: fraction of units with |a| > 0.99 / a outside [0.01, 0.99]; None otherwise), ``zero_frac``
    (fraction of outputs exactly 0: dead ReLUs), ``grad_norm`` (Frobenius norm of dLoss/dW of that
    layer, from ``net.loss_and_grad(X, y)``) and ``grad_ratio`` (grad_norm / ||W||).
    ``y`` defaults to class ``i % n_out`` for row i (zeros for an MSE net). Statistics are
    computed in float64 on the host from the net's own parameters; non-finite values show as nan/inf.
    """
    _check_net(net, "signal_propagation", ("loss_and_grad",))
    L = _n_layers(net)
    act = _activation(net)
    alpha = getattr(net, "alpha", 0.01)
    Xh = _host(X)
    W0 = _host(net.params["layers.0.weight"])
    if Xh.ndim != 2 or Xh.shape[1] != W0.shape[0]:
        raise ValueError(f"X must be (batch, {W0.shape[0]}), got shape {Xh.shape}")
    a = Xh.astype(W0.dtype, copy=False)
    rows = []
    with np.errstate(all="ignore"):
        for i in range(L):
            W = _host(net.params[f"layers.{i}.weight"])
            b = _host(net.params[f"layers.{i}.bias"])
            z = a @ W + b
            hidden = i < L - 1
            a = _act_np(act, z, alpha) if hidden else z
            a64 = a.astype(np.float64)
            rows.append(dict(layer=i + 1, kind="hidden" if hidden else "output",
                             pre_std=float(np.std(z.astype(np.float64))), act_mean=float(a64.mean()),
                             act_std=float(a64.std()), saturation=_saturation(act, a) if hidden else None,
                             zero_frac=float(np.mean(a == 0)), w_norm=float(np.linalg.norm(W.astype(np.float64)))))
    if y is None:
        y = _labels_for(net, Xh.shape[0])
    Xd, yd = _to_device(net, X, y)
    with np.errstate(all="ignore"):
        try:        # MLP.loss_and_grad returns a non-finite loss as is; other nets may raise instead
            _, grads = net.loss_and_grad(Xd, yd)
            norms = [float(np.linalg.norm(_host(grads[f"layers.{i}.weight"]).astype(np.float64))) for i in range(L)]
        except DivergenceError:
            norms = [float("nan")] * L
    for r, g in zip(rows, norms):
        r["grad_norm"] = g
        r["grad_ratio"] = g / r["w_norm"] if r["w_norm"] > 0 else float("nan")
    return rows


# ---------------------------------------------------------------------------
# synthetic data
# ---------------------------------------------------------------------------
def two_spirals(n: int, key, *, noise: float = 0.08, turns: float = 1.25, dtype="float32"):
    """Two interleaved spirals in 2-D, ``n`` points, classes alternate (y = i % 2).

    Point i has t = u_i in [0, 1) (``key / "t"``), radius t, angle 2 pi turns t + pi y, plus
    N(0, noise^2) jitter (``key / "noise"``); X is scaled to unit std per coordinate."""
    n = _int_arg(n, "n", 0, TypeError)
    key = as_key(key)
    noise = _real_arg(noise, "noise", 0)
    turns = _real_arg(turns, "turns")
    dtype = _data_dtype(dtype)
    y = np.arange(n, dtype=np.int64) % 2
    t = np.sqrt(_uniform((n,), key / "t", 0.0, 1.0, dtype="float64", backend="numpy")) * 0.95 + 0.05
    ang = 2 * np.pi * turns * t + np.pi * y
    X = np.stack([t * np.cos(ang), t * np.sin(ang)], axis=1)
    X += _normal((n, 2), key / "noise", 0.0, noise, dtype="float64", backend="numpy")
    X /= X.std(axis=0)
    return X.astype(dtype), y


def gaussian_blobs(n: int, key, *, n_features: int = 16, n_classes: int = 4, separation: float = 1.0,
                   dtype="float32"):
    """``n_classes`` Gaussian clusters in ``n_features`` dims: centers N(0, separation^2) per coordinate
    (``key / "centers"``), unit-variance noise (``key / "noise"``), y = i % n_classes; X standardized."""
    n = _int_arg(n, "n", 0, TypeError)
    key = as_key(key)
    n_features = _int_arg(n_features, "n_features", 1, TypeError)
    n_classes = _int_arg(n_classes, "n_classes", 1, TypeError)
    separation = _real_arg(separation, "separation", 0)
    dtype = _data_dtype(dtype)
    y = np.arange(n, dtype=np.int64) % n_classes
    C = _normal((n_classes, n_features), key / "centers", 0.0, separation, dtype="float64", backend="numpy")
    X = C[y] + _normal((n, n_features), key / "noise", dtype="float64", backend="numpy")
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X.astype(dtype), y


def teacher_task(n: int, key, *, n_features: int = 16, n_classes: int = 4, width: int = 32, depth: int = 2,
                 dtype="float32"):
    """Labels from a random teacher: X ~ N(0, 1) (``key / "x"``); a tanh MLP n_features -> width x depth
    -> n_classes with N(0, 1/fan_in) weights (``key / "teacher.{i}"``); y = argmax of its output.
    ``depth`` 0 is a linear teacher."""
    n = _int_arg(n, "n", 0, TypeError)
    key = as_key(key)
    n_features = _int_arg(n_features, "n_features", 1, TypeError)
    n_classes = _int_arg(n_classes, "n_classes", 1, TypeError)
    width = _int_arg(width, "width", 1, TypeError)
    depth = _int_arg(depth, "depth", 0, TypeError)
    dtype = _data_dtype(dtype)
    X = _normal((n, n_features), key / "x", dtype="float64", backend="numpy")
    h, sizes = X, [n_features] + [width] * depth + [n_classes]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        h = h @ _normal((a, b), key / f"teacher.{i}", 0.0, 1 / math.sqrt(a), dtype="float64", backend="numpy")
        if i < len(sizes) - 2:
            h = np.tanh(h)
    return X.astype(dtype), h.argmax(axis=1).astype(np.int64)


_DATA = {"spirals": two_spirals, "blobs": gaussian_blobs, "teacher": teacher_task}


def make_data(name: str, n: int, key, **kw):
    """``two_spirals`` / ``gaussian_blobs`` / ``teacher_task`` by name ("spirals", "blobs", "teacher")."""
    if not isinstance(name, str) or name not in _DATA:
        raise ValueError(f"data must be one of {sorted(_DATA)}, got {name!r}")
    fn = _DATA[name]
    allowed = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]
    bad = sorted(set(kw) - set(allowed))
    if bad:
        raise TypeError(f"make_data({name!r}): unexpected keyword argument {bad[0]!r}; {fn.__name__} takes "
                        f"{', '.join(allowed)}")
    return fn(n, key, **kw)


# ---------------------------------------------------------------------------
# nets and weight schemes
# ---------------------------------------------------------------------------
SCHEMES = {"zeros": "all weights 0", "constant(c)": "all weights c", "normal(s)": "N(0, s^2), s fixed",
           "xavier": "xavier_normal: N(0, 2/(fan_in+fan_out))", "he": "he_normal: N(0, 2/fan_in)"}
_NAMED = {"xavier": "xavier_normal", "glorot": "xavier_normal", "he": "he_normal", "kaiming": "he_normal"}


def _check_scheme_type(scheme) -> str:
    if not isinstance(scheme, str):
        raise TypeError(f"scheme must be a str such as 'he', 'xavier', 'zeros', 'constant(0.5)' or 'normal(0.01)', "
                        f"got {type(scheme).__name__} {scheme!r:.60}")
    return scheme


def _scheme_fn(scheme: str):
    """(shape, key, out, index=None) -> fills out with the scheme's weights (``index=``: the box
    of the full shape that ``out`` holds; an empty box checks the arguments, computing nothing)."""
    from . import init as I
    s = _check_scheme_type(scheme).strip()
    m = re.fullmatch(r"(constant|normal)\(\s*([-+0-9.eE]+)\s*\)", s)
    if s == "zeros":
        return lambda shape, key, out, index=None: I.zeros(shape, dtype=out.dtype.name, index=index, out=out)
    if m and m.group(1) == "constant":
        v = float(m.group(2))
        return lambda shape, key, out, index=None: I.constant(shape, value=v, dtype=out.dtype.name, index=index,
                                                              out=out)
    if m:
        std = float(m.group(2))
        return lambda shape, key, out, index=None: _normal(shape, key, 0.0, std, dtype=out.dtype.name, index=index,
                                                           out=out)
    name = _NAMED.get(s, s)
    fn = getattr(I, name, None)
    if not callable(fn) or name.startswith("_") or name in ("init_params", "calculate_gain", "fan_in_fan_out",
                                                            "register_initializer", "variance_scaling_params"):
        raise ValueError(f"unknown weight scheme {scheme!r}: use zeros, constant(c), normal(std), xavier, he "
                         "or an initializer name such as lecun_normal")
    return lambda shape, key, out, index=None: fn(shape, key, dtype=out.dtype.name, index=index, out=out)


def init_weights(net, scheme: str, key) -> None:
    """Overwrite every weight of ``net`` in place with ``scheme`` (from ``key / "layers.{i}.weight"``)
    and every bias with 0. Works on CPU and GPU parameter buffers (``out=`` into the views).
    Every layer's arguments are checked (on an empty box) before any weight is written."""
    _check_net(net, "init_weights")
    fn = _scheme_fn(scheme)
    key = as_key(key)
    from . import init as I
    L = _n_layers(net)
    for i in range(L):
        w = net.params[f"layers.{i}.weight"]
        fn(tuple(w.shape), key / f"layers.{i}.weight", w[:0], index=(slice(0, 0),))
    for i in range(L):
        w = net.params[f"layers.{i}.weight"]
        fn(tuple(w.shape), key / f"layers.{i}.weight", w)
        b = net.params[f"layers.{i}.bias"]
        I.zeros(tuple(b.shape), dtype=b.dtype.name, out=b)
    if hasattr(net, "exact_symmetry"):  # exact GEMMs keep a constant init's neurons bitwise equal
        net.exact_symmetry = _is_constant_scheme(scheme)
    if hasattr(net, "reset_optimizer"):
        net.reset_optimizer()


def _is_constant_scheme(scheme) -> bool:
    return isinstance(scheme, str) and (scheme in ("zeros", "ones") or scheme.startswith("constant"))


def _make_net(sizes, activation, scheme, key, *, lr, optimizer, dtype="float32", backend=None, device=None):
    from .mlp import MLP
    net = MLP(list(sizes), activation=activation, init="zeros", key=key, dtype=dtype, optimizer=optimizer,
              lr=lr, backend=backend, device=device)
    init_weights(net, scheme, as_key(key) / "init")
    return net


def _to_device(net, X, y):
    """X, y as the arrays ``net`` computes on (CuPy when its parameters are CuPy arrays)."""
    p = net.params["layers.0.weight"]
    if isinstance(p, np.ndarray):
        return _host(X), _host(y)
    xp = _xp_of(p)
    return xp.asarray(X), xp.asarray(y)


def _xent_acc(net, X, y) -> tuple[float, float]:
    """Mean softmax cross-entropy and accuracy of ``net`` on (X, y), in float64 on the host."""
    with np.errstate(all="ignore"):
        logits = _host(net.forward(X)).astype(np.float64)
        m = logits.max(axis=1, keepdims=True)
        lse = np.log(np.exp(logits - m).sum(axis=1)) + m[:, 0]
        yh = _host(y)
        loss = float(np.mean(lse - logits[np.arange(len(yh)), yh]))
        acc = float(np.mean(logits.argmax(axis=1) == yh)) if np.isfinite(logits).all() else float("nan")
    return loss, acc


def _train(net, X, y, *, steps, batch, key):
    """Minibatch steps over a fixed permutation of the data (from ``key``), cycling; returns
    (loss per step, status) where status is "ok" or "diverged" (non-finite loss or the net's
    divergence error; the curve stops there)."""
    n = X.shape[0]
    order = np.argsort(_uniform((n,), as_key(key) / "order", dtype="float64", backend="numpy"), kind="stable")
    batch = min(batch, n)
    Xd, yd = _to_device(net, X, y)
    curve = []
    pos = 0
    for _ in range(steps):
        if pos + batch > n:
            pos = 0
        idx = order[pos:pos + batch]
        pos += batch
        if batch == n:
            xb, yb = Xd, yd
        else:
            ii = idx if isinstance(Xd, np.ndarray) else _xp_of(Xd).asarray(idx)
            xb, yb = Xd[ii], yd[ii]
        try:
            loss = float(net.step(xb, yb))
        except DivergenceError:          # non-finite loss or gradient; the net kept its last good state
            return curve, "diverged"
        if not math.isfinite(loss):
            return curve, "diverged"
        curve.append(loss)
    return curve, "ok"


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------
@dataclass
class Result:
    """What an experiment returns: ``rows`` (a tidy table: one dict per row, same keys),
    ``curves`` ({label: list of per-step losses}), ``config`` (every setting used) and ``seconds``."""
    name: str
    rows: list
    config: dict
    curves: dict = field(default_factory=dict)
    seconds: float = 0.0

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise TypeError(f"Result name must be a str (the experiment: 'symmetry', 'depth_signal', "
                            f"'depth_training'), got {type(self.name).__name__}")
        _check_rows(self.rows, "Result")
        for v, what in ((self.config, "config"), (self.curves, "curves")):
            if not isinstance(v, dict):
                raise TypeError(f"Result {what} must be a dict, got {type(v).__name__}")
        _real_arg(self.seconds, "Result seconds")

    def table(self, columns=None) -> str:
        return format_table(self.rows, columns)

    def to_pandas(self):                                        # pragma: no cover - optional
        import pandas as pd
        return pd.DataFrame(self.rows)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return str(v)
        if v == 0:
            return "0"
        if 1e-3 <= abs(v) < 1e5:
            return f"{v:.4g}" if abs(v) >= 1 else f"{v:.3f}"
        return f"{v:.2e}"
    if isinstance(v, (tuple, list)):
        return " ".join(_fmt(x) for x in v)
    return str(v)


def format_table(rows, columns=None) -> str:
    """A plain-text table of ``rows`` (list of dicts); ``columns`` picks and orders the keys (a
    row without one of them shows '-'; a column no row has is an error)."""
    _check_rows(rows, "format_table")
    if columns is not None:
        columns = _seq_arg(columns, "columns", "['scheme', 'accuracy']")
    if not rows:
        return "(no rows)"
    if columns:
        known = list(dict.fromkeys(k for r in rows for k in r))
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise ValueError(f"unknown column {unknown[0]!r}: the rows have columns {known}")
    columns = list(columns or rows[0].keys())
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[j]) for row in cells)) for j, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.rjust(w) if j else v.ljust(w) for j, (v, w) in enumerate(zip(vals, widths)))
    out = [line(columns), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)


# ---------------------------------------------------------------------------
# experiment 1: symmetry
# ---------------------------------------------------------------------------
def symmetry_experiment(*, sizes=(2, 32, 32, 2), activation="tanh",
                        schemes=("zeros", "constant(0.5)", "xavier", "he"), data="spirals", n=512,
                        steps=600, batch=512, lr=0.1, optimizer="momentum", key=0, tol=1e-5, dtype="float32",
                        backend=None, device=None) -> Result:
    """The same net and data trained from each weight scheme (biases 0 everywhere).

    Every scheme starts from the net built with ``key`` and has its weights written by
    ``init_weights(net, scheme, key / "init")``; data = ``make_data(data, n, key / "data")``;
    ``steps`` minibatch steps of ``batch`` rows (the full batch by default) in a fixed order.
    Only the init can break a tie: for the constant schemes ``init_weights`` turns the net's
    ``exact_symmetry`` on, so its GEMMs are column-exact (BLAS sgemm/cuBLAS round edge columns
    differently, ~1e-7 relative, which training would amplify: the symmetric state is unstable),
    on the CPU and the GPU, in float32 (the default; one dtype for the whole demo keeps the
    first-run compile short) as in float64.
    Rows: ``scheme``, ``distinct_before`` / ``distinct_after`` (distinct neurons per hidden layer,
    tuples), ``width``, ``loss_init``, ``loss_final``, ``accuracy`` (on the training data),
    ``chance`` (largest class share), ``learned`` (accuracy >= chance + (1 - chance) / 2), ``status``.
    """
    t0 = time.perf_counter()
    from .mlp import _check_lr, _parse_dtype, _parse_optimizer, _parse_sizes
    sizes = _parse_sizes(sizes)
    _check_activations([activation])
    schemes = _seq_arg(schemes, "schemes", "('zeros', 'he')")
    n = _int_arg(n, "n", 1)
    steps = _int_arg(steps, "steps", 0)
    batch = _int_arg(batch, "batch", 1)
    lr = _check_lr(lr)
    _parse_optimizer(optimizer)
    _check_tol(tol)
    _check_schemes(schemes, sizes, _parse_dtype(dtype))
    key = as_key(key)
    X, y = make_data(data, n, key / "data")
    if sizes[0] != X.shape[1] or sizes[-1] < int(y.max()) + 1:
        raise ValueError(f"sizes {tuple(sizes)} do not fit the {data!r} data ({X.shape[1]} inputs, "
                         f"{int(y.max()) + 1} classes)")
    chance = float(np.bincount(y).max() / len(y))
    rows, curves = [], {}
    for scheme in schemes:
        net = _make_net(sizes, activation, scheme, key / "net", lr=lr, optimizer=optimizer, dtype=dtype,
                        backend=backend, device=device)
        Xd, yd = _to_device(net, X, y)
        before = [r["distinct"] for r in symmetry_report(net, tol) if r["kind"] == "hidden"]
        loss0, _ = _xent_acc(net, Xd, yd)
        curve, status = _train(net, X, y, steps=steps, batch=batch, key=key / "order")
        loss1, acc = _xent_acc(net, Xd, yd)
        try:
            after = [r["distinct"] for r in symmetry_report(net, tol) if r["kind"] == "hidden"]
        except ValueError:                                       # non-finite weights
            after = [None] * len(before)
        rows.append(dict(scheme=scheme, width=tuple(sizes[1:-1]), distinct_before=tuple(before),
                         distinct_after=tuple(after), loss_init=loss0, loss_final=loss1, accuracy=acc,
                         chance=chance, learned=_learned(acc, chance, status), status=status))
        curves[scheme] = curve
    config = dict(sizes=tuple(sizes), activation=activation, schemes=tuple(schemes), data=data, n=n, steps=steps,
                  batch=batch, lr=lr, optimizer=optimizer, key=key.seed,
                  tol=tol, dtype=dtype, backend=backend, device=device)
    return Result("symmetry", rows, config, curves, time.perf_counter() - t0)


# ---------------------------------------------------------------------------
# experiment 2: depth
# ---------------------------------------------------------------------------
DEPTH_SCHEMES = ("normal(1)", "normal(0.01)", "xavier", "he")


def _deep_sizes(depth, width, n_in, n_out):
    """``depth`` weight layers: n_in -> width x (depth - 1) -> n_out (every width checked)."""
    from .mlp import _parse_sizes
    if isinstance(depth, (bool, np.bool_)) or not isinstance(depth, numbers.Integral) or depth < 2:
        raise ValueError(f"depth must be >= 2 weight layers (an int), got {depth!r}")
    return list(_parse_sizes([n_in] + [width] * (int(depth) - 1) + [n_out]))


def depth_signal(*, depth=30, width=64, activations=("relu", "tanh"), schemes=DEPTH_SCHEMES, n_in=16,
                 n_out=4, batch=256, key=0, dtype="float32", backend=None, device=None) -> Result:
    """Signal propagation at init of a ``depth``-layer net (n_in -> width x (depth-1) -> n_out) on a
    batch of ``gaussian_blobs(batch, key / "data")`` for every (activation, scheme).
    Rows (tidy, one per layer): ``activation``, ``scheme`` and the ``signal_propagation`` fields."""
    t0 = time.perf_counter()
    from .mlp import _parse_dtype
    sizes = _deep_sizes(depth, width, n_in, n_out)
    activations = _seq_arg(activations, "activations", "('relu', 'tanh')")
    _check_activations(activations)
    schemes = _seq_arg(schemes, "schemes", "('xavier', 'he')")
    batch = _int_arg(batch, "batch", 1)
    _check_schemes(schemes, sizes, _parse_dtype(dtype))
    key = as_key(key)
    X, y = gaussian_blobs(batch, key / "data", n_features=n_in, n_classes=n_out)
    rows = []
    for act in activations:
        for scheme in schemes:
            # lr: unused (no step is taken at init)
            net = _make_net(sizes, act, scheme, key / "net", lr=1.0, optimizer="sgd", dtype=dtype,
                            backend=backend, device=device)
            for r in signal_propagation(net, X, y):
                rows.append(dict(activation=act, scheme=scheme, **r))
    config = dict(depth=depth, width=width, sizes=tuple(sizes), activations=tuple(activations),
                  schemes=tuple(schemes), batch=batch, key=key.seed, dtype=dtype, backend=backend, device=device)
    return Result("depth_signal", rows, config, {}, time.perf_counter() - t0)


def depth_training(*, depth=30, width=64, activations=("relu", "tanh"), schemes=DEPTH_SCHEMES, n_in=16,
                   n_out=4, n=1024, steps=300, batch=128, lr=0.01, optimizer="momentum", data="teacher",
                   data_kw=None, runs=None, key=0, dtype="float32", backend=None, device=None) -> Result:
    """Short training runs of the deep nets: every (activation, scheme) trains on the same data
    (``make_data(data, n, key / "data")``, n_in features, n_out classes), same order, same
    optimizer. Rows: ``activation``, ``scheme``, ``loss_init``, ``loss_final``, ``accuracy``,
    ``chance`` (largest class share), ``trains`` (accuracy >= chance + (1 - chance) / 2, finite), ``status``.
    ``runs``: an explicit list of (activation, scheme) pairs instead of every combination."""
    t0 = time.perf_counter()
    from .mlp import _check_lr, _parse_dtype, _parse_optimizer
    sizes = _deep_sizes(depth, width, n_in, n_out)
    n = _int_arg(n, "n", 1)
    steps = _int_arg(steps, "steps", 0)
    batch = _int_arg(batch, "batch", 1)
    lr = _check_lr(lr)
    _parse_optimizer(optimizer)
    if data_kw is not None and not isinstance(data_kw, dict):
        raise TypeError(f"data_kw must be a dict of make_data keyword arguments (or None), got "
                        f"{type(data_kw).__name__}")
    if runs is not None:
        runs = _seq_arg(runs, "runs", "[('relu', 'he'), ('tanh', 'xavier')]")
        for r in runs:
            if not isinstance(r, (tuple, list)) or len(r) != 2:
                raise ValueError(f"runs must be a list of (activation, scheme) pairs, got the entry {r!r:.60}")
        runs = [tuple(r) for r in runs]
    else:
        activations = _seq_arg(activations, "activations", "('relu', 'tanh')")
        schemes = _seq_arg(schemes, "schemes", "('xavier', 'he')")
        runs = [(a, s) for a in activations for s in schemes]
    _check_activations([a for a, _ in runs])
    _check_schemes([s for _, s in runs], sizes, _parse_dtype(dtype))
    key = as_key(key)
    kw = {} if data == "spirals" else dict(n_features=n_in, n_classes=n_out)
    kw.update(data_kw or {})
    X, y = make_data(data, n, key / "data", **kw)
    chance = float(np.bincount(y).max() / len(y))
    rows, curves = [], {}
    for act, scheme in runs:
        net = _make_net(sizes, act, scheme, key / "net", lr=lr, optimizer=optimizer, dtype=dtype,
                        backend=backend, device=device)
        Xd, yd = _to_device(net, X, y)
        loss0, _ = _xent_acc(net, Xd, yd)
        curve, status = _train(net, X, y, steps=steps, batch=batch, key=key / "order")
        loss1, acc = _xent_acc(net, Xd, yd) if status == "ok" else (float("nan"), float("nan"))
        trains = _learned(acc, chance, status)
        rows.append(dict(activation=act, scheme=scheme, loss_init=loss0, loss_final=loss1, accuracy=acc,
                         chance=chance, trains=trains, status=status))
        curves[f"{act} {scheme}"] = curve
    config = dict(depth=depth, width=width, sizes=tuple(sizes), runs=tuple(runs), data=data, n=n, steps=steps,
                  batch=batch, lr=lr, optimizer=optimizer, key=key.seed, dtype=dtype, backend=backend, device=device)
    return Result("depth_training", rows, config, curves, time.perf_counter() - t0)


def _learned(acc, chance, status) -> bool:
    """The 'trains' / 'learned' bar: finite, and at least halfway from chance to perfect accuracy."""
    return status == "ok" and math.isfinite(acc) and acc >= chance + (1 - chance) / 2


# ---------------------------------------------------------------------------
# conclusions drawn from the rows (the demo prints them)
# ---------------------------------------------------------------------------
UNEXPECTED = "!! UNEXPECTED:"


_EXPERIMENT_OF = {"symmetry": "symmetry_experiment", "depth_signal": "depth_signal",
                  "depth_training": "depth_training"}


def _check_result(res, name: str, what: str) -> None:
    """``res`` is the Result of the experiment called ``name`` (Result.name)."""
    exp = _EXPERIMENT_OF[name]
    if not isinstance(res, Result):
        raise TypeError(f"{what} takes the Result of lab.{exp}(), got {type(res).__name__}")
    if res.name != name:
        other = _EXPERIMENT_OF.get(res.name)
        tip = f" (the Result of lab.{other}())" if other else ""
        raise ValueError(f"{what} takes the Result of lab.{exp}() (name {name!r}), got a Result named "
                         f"{res.name!r}{tip}")


def _names(items) -> str:
    return ", ".join(items) if items else "none"


def symmetry_conclusions(res: Result) -> list[str]:
    """What the rows of ``symmetry_experiment`` show, in words, plus a line starting with
    ``UNEXPECTED`` for every row that contradicts the theory: a constant init must stay at 1
    distinct neuron per hidden layer before and after training (every neuron gets the same input
    and the same gradient); a random init keeps every neuron distinct and learns the task. On the
    two spirals a constant-init net is a chain of one-neuron layers, whose decision boundary is a
    line: it cannot learn them, so there "learned" is expected to be False."""
    _check_result(res, "symmetry", "symmetry_conclusions")
    rows, c = res.rows, res.config
    const = [r for r in rows if _is_constant_scheme(r["scheme"])]
    rand = [r for r in rows if not _is_constant_scheme(r["scheme"])]
    one = [r["scheme"] for r in rows if all(d == 1 for d in r["distinct_after"])]
    full = [r["scheme"] for r in rows if tuple(r["distinct_after"]) == tuple(r["width"])]
    bar = rows[0]["chance"] + (1 - rows[0]["chance"]) / 2 if rows else 0.0
    task = "the spirals" if c.get("data") == "spirals" else f"the {c.get('data')} task"
    out = [f"stayed at 1 distinct neuron per hidden layer after training: {_names(one)}",
           f"kept every neuron distinct: {_names(full)}",
           f"learned {task} (accuracy >= {bar:.2f}): "
           + _names([f"{r['scheme']} {_fmt(r['accuracy'])}" for r in rows if r["learned"]])
           + "; did not: " + _names([f"{r['scheme']} {_fmt(r['accuracy'])}" for r in rows if not r["learned"]])]
    for r in const:
        for when in ("before", "after"):
            if any(d != 1 for d in r[f"distinct_{when}"]):
                out.append(f"{UNEXPECTED} {r['scheme']} has {_fmt(r[f'distinct_{when}'])} distinct neurons {when} "
                           "training; a constant init must keep exactly 1 per hidden layer")
        if c.get("data") == "spirals" and r["learned"]:
            out.append(f"{UNEXPECTED} {r['scheme']} learned the spirals (accuracy {_fmt(r['accuracy'])}) with one "
                       "neuron per layer, whose decision boundary is a line")
    for r in rand:
        if tuple(r["distinct_after"]) != tuple(r["width"]) or tuple(r["distinct_before"]) != tuple(r["width"]):
            out.append(f"{UNEXPECTED} {r['scheme']} has {_fmt(r['distinct_before'])} -> {_fmt(r['distinct_after'])} "
                       f"distinct neurons of {_fmt(r['width'])}; a random init keeps them all distinct")
        if not r["learned"]:
            out.append(f"{UNEXPECTED} {r['scheme']} did not learn {task} (accuracy {_fmt(r['accuracy'])} < "
                       f"{bar:.2f})")
    return out


def scheme_variance(scheme, fan_in, fan_out):
    """Var(W) of a weight scheme, where it is known (normal(s), xavier, he); None for the other
    schemes that ``init_weights`` knows; an error for one it does not."""
    _scheme_fn(scheme)
    fan_in = _int_arg(fan_in, "fan_in", 1)
    fan_out = _int_arg(fan_out, "fan_out", 1)
    s = scheme.strip()
    m = re.fullmatch(r"normal\(\s*([-+0-9.eE]+)\s*\)", s)
    if m:
        return float(m.group(1)) ** 2
    name = _NAMED.get(s, s)
    if name == "xavier_normal":
        return 2.0 / (fan_in + fan_out)
    if name == "he_normal":
        return 2.0 / fan_in
    return None


def _trend(ratio) -> str:
    if not math.isfinite(ratio) or ratio > 1e3:
        return "explodes"
    if ratio < 1e-3:
        return "vanishes"
    if 0.1 <= ratio <= 10:
        return "stays"
    return "grows" if ratio > 1 else "shrinks"


SIGNAL_TOLERANCE_DECADES = 2.0
SATURATED = 0.25           # tanh "saturates": over a quarter of the hidden units at |a| > 0.99 (Xavier: ~0)


def depth_signal_conclusions(res: Result) -> list[str]:
    """What the rows of ``depth_signal`` show: for every (activation, scheme) the ratio of the
    activation std at the last hidden layer to that at layer 1, named (explodes > 1e3, grows,
    stays within 10x, shrinks, vanishes < 1e-3), with ``UNEXPECTED`` lines where it contradicts the
    variance recursion. Expected ratio: ReLU halves E[z^2] per layer unless the weights make up for
    it, Var z_{l+1} = width Var(W) Var z_l / 2 (He et al. 2015), so the std ratio over the
    ``depth - 2`` width x width layers is (width Var(W) / 2) ** ((depth - 2) / 2); tanh is linear
    for small z, so where width Var(W) < 1 the same holds without the 1/2. Finite width makes
    the log-variance wander (about sqrt(depth * 5 / width) e-folds), so a measured ratio is
    flagged only when it is more than 10 ** SIGNAL_TOLERANCE_DECADES away from the prediction.
    tanh nets whose width Var(W) >= 1 get no prediction (they saturate); those with
    width Var(W) > 2 are expected to saturate (mean saturated fraction > SATURATED)."""
    _check_result(res, "depth_signal", "depth_signal_conclusions")
    c = res.config
    depth, width = c["depth"], c["width"]
    out = []
    for act in c["activations"]:
        parts, flags = [], []
        for scheme in c["schemes"]:
            rs = [r for r in res.rows if r["activation"] == act and r["scheme"] == scheme]
            hidden = [r for r in rs if r["kind"] == "hidden"]
            if len(hidden) < 2:
                continue
            first, last = hidden[0]["act_std"], hidden[-1]["act_std"]
            ratio = last / first if first > 0 else float("inf")
            trend = _trend(ratio)
            sat = [r["saturation"] for r in hidden if r["saturation"] is not None]
            msat = float(np.mean(sat)) if sat else None
            parts.append(f"{scheme} x{_fmt(ratio)} ({trend}"
                         + (f", {msat:.0%} saturated" if msat is not None and msat > 0.05 else "") + ")")
            v = scheme_variance(scheme, width, width)
            if v is None:
                continue
            gain = width * v
            steps = (len(hidden) - 1) / 2                   # std ratio = factor ** steps
            log_pred = None
            if act == "relu":
                log_pred = steps * math.log10(gain / 2) if gain > 0 else -math.inf
            elif act in ("tanh", "linear") and gain < 1:
                log_pred = steps * math.log10(gain) if gain > 0 else -math.inf
            if log_pred is not None:
                log_meas = math.log10(ratio) if 0 < ratio < math.inf else (-math.inf if ratio == 0 else math.inf)
                clamp = lambda x: min(300.0, max(-300.0, x))      # beyond 1e+-300 both are 'overflow'
                if abs(clamp(log_meas) - clamp(log_pred)) > SIGNAL_TOLERANCE_DECADES:
                    pred = 10.0 ** clamp(log_pred)
                    flags.append(f"{UNEXPECTED} {act} {scheme}: std ratio {_fmt(ratio)} over {len(hidden)} hidden "
                                 f"layers, the variance recursion predicts {_fmt(pred)} ({_trend(pred)})")
            elif act == "tanh" and gain > 2 and (msat is None or msat <= SATURATED):
                flags.append(f"{UNEXPECTED} {act} {scheme}: width Var(W) = {gain:.3g} should saturate tanh, "
                             f"mean saturated fraction {0.0 if msat is None else msat:.2f} <= {SATURATED}")
        out.append(f"{act}: activation std, last hidden layer / layer 1: " + "; ".join(parts))
        out += flags
    return out


# Trainability of deep nets, as published: 30-layer ReLU nets train with He and stall with Xavier
# (He et al. 2015, fig. 3); vanishing N(0, 0.01^2) and exploding N(0, 1) do not train; tanh with
# Xavier trains (Glorot & Bengio 2010). Pairs not listed carry no expectation.
TRAINING_EXPECTED = {("relu", "he"): True, ("relu", "xavier"): False, ("relu", "normal(0.01)"): False,
                     ("relu", "normal(1)"): False, ("tanh", "xavier"): True}


def depth_training_conclusions(res: Result) -> list[str]:
    """Which (activation, scheme) trained according to the rows of ``depth_training``, and an
    ``UNEXPECTED`` line for each row that contradicts ``TRAINING_EXPECTED``."""
    _check_result(res, "depth_training", "depth_training_conclusions")
    rows = res.rows
    out = ["trained: " + _names([f"{r['activation']} {r['scheme']}" for r in rows if r["trains"]]),
           "did not train: " + _names([f"{r['activation']} {r['scheme']}"
                                       + (" (diverged)" if r["status"] == "diverged" else "")
                                       for r in rows if not r["trains"]])]
    for r in rows:
        want = TRAINING_EXPECTED.get((r["activation"], r["scheme"]))
        if want is not None and bool(r["trains"]) != want:
            out.append(f"{UNEXPECTED} {r['activation']} {r['scheme']} {'trained' if r['trains'] else 'did not train'} "
                       f"(accuracy {_fmt(r['accuracy'])}, chance {_fmt(r['chance'])}); the published result is that "
                       f"it {'trains' if want else 'does not'} at this depth")
    return out


# ---------------------------------------------------------------------------
# the demo's defaults and plots
# ---------------------------------------------------------------------------
_DEMO_RUNS = tuple(("relu", s) for s in DEPTH_SCHEMES) + (("tanh", "xavier"), ("tanh", "he"))


def demo_settings(quick: bool = False) -> dict:
    """The settings ``symbreak-fast demo`` runs (``quick``: tiny sizes for tests, seconds)."""
    if _bool_arg(quick, "quick"):
        return dict(symmetry=dict(sizes=(2, 8, 8, 2), n=128, steps=60, batch=128, lr=0.1),
                    signal=dict(depth=30, width=16, batch=64),
                    training=dict(depth=30, width=16, n=128, steps=20, batch=64, runs=_DEMO_RUNS))
    return dict(symmetry=dict(sizes=(2, 32, 32, 2), n=512, steps=600, batch=512, lr=0.1),
                signal=dict(depth=30, width=64, batch=256),
                training=dict(depth=30, width=64, n=1024, steps=300, batch=128, lr=0.01, runs=_DEMO_RUNS))


def pivot(rows, index, columns, value, keep=None) -> list[dict]:
    """Wide table from tidy ``rows``: one dict per ``index`` value (in first-seen order, filtered by
    ``keep``) with one key per ``columns`` value holding ``value``."""
    _check_rows(rows, "pivot")
    for k, role in ((index, "index"), (columns, "columns"), (value, "value")):
        for i, r in enumerate(rows):
            if k not in r:
                raise ValueError(f"pivot: row {i} has no key {k!r} (the {role} argument); its keys are {list(r)}")
    out = {}
    for r in rows:
        k = r[index]
        if keep is not None and k not in keep:
            continue
        out.setdefault(k, {index: k})[str(r[columns])] = r[value]
    return list(out.values())


def write_plots(sym: Result, sig: Result, train: Result, out_dir) -> list[str]:
    """PNG plots of the three results into ``out_dir`` (created); returns the paths written.
    Needs matplotlib (``pip install "symbreak-fast[plot]"``); ImportError otherwise. The results
    and ``out_dir`` are checked before the folder is created."""
    for res, name in ((sym, "symmetry"), (sig, "depth_signal"), (train, "depth_training")):
        _check_result(res, name, "write_plots")
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a folder name (a str or os.PathLike), got {type(out_dir).__name__}")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"out_dir {os.fspath(out_dir)} is an existing file; give a folder for the plots")
    if not sym.rows:
        raise ValueError("write_plots: the symmetry Result has no rows (symmetry_experiment with no schemes?)")
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    os.makedirs(out_dir, exist_ok=True)
    paths = []

    acts = list(dict.fromkeys(r["activation"] for r in sig.rows))
    for what, fname, ylabel in (("act_std", "depth_activation_std.png", "activation std"),
                                ("grad_norm", "depth_grad_norm.png", "||dLoss/dW|| at init")):
        fig, axes = plt.subplots(1, len(acts), figsize=(5.5 * len(acts), 4.2), squeeze=False)
        for ax, act in zip(axes[0], acts):
            for scheme in dict.fromkeys(r["scheme"] for r in sig.rows):
                rs = [r for r in sig.rows if r["activation"] == act and r["scheme"] == scheme]
                v = np.array([r[what] for r in rs], dtype=np.float64)
                v = np.where(np.isfinite(v) & (v > 0), v, np.nan)
                ax.semilogy([r["layer"] for r in rs], v, marker=".", label=scheme)
            ax.set_title(f"{act}, {sig.config['depth']} layers x {sig.config['width']}, at init")
            ax.set_xlabel("layer")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        p = os.path.join(out_dir, fname)
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    schemes = [r["scheme"] for r in sym.rows]
    n_hidden = len(sym.rows[0]["distinct_before"])
    xs = np.arange(len(schemes))
    w = 0.8 / (2 * n_hidden)
    for h in range(n_hidden):
        for j, (when, hatch) in enumerate((("before", ""), ("after", "//"))):
            vals = [r[f"distinct_{when}"][h] or 0 for r in sym.rows]
            ax.bar(xs + (2 * h + j - n_hidden + 0.5) * w, vals, w, hatch=hatch, color=f"C{h}",
                   edgecolor="black", label=f"hidden layer {h + 1}, {when} training")
    ax.set_xticks(xs, schemes)
    ax.set_ylabel("distinct neurons")
    ax.set_yscale("log", base=2)
    ax.set_title(f"distinct neurons, net {list(sym.config['sizes'])}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = os.path.join(out_dir, "symmetry_distinct_neurons.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, res, title in ((axes[0], sym, f"symmetry: net {list(sym.config['sizes'])}"),
                           (axes[1], train, f"depth: {train.config['depth']} layers x {train.config['width']}")):
        for label, curve in res.curves.items():
            if curve:
                ax.semilogy(np.arange(1, len(curve) + 1), curve, label=label, lw=1)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (batch)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    p = os.path.join(out_dir, "loss_curves.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths
