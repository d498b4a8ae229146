"""argparse value types that reject what the JVM would choke on later (exit 2, one line, no Spark)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def int_in(lo: int = INT64_MIN, hi: int = INT64_MAX) -> Callable[[str], int]:
    """An integer in [lo, hi] (Delta stores it as a 64-bit long)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range (allowed {lo} .. {hi})")
        return value

    parse.__name__ = "integer"
    return parse


def finite_float(zero_allowed: bool) -> Callable[[str], float]:
    """A finite number > 0 (an interval, a threshold), or >= 0 with ``zero_allowed`` (a window that may be
    empty)."""
    bound = ">= 0" if zero_allowed else "> 0"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and (value >= 0 if zero_allowed else value > 0)):
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


positive_float = finite_float(zero_allowed=False)
non_negative_float = finite_float(zero_allowed=True)
int64 = int_in()
positive_int64 = int_in(1)


def fraction(text: str) -> float:
    """A number in [0, 1] (a probability, a share)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


fraction.__name__ = "number"
