"""The services one process may run (`kilonova serve NAME...`), in start order; light to import (the
command line completes and checks the names without loading any service)."""

# Identity prepares first (everyone validates tokens with it); the conductor starts before the
# services that heartbeat through it.
SERVICE_CLASSES = {
    "identity": "kilonova.identity.service:IdentityService",
    "placement": "kilonova.placement.service:PlacementService",
    "image": "kilonova.image.service:ImageService",
    "network": "kilonova.network.service:NetworkService",
    "volume": "kilonova.volume.service:VolumeService",
    "api": "kilonova.compute.api.service:ComputeAPIService",
    "conductor": "kilonova.compute.conductor.service:ConductorService",
    "scheduler": "kilonova.compute.scheduler.service:SchedulerService",
    "compute": "kilonova.compute.agent.service:ComputeAgentService",
    "l3": "kilonova.compute.virt.libvirt.l3_agent:L3AgentService",
    "novncproxy": "kilonova.console.service:NoVNCProxyService",
}

# The APIs' catalog types; `--base-port P` puts them on P, P+1, ... and the console proxy on the port after them.
SERVICES_IN_PORT_ORDER = ("identity", "compute", "placement", "image", "network", "block-storage")
