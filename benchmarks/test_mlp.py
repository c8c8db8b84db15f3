"""One MLP training step (forward + backward + SGD, float32, ReLU) through the API users call,
one pytest-benchmark group per net (mlp-step-small / -medium / -large):

* ``ours: sbf.MLP.step (numba)``: ``net.step(X, y)`` of a real ``sbf.MLP(sizes)`` (he_normal init,
  so exact_symmetry is off and the op-by-op path uses OpenBLAS GEMMs; the fully fused narrow-net
  step where ``mlp_numba.use_fused`` picks it). Every check of ``step`` included.
* ``peer: sbf.MLP.step (numpy reference)``: the same net with ``backend="numpy"``: the unfused,
  readable reference ops of ``symbreak_fast._mlp_ref`` around OpenBLAS GEMMs, same API and checks.
* ``peer: plain numpy step``: a bare NumPy step (np.matmul + NumPy elementwise ops, preallocated
  buffers, no input or finiteness checks): the field notes' NumPy baseline.
* ``peer: torch CPU``: torch.nn.Sequential + CrossEntropy/MSE + torch.optim.SGD, 2 threads.
* ``gemm-only`` (large and medium): the step's six GEMMs alone (np.matmul on the shapes and
  buffers of ``sbf.MLP.step``'s op-by-op path), so "time outside the GEMMs" = ours - gemm-only,
  from the same run.

Run:  pytest benchmarks/test_mlp.py --benchmark-enable -p no:randomly [-k small|medium|large]
(the large group takes ~1-2 min).

    python benchmarks/test_mlp.py fused-grid

times the fused narrow-net step against the op-by-op (OpenBLAS) step of ``sbf.MLP.step`` over
widths x depths x batches: the measurement behind ``mlp_numba.use_fused``.
"""
import sys
import time

import numpy as np
import pytest

pytest.importorskip("numba")
import symbreak_fast as sbf

CASES = {
    "small": ([64, 64, 64, 1], 128, "mse", 200, 50),
    "medium": ([784, 1024, 1024, 10], 256, "softmax_cross_entropy", 10, 3),
    "large": ([1024, 4096, 4096, 1024], 512, "softmax_cross_entropy", 3, 1),
}


def _data(case, seed=0):
    sizes, B, loss, _, _ = CASES[case]
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((B, sizes[0])).astype(np.float32)
    if loss == "mse":
        y = rng.standard_normal((B, sizes[-1])).astype(np.float32)
    else:
        y = rng.integers(0, sizes[-1], B).astype(np.int64)
    return X, y


def _net(case, backend):
    sizes, _, loss, _, _ = CASES[case]
    net = sbf.MLP(sizes, loss=loss, lr=1e-4, backend=backend, key=0)   # he_normal: BLAS GEMMs
    assert not net.exact_symmetry
    return net


def _bench(benchmark, fn, case):
    _, _, _, rounds, iters = CASES[case]
    fn()                                   # compile / allocate workspaces before timing
    benchmark.pedantic(fn, rounds=rounds, iterations=iters, warmup_rounds=1)


class PlainNumpyStep:
    """A bare NumPy training step: the GEMMs, bias + ReLU, the loss gradient, SGD; no checks."""

    def __init__(self, case):
        sizes, B, loss, _, _ = CASES[case]
        rng = np.random.default_rng(0)
        self.loss = loss
        self.W = [(rng.standard_normal((i, o)) * np.sqrt(2.0 / i)).astype(np.float32)
                  for i, o in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(o, np.float32) for o in sizes[1:]]
        self.gW = [np.empty_like(w) for w in self.W]
        self.z = [np.empty((B, o), np.float32) for o in sizes[1:]]
        self.d = [np.empty((B, o), np.float32) for o in sizes[1:]]
        self.X, self.y = _data(case)

    def __call__(self, lr=np.float32(1e-4)):
        L, X, B = len(self.W), self.X, self.X.shape[0]
        h = [X]
        for i in range(L):
            np.matmul(h[-1], self.W[i], out=self.z[i])
            self.z[i] += self.b[i]
            h.append(np.maximum(self.z[i], 0) if i < L - 1 else self.z[i])
        out, d = h[-1], self.d[-1]
        if self.loss == "mse":
            np.subtract(out, self.y, out=d)
            loss = float(np.mean(d * d))
            d *= np.float32(2.0 / d.size)
        else:
            m = out - out.max(axis=1, keepdims=True)
            np.exp(m, out=d)
            s = d.sum(axis=1, keepdims=True)
            loss = float(np.mean(np.log(s[:, 0]) - m[np.arange(B), self.y]))
            d /= s
            d[np.arange(B), self.y] -= 1
            d *= np.float32(1.0 / B)
        for i in range(L - 1, -1, -1):
            if i < L - 1:
                d = self.d[i]
                d *= self.z[i] > 0
            np.matmul(h[i].T, d, out=self.gW[i])
            gb = d.sum(axis=0)
            if i > 0:
                np.matmul(d, self.W[i].T, out=self.d[i - 1])
            self.W[i] -= lr * self.gW[i]
            self.b[i] -= lr * gb
        return loss


def _gemms_of(net, X):
    """The six (four, ...) GEMMs of net.step's op-by-op path, on its own workspace buffers."""
    net.use_fused_step = False
    ws = net._workspace(X.shape[0])
    W, gW, L = net._W, net._gW, len(net._W)

    def gemms():
        h = X
        for i in range(L):
            np.matmul(h, W[i], out=ws.z[i])
            h = ws.a[i]
        for i in range(L - 1, -1, -1):
            np.matmul((X if i == 0 else ws.a[i - 1]).T, ws.d[i], out=gW[i])
            if i > 0:
                np.matmul(ws.d[i], W[i].T, out=ws.d[i - 1])
    return gemms


def _torch_step(case):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    sizes, B, loss, _, _ = CASES[case]
    layers = []
    for l, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(i, o))
        if l < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=1e-4)
    X, y = (torch.from_numpy(a) for a in _data(case))
    crit = torch.nn.MSELoss() if loss == "mse" else torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=False)
        out = crit(net(X), y)
        out.backward()
        opt.step()
        return out

    return step


@pytest.mark.parametrize("case", list(CASES))
def test_ours_sbf_MLP_step_numba(benchmark, case):
    """ours: sbf.MLP(sizes).step(X, y), numba backend (fused narrow step or fused ops + OpenBLAS)."""
    benchmark.group = f"mlp-step-{case}"
    net = _net(case, "numba")
    X, y = _data(case)
    benchmark.extra_info["path"] = "fused narrow step" if net._plan(X.shape[0]) is not None else \
        "fused ops around OpenBLAS GEMMs"
    _bench(benchmark, lambda: net.step(X, y), case)


@pytest.mark.parametrize("case", list(CASES))
def test_peer_sbf_MLP_step_numpy_reference(benchmark, case):
    """peer: the same sbf.MLP with backend='numpy' (unfused reference ops + OpenBLAS, same checks)."""
    benchmark.group = f"mlp-step-{case}"
    net = _net(case, "numpy")
    X, y = _data(case)
    _bench(benchmark, lambda: net.step(X, y), case)


@pytest.mark.parametrize("case", list(CASES))
def test_peer_plain_numpy_step(benchmark, case):
    """peer: a bare NumPy step, no checks (the field notes' baseline)."""
    benchmark.group = f"mlp-step-{case}"
    _bench(benchmark, PlainNumpyStep(case), case)


@pytest.mark.parametrize("case", list(CASES))
def test_peer_torch_cpu_step(benchmark, case):
    benchmark.group = f"mlp-step-{case}"
    _bench(benchmark, _torch_step(case), case)


@pytest.mark.parametrize("case", ["medium", "large"])
def test_gemm_only_of_sbf_MLP_step(benchmark, case):
    """The GEMMs of ours (op-by-op path, OpenBLAS) alone, same shapes and buffers."""
    benchmark.group = f"mlp-step-{case}"
    net = _net(case, "numba")
    X, y = _data(case)
    net.step(X, y)
    _bench(benchmark, _gemms_of(net, X), case)


# ---------------------------------------------------------------------------
# the measurement behind mlp_numba.use_fused
# ---------------------------------------------------------------------------
GRID_WIDTHS = (16, 32, 64, 128)
GRID_DEPTHS = (2, 8, 30)               # weight layers
GRID_BATCHES = (1, 16, 128, 1024)


def _min_time(fn, budget=0.15, reps=5):
    fn()
    n = max(1, int(budget / max(1e-7, _once(fn))))
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best


def _once(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def fused_grid(widths=GRID_WIDTHS, depths=GRID_DEPTHS, batches=GRID_BATCHES, out=sys.stdout):
    """Rows (width, depth, batch, fused_us, ops_us): sbf.MLP.step with the fused narrow step vs the
    op-by-op path (OpenBLAS), float32, ReLU, softmax cross-entropy with 10 classes, SGD; the two
    timed alternately, best of 5."""
    rng = np.random.default_rng(0)
    rows = []
    print("width depth batch  fused_us    ops_us  fused/ops", file=out)
    for w in widths:
        for depth in depths:
            sizes = [w] * depth + [10]
            for B in batches:
                X = rng.standard_normal((B, w)).astype(np.float32)
                y = rng.integers(0, 10, B)
                net = sbf.MLP(sizes, lr=1e-4, key=0, backend="numba")
                fused = []
                ops = []
                for _ in range(2):
                    net.use_fused_step = True
                    fused.append(_min_time(lambda: net.step(X, y)))
                    net.use_fused_step = False
                    ops.append(_min_time(lambda: net.step(X, y)))
                f, o = min(fused) * 1e6, min(ops) * 1e6
                rows.append((w, depth, B, f, o))
                print(f"{w:5d} {depth:5d} {B:5d} {f:9.1f} {o:9.1f} {f / o:9.2f}", file=out, flush=True)
    return rows


if __name__ == "__main__":
    if sys.argv[1:] == ["fused-grid"]:
        import symbreak_fast.backends.mlp_numba as nb
        nb.use_fused = lambda sizes, batch=None: True        # time the fused step everywhere
        fused_grid()
    else:
        print(__doc__)
