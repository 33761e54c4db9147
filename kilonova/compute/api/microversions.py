"""Compute API microversions: negotiation (the header read by kilonova/common/microversion.py, as every
versioned API reads it), and the list that doubles as a changelog.

Every version up to MAX is implemented with upstream Nova's request and
response shapes; a handler branches with ``want(request, "2.47")``.
"""
from __future__ import annotations

import functools

from starlette.requests import Request

from kilonova.common import microversion as common_microversion
from kilonova.common.http import HTTPError

VERSIONS = {
    "2.1": "Base: the v2.1 API.",
    "2.2": "Keypair type (ssh/x509).",
    "2.3": "Extended server attributes (reservation_id, launch_index, hostname, ...) for admins.",
    "2.4": "Reserved flag in fixed IPs (no server body change).",
    "2.5": "Allow IPv6 filter for admins.",
    "2.6": "Remote consoles API.",
    "2.7": "Flavor access check on private flavors.",
    "2.8": "MKS console.",
    "2.9": "Server 'locked' attribute.",
    "2.10": "Admin may manage another user's keypairs (user_id parameter).",
    "2.11": "Service forced_down.",
    "2.12": "VIF net_id.",
    "2.13": "Server group project/user id.",
    "2.14": "Evacuate without on_shared_storage.",
    "2.15": "Soft affinity policies.",
    "2.16": "Server host_status.",
    "2.17": "trigger_crash_dump server action (404 before).",
    "2.18": "Optional project id in URLs.",
    "2.19": "Server description.",
    "2.20": "Volume ops on shelved servers.",
    "2.21": "Deleted instance actions.",
    "2.22": "Force live migration completion.",
    "2.23": "Migration type and id in list.",
    "2.24": "Abort live migration.",
    "2.25": "Block migration auto.",
    "2.26": "Server tags.",
    "2.27": "OpenStack-API-Version header.",
    "2.28": "Hypervisor cpu_info as an object.",
    "2.29": "Evacuate force.",
    "2.30": "Live migrate force.",
    "2.31": "Serial console URL fix.",
    "2.32": "Device tags in create.",
    "2.33": "Hypervisor pagination.",
    "2.34": "Async live migration checks.",
    "2.35": "Keypair pagination.",
    "2.36": "Proxy APIs deprecated (images, networks, ... return 404).",
    "2.37": "'networks' is required: a list, 'auto' or 'none'.",
    "2.38": "Invalid status filter answers 400.",
    "2.39": "Image metadata quota removed from limits.",
    "2.40": "Simple tenant usage pagination.",
    "2.41": "Aggregate uuid.",
    "2.42": "Device tags restored.",
    "2.43": "os-hosts deprecated.",
    "2.44": "Network proxy actions deprecated.",
    "2.45": "createImage returns image_id in the body.",
    "2.46": "Request id in instance action events.",
    "2.47": "Embedded flavor details in servers.",
    "2.48": "Server diagnostics in the standard format (before: the driver's own counters).",
    "2.49": "Tagged volume attach.",
    "2.50": "Server group quotas in quota-class-sets.",
    "2.51": "volume-extended external event; instance action events shown to the server's owner (no traceback).",
    "2.52": "Tags at server create.",
    "2.53": "Service and hypervisor ids are UUIDs.",
    "2.54": "Keypair on rebuild.",
    "2.55": "Flavor description.",
    "2.56": "Cold migrate to a host.",
    "2.57": "Personality files removed; user_data on rebuild.",
    "2.58": "Instance actions pagination and changes-since.",
    "2.59": "Migrations pagination.",
    "2.60": "Multiattach volumes.",
    "2.61": "Flavor extra_specs in flavor show, detail list, create and update.",
    "2.62": "Instance action events show hostId (and host to admins).",
    "2.63": "trusted_image_certificates at server create and in server show, detail list and update.",
    "2.64": "Server group policy/rules: policy and rules (max_server_per_host) instead of policies.",
    "2.65": "Abort queued live migrations (no live migration here: no change).",
    "2.66": "changes-before filter on the server lists, os-instance-actions and os-migrations.",
    "2.67": "volume_type in block_device_mapping_v2 at server create.",
    "2.68": "Forced live migration and evacuate removed (neither exists here: no change).",
    "2.69": "Servers of a cell that is down as UNKNOWN records (lists, show, os-services).",
    "2.70": "Device tags in os-volume_attachments and os-interface (neither API exists here: no change).",
    "2.71": "server_groups in server show, update and rebuild.",
    "2.72": "Ports with a resource request at create (the network service has no QoS: no change).",
    "2.73": "Lock with a locked_reason; locked_reason in server views; locked filter and sort key.",
    "2.74": "host / hypervisor_hostname at server create (admins), honoured by the scheduler.",
    "2.75": "Unknown server-list parameters are 400; PUT answers the full server; flavor swap 0; hypervisor "
            "servers always listed.",
    "2.76": "power-update external event (tag required).",
    "2.77": "Availability zone at unshelve (no shelve here: no change).",
    "2.78": "GET /servers/{id}/topology (no NUMA topologies here: always empty).",
    "2.79": "delete_on_termination at volume attach (no volume attachments here: no change).",
    "2.80": "user_id/project_id in os-migrations (filters and fields) and server migrations.",
    "2.81": "POST /os-aggregates/{id}/images (accepted; no driver here pre-caches, so hosts skip it).",
    "2.82": "accelerator-request-bound external event (tag required).",
    "2.83": "More server-list filters for non-admins (availability_zone, key_name, vm_state, user_id, ...).",
    "2.84": "Instance action event details.",
    "2.85": "delete_on_termination in PUT volume attachments (no volume attachments here: no change).",
    "2.86": "Flavor extra specs that upstream knows are validated when set (os-extra_specs create/update).",
    "2.87": "Rescue of volume-backed servers (servers here are image-backed: no change).",
    "2.88": "os-hypervisors: usage fields, /statistics and /uptime gone; uptime in the detail (null: no driver "
            "here reports it).",
    "2.89": "attachment_id/bdm_uuid in volume attachments (no volume attachments here: no change).",
    "2.90": "hostname at server create and update; OS-EXT-SRV-ATTR:hostname shown to every user.",
    "2.91": "Unshelve to a host, zone pinning at unshelve (no shelve here: no change).",
    "2.92": "Keypairs are imported only (public_key required, no generated private key); '@' and '.' in names.",
    "2.93": "Rebuild of a volume-backed server to another image (the root volume is reimaged).",
    "2.94": "hostname at create, update and rebuild may be an FQDN of up to 255 characters.",
    "2.95": "An evacuated server that was ACTIVE is left STOPPED at its destination.",
    "2.96": "pinned_availability_zone in server show, detail list, update and rebuild.",
    "2.97": "Server shares (/servers/{id}/shares): refused here, no Shared File Systems service (409).",
    "2.98": "Image properties embedded in the server's image (show, detail list, update, rebuild).",
    "2.99": "spice-direct remote console type (only noVNC consoles here: 400).",
    "2.100": "scheduler_hints of the create in server show, detail list, update and rebuild.",
    "2.101": "Volume attach answers 202 (the attach finishes asynchronously).",
    "2.102": "rxtx_factor gone from flavors; the query schemas left open are closed (server show, ips, tags, "
             "server password, shares, os-keypairs, flavor lists): another parameter is a 400.",
    "2.103": "Accepted; nothing changes here at this version (its upstream change was not identified when 2.104 "
             "was added).",
    "2.104": "pinned_availability_zone may be set (to the server's zone) or unset (null) with PUT /servers/{id}.",
}

# novaclient (2.96) and openstacksdk (2.100) cap the version they negotiate at their own maximum, so
# raising ours changes nothing they send; `nova keypair-add NAME` without --pub-key is refused from 2.92,
# as upstream (openstack keypair create generates the key on the client side instead).
MIN_VERSION = "2.1"
MAX_VERSION = "2.104"


@functools.lru_cache(maxsize=256)
def parse(text: str) -> tuple[int, int]:
    version = common_microversion.parse(text)
    if version is None or version[0] == 0:
        raise HTTPError(400, f"Invalid format for the microversion '{text}'.")
    return version


MIN = parse(MIN_VERSION)
MAX = parse(MAX_VERSION)


def negotiate(request: Request) -> tuple[int, int]:
    """The version a request asked for; 406 outside [MIN, MAX], 400 when malformed."""
    requested = common_microversion.requested(request, "compute", ("x-openstack-nova-api-version",))
    if requested is None:
        return MIN
    if requested.strip().lower() == "latest":
        return MAX
    version = parse(requested)
    if not MIN <= version <= MAX:
        raise HTTPError(406, f"Version {requested} is not supported by the API. "
                             f"Minimum is {MIN_VERSION} and maximum is {MAX_VERSION}.")
    return version


# Views ask about a few dozen fixed versions many times per request: parse each once.
_parse_known = functools.lru_cache(maxsize=512)(parse)


def want(request: Request, version: str) -> bool:
    """True when the request's microversion is at least ``version``."""
    return request.state.version >= _parse_known(version)


def version_text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"
