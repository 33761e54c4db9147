"""The soft server-group policies: weigh hosts by how many of the group's servers they hold."""
from kilonova.compute.scheduler.server_group import members_on
from kilonova.compute.scheduler.weighers import BaseWeigher


class ServerGroupSoftAffinityWeigher(BaseWeigher):
    """soft-affinity: the more of the group's servers on a host, the better."""
    option = "soft_affinity_weight_multiplier"

    def applies(self, spec):
        return (spec.get("instance_group") or {}).get("policy") == "soft-affinity"

    def weigh(self, host, spec):
        return members_on(spec, host.host, "soft-affinity") or 0


class ServerGroupSoftAntiAffinityWeigher(BaseWeigher):
    """soft-anti-affinity: the fewer of the group's servers on a host, the better."""
    option = "soft_anti_affinity_weight_multiplier"

    def applies(self, spec):
        return (spec.get("instance_group") or {}).get("policy") == "soft-anti-affinity"

    def weigh(self, host, spec):
        return -(members_on(spec, host.host, "soft-anti-affinity") or 0)
