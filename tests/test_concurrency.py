"""Thread and process safety (issue 7).

- 8 Python threads calling generators and initializers at the same time get exactly the
  serial results (the kernels release the GIL: nogil=True, so they really run at once);
- two processes compiling the Numba kernels into the same empty cache at the same time both
  succeed, give the reference bits, and leave a cache a third process loads without compiling;
- a read-only install (package folder and home not writable) still works: the kernels are
  cached in a private temporary folder (symbreak_fast/backends/_numba_env.py);
- the thread count can change inside a process and between processes on a warm cache.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import symbreak_fast as sbf
from conftest import FLOAT_DTYPES, assert_same_bits

pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parent.parent
K = sbf.Key(20261204)


def _calls():
    """(label, thunk) for a mix of generators and initializers, parallel and serial sizes."""
    calls = []
    for be in ("numba", "numpy"):
        for dt in FLOAT_DTYPES:
            calls += [
                (f"uniform-{dt}-{be}", lambda dt=dt, be=be: sbf.uniform((301, 517), K / "u", -2.0, 3.0, dtype=dt,
                                                                       backend=be)),
                (f"normal-{dt}-{be}", lambda dt=dt, be=be: sbf.normal((70001,), K / "n", 0.5, 2.0, dtype=dt,
                                                                     backend=be)),
                (f"trunc-{dt}-{be}", lambda dt=dt, be=be: sbf.truncated_normal(
                    (257, 300), K / "t", 0.0, 1.0, -1.5, 2.5, dtype=dt, backend=be,
                    index=(slice(3, 250), slice(7, 300)))),
            ]
        calls.append((f"bits-{be}", lambda be=be: sbf.random_bits((1000, 131), K / "b", backend=be)))
    calls += [
        ("he_normal", lambda: sbf.he_normal((512, 384), K / "he")),
        ("xavier_uniform-bf16", lambda: sbf.xavier_uniform((64, 3, 7, 7), K / "xu", layout="oi",
                                                           dtype="bfloat16")),
        ("lecun_normal-trunc", lambda: sbf.lecun_normal((300, 200), K / "ln",
                                                        distribution="truncated_normal")),
        ("orthogonal", lambda: sbf.orthogonal((96, 64), K / "q")),
        ("sparse", lambda: sbf.sparse((200, 100), K / "sp", sparsity=0.3)),
        ("init_params-flat", lambda: sbf.init_params(
            {"a.weight": ((128, 256), "he_uniform"), "a.bias": ((256,), "zeros"),
             "b.weight": {"shape": [256, 10], "init": "xavier_normal"}}, K, flat=True)),
    ]
    return calls


def _flatten(result):
    if isinstance(result, tuple):           # init_params(flat=True) -> (flat buffer, views)
        result = result[0]
    if isinstance(result, dict):
        return {k: np.array(v, copy=True) for k, v in result.items()}
    return np.array(result, copy=True)


def _assert_equal(a, b, label):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), label
        for k in a:
            assert_same_bits(a[k], b[k])
    else:
        assert_same_bits(a, b)


def test_eight_threads_at_once_give_the_serial_results():
    calls = _calls()
    serial = {label: _flatten(f()) for label, f in calls}       # also compiles what is needed
    n_threads, rounds = 8, 3
    barrier = threading.Barrier(n_threads)
    results = [[] for _ in range(n_threads)]
    errors = []

    def worker(t):
        try:
            order = list(range(len(calls)))
            np.random.default_rng(t).shuffle(order)             # each thread its own order
            barrier.wait()
            for _ in range(rounds):
                for i in order:
                    label, f = calls[i]
                    results[t].append((label, _flatten(f())))
        except BaseException as e:                              # pragma: no cover - reported below
            errors.append((t, repr(e)))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=600)
    assert not errors, errors
    assert all(len(r) == rounds * len(calls) for r in results)
    for r in results:
        for label, value in r:
            _assert_equal(value, serial[label], label)


def test_use_backend_is_per_thread():
    """A ``with use_backend(...)`` block in one thread does not leak into another."""
    auto = sbf.which_backend((1 << 20,))[0]          # what the automatic rule picks here
    pinned_to = "numba" if auto == "numpy" else "numpy"
    seen = {}
    inside = threading.Event()
    release = threading.Event()

    def pinned():
        with sbf.use_backend(pinned_to):
            seen["pinned"] = sbf.which_backend((1 << 20,))[0]
            inside.set()
            release.wait(60)

    def free():
        inside.wait(60)
        seen["free"] = sbf.which_backend((1 << 20,))[0]
        release.set()

    ts = [threading.Thread(target=pinned), threading.Thread(target=free)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert seen == {"pinned": pinned_to, "free": auto}


WORKQUEUE = r"""
import threading
import numpy as np
import numba
import symbreak_fast as sbf
shapes = [(1000, 517), (300001,)]
gens = [lambda s, be: sbf.normal(s, 3, 0.5, 2.0, backend=be),
        lambda s, be: sbf.uniform(s, 3, dtype="float64", backend=be),
        lambda s, be: sbf.truncated_normal(s, 3, dtype="bfloat16", backend=be),
        lambda s, be: sbf.random_bits(s, 3, backend=be)]
ref = [[g(s, "numpy") for s in shapes] for g in gens]
bad = []
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    for _ in range(3):
        for g, r in zip(gens, ref):
            for s, want in zip(shapes, r):
                if not np.array_equal(g(s, "numba").view(np.uint8), want.view(np.uint8)):
                    bad.append(1)
def train(sizes, batch):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch)
    net = sbf.MLP(sizes, activation="tanh", key=1, optimizer="adam", lr=1e-3, backend="numba")
    losses = [net.step(X, y) for _ in range(3)]
    return losses, np.array(net.flat_params, copy=True)
nets = [([32, 64, 64, 4], 1024), ([256, 512, 10], 256)]     # the fused narrow step; the op-by-op path
ref_nets = [train(*a) for a in nets]
def work_mlp():
    barrier.wait()
    for a, (losses, flat) in zip(nets, ref_nets):
        got_losses, got_flat = train(*a)
        if got_losses != losses or not np.array_equal(got_flat.view(np.uint8), flat.view(np.uint8)):
            bad.append(2)
for target in (work, work_mlp):
    ts = [threading.Thread(target=target) for _ in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
print(numba.threading_layer(), len(bad))
"""


def test_threads_under_the_workqueue_layer():
    """Numba's fallback threading layer aborts the process on concurrent parallel launches
    (measured: "Concurrent access has been detected", SIGABRT); the backends serialize
    launches under it, so 8 threads still finish with the reference bits."""
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    r = subprocess.run([sys.executable, "-c", WORKQUEUE], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["workqueue", "0"]


# ---------------------------------------------------------------------------
# processes and the on-disk kernel cache
# ---------------------------------------------------------------------------
# float32-family kernels only (the float64 family would double the cold compile time and is
# the same code path): serial and parallel launch variants, every distribution and dtype
DIGEST = r"""
import hashlib
import symbreak_fast as sbf


def digest(backend):
    h = hashlib.sha256()
    for dt in ("float32", "float16", "bfloat16"):
        for n in (1000, 300001):
            h.update(sbf.uniform((n,), 5, -1.0, 2.0, dtype=dt, backend=backend).tobytes())
            h.update(sbf.normal((n,), 5, 0.5, 3.0, dtype=dt, backend=backend).tobytes())
            h.update(sbf.truncated_normal((n,), 5, 0.0, 1.0, -2.0, 1.0, dtype=dt, backend=backend).tobytes())
    h.update(sbf.random_bits((300001,), 5, backend=backend).tobytes())
    return h.hexdigest()
"""
CHILD = DIGEST + r"""
import sys
from symbreak_fast.backends import numba_cpu
from numba.core import config
print(sbf.__file__, file=sys.stderr)
d = digest("numba")
hits = sum(sum(f.stats.cache_hits.values()) for f in (numba_cpu.fill32, numba_cpu.fill32_serial))
misses = sum(sum(f.stats.cache_misses.values()) for f in (numba_cpu.fill32, numba_cpu.fill32_serial))
print(d, hits, misses, config.CACHE_DIR or "-")
"""


def _reference_digest():
    scope = {}
    exec(DIGEST, scope)            # the same function the child processes run, on the reference
    return scope["digest"]("numpy")


def _child_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    env.update(extra)
    return env


def _parse(proc):
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    digest, hits, misses, cache_dir = out.split()
    return digest, int(hits), int(misses), cache_dir


def test_two_processes_compile_into_one_cold_cache_at_once(tmp_path):
    cache = tmp_path / "numba-cache"
    env = _child_env(NUMBA_CACHE_DIR=str(cache))
    procs = [subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    first = [_parse(p) for p in procs]
    ref = _reference_digest()
    for digest, hits, misses, _ in first:
        assert digest == ref
        assert misses >= 1          # the cache was cold: this process compiled
    assert any(p.suffix == ".nbi" for p in cache.rglob("*"))
    # a third process finds every kernel specialization in the cache and compiles nothing
    digest, hits, misses, _ = _parse(subprocess.Popen([sys.executable, "-c", CHILD], env=env,
                                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    assert digest == ref
    assert misses == 0 and hits >= 2


def _read_only_runner(install: Path, home: Path):
    """argv that runs CHILD with ``install`` and ``home`` mounted read-only (mount namespace),
    or None where this machine can't make one."""
    probe = subprocess.run(["unshare", "--mount", "sh", "-c",
                            f"mount --bind {install} {install} && mount -o remount,bind,ro {install} && "
                            f"! touch {install}/.w 2>/dev/null"], capture_output=True)
    if probe.returncode != 0:
        return None
    script = (f"mount --bind {install} {install} && mount -o remount,bind,ro {install} && "
              f"mount --bind {home} {home} && mount -o remount,bind,ro {home} && "
              f'exec "$0" -c "$1"')
    return ["unshare", "--mount", "sh", "-c", script, sys.executable, CHILD]


def test_read_only_install_caches_in_a_private_temp_folder(tmp_path):
    install, home, tmp = tmp_path / "site", tmp_path / "home", tmp_path / "tmp"
    for d in (install, home, tmp):
        d.mkdir()
    shutil.copytree(ROOT / "symbreak_fast", install / "symbreak_fast",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    argv = _read_only_runner(install, home)
    if argv is None:
        # no mount namespace here: make the in-tree and user cache folders unusable instead
        # (a plain file where Numba would create each folder; this stops root too)
        (install / "symbreak_fast" / "backends" / "__pycache__").write_text("not a folder")
        (home / ".cache").write_text("not a folder")
        argv = [sys.executable, "-c", CHILD]
    env = _child_env(PYTHONPATH=str(install), HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"),
                     TMPDIR=str(tmp), PYTHONDONTWRITEBYTECODE="1")
    ref = _reference_digest()
    runs = []
    for _ in range(2):
        # cwd: "-c" puts the working directory first on sys.path; it must not hold the checkout
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, cwd=tmp)
        assert r.returncode == 0, r.stderr[-3000:]
        digest, hits, misses, cache_dir = r.stdout.split()
        runs.append((digest, int(hits), int(misses), cache_dir))
    assert str(install) in r.stderr              # the copy was imported, not the checkout
    private = str(tmp / f"symbreak_fast-numba-{os.getuid()}")
    assert [r[3] for r in runs] == [private, private]
    assert runs[0][0] == runs[1][0] == ref
    assert runs[0][2] >= 1                       # compiled into the private folder ...
    assert runs[1][2] == 0 and runs[1][1] >= 2   # ... and loaded from it by the next process
    assert not any(p.suffix in (".nbi", ".nbc") for p in install.rglob("*"))
    assert oct(os.stat(private).st_mode & 0o777) == "0o700"


def test_thread_count_changes_inside_a_process():
    numba = pytest.importorskip("numba")
    before = numba.get_num_threads()
    try:
        ref = sbf.normal((1 << 18,), K / "threads", dtype="float32", backend="numpy")
        for n in (1, before, 1):
            numba.set_num_threads(n)
            assert_same_bits(sbf.normal((1 << 18,), K / "threads", dtype="float32", backend="numba"), ref)
    finally:
        numba.set_num_threads(before)


def test_private_cache_folder_must_be_ours_and_private(tmp_path, monkeypatch):
    import tempfile
    from symbreak_fast.backends import _numba_env as nc
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    d = tmp_path / f"symbreak_fast-numba-{os.getuid()}"
    assert nc._private_tmp_dir() == str(d)                  # created ...
    assert oct(d.stat().st_mode & 0o777) == "0o700"         # ... private
    os.chmod(d, 0o777)                                      # others could plant code in it
    assert nc._private_tmp_dir() is None
    os.chmod(d, 0o700)
    d.rmdir()
    d.symlink_to(tmp_path)                                  # a link someone else may have made
    assert nc._private_tmp_dir() is None


def test_no_usable_cache_folder_compiles_in_memory_with_a_warning(monkeypatch):
    from numba.core import config
    from symbreak_fast.backends import _numba_env as nc
    monkeypatch.setattr(nc, "_numba_finds_a_folder", lambda py_file: False)
    monkeypatch.setattr(nc, "_private_tmp_dir", lambda: None)
    before = config.CACHE_DIR
    with pytest.warns(RuntimeWarning, match="NUMBA_CACHE_DIR"):
        assert nc.resolve_cache(nc.__file__) is False
    assert config.CACHE_DIR == before
