"""Host-side normal tail probabilities for the truncated normal, platform independent.

The kernels need Phi(a), Phi(-b) and P(a < Z < b). They are computed once per
call here with Python's ``decimal`` module (correctly rounded exp, exact
arithmetic at 40+ significant digits), never with the platform's erf/erfc, so
every machine hands the kernels the same bits. Values are rounded to float64
(then to float32 for the float32 kernels).
"""
from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from functools import lru_cache

# the farthest the nearer truncation bound may lie from the mean. Q(13) ~ 6.1e-39;
# the float32 kernels carry tail masses scaled by 2**64 (Q(13) * 2**64 ~ 1.1e-19, and
# its fractions down to 2**-24 of it stay normal floats), float64 holds them as they are.
MAX_NEAR_BOUND = 13.0
# beyond this many std a tail mass is below 1e-348: exactly 0 in float64, so the
# bound is treated as infinite for the masses (the clamp still uses the finite bound)
FAR_TAIL = 40.0


def _ctx(prec: int) -> Context:
    """A fresh context: the caller's decimal settings (rounding, traps) never leak in."""
    return Context(prec=prec, rounding=ROUND_HALF_EVEN)


def _upper_tail_decimal(x: float, digits: int) -> Decimal:
    """Q(x) = P(Z > x) for finite x >= 0, as a Decimal with ~``digits`` correct digits.

    erf(t) = 2/sqrt(pi) * exp(-t^2) * sum_n 2^n t^(2n+1) / (1*3*...*(2n+1)), t = x/sqrt 2:
    every term is positive, so there is no cancellation inside the sum; the
    working precision grows with t^2 to absorb the cancellation in 1 - erf.
    """
    with localcontext(_ctx(digits + 10 + int(x * x / 2 / math.log(10)) + 5)) as ctx:
        t = Decimal(x) / Decimal(2).sqrt()
        t2 = t * t
        term = t
        total = t
        n = 0
        eps = Decimal(10) ** (-(ctx.prec + 2))
        while term > eps * total:
            n += 1
            term = term * 2 * t2 / (2 * n + 1)
            total += term
        pi = _pi_decimal(ctx.prec)
        erf = 2 / pi.sqrt() * (-t2).exp() * total
        return (1 - erf) / 2


def _pi_decimal(prec: int) -> Decimal:
    """pi to ``prec`` digits (Machin's formula)."""
    with localcontext(_ctx(prec + 5)):

        def arctan_inv(n: int) -> Decimal:
            x = Decimal(1) / n
            x2 = x * x
            term, total, k = x, x, 0
            eps = Decimal(10) ** (-(prec + 5))
            while abs(term) > eps:
                k += 1
                term = -term * x2
                total += term / (2 * k + 1)
            return total

        return 4 * (4 * arctan_inv(5) - arctan_inv(239))


def _q_small(x: float, digits: int = 40) -> Decimal:
    """Q(x) = P(Z > x) for x >= 0 (incl. +inf), accurate to ``digits`` relative digits."""
    if x >= FAR_TAIL:
        return Decimal(0)
    return _upper_tail_decimal(x, digits)


@lru_cache(maxsize=256)
def truncation_masses(a: float, b: float) -> tuple[float, float, float]:
    """(Phi(a), Phi(-b), P(a < Z < b)) as float64, for standardized bounds a < b.

    Each is formed from upper-tail masses Q(|x|) of full relative precision, and the
    interval mass from the two tails on the same side when the interval lies on one
    side of 0 (Q(a) - Q(b) for a >= 0), so no value loses digits to cancellation.
    """
    with localcontext(_ctx(80)):
        qa, qb_ = _q_small(abs(a)), _q_small(abs(b))       # Q(|a|), Q(|b|)
        pa = qa if a <= 0 else 1 - qa                       # Phi(a) = Q(-a)
        qb = qb_ if b >= 0 else 1 - qb_                     # Q(b)
        if a >= 0:
            mass = qa - qb_
        elif b <= 0:
            mass = qb_ - qa
        else:
            mass = 1 - qa - qb_
        return float(pa), float(qb), float(+mass)
