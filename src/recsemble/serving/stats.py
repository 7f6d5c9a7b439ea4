"""Live request figures for GET /stats, read off the app's own Prometheus collectors.

Latency percentiles come from the latency histogram's buckets, interpolated linearly inside
the bucket the rank falls in (what Prometheus' histogram_quantile does): their precision is
the bucket grid's (app.LATENCY_BUCKETS), and a rank in the open last bucket reports the
highest finite bound. The overall figure leaves out the monitoring routes (the dashboard
polling /stats every few seconds would otherwise make up most of it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram

QUANTILES = (0.5, 0.95, 0.99)
#: Routes that watch the server rather than use it: counted, but not in the overall latency.
MONITORING_ROUTES = frozenset(
    {"/stats", "/metrics", "/health/live", "/health/ready", "/models", "/dashboard",
     "/dashboard/{asset}", "/", "/report", "unmatched"}
)  # fmt: skip


@dataclass
class Buckets:
    """Cumulative counts per upper bound (seconds), +inf last, summed over label sets."""

    bounds: list[float] = field(default_factory=list)
    counts: list[float] = field(default_factory=list)

    def add(self, bound: float, count: float) -> None:
        if bound in self.bounds:
            self.counts[self.bounds.index(bound)] += count
        else:
            self.bounds.append(bound)
            self.counts.append(count)

    def merged(self, other: Buckets) -> Buckets:
        out = Buckets(list(self.bounds), list(self.counts))
        for bound, count in zip(other.bounds, other.counts, strict=True):
            out.add(bound, count)
        return out

    @property
    def total(self) -> int:
        return int(max(self.counts, default=0))


@dataclass(frozen=True)
class RouteCount:
    route: str
    method: str
    status: int
    count: int


def quantile(q: float, buckets: Buckets) -> float | None:
    """The q-quantile in seconds (None without observations)."""
    order = sorted(range(len(buckets.bounds)), key=lambda i: buckets.bounds[i])
    bounds = [buckets.bounds[i] for i in order]
    counts = [buckets.counts[i] for i in order]
    total = counts[-1] if counts else 0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if math.isinf(bound):  # the open last bucket: its lower edge is all we know
                return lower
            inside = cumulative - below
            share = (rank - below) / inside if inside > 0 else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, cumulative
    return lower


def percentiles_ms(buckets: Buckets) -> dict[str, float | None]:
    """{"p50": ms, "p95": ms, "p99": ms} (None without observations)."""
    out: dict[str, float | None] = {}
    for q in QUANTILES:
        value = quantile(q, buckets)
        out[f"p{round(q * 100)}"] = None if value is None else round(value * 1000, 3)
    return out


def read_latency(histogram: Histogram) -> tuple[list[RouteCount], dict[str, Buckets]]:
    """(request counts by route, method and status; latency buckets by route)."""
    counts: list[RouteCount] = []
    by_route: dict[str, Buckets] = {}
    for metric in histogram.collect():
        for sample in metric.samples:
            labels = sample.labels
            route = labels.get("route", "unmatched")
            if sample.name.endswith("_count") and sample.value > 0:
                status = int(labels["status"]) if labels.get("status", "").isdigit() else 0
                method = labels.get("method", "")
                counts.append(RouteCount(route, method, status, int(sample.value)))
            elif sample.name.endswith("_bucket"):
                bound = float(labels["le"])
                by_route.setdefault(route, Buckets()).add(bound, sample.value)
    counts.sort(key=lambda c: (c.route, c.method, c.status))
    return counts, by_route


def overall(by_route: dict[str, Buckets], excluded: Iterable[str] = MONITORING_ROUTES) -> Buckets:
    """All routes' buckets but the excluded ones, merged."""
    skip = frozenset(excluded)
    out = Buckets()
    for route, buckets in by_route.items():
        if route not in skip:
            out = out.merged(buckets)
    return out


def counter_values(counter: Counter, label: str, names: Sequence[str]) -> dict[str, int]:
    """The counter's value for each of `names` of its one label (0 when never counted)."""
    values = dict.fromkeys(names, 0)
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get(label) in values:
                values[sample.labels[label]] = int(sample.value)
    return values
