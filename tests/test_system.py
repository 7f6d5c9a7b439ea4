"""usable_cpus: the affinity mask, not the machine's count."""

from __future__ import annotations

import os

import pytest

from recsemble.system import usable_cpus


def test_usable_cpus_follows_the_affinity_mask() -> None:
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity masks on this OS")
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert usable_cpus() == 1
    finally:
        os.sched_setaffinity(0, before)
    assert usable_cpus() == len(before)
