"""One MLP training step (forward + backward + SGD, float32): symbreak's Numba backend
(fully fused narrow-net step where it applies, fused ops around BLAS GEMMs otherwise)
beside the unfused NumPy reference ops and torch CPU (2 threads), one group per net.
The `gemm-only` entries time the step's matrix products alone (same buffers, same run):
time outside the GEMMs = ours - gemm-only.

Run:  pytest benchmarks/test_mlp.py --benchmark-enable -p no:randomly
(the large group takes ~1-2 min with compilation; select groups with -k small / medium / large).
"""

import numpy as np
import pytest

pytest.importorskip("numba")
from symbreak_fast import _mlp_ref
from symbreak_fast.backends import mlp_numba as nb


class _With:
    """An ops module with its matmul replaced."""

    def __init__(self, ops, matmul):
        self._ops, self.matmul = ops, matmul

    def __getattr__(self, name):
        return getattr(self._ops, name)


# The NumPy baseline of the field notes: the reference's unfused ops, GEMMs by OpenBLAS
# (_mlp_ref.matmul itself is a k-loop kept for bitwise symmetry, not a speed baseline).
REF = _With(_mlp_ref, np.matmul)
# ours with OpenBLAS GEMMs (nb.blas_matmul): faster, but does not keep identical columns identical
NB_BLAS = _With(nb, nb.blas_matmul)

CASES = {
    "small": ([64, 64, 64, 1], 128, "mse", 200, 50),
    "medium": ([784, 1024, 1024, 10], 256, "softmax_cross_entropy", 10, 3),
    "large": ([1024, 4096, 4096, 1024], 512, "softmax_cross_entropy", 3, 1),
}


class OpStep:
    """A training step written against the ops interface, with preallocated buffers."""

    def __init__(self, ops, sizes, B, act="relu", loss="mse", dtype=np.float32, seed=0):
        rng = np.random.default_rng(seed)
        self.ops, self.sizes, self.act, self.loss = ops, sizes, act, loss
        self.w_off, self.b_off, P = nb.layer_offsets(sizes)
        self.params = np.zeros(P, dtype)
        self.grads = np.zeros(P, dtype)
        for l, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.W(l)[...] = rng.standard_normal((i, o)) * np.sqrt(2.0 / i)
        self.X = rng.standard_normal((B, sizes[0])).astype(dtype)
        if loss == "mse":
            self.y = rng.standard_normal((B, sizes[-1])).astype(dtype)
        else:
            self.y = rng.integers(0, sizes[-1], B).astype(np.int64)
        self.z = [np.zeros((B, o), dtype) for o in sizes[1:]]
        self.a = [np.zeros((B, o), dtype) for o in sizes[1:-1]]
        self.g = [np.zeros((B, o), dtype) for o in sizes[1:]]

    def _v(self, buf, l, which):
        i, o = self.sizes[l], self.sizes[l + 1]
        if which == "W":
            return buf[self.w_off[l]:self.w_off[l] + i * o].reshape(i, o)
        return buf[self.b_off[l]:self.b_off[l] + o]

    def W(self, l, buf=None):
        return self._v(self.params if buf is None else buf, l, "W")

    def step(self, lr=1e-3):
        ops, L = self.ops, len(self.sizes) - 1
        x = self.X
        for l in range(L):
            ops.matmul(x, self.W(l), self.z[l])
            if l < L - 1:
                ops.bias_act_forward(self.z[l], self._v(self.params, l, "b"), self.act, 0.01, self.a[l])
                x = self.a[l]
            else:
                ops.bias_act_forward(self.z[l], self._v(self.params, l, "b"), "linear", 0.0, self.z[l])
        lossf = ops.mse if self.loss == "mse" else ops.softmax_xent
        loss = lossf(self.z[-1], self.y, self.g[-1])
        for l in range(L - 1, -1, -1):
            g = self.g[l]
            if l == L - 1:
                ops.act_backward_bias_grad(g, self.z[l], self.z[l], "linear", 0.0, self._v(self.grads, l, "b"))
            else:
                ops.act_backward_bias_grad(g, self.z[l], self.a[l], self.act, 0.01, self._v(self.grads, l, "b"))
            xin = self.X if l == 0 else self.a[l - 1]
            ops.matmul(xin.T, g, self.W(l, self.grads))
            if l > 0:
                ops.matmul(g, self.W(l).T, self.g[l - 1])
        ops.sgd(self.params, self.grads, lr)
        return loss

    def gemms(self):
        """The step's matrix products alone (same shapes, buffers and matmul as step)."""
        mm, L = self.ops.matmul, len(self.sizes) - 1
        x = self.X
        for l in range(L):
            mm(x, self.W(l), self.z[l])
            x = self.a[l] if l < L - 1 else None
        for l in range(L - 1, -1, -1):
            xin = self.X if l == 0 else self.a[l - 1]
            mm(xin.T, self.g[l], self.W(l, self.grads))
            if l > 0:
                mm(self.g[l], self.W(l).T, self.g[l - 1])

    def fused_step(self, lr=1e-3):
        return nb.train_step_fused(self.X, self.y, self.params, self.grads, self.sizes, self.act,
                                   loss=self.loss, lr=lr)


def ours(case):
    sizes, B, loss, _, _ = CASES[case]
    s = OpStep(nb, sizes, B, loss=loss)
    return s.fused_step if nb.use_fused(sizes, B) else s.step


def _bench(benchmark, fn, case):
    _, _, _, rounds, iters = CASES[case]
    fn()
    benchmark.pedantic(fn, rounds=rounds, iterations=iters, warmup_rounds=1)


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
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(B, sizes[0], generator=g)
    if loss == "mse":
        y, crit = torch.randn(B, sizes[-1], generator=g), torch.nn.MSELoss()
    else:
        y, crit = torch.randint(0, sizes[-1], (B,), generator=g), torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=False)
        out = crit(net(X), y)
        out.backward()
        opt.step()
        return out

    return step


@pytest.mark.parametrize("case", list(CASES))
def test_symbreak_step(benchmark, case):
    benchmark.group = f"mlp-step-{case}"
    _bench(benchmark, ours(case), case)


@pytest.mark.parametrize("case", ["small"])
def test_symbreak_opbyop_step(benchmark, case):
    """The op-by-op Numba path on the narrow net (what the fused step replaces)."""
    benchmark.group = f"mlp-step-{case}"
    sizes, B, loss, _, _ = CASES[case]
    _bench(benchmark, OpStep(nb, sizes, B, loss=loss).step, case)


@pytest.mark.parametrize("case", list(CASES))
def test_numpy_reference_step(benchmark, case):
    benchmark.group = f"mlp-step-{case}"
    sizes, B, loss, _, _ = CASES[case]
    _bench(benchmark, OpStep(REF, sizes, B, loss=loss).step, case)


@pytest.mark.parametrize("case", list(CASES))
def test_torch_cpu_step(benchmark, case):
    benchmark.group = f"mlp-step-{case}"
    _bench(benchmark, _torch_step(case), case)


@pytest.mark.parametrize("case", ["medium", "large"])
def test_symbreak_blas_step(benchmark, case):
    """Ours op by op with OpenBLAS GEMMs (for nets without identical columns to keep)."""
    benchmark.group = f"mlp-step-{case}"
    sizes, B, loss, _, _ = CASES[case]
    _bench(benchmark, OpStep(NB_BLAS, sizes, B, loss=loss).step, case)


@pytest.mark.parametrize("case", ["medium", "large"])
def test_gemm_only_numba(benchmark, case):
    """The GEMMs of test_symbreak_step alone (column-consistent Numba GEMM)."""
    benchmark.group = f"mlp-step-{case}"
    sizes, B, loss, _, _ = CASES[case]
    _bench(benchmark, OpStep(nb, sizes, B, loss=loss).gemms, case)


@pytest.mark.parametrize("case", ["medium", "large"])
def test_gemm_only_blas(benchmark, case):
    """The GEMMs of test_symbreak_blas_step / the NumPy step alone (OpenBLAS)."""
    benchmark.group = f"mlp-step-{case}"
    sizes, B, loss, _, _ = CASES[case]
    _bench(benchmark, OpStep(NB_BLAS, sizes, B, loss=loss).gemms, case)
