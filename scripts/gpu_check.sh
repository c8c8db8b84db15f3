#!/usr/bin/env bash
# The one command to run on a (lent) GPU machine, straight from the checkout (no pip install;
# needs only python with numpy, numba, cupy, pytest; torch / ml_dtypes / nvidia-smi optional):
#
#     bash scripts/gpu_check.sh            # results in $OUT_DIR (default: $OUT if set, else ./gpu_results)
#
# 1. the environment (GPUs, driver, python / numpy / numba / cupy / torch versions) and
#    cuda_cupy.probe(); stops here, exit 3, when cupy sees no usable CUDA device or no NVRTC
# 2. a bit-identity subset of the CPU suite (CPU backends vs the NumPy reference, golden digests,
#    KAT on every backend): runs first because it pays Numba's cold compile of the CPU kernels
#    (~30-60 s; measured 63 s wall on a loaded 2-core machine) into the disk cache, which the GPU
#    tests' CPU side then loads in ~1 s
# 3. python -m pytest tests/test_gpu.py tests/test_mlp_gpu.py -m gpu  (bit identity GPU vs CPU)
# 4. python -m symbreak_fast.cli bench --device cuda --json $OUT_DIR/gpu_bench.json (exit 1 when
#    any of our rows is not bit-identical to the CPU)
# Time: each step has a cap (below) and the whole run a budget of BUDGET_S (default 280 s): a
# step gets min(its cap, what is left), a step with < 10 s left is skipped as a failure, so the
# script ends in under 5 minutes. Everything (log, tables, the bench JSON) goes to the terminal
# and to ONE file, $OUT_DIR/gpu_check.txt (the JSON is also kept as $OUT_DIR/gpu_bench.json).
# Exit status: 0 all passed; 1 a step failed or timed out; 3 no usable GPU.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
OUT_DIR="${OUT_DIR:-${OUT:-$ROOT/gpu_results}}"
mkdir -p "$OUT_DIR" || exit 1
LOG="$OUT_DIR/gpu_check.txt"
rm -f "$OUT_DIR/gpu_bench.json" "$OUT_DIR/.probe"     # never report a previous run's results
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
unset SYMBREAK_BACKEND                       # device="cuda" must choose the cupy backend
export SBF_REQUIRE_GPU=1                     # tests/test_gpu.py errors instead of skipping without a GPU
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if command -v python >/dev/null 2>&1; then PY=python; else PY=python3; fi
fi

have() { command -v "$1" >/dev/null 2>&1; }

# limit SECONDS CMD...: run CMD with a time limit when coreutils' timeout exists
limit() {
    local s="$1"; shift
    if have timeout; then timeout --kill-after=5 "$s" "$@"; else "$@"; fi
}

BUDGET_S="${BUDGET_S:-280}"
T0=$SECONDS

# step NAME CAP CMD...: run one step with min(CAP, budget left) seconds; print its status and
# time; returns its exit status (124 when skipped for lack of time)
step() {
    local name="$1" cap="$2"; shift 2
    local left=$((BUDGET_S - (SECONDS - T0))) t0=$SECONDS rc s
    s=$cap
    if [ "$left" -lt "$s" ]; then s=$left; fi
    echo
    if [ "$s" -lt 10 ]; then
        echo "=== $name: SKIPPED, only ${left}s of the ${BUDGET_S}s budget left"
        SUMMARY+=("$name: SKIPPED (budget)")
        return 124
    fi
    echo "=== $name (limit ${s}s): $*"
    limit "$s" "$@"
    rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "=== $name: TIMED OUT after $((SECONDS - t0)) s (rc $rc)"
    else
        echo "=== $name: rc $rc in $((SECONDS - t0)) s"
    fi
    SUMMARY+=("$name: rc $rc ($((SECONDS - t0)) s)")
    return "$rc"
}

main() {
    SUMMARY=()
    local overall=0
    echo "symbreak_fast GPU check, $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname 2>/dev/null || echo '?')"
    echo "checkout: $ROOT"
    echo "results file: $LOG"
    if have git && git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
        echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) ($(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) changed/untracked files)"
    fi
    echo "cpus: $(nproc 2>/dev/null || echo '?')  $(uname -srm 2>/dev/null)"
    echo
    echo "=== nvidia-smi"
    if have nvidia-smi; then
        limit 10 nvidia-smi -L || echo "(nvidia-smi -L failed)"
        limit 10 nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.max.sm,clocks.max.mem \
            --format=csv || true
    else
        echo "(nvidia-smi not found)"
    fi
    echo
    echo "=== python environment"
    limit 40 "$PY" - "$OUT_DIR/.probe" <<'EOF'
import importlib, os, platform, sys
print("python", sys.version.split()[0], platform.platform(), sys.executable)
for m in ("numpy", "numba", "cupy", "ml_dtypes", "pytest", "pytest_benchmark", "torch"):
    try:
        mod = importlib.import_module(m)
        print(f"{m} {getattr(mod, '__version__', '?')}")
    except Exception as e:  # optional tools may be missing
        print(f"{m}: not importable ({type(e).__name__}: {e})")
try:
    import numba
    print("numba threads", numba.config.NUMBA_NUM_THREADS)
except Exception:
    pass
try:
    import cupy
    rt = cupy.cuda.runtime
    print("cupy: CUDA runtime", rt.runtimeGetVersion(), "driver", rt.driverGetVersion(),
          "devices", rt.getDeviceCount())
    for i in range(rt.getDeviceCount()):
        p = rt.getDeviceProperties(i)
        print(f"  cuda:{i} {p['name'].decode()} cc {p['major']}.{p['minor']} "
              f"{p['totalGlobalMem'] / 2**30:.0f} GiB, {p['multiProcessorCount']} SMs")
except Exception as e:
    print(f"cupy CUDA query failed: {type(e).__name__}: {e}")
try:
    import torch
    print("torch CUDA", torch.version.cuda, "available", torch.cuda.is_available())
except Exception:
    pass
import symbreak_fast as sbf
from symbreak_fast.backends import cuda_cupy
print("symbreak_fast", sbf.__version__, "backends", sbf.available_backends())
ok, why = cuda_cupy.probe()
print("cuda_cupy.probe():", (ok, why))
with open(sys.argv[1], "w") as f:
    f.write("yes" if ok else why)
EOF
    local ok
    ok=$(cat "$OUT_DIR/.probe" 2>/dev/null || echo "the environment script failed or timed out")
    rm -f "$OUT_DIR/.probe"
    if [ "$ok" != "yes" ]; then
        echo
        echo "GPU CHECK FAILED: no usable CUDA device (cuda_cupy.probe() says: $ok)"
        return 3
    fi

    # -o addopts= : the project's addopts name pytest-benchmark's --benchmark-disable, and that
    # plugin may be missing here; these files use no benchmark fixture
    local PYTEST=("$PY" -m pytest -o addopts= -p no:cacheprovider -q -rfEs)
    step "CPU bit-identity subset (pays Numba's cold compile)" 100 "${PYTEST[@]}" -m "not slow" \
        tests/test_backends.py tests/test_golden.py tests/test_spec_kat.py || overall=1
    step "GPU tests" 130 "${PYTEST[@]}" -m gpu --durations=15 tests/test_gpu.py tests/test_mlp_gpu.py || overall=1
    step "GPU bench" 50 "$PY" -m symbreak_fast.cli bench --device cuda --json "$OUT_DIR/gpu_bench.json" || overall=1
    if [ -f "$OUT_DIR/gpu_bench.json" ]; then
        echo
        echo "=== $OUT_DIR/gpu_bench.json"
        cat "$OUT_DIR/gpu_bench.json"
    fi
    echo
    echo "=== summary ($((SECONDS - T0)) s of the ${BUDGET_S} s budget)"
    printf '  %s\n' "${SUMMARY[@]}"
    if [ "$overall" -eq 0 ]; then echo "GPU CHECK PASSED"; else echo "GPU CHECK FAILED"; fi
    return "$overall"
}

main "$@" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
echo "(everything above is in $LOG; exit $rc)"
exit "$rc"
