"""Regenerate tests/golden.json: SHA-256 digests of every public generator's output.

The golden table pins the streams across versions (docs/RNG.md compatibility
guarantee). Regenerating it is a stream change: it needs a CHANGELOG.md entry.

    python scripts/make_golden.py > tests/golden.json
"""
import hashlib
import json
import sys

import numpy as np

import symbreak_fast as sbf

KEY = sbf.Key(2024) / "golden"
SHAPE = (3, 1001)


def cases():
    yield "random_bits", None, lambda **kw: sbf.random_bits(SHAPE, KEY, **kw)
    for dt in ("float32", "float64", "float16", "bfloat16"):
        yield "uniform", dt, lambda dt=dt, **kw: sbf.uniform(SHAPE, KEY, -1.0, 3.0, dtype=dt, **kw)
        yield "normal", dt, lambda dt=dt, **kw: sbf.normal(SHAPE, KEY, 0.5, 0.02, dtype=dt, **kw)
        yield "truncated_normal", dt, lambda dt=dt, **kw: sbf.truncated_normal(
            SHAPE, KEY, 0.0, 1.0, -2.0, 2.0, dtype=dt, **kw)
        yield "truncated_normal_tail", dt, lambda dt=dt, **kw: sbf.truncated_normal(
            SHAPE, KEY, 0.0, 1.0, 3.0, float("inf"), dtype=dt, **kw)
    # initializers (orthogonal is left out: its QR bits depend on the BLAS build)
    yield "he_normal_io", "float32", lambda **kw: sbf.he_normal(SHAPE, KEY, **kw)
    yield "xavier_uniform_oi", "float32", lambda **kw: sbf.xavier_uniform(SHAPE, KEY, layout="oi", **kw)
    yield "variance_scaling_tn", "bfloat16", lambda **kw: sbf.variance_scaling(
        SHAPE, KEY, 2.0, "fan_avg", "truncated_normal", dtype="bfloat16", **kw)
    yield "sparse", "float32", lambda **kw: sbf.sparse(SHAPE, KEY, 0.3, 0.02, **kw)


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def main():
    table = {}
    for name, dt, f in cases():
        a = f(backend="numpy")
        table[f"{name}/{dt or 'uint32'}"] = {
            "sha256": digest(a),
            "first4_hex": [f"{int(x):0{2 * a.itemsize}x}" for x in
                           a.reshape(-1)[:4].view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.itemsize])],
        }
    json.dump({"key": KEY.seed, "shape": SHAPE, "cases": table}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
