"""Dask ``normal`` on a local 2-worker cluster vs in-memory ``normal`` with the Numba backend.

Not collected by pytest. Run:

    python benchmarks/bench_dask.py                 # 4 GiB float32, 2 workers x 1 thread
    python benchmarks/bench_dask.py --gib 1 --chunk-mib 64 --workers 2 --no-gather

Reports, for a float32 tensor of --gib GiB:
  numba     in-memory sbf.normal(shape, key, backend="numba") (all cores, one process)
  dask-sum  sbd.normal(...).sum() on the cluster: every chunk generated on a worker and
            reduced there; only scalars come back (generation cost, no transfer)
  dask-get  every chunk generated on a worker and copied into one preallocated NumPy
            array on the client (as_completed; each future released once copied), then
            checked bit for bit against the in-memory result
Memory: about 2 x --gib on the client (reference + gathered copy) plus chunks in flight.
"""
from __future__ import annotations

import argparse
import gc
import math
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=4.0, help="tensor size in GiB of float32 (default 4)")
    ap.add_argument("--chunk-mib", type=float, default=128.0, help="dask chunk size in MiB (default 128)")
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (default 2)")
    ap.add_argument("--threads-per-worker", type=int, default=1)
    ap.add_argument("--no-gather", action="store_true", help="skip the gather-into-NumPy run")
    args = ap.parse_args()

    import numpy as np
    import symbreak_fast as sbf
    import symbreak_fast.dask as sbd
    import distributed

    n = int(args.gib * 2 ** 30) // 4
    cols = 2 ** 15
    rows = max(1, n // cols)
    shape = (rows, cols)
    rows_per_chunk = max(1, int(args.chunk_mib * 2 ** 20) // (4 * cols))
    chunks = (rows_per_chunk, cols)
    key = sbf.Key(2026) / "bench_dask"
    nbytes = rows * cols * 4
    print(f"shape {shape} float32 = {nbytes / 2 ** 30:.2f} GiB; chunks {chunks} "
          f"({rows_per_chunk * cols * 4 / 2 ** 20:.0f} MiB, {math.ceil(rows / rows_per_chunk)} chunks); "
          f"{args.workers} workers x {args.threads_per_worker} thread(s)")

    sbf.normal((1 << 20,), key, backend="numba")          # load the cached kernels
    t0 = time.perf_counter()
    ref = sbf.normal(shape, key, backend="numba")
    t_numba = time.perf_counter() - t0
    print(f"numba     {t_numba:8.2f} s  {nbytes / t_numba / 2 ** 30:6.2f} GiB/s")
    if args.no_gather:
        del ref
        gc.collect()

    cluster = distributed.LocalCluster(processes=True, n_workers=args.workers,
                                       threads_per_worker=args.threads_per_worker, host="127.0.0.1",
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        client.compute(sbd.normal((args.workers * 2, 1 << 20), key, chunks=(1, 1 << 20), backend="numba").sum(),
                       sync=True)                          # warm: numba loaded on every worker
        arr = sbd.normal(shape, key, chunks=chunks, backend="numba")
        t0 = time.perf_counter()
        total = client.compute(arr.sum(dtype="float64"), sync=True)
        t_sum = time.perf_counter() - t0
        print(f"dask-sum  {t_sum:8.2f} s  {nbytes / t_sum / 2 ** 30:6.2f} GiB/s  ratio dask/numba "
              f"{t_sum / t_numba:5.2f}  (sum {total:.6g})")
        if not args.no_gather:
            out = np.empty(shape, dtype=np.float32)
            out.fill(0)                                    # touch the pages outside the timing
            blocks = arr.to_delayed().ravel()
            starts = np.cumsum((0,) + arr.chunks[0][:-1])
            t0 = time.perf_counter()
            futures = client.compute(list(blocks))
            where = {f.key: i for i, f in enumerate(futures)}
            for fut, block in distributed.as_completed(futures, with_results=True):
                i = where[fut.key]
                out[starts[i]:starts[i] + block.shape[0]] = block
                fut.release()
                del block
            del futures
            t_get = time.perf_counter() - t0
            same = np.array_equal(out.view(np.uint32), ref.view(np.uint32))
            print(f"dask-get  {t_get:8.2f} s  {nbytes / t_get / 2 ** 30:6.2f} GiB/s  ratio dask/numba "
                  f"{t_get / t_numba:5.2f}  bit-identical to numba: {same}")
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
