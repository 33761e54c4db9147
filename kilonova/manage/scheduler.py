"""``kilonova manage scheduler explain``: a dry run of the scheduler for a request, nothing claimed.

The same stages a server create goes through -- Placement with the pre-filters' traits and aggregates,
each enabled filter, the weighers -- run over the cloud as it is now, and each stage says how many hosts it
kept, which it removed and why; then the best hosts with each weigher's share of their weight::

    kilonova manage scheduler explain --flavor m1.small --image cirros --hint group=UUID \\
        --availability-zone az1 --project PROJECT [--host H] [--node N] [--json]

Exit code: 0 a host would be chosen, 3 no valid host (the reason printed), 1 an error.
"""
from __future__ import annotations

import argparse
import json

import httpx

from kilonova.common.catalog import root_urls
from kilonova.common.clients import ServiceClient
from kilonova.common.db import Database
from kilonova.compute import cells as cells_mod
from kilonova.compute.api.create import image_spec
from kilonova.compute.db import flavors
from kilonova.compute.scheduler.manager import SchedulerManager
from kilonova.compute.scheduler.service import PLACEMENT_VERSION
from kilonova.manage import load_conf, table
from kilonova.manage.audit import run_async, service_auth

NO_VALID_HOST = 3
REMOVED_SHOWN = 5  # hosts named per stage in the table (--json names them all)


def register(groups) -> None:
    scheduler = groups.add_parser("scheduler", help="scheduler dry runs").add_subparsers(dest="action", required=True)
    explain = scheduler.add_parser("explain", help="which hosts a request would go to, stage by stage, and why")
    explain.add_argument("--flavor", required=True, help="flavor id or name")
    explain.add_argument("--image", help="image id (its properties and disk format are read from the image service)")
    explain.add_argument("--image-property", action="append", default=[], metavar="KEY=VALUE",
                         help="an image property (added to, or instead of, --image's)")
    explain.add_argument("--hint", action="append", default=[], metavar="KEY=VALUE",
                         help="a scheduler hint (repeat a key for a list: --hint different_host=A "
                              "--hint different_host=B); group=UUID puts the request in that server group")
    explain.add_argument("--availability-zone", dest="zone")
    explain.add_argument("--project", default="explain-project", help="the project the request is for")
    explain.add_argument("--user", default="explain-user")
    explain.add_argument("--host", help="a requested destination host (as 2.74's host)")
    explain.add_argument("--node", help="a requested destination node (as 2.74's hypervisor_hostname)")
    explain.add_argument("--boot-from-volume", action="store_true", help="no local root disk is claimed")
    explain.add_argument("--top", type=int, default=10, help="how many weighed hosts to show")
    explain.add_argument("--json", action="store_true", help="the whole trace as JSON")
    explain.set_defaults(func=run)


def pairs(items: list[str], what: str) -> dict:
    """KEY=VALUE arguments; a key given twice becomes a list."""
    found: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RuntimeError(f"{what} {item!r} is not KEY=VALUE")
        if key in found:
            found[key] = (found[key] if isinstance(found[key], list) else [found[key]]) + [value]
        else:
            found[key] = value
    return found


def _flavor(session, ref: str) -> dict:
    row = flavors.visible_row(session, ref, is_admin=True) or \
        next((f for f in flavors.list_flavors(session, is_public=None) if f.name == ref), None)
    if row is None:
        raise RuntimeError(f"Flavor {ref} could not be found.")
    return {"id": row.flavorid, "name": row.name, "vcpus": row.vcpus, "memory_mb": row.memory_mb,
            "root_gb": row.root_gb, "ephemeral_gb": row.ephemeral_gb, "swap": row.swap,
            "extra_specs": flavors.extra_specs(session, row.id)}


async def _image(image: ServiceClient, ref: str) -> dict:
    response = await image.get(f"/v2/images/{ref}")
    if response.status_code != 200:
        raise RuntimeError(f"Image {ref} could not be found ({response.status_code}).")
    return response.json()


async def build_spec(args: argparse.Namespace, api_db: Database, image: ServiceClient | None) -> dict:
    """The request spec a create with these arguments would send the scheduler."""
    flavor = await api_db.read(_flavor, args.flavor)
    found = await _image(image, args.image) if args.image and image is not None else {"id": args.image or ""}
    spec_image = image_spec({**found, **pairs(args.image_property, "--image-property")})
    spec = {"project_id": args.project, "user_id": args.user, "flavor": flavor, "image": spec_image,
            "availability_zone": args.zone, "num_instances": 1, "scheduler_hints": pairs(args.hint, "--hint")}
    destination = {key: value for key, value in (("host", args.host), ("node", args.node)) if value}
    if destination:
        spec["requested_destination"] = destination
    if args.boot_from_volume:
        spec["is_bfv"] = True
    return spec


def render(answer: dict) -> str:
    rows = []
    for stage in answer["stages"]:
        removed = stage["removed"]
        named = ", ".join(removed[:REMOVED_SHOWN]) + (f" (+{len(removed) - REMOVED_SHOWN})"
                                                      if len(removed) > REMOVED_SHOWN else "")
        rows.append([stage["stage"], stage["kind"], stage["hosts_before"], stage["hosts_after"], named,
                     stage["reason"]])
    lines = [table(["Stage", "Kind", "Hosts before", "Hosts after", "Removed", "Why"], rows)]
    if answer["weighed"]:
        names = sorted({name for entry in answer["weighed"] for name in entry["by_weigher"]})
        lines.append(table(["Host", "Weight", *names],
                           [[e["host"], e["weight"], *[e["by_weigher"].get(n, 0) for n in names]]
                            for e in answer["weighed"]]))
        lines.append(f"Would choose: {answer['chosen']}")
    if answer["error"]:
        lines.append(answer["error"])
    return "\n".join(lines)


async def _run(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    urls = root_urls(conf)
    identity, auth = service_auth(conf)
    placement = ServiceClient(httpx.AsyncClient(base_url=urls["placement"], timeout=30), auth,
                              {"OpenStack-API-Version": PLACEMENT_VERSION})
    image = ServiceClient(httpx.AsyncClient(base_url=urls["image"], timeout=30), auth)
    api_db = Database(conf.get("api_database", "connection"), name="nova_api", workers=2)
    cells = cells_mod.Cells(api_db)
    try:
        cells.load()
        spec = await build_spec(args, api_db, image)
        answer = await SchedulerManager(conf, placement, cells).explain(spec, top=args.top)
    finally:
        for cell in cells.all():
            cell.db.close()
        api_db.close()
        for client in (placement, image):
            await client.http.aclose()
        await identity.aclose()
    print(json.dumps(answer, indent=2, default=str) if args.json else render(answer))
    return NO_VALID_HOST if answer["error"] else 0


def run(args: argparse.Namespace) -> int:
    return run_async(_run, args)
