"""Latency histograms with fixed log-linear buckets, mergeable by adding counts.

A latency in microseconds is a float64; its bucket is the top 16 bits of that double: the
sign, the 11 exponent bits and the top 4 mantissa bits. So every power of two is split into
16 equal buckets (HdrHistogram's layout with 4 significant bits), from the smallest
positive double to the largest; 0.0 is bucket 0. A bucket's width is at most 1/16 of its
lower bound, so reporting its midpoint is within 1/32 (3.1 %) of any sample in it.

Every container uses the same buckets, so the fleet's histogram is the sum of the
containers' counts, and fleet percentiles come from that sum (never from averaging
percentiles). Counts are kept sparse: {bucket index: count}.

Turning samples into buckets is done in bulk (`bucket_counts`), never per lookup: the
read path only appends the float to a deque, and the fold runs when statistics are read,
published or flushed (about 0.1 us per sample, in C).
"""
from __future__ import annotations

import array
import struct
import sys
from collections import Counter
from itertools import repeat
from operator import rshift
from typing import Iterable, Mapping, MutableMapping, Optional

LAYOUT = "f64top16"
"""Name of the bucket layout, published with every snapshot (a reader ignores others)."""

RELATIVE_WIDTH = 1.0 / 16.0
"""Upper bound of (bucket upper bound / bucket lower bound - 1)."""

_LITTLE = sys.byteorder == "little"


def bucket_counts(samples_us: Iterable[float]) -> Counter[int]:
    """Bucket index -> count for latencies in microseconds (negative values count as 0)."""
    doubles = array.array("d", samples_us)
    if not doubles:
        return Counter()
    if _LITTLE:  # the top 16-bit word of each little-endian double, read without a Python loop
        found = Counter(memoryview(doubles).cast("B").cast("H")[3::4])
    else:
        found = Counter(map(rshift, memoryview(doubles).cast("B").cast("Q"), repeat(48)))
    negative = [index for index in found if index >= 0x8000]  # sign bit: a clock that stepped back
    for index in negative:
        found[0] += found.pop(index)
    return found


def bucket_of(value_us: float) -> int:
    """The bucket index of one latency (for tests and tools; bulk code uses bucket_counts)."""
    if value_us <= 0.0:
        return 0
    return struct.unpack("<Q", struct.pack("<d", value_us))[0] >> 48


def bounds(index: int) -> tuple[float, float]:
    """[lower, upper) of a bucket, in microseconds."""
    low = struct.unpack("<d", struct.pack("<Q", index << 48))[0]
    high = struct.unpack("<d", struct.pack("<Q", (index + 1) << 48))[0]
    return low, high


def midpoint(index: int) -> float:
    """The value reported for a bucket: the middle of its range."""
    if index == 0:
        return 0.0
    low, high = bounds(index)
    return (low + high) / 2.0


def add(into: MutableMapping[int, int], counts: Mapping[int, int]) -> None:
    """Add `counts` to `into` in place."""
    for index, count in counts.items():
        into[index] = into.get(index, 0) + count


def total(counts: Mapping[int, int]) -> int:
    """How many samples the histogram holds."""
    return sum(counts.values())


def percentile(counts: Mapping[int, int], q: float) -> Optional[float]:
    """The q-quantile (0..1) by nearest rank: the midpoint of the bucket holding the sample of
    0-based rank min(n - 1, int(q * n)) in sorted order; None when empty."""
    n = total(counts)
    if n == 0:
        return None
    rank = min(n - 1, int(q * n))
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen > rank:
            return midpoint(index)
    return midpoint(max(counts))  # not reached


def quantile_points(counts: Mapping[int, int], points: int) -> list[float]:
    """At most `points` values that stand for the distribution: every sample's midpoint when
    there are that few, else the quantiles at (i + 0.5) / points (for EMF, which takes at
    most 100 values per metric)."""
    n = total(counts)
    if n <= points:
        return [midpoint(i) for i in sorted(counts) for _ in range(counts[i])]
    out: list[float] = []
    ordered = sorted(counts)
    seen, position = 0, 0
    for i in range(points):
        rank = int((i + 0.5) / points * n)
        while seen + counts[ordered[position]] <= rank:
            seen += counts[ordered[position]]
            position += 1
        out.append(midpoint(ordered[position]))
    return out


def encode(counts: Mapping[int, int]) -> dict[str, int]:
    """JSON form: {"index": count} without empty buckets."""
    return {str(index): count for index, count in counts.items() if count}


def decode(data: Mapping[str, int]) -> dict[int, int]:
    """Inverse of `encode`; raises ValueError on anything else."""
    out: dict[int, int] = {}
    for key, count in data.items():
        index, number = int(key), int(count)
        if not 0 <= index < 0x8000 or number < 0:
            raise ValueError(f"bad histogram bucket {key!r}: {count!r}")
        out[index] = number
    return out
