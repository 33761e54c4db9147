from kilonova.compute.scheduler.filters import BaseFilter


class ImagePropertiesFilter(BaseFilter):
    """Only hosts that can run the image's architecture, hypervisor type and VM mode.

    Reads the image properties ``hw_architecture`` (or ``architecture``),
    ``img_hv_type`` (or ``hypervisor_type``) and ``hw_vm_mode`` (or ``vm_mode``)
    and compares them with the (arch, hv_type, vm_mode) triples the host supports.
    """

    run_on_rebuild = True
    reason = "cannot run the image's architecture/hypervisor type/VM mode"

    def applies(self, spec):
        return any(_wanted(spec))

    def host_passes(self, host, spec):
        return _runs(host.supported_instances, *_wanted(spec))

    def filter_all(self, hosts, spec):
        arch, hv_type, vm_mode = _wanted(spec)
        return [host for host in hosts if _runs(host.supported_instances, arch, hv_type, vm_mode)]


def _runs(supported, arch, hv_type, vm_mode) -> bool:
    """Whether one of the host's (arch, hv type, vm mode) triples runs what the image asks for."""
    if not (arch or hv_type or vm_mode):
        return True
    for host_arch, host_hv, host_mode in supported:
        if ((not arch or arch == host_arch) and (not hv_type or hv_type == host_hv)
                and (not vm_mode or vm_mode == host_mode)):
            return True
    return False


def _wanted(spec) -> tuple:
    """(architecture, hypervisor type, VM mode) the image asks for, each None when it does not say."""
    props = (spec.get("image") or {}).get("properties") or {}
    return (props.get("hw_architecture") or props.get("architecture"),
            props.get("img_hv_type") or props.get("hypervisor_type"), props.get("hw_vm_mode") or props.get("vm_mode"))
