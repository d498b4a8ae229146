"""Stable ids as built-in Spark expressions (no Python UDF, same value on any cluster)."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def pair_id(image_url: str = "image_url", text: str = "text") -> Column:
    """64-bit xxhash of (image_url, text). At 1e9 pairs a collision is possible (~3%) but only
    merges two pairs' match sets; ``pairs`` itself stays keyed on (image_url, text)."""
    return F.xxhash64(F.col(image_url), F.col(text))


def entry_id(entry: str = "entry") -> Column:
    """64-bit xxhash of the entry string alone: one string is one entry whatever lists it, and
    re-running or adding a source renumbers nothing."""
    return F.xxhash64(F.col(entry))
