#!/usr/bin/env bash
# The one command to run on a (lent) GPU machine, straight from the checkout (no pip install):
#
#     bash scripts/gpu_check.sh            # results in $OUT_DIR (default: $OUT if set, else ./gpu_results)
#
# 1. prints the environment (GPUs, driver, python / numpy / numba / cupy / torch versions);
#    stops here, non-zero, when cupy sees no usable CUDA device
# 2. python -m pytest tests/test_gpu.py -m gpu     (bit identity GPU vs CPU; ~60 s of it is Numba's
#    cold compile of the CPU kernels the comparison uses)
# 3. a quick bit-identity subset of the CPU suite (backends vs the NumPy reference, golden, KAT)
# 4. python -m symbreak_fast.cli bench --device cuda --json $OUT_DIR/gpu_bench.json
# Everything goes to the terminal and to ONE file, $OUT_DIR/gpu_check.txt. Each step has a time
# limit (about 5 minutes in all). Exit status: non-zero when the GPU tests (or any other step) fail,
# 3 when there is no usable GPU. Optional tools (torch, nvidia-smi, timeout, git) may be missing.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
OUT_DIR="${OUT_DIR:-${OUT:-$ROOT/gpu_results}}"
mkdir -p "$OUT_DIR" || exit 1
LOG="$OUT_DIR/gpu_check.txt"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
unset SYMBREAK_BACKEND                       # device="cuda" must choose the cupy backend
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if command -v python >/dev/null 2>&1; then PY=python; else PY=python3; fi
fi

have() { command -v "$1" >/dev/null 2>&1; }

# limit SECONDS CMD...: run CMD with a time limit when coreutils' timeout exists
limit() {
    local s="$1"; shift
    if have timeout; then timeout --kill-after=10 "$s" "$@"; else "$@"; fi
}

# step NAME SECONDS CMD...: run one step, print its status and time; returns its exit status
step() {
    local name="$1" s="$2"; shift 2
    local t0=$SECONDS rc
    echo
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
    local t_start=$SECONDS overall=0
    echo "symbreak_fast GPU check, $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname 2>/dev/null || echo '?')"
    echo "checkout: $ROOT  results: $OUT_DIR"
    if have git && git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
        echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) ($(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) changed/untracked files)"
    fi
    echo "cpus: $(nproc 2>/dev/null || echo '?')  $(uname -srm 2>/dev/null)"
    echo
    echo "=== nvidia-smi"
    if have nvidia-smi; then
        limit 20 nvidia-smi -L || echo "(nvidia-smi -L failed)"
        limit 20 nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.max.sm,clocks.max.mem \
            --format=csv || true
    else
        echo "(nvidia-smi not found)"
    fi
    echo
    echo "=== python environment"
    limit 90 "$PY" - <<'EOF'
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
print("cuda_cupy.probe():", cuda_cupy.probe())
EOF
    local ok
    ok=$(limit 60 "$PY" -c 'from symbreak_fast.backends import cuda_cupy as c; ok, why = c.probe(); print("yes" if ok else why)' 2>&1 | tail -1)
    if [ "$ok" != "yes" ]; then
        echo
        echo "GPU CHECK FAILED: no usable CUDA device (cuda_cupy.probe() says: $ok)"
        return 3
    fi

    step "GPU tests" 180 "$PY" -m pytest tests/test_gpu.py tests/test_mlp_gpu.py -m gpu -q -rfEs --durations=15 || overall=1
    step "CPU bit-identity subset" 45 "$PY" -m pytest tests/test_backends.py tests/test_golden.py \
        tests/test_spec_kat.py -q -rfE || overall=1
    step "GPU bench" 75 "$PY" -m symbreak_fast.cli bench --device cuda --json "$OUT_DIR/gpu_bench.json" || overall=1

    echo
    echo "=== summary ($((SECONDS - t_start)) s)"
    printf '  %s\n' "${SUMMARY[@]}"
    if [ "$overall" -eq 0 ]; then echo "GPU CHECK PASSED"; else echo "GPU CHECK FAILED"; fi
    return "$overall"
}

main "$@" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
echo "(full log: $LOG; exit $rc)"
exit "$rc"
