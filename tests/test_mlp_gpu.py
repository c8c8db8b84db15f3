"""The MLP CUDA ops (backends/mlp_cupy.py) on a real GPU against the NumPy reference, and
MLP(device="cuda") training against the CPU. Skipped (not failed) without a usable CUDA device:

    PYTHONPATH=. python -m pytest tests/test_mlp_gpu.py -m gpu -q

Tolerances as in tests/test_mlp_cuda_host.py (libm transcendentals, FMA contraction), plus the
GEMMs: cuBLAS and OpenBLAS sum in different orders, so a dot product of length K agrees to about
K * eps * sum|a_i b_i| (the ``scale`` arguments below). float32 GEMMs are plain float32
(CUPY_TF32 unset); TF32 would need ~1e-3.
"""
import math
import os

import numpy as np
import pytest

from symbreak_fast.backends import cuda_cupy, mlp_cupy

N_DEVICES = cuda_cupy.device_count()          # 0 without cupy / driver / device; never raises
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(N_DEVICES == 0, reason=f"no usable CUDA device: {cuda_cupy.probe()[1]}"),
]

ACTS = mlp_cupy.ACTIVATIONS
TOL = {np.float32: (1e-5, 2e-6), np.float64: (1e-12, 1e-13)}


def close(got, want, dt, scale=1.0, what=""):
    rtol, atol = TOL[np.dtype(dt).type]
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.abs(got - want)
    lim = rtol * np.abs(want) + atol * scale
    bad = np.flatnonzero(~(err <= lim) & ~(np.isnan(got) & np.isnan(want)))
    assert bad.size == 0, (f"{what}: {bad.size} of {got.size} off, worst {err.ravel()[bad].max():.3g} at "
                           f"{bad[:4]}: {got.ravel()[bad[:4]]} vs {want.ravel()[bad[:4]]}")


@pytest.fixture(scope="module")
def cp():
    import cupy
    assert os.environ.get("CUPY_TF32", "0") == "0", "unset CUPY_TF32: the float32 tolerances assume full fp32"
    mlp_cupy.load_module(cupy.cuda.Device().id)        # NVRTC compile (or the cached cubin), once
    return cupy


@pytest.fixture(scope="module")
def R():
    from symbreak_fast import _mlp_ref
    return _mlp_ref


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_layer_ops_match_reference(cp, R, dt):
    rng = np.random.default_rng(1)
    for k, act in enumerate(ACTS):
        rows, n_in, cols = [(1, 3, 5), (4096, 64, 300), (333, 129, 7)][k % 3]
        x = rng.standard_normal((rows, n_in)).astype(dt)
        W = (rng.standard_normal((n_in, cols)) / math.sqrt(n_in)).astype(dt)
        b = rng.standard_normal(cols).astype(dt)
        z_r = np.empty((rows, cols), dt)
        R.matmul(x, W, z_r)
        z_g = cp.empty((rows, cols), dt)
        mlp_cupy.matmul(cp.asarray(x), cp.asarray(W), z_g)
        close(z_g.get(), z_r, dt, scale=n_in, what="matmul")
        z_g = cp.asarray(z_r)
        a_r = z_r if act == "linear" else np.empty_like(z_r)
        a_g = z_g if act == "linear" else cp.empty((rows, cols), dt)
        R.bias_act_forward(z_r, b, act, 0.05, a_r)
        mlp_cupy.bias_act_forward(z_g, cp.asarray(b), act, 0.05, a_g)
        assert np.array_equal(z_g.get(), z_r), "z += b is one rounding"
        close(a_g.get(), a_r, dt, scale=np.maximum(1, np.abs(z_r)), what=f"{act} forward")
        g0 = rng.standard_normal((rows, cols)).astype(dt)
        g_r, g_g = g0.copy(), cp.asarray(g0)
        db_r, db_g = np.empty(cols, dt), cp.empty(cols, dt)
        R.act_backward_bias_grad(g_r, z_r, a_r, act, 0.05, db_r)
        mlp_cupy.act_backward_bias_grad(g_g, z_g, cp.asarray(a_r), act, 0.05, db_g)
        close(g_g.get(), g_r, dt, scale=np.maximum(1, np.abs(g0 * z_r)), what=f"{act} backward")
        # _mlp_ref sums float32 pairwise in float32; the kernel in double: compare with the exact sum
        close(db_g.get(), g_g.get().astype(np.float64).sum(0), dt, scale=math.sqrt(rows), what=f"{act} db")
        gw = cp.empty((n_in, cols), dt)
        mlp_cupy.matmul(cp.asarray(x).T, g_g, gw)
        close(gw.get(), x.T.astype(np.float64) @ g_g.get(), dt, scale=rows, what="x.T @ g")


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_losses_and_optimizers_match_reference(cp, R, dt):
    rng = np.random.default_rng(2)
    for rows, cols in ((1, 1), (1, 10), (4097, 10), (256, 1000)):
        x = (rng.standard_normal((rows, cols)) * 4).astype(dt)
        y = rng.integers(0, cols, rows).astype(np.int64)
        d_r, d_g = np.empty_like(x), cp.empty((rows, cols), dt)
        l_r = R.softmax_xent(x, y, d_r)
        l_g = mlp_cupy.softmax_xent(cp.asarray(x), cp.asarray(y), d_g)
        close(l_g, l_r, dt, scale=max(1, abs(l_r)) * 10, what="xent")
        close(d_g.get(), d_r, dt, what="dlogits")
        t = rng.standard_normal((rows, cols)).astype(dt)
        l_r = R.mse(x, t, d_r)
        l_g = mlp_cupy.mse(cp.asarray(x), cp.asarray(t), d_g)
        close(l_g, l_r, dt, scale=max(1, l_r), what="mse")
        close(d_g.get(), d_r, dt, what="dmse")
    with pytest.raises(ValueError, match="outside"):
        mlp_cupy.softmax_xent(cp.asarray(x), cp.asarray(np.full(rows, cols, np.int64)), d_g)
    n = 1_000_003
    p0, m0, v0 = (rng.standard_normal(n).astype(dt) for _ in range(3))
    v0 = np.abs(v0)
    pr, mr, vr = p0.copy(), m0.copy(), v0.copy()
    pg, mg, vg = cp.asarray(p0), cp.asarray(m0), cp.asarray(v0)
    for t in (1, 2, 3):
        g = rng.standard_normal(n).astype(dt)
        R.adam(pr, g, mr, vr, 1e-2, 0.9, 0.999, 1e-8, t)
        mlp_cupy.adam(pg, cp.asarray(g), mg, vg, 1e-2, 0.9, 0.999, 1e-8, t)
    close(pg.get(), pr, dt, scale=0.1, what="adam")
    mlp_cupy.momentum(pg, cp.asarray(g), vg, 0.1, 0.9)
    R.momentum(pr, g, vr, 0.1, 0.9)
    close(pg.get(), pr, dt, scale=0.1, what="momentum")
    mlp_cupy.sgd(pg, cp.asarray(g), 0.1)
    R.sgd(pr, g, 0.1)
    close(pg.get(), pr, dt, scale=0.1, what="sgd")


def test_deterministic_and_equal_columns(cp):
    """Same inputs, same bits (no atomics); equal columns stay bitwise equal on the device."""
    rng = np.random.default_rng(3)
    col = rng.standard_normal((5000, 1)).astype(np.float32)
    outs = []
    for _ in range(2):
        z = cp.asarray(np.repeat(col, 33, axis=1))
        a = cp.empty_like(z)
        mlp_cupy.bias_act_forward(z, cp.full(33, 0.1, np.float32), "gelu", 0.0, a)
        g = cp.asarray(np.repeat(col[::-1].copy(), 33, axis=1))
        db = cp.empty(33, np.float32)
        mlp_cupy.act_backward_bias_grad(g, z, a, "gelu", 0.0, db)
        loss = mlp_cupy.mse(a, g, cp.empty_like(a))
        outs.append((a.get(), g.get(), db.get(), loss))
    for x, y in zip(outs[0], outs[1]):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    a, g, db, _ = outs[0]
    for arr in (a, g, db[None, :]):
        assert (arr.view(np.uint32) == arr[:, :1].view(np.uint32)).all()


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_exact_gemm_is_the_reference_bit_for_bit_on_the_device(cp, R, dt):
    """mlp_cupy.matmul (sbf_mlp_gemm_exact: no FMA, k in order) gives _mlp_ref.matmul's bits on the
    device, for the three GEMMs of a step (plain, a.T, b.T); identical columns stay identical."""
    rng = np.random.default_rng(6)
    for m, k, n in ((1, 1, 1), (37, 9, 21), (256, 64, 300), (129, 130, 3)):
        x = rng.standard_normal((m, k)).astype(dt)
        W = rng.standard_normal((k, n)).astype(dt)
        g = rng.standard_normal((m, n)).astype(dt)
        xg, Wg, gg = cp.asarray(x), cp.asarray(W), cp.asarray(g)
        for a, b, ag, bg in ((x, W, xg, Wg), (x.T, g, xg.T, gg), (g, W.T, gg, Wg.T)):
            want = np.empty((a.shape[0], b.shape[1]), dt)
            R.matmul(a, b, want)
            out = cp.empty(want.shape, dt)
            mlp_cupy.matmul(ag, bg, out)
            assert np.array_equal(out.get(), want), (m, k, n)
        Wc = cp.asarray(np.repeat(W[:, :1], n, axis=1))
        out = cp.empty((m, n), dt)
        mlp_cupy.matmul(xg, Wc, out)
        o = out.get()
        assert (o == o[:, :1]).all()


def test_constant_init_keeps_neurons_identical_on_the_gpu(cp):
    import symbreak_fast as sbf
    MLP = getattr(sbf, "MLP", None) or __import__("symbreak_fast.mlp", fromlist=["MLP"]).MLP
    rng = np.random.default_rng(7)
    X = cp.asarray(rng.standard_normal((512, 2)).astype(np.float32))
    y = cp.asarray(rng.integers(0, 2, 512))
    net = MLP([2, 32, 32, 2], init=("constant", {"value": 0.5}), activation="tanh", optimizer="momentum",
              lr=0.1, device="cuda")
    assert net.exact_symmetry and net._matmul is mlp_cupy.matmul
    for _ in range(50):
        net.step(X, y)
    for i in range(2):
        W = net.params[f"layers.{i}.weight"].get()
        assert (W == W[:, :1]).all(), f"layer {i}: identical neurons drifted apart on the GPU"
    assert not (net.params["layers.0.weight"].get() == 0.5).all()


@pytest.mark.parametrize("loss,opt,act,dt", [
    ("softmax_cross_entropy", "sgd", "relu", "float32"),
    ("softmax_cross_entropy", "adam", "gelu", "float32"),
    ("mse", "momentum", "tanh", "float64"),
    ("mse", "adam", "selu", "float32"),
])
def test_mlp_training_on_the_gpu_matches_the_cpu(cp, loss, opt, act, dt):
    import symbreak_fast as sbf
    MLP = getattr(sbf, "MLP", None)
    if MLP is None:
        from symbreak_fast.mlp import MLP
    rng = np.random.default_rng(4)
    sizes = [20, 64, 64, 5]
    X = rng.standard_normal((256, 20)).astype(dt)
    y = rng.integers(0, 5, 256) if loss == "softmax_cross_entropy" else rng.standard_normal((256, 5)).astype(dt)
    kw = {"activation": act, "loss": loss, "optimizer": opt, "lr": 0.01, "key": 5, "dtype": dt}
    gpu, cpu = MLP(sizes, device="cuda", **kw), MLP(sizes, backend="numpy", **kw)
    assert gpu.ops is mlp_cupy
    for name, v in gpu.params.items():
        assert np.array_equal(v.get(), cpu.params[name]), "the init is bit-identical on the device"
    Xg, yg = cp.asarray(X), cp.asarray(y)
    for _ in range(5):
        lg, lc = gpu.step(Xg, yg), cpu.step(X, y)
        close(lg, lc, dt, scale=max(1, abs(lc)) * 100, what="loss")
    for name, v in gpu.params.items():
        close(v.get(), cpu.params[name], dt, scale=100, what=name)
