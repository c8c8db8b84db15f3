"""symbreak_fast.dask: chunked Dask arrays equal the in-memory results bit for bit, on
the threaded scheduler and on a real 2-process LocalCluster (loopback only), and
map_ordered keeps task order and its in-flight bound."""
import os
import subprocess
import sys

import numpy as np
import pytest

import symbreak_fast as sbf

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
sbd = pytest.importorskip("symbreak_fast.dask")

from conftest import assert_same_bits

KEY = sbf.Key(0x5EED) / "dask"
ODD = (37, 53)                 # 1961 elements; chunks of 5 x 7 cut through Philox blocks of 4 words
ODD_CHUNKS = (5, 7)


def test_import_symbreak_fast_does_not_import_dask():
    code = ("import sys, symbreak_fast; "
            "print([m for m in ('dask', 'distributed', 'symbreak_fast.dask') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


# ---------------------------------------------------------------------------
# threaded scheduler (no client exists yet in this module: the cluster fixture is
# created with set_as_default=False and only used explicitly)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("gen", ["normal", "uniform", "truncated_normal"])
def test_generators_threads(gen, dtype):
    args = {"normal": (0.25, 2.0), "uniform": (-0.75, 1.5), "truncated_normal": (0.5, 1.5, -1.0, 2.5)}[gen]
    a = getattr(sbd, gen)(ODD, KEY, *args, chunks=ODD_CHUNKS, dtype=dtype)
    assert a.dtype == np.dtype(sbf.normal((1,), 0, dtype=dtype).dtype)
    assert a.chunks[0][0] == 5 and a.npartitions == 8 * 8
    assert_same_bits(a.compute(scheduler="threads"), getattr(sbf, gen)(ODD, KEY, *args, dtype=dtype))


def test_random_bits_and_names_deterministic():
    a = sbd.random_bits((10, 11), KEY, chunks=3)
    assert_same_bits(a.compute(scheduler="threads"), sbf.random_bits((10, 11), KEY))
    assert sbd.normal((100, 7), KEY, chunks=9).name == sbd.normal((100, 7), KEY, chunks=9).name
    names = {sbd.normal((100, 7), KEY, chunks=9).name, sbd.normal((100, 7), KEY, chunks=10).name,
             sbd.normal((100, 7), KEY, std=2.0, chunks=9).name, sbd.normal((100, 7), KEY / "x", chunks=9).name,
             sbd.normal((100, 7), KEY, chunks=9, dtype="bfloat16").name,
             sbd.normal((100, 7), KEY, chunks=9, dtype="float16").name}
    assert len(names) == 6


def test_fan_comes_from_full_shape_and_index():
    # a chunk (5, 7) of a (64, 48) he_normal must use fan_in 64, not 5
    a = sbd.he_normal((64, 48), KEY, chunks=(5, 7), dtype="bfloat16")
    full = sbf.he_normal((64, 48), KEY, dtype="bfloat16")
    assert_same_bits(a.compute(scheduler="threads"), full)
    b = sbd.from_initializer("xavier_uniform", (3, 40, 30), KEY, chunks=(2, 9, 8), gain=1.3, layout="oi")
    assert_same_bits(b.compute(scheduler="threads"), sbf.xavier_uniform((3, 40, 30), KEY, 1.3, layout="oi"))
    c = sbd.normal((20, 30), KEY, chunks=(6, 7), index=(slice(3, 17), 5))
    assert_same_bits(c.compute(scheduler="threads"), sbf.normal((20, 30), KEY)[3:17, 5])


def test_bad_arguments_raise_on_the_client():
    with pytest.raises(ValueError, match="std"):
        sbd.normal((3, 3), KEY, std=-1.0)
    with pytest.raises(ValueError, match="device"):
        sbd.normal((3, 3), KEY, device="cuda")
    with pytest.raises(ValueError, match="out="):
        sbd.normal((3, 3), KEY, out=np.empty((3, 3), np.float32))
    with pytest.raises(ValueError, match="unknown initializer"):
        sbd.from_initializer("nope", (3, 3), KEY)
    with pytest.raises(ValueError, match="index="):
        sbd.from_initializer(lambda shape, key, dtype="float32": np.zeros(shape, dtype), (3, 3), KEY)
    with pytest.raises(AttributeError):
        _ = sbd.not_an_initializer
    with pytest.raises(TypeError):
        sbd.normal((3, 3), None)
    with pytest.raises(TypeError):
        sbd.orthogonal((3, 3), None)


def test_keyless_initializers_and_names():
    assert_same_bits(sbd.zeros((3, 4), chunks=2, dtype="bfloat16").compute(scheduler="threads"),
                     sbf.zeros((3, 4), dtype="bfloat16"))
    assert_same_bits(sbd.constant((5,), value=0.5, chunks=2).compute(scheduler="threads"),
                     sbf.constant((5,), value=0.5))
    assert_same_bits(sbd.eye((6, 9), chunks=(4, 4)).compute(scheduler="threads"), sbf.eye((6, 9)))
    assert_same_bits(sbd.from_initializer("random_bits", (9,), KEY, chunks=4).compute(scheduler="threads"),
                     sbf.random_bits((9,), KEY))
    assert {"he_normal", "orthogonal", "normal", "map_ordered"} <= set(dir(sbd))


def test_dirac_is_whole_tensor_and_checked_on_the_client():
    # dirac builds the whole kernel for any index=: one piece per chunk, the same bits
    a = sbd.dirac((6, 4, 3, 3), groups=2, chunks=(4, 3, 3, 3))
    assert_same_bits(a.compute(scheduler="threads"), sbf.dirac((6, 4, 3, 3), groups=2))
    b = sbd.dirac((3, 3, 4, 8), layout="io", chunks=(2, 3, 4, 5), dtype="bfloat16")
    assert_same_bits(b.compute(scheduler="threads"), sbf.dirac((3, 3, 4, 8), layout="io", dtype="bfloat16"))
    with pytest.raises(ValueError, match="divisible by groups"):
        sbd.dirac((6, 4, 3, 3), groups=4)
    with pytest.raises(ValueError, match="3-, 4- or 5-D"):
        sbd.dirac((6, 4))
    assert sbf.init.dirac in sbd._GLOBAL


def test_init_params_engine_dask_threads():
    spec = {"emb": ((50, 24), "normal", {"std": 0.02}), "w": {"shape": [24, 40], "init": "he_uniform"},
            "b": ((40,), "zeros"), "ln": ((24,), "ones", {"dtype": "float64"})}
    lazy = sbf.init_params(spec, 3, engine="dask", chunks={"emb": (7, 5), "w": 9}, dtype="bfloat16")
    ref = sbf.init_params(spec, 3, dtype="bfloat16")
    assert list(lazy) == list(ref) and lazy["emb"].chunks[0][0] == 7 and lazy["w"].chunks == ((9, 9, 6), (9,) * 4 + (4,))
    for name in spec:
        assert isinstance(lazy[name], da.Array)
        assert_same_bits(lazy[name].compute(scheduler="threads"), ref[name])
    with pytest.raises(ValueError, match="flat=True"):
        sbf.init_params(spec, 3, engine="dask", flat=True)
    with pytest.raises(ValueError, match="device"):
        sbf.init_params(spec, 3, engine="dask", device="cpu")
    with pytest.raises(ValueError, match="engine"):
        sbf.init_params(spec, 3, engine="ray")


def _record_start(task):
    """A task that records its start as a file and returns its input transformed."""
    i, d = task
    open(os.path.join(d, f"start-{i}"), "w").close()
    return i * i


def _check_ordered(results, n, d, bound):
    got = []
    for i, r in enumerate(results):
        started = {int(f.split("-")[1]) for f in os.listdir(d)}
        # when result i is handed out, nothing beyond task i + bound - 1 was ever submitted
        assert max(started) < i + bound, (i, sorted(started))
        got.append(r)
    assert got == [i * i for i in range(n)]


def test_map_ordered_threads(tmp_path):
    _check_ordered(sbd.map_ordered(_record_start, [(i, str(tmp_path)) for i in range(11)], max_in_flight=3),
                   11, str(tmp_path), 3)
    # the default window is 2 x the local threads, whatever the number of tasks
    n = sbd.default_max_in_flight()
    assert n == 2 * (os.cpu_count() or 1)
    d = tmp_path / "default"
    d.mkdir()
    _check_ordered(sbd.map_ordered(_record_start, [(i, str(d)) for i in range(3 * n)]), 3 * n, str(d), n)
    assert list(sbd.map_ordered(abs, iter([-1, 2, -3]))) == [1, 2, 3]
    assert list(sbd.map_ordered(abs, [])) == []
    with pytest.raises(ValueError, match="max_in_flight"):
        sbd.map_ordered(abs, [1], max_in_flight=0)


# ---------------------------------------------------------------------------
# a real distributed cluster: 2 worker processes, loopback only
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                       dashboard_address=None)
    c = distributed.Client(cluster, set_as_default=False)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_cluster_bits(client, dtype):
    arrays = [sbd.normal(ODD, KEY, 0.25, 2.0, chunks=ODD_CHUNKS, dtype=dtype),
              sbd.truncated_normal((5, 301, 7), KEY, 0.0, 1.0, -2.0, 2.0, chunks=(2, 33, 3), dtype=dtype),
              sbd.he_normal((96, 40), KEY, mode="fan_out", chunks=(11, 13), dtype=dtype),
              sbd.orthogonal((30, 20), KEY / "orth", 1.5, chunks=(7, 6), dtype=dtype)]
    refs = [sbf.normal(ODD, KEY, 0.25, 2.0, dtype=dtype),
            sbf.truncated_normal((5, 301, 7), KEY, dtype=dtype),
            sbf.he_normal((96, 40), KEY, mode="fan_out", dtype=dtype),
            sbf.orthogonal((30, 20), KEY / "orth", 1.5, dtype=dtype)]
    for got, ref in zip(client.compute(arrays, sync=True), refs):
        assert_same_bits(got, ref)


def test_cluster_large_chunks_use_numba_on_workers(client):
    # chunks above the auto threshold (read from _dispatch, which owns it): the workers choose
    # numba themselves
    from symbreak_fast import _dispatch
    n = _dispatch.NUMBA_MIN_ELEMENTS + 5
    a = sbd.uniform((2, n), KEY, chunks=(1, -1))
    assert_same_bits(client.compute(a, sync=True), sbf.uniform((2, n), KEY))
    loaded = client.run(lambda: "symbreak_fast.backends.numba_cpu" in sys.modules)
    assert any(loaded.values()), loaded


def test_cluster_init_params(client):
    spec = {"q": ((64, 3 * 48), "xavier_normal"), "o": ((48, 64), "he_normal", {"distribution": "truncated_normal"}),
            "b": ((48,), "constant", {"value": 0.5}), "r": ((40, 24), "orthogonal")}
    lazy = sbf.init_params(spec, sbf.Key(11), engine="dask", chunks={"q": (10, 50), "o": (7, 64), "r": -1})
    ref = sbf.init_params(spec, sbf.Key(11))
    got = dict(zip(lazy, client.compute(list(lazy.values()), sync=True)))
    for name in spec:
        assert_same_bits(got[name], ref[name])


def test_map_ordered_cluster(client, tmp_path):
    _check_ordered(sbd.map_ordered(_record_start, [(i, str(tmp_path)) for i in range(9)], client=client,
                                   max_in_flight=2), 9, str(tmp_path), 2)
    with client.as_current():          # client=None picks up the current client
        pids = list(sbd.map_ordered(_pid, range(6)))
    assert os.getpid() not in pids     # ran in the worker processes, not the threads here
    # closing early cancels the rest without error
    it = sbd.map_ordered(_record_start, [(i, str(tmp_path)) for i in range(100, 110)], client=client)
    assert next(it) == 100 ** 2
    it.close()


def _pid(_):
    return os.getpid()


def _raw_tensors(path):
    """{name: raw bits} of a safetensors file, read with the header alone (any dtype)."""
    import json
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    width = {"BF16": np.uint16, "F16": np.uint16, "F32": np.uint32, "F64": np.uint64}
    return {k: np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], width[v["dtype"]]).reshape(v["shape"])
            for k, v in header.items() if k != "__metadata__"}


def test_save_init_on_the_cluster(client, tmp_path):
    """save_init(engine="dask") with the chunks rendered in the 2 worker processes: the file is
    byte-identical to the in-memory save_init and equals init_params bit for bit."""
    from symbreak_fast.checkpoint import save_init
    spec = {"embed": {"shape": [300, 64], "init": "normal", "std": 0.02},          # 38 KB: several chunks
            "fc.weight": {"shape": [5, 33, 40], "init": "he_normal", "layout": "oi"},
            "fc.bias": {"shape": [40], "init": "zeros"},
            "rnn.weight": {"shape": [24, 16], "init": "orthogonal"},
            "head": {"shape": [17, 9], "init": "truncated_normal", "std": 0.5, "dtype": "float32"}}
    local = tmp_path / "local.safetensors"
    on_cluster = tmp_path / "cluster.safetensors"
    save_init(spec, local, 77, chunk_bytes=6 * 8192, progress=False)
    r = save_init(spec, on_cluster, 77, engine="dask", client=client, chunk_bytes=6 * 8192, progress=False)
    assert r["chunks"] > 8 and r["buffer_bytes"] <= 6 * 8192        # window 2 x 2 threads + 2 buffers
    assert on_cluster.read_bytes() == local.read_bytes()
    ref = sbf.init_params(spec, 77, dtype="bfloat16")
    got = _raw_tensors(on_cluster)
    assert set(got) == set(ref)
    for name, arr in ref.items():
        assert_same_bits(got[name].view(arr.dtype), arr)
    with client.as_current():                       # client=None: the current client
        r = save_init(spec, tmp_path / "current.safetensors", 77, engine="dask", progress=False,
                      chunk_bytes=6 * 8192)
    assert (tmp_path / "current.safetensors").read_bytes() == local.read_bytes()
    # the chunks really ran in the worker processes (render_chunk imported there)
    loaded = client.run(lambda: "symbreak_fast.checkpoint" in sys.modules)
    assert any(loaded.values()), loaded
