"""Host-side truncation masses (Python decimal): accurate, and independent of the
caller's decimal context."""
import decimal
import math

import pytest

from symbreak_fast._tail import truncation_masses

special = pytest.importorskip("scipy.special")

INTERVALS = [(-2.0, 2.0), (3.0, 10.0), (-13.0, -12.5), (12.5, 13.0), (-math.inf, 0.5), (0.0, math.inf),
             (-1.0, 3.0), (6.0, math.inf), (-math.inf, -4.0), (-200.0, 200.0), (1.0, 1000.0), (12.9, 39.9)]


def _ref(a, b):
    # scipy's log_ndtr keeps full relative precision deep in both tails
    pa = math.exp(special.log_ndtr(a)) if a > -math.inf else 0.0
    qb = math.exp(special.log_ndtr(-b)) if b < math.inf else 0.0
    if a >= 0:     # both in the upper tail: Q(a) - Q(b) = Q(a) (1 - Q(b)/Q(a))
        la, lb = special.log_ndtr(-a), special.log_ndtr(-b)
        mass = math.exp(la) * -math.expm1(lb - la)
    elif b <= 0:
        la, lb = special.log_ndtr(a), special.log_ndtr(b)
        mass = math.exp(lb) * -math.expm1(la - lb)
    else:
        mass = 1.0 - pa - qb
    return pa, qb, mass


@pytest.mark.parametrize("a,b", INTERVALS)
def test_masses_match_scipy(a, b):
    got = truncation_masses(a, b)
    for g, r in zip(got, _ref(a, b)):
        # scipy's log_ndtr/exp path is good to a few 1e-15 relative; ours is correctly rounded
        assert g == pytest.approx(r, rel=1e-13, abs=1e-300)


def test_masses_ignore_caller_decimal_context():
    truncation_masses.cache_clear()
    with decimal.localcontext() as ctx:
        ctx.prec = 5
        ctx.rounding = decimal.ROUND_CEILING
        odd = truncation_masses(3.0, 10.0)
    truncation_masses.cache_clear()
    assert odd == truncation_masses(3.0, 10.0)
