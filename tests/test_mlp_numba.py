"""The fused Numba MLP ops against the readable NumPy reference (symbreak_fast._mlp_ref),
the fully fused narrow-net step against the op-by-op step, and symmetry: identical
hidden neurons stay bitwise identical through both paths."""
import numpy as np
import pytest

pytest.importorskip("numba")
from symbreak_fast import _mlp_ref as R
from symbreak_fast.backends import mlp_numba as M

ACTS = list(M.ACT_CODES)
DTYPES = [np.float32, np.float64]
# (rows, cols): batch 1, odd widths, and one above PAR_MIN (the parallel kernels)
SHAPES = [(1, 7), (37, 19), (300, 130)]


def tol(dt):
    return {"rtol": 2e-5, "atol": 2e-6} if dt == np.float32 else {"rtol": 1e-12, "atol": 1e-13}


def rand(rng, shape, dt, scale=2.0):
    return (rng.standard_normal(shape) * scale).astype(dt)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_bias_act_and_backward_match_reference(act, dt):
    rng = np.random.default_rng(1)
    for B, n in SHAPES:
        z0, b, g0 = rand(rng, (B, n), dt), rand(rng, n, dt), rand(rng, (B, n), dt)
        z1, a1 = z0.copy(), np.empty_like(z0)
        z2, a2 = z0.copy(), np.empty_like(z0)
        M.bias_act_forward(z1, b, act, 0.02, a1)
        R.bias_act_forward(z2, b, act, 0.02, a2)
        np.testing.assert_array_equal(z1, z2)           # z + b: one rounding, same bits
        np.testing.assert_allclose(a1, a2, **tol(dt))
        g1, g2 = g0.copy(), g0.copy()
        db1, db2 = np.empty(n, dt), np.empty(n, dt)
        M.act_backward_bias_grad(g1, z1, a1, act, 0.02, db1)
        R.act_backward_bias_grad(g2, z2, a2, act, 0.02, db2)
        # f'(z) cancels near its zeros (gelu, gelu_tanh): compare on the scale of g
        np.testing.assert_allclose(g1, g2, rtol=tol(dt)["rtol"], atol=tol(dt)["rtol"] * np.abs(g0).max())
        np.testing.assert_allclose(db1, db2, rtol=tol(dt)["rtol"] * 10, atol=tol(dt)["atol"] * B)


def test_linear_in_place():
    rng = np.random.default_rng(2)
    z, b = rand(rng, (5, 3), np.float32), rand(rng, 3, np.float32)
    ref = z + b
    M.bias_act_forward(z, b, "linear", 0.0, z)
    np.testing.assert_array_equal(z, ref)


@pytest.mark.parametrize("dt", DTYPES)
def test_matmul_bitwise_reference_and_transposed_views(dt):
    rng = np.random.default_rng(3)
    for m, k, n in [(1, 5, 7), (17, 33, 65), (70, 130, 300), (3, 1, 1)]:   # last-but-one: parallel
        a, b = rand(rng, (m, k), dt), rand(rng, (k, n), dt)
        ref = np.empty((m, n), dt)
        R.matmul(a, b, ref)
        for aa, bb in [(a, b), (np.ascontiguousarray(a.T).T, np.ascontiguousarray(b.T).T)]:
            out = np.empty((m, n), dt)
            M.matmul(aa, bb, out)
            np.testing.assert_array_equal(out, ref)
        np.testing.assert_allclose(ref, a @ b, rtol=1e-4 if dt == np.float32 else 1e-10, atol=1e-3)


def test_matmul_keeps_identical_columns():
    rng = np.random.default_rng(4)
    for B, k, n in [(17, 64, 64), (64, 100, 130), (256, 64, 1024)]:   # shapes where OpenBLAS sgemm does not
        x = rand(rng, (B, k), np.float32)
        W = np.repeat(rand(rng, (k, 1), np.float32), n, axis=1)
        out = np.empty((B, n), np.float32)
        M.matmul(x, W, out)
        assert (out == out[:, :1]).all()
        g = np.repeat(rand(rng, (B, 1), np.float32), n, axis=1)
        dW = np.empty((k, n), np.float32)
        M.matmul(x.T, g, dW)
        assert (dW == dW[:, :1]).all()


@pytest.mark.parametrize("dt", DTYPES)
def test_losses_match_reference(dt):
    rng = np.random.default_rng(5)
    for B, C in [(1, 3), (33, 10), (40, 1000)]:
        logits = rand(rng, (B, C), dt, 5.0)
        y = rng.integers(0, C, B)
        d1, d2 = np.empty_like(logits), np.empty_like(logits)
        l1, l2 = M.softmax_xent(logits, y, d1), R.softmax_xent(logits, y, d2)
        assert l1 == pytest.approx(l2, rel=1e-5 if dt == np.float32 else 1e-12)
        np.testing.assert_allclose(d1, d2, **tol(dt))
        t = rand(rng, (B, C), dt)
        l1, l2 = M.mse(logits, t, d1), R.mse(logits, t, d2)
        assert l1 == pytest.approx(l2, rel=1e-5 if dt == np.float32 else 1e-12)
        np.testing.assert_allclose(d1, d2, **tol(dt))


@pytest.mark.parametrize("dt", DTYPES)
def test_optimizers_match_reference(dt):
    rng = np.random.default_rng(6)
    for n in (1, 1001, 70001):
        p0, g = rand(rng, n, dt), rand(rng, n, dt)
        p1, p2 = p0.copy(), p0.copy()
        M.sgd(p1, g, 0.1)
        R.sgd(p2, g, 0.1)
        np.testing.assert_array_equal(p1, p2)
        v1, v2 = rand(rng, n, dt), None
        v2 = v1.copy()
        p1, p2 = p0.copy(), p0.copy()
        M.momentum(p1, g, v1, 0.1, 0.9)
        R.momentum(p2, g, v2, 0.1, 0.9)
        np.testing.assert_allclose(p1, p2, **tol(dt))
        np.testing.assert_allclose(v1, v2, **tol(dt))
        m1 = rand(rng, n, dt, 0.1)
        w1 = np.abs(rand(rng, n, dt, 0.1))
        m2, w2 = m1.copy(), w1.copy()
        p1, p2 = p0.copy(), p0.copy()
        for t in (1, 2, 3):
            M.adam(p1, g, m1, w1, 1e-3, 0.9, 0.999, 1e-8, t)
            R.adam(p2, g, m2, w2, 1e-3, 0.9, 0.999, 1e-8, t)
        np.testing.assert_allclose(p1, p2, **tol(dt))
        np.testing.assert_allclose(m1, m2, **tol(dt))
        np.testing.assert_allclose(w1, w2, **tol(dt))


# ---- op-by-op step vs the fully fused step ---------------------------------
def views(buf, sizes, l):
    w_off, b_off, _ = M.layer_offsets(sizes)
    i, o = sizes[l], sizes[l + 1]
    return buf[w_off[l]:w_off[l] + i * o].reshape(i, o), buf[b_off[l]:b_off[l] + o]


def op_step(ops, X, y, params, grads, sizes, act, loss, lr):
    L, B, dt = len(sizes) - 1, X.shape[0], params.dtype
    zs, as_, x = [], [], X
    for l in range(L):
        W, b = views(params, sizes, l)
        z = np.empty((B, sizes[l + 1]), dt)
        ops.matmul(x, W, z)
        a = np.empty_like(z) if l < L - 1 else z
        ops.bias_act_forward(z, b, act if l < L - 1 else "linear", 0.01, a)
        zs.append(z)
        as_.append(a)
        x = a
    g = np.empty_like(zs[-1])
    lv = ops.mse(zs[-1], y, g) if loss == "mse" else ops.softmax_xent(zs[-1], y, g)
    for l in range(L - 1, -1, -1):
        dW, db = views(grads, sizes, l)
        ops.act_backward_bias_grad(g, zs[l], as_[l], act if l < L - 1 else "linear", 0.01, db)
        ops.matmul(X.T if l == 0 else as_[l - 1].T, g, dW)
        if l:
            gn = np.empty((B, sizes[l]), dt)
            ops.matmul(g, views(params, sizes, l)[0].T, gn)
            g = gn
    ops.sgd(params, grads, lr)
    return lv


def make_net(sizes, B, loss, dt, seed=0, const=None):
    rng = np.random.default_rng(seed)
    P = M.layer_offsets(sizes)[2]
    params = (rng.standard_normal(P) * 0.3).astype(dt) if const is None else np.full(P, const, dt)
    X = rng.standard_normal((B, sizes[0])).astype(dt)
    y = rng.integers(0, sizes[-1], B) if loss != "mse" else rng.standard_normal((B, sizes[-1])).astype(dt)
    return params, X, y


CASES = [([5, 7, 3], 1, "relu", "softmax_cross_entropy", np.float32),
         ([13, 33, 17, 4], 45, "gelu", "mse", np.float32),
         ([64, 64, 64, 1], 128, "tanh", "mse", np.float32),
         ([20, 128, 9, 10], 100, "selu", "softmax_cross_entropy", np.float64),
         ([3, 10, 10, 2], 70, "leaky_relu", "softmax_cross_entropy", np.float64)]


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("sizes,B,act,loss,dt", CASES)
def test_fused_step_matches_op_by_op(sizes, B, act, loss, dt, parallel, monkeypatch):
    if parallel and dt == np.float64:
        pytest.skip("the parallel kernel is the same code; float32 covers it (compile time)")
    monkeypatch.setattr(M, "FUSED_PAR_MIN", 0 if parallel else 1 << 62)
    params, X, y = make_net(sizes, B, loss, dt)
    p_ref, g_ref = params.copy(), np.empty_like(params)
    p_f, g_f = params.copy(), np.empty_like(params)
    for _ in range(3):
        l_ref = op_step(M, X, y, p_ref, g_ref, sizes, act, loss, 0.05)
        l_f = M.train_step_fused(X, y, p_f, g_f, sizes, act, 0.01, loss, lr=0.05)
        assert l_f == pytest.approx(l_ref, rel=1e-5 if dt == np.float32 else 1e-12)
        np.testing.assert_allclose(g_f, g_ref, rtol=1e-4, atol=1e-5 if dt == np.float32 else 1e-12)
        np.testing.assert_allclose(p_f, p_ref, rtol=1e-4, atol=1e-5 if dt == np.float32 else 1e-12)
    g_n = np.empty_like(params)   # lr=None: gradients only, parameters untouched
    before = p_f.copy()
    M.train_step_fused(X, y, p_f, g_n, sizes, act, 0.01, loss)
    np.testing.assert_array_equal(p_f, before)


# ---- the fused step's gradient itself (not through a scale-invariant optimizer) ----------
# sizes not divisible by the 4-wide unrolls, batches of 1, across tiles (TILE_ROWS = 32) and chunks
FUSED_GRID = [([3, 2], 1), ([7, 33, 3], 5), ([5, 100, 17, 4], 33), ([1, 9, 1], 70), ([6, 31, 29, 5], 1),
              ([13, 128, 65, 3], 37)]
LOSSES = ["softmax_cross_entropy", "mse"]


def grad_tol(dt, g_ref):
    """float32: each gradient entry is a sum of B products of O(1) factors through a few layers, so
    its rounding error is ~B * eps relative to max |g|; 2e-5 of max |g| (plus rtol 2e-4) leaves
    room for that and fails a 1% error in any entry that is not tiny. float64: the same at 1e-11."""
    scale = float(np.abs(g_ref).max())
    return (dict(rtol=2e-4, atol=2e-5 * scale) if dt == np.float32 else dict(rtol=1e-10, atol=1e-11 * scale))


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("act", ACTS)
def test_fused_gradient_and_sgd_update_match_reference(act, loss, dt):
    """train_step_fused's gradient (lr=None) and its SGD update ((p0 - p1) / lr) against the
    reference ops (_mlp_ref) entry by entry, for every activation, both losses, both dtypes."""
    lr = 0.1
    for sizes, B in FUSED_GRID:
        params, X, y = make_net(sizes, B, loss, dt, seed=B)
        p_ref, g_ref = params.copy(), np.empty_like(params)
        op_step(R, X, y, p_ref, g_ref, sizes, act, loss, lr)
        tol = grad_tol(dt, g_ref)
        where = f"{act} {loss} {np.dtype(dt).name} {sizes} B={B}"
        p_f, g_f = params.copy(), np.full_like(params, np.nan)
        l_f = M.train_step_fused(X, y, p_f, g_f, sizes, act, 0.01, loss)
        np.testing.assert_array_equal(p_f, params)                       # lr=None: no update
        np.testing.assert_allclose(g_f, g_ref, err_msg=f"gradient {where}", **tol)
        p_s, g_s = params.copy(), np.empty_like(params)
        l_s = M.train_step_fused(X, y, p_s, g_s, sizes, act, 0.01, loss, lr=lr)
        assert l_s == l_f
        np.testing.assert_array_equal(g_s, g_f)
        # the update is p -= lr * g, rounded once: (p0 - p1) / lr recovers g to ~eps * |p| / lr
        upd = (params.astype(np.float64) - p_s) / lr
        np.testing.assert_allclose(upd, g_ref, rtol=tol["rtol"], atol=tol["atol"] + 4 * np.finfo(dt).eps *
                                   float(np.abs(params).max()) / lr, err_msg=f"sgd update {where}")
        if g_ref.any():       # (one class: softmax-CE is 0 whatever the weights, so is its gradient)
            with pytest.raises(AssertionError):   # the comparison can fail: a 1% error in the gradient
                np.testing.assert_allclose(g_f * 1.01, g_ref, **tol)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("act", ACTS)
def test_fused_gradient_matches_finite_differences(act, loss):
    """float64: the fused step's gradient against central differences of its own loss."""
    sizes, B = [3, 5, 4, 3], 6
    params, X, y = make_net(sizes, B, loss, np.float64, seed=4)
    grads = np.empty_like(params)
    M.train_step_fused(X, y, params, grads, sizes, act, 0.01, loss)
    scratch = np.empty_like(params)
    h = 1e-6
    fd = np.empty_like(params)
    for i in range(params.size):
        old = params[i]
        params[i] = old + h
        lp = M.train_step_fused(X, y, params, scratch, sizes, act, 0.01, loss)
        params[i] = old - h
        lm = M.train_step_fused(X, y, params, scratch, sizes, act, 0.01, loss)
        params[i] = old
        fd[i] = (lp - lm) / (2 * h)
    np.testing.assert_allclose(grads, fd, rtol=2e-5, atol=1e-8)


@pytest.mark.parametrize("act", ["relu", "linear", "tanh"])
def test_fused_step_refuses_non_finite_input_without_updating(act):
    """FusedStep with lr: a NaN/inf anywhere in X shows as non-finite gradient entries, a bad label
    or a non-finite target as a non-finite loss; params are untouched in every case."""
    sizes, B = [6, 17, 5], 37
    for loss in LOSSES:
        params, X, y = make_net(sizes, B, loss, np.float32, seed=1)
        step = M.FusedStep(sizes, B, np.float32, act, 0.01, loss)
        grads = np.empty_like(params)
        loss0, bad = step(X, y, params.copy(), grads, 0.1)
        assert bad == 0 and np.isfinite(loss0)
        for (i, j), v in (((0, 0), np.nan), ((B - 1, 5), np.inf), ((17, 2), -np.inf), ((36, 0), np.nan)):
            Xb = X.copy()
            Xb[i, j] = v
            p = params.copy()
            lo, bad = step(Xb, y, p, grads, 0.1)
            assert bad > 0, (loss, i, j, v)
            np.testing.assert_array_equal(p, params)
        yb = y.copy()
        if loss == "mse":
            yb[3, 1] = np.inf
        else:
            yb[3] = sizes[-1]
        p = params.copy()
        lo, bad = step(X, yb, p, grads, 0.1)
        assert not np.isfinite(lo)
        np.testing.assert_array_equal(p, params)
        if loss != "mse":
            yb[3] = -1
            assert not np.isfinite(step(X, yb, p, grads, 0.1)[0])
            np.testing.assert_array_equal(p, params)


def test_serial_ops_give_the_same_bits():
    """Inside serial_ops every op runs in the calling thread with the same partitions: bitwise the
    parallel results (shapes above PAR_MIN, so the parallel kernels run outside)."""
    rng = np.random.default_rng(8)
    B, n = 300, 130
    z0, b, g0 = rand(rng, (B, n), np.float32), rand(rng, n, np.float32), rand(rng, (B, n), np.float32)
    y = rng.integers(0, n, B)
    p0, gp = rand(rng, 70001, np.float32), rand(rng, 70001, np.float32)
    outs = []
    for serial in (False, True):
        with (M.serial_ops() if serial else __import__("contextlib").nullcontext()):
            assert M._par(B * n) is not serial
            z, a, g, db = z0.copy(), np.empty_like(z0), g0.copy(), np.empty(n, np.float32)
            M.bias_act_forward(z, b, "gelu", 0.0, a)
            M.act_backward_bias_grad(g, z, a, "gelu", 0.0, db)
            d = np.empty_like(z)
            lo = M.softmax_xent(a, y, d)
            p, v = p0.copy(), np.zeros_like(p0)
            M.momentum(p, gp, v, 0.1, 0.9)
            outs.append((a, g, db, d, np.float64(lo), p, v, M.all_finite(p)))
    assert not getattr(M._TLS, "serial", False)
    for x, y_ in zip(*outs):
        np.testing.assert_array_equal(x, y_)


def test_mlp_runs_ops_serially_around_blas_only():
    from symbreak_fast.mlp import MLP
    assert MLP([3, 4, 2], backend="numba")._op_section is M.serial_ops          # OpenBLAS GEMMs
    assert MLP([3, 4, 2], backend="numba", exact_symmetry=True)._op_section is not M.serial_ops


def test_all_finite():
    for n in (1, 17, M.PAR_MIN + 5):
        for dt in DTYPES:
            a = np.zeros(n, dt)
            assert M.all_finite(a)
            a[-1] = np.finfo(dt).max
            assert M.all_finite(a)
            for v in (np.inf, -np.inf, np.nan):
                b = a.copy()
                b[n // 2] = v
                assert not M.all_finite(b)
    assert not M.all_finite(np.array([[1.0, 2.0], [np.nan, 0.0]]))


@pytest.mark.parametrize("path", ["ops", "fused"])
def test_constant_init_keeps_hidden_neurons_identical(path):
    sizes, B = [13, 33, 70, 4], 50
    for act in ("relu", "tanh", "gelu_tanh"):
        params, X, y = make_net(sizes, B, "softmax_cross_entropy", np.float32, const=0.05)
        grads = np.empty_like(params)
        for _ in range(5):
            if path == "ops":
                op_step(M, X, y, params, grads, sizes, act, "softmax_cross_entropy", 0.1)
            else:
                M.train_step_fused(X, y, params, grads, sizes, act, 0.01, "softmax_cross_entropy", lr=0.1)
        for l in range(2):
            W, b = views(params, sizes, l)
            assert (W == W[:, :1]).all() and (b == b[0]).all()
            assert not (W == 0.05).all()   # it did train
        W2 = views(params, sizes, 2)[0]
        assert (W2 == W2[:1, :]).all()


def test_use_fused():
    """The rule follows the measured table next to it."""
    assert M.use_fused([64, 64, 64, 1], 128) and M.use_fused([16] * 30 + [10], 1)
    assert not M.use_fused([784, 1024, 1024, 10], 256) and not M.use_fused([129, 2], 4096)
    assert not M.use_fused([128] * 8 + [10], 16) and M.use_fused([128] * 8 + [10], 1024)
    assert M.use_fused([128] * 8 + [10], 16, exact=True) and not M.use_fused([128, 10], 1, exact=True)
    from symbreak_fast.mlp import MLP
    net = MLP([128, 128, 10], backend="numba")
    assert net._plan(16) is None and net._plan(1024) is not None
    net.exact_symmetry = True
    assert net._plan(16) is not None


def test_threads_training_same_shape_nets_match_serial():
    """Scratch buffers are per thread: two threads stepping same-shape nets at once (fused narrow
    path and op-by-op path) give exactly the serial results."""
    import threading

    from symbreak_fast.mlp import MLP
    rng = np.random.default_rng(5)
    X = rng.standard_normal((512, 12)).astype(np.float32)
    y = rng.integers(0, 3, 512).astype(np.int64)
    n = 4

    def run(sizes, key):
        net = MLP(sizes, key=key, backend="numba", lr=0.05)
        for _ in range(60):
            net.step(X, y)
        return net.flat_params.copy()

    for sizes in ([12, 40, 3], [12, 140, 3]):        # fused (<= 128) and op-by-op widths
        serial = [run(sizes, k) for k in range(1, n + 1)]
        got = [None] * n
        ts = [threading.Thread(target=lambda i=i: got.__setitem__(i, run(sizes, i + 1))) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for a, b in zip(got, serial):
            assert np.array_equal(a, b)
