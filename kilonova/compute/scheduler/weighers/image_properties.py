"""ImagePropertiesWeigher (upstream 2024.2): hosts whose instances' images share properties with the
requested image weigh more (or less, with a negative multiplier), so alike guests gather or spread.

Each instance on the host adds, for each property its image shares with the requested image, that
property's weight from ``[filter_scheduler] image_props_weight_setting`` (``os_distro=10,hw_machine_type=2``;
without a setting every property counts 1; a setting lists the only properties that count).
Off by default (multiplier 0.0), as upstream.
"""
from __future__ import annotations

import functools

from kilonova.compute.scheduler.weighers import BaseWeigher


class ImagePropertiesWeigher(BaseWeigher):
    option = "image_props_weight_multiplier"

    def __init__(self, conf) -> None:
        super().__init__(conf)
        self.setting = _setting(conf.get("filter_scheduler", "image_props_weight_setting"))

    def applies(self, spec):
        return bool((spec.get("image") or {}).get("properties"))

    def weigh(self, host, spec):
        wanted = {k: str(v) for k, v in ((spec.get("image") or {}).get("properties") or {}).items()}
        if not wanted or not host.instance_images:
            return 0.0
        total = 0.0
        for props in host.instance_images:
            for key, value in wanted.items():
                if props.get(key) == value:
                    total += self.setting.get(key, 0.0 if self.setting else 1.0)
        return total


@functools.lru_cache(maxsize=8)
def _setting(text: str) -> dict[str, float]:
    found = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, _, weight = item.partition("=")
        found[key.strip()] = float(weight or 1)
    return found
