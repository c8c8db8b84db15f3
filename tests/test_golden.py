"""The public streams equal the recorded golden table (tests/golden.json, written by
scripts/make_golden.py). A failure here means the streams changed: that is a
compatibility break and needs a CHANGELOG.md entry and a regenerated table."""
import hashlib
import json
import pathlib
import sys

import numpy as np
import pytest


ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_golden  # noqa: E402
from conftest import CPU_BACKENDS  # noqa: E402

GOLDEN = json.loads((ROOT / "tests" / "golden.json").read_text())


def test_golden_table_matches_generator_cases():
    assert GOLDEN["key"] == make_golden.KEY.seed
    assert sorted(GOLDEN["cases"]) == sorted(f"{n}/{d or 'uint32'}" for n, d, _ in make_golden.cases())


@pytest.mark.parametrize("backend", CPU_BACKENDS)  # the GPU: tests/test_gpu.py
@pytest.mark.parametrize("case", list(make_golden.cases()), ids=lambda c: f"{c[0]}/{c[1] or 'uint32'}")
def test_golden(backend, case):
    name, dt, f = case
    a = f(backend=backend)
    rec = GOLDEN["cases"][f"{name}/{dt or 'uint32'}"]
    assert hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() == rec["sha256"]
