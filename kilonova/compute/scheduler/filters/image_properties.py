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
        arch, hv_type, vm_mode = _wanted(spec)
        if not (arch or hv_type or vm_mode):
            return True
        if not host.supported_instances:
            return False
        for host_arch, host_hv, host_mode in host.supported_instances:
            if ((not arch or arch == host_arch) and (not hv_type or hv_type == host_hv)
                    and (not vm_mode or vm_mode == host_mode)):
                return True
        return False


def _wanted(spec) -> tuple:
    """(architecture, hypervisor type, VM mode) the image asks for, each None when it does not say."""
    props = (spec.get("image") or {}).get("properties") or {}
    return (props.get("hw_architecture") or props.get("architecture"),
            props.get("img_hv_type") or props.get("hypervisor_type"), props.get("hw_vm_mode") or props.get("vm_mode"))
