"""Version documents and microversions: ``OpenStack-API-Version: volume 3.x``, 3.0 up to ``MAX_VERSION``.

Cinder's microversions, one line each; where one changes a request or an answer, the handler branches
on ``at_least(request, ...)``. Those that add a resource this service does not have (groups, backups,
messages, clusters, transfers ...) answer that resource's 404 at every version, as a Cinder without the
backend for it would.

3.0   the v2 API under /v3; this version document
3.1   image upload: visibility and protected
3.2   ``bootable`` list filter is strict (true/false/1/0; anything else a 400)
3.3   user messages
3.4   ``glance_metadata`` list filter
3.5   messages paging
3.6   empty consistency-group name/description
3.7   clusters
3.8   manageable volumes and snapshots
3.9   backup update
3.10  ``group_id`` list filter
3.11  group types
3.12  ``GET volumes/summary``
3.13  generic groups; ``group_id`` in the volume
3.14  group snapshots
3.15  ETag on volume metadata
3.16  migrate to a cluster
3.17  manageable lists by cluster
3.18  backup project attribute
3.19  group snapshot reset-status
3.20  group reset-status
3.21  ``provider_id`` in the volume (admins)
3.22  snapshot list ``metadata`` filter
3.23  ``force`` volume delete parameter
3.24  workers cleanup
3.25  volumes in group details
3.26  cluster failover, freeze, thaw
3.27  the attachments API (``/attachments``)
3.28  pool filters
3.29  group snapshot paging
3.30  snapshots sorted by name
3.31  configured resource filters
3.32  log levels
3.33  ``GET resource_filters``
3.34  ``name~`` (like) filters
3.35  pools by volume type
3.36  metadata in volumes summary
3.37  backups sorted by name
3.38  group replication
3.39  limits for another project (admins)
3.40  revert to snapshot
3.41  ``user_id`` in snapshots
3.42  extend an in-use volume
3.43  backup metadata
3.44  ``os-complete`` attachment action
3.45  ``with_count`` on lists
3.46  volumes from a Nova (zero-size) image
3.47  volumes from a backup
3.48  ``shared_targets`` and ``service_uuid`` in the volume
3.49  backend state in services
3.50  multiattach volumes
3.51  backup availability zone
3.52  volume type list filtered by ``extra_specs``
3.53  strict request schemas
3.54  ``mode`` in attachment create
3.55  transfers with snapshots
3.56  backup user_id
3.57  transfer history
3.58  project_id in groups
3.59  transfer paging
3.60  ``created_at``/``updated_at`` filters with operators
3.61  ``cluster_name`` in the volume (admins)
3.62  default volume types per project
3.63  ``volume_type_id`` in the volume
3.64  ``encryption_key_id`` in the volume
3.65  ``consumes_quota`` in volumes and snapshots
3.66  snapshots of in-use volumes without ``force``
3.67  URLs without the project id
3.68  ``os-reimage``
3.69  ``shared_targets`` may be null
3.70  transfer of encrypted volumes
3.71  ``os-extend_volume_completion``
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from kilonova.common import microversion as common_microversion
from kilonova.common.auth import public
from kilonova.common.http import HTTPError, Router, json_response

MIN_VERSION = (3, 0)
MAX_VERSION = (3, 71)
HEADER = "OpenStack-API-Version"


def text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def _document(request: Request) -> dict:
    base = str(request.base_url).rstrip("/")
    return {"id": "v3.0", "status": "CURRENT", "version": text(MAX_VERSION), "min_version": text(MIN_VERSION),
            "updated": "2026-12-06T00:00:00Z",
            "links": [{"rel": "describedby", "type": "text/html",
                       "href": "https://docs.openstack.org/"},
                      {"rel": "self", "href": f"{base}/v3/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.volume+json;version=3"}]}


@public
async def root(request: Request):
    return json_response({"versions": [_document(request)]}, status=300)


@public
async def v3(request: Request):
    return json_response({"versions": [_document(request)]})


def at_least(request: Request, version: tuple[int, int]) -> bool:
    """Whether the request was made at ``version`` or later."""
    return getattr(request.state, "volume_version", MIN_VERSION) >= version


def require(request: Request, version: tuple[int, int]) -> None:
    """A call that a microversion introduced: 404 below it, as Cinder answers."""
    if not at_least(request, version):
        asked = getattr(request.state, "volume_version", MIN_VERSION)
        raise HTTPError(404, f"API version {text(asked)} is not supported on this method.")


def requested(request: Request) -> tuple[int, int]:
    """The microversion a v3 request asks for (3.0 without a header); 400 malformed, 406 out of range."""
    version = common_microversion.requested(request, "volume")
    if version is None:
        return MIN_VERSION
    if version.lower() == "latest":
        return MAX_VERSION
    asked = common_microversion.parse(version)
    if asked is None or asked[0] == 0:
        raise HTTPError(400, f"Invalid API version format: {version!r}. Expected 'volume X.Y'.")
    if not MIN_VERSION <= asked <= MAX_VERSION:
        raise HTTPError(406, f"Version {version} is not supported by the API. Minimum is {text(MIN_VERSION)} "
                             f"and maximum is {text(MAX_VERSION)}.")
    return asked


async def negotiate(request: Request, _handler) -> None:
    if request.url.path.startswith("/v3/"):
        request.state.volume_version = requested(request)


def annotate(request: Request, response: Response) -> None:
    """Every v3 answer says the microversion it was served at."""
    version = getattr(request.state, "volume_version", None)
    if version is not None:
        response.headers[HEADER] = f"volume {text(version)}"
        response.headers["Vary"] = HEADER


def register(router: Router) -> None:
    router.add("GET", "/", root)
    router.add("GET", "/v3", v3)
