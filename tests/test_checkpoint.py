"""save_init / `symbreak-fast init`: safetensors files equal to init_params bit for bit,
chunked with bounded buffers, atomic, with clear errors. Small specs only (fast)."""
import collections
import errno
import json
import os
import sys
import types

import numpy as np
import pytest

import symbreak_fast as sbf
from symbreak_fast import checkpoint as C
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
    """{name: raw bits as uint arrays}: numpy loader for F16/F32/F64, torch (or the raw
    bytes via safe_open's header) for BF16, which safetensors.numpy cannot represent."""
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
    ref = sbf.init_params(spec, key, dtype=dtype)
    raw, header = _read(path)
    assert set(raw) == set(ref)
    for name, arr in ref.items():
        np.testing.assert_array_equal(raw[name], _bits(arr), err_msg=name)
    # the official loaders agree
    if dtype != "bfloat16":
        plain = {k: v for k, v in np_load(path).items()}
        for name, arr in ref.items():
            np.testing.assert_array_equal(_bits(plain[name]), _bits(arr), err_msg=name)
    if torch is not None:
        t = torch_load(path)
        for name, arr in ref.items():
            v = t[name]
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
    r = C.save_init(SPEC, tmp_path / "m.safetensors", 0, chunk_bytes=64, progress=False)
    assert r["buffer_bytes"] <= 64 + 2 * C._ALIGN
    big = {"w": {"shape": [4096, 64], "init": "normal"}}                    # 512 KiB of bfloat16
    r = C.save_init(big, tmp_path / "b.safetensors", 0, chunk_bytes=1 << 17, progress=False)
    assert r["buffer_bytes"] <= (1 << 17) + 2 * C._ALIGN and r["chunks"] == 8
    _check_equal(tmp_path / "b.safetensors", big, 0, "bfloat16")


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


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_mid_write_keeps_the_previous_file(tmp_path, monkeypatch, exc):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"previous")
    real, calls = C.render_chunk, []

    def flaky(task, out=None):
        calls.append(task)
        if len(calls) == 4:
            raise exc
        return real(task, out)

    monkeypatch.setattr(C, "render_chunk", flaky)
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


def test_dask_engine(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "symbreak_fast.dask", None)
    with pytest.raises(ImportError, match="engine='dask' needs"):
        C.save_init(SPEC, tmp_path / "m.safetensors", 0, engine="dask", progress=False)
    seen = []
    fake = types.ModuleType("symbreak_fast.dask")
    fake.map_ordered = lambda func, tasks, client=None, max_in_flight=None: (seen.append(1) or func(t)
                                                                                for t in tasks)
    monkeypatch.setitem(sys.modules, "symbreak_fast.dask", fake)
    C.save_init(SPEC, tmp_path / "m.safetensors", 9, engine="dask", chunk_bytes=64, progress=False)
    assert len(seen) > 5
    _check_equal(tmp_path / "m.safetensors", SPEC, 9, "bfloat16")


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


def test_cli_preset(tmp_path, capsys, monkeypatch):
    calls = []

    def fake_preset(name, **config):
        calls.append((name, config))
        if name != "mlp":
            raise ValueError(f"unknown preset {name!r}; valid presets: mlp")
        return {"layers.0.weight": {"shape": [4, 3], "init": "he_normal"},
                "layers.0.bias": {"shape": [3], "init": "zeros"}}

    mod = types.ModuleType("symbreak_fast.presets")
    mod.preset = fake_preset
    monkeypatch.setitem(sys.modules, "symbreak_fast.presets", mod)
    monkeypatch.setattr(sbf, "presets", mod, raising=False)
    out = tmp_path / "mlp.safetensors"
    assert main(["init", "--preset", "mlp", "--sizes", "4,3", "--hidden", "3", "--set", "bias=true",
                 "--out", str(out), "--seed", "11"]) == 0
    assert calls[-1] == ("mlp", {"sizes": [4, 3], "hidden": 3, "bias": True})
    _check_equal(out, fake_preset("mlp"), 11, "bfloat16")
    assert main(["init", "--preset", "gpt9", "--dry-run"]) == 2
    assert "unknown preset 'gpt9'" in capsys.readouterr().err
