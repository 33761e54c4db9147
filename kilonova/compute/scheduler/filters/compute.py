from kilonova.compute.scheduler.filters import BaseFilter


class ComputeFilter(BaseFilter):
    """Only hosts whose compute service is enabled and up."""

    reason = "compute service disabled or down"

    def host_passes(self, host, spec):
        return host.service_up and not host.service_disabled

    def filter_all(self, hosts, spec):
        return [host for host in hosts if host.service_up and not host.service_disabled]
