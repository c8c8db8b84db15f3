"""save_init / `symbreak-fast init`: safetensors files equal to init_params bit for bit,
chunked with bounded buffers, atomic, with clear errors. Small specs only (fast)."""
import collections
import errno
import gc
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import types
import warnings
import weakref

import numpy as np
import pytest

import symbreak_fast as sbf
from symbreak_fast import checkpoint as C
from symbreak_fast._request import dtype_name
from symbreak_fast.cli import main

safetensors = pytest.importorskip("safetensors")
from safetensors import safe_open
from safetensors.numpy import load_file as np_load

try:
    import torch
    from safetensors.torch import load_file as torch_load
except ImportError:                    # pragma: no cover - torch is optional
    torch = None

SPEC = {
    "embed": {"shape": [7, 11], "init": "normal", "std": 0.02},
    "fc.weight": {"shape": [5, 3, 4], "init": "he_normal"},           # 3-D: recursion to axes 1 and 2
    "fc.bias": {"shape": [13], "init": "zeros"},                      # 1-D
    "rnn.weight": {"shape": [6, 4], "init": "orthogonal"},            # whole-matrix initializer
    "head": {"shape": [3, 5], "init": "uniform", "dtype": "float64"},  # own dtype: file order by itemsize
}


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def _read(path):
    """{name: raw bits as uint arrays}, {header}: the file parsed by hand from its header,
    independently of the safetensors library."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        dt = {"BF16": np.uint16, "F16": np.uint16, "F32": np.uint32, "F64": np.uint64}[info["dtype"]]
        out[name] = np.frombuffer(data[a:b], dtype=dt).reshape(info["shape"])
    return out, header


def _check_equal(path, spec, key, dtype):
    """The file equals init_params(spec, key, dtype=dtype) bit for bit, read three ways: by
    hand, with safetensors' numpy loader (BF16 comes back as ml_dtypes.bfloat16, the dtype
    symbreak_fast returns) and with its torch loader."""
    ref = sbf.init_params(spec, key, dtype=dtype)
    raw, header = _read(path)
    assert set(raw) == set(ref)
    for name, arr in ref.items():
        np.testing.assert_array_equal(raw[name], _bits(arr), err_msg=name)
    plain = np_load(path)
    assert set(plain) == set(ref)
    for name, arr in ref.items():
        assert plain[name].dtype == arr.dtype and plain[name].shape == arr.shape, name
        np.testing.assert_array_equal(_bits(plain[name]), _bits(arr), err_msg=name)
    if torch is not None:
        t = torch_load(path)
        for name, arr in ref.items():
            v = t[name]
            assert v.dtype == getattr(torch, dtype_name(arr.dtype)) and tuple(v.shape) == arr.shape, name
            got = v.view(torch.int16).numpy().view(np.uint16) if v.dtype == torch.bfloat16 else _bits(v.numpy())
            np.testing.assert_array_equal(got, _bits(arr), err_msg=name)
    return header


def _leftovers(folder):
    return [n for n in os.listdir(folder) if n.endswith(".tmp")]


@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "float16"])
@pytest.mark.parametrize("chunk_bytes", [16, 96, 1 << 20])
def test_file_equals_init_params(tmp_path, dtype, chunk_bytes):
    path = tmp_path / "m.safetensors"
    r = C.save_init(SPEC, path, 1234, dtype=dtype, chunk_bytes=chunk_bytes, progress=False)
    header = _check_equal(path, SPEC, 1234, dtype)
    assert r["tensors"] == len(SPEC) and r["params"] == sum(int(np.prod(e["shape"])) for e in SPEC.values())
    assert r["bytes"] == os.path.getsize(path)
    assert (8 + int.from_bytes(path.read_bytes()[:8], "little")) % 8 == 0
    assert header["head"]["dtype"] == "F64" and header["head"]["data_offsets"][0] == 0
    assert not _leftovers(tmp_path)


def test_buffered_path_without_o_direct(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "USE_O_DIRECT", False)
    C.save_init(SPEC, tmp_path / "m.safetensors", 5, chunk_bytes=64, progress=False)
    _check_equal(tmp_path / "m.safetensors", SPEC, 5, "bfloat16")


def test_chunk_indices_cover_the_tensor_in_order():
    for shape, itemsize, cb in [((5, 3, 4), 2, 16), ((5, 3, 4), 2, 7 * 2), ((5, 3, 4), 4, 48), ((13,), 2, 6),
                                ((4, 9), 8, 8), ((2, 3), 2, 1000), ((0, 3), 2, 8)]:
        full = np.arange(int(np.prod(shape))).reshape(shape)
        parts = [(full if ix is None else full[ix]).reshape(-1) for ix, nb in C.chunk_indices(shape, itemsize, cb)]
        sizes = [nb for _, nb in C.chunk_indices(shape, itemsize, cb)]
        assert all(nb <= cb for nb in sizes) and sizes == [p.size * itemsize for p in parts]
        np.testing.assert_array_equal(np.concatenate(parts) if parts else full.reshape(-1), full.reshape(-1))
    # one row of 3*4*2 = 24 bytes > 16: axis 0 fixed as an int, slabs along axis 1
    assert list(C.chunk_indices((5, 3, 4), 2, 16))[:2] == [((0, slice(0, 2)), 16), ((0, slice(2, 3)), 8)]


def test_largest_chunk_is_the_walk_without_walking():
    # plan_init sizes its buffers with largest_chunk (O(ndim)); it must equal the maximum over the chunk walk
    import itertools
    for shape in [(5, 3, 4), (13,), (4, 9), (2, 3), (0, 3), (7, 1, 5), (1, 1), (3, 0, 2), (6, 6, 6, 2)]:
        for itemsize, cb in itertools.product((1, 2, 4, 8), (1, 6, 8, 14, 16, 48, 100, 1000)):
            if cb < itemsize:
                continue
            walk = max((nb for _, nb in C.chunk_indices(shape, itemsize, cb)), default=0)
            assert C.largest_chunk(shape, itemsize, cb) == walk, (shape, itemsize, cb)
    # 2**33 chunks: answered at once (the walk would take hours)
    assert C.largest_chunk((2 ** 40, 2 ** 20), 2, 2 ** 27) == 64 * 2 ** 21


def test_buffers_are_bounded_and_reused(tmp_path):
    plan = C.plan_init(SPEC, 0, chunk_bytes=64)
    tasks = list(plan.tasks())
    assert plan.chunk_bytes == 32 and plan.buffers == 2
    assert all(t.nbytes <= 32 for t in tasks if t.index is not None)
    buf = np.empty(32, np.uint8)
    t = next(t for t in tasks if t.index is not None)
    got = C.render_chunk(t, buf)
    assert got.nbytes == t.nbytes and np.shares_memory(got, buf)          # generated in place
    assert bytes(C.render_chunk(t)) == bytes(got)                          # and as a fresh array
    # a tiny budget (under 8 KiB per buffer) gets the carry room and page rounding on top
    r = C.save_init(SPEC, tmp_path / "m.safetensors", 0, chunk_bytes=64, progress=False)
    assert r["buffer_bytes"] == 2 * 2 * C._ALIGN
    big = {"w": {"shape": [4096, 64], "init": "normal"}}                    # 512 KiB of bfloat16
    r = C.save_init(big, tmp_path / "b.safetensors", 0, chunk_bytes=1 << 17, progress=False)
    rows = ((1 << 16) - C._ALIGN) // (64 * 2)                               # rows per 60 KiB chunk
    assert r["buffer_bytes"] <= 1 << 17 and r["chunks"] == -(-4096 // rows)
    _check_equal(tmp_path / "b.safetensors", big, 0, "bfloat16")


@pytest.mark.parametrize("chunk_bytes", [1 << 17, 3_000_001, 1 << 20])
@pytest.mark.parametrize("in_flight", [0, 1, 5])
def test_allocated_buffers_stay_within_chunk_bytes(tmp_path, monkeypatch, chunk_bytes, in_flight):
    """The bytes really allocated for the buffers (not only the plan's number) stay within
    chunk_bytes, with the results computed ahead counted (engine="dask", local threads)."""
    if in_flight:
        pytest.importorskip("symbreak_fast.dask")
    spec = {"a": {"shape": [3, 1000, 700], "init": "normal"},            # 4.2 MB: many chunks
            "b": {"shape": [123457], "init": "uniform"},
            "c": {"shape": [9, 4099], "init": "ones", "dtype": "float32"}}
    plan = C.plan_init(spec, 0, chunk_bytes=chunk_bytes, in_flight=in_flight)
    assert max(t.nbytes for t in plan.tasks()) <= plan.chunk_bytes
    assert plan.buffer_bytes <= chunk_bytes
    # every buffer and chunk result is an _aligned_buffer: track the bytes alive at once
    real, lock, live = C._aligned_buffer, threading.Lock(), {"now": 0, "peak": 0}

    def freed(n):
        with lock:
            live["now"] -= n

    def tracked(n):
        a = real(n)
        with lock:
            live["now"] += n
            live["peak"] = max(live["peak"], live["now"])
        weakref.finalize(a, freed, n)
        return a

    monkeypatch.setattr(C, "_aligned_buffer", tracked)
    r = C.save_init(spec, tmp_path / "m.safetensors", 0, chunk_bytes=chunk_bytes, progress=False,
                    **({"engine": "dask", "max_in_flight": in_flight} if in_flight else {}))
    gc.collect()
    assert live["now"] == 0
    assert 0 < live["peak"] <= r["buffer_bytes"] == plan.buffer_bytes <= chunk_bytes
    _check_equal(tmp_path / "m.safetensors", spec, 0, "bfloat16")


def test_default_budget_is_exact_and_whole_matrices_warn():
    # 1 GiB of bfloat16 rows of 16 KiB: the default 256 MiB budget is not exceeded by a byte
    big = {"w": {"shape": [65536, 8192], "init": "normal"}}
    for in_flight in (0, 4, 32):
        plan = C.plan_init(big, 0, validate=False, in_flight=in_flight)
        assert plan.buffer_bytes <= C.DEFAULT_CHUNK_BYTES
        assert plan.chunk_bytes == (C.DEFAULT_CHUNK_BYTES // (2 + in_flight) // C._ALIGN - 1) * C._ALIGN
    assert C.plan_init(big, 0, validate=False).buffer_bytes > C.DEFAULT_CHUNK_BYTES - (1 << 20)   # and is used
    with pytest.warns(ResourceWarning, match="orthogonal computes the whole"):
        C.plan_init({"r": {"shape": [64, 64], "init": "orthogonal"}}, 0, chunk_bytes=1 << 14)   # 8 KiB > a buffer
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        C.plan_init({"r": {"shape": [64, 64], "init": "orthogonal"}}, 0, chunk_bytes=1 << 20)


MEMORY_CHILD = r"""
import json, os, sys
import symbreak_fast as sbf
from symbreak_fast import checkpoint as C
from symbreak_fast._request import dtype_name

def status(field):                     # bytes, from /proc/self/status (Linux)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024

def reset_peak():                      # VmHWM := VmRSS (Linux >= 4.0, /proc/PID/clear_refs "5")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status("VmRSS:")

engine, folder, chunk = sys.argv[1] or None, sys.argv[2], int(sys.argv[3])
spec = json.loads(sys.argv[4])
kw = {"engine": engine} if engine else {}
# warm-up on the same initializers, dtypes and chunk kinds (whole and sliced), so every kernel
# is loaded (compiled if the cache is cold) before the measurement; numba, as the auto rule
# picks for big chunks (the NumPy reference makes working arrays of about the chunk's size)
warm = {k: dict(v, shape=[64] * len(v["shape"])) for k, v in spec.items()}
with sbf.use_backend("numba"):
    C.save_init(warm, os.path.join(folder, "warm.safetensors"), 1, chunk_bytes=6 * 8192, progress=False, **kw)
base = reset_peak()
r = C.save_init(spec, os.path.join(folder, "m.safetensors"), 1, chunk_bytes=chunk, progress=False, **kw)
growth = status("VmHWM:") - base
# the meter itself: materializing the largest tensor once must show up in full
name = "a.weight"                      # 128 MiB of bfloat16
base2 = reset_peak()
whole = sbf.init_params({name: spec[name]}, 1, dtype="bfloat16")[name]
control = status("VmHWM:") - base2
print(json.dumps({"growth": growth, "control": control, "whole": whole.nbytes, "buffer_bytes": r["buffer_bytes"],
                  "bytes": r["bytes"]}))
"""

# 448 MiB in four tensors of 64-128 MiB, every one >> the 16 MiB budget
MEMORY_SPEC = {"a.weight": {"shape": [8192, 8192], "init": "normal", "std": 0.02},          # 128 MiB bf16
               "b.weight": {"shape": [4096, 16384], "init": "he_normal"},                    # 128 MiB bf16
               "c.weight": {"shape": [2048, 16384], "init": "uniform", "dtype": "float32"},  # 128 MiB f32
               "d.weight": {"shape": [1 << 25], "init": "ones"}}                            # 64 MiB bf16


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status and clear_refs")
@pytest.mark.parametrize("engine", ["", "dask"])
def test_peak_rss_is_bounded_by_chunk_bytes(tmp_path, engine):
    """Measured, not planned: peak RSS growth of save_init in a fresh process (VmHWM after
    resetting it, minus VmRSS before) on 448 MiB of tensors with chunk_bytes = 16 MiB stays
    <= 1.5 x chunk_bytes + 8 MiB. The 8 MiB: the writer (and pool) threads' stacks, the
    OpenMP team's per-thread state, Python objects and malloc bookkeeping; measured 3.5-4.5
    MiB on the development machine for both engines (growth 19.5-20.5 MiB). Any tensor
    materialized whole would add >= 64 MiB, and the control measurement in the same process
    (one 128 MiB tensor made by init_params) shows the meter sees it."""
    pytest.importorskip("numba")
    if engine:
        pytest.importorskip("symbreak_fast.dask")
    chunk = 16 << 20
    r = subprocess.run([sys.executable, "-c", MEMORY_CHILD, engine, str(tmp_path), str(chunk),
                        json.dumps(MEMORY_SPEC)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout.strip().splitlines()[-1])
    assert m["bytes"] > 448 * 2**20 and m["buffer_bytes"] <= chunk
    assert m["control"] >= m["whole"] == 128 * 2**20          # the meter sees a whole tensor
    assert m["growth"] <= 1.5 * chunk + 8 * 2**20, f"peak RSS grew by {m['growth'] / 2**20:.1f} MiB"


def test_metadata_reproduces_the_file(tmp_path):
    path = tmp_path / "m.safetensors"
    C.save_init(SPEC, path, 2**40 + 7, progress=False)
    with safe_open(str(path), framework="np") as f:
        meta = f.metadata()
    assert meta["format"] == "pt" and meta["symbreak_fast.version"] == sbf.__version__
    assert meta["symbreak_fast.seed"] == str(2**40 + 7)
    params = json.loads(meta["symbreak_fast.params"])
    assert list(params) == list(SPEC)
    assert params["embed"] == {"shape": [7, 11], "init": "normal", "std": 0.02, "dtype": "bfloat16"}
    assert params["head"]["dtype"] == "float64"
    _check_equal(path, params, int(meta["symbreak_fast.seed"]), "bfloat16")


def _fail_on_chunk(monkeypatch, n, exc):
    """Make the n-th chunk rendered raise ``exc`` (the others are rendered for real); returns the
    list of rendered tasks (clear it to arm the failure again)."""
    real, calls = C.render_chunk, []

    def failing(task, out=None):
        calls.append(task)
        if len(calls) == n:
            raise exc
        return real(task, out)

    monkeypatch.setattr(C, "render_chunk", failing)
    return calls


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_mid_write_keeps_the_previous_file(tmp_path, monkeypatch, exc):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"previous")
    calls = _fail_on_chunk(monkeypatch, 4, exc)
    with pytest.raises(type(exc)):
        C.save_init(SPEC, path, 0, chunk_bytes=32, progress=False)
    assert path.read_bytes() == b"previous" and not _leftovers(tmp_path)
    fresh = tmp_path / "new.safetensors"
    calls.clear()
    with pytest.raises(type(exc)):
        C.save_init(SPEC, fresh, 0, chunk_bytes=32, progress=False)
    assert not fresh.exists() and not _leftovers(tmp_path)


def test_write_error_in_the_writer_thread(tmp_path, monkeypatch):
    real, calls = C._pwrite_all, []

    def full_disk(fd, mv, off):
        calls.append(off)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, mv, off)

    monkeypatch.setattr(C, "_pwrite_all", full_disk)
    with pytest.raises(OSError, match="No space"):                     # 32 KiB: whole 4 KiB blocks
        C.save_init({"w": {"shape": [64, 256], "init": "normal"}}, tmp_path / "m.safetensors", 0,
                    chunk_bytes=8192, progress=False)
    assert len(calls) == 3
    assert os.listdir(tmp_path) == []


def test_disk_space_checked_before_writing(tmp_path, monkeypatch):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(C.shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 100, 100))
    with pytest.raises(OSError, match="not enough disk space") as e:
        C.save_init(SPEC, tmp_path / "m.safetensors", 0, progress=False)
    assert e.value.errno == errno.ENOSPC and os.listdir(tmp_path) == []


def test_missing_unwritable_or_directory_target(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        C.save_init(SPEC, tmp_path / "no" / "m.safetensors", 0, progress=False)
    with pytest.raises(IsADirectoryError):
        C.save_init(SPEC, tmp_path, 0, progress=False)
    monkeypatch.setattr(C.os, "access", lambda p, mode: False)      # (root may write anywhere)
    with pytest.raises(PermissionError, match="not writable"):
        C.save_init(SPEC, tmp_path / "m.safetensors", 0, progress=False)
    assert os.listdir(tmp_path) == []


def test_bad_specs(tmp_path):
    with pytest.raises(ValueError, match="unknown initializer 'he_norml'"):
        C.save_init({"w": {"shape": [2, 2], "init": "he_norml"}}, tmp_path / "m.safetensors", 0)
    with pytest.raises(ValueError, match="'b'.*at least 2 dims"):
        C.save_init({"b": {"shape": [4], "init": "he_normal"}}, tmp_path / "m.safetensors", 0)
    with pytest.raises(ValueError, match="set by save_init"):
        C.plan_init({"w": {"shape": [2], "init": "zeros", "index": 0}})
    assert os.listdir(tmp_path) == []
    (tmp_path / "bad.json").write_text('{"params": {\n  "w": {"shape": [2, 2], "init": "normal"},\n}}\n')
    with pytest.raises(C.SpecError, match=r"bad\.json:3:1: malformed JSON"):
        C.load_spec(tmp_path / "bad.json")
    (tmp_path / "bad.yaml").write_text("params:\n  w: {shape: [2, 2], init: normal\n  b: 1\n")
    with pytest.raises(C.SpecError, match=r"bad\.yaml:\d+:\d+: malformed YAML") as e:
        C.load_spec(tmp_path / "bad.yaml")
    assert ":2:" in str(e.value) or ":3:" in str(e.value)
    (tmp_path / "noparams.json").write_text('{"w": {"shape": [2], "init": "zeros"}}')
    with pytest.raises(C.SpecError, match="'params' key"):
        C.load_spec(tmp_path / "noparams.json")
    (tmp_path / "noshape.yaml").write_text("params:\n  w: {init: zeros}\n")
    with pytest.raises(C.SpecError, match=r"params\['w'\]: missing key 'shape'"):
        C.load_spec(tmp_path / "noshape.yaml")


def test_dask_engine_local_threads(tmp_path, monkeypatch):
    """engine="dask" without a client: the real map_ordered on local threads, byte-identical
    to the local engine; its window counts against chunk_bytes."""
    with pytest.raises(ValueError, match="engine='dask' only"):
        C.save_init(SPEC, tmp_path / "m.safetensors", 0, max_in_flight=2, progress=False)
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "symbreak_fast.dask", None)
        with pytest.raises(ImportError, match="engine='dask' needs"):
            C.save_init(SPEC, tmp_path / "m.safetensors", 0, engine="dask", progress=False)
    assert os.listdir(tmp_path) == []
    sbd = pytest.importorskip("symbreak_fast.dask")
    assert sbd._current_client() is None
    spec = dict(SPEC, big={"shape": [300, 301], "init": "truncated_normal"})   # 180 KB: many chunks
    local = tmp_path / "local.safetensors"
    C.save_init(spec, local, 9, chunk_bytes=1 << 16, progress=False)
    for window in (None, 1, 3):
        out = tmp_path / f"dask{window}.safetensors"
        r = C.save_init(spec, out, 9, engine="dask", chunk_bytes=1 << 16, progress=False, max_in_flight=window)
        assert out.read_bytes() == local.read_bytes()
        assert r["chunks"] > 10 and r["buffer_bytes"] <= 1 << 16
    with pytest.raises(ValueError, match="max_in_flight"):
        C.save_init(spec, out, 9, engine="dask", max_in_flight=0, progress=False)


def test_cli_spec_files_end_to_end(tmp_path, capsys):
    (tmp_path / "s.json").write_text(json.dumps({"params": SPEC}, indent=1))
    out = tmp_path / "m.safetensors"
    assert main(["init", str(tmp_path / "s.json"), "--out", str(out), "--seed", "3", "--dtype", "f32",
                 "--chunk-mb", "0.0001", "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    with open(tmp_path / "s.json") as f:
        _check_equal(out, json.load(f)["params"], 3, "float32")
    yaml = pytest.importorskip("yaml")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"params": SPEC}))
    assert main(["init", str(tmp_path / "s.yaml"), "-o", str(out), "--dtype", "bf16"]) == 0
    _check_equal(out, SPEC, 0, "bfloat16")


def test_cli_dry_run_and_errors(tmp_path, capsys):
    (tmp_path / "s.json").write_text(json.dumps({"params": SPEC}))
    assert main(["init", str(tmp_path / "s.json"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for text in ("fc.weight", "5x3x4", "he_normal", "normal(std=0.02)", "float64", "total: 5 tensors, 189 parameters"):
        assert text in out
    names = [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] in SPEC]
    assert names == list(SPEC) and os.listdir(tmp_path) == ["s.json"]
    (tmp_path / "u.json").write_text('{"params": {"w": {"shape": [2, 2], "init": "nope"}}}')
    assert main(["init", str(tmp_path / "u.json"), "-o", str(tmp_path / "m.safetensors")]) == 2
    assert "unknown initializer 'nope'" in capsys.readouterr().err
    assert main(["init", str(tmp_path / "s.json"), "-o", str(tmp_path / "no" / "m.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"params": [}')
    assert main(["init", str(tmp_path / "bad.json"), "--dry-run"]) == 2
    assert "bad.json:1:13: malformed JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["init", str(tmp_path / "s.json")])            # neither --out nor --dry-run
    assert "--out" in capsys.readouterr().err


TINY_LLAMA_FLAGS = ["--hidden", "32", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--intermediate", "48",
                    "--vocab", "40"]


def _llama_total(d, L, h, kv, ff, V, tied=False):
    """Llama parameter count from the architecture (embedding, per-layer q/k/v/o, gate/up/down
    and two norms, final norm, untied head)."""
    hd = d // h
    return V * d * (1 if tied else 2) + L * (d * h * hd + 2 * d * kv * hd + h * hd * d + 3 * d * ff + 2 * d) + d


def _table_names(out):
    return [line.split()[0] for line in out.splitlines() if line[:1].isalpha() and "." in line.split()[0]]


def test_cli_preset_llama_dry_run_and_set(tmp_path, capsys):
    assert main(["init", "--preset", "llama", *TINY_LLAMA_FLAGS, "--dry-run"]) == 0
    out = capsys.readouterr().out
    total = _llama_total(32, 2, 4, 2, 48, 40)
    assert f"{total:,} parameters" in out and f"total: {3 + 9 * 2} tensors" in out
    names = _table_names(out)
    assert names[0] == "model.embed_tokens.weight" and names[-1] == "lm_head.weight"
    assert "model.layers.1.self_attn.k_proj.weight" in names
    row = next(line for line in out.splitlines() if line.startswith("model.layers.0.self_attn.k_proj.weight"))
    assert "16x32" in row and "normal(mean=0.0, std=0.02)" in row and "bfloat16" in row   # kv_heads * 8 = 16
    # --set: any other config entry, typed by the preset's option table
    assert main(["init", "--preset", "llama", *TINY_LLAMA_FLAGS, "--set", "tie_embeddings=true",
                 "--set", "initializer_range=0.01", "--dry-run", "--dtype", "f32"]) == 0
    out = capsys.readouterr().out
    assert "lm_head.weight" not in out and f"{_llama_total(32, 2, 4, 2, 48, 40, tied=True):,} parameters" in out
    assert "std=0.01" in out and "std=0.02" not in out and "float32" in out
    assert os.listdir(tmp_path) == []
    for bad, msg in ((["--set", "tie_embeddings=maybe"], "a bool"), (["--set", "hiden=3"], "unknown config key"),
                     (["--context", "64"], "unknown config key")):
        assert main(["init", "--preset", "llama", *TINY_LLAMA_FLAGS, *bad, "--dry-run"]) == 2
        assert msg in capsys.readouterr().err
    assert main(["init", "--preset", "gpt9", "--dry-run"]) == 2
    assert "unknown preset 'gpt9'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["init", "--preset", "llama", "--set", "novalue", "--dry-run"])
    assert "KEY=VALUE" in capsys.readouterr().err


def test_cli_preset_mlp_sizes_writes_the_real_preset(tmp_path, capsys):
    out = tmp_path / "mlp.safetensors"
    assert main(["init", "--preset", "mlp", "--sizes", "6,10,3", "--set", "activation=tanh", "--out", str(out),
                 "--seed", "11", "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    expected = {"layers.0.weight": {"shape": [6, 10], "init": "xavier_uniform", "gain": 1.0, "layout": "io"},
                "layers.0.bias": {"shape": [10], "init": "zeros"},
                "layers.1.weight": {"shape": [10, 3], "init": "xavier_uniform", "gain": 1.0, "layout": "io"},
                "layers.1.bias": {"shape": [3], "init": "zeros"}}
    _check_equal(out, expected, 11, "bfloat16")
    assert main(["init", "--preset", "mlp", "--sizes", "6,x", "--dry-run"]) == 2
    assert "sizes" in capsys.readouterr().err


def test_cli_tiny_llama_preset_file_reads_back(tmp_path, capsys):
    from symbreak_fast.presets import preset
    out = tmp_path / "llama.safetensors"
    assert main(["init", "--preset", "llama", *TINY_LLAMA_FLAGS, "-o", str(out), "--seed", "2024",
                 "--chunk-mb", "0.01", "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    spec = preset("llama", hidden=32, layers=2, heads=4, kv_heads=2, intermediate=48, vocab=40)
    header = _check_equal(out, spec, 2024, "bfloat16")
    meta = header["__metadata__"]
    assert meta["symbreak_fast.seed"] == "2024"
    _check_equal(out, json.loads(meta["symbreak_fast.params"]), 2024, "float32")   # metadata carries dtypes
    assert sum(int(np.prod(v["shape"])) for k, v in header.items() if k != "__metadata__") == \
        _llama_total(32, 2, 4, 2, 48, 40)


class _FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(tmp_path, capsys, monkeypatch):
    spec_file = tmp_path / "s.json"
    spec_file.write_text(json.dumps({"params": SPEC}))
    out = tmp_path / "m.safetensors"
    assert main(["init", str(spec_file), "-o", str(out)]) == 0            # capsys' stderr is not a TTY
    assert capsys.readouterr().err == ""
    tty = _FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main(["init", str(spec_file), "-o", str(out), "--chunk-mb", "0.0001"]) == 0
    bar = tty.getvalue()
    size = os.path.getsize(out)
    k = f"{size / 1024:.3g}k"                       # tqdm's unit_scale with unit_divisor 1024
    assert "m.safetensors" in bar and "100%" in bar and f"{k}/{k}" in bar and "B/s" in bar, bar
    tty.truncate(0)
    assert main(["init", str(spec_file), "-o", str(out), "--no-progress"]) == 0
    assert tty.getvalue() == ""


def test_cli_ctrl_c_exits_130_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    spec_file = tmp_path / "s.json"
    spec_file.write_text(json.dumps({"params": SPEC}))
    calls = _fail_on_chunk(monkeypatch, 3, KeyboardInterrupt())
    target = tmp_path / "m.safetensors"
    assert main(["init", str(spec_file), "-o", str(target), "--chunk-mb", "0.0001", "--no-progress"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["s.json"]
    target.write_bytes(b"previous")
    calls.clear()
    assert main(["init", str(spec_file), "-o", str(target), "--chunk-mb", "0.0001", "--no-progress"]) == 130
    assert target.read_bytes() == b"previous" and not _leftovers(tmp_path)


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32", reason="POSIX signals")
def test_cli_real_sigint_mid_write(tmp_path):
    """A real Ctrl-C (SIGINT) while the file is being written: exit status 130, no target,
    no temporary file."""
    spec_file = tmp_path / "s.json"
    spec_file.write_text(json.dumps({"params": {"w": {"shape": [32768, 16384], "init": "normal"}}}))  # 1 GiB
    target = tmp_path / "m.safetensors"
    p = subprocess.Popen([sys.executable, "-m", "symbreak_fast.cli", "init", str(spec_file), "-o", str(target),
                          "--chunk-mb", "16", "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(os.path.getsize(tmp_path / n) > 0 for n in _leftovers(tmp_path)):
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "no temporary file appeared"
            time.sleep(0.01)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, (out, err)
    assert "interrupted" in err
    assert sorted(os.listdir(tmp_path)) == ["s.json"]


def test_cli_dask_engine_scheduler_and_workers(tmp_path, capsys, monkeypatch):
    distributed = pytest.importorskip("distributed")
    seen, real_save = [], C.save_init

    def save_and_ask_the_scheduler(*a, **kw):     # which cluster ran it, and did it run tasks?
        r = real_save(*a, **kw)
        c = kw["client"]
        if c is not None:
            seen.append((sum(c.nthreads().values()),
                         c.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.task_prefixes))))
        return r

    monkeypatch.setattr(C, "save_init", save_and_ask_the_scheduler)
    spec_file = tmp_path / "s.json"
    spec_file.write_text(json.dumps({"params": SPEC}))
    local = tmp_path / "local.safetensors"
    assert main(["init", str(spec_file), "-o", str(local), "--seed", "4", "--no-progress"]) == 0
    for bad in (["--workers", "2"], ["--scheduler", "tcp://127.0.0.1:1"],
                ["--engine", "dask", "--workers", "1", "--scheduler", "tcp://127.0.0.1:1"],
                ["--engine", "dask", "--workers", "0"]):
        with pytest.raises(SystemExit):
            main(["init", str(spec_file), "-o", str(tmp_path / "x.safetensors"), *bad])
    capsys.readouterr()
    # --workers N: a LocalCluster of N processes for this run
    got = tmp_path / "workers.safetensors"
    assert main(["init", str(spec_file), "-o", str(got), "--seed", "4", "--engine", "dask", "--workers", "1",
                 "--chunk-mb", "0.05", "--no-progress"]) == 0
    assert got.read_bytes() == local.read_bytes()
    assert seen[-1][0] == 1 and seen[-1][1] >= 1          # 1 worker thread; render tasks were scheduled
    # --scheduler ADDRESS: an existing cluster (here one in this process, loopback)
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=1, host="127.0.0.1",
                                  protocol="tcp", dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        got = tmp_path / "scheduler.safetensors"
        assert main(["init", str(spec_file), "-o", str(got), "--seed", "4", "--engine", "dask",
                     "--scheduler", cluster.scheduler_address, "--chunk-mb", "0.05", "--no-progress"]) == 0
        assert got.read_bytes() == local.read_bytes()
        assert seen[-1][1] >= 1
        # a bad target fails before anything is started or connected to
        assert main(["init", str(spec_file), "-o", str(tmp_path / "no" / "x.safetensors"), "--engine", "dask",
                     "--scheduler", cluster.scheduler_address]) == 2
        assert "does not exist" in capsys.readouterr().err


_FRESH_SAVE = r"""
import sys
import symbreak_fast as sbf
from symbreak_fast import _dispatch
spec = {f"w{i}": ((1024, 1024), "he_normal") for i in range(9)}     # 9 x 2**20 > 2**23 elements
r = sbf.save_init(spec, sys.argv[1], 0, dtype="bfloat16", chunk_bytes=1 << 21, progress=False)
print(r["chunks"], _dispatch._AUTO_NUMPY_ELEMENTS[0], "numba" in _dispatch._LOADED)
"""


def test_fresh_process_save_init_picks_the_backend_for_the_whole_job(tmp_path):
    """Each 1 MiB chunk is far below the auto rule's 2**23 elements, but the job is above it:
    a fresh process uses Numba from the first chunk instead of renting the NumPy reference
    (whose temporaries would exceed the chunk budget) chunk by chunk."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "SYMBREAK_BACKEND"}
    r = subprocess.run([sys.executable, "-c", _FRESH_SAVE, str(tmp_path / "m.safetensors")], env=env,
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    chunks, rented, numba_loaded = r.stdout.split()
    # rented: only plan_init's one-element validation probe per tensor went to the reference
    assert int(chunks) > 9 and int(rented) == 9 and numba_loaded == "True"   # several chunks per tensor
