"""symbreak_fast.lab: metrics on crafted matrices, the symmetry and depth experiments at small
cost, and the demo end to end (--quick)."""
import math

import numpy as np
import pytest

import symbreak_fast as sbf
from symbreak_fast import lab

pytest.importorskip("symbreak_fast.mlp")


# ---------------------------------------------------------------------------
# distinct_neurons
# ---------------------------------------------------------------------------
def test_distinct_identical_columns():
    W = np.repeat(np.array([[0.3], [-1.2], [2.0]], np.float32), 8, axis=1)      # 8 copies of one neuron
    assert lab.distinct_neurons(W) == 1
    assert lab.distinct_neurons(np.zeros((5, 7))) == 1
    assert lab.distinct_neurons(np.full((5, 7), 0.5), tol=0) == 1


def test_distinct_near_identical_within_tol():
    base = np.array([1.0, -2.0, 0.5])
    W = np.stack([base, base + 1e-7, base - 5e-7, base + [0, 0, 1e-3]], axis=1)  # (3, 4), max |w| = 2
    assert lab.distinct_neurons(W, tol=1e-5) == 2          # 1e-7, 5e-7 < 2e-5; 1e-3 > 2e-5
    assert lab.distinct_neurons(W, tol=1e-3) == 1          # 1e-3 <= 2e-3
    assert lab.distinct_neurons(W, tol=0) == 4             # bit-equal only
    # tol is relative to the largest entry: scaling W changes nothing
    assert lab.distinct_neurons(W * 1e6, tol=1e-5) == 2


def test_distinct_all_distinct_and_bias():
    W = sbf.he_normal((16, 32), sbf.Key(3) / "w")
    assert lab.distinct_neurons(W) == 32
    Wc = np.full((4, 6), 0.5)
    assert lab.distinct_neurons(Wc, bias=np.arange(6.0)) == 6    # the bias tells them apart
    assert lab.distinct_neurons(np.zeros((3, 0))) == 0
    with pytest.raises(ValueError):
        lab.distinct_neurons(np.zeros(3))
    with pytest.raises(ValueError):
        lab.distinct_neurons(np.zeros((2, 2)), tol=-1)
    with pytest.raises(ValueError):
        lab.distinct_neurons(np.array([[np.nan, 1.0]]))


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------
def test_data_deterministic_and_shaped():
    for name, kw in (("spirals", {}), ("blobs", dict(n_features=5, n_classes=3)),
                     ("teacher", dict(n_features=5, n_classes=3))):
        X, y = lab.make_data(name, 60, sbf.Key(1) / name, **kw)
        X2, y2 = lab.make_data(name, 60, sbf.Key(1) / name, **kw)
        assert X.dtype == np.float32 and y.dtype == np.int64 and X.shape[0] == y.shape[0] == 60
        assert np.array_equal(X, X2) and np.array_equal(y, y2)
        assert np.isfinite(X).all() and y.min() >= 0
    X, y = lab.two_spirals(100, 0)
    assert X.shape == (100, 2) and set(np.unique(y)) == {0, 1}


# ---------------------------------------------------------------------------
# symmetry
# ---------------------------------------------------------------------------
def test_symmetry_experiment_small():
    r = lab.symmetry_experiment(sizes=(2, 8, 8, 2), n=128, steps=150, batch=128, lr=0.1, key=0)
    rows = {row["scheme"]: row for row in r.rows}
    for s in ("zeros", "constant(0.5)"):
        assert rows[s]["distinct_before"] == (1, 1)
        assert rows[s]["distinct_after"] == (1, 1), rows[s]
    assert rows["zeros"]["loss_final"] == pytest.approx(math.log(2), abs=1e-3)   # nothing but biases learn
    for s in ("xavier", "he"):
        assert rows[s]["distinct_before"] == (8, 8) and rows[s]["distinct_after"] == (8, 8)
    # He learns the spirals clearly better than the symmetric net (measured: 0.09 vs 0.59)
    assert rows["he"]["loss_final"] < 0.5 * rows["constant(0.5)"]["loss_final"]
    assert rows["he"]["accuracy"] > 0.85
    assert set(r.curves) == set(rows) and len(r.curves["he"]) == 150
    assert "scheme" in r.table()


def test_symmetry_report_on_net():
    from symbreak_fast.mlp import MLP
    net = MLP([3, 5, 4, 2], key=1)
    rep = lab.symmetry_report(net)
    assert [(x["layer"], x["kind"], x["fan_in"], x["width"], x["distinct"]) for x in rep] == \
        [(1, "hidden", 3, 5, 5), (2, "hidden", 5, 4, 4), (3, "output", 4, 2, 2)]
    lab.init_weights(net, "constant(0.5)", 0)
    assert [x["distinct"] for x in lab.symmetry_report(net)] == [1, 1, 1]
    with pytest.raises(ValueError):
        lab.init_weights(net, "bogus", 0)


# ---------------------------------------------------------------------------
# signal propagation / depth
# ---------------------------------------------------------------------------
def test_signal_propagation_shapes():
    from symbreak_fast.mlp import MLP
    net = MLP([4, 6, 6, 3], activation="tanh", key=2)
    X = sbf.normal((20, 4), sbf.Key(2) / "x")
    rows = lab.signal_propagation(net, X)
    assert len(rows) == 3 and [r["kind"] for r in rows] == ["hidden", "hidden", "output"]
    for r in rows:
        for k in ("pre_std", "act_mean", "act_std", "grad_norm", "grad_ratio", "zero_frac"):
            assert math.isfinite(r[k])
    assert rows[0]["saturation"] is not None and rows[2]["saturation"] is None
    with pytest.raises(ValueError):
        lab.signal_propagation(net, np.zeros((3, 5), np.float32))


def test_depth_signal_qualitative():
    """30 layers of width 64, ReLU. He (Var W = 2/fan_in) keeps E[a^2] constant in expectation; with
    finite width the log-variance random-walks by about sqrt(depth * 5/width) ~ 1.5 in e-folds at the
    worst, so the std stays within a factor ~2-3 of layer 1 (measured: 0.65..1.4 for 0.86 at layer 1).
    N(0, 0.01^2) multiplies the std by 0.01 * sqrt(64 / 2) ~ 0.057 per layer: ~1e-37 after 29 layers.
    Xavier (Var W = 1/64 here) halves the variance per layer: 2**-14 in std after 29 layers."""
    r = lab.depth_signal(depth=30, width=64, activations=("relu",), batch=128, key=0)
    std = {s: [x["act_std"] for x in r.rows if x["scheme"] == s] for s in ("he", "normal(0.01)", "xavier")}
    assert len(std["he"]) == 30
    he = np.array(std["he"][:29])                            # hidden layers
    assert np.all(he > he[0] / 3) and np.all(he < he[0] * 3), he
    small = np.array(std["normal(0.01)"])
    assert small[28] < 1e-20 * small[0]
    xav = np.array(std["xavier"])
    assert 1e-6 < xav[28] / xav[0] < 1e-3                     # 2**-14 = 6e-5
    g = {s: [x["grad_norm"] for x in r.rows if x["scheme"] == s] for s in ("he", "xavier")}
    assert min(g["he"]) > 1e3 * max(g["xavier"])


def test_depth_training_he_trains_xavier_stalls():
    """He et al. 2015's finding at the demo's settings (30 ReLU layers of 64, teacher task, momentum
    0.9, lr 0.01, 300 steps of 128, key 0): He reaches 0.95 training accuracy, Xavier stays at the
    majority-class rate (0.26); N(0, 1) diverges on its first step. Keys 0-5 all give He >= 0.9
    and Xavier below the 'trains' bar (accuracy >= chance + (1 - chance)/2)."""
    kw = dict(lab.demo_settings()["training"])
    kw["runs"] = [("relu", "normal(1)"), ("relu", "xavier"), ("relu", "he")]
    r = lab.depth_training(**kw)
    rows = {x["scheme"]: x for x in r.rows}
    assert rows["normal(1)"]["status"] == "diverged" and not rows["normal(1)"]["trains"]
    assert rows["he"]["trains"] and rows["he"]["accuracy"] > 0.85, rows["he"]
    assert not rows["xavier"]["trains"] and rows["xavier"]["accuracy"] < rows["xavier"]["chance"] + 0.05
    assert rows["xavier"]["loss_final"] > 0.9 * math.log(4)
    assert len(r.curves["relu he"]) == 300


# ---------------------------------------------------------------------------
# conclusions drawn from the rows
# ---------------------------------------------------------------------------
def _sym_rows(**override):
    rows = []
    for scheme, d, acc in (("zeros", (1, 1), 0.5), ("constant(0.5)", (1, 1), 0.62), ("xavier", (8, 8), 0.99),
                           ("he", (8, 8), 0.97)):
        rows.append(dict(scheme=scheme, width=(8, 8), distinct_before=d, distinct_after=d, loss_init=0.7,
                         loss_final=0.1, accuracy=acc, chance=0.5, learned=acc >= 0.75, status="ok"))
    for scheme, kw in override.items():
        next(r for r in rows if r["scheme"] == scheme).update(kw)
    return lab.Result("symmetry", rows, dict(data="spirals"))


def test_symmetry_conclusions_follow_the_rows():
    lines = lab.symmetry_conclusions(_sym_rows())
    assert not [x for x in lines if x.startswith(lab.UNEXPECTED)], lines
    assert "1 distinct neuron per hidden layer after training: zeros, constant(0.5)" in lines[0]
    assert lines[1].endswith("xavier, he") and "did not: zeros 0.500, constant(0.5) 0.620" in lines[2]
    # a constant init that drifted, a random init that did not learn: both flagged, and the summary changes
    bad = lab.symmetry_conclusions(_sym_rows(**{"constant(0.5)": dict(distinct_after=(3, 1)),
                                                "he": dict(accuracy=0.6, learned=False)}))
    flags = [x for x in bad if x.startswith(lab.UNEXPECTED)]
    assert len(flags) == 2 and "constant(0.5) has 3 1 distinct neurons after" in flags[0] and "he did not" in flags[1]
    assert "after training: zeros" in bad[0] and "constant" not in bad[0]


def test_depth_training_conclusions_flag_contradictions():
    rows = [dict(activation="relu", scheme=s, accuracy=a, chance=0.26, trains=t, status=st)
            for s, a, t, st in (("normal(1)", float("nan"), False, "diverged"), ("xavier", 0.26, False, "ok"),
                                ("he", 0.95, True, "ok"))]
    lines = lab.depth_training_conclusions(lab.Result("depth_training", rows, {}))
    assert lines[0] == "trained: relu he" and "relu normal(1) (diverged), relu xavier" in lines[1]
    assert not [x for x in lines if x.startswith(lab.UNEXPECTED)]
    rows[1].update(accuracy=0.9, trains=True)
    rows[2].update(accuracy=0.3, trains=False)
    flags = [x for x in lab.depth_training_conclusions(lab.Result("depth_training", rows, {})) if x.startswith(lab.UNEXPECTED)]
    assert len(flags) == 2 and "relu xavier trained" in flags[0] and "relu he did not train" in flags[1]


def test_depth_signal_conclusions_against_the_variance_recursion():
    """Rows built from the recursion itself give no flags; a He ReLU net whose signal vanished does."""
    depth, width = 12, 64

    def rows_for(scheme, per_layer):
        return [dict(activation="relu", scheme=scheme, layer=i + 1, kind="hidden" if i < depth - 1 else "output",
                     act_std=per_layer ** i, saturation=None) for i in range(depth)]
    res = lab.Result("depth_signal", rows_for("he", 1.0) + rows_for("xavier", 0.5 ** 0.5), dict(
        depth=depth, width=width, activations=("relu",), schemes=("he", "xavier")))
    lines = lab.depth_signal_conclusions(res)
    assert not [x for x in lines if x.startswith(lab.UNEXPECTED)], lines
    assert "he x1 (stays)" in lines[0] and "xavier x0.031 (shrinks)" in lines[0]   # (1/2) ** (10 / 2)
    res.rows = rows_for("he", 0.1) + rows_for("xavier", 0.5 ** 0.5)
    flags = [x for x in lab.depth_signal_conclusions(res) if x.startswith(lab.UNEXPECTED)]
    assert len(flags) == 1 and "relu he" in flags[0] and "predicts 1" in flags[0]


def test_train_stops_on_divergence_only():
    """_train reports 'diverged' for the net's DivergenceError; any other error (even one whose text
    says nan) propagates."""
    from symbreak_fast.mlp import DivergenceError

    class Net:
        params = {"layers.0.weight": np.zeros((2, 2), np.float32)}

        def __init__(self, exc):
            self.exc = exc

        def step(self, X, y):
            raise self.exc
    X, y = np.zeros((4, 2), np.float32), np.zeros(4, np.int64)
    assert lab._train(Net(DivergenceError("x")), X, y, steps=3, batch=2, key=0) == ([], "diverged")
    with pytest.raises(ValueError, match="nan"):
        lab._train(Net(ValueError("X contains nan")), X, y, steps=3, batch=2, key=0)


# ---------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------
def test_demo_quick_end_to_end(tmp_path, capsys):
    from symbreak_fast.cli import main
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1. Symmetry" in out and "2. Depth at init" in out and "3. Depth, training" in out
    assert out.count("From these results:") == 3
    # the closing line counts the flagged lines printed above it
    n_flags = sum(line.lstrip().startswith(lab.UNEXPECTED) for line in out.splitlines())
    assert (f"{n_flags} result(s) contradict" in out) if n_flags else ("every result agrees" in out)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "pip install" in out
    else:
        pngs = sorted(p.name for p in tmp_path.iterdir())
        assert pngs == ["depth_activation_std.png", "depth_grad_norm.png", "loss_curves.png",
                        "symmetry_distinct_neurons.png"]
        assert all((tmp_path / p).stat().st_size > 1000 for p in pngs)


def test_demo_cuda_without_gpu(capsys):
    from symbreak_fast.backends import cuda_cupy
    if cuda_cupy.probe()[0]:
        pytest.skip("a CUDA device is present")
    from symbreak_fast.cli import main
    assert main(["demo", "--quick", "--device", "cuda"]) == 2
    assert "no usable CUDA device" in capsys.readouterr().err


def test_demo_without_matplotlib_says_how(tmp_path, capsys, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)        # import matplotlib -> ImportError
    from symbreak_fast.cli import main
    assert main(["demo", "--quick", "--out", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert "symbreak-fast[plot]" in out and not (tmp_path / "plots").exists()
