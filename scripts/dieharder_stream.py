"""Write symbreak_fast's raw random_bits stream to stdout as little-endian uint32, forever.

    python scripts/dieharder_stream.py [SEED] | dieharder -g 200 -d 0

Element i of the stream is random_bits((2**62,), Key(SEED))[i]: the stream is generated in
chunks with index= (each chunk exactly the corresponding slice of one huge tensor), so what
dieharder reads is the counter-based stream itself, from index 0 on.
"""
import sys

import numpy as np

import symbreak_fast as sbf

CHUNK = 1 << 22


def main() -> None:
    key = sbf.Key(int(sys.argv[1]) if len(sys.argv) > 1 else 20261203)
    n = 1 << 62
    out = np.empty(CHUNK, np.uint32)
    w = sys.stdout.buffer
    start = 0
    try:
        while True:
            sbf.random_bits((n,), key, index=(slice(start, start + CHUNK),), backend="numba", out=out)
            w.write(out.astype("<u4", copy=False).tobytes())
            start += CHUNK
    except BrokenPipeError:
        pass


if __name__ == "__main__":
    main()
