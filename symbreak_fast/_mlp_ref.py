"""Unfused, readable NumPy reference of the MLP passes (the ops interface of ``symbreak_fast.mlp``).

Every ops module (this one, ``backends.mlp_numba``, ``backends.mlp_cupy``) provides the
same functions with the same meaning; the fused backends are tested against this one.
Arrays are C-contiguous, one float dtype per net (float32 or float64). Layer ``l`` maps
``x (B, n_in) @ W (n_in, n_out)`` (layout "io") to ``z (B, n_out)``.

* ``matmul(a, b, out)``: ``out = a @ b`` (a / b may be transposed views).
* ``bias_act_forward(z, b, act, alpha, a)``: ``z += b`` (row broadcast; z keeps the
  pre-activation), ``a = f(z)``; for ``act == "linear"`` ``a`` may be ``z`` itself.
* ``act_backward_bias_grad(g, z, a, act, alpha, db)``: ``g *= f'(z)`` in place, then
  ``db[:] = g.sum(axis=0)``.
* ``softmax_xent(logits, labels, dlogits) -> float``: mean over rows of
  ``logsumexp(logits_i) - logits_i[y_i]`` (max-subtracted);
  ``dlogits = (softmax(logits) - onehot(y)) / B``.
* ``mse(pred, target, dpred) -> float``: mean over all elements of ``(pred - target)**2``;
  ``dpred = 2 (pred - target) / pred.size``.
* ``sgd(p, g, lr)``, ``momentum(p, g, v, lr, mu)``, ``adam(p, g, m, v, lr, b1, b2, eps, t)``:
  the torch.optim updates (SGD, SGD with momentum and no dampening, Adam without weight
  decay), on the flat 1-D buffers.

Activations: "linear", "relu", "leaky_relu" (alpha = negative slope), "tanh", "sigmoid",
"gelu" (exact, erf), "gelu_tanh" (tanh approximation), "selu" (alpha unused).
Derivatives at a kink follow torch: relu'(0) = 0, leaky_relu'(0) = alpha, selu'(0) = lambda * alpha.

Everything here works element by element or by row/column reductions that treat every
column alike, so a net whose hidden neurons start identical keeps them bitwise identical.
"""
from __future__ import annotations

import math

import numpy as np

xp = np

SELU_LAMBDA = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_TANH_C = 0.044715
INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

_ERF = None


def _erf(x: np.ndarray) -> np.ndarray:
    """erf element by element (scipy.special.erf when installed, else math.erf)."""
    global _ERF
    if _ERF is None:
        try:
            from scipy.special import erf as _ERF_scipy
            _ERF = _ERF_scipy
        except ImportError:            # slower, same values to within an ulp
            _ERF = np.vectorize(math.erf, otypes=[np.float64])
    return np.asarray(_ERF(x.astype(np.float64, copy=False))).astype(x.dtype, copy=False)


# ---------------------------------------------------------------------------
# matmul
# ---------------------------------------------------------------------------
def matmul(a, b, out):
    """out = a @ b, every element computed the same way: sum over k in order of the rounded
    products a[i, k] * b[k, j] (no FMA, no blocking).

    Not BLAS on purpose: BLAS kernels handle edge rows/columns of a tile with other code
    (other summation order or FMA use), so identical columns of ``b`` (a constant init)
    can give columns of ``out`` that differ in the last bit, and that noise then breaks
    the symmetry the lab studies. Cost: k passes over ``out`` (a reference, not a fast path).
    """
    m, k = a.shape
    n = b.shape[1]
    if out.shape != (m, n) or b.shape[0] != k:
        raise ValueError(f"matmul shapes {a.shape} @ {b.shape} -> {out.shape} do not match")
    out[...] = 0
    tmp = np.empty_like(out)
    for i in range(k):
        np.multiply(a[:, i:i + 1], b[i:i + 1, :], out=tmp)
        out += tmp
    return out


def blas_matmul(a, b, out):
    """out = a @ b through BLAS: the fast NumPy GEMM (baselines, benchmarks). Not used by the
    MLP, because it does not keep identical columns identical (see ``matmul``)."""
    return np.matmul(a, b, out=out)


# ---------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------
def _sigmoid(z):
    """1 / (1 + exp(-z)) without overflow: exp of a non-positive number only."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def activation(z, act, alpha):
    """f(z) as a new array."""
    dt = z.dtype
    if act == "linear":
        return z.copy()
    if act == "relu":
        return np.maximum(z, 0).astype(dt, copy=False)
    if act == "leaky_relu":
        return np.where(z > 0, z, dt.type(alpha) * z).astype(dt, copy=False)
    if act == "tanh":
        return np.tanh(z)
    if act == "sigmoid":
        return _sigmoid(z)
    if act == "gelu":
        return (0.5 * z * (1.0 + _erf(z * dt.type(INV_SQRT_2)))).astype(dt, copy=False)
    if act == "gelu_tanh":
        inner = dt.type(SQRT_2_OVER_PI) * (z + dt.type(GELU_TANH_C) * z * z * z)
        return (0.5 * z * (1.0 + np.tanh(inner))).astype(dt, copy=False)
    if act == "selu":
        neg = dt.type(SELU_LAMBDA * SELU_ALPHA) * np.expm1(np.minimum(z, 0))
        return np.where(z > 0, dt.type(SELU_LAMBDA) * z, neg).astype(dt, copy=False)
    raise ValueError(f"unknown activation {act!r}")


def activation_derivative(z, a, act, alpha):
    """f'(z) as a new array (``a`` = f(z))."""
    dt = z.dtype
    one = dt.type(1)
    if act == "linear":
        return np.ones_like(z)
    if act == "relu":
        return (z > 0).astype(dt)
    if act == "leaky_relu":
        return np.where(z > 0, one, dt.type(alpha)).astype(dt, copy=False)
    if act == "tanh":
        return one - a * a
    if act == "sigmoid":
        return a * (one - a)
    if act == "gelu":
        cdf = 0.5 * (1.0 + _erf(z * dt.type(INV_SQRT_2)))
        pdf = dt.type(INV_SQRT_2PI) * np.exp(-0.5 * z * z)
        return (cdf + z * pdf).astype(dt, copy=False)
    if act == "gelu_tanh":
        k, c = dt.type(SQRT_2_OVER_PI), dt.type(GELU_TANH_C)
        t = np.tanh(k * (z + c * z * z * z))
        return (0.5 * (one + t) + 0.5 * z * (one - t * t) * k * (one + 3 * c * z * z)).astype(dt, copy=False)
    if act == "selu":
        return np.where(z > 0, dt.type(SELU_LAMBDA),
                        dt.type(SELU_LAMBDA * SELU_ALPHA) * np.exp(np.minimum(z, 0))).astype(dt, copy=False)
    raise ValueError(f"unknown activation {act!r}")


def bias_act_forward(z, b, act, alpha, a):
    """z += b (z keeps the pre-activation); a = f(z)."""
    z += b
    if act == "linear":
        if a is not z:
            a[...] = z
        return a
    a[...] = activation(z, act, alpha)
    return a


def act_backward_bias_grad(g, z, a, act, alpha, db):
    """g *= f'(z) in place; db = g.sum(axis=0)."""
    if act != "linear":
        g *= activation_derivative(z, a, act, alpha)
    np.sum(g, axis=0, out=db)
    return db


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------
def softmax_xent(logits, labels, dlogits) -> float:
    """Mean softmax cross-entropy of integer ``labels``; dlogits = (softmax - onehot) / B."""
    b = logits.shape[0]
    rows = np.arange(b)
    shifted = logits - logits.max(axis=1, keepdims=True)       # <= 0: exp never overflows
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    lse = np.log(s)[:, 0]
    loss = float(np.mean(lse.astype(np.float64) - shifted[rows, labels].astype(np.float64)))
    dlogits[...] = e / s
    dlogits[rows, labels] -= 1
    dlogits /= logits.dtype.type(b)
    return loss


def mse(pred, target, dpred) -> float:
    """Mean over all elements of (pred - target)**2; dpred = 2 (pred - target) / pred.size."""
    diff = pred - target
    loss = float(np.mean(diff.astype(np.float64) ** 2))
    dpred[...] = diff * pred.dtype.type(2.0 / pred.size)
    return loss


# ---------------------------------------------------------------------------
# optimizers (flat buffers)
# ---------------------------------------------------------------------------
def sgd(p, g, lr):
    """p -= lr g."""
    p -= p.dtype.type(lr) * g


def momentum(p, g, v, lr, mu):
    """v = mu v + g; p -= lr v (torch.optim.SGD with momentum, no dampening)."""
    v *= v.dtype.type(mu)
    v += g
    p -= p.dtype.type(lr) * v


def adam(p, g, m, v, lr, b1, b2, eps, t):
    """torch.optim.Adam (no weight decay): bias-corrected moments, eps added to sqrt(v_hat)."""
    dt = p.dtype.type
    m *= dt(b1)
    m += dt(1 - b1) * g
    v *= dt(b2)
    v += dt(1 - b2) * g * g
    bias1 = 1.0 - b1 ** t
    bias2_sqrt = math.sqrt(1.0 - b2 ** t)
    denom = np.sqrt(v) / dt(bias2_sqrt) + dt(eps)
    p -= dt(lr / bias1) * m / denom
