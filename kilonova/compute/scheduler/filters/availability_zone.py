from kilonova.compute.scheduler.filters import BaseFilter


class AvailabilityZoneFilter(BaseFilter):
    """Only hosts in the availability zone the server asked for (any zone when it asked for none)."""

    reason = "not in the requested availability zone"

    def applies(self, spec):
        return bool(spec.get("availability_zone"))

    def host_passes(self, host, spec):
        wanted = spec.get("availability_zone")
        return not wanted or host.availability_zone == wanted
