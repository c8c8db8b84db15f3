"""``symbreak-fast``: demo (default), bench and init."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def demo(args) -> int:
    import symbreak_fast as sbf

    n_in, n_hidden, batch = 64, 8, 256
    key = sbf.Key(args.seed)
    x = sbf.normal((batch, n_in), key / "inputs")
    print(f"symbreak_fast {sbf.__version__}: one {n_in}->{n_hidden} ReLU layer, batch {batch}\n")
    for label, w in (("zeros", np.zeros((n_in, n_hidden), np.float32)),
                     ("constant 0.1", np.full((n_in, n_hidden), 0.1, np.float32)),
                     ("He normal", sbf.he_normal((n_in, n_hidden), key / "layer0.weight"))):
        h = np.maximum(x @ w, 0.0)
        distinct = len({col.tobytes() for col in w.T})
        print(f"  {label:13s} weight std {w.std():.4f}  distinct neurons {distinct}/{n_hidden}  "
              f"hidden activation std {h.std():.4f}")
    print("\n  With equal weights every hidden neuron computes the same function and receives the"
          "\n  same gradient, so it stays a copy forever. He-normal (std = sqrt(2/fan_in)) breaks"
          "\n  the tie and keeps the ReLU signal's scale.\n")
    w1 = sbf.normal((1000, 300), key / "w", backend="numpy")
    w2 = sbf.normal((1000, 300), key / "w", index=(slice(500, 1000), slice(0, 300)))
    print(f"  shard [500:1000] equals full[500:1000] bit for bit: {np.array_equal(w1[500:], w2)}")

    n = 1 << 24
    out = np.empty(n, np.float32)
    from .bench import best_time
    ours = best_time(lambda: sbf.normal(n, key, out=out), 3)
    gen = np.random.default_rng(0)
    peer = best_time(lambda: gen.standard_normal(n, dtype=np.float32, out=out), 3)
    print(f"  normal float32, 2**24 elements: {n / ours / 1e9:.2f} Gelem/s "
          f"({sbf.which_backend(n)[0]}), NumPy standard_normal {n / peer / 1e9:.2f} Gelem/s "
          f"-> {peer / ours:.1f}x")
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
        print(f"symbreak-fast bench --device cuda: no usable CUDA device: {why}", file=sys.stderr)
        return 2
    print(f"\n({time.perf_counter() - t0:.0f} s)\n")
    print(G.format_table(res))
    G.write_json(args.json, res)
    print(f"\nwrote {args.json}")
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
                                   "chunk by chunk (bounded memory), atomically (temp file + rename).")
    i.add_argument("spec", nargs="?", metavar="SPEC", help="JSON or YAML (.yaml/.yml) spec file")
    i.add_argument("--preset", help="a built-in model instead of SPEC: gpt2-small, gpt2-medium, llama-7b, "
                                    "llama (with config flags), mlp (with --sizes)")
    i.add_argument("--out", "-o", help="target .safetensors file (required unless --dry-run)")
    i.add_argument("--seed", type=int, default=0, help="64-bit seed (default 0)")
    i.add_argument("--dtype", default="bf16", choices=sorted(_INIT_DTYPES),
                   help="dtype of entries without their own \"dtype\" (default bf16)")
    i.add_argument("--chunk-mb", type=float, default=256.0,
                   help="generation buffer / largest chunk in MiB (default 256): bounds the memory")
    i.add_argument("--dry-run", action="store_true", help="print the parameter table and write nothing")
    i.add_argument("--no-progress", action="store_true", help="no progress bar")
    i.add_argument("--engine", choices=["local", "dask"], default=None,
                   help="dask: render chunks on the default dask cluster (symbreak_fast.dask)")
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


def _typed_config(presets, name, cfg) -> dict:
    """String values converted by presets.config_from_strings when it exists, else
    --sizes as a list of ints and --set values as JSON where they parse."""
    if hasattr(presets, "config_from_strings"):
        return presets.config_from_strings(name, cfg)
    import json
    out = {}
    for k, v in cfg.items():
        if k == "sizes" and isinstance(v, str):
            try:
                v = [int(x) for x in v.replace(" ", "").strip("[]").split(",") if x]
            except ValueError:
                raise ValueError(f"--sizes takes comma-separated ints such as 784,256,10, got {v!r}") from None
        elif isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError:
                pass
        out[k] = v
    return out


def init(args, error) -> int:
    from . import checkpoint as C
    if (args.spec is None) == (args.preset is None):
        error("give either a SPEC file or --preset NAME (not both)")
    cfg = _preset_config(args, error)
    if cfg and args.preset is None:
        error(f"preset config flags ({', '.join(sorted(cfg))}) need --preset")
    if args.out is None and not args.dry_run:
        error("--out FILE is required (or --dry-run to print the parameter table)")
    if not args.chunk_mb > 0:
        error(f"--chunk-mb must be positive, got {args.chunk_mb}")
    if not 0 <= args.seed < 2 ** 64:
        error(f"--seed must be in [0, 2**64), got {args.seed}")
    chunk_bytes = max(8, int(args.chunk_mb * 2**20))
    try:
        if args.spec is not None:
            spec, source = C.load_spec(args.spec), args.spec
        else:
            try:
                from . import presets
            except ImportError as e:
                raise ImportError(f"--preset needs symbreak_fast.presets ({e})") from e
            spec = presets.preset(args.preset, **_typed_config(presets, args.preset, cfg))
            source = f"preset {args.preset}" + "".join(f" --{k.replace('_', '-')} {v}" for k, v in cfg.items())
        dtype = _INIT_DTYPES[args.dtype]
        if args.dry_run:
            plan = C.plan_init(spec, args.seed, dtype=dtype, chunk_bytes=chunk_bytes)
            print(f"{source}, dtype {dtype} (entries may override), chunk {C._fmt_bytes(chunk_bytes)}\n")
            print(C.format_plan(plan))
            return 0
        r = C.save_init(spec, args.out, args.seed, dtype=dtype, chunk_bytes=chunk_bytes,
                        progress=not args.no_progress, engine=args.engine)
    except KeyboardInterrupt:
        print("symbreak-fast init: interrupted; nothing was written to the target", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError) as e:
        msg = e.strerror if isinstance(e, OSError) and e.strerror and not e.filename else str(e)
        print(f"symbreak-fast init: error: {msg}", file=sys.stderr)
        return 2
    s = r["seconds"]
    print(f"wrote {r['path']}: {r['tensors']} tensors, {r['params']:,} parameters, {r['bytes'] / 1e6:,.1f} MB "
          f"in {s:.2f} s ({r['params'] / s / 1e6:,.1f} M params/s, {r['bytes'] / s / 1e6:,.1f} MB/s), seed "
          f"{args.seed}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="symbreak-fast", description=__doc__)
    sub = p.add_subparsers(dest="cmd")
    d = sub.add_parser("demo", help="zeros vs He-normal on a small layer, and a throughput line (default)")
    d.add_argument("--seed", type=int, default=0)
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
            args.seed = 0
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
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
