"""Weighers of a host's load and history, as upstream's: I/O operations, instance count, failed builds,
cross-cell moves, hypervisor version."""
from kilonova.compute.scheduler.weighers import BaseWeigher


class IoOpsWeigher(BaseWeigher):
    """Instances building or in an I/O-heavy task (resize, snapshot, rebuild, ...); the default
    multiplier (-1.0) prefers the hosts with fewer."""
    option = "io_ops_weight_multiplier"
    needs_instance_counts = True

    def weigh(self, host, spec):
        return host.num_io_ops

    def weigh_all(self, hosts, spec):
        return [host.num_io_ops for host in hosts]


class NumInstancesWeigher(BaseWeigher):
    """The number of instances on the host (multiplier 0.0 by default, as upstream: off)."""
    option = "num_instances_weight_multiplier"
    needs_instance_counts = True

    def weigh(self, host, spec):
        return host.num_instances

    def weigh_all(self, hosts, spec):
        return [host.num_instances for host in hosts]


class BuildFailureWeigher(BaseWeigher):
    """Hosts whose recent builds failed weigh less (the agent counts consecutive failures, a success resets
    it); the large default multiplier outweighs every other weigher, as upstream."""
    option = "build_failure_weight_multiplier"

    def weigh(self, host, spec):
        return -host.failed_builds

    def weigh_all(self, hosts, spec):
        return [-host.failed_builds for host in hosts]


class CrossCellWeigher(BaseWeigher):
    """For a move, hosts in the server's own cell weigh more than the others. Kilonova does not move servers
    between cells (a move's candidates come from its cell only), so this never changes a choice today; it is
    here so the upstream option and aggregate key work as documented."""
    option = "cross_cell_move_weight_multiplier"

    def applies(self, spec):
        return bool(spec.get("requested_cell"))

    def weigh(self, host, spec):
        source = spec.get("requested_cell")
        return -1 if source and host.cell_uuid != source else 0


class HypervisorVersionWeigher(BaseWeigher):
    """Newer hypervisor versions weigh more (multiplier 1.0, as upstream since 2023.1)."""
    option = "hypervisor_version_weight_multiplier"

    def weigh(self, host, spec):
        return host.hypervisor_version or 0

    def weigh_all(self, hosts, spec):
        return [host.hypervisor_version or 0 for host in hosts]
