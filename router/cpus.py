"""How many CPUs this process may use: the fewest of the cores it may run on and its
cgroup's CPU quota (a container's `cpus:` limit, a pod's CPU limit), so the local model's
thread count follows the container, not the host it happens to run on."""

from __future__ import annotations

import math
import os
from pathlib import Path

_CGROUP = Path("/sys/fs/cgroup")


def _quota(root: Path) -> float | None:
    """The cgroup's CPU quota in CPUs (v2 `cpu.max`, else v1 `cpu.cfs_quota_us`); None
    when it sets none or cannot be read."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


def available_cpus(root: Path = _CGROUP) -> int:
    """Whole CPUs this process may use (at least 1): its affinity, capped by its quota
    rounded up (a 1.5-CPU limit runs 2 threads)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = cores or 1
    quota = _quota(root)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return count
