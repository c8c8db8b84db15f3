"""Statistical tests of the generated distributions, with fixed keys and n >= 10**7.

Each check compares a statistic with its sampling distribution under the null
hypothesis "the generator is correct", and fails only when a correct generator
would produce a value that extreme with tiny probability:

* z-scores (means, variances, correlations, moments) must satisfy |z| < 6:
  P(|N(0, 1)| >= 6) = 1.97e-9 per check;
* counts (bit frequencies, tail counts) must not lie in either exact binomial
  tail of probability < 1e-9 (the same level as |z| >= 6, one side);
* Kolmogorov-Smirnov tests must have p > 1e-6 (exact finite-n Kolmogorov
  distribution, scipy.stats.kstwo).

The file makes about 550 z/count checks (most of them bit-frequency counts) and
16 KS tests, so a correct generator fails some check for a given set of keys
with probability below 2e-5 (1e-6 of it from the z/count checks). The keys are
fixed, so every run sees exactly the same numbers: the tests are deterministic,
and that probability is the chance that the chosen keys were unlucky (the
observed margins are printed: run with -s or -rP to see them).

The large samples come from the Numba backend, which is bit-identical to the
NumPy reference (tested elsewhere); each sample is generated once per module.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import symbreak_fast as sbf

stats = pytest.importorskip("scipy.stats")
special = pytest.importorskip("scipy.special")

N = 10_000_000                 # sample size of every test that needs the whole sample in memory
N_STREAM = 100_000_000         # normal moments and tails: streamed in chunks of N
BACKEND = "numba"

Z_MAX = 6.0                    # two-sided P(|z| >= 6) = 1.97e-9
TAIL_P_MIN = 1e-9              # one-sided exact binomial tail probability, about Q(6)
KS_P_MIN = 1e-6                # Kolmogorov-Smirnov p-value floor

# largest |z| of a standard normal variate by design (sbf.normal: 6.66 / 8.57 sigma)
NORMAL_MAX_ABS = {"float32": 6.67, "float64": 8.58}


# ---------------------------------------------------------------------------
# checks (each prints its statistic so that the margins can be read with -s)
# ---------------------------------------------------------------------------
def check_z(z: float, what: str) -> None:
    """|z| < 6 for an (asymptotically) standard normal statistic z."""
    print(f"{what}: z = {z:+.3f}")
    assert math.isfinite(z) and abs(z) < Z_MAX, (
        f"{what}: z = {z:+.2f}, beyond +-{Z_MAX} (probability 2e-9 for a correct generator)")


def check_count(count: int, n: int, p: float, what: str) -> None:
    """``count`` successes in ``n`` trials of probability ``p``: both exact binomial
    tails P(X <= count) and P(X >= count) must exceed TAIL_P_MIN."""
    count = int(count)
    below = float(stats.binom.cdf(count, n, p))        # P(X <= count)
    above = float(stats.binom.sf(count - 1, n, p))     # P(X >= count)
    z = (count - n * p) / math.sqrt(n * p * (1 - p))
    print(f"{what}: {count} vs expected {n * p:.6g} (z = {z:+.3f}, "
          f"P(X<=c) = {below:.3g}, P(X>=c) = {above:.3g})")
    assert min(below, above) > TAIL_P_MIN, (
        f"{what}: count {count}, expected {n * p:.6g} (z = {z:+.2f}); binomial tail "
        f"probability {min(below, above):.3g} < {TAIL_P_MIN}")


def ks_statistic(sample: np.ndarray, cdf) -> tuple[float, float]:
    """(D, p-value) of the one-sample two-sided Kolmogorov-Smirnov test of ``sample``
    against the continuous CDF ``cdf`` (evaluated in float64).

    D = max_i max(i/n - F(x_(i)), F(x_(i)) - (i-1)/n) over the sorted sample, which is
    the supremum distance to the empirical CDF even with ties; p is from the exact
    finite-n distribution of D (scipy.stats.kstwo). Evaluated in cache-sized chunks.
    """
    x = np.sort(sample)                      # sorting in the sample's own dtype is exact
    n = x.size
    d_plus = d_minus = 0.0
    step = 1 << 18
    for s in range(0, n, step):
        f = cdf(x[s:s + step].astype(np.float64))
        i = np.arange(s, s + f.size, dtype=np.float64)     # rank - 1
        d_plus = max(d_plus, float(np.max((i + 1) / n - f)))
        d_minus = max(d_minus, float(np.max(f - i / n)))
    d = max(d_plus, d_minus)
    return d, float(stats.kstwo.sf(d, n))


def check_ks(sample: np.ndarray, cdf, what: str) -> None:
    d, p = ks_statistic(sample, cdf)
    crit = float(stats.kstwo.isf(KS_P_MIN, sample.size))
    print(f"{what}: KS D = {d:.3e} (critical {crit:.3e}), p = {p:.4g}")
    assert p > KS_P_MIN, f"{what}: KS D = {d:.3e} > {crit:.3e} (p = {p:.3g} < {KS_P_MIN})"


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Sample Pearson correlation, accumulated in float64."""
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    return float(np.dot(x, y) / math.sqrt(np.dot(x, x) * np.dot(y, y)))


def check_uncorrelated(x: np.ndarray, y: np.ndarray, what: str) -> None:
    """Sample correlation r of n pairs; for independent x, y with finite variances
    sqrt(n) * r -> N(0, 1)."""
    r = pearson(x, y)
    check_z(r * math.sqrt(x.size), f"{what} (r = {r:+.2e})")


def check_autocorrelation(x: np.ndarray, lags, what: str) -> None:
    """Sample autocorrelation r_k = sum (x_i - m)(x_{i+k} - m) / sum (x_i - m)**2; for an
    iid sequence with finite variance sqrt(n) * r_k -> N(0, 1) (Bartlett), because the
    products x_i x_{i+k} are uncorrelated with each other."""
    xc = x.astype(np.float64)
    xc -= xc.mean()
    ss = float(np.dot(xc, xc))
    for k in lags:
        r = float(np.dot(xc[:-k], xc[k:])) / ss
        check_z(r * math.sqrt(x.size), f"{what} lag-{k} autocorrelation (r = {r:+.2e})")


_BIT_TABLE = ((np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1).astype(np.int64)


def bit_counts(words: np.ndarray) -> np.ndarray:
    """Number of ones at each of the 32 bit positions (0 = least significant) of uint32 ``words``."""
    b = np.ascontiguousarray(words, dtype="<u4").view(np.uint8).reshape(-1, 4)
    return np.concatenate([np.bincount(b[:, j], minlength=256) @ _BIT_TABLE for j in range(4)])


def check_bits_fair(words: np.ndarray, what: str) -> None:
    """Each bit position is 1 with probability 1/2: counts ~ Binomial(n, 1/2)."""
    for pos, c in enumerate(bit_counts(words)):
        check_count(c, words.size, 0.5, f"{what}, bit {pos}")


def norm_cdf(x):
    return special.ndtr(x)


def truncnorm_cdf(a: float, b: float):
    """CDF of N(0, 1) truncated to [a, b], accurate in far tails: written with upper-tail
    probabilities Q(x) = ndtr(-x) when a > 0 (so there is no cancellation near 1) and
    with lower-tail ones otherwise. Relative error ~1e-15, far below the KS critical
    values (~9e-4). scipy.stats.truncnorm.cdf agrees but is ~50x slower."""
    if a > 0:
        qa, qb = special.ndtr(-a), special.ndtr(-b)
        return lambda x: (qa - special.ndtr(-x)) / (qa - qb)
    pa, pb = special.ndtr(a), special.ndtr(b)
    return lambda x: (special.ndtr(x) - pa) / (pb - pa)


# ---------------------------------------------------------------------------
# samples, generated once per module with fixed keys
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def uniform32():
    return sbf.uniform(N, sbf.Key(11), backend=BACKEND)


@pytest.fixture(scope="module")
def uniform64():
    return sbf.uniform(N, sbf.Key(12), dtype="float64", backend=BACKEND)


@pytest.fixture(scope="module")
def normal32():
    return sbf.normal(N, sbf.Key(13), backend=BACKEND)


@pytest.fixture(scope="module")
def normal64():
    return sbf.normal(N, sbf.Key(14), dtype="float64", backend=BACKEND)


@pytest.fixture(scope="module")
def bits():
    return sbf.random_bits(N, sbf.Key(15), backend=BACKEND)


def _normal_summary(key: sbf.Key, dtype: str) -> dict:
    """Power sums, tail counts and max |x| of N_STREAM standard normals, generated as
    N_STREAM // N rows of one (rows, N) tensor so that memory stays at one chunk."""
    rows = N_STREAM // N
    buf = np.empty(N, dtype=dtype)
    x = buf if dtype == "float64" else np.empty(N)
    x2 = np.empty(N)
    ax = np.empty(N, dtype=dtype)
    s = np.zeros(4)
    tails = {k: [0, 0] for k in (3, 4, 5)}
    max_abs = 0.0
    for r in range(rows):
        sbf.normal((rows, N), key, dtype=dtype, index=r, backend=BACKEND, out=buf)
        np.abs(buf, out=ax)
        max_abs = max(max_abs, float(ax.max()))
        beyond = buf[ax > min(tails)]
        for k in tails:
            tails[k][0] += int(np.count_nonzero(beyond > k))
            tails[k][1] += int(np.count_nonzero(beyond < -k))
        if x is not buf:
            np.copyto(x, buf)
        np.multiply(x, x, out=x2)
        s += [x.sum(), np.dot(x, x), np.dot(x2, x), np.dot(x2, x2)]
    return dict(n=rows * N, s1=s[0], s2=s[1], s3=s[2], s4=s[3], tails=tails, max_abs=max_abs)


@pytest.fixture(scope="module", params=["float32", "float64"])
def normal_summary(request):
    key = sbf.Key(16) if request.param == "float32" else sbf.Key(17)
    return request.param, _normal_summary(key, request.param)


# ---------------------------------------------------------------------------
# uniform
# ---------------------------------------------------------------------------
def test_uniform_float32_ks(uniform32):
    # Values are k * 2**-24: the float32 uniform is discrete, with 2**24 atoms of mass
    # 2**-24. Against the continuous CDF F(x) = x that shifts D by at most 2**-24 = 6e-8,
    # 1e-4 of the critical value at n = 1e7 (8.6e-4), so the continuous KS test is valid.
    assert uniform32.min() >= 0.0 and uniform32.max() < 1.0
    check_ks(uniform32, lambda x: x, "uniform float32")


def test_uniform_float64_ks(uniform64):
    assert uniform64.min() >= 0.0 and uniform64.max() < 1.0
    check_ks(uniform64, lambda x: x, "uniform float64")


def test_uniform_float32_resolution(uniform32):
    # k = u * 2**24 is the 24-bit integer the uniform is made of: each of its 24 bits
    # must be a fair coin (Binomial(n, 1/2)). Fails if the conversion loses low bits
    # (e.g. 23-bit resolution: bit 0 is never set) or biases them.
    k = (uniform32.astype(np.float64) * 2.0 ** 24).astype(np.uint32)
    assert np.array_equal(k.astype(np.float64) * 2.0 ** -24, uniform32)  # exactly on the 2**-24 grid
    counts = bit_counts(k)
    assert not counts[24:].any()
    for pos in range(24):
        check_count(counts[pos], k.size, 0.5, f"uniform float32 mantissa bit {pos}")


def test_uniform_float32_serial_correlation(uniform32):
    # lag 1 as required; lags 2-4 also cross the word / Philox-block boundaries
    check_autocorrelation(uniform32, (1, 2, 3, 4), "uniform float32")


def test_uniform_float64_serial_correlation(uniform64):
    # float64 elements 2i, 2i+1 share a Philox block (words 0:1 and 2:3)
    check_autocorrelation(uniform64, (1, 2), "uniform float64")


# ---------------------------------------------------------------------------
# normal
# ---------------------------------------------------------------------------
def test_normal_float32_ks(normal32):
    # float32 rounding moves each value by <= 6e-8 relative: a CDF change < 3e-8, far
    # below the critical D (8.6e-4).
    check_ks(normal32, norm_cdf, "normal float32")


def test_normal_float64_ks(normal64):
    check_ks(normal64, norm_cdf, "normal float64")


def test_normal_moments(normal_summary):
    # For n iid N(0, 1) draws the sample mean, variance, skewness g1 and excess kurtosis
    # g2 are asymptotically normal with standard errors sqrt(1/n), sqrt(2/n), sqrt(6/n)
    # and sqrt(24/n) (n = 1e8 here, so the asymptotics are excellent). |z| < 6 each.
    # At n = 1e8 the bounds are +-6e-4 on the mean, +-8.5e-4 on the variance
    # (std off by 0.04%), +-1.5e-3 on g1 and +-2.9e-3 on g2.
    dtype, s = normal_summary
    n = s["n"]
    m1, m2, m3, m4 = (s[k] / n for k in ("s1", "s2", "s3", "s4"))
    mean = m1
    c2 = m2 - mean ** 2
    c3 = m3 - 3 * mean * m2 + 2 * mean ** 3
    c4 = m4 - 4 * mean * m3 + 6 * mean ** 2 * m2 - 3 * mean ** 4
    check_z(mean / math.sqrt(1 / n), f"normal {dtype} mean = {mean:+.3e}")
    check_z((c2 - 1) / math.sqrt(2 / n), f"normal {dtype} variance = {c2:.6f}")
    check_z((c3 / c2 ** 1.5) / math.sqrt(6 / n), f"normal {dtype} skewness = {c3 / c2 ** 1.5:+.3e}")
    check_z((c4 / c2 ** 2 - 3) / math.sqrt(24 / n), f"normal {dtype} excess kurtosis = {c4 / c2 ** 2 - 3:+.3e}")


def test_normal_tails(normal_summary):
    # Counts beyond +k and below -k are each Binomial(n, Q(k)), Q(k) = P(Z > k):
    # at n = 1e8, 134990 (3 sigma), 3167 (4 sigma) and 28.7 (5 sigma) expected per side.
    # Both exact tails must exceed 1e-9; a sampler with no mass beyond 5 sigma would give 0
    # at 5 sigma (P = 3.5e-13); a 1% too wide std puts 18% more beyond 4 sigma (z ~ +10).
    dtype, s = normal_summary
    n = s["n"]
    for k, (above, below) in s["tails"].items():
        q = float(special.ndtr(-k))
        check_count(above, n, q, f"normal {dtype} count > +{k} sigma")
        check_count(below, n, q, f"normal {dtype} count < -{k} sigma")
    # by design the tails stop at 6.66 (float32) / 8.57 (float64) sigma
    print(f"normal {dtype} max |x| over {n} draws = {s['max_abs']:.4f}")
    assert s["max_abs"] <= NORMAL_MAX_ABS[dtype], f"normal {dtype}: |x| = {s['max_abs']} beyond the design bound"


def test_normal_float32_serial_correlation(normal32):
    # Elements 2p, 2p+1 are a Box-Muller pair (r cos t, r sin t), which is a pair of
    # independent normals, so x and also x**2 (which catches a shared radius without a
    # uniform angle) are uncorrelated at every lag. Lags 2-4 cross pair and block borders.
    check_autocorrelation(normal32, (1, 2, 3, 4), "normal float32")
    check_autocorrelation(normal32.astype(np.float64) ** 2, (1, 2), "normal float32 squares")


def test_normal_float64_serial_correlation(normal64):
    check_autocorrelation(normal64, (1, 2), "normal float64")
    check_autocorrelation(normal64 ** 2, (1,), "normal float64 squares")


# ---------------------------------------------------------------------------
# truncated normal
# ---------------------------------------------------------------------------
TRUNCATIONS = [
    (-2.0, 2.0),            # the usual symmetric default
    (-1.0, 3.0),            # asymmetric
    (3.0, 10.0),            # far upper tail (one-sided in effect)
    (-math.inf, 0.5),       # one-sided
    (-math.inf, -4.0),      # far lower tail, one-sided
    (6.0, math.inf),        # very far upper tail: P(Z > 6) = 1e-9
    (-13.0, -12.0),         # at the library's limit (nearer bound 13 sigma): mass 1.8e-33
]


def _check_truncated(x: np.ndarray, a: float, b: float, what: str, mean: float = 0.0, std: float = 1.0):
    lo, hi = mean + a * std, mean + b * std   # exactly representable for the cases below
    xmin, xmax = float(x.min()), float(x.max())
    at_bounds = int(np.count_nonzero(x == lo)) + int(np.count_nonzero(x == hi))
    print(f"{what}: range [{xmin:.6g}, {xmax:.6g}] within [{lo}, {hi}]; {at_bounds} values exactly at a bound")
    assert lo <= xmin and xmax <= hi, f"{what}: values in [{xmin}, {xmax}] leave [{lo}, {hi}]"
    # Moments against scipy.stats.truncnorm: the sample mean has standard error
    # sqrt(var/n); the sample variance sqrt((mu4 - var**2)/n) = var * sqrt((g2 + 2)/n),
    # g2 the excess kurtosis. |z| < 6 each.
    m_ref, v_ref, g2_ref = (float(t) for t in stats.truncnorm.stats(a, b, moments="mvk"))
    n = x.size
    z = x.astype(np.float64)
    z -= mean
    z /= std
    m = float(z.mean())
    z -= m
    v = float(np.dot(z, z)) / n
    del z
    check_z((m - m_ref) / math.sqrt(v_ref / n), f"{what} mean {m:.6f} vs scipy {m_ref:.6f}")
    check_z((v - v_ref) / (v_ref * math.sqrt((g2_ref + 2) / n)), f"{what} variance {v:.6f} vs scipy {v_ref:.6f}")
    # and the whole distribution
    cdf = truncnorm_cdf(a, b)
    check_ks(x, lambda t: cdf((t - mean) / std), what)


# every case uses its own key, so that the checks are independent of each other
@pytest.mark.parametrize("a, b", TRUNCATIONS, ids=[f"{a}_{b}" for a, b in TRUNCATIONS])
def test_truncated_normal_float32(a, b):
    key = sbf.Key(21).child(f"{a},{b}")
    x = sbf.truncated_normal(N, key, lower=a, upper=b, backend=BACKEND)
    _check_truncated(x, a, b, f"truncated normal float32 [{a}, {b}]")


@pytest.mark.parametrize("a, b", [(-2.0, 2.0), (3.0, 10.0), (-math.inf, 0.5)])
def test_truncated_normal_float64(a, b):
    key = sbf.Key(22).child(f"{a},{b}")
    x = sbf.truncated_normal(N, key, lower=a, upper=b, dtype="float64", backend=BACKEND)
    _check_truncated(x, a, b, f"truncated normal float64 [{a}, {b}]")


def test_truncated_normal_float32_mean_std():
    # mean/std are applied after the standard draw: [1.5 - 0.5, 1.5 + 3 * 0.5] = [1, 3]
    x = sbf.truncated_normal(N, sbf.Key(23), mean=1.5, std=0.5, lower=-1.0, upper=3.0, backend=BACKEND)
    _check_truncated(x, -1.0, 3.0, "truncated normal float32 mean 1.5 std 0.5 [-1, 3]", mean=1.5, std=0.5)


# ---------------------------------------------------------------------------
# independence of keys, child keys and distant counters
# ---------------------------------------------------------------------------
_ROOT = sbf.Key(0)
KEY_PAIRS = {
    "Key(0) vs Key(1)": (sbf.Key(0), sbf.Key(1)),
    "Key(0) vs Key(2**32)": (sbf.Key(0), sbf.Key(2 ** 32)),   # keys differing only in word k1
    "child a vs child b": (_ROOT.child("a"), _ROOT.child("b")),
    "key vs key.child(a)": (_ROOT, _ROOT.child("a")),
}


@pytest.mark.parametrize("name", list(KEY_PAIRS))
def test_streams_of_related_keys_are_independent(name):
    k1, k2 = KEY_PAIRS[name]
    # element-wise correlation of the uniform and normal streams: sqrt(n) r ~ N(0, 1)
    u1 = sbf.uniform(N, k1, backend=BACKEND)
    u2 = sbf.uniform(N, k2, backend=BACKEND)
    check_uncorrelated(u1, u2, f"{name}: uniform float32 correlation")
    check_uncorrelated(u1[1:], u2[:-1], f"{name}: uniform float32 correlation at offset 1")
    del u1, u2
    z1 = sbf.normal(N, k1, backend=BACKEND)
    z2 = sbf.normal(N, k2, backend=BACKEND)
    check_uncorrelated(z1, z2, f"{name}: normal float32 correlation")
    del z1, z2
    # raw words: at every bit position the two streams agree with probability 1/2
    w = sbf.random_bits(N, k1, backend=BACKEND) ^ sbf.random_bits(N, k2, backend=BACKEND)
    check_bits_fair(w, f"{name}: xor of raw words")


def test_distant_counters_are_independent():
    # the same key far into the counter space: blocks >= 2**32 use counter word c1, so a
    # generator that dropped it would repeat the stream at offset 0 (r = 1)
    key = sbf.Key(24)
    offset = 2 ** 40 + 4
    shape = (2 ** 41,)
    u0 = sbf.uniform(shape, key, index=slice(0, N), backend=BACKEND)
    u1 = sbf.uniform(shape, key, index=slice(offset, offset + N), backend=BACKEND)
    check_ks(u1, lambda x: x, "uniform float32 at element 2**40 + 4")
    check_uncorrelated(u0, u1, "uniform float32 elements [0, n) vs [2**40 + 4, 2**40 + 4 + n)")
    w = (sbf.random_bits(shape, key, index=slice(0, N), backend=BACKEND)
         ^ sbf.random_bits(shape, key, index=slice(offset, offset + N), backend=BACKEND))
    check_bits_fair(w, "xor of raw words at elements 0 and 2**40 + 4")


# ---------------------------------------------------------------------------
# raw bits
# ---------------------------------------------------------------------------
def test_bit_frequencies(bits):
    # each of the 32 positions: ones ~ Binomial(1e7, 1/2), bound ~ +-6 * 1581 = +-0.095%
    check_bits_fair(bits, "random_bits")


def test_philox_block_words_uncorrelated(bits):
    # elements 4i..4i+3 are the four output words of Philox block i
    words = bits.reshape(-1, 4)
    n_blocks = words.shape[0]
    u = words.astype(np.float64) * 2.0 ** -32 + 2.0 ** -33   # uniforms on (0, 1)
    for j in range(4):
        for k in range(j + 1, 4):
            check_uncorrelated(u[:, j], u[:, k], f"Philox words {j} and {k}: correlation")
            # bit-level: word j and word k agree at each bit position with probability 1/2
            x = np.ascontiguousarray(words[:, j] ^ words[:, k])
            for pos, c in enumerate(bit_counts(x)):
                check_count(c, n_blocks, 0.5, f"Philox words {j} xor {k}, bit {pos}")


def test_adjacent_blocks_bits_independent(bits):
    # the same word position in consecutive blocks (counters c and c+1): xor bits fair
    check_bits_fair(bits[4:] ^ bits[:-4], "random_bits xor lag 4 (consecutive counters)")
    check_bits_fair(bits[1:] ^ bits[:-1], "random_bits xor lag 1")
