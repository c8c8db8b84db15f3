"""MLP ops on a CUDA GPU: cuBLAS GEMMs (``cupy.matmul``) + the fused kernels of ``kernels/sbf_mlp.cu``.

The ops interface is the one of ``symbreak_fast._mlp_ref`` (NumPy) and ``backends.mlp_numba``:
``xp, matmul, blas_matmul, bias_act_forward, act_backward_bias_grad, softmax_xent, mse, sgd,
momentum, adam``, on C-contiguous cupy arrays of one float dtype (float32 or float64; the GEMMs
also take transposed views). Kernels run on the array's device and the current stream; only the
losses synchronize (they return a Python float).

GEMMs, as on the CPU: ``blas_matmul`` is cuBLAS (fast; the MLP's choice for random inits) and
``matmul`` the column-exact ``sbf_mlp_gemm_exact`` kernel (each output element one sequential
k-sum of rounded products, no FMA), which keeps identical weight columns giving bitwise identical
outputs: the MLP uses it when ``exact_symmetry`` is on (constant inits). It computes the same bits
as ``_mlp_ref.matmul`` and ``mlp_numba.matmul``, and is far slower than cuBLAS.

Loading follows ``cuda_cupy``: we compile with NVRTC ourselves (CuPy's ``RawModule(code=)`` would
append ``-ftz=true``) into a cubin cached on disk under a name hashed from (source, options, arch,
NVRTC version), and load it once per (device, options) and process.

FMA contraction IS allowed here (``-fmad=true``), unlike the generators: MLP arithmetic is not part
of the bit contract, and a fused multiply-add is faster and at least as accurate. Subnormals are
kept (``-ftz=false``) and division/sqrt are IEEE. float32 GEMMs are plain float32 (CuPy's default;
``CUPY_TF32=1`` would switch cuBLAS to TF32 tensor cores, which the tolerances here do not cover).

Every reduction is done by one thread in a fixed order and finished in a fixed order (no atomics),
so results are deterministic run to run on a given device; see the top of ``sbf_mlp.cu``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import cuda_cupy

NAME = "cupy"
DEVICE = "cuda"

KERNEL_FILE = "sbf_mlp.cu"
# See the module docstring: FMA allowed, IEEE div/sqrt, subnormals kept. Listing -fmad=true and
# the IEEE defaults explicitly documents the choice and keys the cubin cache on it.
NVRTC_OPTIONS = ("-std=c++17", "-fmad=true", "-prec-div=true", "-prec-sqrt=true", "-ftz=false")
THREADS = 256             # matches __launch_bounds__(256) in sbf_mlp.cu
BLOCKS_PER_SM = 8         # grid-stride kernels: enough resident warps to saturate memory bandwidth
COLSUM_ITEMS_PER_SM = 4 * THREADS   # target (row chunk, column) items per SM for the bias gradient
MIN_CHUNK_ROWS = 32       # the fewest rows a bias-gradient item sums (bounds the partials' size)

# activation name -> code (SBF_ACT_* in sbf_mlp.cu: same order)
ACTIVATIONS = ("linear", "relu", "leaky_relu", "tanh", "sigmoid", "gelu", "gelu_tanh", "selu")
DTYPES = ("float32", "float64")

KERNEL_NAMES = tuple(
    [f"sbf_mlp_{k}_{a}_{d}" for k in ("bias_act", "act_grad") for d in DTYPES for a in ACTIVATIONS]
    + [f"sbf_mlp_{k}_{d}" for k in ("colsum_finish", "softmax_xent", "mse", "gemm_exact", "sgd", "momentum",
                                    "adam")
       for d in DTYPES])

_MODULES: dict = {}


def __getattr__(name):
    if name == "xp":               # resolved at use: the cupy in sys.modules (tests swap it)
        import cupy
        return cupy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------
# compile, cache, load
# ---------------------------------------------------------------------------
def kernel_source() -> str:
    """sbf_mlp.cu with its local includes inlined (only emulate_grid.h, in the host-only branch)."""
    return cuda_cupy.expand_source(KERNEL_FILE)


def compile_mlp_kernels(arch: str, target: str = "cubin", options: tuple[str, ...] = NVRTC_OPTIONS) -> bytes:
    """Compile ``sbf_mlp.cu`` with NVRTC for ``sm_<arch>`` ("cubin") or ``compute_<arch>`` ("ptx").
    Needs no GPU or driver."""
    return cuda_cupy.nvrtc_compile(kernel_source(), KERNEL_FILE, arch, target, options)


def _binary_path(arch: str, options: tuple[str, ...]) -> Path:
    """The cached cubin of sbf_mlp.cu for ``arch`` (``cuda_cupy.cached_binary``)."""
    return cuda_cupy.cached_binary("sbf_mlp", kernel_source(), arch, options,
                                   lambda: compile_mlp_kernels(arch, "cubin", options))


def load_module(device_id: int, options: tuple[str, ...] = NVRTC_OPTIONS):
    """The ``cupy.RawModule`` of sbf_mlp.cu on ``device_id``: loaded once per (device, options)."""
    k = (device_id, options)
    mod = _MODULES.get(k)
    if mod is None:
        import cupy
        mod, fns = cuda_cupy.load_cubin(device_id, lambda arch: _binary_path(arch, options), KERNEL_NAMES)
        with cupy.cuda.Device(device_id):
            unused = cupy.zeros(1, np.float64)    # the `part` argument of unchunked launches
        _MODULES[k] = mod = (mod, fns, unused)
    return mod


def _kernel(device_id: int, name: str):
    return load_module(device_id)[1][name]


# ---------------------------------------------------------------------------
# launch plans (pure Python; the host emulation runs the same ones)
# ---------------------------------------------------------------------------
def grid_for(items: int, sm_count: int) -> int:
    """Blocks for a grid-stride loop over ``items`` work items."""
    return max(1, min(-(-items // THREADS), sm_count * BLOCKS_PER_SM))


def colsum_plan(rows: int, cols: int, sm_count: int) -> tuple[int, int, int]:
    """(chunk_rows, n_chunks, grid) of the bias-gradient kernel: enough (chunk, column) items to
    fill the device, but at least MIN_CHUNK_ROWS rows per item."""
    if rows <= 0 or cols <= 0:
        return 0, 1, 1
    n_chunks = max(1, min(-(-sm_count * COLSUM_ITEMS_PER_SM // cols), -(-rows // MIN_CHUNK_ROWS)))
    chunk_rows = -(-rows // n_chunks)
    n_chunks = -(-rows // chunk_rows)
    return chunk_rows, n_chunks, grid_for(cols * n_chunks, sm_count)


# ---------------------------------------------------------------------------
# the ops
# ---------------------------------------------------------------------------
def _dtype_name(a) -> str:
    dt = a.dtype
    if dt == np.float32:
        return "float32"
    if dt == np.float64:
        return "float64"
    raise TypeError(f"mlp_cupy supports float32 and float64 arrays, got {dt}")


def _check(*arrays, dtype=None):
    """Arrays must be C-contiguous cupy arrays of one dtype on one device: the kernels index them
    as dense row-major buffers. Returns (device id, dtype name)."""
    dev = None
    name = dtype
    for a in arrays:
        if a is None:
            continue
        if not a.flags.c_contiguous:
            raise ValueError("mlp_cupy kernels need C-contiguous arrays")
        n = _dtype_name(a)
        if name is None:
            name = n
        elif n != name:
            raise TypeError(f"mixed dtypes: {n} and {name}")
        d = a.device.id
        if dev is None:
            dev = d
        elif d != dev:
            raise ValueError(f"arrays on different devices: cuda:{dev} and cuda:{d}")
    return dev, name


def _act_code(act: str) -> str:
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {ACTIVATIONS}")
    return act


def _alpha(act: str, alpha) -> np.float64:
    if alpha is None:
        alpha = 0.01 if act == "leaky_relu" else 0.0
    return np.float64(alpha)


def blas_matmul(a, b, out):
    """out = a @ b with cuBLAS (transposed views a.T / b.T are passed to cuBLAS as transposes).
    Fast; does not keep identical columns identical (see ``matmul``)."""
    import cupy
    return cupy.matmul(a, b, out=out)


def _gemm_operand(x):
    """(C-contiguous array holding x's elements, stride of x's axis 0, stride of axis 1), in elements:
    x itself, or for a transposed view (F-contiguous) its C-contiguous transpose; else a copy."""
    if x.flags.c_contiguous:
        return x, x.shape[1], 1
    if x.flags.f_contiguous:
        return x.T, 1, x.shape[0]
    import cupy
    x = cupy.ascontiguousarray(x)
    return x, x.shape[1], 1


def matmul(a, b, out):
    """out = a @ b, column-exact (``sbf_mlp_gemm_exact``): every element sum_k a[i, k] * b[k, j], k in
    order, each product rounded (no FMA); identical columns of b give bitwise identical columns of
    out, and the bits equal _mlp_ref.matmul's. a / b may be transposed views. Slow next to cuBLAS."""
    import cupy
    rows, inner = a.shape
    if b.shape[0] != inner or out.shape != (rows, b.shape[1]):
        raise ValueError(f"matmul shapes {a.shape} @ {b.shape} -> {out.shape} do not match")
    if not out.flags.c_contiguous:
        raise ValueError("mlp_cupy kernels need C-contiguous arrays")
    cols = out.shape[1]
    a_base, sa_i, sa_k = _gemm_operand(a)
    b_base, sb_k, sb_j = _gemm_operand(b)
    dev, dt = _check(a_base, b_base, out)
    if rows * cols == 0:
        return out
    with cupy.cuda.Device(dev):
        _kernel(dev, f"sbf_mlp_gemm_exact_{dt}")(
            (grid_for(rows * cols, cuda_cupy._sm_count(dev)),), (THREADS,),
            (a_base, b_base, out, np.int64(rows), np.int64(cols), np.int64(inner), np.int64(sa_i),
             np.int64(sa_k), np.int64(sb_k), np.int64(sb_j)))
    return out


def bias_act_forward(z, b, act, alpha, a):
    """z += b (row broadcast; z keeps the pre-activation), a = f(z); ``a`` may be ``z`` for linear."""
    import cupy
    act = _act_code(act)
    rows, cols = z.shape
    if b.shape != (cols,) or a.shape != z.shape:
        raise ValueError(f"shapes: z {z.shape}, b {b.shape}, a {a.shape}")
    dev, dt = _check(z, b, a)
    n = rows * cols
    if n == 0:
        return a
    with cupy.cuda.Device(dev):
        fn = _kernel(dev, f"sbf_mlp_bias_act_{act}_{dt}")
        fn((grid_for(n, cuda_cupy._sm_count(dev)),), (THREADS,),
           (z, b, a, np.int64(rows), np.int64(cols), _alpha(act, alpha)))
    return a


def act_backward_bias_grad(g, z, a, act, alpha, db):
    """g *= f'(z) in place (from z, or from a = f(z) for tanh/sigmoid), then db[:] = g.sum(axis=0)
    (summed in double, in a fixed order)."""
    import cupy
    act = _act_code(act)
    rows, cols = g.shape
    if act in ("tanh", "sigmoid") and a is None:
        raise ValueError(f"{act}: the backward pass needs a = f(z)")
    z = g if z is None else z          # linear ignores z and a; they must still be valid pointers
    a = z if a is None else a
    if z.shape != g.shape or a.shape != g.shape or db.shape != (cols,):
        raise ValueError(f"shapes: g {g.shape}, z {z.shape}, a {a.shape}, db {db.shape}")
    dev, dt = _check(g, z, a, db)
    if cols == 0:
        return db
    with cupy.cuda.Device(dev):
        sm = cuda_cupy._sm_count(dev)
        _act_grad_colsum(dev, sm, f"sbf_mlp_act_grad_{act}_{dt}", dt, g, z, a, rows, cols,
                         _alpha(act, alpha), db)
    return db


def _act_grad_colsum(dev, sm, name, dt, g, z, a, rows, cols, alpha, out):
    """Launch the act_grad kernel ``name`` (+ the finishing sum when the rows are chunked)."""
    import cupy
    chunk_rows, n_chunks, grid = colsum_plan(rows, cols, sm)
    part = cupy.empty(n_chunks * cols, np.float64) if n_chunks > 1 else load_module(dev)[2]
    _kernel(dev, name)((grid,), (THREADS,), (g, z, a, np.int64(rows), np.int64(cols), alpha,
                                             np.int64(chunk_rows), np.int64(n_chunks), part, out))
    if n_chunks > 1:
        _kernel(dev, f"sbf_mlp_colsum_finish_{dt}")((grid_for(cols, sm),), (THREADS,),
                                                   (part, np.int64(n_chunks), np.int64(cols), out))


def _sum_f64(dev, sm, x) -> float:
    """sum(x) of a 1-D float64 cupy array, in a fixed order (the bias-gradient kernels with one
    column), as a Python float (synchronizes)."""
    import cupy
    out = cupy.empty(1, np.float64)
    _act_grad_colsum(dev, sm, "sbf_mlp_act_grad_linear_float64", "float64", x, x, x, x.size, 1,
                     np.float64(0.0), out)
    return float(out.get()[0])


def softmax_xent(logits, labels, dlogits) -> float:
    """Mean softmax cross-entropy of ``logits`` (B, C) against int64 ``labels`` (B,); writes
    dlogits = (softmax(logits) - onehot(labels)) / B. Raises ValueError for labels outside [0, C)."""
    import cupy
    rows, cols = logits.shape
    if labels.shape != (rows,) or dlogits.shape != logits.shape:
        raise ValueError(f"shapes: logits {logits.shape}, labels {labels.shape}, dlogits {dlogits.shape}")
    if labels.dtype != np.int64:
        raise TypeError(f"labels must be int64, got {labels.dtype}")
    if not labels.flags.c_contiguous:
        raise ValueError("mlp_cupy kernels need C-contiguous arrays")
    dev, dt = _check(logits, dlogits)
    if rows == 0 or cols == 0:
        raise ValueError(f"softmax_xent needs a non-empty batch and classes, got {logits.shape}")
    with cupy.cuda.Device(dev):
        sm = cuda_cupy._sm_count(dev)
        row_loss = cupy.empty(rows, np.float64)
        _kernel(dev, f"sbf_mlp_softmax_xent_{dt}")(
            (grid_for(rows, sm),), (THREADS,),
            (logits, labels, dlogits, row_loss, np.int64(rows), np.int64(cols), np.float64(1.0 / rows)))
        loss = _sum_f64(dev, sm, row_loss) / rows
    if math.isnan(loss):
        bad = int(((labels < 0) | (labels >= cols)).sum())
        if bad:
            raise ValueError(f"{bad} label(s) outside [0, {cols})")
    return loss


def mse(pred, target, dpred) -> float:
    """mean((pred - target)**2) over all elements; dpred = 2 (pred - target) / pred.size."""
    import cupy
    if target.shape != pred.shape or dpred.shape != pred.shape:
        raise ValueError(f"shapes: pred {pred.shape}, target {target.shape}, dpred {dpred.shape}")
    dev, dt = _check(pred, target, dpred)
    n = pred.size
    if n == 0:
        raise ValueError("mse of an empty prediction")
    with cupy.cuda.Device(dev):
        sm = cuda_cupy._sm_count(dev)
        grid = grid_for(n, sm)
        part = cupy.empty(grid * THREADS, np.float64)
        _kernel(dev, f"sbf_mlp_mse_{dt}")((grid,), (THREADS,),
                                          (pred, target, dpred, part, np.int64(n), np.float64(2.0 / n)))
        return _sum_f64(dev, sm, part) / n


def _flat_launch(name_stem, p, arrays, scalars):
    import cupy
    if p.ndim != 1 or any(x.shape != p.shape for x in arrays):
        raise ValueError("optimizer buffers must be 1-D and of one size: "
                         f"{[p.shape] + [x.shape for x in arrays]}")
    dev, dt = _check(p, *arrays)
    n = p.size
    if n == 0:
        return
    with cupy.cuda.Device(dev):
        _kernel(dev, f"sbf_mlp_{name_stem}_{dt}")((grid_for(n, cuda_cupy._sm_count(dev)),), (THREADS,),
                                                  (p, *arrays, np.int64(n), *(np.float64(s) for s in scalars)))


def sgd(p, g, lr):
    """p -= lr g (flat buffers, one pass)."""
    _flat_launch("sgd", p, (g,), (lr,))


def momentum(p, g, v, lr, mu):
    """v = mu v + g; p -= lr v (torch.optim.SGD momentum, no dampening/nesterov)."""
    _flat_launch("momentum", p, (g, v), (lr, mu))


def adam(p, g, m, v, lr, b1, b2, eps, t):
    """torch.optim.Adam step ``t`` (>= 1): bias-corrected, eps added to sqrt(v_hat)."""
    t = int(t)
    if t < 1:
        raise ValueError(f"adam step t must be >= 1, got {t}")
    bc1 = 1.0 - b1 ** t
    bc2 = 1.0 - b2 ** t
    _flat_launch("adam", p, (g, m, v), (1.0 - b1, b2, 1.0 - b2, eps, lr / bc1, math.sqrt(bc2)))
