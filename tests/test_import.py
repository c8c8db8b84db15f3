import subprocess
import sys


def test_import_is_light():
    code = ("import sys, symbreak_fast; "
            "bad = [m for m in ('numba', 'llvmlite', 'cupy', 'scipy', 'ml_dtypes', 'symbreak_fast.backends.numba_cpu') "
            "if m in sys.modules]; print(bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_small_request_stays_on_numpy_and_imports_no_numba():
    code = ("import sys, symbreak_fast as s; s.normal((8, 8), 0); s.uniform(100, 1); "
            "print(s.which_backend((8, 8))[0], 'numba' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["numpy", "False"]
