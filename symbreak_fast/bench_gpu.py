"""GPU throughput (``symbreak-fast bench --device cuda``): our CUDA kernels against the device's
own write bandwidth (the roofline: ``cupy.ndarray.fill`` on float32), a device-to-device copy,
``cupy.random`` and ``torch`` (when importable with CUDA).

Timing: CUDA events recorded on the current stream around ``inner`` back-to-back calls (so the
host's per-call Python overhead overlaps the previous kernel, as in a real program), after
``warmup`` calls; the figure is the median over ``repeat`` such runs, per call. Every output is
preallocated (``out=``), so allocation is not timed. Rates count bytes written (the copy
counts bytes read + written). Our results' first and last 64 Ki elements are checked against
the NumPy reference, so a kernel that writes nothing cannot pass for a fast one.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

DTYPES = ("float32", "float64", "float16", "bfloat16")
KINDS = ("random_bits", "uniform", "normal", "truncated_normal")

# (distribution, dtype) -> least fraction of the fill bandwidth (issue targets, H100/H200)
TARGET_PCT_OF_FILL = {("uniform", "float32"): 0.90, ("normal", "float32"): 0.75,
                      ("truncated_normal", "float32"): 0.60}
TARGET_VS_TORCH_RANDN = 1.0     # our normal float32 / torch.randn float32 throughput
CHECK_ELEMS = 1 << 16


class NoDevice(RuntimeError):
    """No usable CUDA device (or cupy missing): the message says why."""


@dataclass
class Row:
    group: str                  # roofline | random_bits | uniform | normal | truncated_normal
    dtype: str
    name: str
    n: int
    bytes: int                  # bytes moved per call (written; copy: read + written)
    ours: bool = False
    seconds: float | None = None        # median per call
    runs: list = field(default_factory=list)
    bits_ok: bool | None = None
    error: str = ""

    @property
    def gelem_s(self):
        return self.n / self.seconds / 1e9 if self.seconds else None

    @property
    def gb_s(self):
        return self.bytes / self.seconds / 1e9 if self.seconds else None


def _cupy_timer(fn, repeat, inner, warmup):
    import cupy
    for _ in range(warmup):
        fn()
    cupy.cuda.Device().synchronize()
    stream = cupy.cuda.get_current_stream()
    runs = []
    for _ in range(repeat):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record(stream)
        for _ in range(inner):
            fn()
        stop.record(stream)
        stop.synchronize()
        runs.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3 / inner)
    return runs


def _torch_timer(fn, repeat, inner, warmup):
    import torch
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    runs = []
    for _ in range(repeat):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        stop.record()
        stop.synchronize()
        runs.append(start.elapsed_time(stop) / 1e3 / inner)
    return runs


def _torch_cuda():
    """torch if it is importable and sees CUDA, else (None, why)."""
    try:
        import torch
    except Exception as e:  # absent, or broken next to this CUDA
        return None, f"torch not importable ({type(e).__name__}: {e})"
    try:
        if not torch.cuda.is_available():
            return None, f"torch {torch.__version__} has no CUDA here"
    except Exception as e:
        return None, f"torch.cuda failed ({type(e).__name__}: {e})"
    return torch, f"torch {torch.__version__} (CUDA {torch.version.cuda})"


def device_info() -> dict:
    import cupy
    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    name = props.get("name", b"?")
    return {"device_id": dev.id, "name": name.decode() if isinstance(name, bytes) else str(name),
            "compute_capability": dev.compute_capability,
            "memory_GiB": round(props.get("totalGlobalMem", 0) / 2 ** 30, 1),
            "driver": cupy.cuda.runtime.driverGetVersion(), "runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "cupy": cupy.__version__, "numpy": np.__version__}


def _our_call(kind, n, key, dt, **kw):
    import symbreak_fast as sbf
    if kind == "random_bits":
        return sbf.random_bits(n, key, **kw)
    return getattr(sbf, kind)(n, key, dtype=dt, **kw)


def _check_bits(kind, n, key, dt, out) -> bool:
    """First and last CHECK_ELEMS elements of ``out`` equal the NumPy reference's bits."""
    m = min(n, CHECK_ELEMS)
    for lo in sorted({0, n - m}):
        ref = _our_call(kind, n, key, dt, index=(slice(lo, lo + m),), backend="numpy")
        ref_bits = ref.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[ref.dtype.itemsize])
        got = out[lo:lo + m].get()
        if not np.array_equal(got.view(ref_bits.dtype), ref_bits):
            return False
    return True


def run(n: int = 1 << 28, repeat: int = 15, inner: int = 5, warmup: int = 3, dtypes=DTYPES,
        peers: bool = True, log: Callable[[str], None] | None = print) -> dict:
    """Measure everything on the current CUDA device; returns a JSON-ready dict (see write_json)."""
    from .backends import cuda_cupy
    ok, why = cuda_cupy.probe()
    if not ok:
        raise NoDevice(why)
    import cupy

    key = 1
    info = device_info()
    rows: list[Row] = []
    notes: list[str] = []

    def measure(row: Row, fn, timer=_cupy_timer, check=None):
        try:
            row.runs = timer(fn, repeat, inner, warmup)
            row.seconds = statistics.median(row.runs)
            if check is not None:
                row.bits_ok = check()
        except Exception as e:  # keep going: one broken row must not hide the others
            row.error = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        rows.append(row)
        if log:
            log(_progress(row))

    # roofline: the device's own write bandwidth, and a copy for scale
    f32 = cupy.empty(n, cupy.float32)
    f32b = cupy.empty(n, cupy.float32)
    f32b.fill(0)
    measure(Row("roofline", "float32", "cupy ndarray.fill(1.0)", n, 4 * n), lambda: f32.fill(1.0))
    measure(Row("roofline", "float32", "cupy copy device->device (read+write)", n, 8 * n),
            lambda: cupy.copyto(f32b, f32))

    # ours: every distribution x dtype, into preallocated outputs
    bufs = {"float32": f32, "float64": None, "float16": None, "bfloat16": None}
    for kind in KINDS:
        for dt in (("uint32",) if kind == "random_bits" else dtypes):
            if dt == "uint32":
                out = f32.view(cupy.uint32)
            else:
                if bufs.get(dt) is None:   # bfloat16 results are uint16 bits on the GPU
                    bufs[dt] = cupy.empty(n, np.uint16 if dt == "bfloat16" else np.dtype(dt))
                out = bufs[dt]
            d = None if dt == "uint32" else dt
            row = Row(kind, dt, f"symbreak {kind}", n, n * out.itemsize, ours=True)
            measure(row, lambda kind=kind, d=d, out=out: _our_call(kind, n, key, d, out=out),
                    check=lambda kind=kind, d=d, out=out: _check_bits(kind, n, key, d, out))

    if peers:
        # cupy.random: Generator (XORWOW) with out=, and the legacy cuRAND API (allocates; pooled)
        rng = cupy.random.default_rng(0)
        measure(Row("uniform", "float32", "cupy Generator.random(out=)", n, 4 * n),
                lambda: rng.random(n, dtype=cupy.float32, out=f32))
        measure(Row("normal", "float32", "cupy Generator.standard_normal(out=)", n, 4 * n),
                lambda: rng.standard_normal(n, dtype=cupy.float32, out=f32))
        measure(Row("uniform", "float32", "cupy.random.random (cuRAND, allocates)", n, 4 * n),
                lambda: cupy.random.random(n, dtype=cupy.float32))
        measure(Row("normal", "float32", "cupy.random.standard_normal (cuRAND, allocates)", n, 4 * n),
                lambda: cupy.random.standard_normal(n, dtype=cupy.float32))
        cupy.get_default_memory_pool().free_all_blocks()
        torch, twhy = _torch_cuda()
        notes.append(twhy)
        if torch is not None:
            try:
                t = torch.empty(n, dtype=torch.float32, device=f"cuda:{info['device_id']}")
                tb = torch.empty(n, dtype=torch.bfloat16, device=t.device)
                tt = _torch_timer
                measure(Row("uniform", "float32", "torch.rand(out=)", n, 4 * n),
                        lambda: torch.rand(n, out=t), tt)
                measure(Row("normal", "float32", "torch.randn(out=)", n, 4 * n),
                        lambda: torch.randn(n, out=t), tt)
                measure(Row("normal", "bfloat16", "torch.randn(out=)", n, 2 * n),
                        lambda: torch.randn(n, out=tb), tt)
                measure(Row("truncated_normal", "float32", "torch.nn.init.trunc_normal_", n, 4 * n),
                        lambda: torch.nn.init.trunc_normal_(t), tt)
                del t, tb
                torch.cuda.empty_cache()
            except Exception as e:
                notes.append(f"torch rows failed: {type(e).__name__}: {e}".splitlines()[0])
    del f32, f32b, bufs
    cupy.get_default_memory_pool().free_all_blocks()

    return _summarize(rows, info, notes, n=n, repeat=repeat, inner=inner, warmup=warmup)


def _progress(r: Row) -> str:
    if r.error:
        return f"  {r.group:16s} {r.dtype:8s} {r.name}: ERROR {r.error}"
    bits = "" if r.bits_ok is None else ("  bits ok" if r.bits_ok else "  BITS DIFFER")
    return f"  {r.group:16s} {r.dtype:8s} {r.name}: {r.seconds * 1e3:.3f} ms, {r.gb_s:.0f} GB/s{bits}"


def _summarize(rows, info, notes, **params) -> dict:
    fill = next((r for r in rows if r.name.startswith("cupy ndarray.fill") and r.seconds), None)
    fill_gbs = fill.gb_s if fill else None
    randn = next((r for r in rows if r.name == "torch.randn(out=)" and r.dtype == "float32" and r.seconds), None)
    out_rows, targets = [], []
    for r in rows:
        d = {k: v for k, v in asdict(r).items() if k != "runs"}
        d.update(runs_ms=[round(t * 1e3, 5) for t in r.runs], gelem_s=r.gelem_s, gb_s=r.gb_s,
                 pct_of_fill=(100 * r.gb_s / fill_gbs) if (r.gb_s and fill_gbs) else None)
        want = TARGET_PCT_OF_FILL.get((r.group, r.dtype)) if r.ours else None
        if want is not None:
            d["target_pct_of_fill"] = 100 * want
            d["target_met"] = d["pct_of_fill"] is not None and d["pct_of_fill"] >= 100 * want
            targets.append({"what": f"{r.group} {r.dtype} >= {100 * want:.0f}% of fill",
                            "measured": d["pct_of_fill"], "met": d["target_met"]})
        out_rows.append(d)
    ours_normal = next((r for r in rows if r.ours and r.group == "normal" and r.dtype == "float32"
                        and r.seconds), None)
    if ours_normal and randn:
        ratio = randn.seconds / ours_normal.seconds
        targets.append({"what": f"normal float32 >= {TARGET_VS_TORCH_RANDN:.1f}x torch.randn",
                        "measured": ratio, "met": ratio >= TARGET_VS_TORCH_RANDN})
    else:
        targets.append({"what": f"normal float32 >= {TARGET_VS_TORCH_RANDN:.1f}x torch.randn",
                        "measured": None, "met": None})
    return {"device": info, "params": params, "fill_GB_s": fill_gbs,
            "copy_GB_s": next((r.gb_s for r in rows if r.name.startswith("cupy copy")), None),
            "rows": out_rows, "targets": targets, "notes": notes}


def failures(res: dict) -> list[str]:
    """Why this run must not count as a pass: any of our rows that errored or whose bits were
    not checked equal to the NumPy reference, or a roofline row that errored (no % of fill).
    A peer's row (cupy.random, torch) that errors is only reported, in the table."""
    bad = []
    for r in res["rows"]:
        what = f"{r['group']} {r['dtype']} {r['name']}"
        if r["ours"]:
            if r["error"]:
                bad.append(f"{what}: ERROR {r['error']}")
            elif r["bits_ok"] is not True:
                bad.append(f"{what}: bits differ from the CPU reference")
        elif r["group"] == "roofline" and r["error"]:
            bad.append(f"{what}: ERROR {r['error']}")
    if not any(r["ours"] for r in res["rows"]):
        bad.append("no symbreak rows were measured")
    return bad


def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def format_table(res: dict) -> str:
    dev, p = res["device"], res["params"]
    lines = [f"{dev['name']} (cc {dev['compute_capability']}, {dev['memory_GiB']} GiB, driver {dev['driver']}, "
             f"runtime {dev['runtime']}, cupy {dev['cupy']}); n = {p['n']} elements per call, median of "
             f"{p['repeat']} runs x {p['inner']} back-to-back calls (CUDA events), {p['warmup']} warm-up calls",
             f"roofline: fill {_f(res['fill_GB_s'], '.0f')} GB/s written; device copy "
             f"{_f(res['copy_GB_s'], '.0f')} GB/s read+written", "",
             "| group | dtype | what | ms/call | Gelem/s | GB/s | % of fill | ours / this | target | bits |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    order = {g: i for i, g in enumerate(("roofline",) + KINDS)}
    rows = sorted(res["rows"], key=lambda r: (order.get(r["group"], 99), DTYPES.index(r["dtype"])
                                              if r["dtype"] in DTYPES else -1, not r["ours"]))
    ours = {(r["group"], r["dtype"]): r for r in rows if r["ours"] and r["seconds"]}
    for r in rows:
        if r["error"]:
            lines.append(f"| {r['group']} | {r['dtype']} | {r['name']} | ERROR: {r['error']} | | | | | | |")
            continue
        mine = ours.get((r["group"], r["dtype"]))
        ratio = f"{r['seconds'] / mine['seconds']:.2f}x" if mine and not r["ours"] else ""
        tgt = ""
        if r.get("target_pct_of_fill") is not None:
            tgt = f">= {r['target_pct_of_fill']:.0f}% {'met' if r['target_met'] else 'MISSED'}"
        bits = "" if r["bits_ok"] is None else ("ok" if r["bits_ok"] else "DIFFER")
        lines.append(f"| {r['group']} | {r['dtype']} | {r['name']} | {r['seconds'] * 1e3:.3f} | "
                     f"{r['gelem_s']:.1f} | {r['gb_s']:.0f} | {_f(r['pct_of_fill'], '.0f')}% | {ratio} | {tgt} | {bits} |")
    lines.append("")
    for t in res["targets"]:
        m = t["measured"]
        shown = "not measured" if m is None else (f"{m:.2f}x" if "torch" in t["what"] else f"{m:.0f}%")
        verdict = "" if t["met"] is None else (" met" if t["met"] else " MISSED")
        lines.append(f"target {t['what']}: {shown}{verdict}")
    for note in res["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def write_json(path, res: dict) -> None:
    path = Path(path)
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)

    def clean(v):   # strict JSON: NaN/inf -> null
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    path.write_text(json.dumps(clean(res), indent=1) + "\n")
