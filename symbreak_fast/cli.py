"""``symbreak-fast``: demo (default), bench and init."""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np


# shown when --device cuda finds no usable GPU, unless the reason already says what to install
_GPU_HINT = ('it needs an NVIDIA GPU with a working driver and CuPy: pip install "symbreak-fast[gpu]" (CuPy for '
             'CUDA 13; or the cupy-cudaXXx wheel matching your driver); or run with --device cpu')


def _no_gpu(cmd: str, why: str) -> int:
    hint = "" if "pip install" in why else f"; {_GPU_HINT}"
    print(f"symbreak-fast {cmd} --device cuda: no usable CUDA device: {why}{hint}", file=sys.stderr)
    return 2


def _plot_folder_problem(out: str) -> str | None:
    """Why ``out`` cannot become the plot folder (it or a parent is a file, or the nearest existing
    parent is not writable), or None. Checked before the experiments run: they take minutes."""
    path = os.path.abspath(out)
    if os.path.exists(path) and not os.path.isdir(path):
        return f"--out {out} is an existing file; give a folder for the plots (it is created if missing)"
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"--out {out}: {parent} is a file, so the plot folder cannot be created there"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--out {out}: the folder {parent} is not writable"
    return None


# the CPU benchmark's peak memory per element of --n (measured: bench.run(n=2**24, backend="numpy")
# with torch and scipy installed peaks at ~32.5 bytes per element over the interpreter: the float32
# output, NumPy's float64 peers (randn * scale, uniforms -> ndtri) and their temporaries)
_BENCH_BYTES_PER_ELEMENT = 32


def demo(args) -> int:
    """Why initialization matters: symmetry, signal propagation by depth, trainability (symbreak_fast.lab).
    The conclusions printed are drawn from the rows just computed (lab.*_conclusions); a result that
    contradicts the expectation is printed as a line starting with "!! UNEXPECTED" and counted at the end."""
    import symbreak_fast as sbf
    from . import lab

    t_start = time.perf_counter()
    device = None
    if args.device == "cuda":
        from .backends import cuda_cupy
        ok, why = cuda_cupy.probe()
        if not ok:
            return _no_gpu("demo", why)
        device = "cuda"
    S = lab.demo_settings(args.quick)
    common = dict(key=args.seed, device=device)
    from .mlp import MLP
    where = MLP([1, 1], device=device).backend
    print(f"symbreak_fast {sbf.__version__} lab demo: device {args.device}, MLP backend {where}, seed {args.seed}"
          f"{' (--quick: tiny sizes, too small to reproduce every finding)' if args.quick else ''}\n", flush=True)
    unexpected = []

    def conclude(lines):
        print("\n   From these results:")
        for line in lines:
            print(f"   {line}" if line.startswith(lab.UNEXPECTED) else f"   - {line}")
            if line.startswith(lab.UNEXPECTED):
                unexpected.append(line)
        print(flush=True)

    sym = lab.symmetry_experiment(**S["symmetry"], **common)
    c = sym.config
    print(f"1. Symmetry: net {list(c['sizes'])} ({c['activation']}), two spirals ({c['n']} points), "
          f"{c['optimizer']} 0.9 lr {c['lr']}, {c['steps']} full-batch steps, {c['dtype']}, biases 0\n")
    print(lab.format_table(sym.rows, ["scheme", "distinct_before", "distinct_after", "loss_init", "loss_final",
                                      "accuracy", "learned"]))
    print("\n   distinct_* = distinct neurons per hidden layer (of " + "/".join(map(str, c["sizes"][1:-1]))
          + " units). Theory: equal weights give every hidden neuron the same input and the same"
          "\n   gradient, so a constant init stays at 1 distinct neuron per layer; a random init breaks the tie.")
    conclude(lab.symmetry_conclusions(sym))

    sig = lab.depth_signal(**S["signal"], **common)
    c = sig.config
    L = c["depth"]
    keep = sorted({1, 2, 5, 10, 15, 20, 25, L - 1, L} & set(range(1, L + 1)))
    print(f"2. Depth at init: {L} layers ({c['sizes'][0]} -> {c['width']} x {L - 1} -> {c['sizes'][-1]}), "
          f"batch {c['batch']}, N(0,1) / N(0,0.01^2) / xavier_normal / he_normal weights\n")
    for act in c["activations"]:
        rows = [r for r in sig.rows if r["activation"] == act]
        print(f"   {act}: activation std by layer (layer {L} = logits)")
        print(lab.format_table(lab.pivot(rows, "layer", "scheme", "act_std", keep)))
        print(f"\n   {act}: gradient norm ||dLoss/dW|| by layer")
        print(lab.format_table(lab.pivot(rows, "layer", "scheme", "grad_norm", keep)))
        sat = {r["scheme"]: [] for r in rows}
        for r in rows:
            if r["saturation"] is not None:
                sat[r["scheme"]].append(r["saturation"])
        if any(sat.values()):
            print("   mean saturated fraction (|tanh| > 0.99) over hidden layers: "
                  + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in sat.items() if v))
        print()
    gains = [(s, c["width"] * v / 2) for s in c["schemes"] if (v := lab.scheme_variance(s, c["width"], c["width"]))]
    print("   Theory (variance recursion): ReLU multiplies the activation variance by width * Var(W) / 2 per layer ("
          + ", ".join(f"{s}: x{g:.3g}" for s, g in gains) + "),\n   tanh by width * Var(W) while the signal is small.")
    conclude(lab.depth_signal_conclusions(sig))

    tr = lab.depth_training(**S["training"], **common)
    c = tr.config
    print(f"3. Depth, training: the same {c['depth']}-layer nets, teacher task ({c['n']} points, "
          f"{c['sizes'][0]} features, {c['sizes'][-1]} classes), {c['optimizer']} 0.9 lr {c['lr']}, "
          f"{c['steps']} steps of batch {c['batch']}\n")
    print(lab.format_table(tr.rows, ["activation", "scheme", "loss_init", "loss_final", "accuracy", "chance",
                                     "trains", "status"]))
    print("\n   trains: accuracy >= chance + (1 - chance)/2 on the training set. Published: 30-layer ReLU nets train"
          "\n   with He and stall with Xavier (He et al. 2015); tanh trains with Xavier (Glorot & Bengio 2010).")
    conclude(lab.depth_training_conclusions(tr))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plots: matplotlib is not installed; pip install \"symbreak-fast[plot]\" (or matplotlib) to get "
              f"PNG plots in {args.out}")
    else:
        paths = lab.write_plots(sym, sig, tr, args.out)
        print(f"plots written to {os.path.abspath(args.out)}: " + ", ".join(os.path.basename(p) for p in paths))
    if unexpected:
        print(f"{len(unexpected)} result(s) contradict the expectation (the {lab.UNEXPECTED} lines above)"
              + ("; --quick runs tiny nets for seconds, the full demo is the one to judge by" if args.quick else ""))
    else:
        print("every result agrees with the expectation")
    print(f"({time.perf_counter() - t_start:.1f} s)")
    return 0


def bench(args) -> int:
    if args.device == "cuda":
        return bench_cuda(args)
    from . import bench as B
    t0 = time.perf_counter()
    rows = B.run(n=args.n, repeat=args.repeat, backend=args.backend)
    print(f"n = {args.n} float32 elements, best of {args.repeat}, backend {args.backend} "
          f"({time.perf_counter() - t0:.0f} s)\n")
    print(B.format_table(rows))
    return 0


def bench_cuda(args) -> int:
    from . import bench_gpu as G
    from .backends import cuda_cupy
    ok, why = cuda_cupy.probe()
    if ok:
        t0 = time.perf_counter()
        print(f"symbreak-fast bench --device cuda: n = {args.n} elements per call ({why})", flush=True)
        try:
            res = G.run(n=args.n, repeat=args.repeat, inner=args.inner,
                        log=lambda line: print(line, flush=True))
        except G.NoDevice as e:
            ok, why = False, str(e)
    if not ok:
        return _no_gpu("bench", why)
    print(f"\n({time.perf_counter() - t0:.0f} s)\n")
    print(G.format_table(res))
    G.write_json(args.json, res)
    print(f"\nwrote {args.json}")
    bad = G.failures(res)
    if bad:        # a fast kernel that writes wrong bits is a failure, whatever its speed
        print(f"\nsymbreak-fast bench --device cuda: FAILED, {len(bad)} row(s) not bit-identical to the CPU "
              "or not measured:", file=sys.stderr)
        for line in bad:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


_INIT_DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "f16": "float16", "fp16": "float16",
                "float16": "float16", "f32": "float32", "fp32": "float32", "float32": "float32",
                "f64": "float64", "fp64": "float64", "float64": "float64"}
# generic preset config flags -> keyword arguments of symbreak_fast.presets.preset(name, **config)
_PRESET_INT_FLAGS = ("hidden", "layers", "heads", "kv_heads", "vocab", "intermediate", "context")


def _add_init_parser(sub):
    i = sub.add_parser("init", help="initialize a model (SPEC file or --preset) and write a safetensors file",
                       description="Initialize every parameter of SPEC (a JSON/YAML file {\"params\": {name: "
                                   "{\"shape\": [...], \"init\": \"<initializer>\", ...kwargs}}}) or of a "
                                   "--preset from --seed, and write it to --out in the safetensors format, "
                                   "chunk by chunk (bounded memory), atomically (temp file + rename). The file "
                                   "equals init_params(spec, seed, dtype=<--dtype>) bit for bit (init_params' "
                                   "own default dtype is float32); its metadata records the seed and every "
                                   "entry's dtype.")
    i.add_argument("spec", nargs="?", metavar="SPEC", help="JSON or YAML (.yaml/.yml) spec file")
    i.add_argument("--preset", help="a built-in model instead of SPEC: gpt2-small, gpt2-medium, llama-7b, "
                                    "llama (with config flags), mlp (with --sizes)")
    i.add_argument("--out", "-o", help="target .safetensors file (required unless --dry-run)")
    i.add_argument("--seed", type=int, default=0, help="64-bit seed (default 0)")
    i.add_argument("--dtype", default="bf16", choices=sorted(_INIT_DTYPES),
                   help="dtype of entries without their own \"dtype\" (default bf16)")
    i.add_argument("--chunk-mb", type=float, default=256.0,
                   help="memory budget in MiB (default 256) for all generation buffers together and, with "
                        "--engine dask, the chunks computed ahead")
    i.add_argument("--dry-run", action="store_true", help="print the parameter table and write nothing")
    i.add_argument("--no-progress", action="store_true", help="no progress bar")
    i.add_argument("--engine", choices=["local", "dask"], default=None,
                   help="local (default): generate the chunks in this process with all its cores. dask: "
                        "render them through symbreak_fast.dask.map_ordered on the cluster given by "
                        "--scheduler or --workers; with neither, on a pool of local threads in this "
                        "process (no cluster). Writing always happens here, in file order")
    i.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="with --engine dask: connect to the running dask.distributed scheduler at ADDRESS "
                        "(e.g. tcp://10.0.0.5:8786); its workers need symbreak_fast installed")
    i.add_argument("--workers", metavar="N", type=int, default=None,
                   help="with --engine dask: start a LocalCluster of N worker processes (1 thread each, "
                        "loopback 127.0.0.1 only, no dashboard) for this run and close it afterwards")
    g = i.add_argument_group("preset config (passed to presets.preset(name, **config))")
    for flag in _PRESET_INT_FLAGS:
        g.add_argument("--" + flag.replace("_", "-"), dest="cfg_" + flag, type=int, default=None, metavar="N")
    g.add_argument("--sizes", dest="cfg_sizes", default=None, metavar="N,N,...",
                   help="mlp layer widths, e.g. 784,256,10")
    g.add_argument("--set", dest="cfg_set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other preset config entry, e.g. --set tie_embeddings=true (repeatable)")
    return i


def _preset_config(args, error) -> dict:
    """Config flags given on the command line: typed ints, and strings (--sizes, --set)."""
    cfg = {}
    for flag in _PRESET_INT_FLAGS:
        v = getattr(args, "cfg_" + flag)
        if v is not None:
            cfg[flag] = v
    if args.cfg_sizes is not None:
        cfg["sizes"] = args.cfg_sizes
    for item in args.cfg_set:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            error(f"--set takes KEY=VALUE, got {item!r}")
        cfg[k.strip().replace("-", "_")] = v
    return cfg


def _dask_client(args):
    """(cluster or None, distributed.Client) for --scheduler ADDRESS / --workers N."""
    try:
        import distributed
    except ImportError as e:
        raise ImportError(f"--scheduler / --workers need dask.distributed (pip install 'dask[distributed]'): "
                          f"{e}") from e
    if args.scheduler is not None:
        try:
            return None, distributed.Client(args.scheduler, timeout="10s", set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise OSError(f"--scheduler {args.scheduler}: cannot connect to a dask scheduler there ({e}); "
                          "start one (dask scheduler) or use --workers N for a local cluster") from None
    cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    try:
        return cluster, distributed.Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise


def init(args, error) -> int:
    from . import checkpoint as C
    if (args.spec is None) == (args.preset is None):
        error("give either a SPEC file or --preset NAME (not both)")
    cfg = _preset_config(args, error)
    if cfg and args.preset is None:
        error(f"preset config flags ({', '.join(sorted(cfg))}) need --preset")
    if args.out is None and not args.dry_run:
        error("--out FILE is required (or --dry-run to print the parameter table)")
    if not (args.chunk_mb > 0 and math.isfinite(args.chunk_mb)):
        error(f"--chunk-mb must be positive and finite (MiB), got {args.chunk_mb}")
    if not 0 <= args.seed < 2 ** 64:
        error(f"--seed must be in [0, 2**64), got {args.seed}")
    if (args.scheduler is not None or args.workers is not None) and args.engine != "dask":
        error("--scheduler and --workers choose the cluster of --engine dask; add --engine dask")
    if args.scheduler is not None and args.workers is not None:
        error("give --scheduler ADDRESS (an existing cluster) or --workers N (a new local one), not both")
    if args.workers is not None and args.workers < 1:
        error(f"--workers must be a positive int, got {args.workers}")
    chunk_bytes = max(8, int(args.chunk_mb * 2**20))
    cluster = client = None
    try:
        if args.spec is not None:
            spec, source = C.load_spec(args.spec), args.spec
        else:
            from . import presets
            # strings -> typed values by the preset's own option table (errors name what is accepted)
            spec = presets.preset(args.preset, **presets.config_from_strings(args.preset, cfg))
            source = f"preset {args.preset}" + "".join(f" --{k.replace('_', '-')} {v}" for k, v in cfg.items())
        dtype = _INIT_DTYPES[args.dtype]
        if args.dry_run:
            plan = C.plan_init(spec, args.seed, dtype=dtype, chunk_bytes=chunk_bytes)
            print(f"{source}, dtype {dtype} (entries may override), chunk {C._fmt_bytes(chunk_bytes)}\n")
            print(C.format_plan(plan))
            return 0
        if args.scheduler is not None or args.workers is not None:
            # a bad spec or target fails before any cluster is started or connected to
            C._check_target(args.out, C.plan_init(spec, args.seed, dtype=dtype, chunk_bytes=chunk_bytes).file_bytes)
            cluster, client = _dask_client(args)
        r = C.save_init(spec, args.out, args.seed, dtype=dtype, chunk_bytes=chunk_bytes,
                        progress=not args.no_progress, engine=args.engine, client=client)
    except KeyboardInterrupt:
        print("symbreak-fast init: interrupted; nothing was written to the target", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError) as e:
        msg = e.strerror if isinstance(e, OSError) and e.strerror and not e.filename else str(e)
        print(f"symbreak-fast init: error: {msg}", file=sys.stderr)
        return 2
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    s = r["seconds"]
    print(f"wrote {r['path']}: {r['tensors']} tensors, {r['params']:,} parameters, {r['bytes'] / 1e6:,.1f} MB "
          f"in {s:.2f} s ({r['params'] / s / 1e6:,.1f} M params/s, {r['bytes'] / s / 1e6:,.1f} MB/s), seed "
          f"{args.seed}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="symbreak-fast", description=__doc__)
    sub = p.add_subparsers(dest="cmd")
    d = sub.add_parser("demo", help="why initialization matters: symmetry, signal by depth, trainability "
                                     "(tables, and PNG plots with matplotlib) (default)")
    d.add_argument("--seed", type=int, default=0, help="key of every net and data set (default 0)")
    d.add_argument("--out", default="symbreak_demo", help="folder for the PNG plots (default ./symbreak_demo)")
    d.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the nets train (default cpu)")
    d.add_argument("--quick", action="store_true", help="tiny sizes (seconds; for tests)")
    b = sub.add_parser("bench", help="throughput table against NumPy (and torch when installed); "
                                      "--device cuda: against the GPU's fill bandwidth, cupy.random, torch")
    b.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    b.add_argument("--n", type=int, default=None,
                   help="elements per call (default 2**25 on cpu, 2**28 = 1 GiB of float32 on cuda)")
    b.add_argument("--repeat", type=int, default=None,
                   help="timed runs (cpu: best of, default 5; cuda: median of, default 15)")
    b.add_argument("--backend", default=None, choices=["numba", "numpy"], help="cpu only (default numba)")
    b.add_argument("--inner", type=int, default=5, help="cuda only: back-to-back calls per timed run")
    b.add_argument("--json", default=None, help="cuda only: where to write the results (default gpu_bench.json)")
    ini = _add_init_parser(sub)
    args = p.parse_args(argv)
    if args.cmd == "init":
        return init(args, ini.error)
    if args.cmd in (None, "demo"):
        if args.cmd is None:
            args.seed, args.out, args.device, args.quick = 0, "symbreak_demo", "cpu", False
        if not 0 <= args.seed < 2 ** 64:
            d.error(f"--seed must be in [0, 2**64), got {args.seed}")
        problem = _plot_folder_problem(args.out)
        if problem:
            d.error(problem)
        return demo(args)
    cuda = args.device == "cuda"
    if cuda and args.backend is not None:
        p.error("--backend selects a CPU backend; --device cuda always uses the cupy backend")
    if not cuda and args.json is not None:
        p.error("--json is written by --device cuda only")
    if args.n is None:
        args.n = 1 << 28 if cuda else 1 << 25
    if args.repeat is None:
        args.repeat = 15 if cuda else 5
    args.backend = args.backend or "numba"
    args.json = args.json or "gpu_bench.json"
    if args.n <= 0 or args.repeat <= 0 or args.inner <= 0:
        p.error("--n, --repeat and --inner must be positive")
    if not cuda:
        from .random import _fmt_bytes, host_memory_bytes
        need, limit = _BENCH_BYTES_PER_ELEMENT * args.n, host_memory_bytes()
        if limit is not None and need > limit:
            p.error(f"--n {args.n} needs about {_fmt_bytes(need)} ({_BENCH_BYTES_PER_ELEMENT} bytes per element at "
                    f"the peak), more than this machine's {_fmt_bytes(limit)} of memory; use a smaller --n "
                    f"(at most {limit // _BENCH_BYTES_PER_ELEMENT}; default 2**25)")
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
