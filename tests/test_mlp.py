"""symbreak_fast.mlp: the MLP class, the NumPy reference ops, fused ops vs the reference,
finite-difference and torch parity, bad input, divergence and the constant-init symmetry."""
import importlib
import importlib.util
import math
import subprocess
import sys

import numpy as np
import pytest

from symbreak_fast import _mlp_ref as ref
from symbreak_fast.init import init_params
from symbreak_fast.mlp import ACTIVATIONS, MLP, DivergenceError

ACTS = tuple(ACTIVATIONS)                       # linear relu leaky_relu tanh sigmoid gelu gelu_tanh selu
LOSSES = ("softmax_cross_entropy", "mse")
OPS_FUNCS = ("xp", "matmul", "bias_act_forward", "act_backward_bias_grad", "softmax_xent", "mse", "sgd",
             "momentum", "adam")


def _ops_or_skip(name):
    """The ops module of a backend, or skip when it is not importable / lacks part of the interface."""
    mod = {"numba": "symbreak_fast.backends.mlp_numba"}[name]
    try:
        ops = importlib.import_module(mod)
    except ImportError as e:
        pytest.skip(f"{mod} not importable: {e}")
    missing = [f for f in OPS_FUNCS if not hasattr(ops, f)]
    if missing:
        pytest.skip(f"{mod} lacks {missing}")
    return ops


def _cpu_backends():
    out = ["numpy"]
    try:
        importlib.import_module("numba")
        if importlib.util.find_spec("symbreak_fast.backends.mlp_numba") is not None:
            out.append("numba")
    except ImportError:
        pass
    return out


CPU_BACKENDS = _cpu_backends()


def _data(sizes, batch, loss, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(batch, sizes[0])).astype(dtype)
    if loss == "softmax_cross_entropy":
        y = rng.integers(0, sizes[-1], batch)
    else:
        y = rng.normal(size=(batch, sizes[-1])).astype(dtype)
    return X, y


def _act_arg(act):
    return ("leaky_relu", {"negative_slope": 0.2}) if act == "leaky_relu" else act


def _snapshot(net):
    return net.flat_params.copy(), [b.copy() for b in net._opt_bufs], net.steps


def _assert_unchanged(net, snap):
    flat, bufs, steps = snap
    assert np.array_equal(net.flat_params, flat)
    assert all(np.array_equal(a, b) for a, b in zip(net._opt_bufs, bufs))
    assert net.steps == steps


# ---------------------------------------------------------------------------
# construction, parameters, API
# ---------------------------------------------------------------------------
def test_params_are_views_of_one_flat_buffer_and_match_init_params():
    net = MLP([4, 6, 3], key=7, backend="numpy")
    assert list(net.params) == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert net.params["layers.0.weight"].shape == (4, 6) and net.params["layers.1.bias"].shape == (3,)
    assert net.flat_params.ndim == 1 and net.flat_params.size == 4 * 6 + 6 + 6 * 3 + 3
    for v in net.params.values():
        assert np.shares_memory(v, net.flat_params)
    spec = {f"layers.{i}.weight": ((a, b), "he_normal", {"layout": "io"})
            for i, (a, b) in enumerate([(4, 6), (6, 3)])}
    ref_w = init_params(spec, 7)
    for name, w in ref_w.items():
        assert np.array_equal(net.params[name], w)
    assert not net.params["layers.0.bias"].any()
    # layer i's weights depend only on key / "layers.{i}.weight": a deeper net shares layer 0
    deeper = MLP([4, 6, 5, 3], key=7, backend="numpy")
    assert np.array_equal(deeper.params["layers.0.weight"], net.params["layers.0.weight"])


def test_init_and_bias_init_take_kwargs_and_callables():
    net = MLP([3, 4, 2], init=("constant", {"value": 0.5}), bias_init=("constant", {"value": -0.25}),
              backend="numpy", dtype="float64")
    assert (net.params["layers.0.weight"] == 0.5).all() and (net.params["layers.1.bias"] == -0.25).all()
    assert net.flat_params.dtype == np.float64

    def my_init(shape, key, *, dtype, backend=None, out=None, scale=1.0):
        out[...] = scale
        return out
    net = MLP([3, 4, 2], init=(my_init, {"scale": 2.0}), backend="numpy")
    assert (net.params["layers.1.weight"] == 2.0).all()
    net = MLP([3, 4, 2], init=("he_normal", {"distribution": "truncated_normal"}), backend="numpy")
    assert np.abs(net.params["layers.0.weight"]).max() <= 2 * math.sqrt(2 / 3) / 0.8796 + 1e-6


def test_forward_predict_fit_history():
    sizes = [2, 16, 3]
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 2)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    net = MLP(sizes, activation="tanh", optimizer="adam", lr=0.03, backend="numpy")
    assert net.forward(X).shape == (120, 3) and net.predict(X).shape == (120,)
    h = net.fit(X, y, epochs=15, batch_size=32, progress=False)
    assert len(h["loss"]) == 15 and len(h["seconds"]) == 15 and h["loss"][-1] < 0.7 * h["loss"][0]
    assert (net.predict(X) == y).mean() > 0.8
    assert net.history["loss"] == h["loss"] and net.steps == 15 * 4
    net.reset_optimizer()
    assert net.steps == 0 and not any(b.any() for b in net._opt_bufs)
    reg = MLP([2, 8, 1], loss="mse", backend="numpy")
    assert reg.predict(X).shape == (120,)
    reg.step(X, X[:, 0] * 0.5)                      # (B,) targets for one output


def test_fit_is_reproducible_and_progress_is_silent_off_a_tty(capsys):
    X, y = _data([3, 5, 2], 50, "softmax_cross_entropy", dtype=np.float32)
    nets = [MLP([3, 5, 2], key=3, backend="numpy") for _ in range(2)]
    for n in nets:
        n.fit(X, y, epochs=2, batch_size=16)         # progress=True, but stderr is not a TTY
    assert np.array_equal(nets[0].flat_params, nets[1].flat_params)
    assert capsys.readouterr().err == ""


def test_progress_bar_on_a_tty_only_when_asked(monkeypatch):
    pytest.importorskip("tqdm")
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True
    X, y = _data([3, 5, 2], 40, "softmax_cross_entropy", dtype=np.float32)
    for progress in (True, False):
        err = Tty()
        monkeypatch.setattr(sys, "stderr", err)
        MLP([3, 5, 2], backend="numpy").fit(X, y, epochs=2, batch_size=16, progress=progress)
        monkeypatch.undo()
        assert ("6/6" in err.getvalue()) == progress


def test_workspaces_are_cached_per_batch_size():
    net = MLP([3, 5, 2], backend="numpy")
    net.use_fused_step = False
    X, y = _data([3, 5, 2], 8, "softmax_cross_entropy", dtype=np.float32)
    net.step(X, y)
    ws = net._workspaces[8]
    zs = [id(z) for z in ws.z]
    net.step(X, y)
    assert net._workspaces[8] is ws and [id(z) for z in ws.z] == zs and len(net._workspaces) == 1


def test_import_stays_light():
    code = ("import sys, symbreak_fast.mlp, symbreak_fast._mlp_ref; "
            "print(sorted(m for m in ('numba', 'torch', 'tqdm', 'cupy', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_backend_selection():
    assert MLP([2, 2], backend="numpy").backend == "numpy"
    auto = MLP([2, 2]).backend
    assert auto == ("numba" if "numba" in CPU_BACKENDS else "numpy")
    with pytest.raises(ValueError, match="unknown backend"):
        MLP([2, 2], backend="jax")
    with pytest.raises(ValueError, match="CUDA"):
        MLP([2, 2], backend="numpy", device="cuda")
    with pytest.raises(ValueError, match="device"):
        MLP([2, 2], device="gpu")


# ---------------------------------------------------------------------------
# reference ops: finite differences (float64)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS)
def test_reference_activation_derivative_matches_finite_differences(act):
    z = np.linspace(-3.1, 2.9, 41)
    z = z[np.abs(z) > 1e-3]                          # away from the kinks
    alpha = 0.2
    f = lambda t: ref.activation(t, act, alpha)
    h = 1e-6
    fd = (f(z + h) - f(z - h)) / (2 * h)
    np.testing.assert_allclose(ref.activation_derivative(z, f(z), act, alpha), fd, rtol=1e-7, atol=1e-8)


def test_reference_losses_match_finite_differences_and_are_stable():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4))
    labels = rng.integers(0, 4, 5)
    target = rng.normal(size=(5, 4))
    for fn, y in ((ref.softmax_xent, labels), (ref.mse, target)):
        d = np.empty_like(logits)
        fn(logits, y, d)
        fd = np.empty_like(logits)
        for idx in np.ndindex(logits.shape):
            p, m = logits.copy(), logits.copy()
            p[idx] += 1e-6
            m[idx] -= 1e-6
            fd[idx] = (fn(p, y, np.empty_like(p)) - fn(m, y, np.empty_like(m))) / 2e-6
        np.testing.assert_allclose(d, fd, rtol=1e-6, atol=1e-9)
    big = np.array([[1e4, 0.0, -1e4], [88.0, 89.0, 90.0]], dtype=np.float32)
    d = np.empty_like(big)
    loss = ref.softmax_xent(big, np.array([1, 2]), d)
    assert math.isfinite(loss) and np.isfinite(d).all()
    np.testing.assert_allclose(loss, (1e4 + np.log1p(np.exp(-1.0) + np.exp(-2.0))) / 2, rtol=1e-7)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("act", ACTS)
def test_mlp_gradients_match_finite_differences(act, loss, backend):
    sizes = [3, 5, 4, 3]
    net = MLP(sizes, activation=_act_arg(act), bias_init=("normal", {"std": 0.3}), loss=loss,
              dtype="float64", backend=backend, key=11)
    X, y = _data(sizes, 6, loss, seed=2)
    loss0, grads = net.loss_and_grad(X, y)
    assert set(grads) == set(net.params)
    h = 1e-6
    for name, p in net.params.items():
        fd = np.empty_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + h
            lp, _ = net.loss_and_grad(X, y)
            p[idx] = old - h
            lm, _ = net.loss_and_grad(X, y)
            p[idx] = old
            fd[idx] = (lp - lm) / (2 * h)
        np.testing.assert_allclose(grads[name], fd, rtol=2e-5, atol=1e-8, err_msg=name)
    assert net.loss_and_grad(X, y)[0] == loss0


# ---------------------------------------------------------------------------
# parity with torch autograd and torch.optim
# ---------------------------------------------------------------------------
def _torch_net(torch, net, act):
    layers = []
    n = len(net.sizes) - 1
    F = torch.nn.functional
    fns = {"linear": lambda t: t, "relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, 0.2),
           "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": F.gelu,
           "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"), "selu": F.selu}
    dt = {np.dtype("float32"): torch.float32, np.dtype("float64"): torch.float64}[net.dtype]
    for i in range(n):
        lin = torch.nn.Linear(net.sizes[i], net.sizes[i + 1], dtype=dt)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(net.params[f"layers.{i}.weight"].T.copy()))
            lin.bias.copy_(torch.from_numpy(net.params[f"layers.{i}.bias"].copy()))
        layers.append(lin)

    def forward(x):
        for i, lin in enumerate(layers):
            x = lin(x)
            if i < n - 1:
                x = fns[act](x)
        return x
    return layers, forward


def _torch_loss(torch, loss, out, y):
    if loss == "softmax_cross_entropy":
        return torch.nn.functional.cross_entropy(out, torch.from_numpy(np.asarray(y)))
    return torch.nn.functional.mse_loss(out, torch.from_numpy(np.asarray(y)))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("act", ACTS)
def test_loss_and_grads_match_torch(act, loss):
    torch = pytest.importorskip("torch")
    sizes = [5, 7, 6, 4]
    net = MLP(sizes, activation=_act_arg(act), bias_init=("uniform", {"low": -0.5, "high": 0.5}), loss=loss,
              dtype="float64", backend="numpy", key=5)
    X, y = _data(sizes, 9, loss, seed=4)
    ours, grads = net.loss_and_grad(X, y)
    layers, fwd = _torch_net(torch, net, act)
    tl = _torch_loss(torch, loss, fwd(torch.from_numpy(X)), y)
    tl.backward()
    np.testing.assert_allclose(ours, tl.item(), rtol=1e-12)
    for i, lin in enumerate(layers):
        np.testing.assert_allclose(grads[f"layers.{i}.weight"], lin.weight.grad.numpy().T, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(grads[f"layers.{i}.bias"], lin.bias.grad.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_optimizer_steps_match_torch(opt, backend):
    torch = pytest.importorskip("torch")
    sizes = [6, 9, 3]
    net = MLP(sizes, activation="gelu", optimizer=opt, lr=0.05, backend=backend, dtype="float32", key=9)
    layers, fwd = _torch_net(torch, net, "gelu")
    params = [p for lin in layers for p in (lin.weight, lin.bias)]
    topt = {"sgd": lambda: torch.optim.SGD(params, lr=0.05),
            "momentum": lambda: torch.optim.SGD(params, lr=0.05, momentum=0.9),
            "adam": lambda: torch.optim.Adam(params, lr=0.05)}[opt]()
    for s in range(3):
        X, y = _data(sizes, 10, "softmax_cross_entropy", seed=s, dtype=np.float32)
        ours = net.step(X, y)
        topt.zero_grad()
        tl = _torch_loss(torch, "softmax_cross_entropy", fwd(torch.from_numpy(X)), y)
        tl.backward()
        topt.step()
        np.testing.assert_allclose(ours, tl.item(), rtol=2e-5)
    for i, lin in enumerate(layers):
        np.testing.assert_allclose(net.params[f"layers.{i}.weight"], lin.weight.detach().numpy().T,
                                   rtol=1e-4, atol=2e-6)
        np.testing.assert_allclose(net.params[f"layers.{i}.bias"], lin.bias.detach().numpy(), rtol=1e-4, atol=2e-6)


# ---------------------------------------------------------------------------
# fused ops == reference (runs against every ops module present)
# ---------------------------------------------------------------------------
GRID = [(1, [3, 2]), (5, [7, 33, 3]), (33, [5, 100, 17, 4]), (70, [1, 9, 1]), (17, [5, 130, 17, 4])]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ops_name", ["numba"])
def test_ops_match_reference(ops_name, dtype):
    ops = _ops_or_skip(ops_name)
    dt = np.dtype(dtype)
    rtol = 2e-5 if dt == np.float32 else 1e-12
    rng = np.random.default_rng(3)
    for B, n in [(1, 1), (7, 33), (130, 17), (300, 129)]:
        z0 = (rng.normal(size=(B, n)) * 2).astype(dt)
        b = rng.normal(size=n).astype(dt)
        g0 = rng.normal(size=(B, n)).astype(dt)
        for act in ACTS:
            outs = []
            for mod in (ref, ops):
                z, a, g, db = z0.copy(), np.empty_like(z0), g0.copy(), np.empty(n, dt)
                mod.bias_act_forward(z, b, act, 0.2, a)
                mod.act_backward_bias_grad(g, z, a, act, 0.2, db)
                outs.append((z, a, g, db))
            for x, yv, what in zip(*outs, ("z", "a", "g", "db")):
                np.testing.assert_allclose(yv, x, rtol=rtol, atol=rtol * 10, err_msg=f"{act} {what} {(B, n)}")
        labels = rng.integers(0, n, B)
        target = rng.normal(size=(B, n)).astype(dt)
        for fn, yv in (("softmax_xent", labels), ("mse", target)):
            d_r, d_o = np.empty_like(z0), np.empty_like(z0)
            lr_, lo_ = getattr(ref, fn)(z0, yv, d_r), getattr(ops, fn)(z0, yv, d_o)
            np.testing.assert_allclose(lo_, lr_, rtol=rtol)
            np.testing.assert_allclose(d_o, d_r, rtol=rtol, atol=rtol * 1e-3)
        a, w, out_r, out_o = z0, rng.normal(size=(n, 5)).astype(dt), np.empty((B, 5), dt), np.empty((B, 5), dt)
        ref.matmul(a, w, out_r)
        ops.matmul(a, w, out_o)
        np.testing.assert_allclose(out_o, out_r, rtol=rtol * 10, atol=rtol * 10)
    P = 1000
    p0, g = rng.normal(size=P).astype(dt), rng.normal(size=P).astype(dt)
    for opt, args in (("sgd", (0.1,)), ("momentum", (0.1, 0.9)), ("adam", (0.01, 0.9, 0.999, 1e-8, 3))):
        res = []
        for mod in (ref, ops):
            p, bufs = p0.copy(), [np.full(P, 0.1, dt) for _ in range({"sgd": 0, "momentum": 1, "adam": 2}[opt])]
            getattr(mod, opt)(p, g, *bufs, *args)
            res.append([p] + bufs)
        for x, yv in zip(*res):
            np.testing.assert_allclose(yv, x, rtol=rtol, atol=rtol * 1e-2, err_msg=opt)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("ops_name", ["numba"])
def test_backend_net_matches_reference_net(ops_name, fused):
    """loss, grads and a training step of a whole net; fused=True takes the ops' train_step_fused
    path where it applies (narrow nets), False the op-by-op path."""
    _ops_or_skip(ops_name)
    for k, (B, sizes) in enumerate(GRID):
        for act in [ACTS[(3 * k + j) % len(ACTS)] for j in range(3)]:     # every activation over the grid
            for loss in LOSSES:
                for dtype, rtol in (("float32", 1e-4), ("float64", 1e-11)):
                    kw = dict(activation=_act_arg(act), loss=loss, dtype=dtype, key=B, optimizer="adam", lr=0.01)
                    r, o = MLP(sizes, backend="numpy", **kw), MLP(sizes, backend=ops_name, **kw)
                    o.use_fused_step = fused
                    X, y = _data(sizes, B, loss, seed=B, dtype=np.dtype(dtype))
                    lr_, gr = r.loss_and_grad(X, y)
                    lo_, go = o.loss_and_grad(X, y)
                    np.testing.assert_allclose(lo_, lr_, rtol=rtol)
                    for name in gr:
                        np.testing.assert_allclose(go[name], gr[name], rtol=rtol, atol=rtol * 1e-2,
                                                   err_msg=f"{sizes} {act} {loss} {dtype} {name}")
                    for _ in range(2):
                        np.testing.assert_allclose(o.step(X, y), r.step(X, y), rtol=rtol)
                    np.testing.assert_allclose(o.flat_params, r.flat_params, rtol=rtol * 10, atol=rtol * 1e-2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("ops_name", ["numba"])
def test_sgd_step_update_matches_reference(ops_name, fused, dtype):
    """MLP.step with plain SGD: the update (p0 - p1) / lr against the numpy reference net's
    gradient, entry by entry, every activation and loss over the grid. SGD is not scale-invariant
    (unlike Adam), so a wrong gradient scale fails here."""
    _ops_or_skip(ops_name)
    lr = 0.05
    for k, (B, sizes) in enumerate(GRID):
        for act in ACTS:
            for loss in LOSSES:
                kw = dict(activation=_act_arg(act), loss=loss, dtype=dtype, key=B + 1, optimizer="sgd", lr=lr)
                r, o = MLP(sizes, backend="numpy", **kw), MLP(sizes, backend=ops_name, **kw)
                o.use_fused_step = fused
                X, y = _data(sizes, B, loss, seed=k, dtype=np.dtype(dtype))
                _, g_ref = r.loss_and_grad(X, y)
                g_ref = np.concatenate([g.ravel() for g in g_ref.values()]).astype(np.float64)
                p0 = o.flat_params.astype(np.float64)
                o.step(X, y)
                upd = (p0 - o.flat_params) / lr
                scale = float(np.abs(g_ref).max())
                eps = np.finfo(np.dtype(dtype)).eps
                rtol, atol = (2e-4, 2e-5 * scale) if dtype == "float32" else (1e-10, 1e-11 * scale)
                np.testing.assert_allclose(upd, g_ref, rtol=rtol, atol=atol + 4 * eps * np.abs(p0).max() / lr,
                                           err_msg=f"{sizes} B={B} {act} {loss} {dtype} fused={fused}")


# ---------------------------------------------------------------------------
# the scaled-init thesis: constant init keeps hidden neurons identical, random init does not
# ---------------------------------------------------------------------------
def _hidden_columns_identical(net):
    for i in range(len(net.sizes) - 2):
        W, b = net.params[f"layers.{i}.weight"], net.params[f"layers.{i}.bias"]
        nxt = net.params[f"layers.{i + 1}.weight"]
        if not ((W == W[:, :1]).all() and (b == b[0]).all() and (nxt == nxt[:1]).all()):
            return False
    return True


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("sizes,act,opt,loss", [
    ([5, 7, 3], "relu", "sgd", "softmax_cross_entropy"),
    ([13, 33, 17, 4], "tanh", "adam", "softmax_cross_entropy"),
    ([6, 130, 3], "gelu", "momentum", "mse"),          # wider than a fused tile: the op-by-op path
    ([9, 20, 20, 2], "selu", "adam", "mse"),
])
def test_constant_init_keeps_hidden_neurons_bitwise_identical(backend, sizes, act, opt, loss):
    kw = dict(activation=act, optimizer=opt, loss=loss, lr=0.05, backend=backend, dtype="float32")
    X, y = _data(sizes, 53, loss, seed=1, dtype=np.float32)
    net = MLP(sizes, init=("constant", {"value": 0.05}), **kw)
    net.fit(X, y, epochs=3, batch_size=20, progress=False)
    assert _hidden_columns_identical(net), "constant init: hidden neurons drifted apart"
    assert not np.array_equal(net.params["layers.0.weight"], np.full_like(net.params["layers.0.weight"], 0.05))
    rnd = MLP(sizes, **kw)
    rnd.fit(X, y, epochs=1, batch_size=20, progress=False)
    W = rnd.params["layers.0.weight"]
    assert len({W[:, j].tobytes() for j in range(W.shape[1])}) == W.shape[1]


# ---------------------------------------------------------------------------
# bad input: clear errors, nothing changed
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad,match", [
    (dict(sizes=[4]), "at least an input and an output"),
    (dict(sizes=[4, 0, 2]), "positive int"),
    (dict(sizes=[4, 2.5]), "positive int"),
    (dict(activation="swish"), "unknown activation"),
    (dict(activation=("leaky_relu", {"slope": 0.1})), "negative_slope"),
    (dict(activation=("gelu", {"approximate": "erf"})), "approximate"),
    (dict(loss="hinge"), "unknown loss"),
    (dict(optimizer="rmsprop"), "unknown optimizer"),
    (dict(optimizer=("momentum", {"momentum": 1.5})), "momentum"),
    (dict(optimizer=("adam", {"betas": (0.9,)})), "betas"),
    (dict(lr=0), "positive"), (dict(lr=-0.1), "positive"), (dict(lr=float("nan")), "positive"),
    (dict(dtype="float16"), "float32"),
    (dict(init="xavier"), "unknown init"),
    (dict(init=("constant", {"dtype": "float64"})), "set by the MLP"),
    (dict(bias_init="he_normal"), "2 dims"),
])
def test_bad_constructor_arguments(bad, match):
    kw = dict(sizes=[4, 3, 2], backend="numpy")
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        MLP(**kw)


PATHS = [("numpy", False)] + ([("numba", True), ("numba", False)] if "numba" in CPU_BACKENDS else [])


@pytest.mark.parametrize("backend,fused", PATHS)
@pytest.mark.parametrize("opt", ["adam", "sgd"])
@pytest.mark.parametrize("loss", LOSSES)
def test_bad_batches_raise_before_any_change(loss, opt, backend, fused):
    """Every bad batch raises ValueError and changes nothing: on the fused path too, where step()
    checks only shapes up front and the values through the kernel's own finiteness count."""
    net = MLP([4, 3, 2], loss=loss, backend=backend, optimizer=opt)
    net.use_fused_step = fused
    assert (net._plan(6) is not None) == fused
    X, y = _data([4, 3, 2], 6, loss, dtype=np.float32)
    net.step(X, y)
    snap = _snapshot(net)
    Xn = X.copy()
    Xn[2, 1] = np.nan
    Xi = X.copy()
    Xi[0, 0] = np.inf
    cases = [(X[:, :3], y, "shape"), (X[0], y, "shape"), (X[:5], y, "shape"), (X[:0], y[:0], "empty"),
             (Xn, y, "NaN or inf"), (Xi, y, "NaN or inf")]
    if loss == "softmax_cross_entropy":
        cases += [(X, np.array([0, 1, 2, 0, 1, 0]), "out of range"), (X, np.array([0, 1, -1, 0, 1, 0]),
                                                                      "out of range"),
                  (X, y.astype(np.float32), "integer"), (X, y[:, None], "shape")]
    else:
        yn = y.copy()
        yn[1, 1] = np.inf
        cases += [(X, yn, "NaN or inf"), (X, y[:, :1], "shape")]
    for Xb, yb, match in cases:
        for call in (net.step, lambda a, b: net.fit(a, b, progress=False), net.loss_and_grad):
            with pytest.raises(ValueError, match=match):
                call(Xb, yb)
        _assert_unchanged(net, snap)
    for bad_lr in (0, -1.0, float("inf"), True):
        with pytest.raises(ValueError, match="lr"):
            net.step(X, y, lr=bad_lr)
    for kw in (dict(epochs=0), dict(batch_size=0), dict(lr=-1)):
        with pytest.raises(ValueError):
            net.fit(X, y, progress=False, **kw)
    with pytest.raises(ValueError, match="shape"):
        net.forward(X[:, :2])
    _assert_unchanged(net, snap)


# ---------------------------------------------------------------------------
# divergence: a clear error, the last good parameters kept
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend,fused", PATHS)
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_divergence_keeps_last_good_parameters(backend, fused, opt):
    sizes = [3, 8, 2]
    X, y = _data(sizes, 40, "mse", dtype=np.float32)
    X *= 50
    lr = 10.0 if opt == "sgd" else 1e30
    net = MLP(sizes, loss="mse", optimizer=opt, lr=lr, backend=backend)
    net.use_fused_step = fused
    snap = None
    with pytest.raises(DivergenceError, match="smaller learning rate") as err:
        for _ in range(200):
            snap = _snapshot(net)
            net.step(X, y)
    _assert_unchanged(net, snap)
    assert np.isfinite(net.flat_params).all()
    assert err.value.epoch is None

    net = MLP(sizes, loss="mse", optimizer=opt, lr=lr, backend=backend)
    net.use_fused_step = fused
    with pytest.raises(DivergenceError, match=r"epoch \d+, step \d+") as err:
        net.fit(X, y, epochs=100, batch_size=16, shuffle=False, progress=False)
    e = err.value
    assert np.isfinite(net.flat_params).all() and len(e.history["loss"]) == e.epoch
    replay = MLP(sizes, loss="mse", optimizer=opt, lr=lr, backend=backend)
    replay.use_fused_step = fused
    for _ in range(e.epoch):
        for s in range(3):
            replay.step(X[s * 16:(s + 1) * 16], y[s * 16:(s + 1) * 16])
    for s in range(e.step):
        replay.step(X[s * 16:(s + 1) * 16], y[s * 16:(s + 1) * 16])
    assert np.array_equal(replay.flat_params, net.flat_params)
    assert replay.steps == net.steps


def test_exact_symmetry_picks_the_gemm():
    """Random inits use the backend's BLAS GEMM; constant inits (or exact_symmetry=True) the
    column-exact one that keeps identical neurons bitwise identical."""
    from symbreak_fast import _mlp_ref
    r = MLP([4, 8, 3], backend="numpy")
    assert r.exact_symmetry is False and r._matmul is _mlp_ref.blas_matmul
    c = MLP([4, 8, 3], init=("constant", {"value": 0.5}), backend="numpy")
    assert c.exact_symmetry is True and c._matmul is _mlp_ref.matmul
    r.exact_symmetry = True
    assert r._matmul is _mlp_ref.matmul
    from symbreak_fast import init as I
    for init in ("zeros", "ones", ("constant", {"value": 0.5}), ["constant", {"value": 0.5}], I.constant,
                 (I.constant, {"value": 0.5}), [I.zeros, {}]):
        assert MLP([4, 8, 3], init=init, backend="numpy").exact_symmetry is True, init
    for init in ("he_normal", ["xavier_uniform", {}], I.he_normal, lambda shape, key, *, dtype, out=None, **kw: out):
        assert MLP([4, 8, 3], init=init, backend="numpy").exact_symmetry is False, init
    assert MLP([4, 8, 3], init=I.he_normal, backend="numpy", exact_symmetry=True).exact_symmetry is True
