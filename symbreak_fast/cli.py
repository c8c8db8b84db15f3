"""``symbreak-fast``: demo (default) and bench."""
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
    args = p.parse_args(argv)
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
