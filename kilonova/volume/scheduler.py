"""Whether the backend can take a volume: Cinder's CapacityFilter for a thin-provisioned backend.

Volumes are sparse files, so the backend is thin: what it has given out (every volume's and snapshot's
size) may be up to ``[volume] max_over_subscription_ratio`` times its size, and a new volume must fit in
that many times its free space, less ``reserved_percentage`` of it kept back, as Cinder's scheduler
decides. A volume that does not fit goes to ``error`` with the user message Cinder's scheduler leaves.
"""
from __future__ import annotations

import math


def fits(requested_gb: int, total_gb: float, free_gb: float, provisioned_gb: int, ratio: float,
         reserved_percentage: float) -> bool:
    if total_gb <= 0:
        return False
    free = free_gb - math.floor(total_gb * reserved_percentage / 100)
    if free <= 0:
        return False
    if ratio < 1:   # thick: the space itself
        return free >= requested_gb
    if (provisioned_gb + requested_gb) / total_gb > ratio:
        return False
    return free * ratio >= requested_gb
