"""Fused MLP ops on the CPU with Numba (the ``ops`` interface of the MLP engine).

GEMMs go through BLAS (``np.matmul(..., out=)`` -> OpenBLAS); everything around
them is one pass over memory:

* ``bias_act_forward``: z += b and a = f(z) in one sweep over the GEMM output.
* ``act_backward_bias_grad``: g *= f'(z) and db = sum_rows(g) in the same sweep.
* ``softmax_xent`` / ``mse``: loss and its gradient in one sweep per row.
* ``sgd`` / ``momentum`` / ``adam``: one sweep over the flat parameter buffer.

Each op runs serially below ``PAR_MIN`` elements (a parallel launch costs more than
the work there) and over row blocks with ``prange`` above, except inside
``serial_ops()`` (the MLP's op-by-op path around OpenBLAS GEMMs: see there why). Reductions (db, losses)
use a partition of the rows that depends on the shape only, never on the thread
count, and every column goes through the same operation sequence (columns are
SIMD lanes), so identical neurons stay bitwise identical and results do not
depend on the number of threads. No fastmath: LLVM does not contract a*b+c.

Fully fused narrow-net step (every width <= ``FUSED_MAX_WIDTH``)::

    train_step_fused(X, y, params, grads, sizes, act, alpha=0.01,
                     loss="softmax_cross_entropy", lr=None, offsets=None) -> float

``X`` (B, sizes[0]) C-contiguous, same dtype as ``params``; ``y`` int64 labels (B,)
for "softmax_cross_entropy" or targets (B, sizes[-1]) for "mse". ``params`` /
``grads`` are the flat 1-D buffers, layout [W0 (in, out) row-major, b0, W1, b1, ...]
unless ``offsets`` = (w_off, b_off) int64 arrays give each layer's start. ``grads``
is overwritten with the mean-batch gradient; when ``lr`` is given, SGD
(params -= lr * grads) is applied in the same call if the loss and every gradient
entry are finite (for momentum/adam call ``lr=None`` then the optimizer op).
Hidden layers use ``act``; the last is linear. It runs forward and backward tile
by tile (``TILE_ROWS`` rows held in cache), without BLAS calls, and returns the
loss. ``FusedStep`` is the same step prepared once per (sizes, batch, dtype, ...),
returning (loss, number of non-finite gradient entries) for the caller's checks;
``use_fused(sizes, batch)`` says when it is the faster choice (measured, see there).

``all_finite(a)``: no inf/NaN in ``a`` (an integer count, one read).
"""
from __future__ import annotations

import math
import threading

import numpy as np
from numba import njit, prange

from ._numba_env import CACHE, parallel_launch

NAME = "numba"
xp = np

_JIT = dict(cache=CACHE, error_model="numpy", nogil=True)   # CACHE: see _numba_env
_INL = dict(_JIT, inline="always")

PAR_MIN = 1 << 15          # elements below which an op runs in the calling thread
ROW_BLOCKS_MAX = 8         # row blocks of a parallel reduction (fixed by the shape)
FUSED_MAX_WIDTH = 128
TILE_ROWS = 32             # rows of a batch tile in the fused step
FUSED_CHUNKS = 4           # independent gradient accumulators of the fused step

# Per-thread state (threading.local): scratch buffers (two threads training nets of the same
# shape at once must not share them) and the serial_ops flag.
_TLS = threading.local()


def _par(n: int) -> bool:
    """Run an op over n elements on Numba's thread pool? Not below PAR_MIN, not inside serial_ops."""
    return n >= PAR_MIN and not getattr(_TLS, "serial", False)


def _call(kernel, *args):
    """``kernel(*args)``; a ``parallel=True`` kernel goes through ``_numba_env.parallel_launch``
    (serialized under Numba's workqueue threading layer, which aborts on concurrent launches)."""
    if kernel.targetoptions.get("parallel"):
        return parallel_launch(kernel, *args)
    return kernel(*args)


class serial_ops:
    """``with serial_ops():`` every op of this module runs in the calling thread (same results: the
    partitions of the reductions depend on the shapes only). For steps whose GEMMs are OpenBLAS
    calls: OpenBLAS's workers spin-wait after a call and Numba's OpenMP workers after a parallel
    region, so alternating the two pools makes each wait for the other's spinning threads to be
    descheduled. Measured on 2 cores, [784, 1024, 1024, 10] x 256 op-by-op step with OpenBLAS:
    53 ms with the ops on Numba's pool, 17 ms with them serial, 14 ms of it GEMMs; width 32, 2
    layers, batch 1024: 19 ms vs 0.3 ms. Re-entrant; per thread."""

    def __enter__(self):
        self._prev = getattr(_TLS, "serial", False)
        _TLS.serial = True
        return self

    def __exit__(self, *exc):
        _TLS.serial = self._prev
        return False

ACT_CODES = {"linear": 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "sigmoid": 4,
             "gelu": 5, "gelu_tanh": 6, "selu": 7}
LOSS_CODES = {"softmax_cross_entropy": 0, "softmax_xent": 0, "cross_entropy": 0, "mse": 1}

SELU_LAMBDA = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717


def _consts(dtype):
    # read once per kernel into local scalars of the array's dtype (no float64 promotion)
    # c[10]: the largest finite value (|g| <= c[10] is False for inf and NaN: the finiteness counts)
    return np.array([1.0, 0.5, math.sqrt(2.0 / math.pi), 0.044715, 3 * 0.044715,
                     1.0 / math.sqrt(2.0), 1.0 / math.sqrt(2.0 * math.pi),
                     SELU_LAMBDA, SELU_LAMBDA * SELU_ALPHA, 0.0, np.finfo(dtype).max], dtype=dtype)


_CST = {np.dtype(np.float32): _consts(np.float32), np.dtype(np.float64): _consts(np.float64)}


def _act_code(act):
    try:
        return ACT_CODES[act]
    except KeyError:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACT_CODES)}") from None


# ---------------------------------------------------------------------------
# per-row activation sweeps (inlined; the branch on the code is outside the
# column loop, so the loops without libm calls vectorize)
# ---------------------------------------------------------------------------
@njit(**_INL)
def _fwd_row(z, b, a, i, code, alpha, c):
    """z[i] += b; a[i] = f(z[i])."""
    n = z.shape[1]
    one, half, k0, k1 = c[0], c[1], c[2], c[3]
    rs2, lam, lamal, zero = c[5], c[7], c[8], c[9]
    zi = z[i]
    ai = a[i]
    if code == 0:
        for j in range(n):
            v = zi[j] + b[j]
            zi[j] = v
            ai[j] = v
    elif code == 1:
        for j in range(n):
            v = zi[j] + b[j]
            zi[j] = v
            ai[j] = v if v > zero else zero
    elif code == 2:
        for j in range(n):
            v = zi[j] + b[j]
            zi[j] = v
            ai[j] = v if v > zero else alpha * v
    elif code == 3:
        for j in range(n):
            v = zi[j] + b[j]
            zi[j] = v
            ai[j] = math.tanh(v)
    elif code == 4:
        for j in range(n):
            v = zi[j] + b[j]
            zi[j] = v
            ai[j] = one / (one + math.exp(-v))
    elif code == 5:
        for j in range(n):
            v = zi[j] + b[j]
            zi[j] = v
            ai[j] = half * v * (one + math.erf(v * rs2))
    elif code == 6:
        for j in range(n):
            v = zi[j] + b[j]
            zi[j] = v
            ai[j] = half * v * (one + math.tanh(k0 * (v + k1 * v * v * v)))
    else:
        for j in range(n):
            v = zi[j] + b[j]
            zi[j] = v
            ai[j] = lam * v if v > zero else lamal * (math.exp(v) - one)


@njit(**_INL)
def _bwd_row(g, z, a, i, code, alpha, c, acc):
    """g[i] *= f'(z[i]); acc += g[i]."""
    n = g.shape[1]
    one, half, k0 = c[0], c[1], c[2]
    k3, rs2, rs2pi, lam, lamal, zero = c[4], c[5], c[6], c[7], c[8], c[9]
    gi = g[i]
    zi = z[i]
    ai = a[i]
    if code == 0:
        for j in range(n):
            acc[j] += gi[j]
    elif code == 1:
        for j in range(n):
            v = gi[j] if zi[j] > zero else zero
            gi[j] = v
            acc[j] += v
    elif code == 2:
        for j in range(n):
            v = gi[j] if zi[j] > zero else gi[j] * alpha
            gi[j] = v
            acc[j] += v
    elif code == 3:
        for j in range(n):
            t = ai[j]
            v = gi[j] * (one - t * t)
            gi[j] = v
            acc[j] += v
    elif code == 4:
        for j in range(n):
            s = ai[j]
            v = gi[j] * (s * (one - s))
            gi[j] = v
            acc[j] += v
    elif code == 5:
        for j in range(n):
            x = zi[j]
            d = half * (one + math.erf(x * rs2)) + x * rs2pi * math.exp(-half * x * x)
            v = gi[j] * d
            gi[j] = v
            acc[j] += v
    elif code == 6:
        for j in range(n):
            x = zi[j]
            t = math.tanh(k0 * (x + c[3] * x * x * x))
            d = half * (one + t) + half * x * (one - t * t) * k0 * (one + k3 * x * x)
            v = gi[j] * d
            gi[j] = v
            acc[j] += v
    else:
        for j in range(n):
            v = gi[j] * lam if zi[j] > zero else gi[j] * (ai[j] + lamal)
            gi[j] = v
            acc[j] += v


# ---------------------------------------------------------------------------
# bias + activation
# ---------------------------------------------------------------------------
@njit(**_JIT)
def _bias_act_ser(z, b, code, alpha, a, c):
    for i in range(z.shape[0]):
        _fwd_row(z, b, a, i, code, alpha, c)


@njit(parallel=True, **_JIT)
def _bias_act_par(z, b, code, alpha, a, c):
    for i in prange(z.shape[0]):
        _fwd_row(z, b, a, i, code, alpha, c)


def bias_act_forward(z, b, act, alpha, a):
    """z += b (row broadcast, z keeps the pre-activation); a = f(z). a may be z for linear."""
    code = _act_code(act)
    c = _CST[z.dtype]
    al = z.dtype.type(alpha)
    if not _par(z.size):
        _bias_act_ser(z, b, code, al, a, c)
    else:
        _call(_bias_act_par, z, b, code, al, a, c)
    return a


# ---------------------------------------------------------------------------
# activation backward + bias gradient
# ---------------------------------------------------------------------------
@njit(**_JIT)
def _act_bwd_one(g, z, a, code, alpha, c, db):
    """One row block: g *= f'(z) row by row, db = sum of the rows in order."""
    db[:] = 0
    for i in range(g.shape[0]):
        _bwd_row(g, z, a, i, code, alpha, c, db)


@njit(**_JIT)
def _sum_parts(part, nblk, db):
    """db = part[0] + part[1] + ... in block order (same for every column)."""
    n = db.shape[0]
    for j in range(n):
        db[j] = part[0, j]
    for k in range(1, nblk):
        pk = part[k]
        for j in range(n):
            db[j] += pk[j]


@njit(**_INL)
def _act_bwd_block(g, z, a, code, alpha, c, part, nblk, k):
    B = g.shape[0]
    r0 = (B * k) // nblk
    r1 = (B * (k + 1)) // nblk
    acc = part[k]
    acc[:] = 0
    for i in range(r0, r1):
        _bwd_row(g, z, a, i, code, alpha, c, acc)


@njit(parallel=True, **_JIT)
def _act_bwd_blocks(g, z, a, code, alpha, c, part, nblk):
    for k in prange(nblk):
        _act_bwd_block(g, z, a, code, alpha, c, part, nblk, k)


@njit(**_JIT)
def _act_bwd_blocks_ser(g, z, a, code, alpha, c, part, nblk):
    for k in range(nblk):
        _act_bwd_block(g, z, a, code, alpha, c, part, nblk, k)


def _scratch(name: str) -> dict:
    d = getattr(_TLS, name, None)
    if d is None:
        d = {}
        setattr(_TLS, name, d)
    return d


def _row_blocks(B, n):
    if B * n < PAR_MIN or B < 2:
        return 1
    return min(ROW_BLOCKS_MAX, B)


def act_backward_bias_grad(g, z, a, act, alpha, db):
    """g *= f'(z) in place (uses a = f(z) where cheaper); db[:] = g.sum(axis=0)."""
    code = _act_code(act)
    B, n = g.shape
    nblk = _row_blocks(B, n)
    key = (nblk, n, g.dtype)
    cache = _scratch("part")
    part = cache.get(key)
    if part is None:
        part = cache[key] = np.empty((nblk, n), g.dtype)
    al, c = g.dtype.type(alpha), _CST[g.dtype]
    if nblk == 1:
        _act_bwd_one(g, z, a, code, al, c, db)
    else:
        # row block k accumulates into part[k]; the blocks run on the pool (or one after another
        # inside serial_ops), then they are summed in block order: the same bits either way
        _call(_act_bwd_blocks if _par(B * n) else _act_bwd_blocks_ser, g, z, a, code, al, c, part, nblk)
        _sum_parts(part, nblk, db)
    return g


# ---------------------------------------------------------------------------
# losses (loss and gradient in one sweep per row)
# ---------------------------------------------------------------------------
@njit(**_INL)
def _xent_row(x, y, d, i, scale):
    """Row i: returns logsumexp(x_i) - x_i[y_i] (float64); d_i = (softmax - onehot) * scale."""
    xi = x[i]
    di = d[i]
    n = xi.shape[0]
    m = xi[0]
    for j in range(1, n):
        if xi[j] > m:
            m = xi[j]
    s = 0.0
    for j in range(n):
        e = math.exp(xi[j] - m)
        di[j] = e
        s += e
    inv = scale / s
    for j in range(n):
        di[j] = di[j] * inv
    t = y[i]
    di[t] = di[t] - scale
    return math.log(s) + float(m) - float(xi[t])


@njit(**_JIT)
def _xent_ser(x, y, d, scale):
    tot = 0.0
    for i in range(x.shape[0]):
        tot += _xent_row(x, y, d, i, scale)
    return tot


@njit(parallel=True, **_JIT)
def _xent_par(x, y, d, scale, rowloss):
    for i in prange(x.shape[0]):
        rowloss[i] = _xent_row(x, y, d, i, scale)
    tot = 0.0
    for i in range(x.shape[0]):
        tot += rowloss[i]
    return tot


def softmax_xent(logits, labels, dlogits):
    """mean_i(logsumexp(logits_i) - logits_i[y_i]); dlogits = (softmax - onehot) / B."""
    B = logits.shape[0]
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    scale = logits.dtype.type(1.0 / B)
    if not _par(logits.size):
        tot = _xent_ser(logits, labels, dlogits, scale)
    else:
        tot = _call(_xent_par, logits, labels, dlogits, scale, np.empty(B, np.float64))
    return tot / B


@njit(**_INL)
def _mse_row(p, t, d, i, scale):
    pi = p[i]
    ti = t[i]
    di = d[i]
    s = 0.0
    for j in range(pi.shape[0]):
        e = pi[j] - ti[j]
        di[j] = e * scale
        s += float(e) * float(e)
    return s


@njit(**_JIT)
def _mse_ser(p, t, d, scale):
    tot = 0.0
    for i in range(p.shape[0]):
        tot += _mse_row(p, t, d, i, scale)
    return tot


@njit(parallel=True, **_JIT)
def _mse_par(p, t, d, scale, rowloss):
    for i in prange(p.shape[0]):
        rowloss[i] = _mse_row(p, t, d, i, scale)
    tot = 0.0
    for i in range(p.shape[0]):
        tot += rowloss[i]
    return tot


def mse(pred, target, dpred):
    """mean over all elements of (pred - target)**2; dpred = 2 (pred - target) / pred.size."""
    p2 = pred.reshape(pred.shape[0], -1)
    t2 = np.ascontiguousarray(target, dtype=pred.dtype).reshape(p2.shape)
    d2 = dpred.reshape(p2.shape)
    scale = pred.dtype.type(2.0 / pred.size)
    if not _par(pred.size):
        tot = _mse_ser(p2, t2, d2, scale)
    else:
        tot = _call(_mse_par, p2, t2, d2, scale, np.empty(p2.shape[0], np.float64))
    return tot / pred.size


# ---------------------------------------------------------------------------
# optimizers: one sweep over the flat buffers
# ---------------------------------------------------------------------------
OPT_CHUNK = 1 << 14


@njit(**_INL)
def _sgd_span(p, g, lr, i0, i1):
    for i in range(i0, i1):
        p[i] -= lr * g[i]


@njit(**_JIT)
def _sgd_ser(p, g, lr):
    _sgd_span(p, g, lr, 0, p.shape[0])


@njit(parallel=True, **_JIT)
def _sgd_par(p, g, lr):
    n = p.shape[0]
    for k in prange((n + OPT_CHUNK - 1) // OPT_CHUNK):
        _sgd_span(p, g, lr, k * OPT_CHUNK, min(n, (k + 1) * OPT_CHUNK))


def sgd(p, g, lr):
    """p -= lr * g."""
    lr = p.dtype.type(lr)
    _call(_sgd_par if _par(p.size) else _sgd_ser, p, g, lr)
    return p


@njit(**_INL)
def _mom_span(p, g, v, lr, mu, i0, i1):
    for i in range(i0, i1):
        vi = mu * v[i] + g[i]
        v[i] = vi
        p[i] -= lr * vi


@njit(**_JIT)
def _mom_ser(p, g, v, lr, mu):
    _mom_span(p, g, v, lr, mu, 0, p.shape[0])


@njit(parallel=True, **_JIT)
def _mom_par(p, g, v, lr, mu):
    n = p.shape[0]
    for k in prange((n + OPT_CHUNK - 1) // OPT_CHUNK):
        _mom_span(p, g, v, lr, mu, k * OPT_CHUNK, min(n, (k + 1) * OPT_CHUNK))


def momentum(p, g, v, lr, mu):
    """v = mu v + g; p -= lr v (torch SGD momentum, dampening 0)."""
    t = p.dtype.type
    _call(_mom_par if _par(p.size) else _mom_ser, p, g, v, t(lr), t(mu))
    return p


@njit(**_INL)
def _adam_span(p, g, m, v, b1, c1, b2, c2, step, rbc2, eps, i0, i1):
    for i in range(i0, i1):
        gi = g[i]
        mi = b1 * m[i] + c1 * gi
        vi = b2 * v[i] + c2 * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] -= step * mi / (np.sqrt(vi) * rbc2 + eps)


@njit(**_JIT)
def _adam_ser(p, g, m, v, b1, c1, b2, c2, step, rbc2, eps):
    _adam_span(p, g, m, v, b1, c1, b2, c2, step, rbc2, eps, 0, p.shape[0])


@njit(parallel=True, **_JIT)
def _adam_par(p, g, m, v, b1, c1, b2, c2, step, rbc2, eps):
    n = p.shape[0]
    for k in prange((n + OPT_CHUNK - 1) // OPT_CHUNK):
        _adam_span(p, g, m, v, b1, c1, b2, c2, step, rbc2, eps, k * OPT_CHUNK, min(n, (k + 1) * OPT_CHUNK))


def adam(p, g, m, v, lr, b1, b2, eps, t):
    """torch.optim.Adam: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)."""
    T = p.dtype.type
    bc1 = 1.0 - b1 ** t
    bc2 = 1.0 - b2 ** t
    args = (T(b1), T(1.0 - b1), T(b2), T(1.0 - b2), T(lr / bc1), T(1.0 / math.sqrt(bc2)), T(eps))
    _call(_adam_par if _par(p.size) else _adam_ser, p, g, m, v, *args)
    return p


# ---------------------------------------------------------------------------
# finiteness: a count of the entries that are inf or NaN (|v| <= max is False for both)
# ---------------------------------------------------------------------------
@njit(**_INL)
def _nonfinite_span(a, hi, i0, i1):
    n = 0
    for i in range(i0, i1):          # an integer count: vectorizes without reassociating floats
        n += 0 if abs(a[i]) <= hi else 1
    return n


@njit(**_JIT)
def _nonfinite_ser(a, hi):
    return _nonfinite_span(a, hi, 0, a.shape[0])


@njit(parallel=True, **_JIT)
def _nonfinite_par(a, hi):
    n = a.shape[0]
    tot = 0
    for k in prange((n + OPT_CHUNK - 1) // OPT_CHUNK):
        tot += _nonfinite_span(a, hi, k * OPT_CHUNK, min(n, (k + 1) * OPT_CHUNK))
    return tot


def all_finite(a) -> bool:
    """True when no entry of the float array ``a`` is inf or NaN (one read of ``a``)."""
    a1 = a.reshape(-1)
    hi = _CST[a1.dtype][10]
    return _call(_nonfinite_par if _par(a1.size) else _nonfinite_ser, a1, hi) == 0


# ---------------------------------------------------------------------------
# GEMM. OpenBLAS computes edge columns of a tile with other kernels (other
# summation order / FMA use): identical columns of b can give columns of a @ b
# that differ in the last bit (measured: sgemm at widths 64 and 1024 too), which
# breaks the symmetry of a constant-init net. ``matmul`` is therefore a Numba GEMM
# in which every output element is sum_k a[i,k] * b[k,j], k in order, each product
# rounded (no FMA) -- bitwise the _mlp_ref order -- vectorized across columns and
# cache-blocked (JB columns x KB rows of b stay in L1, k unrolled by 4 without
# changing the order). ``blas_matmul`` is np.matmul (OpenBLAS), faster on big
# shapes; use it only where no two columns need to stay equal.
# ---------------------------------------------------------------------------
GEMM_JB = 256        # columns of a b panel (one out-row segment: 1 KiB float32)
GEMM_KB = 32         # rows of a b panel (32 x 256 float32 = 32 KiB: L1)
GEMM_IB = 32         # rows of out per task
GEMM_PAR_MIN = 1 << 18   # multiply-adds below which the GEMM runs in the calling thread


@njit(**_INL)
def _gemm_block(a, b, out, i0, i1, j0, j1):
    # row segments are sliced to [j0, j1) so the column loop starts at 0: an index that
    # LLVM cannot prove non-negative keeps Numba's wraparound select and blocks SIMD
    K = a.shape[1]
    n = j1 - j0
    for i in range(i0, i1):
        oi = out[i, j0:j1]
        for j in range(n):
            oi[j] = 0
    for k0 in range(0, K, GEMM_KB):
        k1 = min(K, k0 + GEMM_KB)
        k4 = k1 - (k1 - k0) % 4
        i2 = i1 - (i1 - i0) % 2
        for i in range(i0, i2, 2):      # two rows share each load of b (order per row unchanged)
            oi = out[i, j0:j1]
            oh = out[i + 1, j0:j1]
            for k in range(k0, k4, 4):
                x0, x1, x2, x3 = a[i, k], a[i, k + 1], a[i, k + 2], a[i, k + 3]
                y0, y1, y2, y3 = a[i + 1, k], a[i + 1, k + 1], a[i + 1, k + 2], a[i + 1, k + 3]
                w0, w1, w2, w3 = b[k, j0:j1], b[k + 1, j0:j1], b[k + 2, j0:j1], b[k + 3, j0:j1]
                for j in range(n):
                    v0, v1, v2, v3 = w0[j], w1[j], w2[j], w3[j]
                    oi[j] = (((oi[j] + x0 * v0) + x1 * v1) + x2 * v2) + x3 * v3
                    oh[j] = (((oh[j] + y0 * v0) + y1 * v1) + y2 * v2) + y3 * v3
        for i in range(i2, i1):
            oi = out[i, j0:j1]
            for k in range(k0, k4, 4):
                x0, x1, x2, x3 = a[i, k], a[i, k + 1], a[i, k + 2], a[i, k + 3]
                w0, w1, w2, w3 = b[k, j0:j1], b[k + 1, j0:j1], b[k + 2, j0:j1], b[k + 3, j0:j1]
                for j in range(n):
                    oi[j] = (((oi[j] + x0 * w0[j]) + x1 * w1[j]) + x2 * w2[j]) + x3 * w3[j]
        for i in range(i0, i1):
            oi = out[i, j0:j1]
            for k in range(k4, k1):
                x0 = a[i, k]
                w0 = b[k, j0:j1]
                for j in range(n):
                    oi[j] = oi[j] + x0 * w0[j]


@njit(**_JIT)
def _gemm_ser(a, b, out):
    M, N = out.shape
    for j0 in range(0, N, GEMM_JB):
        _gemm_block(a, b, out, 0, M, j0, min(N, j0 + GEMM_JB))


@njit(parallel=True, **_JIT)
def _gemm_par(a, b, out, ib):
    M, N = out.shape
    nI = (M + ib - 1) // ib
    nJ = (N + GEMM_JB - 1) // GEMM_JB
    for t in prange(nI * nJ):
        bi = t // nJ
        bj = t - bi * nJ
        _gemm_block(a, b, out, bi * ib, min(M, (bi + 1) * ib),
                    bj * GEMM_JB, min(N, (bj + 1) * GEMM_JB))


def _row_block(M, N):
    # rows per task: large enough that a b panel is reused over many rows, small enough
    # that there are >= 4 tasks for the two-core pool
    nJ = -(-N // GEMM_JB)
    ib = GEMM_IB
    while ib < 128 and -(-M // (2 * ib)) * nJ >= 4:
        ib *= 2
    return ib


def matmul(a, b, out):
    """out = a @ b with every column computed alike (a / b may be transposed views).

    A b that is not C-contiguous (W.T) is copied into a reused buffer first."""
    if not b.flags.c_contiguous:
        key = (b.shape, b.dtype)
        cache = _scratch("bt")
        buf = cache.get(key)
        if buf is None:
            if len(cache) > 32:
                cache.clear()
            buf = cache[key] = np.empty(b.shape, b.dtype)
        np.copyto(buf, b)
        b = buf
    if a.shape[0] * a.shape[1] * b.shape[1] < GEMM_PAR_MIN or getattr(_TLS, "serial", False):
        _gemm_ser(a, b, out)
    else:
        _call(_gemm_par, a, b, out, _row_block(a.shape[0], b.shape[1]))
    return out


def blas_matmul(a, b, out):
    """out = a @ b through OpenBLAS: faster on big shapes, identical columns not kept identical."""
    return np.matmul(a, b, out=out)


# ---------------------------------------------------------------------------
# fully fused narrow-net step: forward + backward of a batch tile in cache
# ---------------------------------------------------------------------------
@njit(**_INL)
def _tile_row_gemm1(x, W, z, i, n_in, n_out, k4):
    """z[i] = x[i] @ W, k in order (unrolled by 4, same summation order as k one at a time)."""
    zi = z[i]
    xi = x[i]
    for j in range(n_out):
        zi[j] = 0
    for k in range(0, k4, 4):
        x0, x1, x2, x3 = xi[k], xi[k + 1], xi[k + 2], xi[k + 3]
        w0, w1, w2, w3 = W[k], W[k + 1], W[k + 2], W[k + 3]
        for j in range(n_out):
            zi[j] = (((zi[j] + x0 * w0[j]) + x1 * w1[j]) + x2 * w2[j]) + x3 * w3[j]
    for k in range(k4, n_in):
        x0 = xi[k]
        w0 = W[k]
        for j in range(n_out):
            zi[j] = zi[j] + x0 * w0[j]


# The tile GEMMs and the chunk body below are separate compiled functions, not inlined: inlined
# into the (parallel) fused step they made its first compile take ~60 s per dtype; as calls
# (a few per tile) they cost nothing measurable and compile once (~15 s per dtype in all).
@njit(**_JIT)
def _tile_gemm(x, W, z, T):
    """z[:T] = x[:T] @ W (W row-major (n_in, n_out)): each element summed over k in order; four
    rows at a time share every load of W (more independent sums in flight; the order of each
    element's sum is unchanged). Serves the forward GEMM (W) and the backprop GEMM (W.T stored)."""
    n_in = W.shape[0]
    n_out = W.shape[1]
    k4 = n_in - n_in % 4
    T4 = T - T % 4
    for i in range(0, T4, 4):
        za, zb, zc, zd = z[i], z[i + 1], z[i + 2], z[i + 3]
        xa, xb, xc, xd = x[i], x[i + 1], x[i + 2], x[i + 3]
        for j in range(n_out):
            za[j] = 0
            zb[j] = 0
            zc[j] = 0
            zd[j] = 0
        for k in range(0, k4, 4):
            a0, a1, a2, a3 = xa[k], xa[k + 1], xa[k + 2], xa[k + 3]
            b0, b1, b2, b3 = xb[k], xb[k + 1], xb[k + 2], xb[k + 3]
            c0, c1, c2, c3 = xc[k], xc[k + 1], xc[k + 2], xc[k + 3]
            d0, d1, d2, d3 = xd[k], xd[k + 1], xd[k + 2], xd[k + 3]
            w0, w1, w2, w3 = W[k], W[k + 1], W[k + 2], W[k + 3]
            for j in range(n_out):
                v0, v1, v2, v3 = w0[j], w1[j], w2[j], w3[j]
                za[j] = (((za[j] + a0 * v0) + a1 * v1) + a2 * v2) + a3 * v3
                zb[j] = (((zb[j] + b0 * v0) + b1 * v1) + b2 * v2) + b3 * v3
                zc[j] = (((zc[j] + c0 * v0) + c1 * v1) + c2 * v2) + c3 * v3
                zd[j] = (((zd[j] + d0 * v0) + d1 * v1) + d2 * v2) + d3 * v3
        for k in range(k4, n_in):
            a0, b0, c0, d0 = xa[k], xb[k], xc[k], xd[k]
            w0 = W[k]
            for j in range(n_out):
                v0 = w0[j]
                za[j] = za[j] + a0 * v0
                zb[j] = zb[j] + b0 * v0
                zc[j] = zc[j] + c0 * v0
                zd[j] = zd[j] + d0 * v0
    for i in range(T4, T):
        _tile_row_gemm1(x, W, z, i, n_in, n_out, k4)


@njit(**_INL)
def _tile_dw_row(x, g, dW, k, n_out, T, t4):
    dk = dW[k]
    for i in range(0, t4, 4):
        x0, x1, x2, x3 = x[i, k], x[i + 1, k], x[i + 2, k], x[i + 3, k]
        g0, g1, g2, g3 = g[i], g[i + 1], g[i + 2], g[i + 3]
        for j in range(n_out):
            dk[j] = (((dk[j] + x0 * g0[j]) + x1 * g1[j]) + x2 * g2[j]) + x3 * g3[j]
    for i in range(t4, T):
        x0 = x[i, k]
        g0 = g[i]
        for j in range(n_out):
            dk[j] = dk[j] + x0 * g0[j]


@njit(**_JIT)
def _tile_dw_gemm(x, g, dW, T):
    """dW += x[:T].T @ g[:T], rows of the tile added in order (4 at a time, same order); four rows
    of dW at a time share every load of g (more independent sums in flight, same order each)."""
    n_in = dW.shape[0]
    n_out = dW.shape[1]
    t4 = T - T % 4
    n4 = n_in - n_in % 4
    for k in range(0, n4, 4):
        da, db, dc, dd = dW[k], dW[k + 1], dW[k + 2], dW[k + 3]
        for i in range(0, t4, 4):
            a0, a1, a2, a3 = x[i, k], x[i + 1, k], x[i + 2, k], x[i + 3, k]
            b0, b1, b2, b3 = x[i, k + 1], x[i + 1, k + 1], x[i + 2, k + 1], x[i + 3, k + 1]
            c0, c1, c2, c3 = x[i, k + 2], x[i + 1, k + 2], x[i + 2, k + 2], x[i + 3, k + 2]
            d0, d1, d2, d3 = x[i, k + 3], x[i + 1, k + 3], x[i + 2, k + 3], x[i + 3, k + 3]
            g0, g1, g2, g3 = g[i], g[i + 1], g[i + 2], g[i + 3]
            for j in range(n_out):
                v0, v1, v2, v3 = g0[j], g1[j], g2[j], g3[j]
                da[j] = (((da[j] + a0 * v0) + a1 * v1) + a2 * v2) + a3 * v3
                db[j] = (((db[j] + b0 * v0) + b1 * v1) + b2 * v2) + b3 * v3
                dc[j] = (((dc[j] + c0 * v0) + c1 * v1) + c2 * v2) + c3 * v3
                dd[j] = (((dd[j] + d0 * v0) + d1 * v1) + d2 * v2) + d3 * v3
        for i in range(t4, T):
            a0, b0, c0, d0 = x[i, k], x[i, k + 1], x[i, k + 2], x[i, k + 3]
            g0 = g[i]
            for j in range(n_out):
                v0 = g0[j]
                da[j] = da[j] + a0 * v0
                db[j] = db[j] + b0 * v0
                dc[j] = dc[j] + c0 * v0
                dd[j] = dd[j] + d0 * v0
    for k in range(n4, n_in):
        _tile_dw_row(x, g, dW, k, n_out, T, t4)


@njit(**_INL)
def _mat(buf, off, rows, cols):
    return buf[off:off + rows * cols].reshape((rows, cols))


@njit(**_INL)
def _layer(flat, w_off, b_off, sizes, l):
    n_in = sizes[l]
    n_out = sizes[l + 1]
    W = flat[w_off[l]:w_off[l] + n_in * n_out].reshape((n_in, n_out))
    b = flat[b_off[l]:b_off[l] + n_out]
    return W, b


# Not inlined (see _tile_gemm): compiled once per dtype, shared by the serial and parallel step.
@njit(**_JIT)
def _fused_chunk(X, labels, target, params, WTflat, gacc, sizes, w_off, b_off, code, alpha, c,
                 loss_code, r0, r1, scale, Z, A, G0, G1):
    """Forward + backward of rows r0..r1 tile by tile; gradients added into gacc."""
    L = sizes.shape[0] - 1
    mw = G0.shape[0] // TILE_ROWS
    tot = 0.0
    for t0 in range(r0, r1, TILE_ROWS):
        T = min(TILE_ROWS, r1 - t0)
        xt = X[t0:t0 + T]
        # forward
        for l in range(L):
            W, b = _layer(params, w_off, b_off, sizes, l)
            n_out = sizes[l + 1]
            zl = _mat(Z, l * TILE_ROWS * mw, T, n_out)
            al = _mat(A, l * TILE_ROWS * mw, T, n_out)
            if l == 0:
                _tile_gemm(xt, W, zl, T)
            else:
                _tile_gemm(_mat(A, (l - 1) * TILE_ROWS * mw, T, sizes[l]), W, zl, T)
            cl = code if l < L - 1 else 0
            for i in range(T):
                _fwd_row(zl, b, al, i, cl, alpha, c)
        # loss on the logits tile -> G0
        n_last = sizes[L]
        out = _mat(A, (L - 1) * TILE_ROWS * mw, T, n_last)
        g = _mat(G0, 0, T, n_last)
        if loss_code == 0:
            yt = labels[t0:t0 + T]
            for i in range(T):
                t = yt[i]
                if t < 0 or t >= n_last:        # a bad label: NaN loss (the caller reports it), no update
                    tot += np.nan
                    gi = g[i]
                    for j in range(n_last):
                        gi[j] = 0
                else:
                    tot += _xent_row(out, yt, g, i, scale)
        else:
            tt = target[t0:t0 + T]
            for i in range(T):
                tot += _mse_row(out, tt, g, i, scale)
        # backward
        cur = 0
        for l in range(L - 1, -1, -1):
            n_in = sizes[l]
            n_out = sizes[l + 1]
            g = _mat(G0 if cur == 0 else G1, 0, T, n_out)
            dW, db = _layer(gacc, w_off, b_off, sizes, l)
            for i in range(T):
                gi = g[i]
                for j in range(n_out):
                    db[j] += gi[j]
            if l == 0:
                _tile_dw_gemm(xt, g, dW, T)
            else:
                _tile_dw_gemm(_mat(A, (l - 1) * TILE_ROWS * mw, T, n_in), g, dW, T)
                WT = WTflat[w_off[l]:w_off[l] + n_in * n_out].reshape((n_out, n_in))
                gn = _mat(G1 if cur == 0 else G0, 0, T, n_in)
                _tile_gemm(g, WT, gn, T)
                zp = _mat(Z, (l - 1) * TILE_ROWS * mw, T, n_in)
                ap = _mat(A, (l - 1) * TILE_ROWS * mw, T, n_in)
                if code != 0:
                    for i in range(T):
                        _bwd_row_noacc(gn, zp, ap, i, code, alpha, c)
                cur = 1 - cur
    return tot


@njit(**_INL)
def _bwd_row_noacc(g, z, a, i, code, alpha, c):
    # the bias gradient is summed by the caller (db of the layer below, after its dW)
    n = g.shape[1]
    one, half, k0 = c[0], c[1], c[2]
    k3, rs2, rs2pi, lam, lamal, zero = c[4], c[5], c[6], c[7], c[8], c[9]
    gi = g[i]
    zi = z[i]
    ai = a[i]
    if code == 1:
        for j in range(n):
            gi[j] = gi[j] if zi[j] > zero else zero
    elif code == 2:
        for j in range(n):
            gi[j] = gi[j] if zi[j] > zero else gi[j] * alpha
    elif code == 3:
        for j in range(n):
            t = ai[j]
            gi[j] = gi[j] * (one - t * t)
    elif code == 4:
        for j in range(n):
            s = ai[j]
            gi[j] = gi[j] * (s * (one - s))
    elif code == 5:
        for j in range(n):
            x = zi[j]
            gi[j] = gi[j] * (half * (one + math.erf(x * rs2)) + x * rs2pi * math.exp(-half * x * x))
    elif code == 6:
        for j in range(n):
            x = zi[j]
            t = math.tanh(k0 * (x + c[3] * x * x * x))
            gi[j] = gi[j] * (half * (one + t) + half * x * (one - t * t) * k0 * (one + k3 * x * x))
    elif code == 7:
        for j in range(n):
            gi[j] = gi[j] * lam if zi[j] > zero else gi[j] * (ai[j] + lamal)


@njit(**_INL)
def _fused_body(X, labels, target, params, grads, WTflat, gbuf, sizes, w_off, b_off, code, alpha, c,
                loss_code, scale, lr, do_sgd, Z, A, G0, G1, closs, nbad):
    """Returns (loss sum in float64, number of non-finite gradient entries); the SGD update
    (do_sgd) only when both are clean.

    Why a non-finite X always shows in the count: dW0[k, j] = sum_i X[i, k] * g[i, j] is computed
    by _tile_dw_gemm for every (k, j), each product formed (no skipping of zeros), and inf * 0,
    inf * x and NaN * x are all non-finite, which no later addition makes finite. So X needs no
    separate pass: the caller looks at X only when this step already failed."""
    B = X.shape[0]
    L = sizes.shape[0] - 1
    nch = gbuf.shape[0]
    P = grads.shape[0]
    # W.T of every layer (for the dx GEMM as axpy over contiguous rows)
    for l in range(1, L):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        W = params[w_off[l]:w_off[l] + n_in * n_out].reshape((n_in, n_out))
        WT = WTflat[w_off[l]:w_off[l] + n_in * n_out].reshape((n_out, n_in))
        for j in range(n_out):
            for k in range(n_in):
                WT[j, k] = W[k, j]
    ntiles = (B + TILE_ROWS - 1) // TILE_ROWS
    for ch in prange(nch):
        gacc = gbuf[ch]
        gacc[:] = 0
        t_lo = (ntiles * ch) // nch
        t_hi = (ntiles * (ch + 1)) // nch
        r0 = t_lo * TILE_ROWS
        r1 = min(B, t_hi * TILE_ROWS)
        closs[ch] = _fused_chunk(X, labels, target, params, WTflat, gacc, sizes, w_off, b_off, code,
                                 alpha, c, loss_code, r0, r1, scale, Z[ch], A[ch], G0[ch], G1[ch])
    # chunk sums in chunk order (same for every parameter), counting non-finite entries on the way
    hi = c[10]
    nblk = (P + RED_BLOCK - 1) // RED_BLOCK
    for kb in prange(nblk):
        i0 = kb * RED_BLOCK
        i1 = min(P, i0 + RED_BLOCK)
        for i in range(i0, i1):
            grads[i] = gbuf[0, i]
        for ch in range(1, nch):
            gch = gbuf[ch]
            for i in range(i0, i1):
                grads[i] += gch[i]
        nbad[kb] = _nonfinite_span(grads, hi, i0, i1)
    tot = 0.0
    for ch in range(nch):
        tot += closs[ch]
    bad = 0
    for kb in range(nblk):
        bad += nbad[kb]
    if do_sgd and bad == 0 and math.isfinite(tot):
        if P < PAR_MIN:
            for i in range(P):
                params[i] -= lr * grads[i]
        else:
            for kb in prange(nblk):
                i0 = kb * RED_BLOCK
                i1 = min(P, i0 + RED_BLOCK)
                for i in range(i0, i1):
                    params[i] -= lr * grads[i]
    return tot, bad


@njit(parallel=True, **_JIT)
def _fused_step_par(X, labels, target, params, grads, WTflat, gbuf, sizes, w_off, b_off, code, alpha, c,
                    loss_code, scale, lr, do_sgd, Z, A, G0, G1, closs, nbad):
    return _fused_body(X, labels, target, params, grads, WTflat, gbuf, sizes, w_off, b_off, code, alpha, c,
                       loss_code, scale, lr, do_sgd, Z, A, G0, G1, closs, nbad)


@njit(**_JIT)
def _fused_step_ser(X, labels, target, params, grads, WTflat, gbuf, sizes, w_off, b_off, code, alpha, c,
                    loss_code, scale, lr, do_sgd, Z, A, G0, G1, closs, nbad):
    return _fused_body(X, labels, target, params, grads, WTflat, gbuf, sizes, w_off, b_off, code, alpha, c,
                       loss_code, scale, lr, do_sgd, Z, A, G0, G1, closs, nbad)


RED_BLOCK = 4096           # parameters per block of the final gradient reduction
# batch x sum(n_in x n_out) multiply-adds below which the fused step stays serial
# (measured: [64, 64, 64, 1] x 128 = 1.06M runs ~20% faster on 2 threads than on 1)
FUSED_PAR_MIN = 1 << 19


def layer_offsets(sizes):
    """Offsets of W_l and b_l in the flat buffer, layout [W0, b0, W1, b1, ...]."""
    w_off, b_off, o = [], [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        w_off.append(o)
        o += n_in * n_out
        b_off.append(o)
        o += n_out
    return np.array(w_off, np.int64), np.array(b_off, np.int64), o


# When the fused step beats the op-by-op step: time of sbf.MLP.step with the fused step / with
# the op-by-op path, float32, ReLU, softmax-CE over 10 classes, SGD, sizes [width] * depth + [10],
# best of 5, both timed alternately on 2 cores of a machine loaded by other jobs (so +-10%):
# `python benchmarks/test_mlp.py fused-grid`.
#   op-by-op with OpenBLAS GEMMs (random inits):
#                 batch     1     16    128   1024
#   width  16  depth  2   0.26   0.34   0.76   1.24
#   width  16  depth  8   0.18   0.30   0.85   0.64
#   width  16  depth 30   0.15   0.29   0.45   0.65
#   width  32  depth  2   0.30   0.44   1.02   0.63
#   width  32  depth  8   0.31   0.52   0.65   0.61
#   width  32  depth 30   0.33   0.57   0.66   0.62
#   width  64  depth  2   0.45   0.68   0.92   0.84
#   width  64  depth  8   0.64   1.00   0.86   0.77
#   width  64  depth 30   0.84   1.01   0.82   0.72
#   width 128  depth  2   0.74   1.30   1.12   0.92
#   width 128  depth  8   1.41   1.45   0.98   0.94
#   width 128  depth 30   1.56   1.61   1.03   0.96
# At width 128 and small batches the fused step loses: it transposes every W (O(params) per step)
# and its tile GEMMs are no match for OpenBLAS there. Against the op-by-op path with the column-exact
# Numba GEMM (exact_symmetry, constant inits) it wins except at batch 1 beyond width 64: fused /
# op-by-op 1.18 (width 128, depth 2, batch 1), 1.21 (128, 8, 1), 0.81 (128, 8, 16), 0.76 (128, 30, 16),
# 0.80 (128, 2, 16), 0.71 (64, 8, 16), 0.70 (128, 8, 128), 0.63 (16, 2, 1024).
FUSED_ALWAYS_WIDTH = 64        # at or below: the fused step (measured faster or equal above)
FUSED_MIN_BATCH_WIDE = 512     # widths in (64, 128]: fused from this batch on (measured 0.92-0.96 at 1024)


def use_fused(sizes, batch=None, exact=False):
    """True where the fused step is the faster choice for these widths and batch (see the table
    above): every width <= FUSED_ALWAYS_WIDTH; widths up to FUSED_MAX_WIDTH from batch
    FUSED_MIN_BATCH_WIDE on (``exact``: against the column-exact GEMM, from batch 2 on)."""
    w = max(sizes)
    if w > FUSED_MAX_WIDTH:
        return False
    if w <= FUSED_ALWAYS_WIDTH or batch is None:
        return True
    return batch >= 2 if exact else batch >= FUSED_MIN_BATCH_WIDE


_DUMMY_LABELS = np.zeros(1, np.int64)
_DUMMY_T = {np.dtype(np.float32): np.zeros((1, 1), np.float32),
            np.dtype(np.float64): np.zeros((1, 1), np.float64)}


class FusedStep:
    """``train_step_fused`` prepared once for (sizes, batch, dtype, act, alpha, loss): offsets,
    workspaces and the kernel's scalar arguments are built here, so a call is the kernel and little
    else (the MLP keeps one per batch size).

    ``step(X, y, params, grads, lr=None) -> (loss, n_bad)``: the mean loss and the number of
    non-finite gradient entries; ``grads`` is overwritten with the gradient. With ``lr`` the SGD
    update params -= lr * grads is applied in the same call, but only when the loss is finite and
    n_bad == 0; otherwise ``params`` is not touched. A non-finite entry of X always makes n_bad > 0
    (see ``_fused_body``), a label outside [0, sizes[-1]) a NaN loss, a non-finite MSE target a
    non-finite loss: a failed step says "look at the inputs, then call it a divergence".
    Preconditions (the caller's; not checked here): X (batch, sizes[0]) C-contiguous of ``dtype``,
    y int64 (batch,) labels or (batch, sizes[-1]) C-contiguous targets of ``dtype``, params /
    grads 1-D of ``dtype`` with the layout [W0, b0, W1, b1, ...].
    """

    def __init__(self, sizes, batch, dtype, act, alpha=0.01, loss="softmax_cross_entropy", offsets=None,
                 n_params=None):
        dt = np.dtype(dtype)
        sizes = tuple(int(s) for s in sizes)
        self.sizes, self.batch, self.dtype = sizes, int(batch), dt
        self.w_off, self.b_off, P = layer_offsets(sizes)
        if offsets is not None:          # another layout of the flat buffers: (w_off, b_off), n_params
            self.w_off, self.b_off = (np.array(o, np.int64) for o in offsets)
            P = int(n_params)
        self.n_params = P
        self.loss_code = LOSS_CODES[loss]
        self.act_code = _act_code(act)
        self.alpha = dt.type(alpha)
        self.c = _CST[dt]
        B = self.batch
        ntiles = -(-B // TILE_ROWS)
        nch = max(1, min(FUSED_CHUNKS, ntiles))
        L = len(sizes) - 1
        mw = max(sizes)
        self.WT, self.gbuf = np.zeros(P, dt), np.zeros((nch, P), dt)
        self.Z, self.A = np.zeros((nch, L * TILE_ROWS * mw), dt), np.zeros((nch, L * TILE_ROWS * mw), dt)
        self.G0, self.G1 = np.zeros((nch, TILE_ROWS * mw), dt), np.zeros((nch, TILE_ROWS * mw), dt)
        self.closs = np.zeros(nch, np.float64)
        self.nbad = np.zeros(-(-P // RED_BLOCK), np.int64)
        self.sizes_arr = np.array(sizes, np.int64)
        if self.loss_code == 0:
            self.scale, self.div = dt.type(1.0 / B), B
        else:
            self.scale, self.div = dt.type(2.0 / (B * sizes[-1])), B * sizes[-1]
        macs = B * sum(i * o for i, o in zip(sizes[:-1], sizes[1:]))
        self.kernel = _fused_step_ser if macs < FUSED_PAR_MIN else _fused_step_par
        self._zero_lr = dt.type(0.0)

    def __call__(self, X, y, params, grads, lr=None):
        if self.loss_code == 0:
            labels, target = y, _DUMMY_T[self.dtype]
        else:
            labels, target = _DUMMY_LABELS, y
        tot, bad = _call(self.kernel, X, labels, target, params, grads, self.WT, self.gbuf, self.sizes_arr,
                         self.w_off, self.b_off, self.act_code, self.alpha, self.c, self.loss_code, self.scale,
                         self._zero_lr if lr is None else self.dtype.type(lr), lr is not None,
                         self.Z, self.A, self.G0, self.G1, self.closs, self.nbad)
        return tot / self.div, int(bad)


def fused_step(sizes, batch, dtype, act, alpha=0.01, loss="softmax_cross_entropy") -> FusedStep:
    """A FusedStep for these settings (its own workspaces: one per net and batch size)."""
    return FusedStep(sizes, batch, dtype, act, alpha, loss)


def train_step_fused(X, y, params, grads, sizes, act, alpha=0.01, loss="softmax_cross_entropy",
                     lr=None, offsets=None):
    """Forward + backward (+ SGD when lr is given) of a narrow MLP in one fused call.

    See the module docstring for the arguments. Returns the mean loss (float). With ``lr``, the
    update is skipped (params untouched) when the loss or a gradient entry is not finite.
    The prepared FusedStep is cached per thread and settings.
    """
    dt = params.dtype
    B = X.shape[0]
    off_key = None if offsets is None else tuple(tuple(int(v) for v in o) for o in offsets)
    key = (B, tuple(sizes), dt, act, float(alpha), loss, off_key, params.shape[0])
    cache = _scratch("plans")
    plan = cache.get(key)
    if plan is None:
        if len(cache) > 16:
            cache.clear()
        plan = cache[key] = FusedStep(sizes, B, dt, act, alpha, loss, offsets, params.shape[0])
    X = np.ascontiguousarray(X, dtype=dt)
    if plan.loss_code == 0:
        y = np.ascontiguousarray(y, dtype=np.int64)
    else:
        y = np.ascontiguousarray(y, dtype=dt).reshape(B, -1)
    return plan(X, y, params, grads, lr)[0]


matmul_blas = blas_matmul
