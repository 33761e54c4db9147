"""The hints upstream's optional filters read that name cells or a network neighbourhood (each filter off by
default, as upstream leaves SimpleCIDRAffinityFilter off: a hint whose filter is not enabled is ignored).

* ``target_cell`` (TargetCellFilter): only hosts of the named cell (its name or uuid).
* ``different_cell`` (DifferentCellFilter): no host of the named cell(s).
  (Upstream's cells v1 filters of these hints went with cells v1; these read Kilonova's cells v2.)
* ``build_near_host_ip`` + ``cidr`` (SimpleCIDRAffinityFilter, upstream's): only hosts whose ``host_ip`` is in
  the network ``build_near_host_ip`` + ``cidr`` (``/24``).
"""
import ipaddress

from kilonova.compute.scheduler.filters import BaseFilter


def _hint(spec, name):
    return (spec.get("scheduler_hints") or {}).get(name)


def _names(value) -> set[str]:
    if not value:
        return set()
    return {value} if isinstance(value, str) else {str(v) for v in value}


class TargetCellFilter(BaseFilter):
    reason = "not in the cell the target_cell hint names"

    def applies(self, spec):
        return bool(_hint(spec, "target_cell"))

    def host_passes(self, host, spec):
        wanted = _hint(spec, "target_cell")
        return not wanted or wanted in (host.cell_name, host.cell_uuid)

    def explain(self, spec):
        return f"{self.reason} ({_hint(spec, 'target_cell')})"


class DifferentCellFilter(BaseFilter):
    reason = "in a cell the different_cell hint excludes"

    def applies(self, spec):
        return bool(_hint(spec, "different_cell"))

    def host_passes(self, host, spec):
        excluded = _names(_hint(spec, "different_cell"))
        return host.cell_name not in excluded and host.cell_uuid not in excluded

    def explain(self, spec):
        return f"{self.reason} ({', '.join(sorted(_names(_hint(spec, 'different_cell'))))})"


class SimpleCIDRAffinityFilter(BaseFilter):
    reason = "its host IP is outside the build_near_host_ip network"

    def applies(self, spec):
        return bool(_hint(spec, "build_near_host_ip"))

    def host_passes(self, host, spec):
        try:
            network = _network(spec)
        except ValueError:  # e.g. cidr=/99: no host is near a network that does not exist
            return False
        if network is None:
            return True
        try:
            return bool(host.host_ip) and ipaddress.ip_address(host.host_ip) in network
        except ValueError:
            return False

    def explain(self, spec):
        try:
            return f"{self.reason} ({_network(spec)})"
        except ValueError as exc:
            return f"the build_near_host_ip and cidr hints make no network ({exc})"


def _network(spec):
    near = _hint(spec, "build_near_host_ip")
    if not near:
        return None
    cidr = _hint(spec, "cidr") or "/24"   # upstream's default
    return ipaddress.ip_network(f"{near}{cidr}", strict=False)
