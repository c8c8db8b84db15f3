"""Throughput comparison against the peers, measured in one run (``symbreak-fast bench``).

Absolute times on shared machines are noise; the ratios (ours / peer, measured
back to back in the same process, best of ``repeat``) are the figures to quote.
"""
from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Row:
    group: str
    name: str
    seconds: float
    n: int

    @property
    def rate(self) -> float:
        return self.n / self.seconds


def best_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: compile / load caches, fault in pages
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(n: int = 1 << 25, repeat: int = 5, backend: str = "numba") -> list[Row]:
    """Time our generators and the peers on ``n`` float32 elements."""
    import symbreak_fast as sbf

    rows: list[Row] = []
    out32 = np.empty(n, np.float32)
    gen = np.random.default_rng(0)
    n_in = 4096 if n >= 4096 else 1
    shape2d = (n_in, n // n_in)          # the he-init rows time n_in * (n // n_in) <= n elements
    n2d = shape2d[0] * shape2d[1]
    scale = math.sqrt(2.0 / n_in)

    def add(group, name, fn, count=n):
        rows.append(Row(group, name, best_time(fn, repeat), count))

    add("fill", "ndarray.fill(1.0)", lambda: out32.fill(1.0))
    add("uniform", "symbreak uniform", lambda: sbf.uniform(n, 1, out=out32, backend=backend))
    add("uniform", "numpy Generator.random", lambda: gen.random(n, dtype=np.float32, out=out32))
    add("normal", "symbreak normal", lambda: sbf.normal(n, 1, out=out32, backend=backend))
    add("normal", "numpy Generator.standard_normal", lambda: gen.standard_normal(n, dtype=np.float32, out=out32))
    add("he-init", "symbreak normal(std=sqrt(2/n_in))",
        lambda: sbf.normal(shape2d, 1, std=scale, out=out32[:n2d].reshape(shape2d), backend=backend), n2d)
    add("he-init", "np.random.randn(n_in, n_out) * scale", lambda: np.random.randn(*shape2d) * scale, n2d)
    add("truncated", "symbreak truncated_normal", lambda: sbf.truncated_normal(n, 1, out=out32, backend=backend))
    if importlib.util.find_spec("scipy") is not None:
        from scipy.special import ndtr, ndtri
        lo, hi = ndtr(-2.0), ndtr(2.0)
        add("truncated", "numpy uniforms -> scipy ndtri",
            lambda: ndtri(lo + (hi - lo) * gen.random(n)).astype(np.float32))
    add("bits", "symbreak random_bits", lambda: sbf.random_bits(n, 1, out=out32.view(np.uint32), backend=backend))
    add("bits", "numpy Generator.integers(uint32)",
        lambda: gen.integers(0, 2 ** 32, size=n, dtype=np.uint32))
    if importlib.util.find_spec("torch") is not None:
        import torch
        t = torch.empty(n, dtype=torch.float32)
        add("normal", "torch normal_", lambda: t.normal_())
        add("uniform", "torch uniform_", lambda: t.uniform_())
        add("truncated", "torch trunc_normal_", lambda: torch.nn.init.trunc_normal_(t))
    return rows


# group -> (our row, peers to compare against)
COMPARE = {
    "uniform": "symbreak uniform",
    "normal": "symbreak normal",
    "he-init": "symbreak normal(std=sqrt(2/n_in))",
    "truncated": "symbreak truncated_normal",
    "bits": "symbreak random_bits",
}


def format_table(rows: list[Row]) -> str:
    fill = next((r for r in rows if r.group == "fill"), None)
    by = {(r.group, r.name): r for r in rows}
    lines = ["| group | what | Gelem/s | ours / this | % of fill |", "|---|---|---|---|---|"]
    for r in rows:
        ours = COMPARE.get(r.group)
        ratio = ""
        if ours and r.name != ours and (r.group, ours) in by:
            ratio = f"{by[(r.group, ours)].rate / r.rate:.1f}x"
        pct = f"{100 * r.rate / fill.rate:.0f}%" if fill else ""
        lines.append(f"| {r.group} | {r.name} | {r.rate / 1e9:.3f} | {ratio} | {pct} |")
    return "\n".join(lines)
