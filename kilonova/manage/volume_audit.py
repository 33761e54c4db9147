"""``kilonova manage volume_attachment audit``: the volume attachments Nova and the volume service disagree on.

Every block device mapping of every cell is compared with the volume service's attachments (all projects,
as the service user): a mapping whose attachment the volume service does not have (or has for another
volume or server), and an attachment that names a server which does not hold it (a deleted server's, or
one a crash left behind). Mappings still being attached (``attaching``, ``swapping``, ``detaching``) are
the reconcile pass's and are left out. Exit codes as ``placement audit``: 0 none, 3 some, 1 not audited.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import httpx

from kilonova.common.catalog import root_urls
from kilonova.common.clients import ServiceClient
from kilonova.common.db import Database
from kilonova.compute import cells as cells_mod
from kilonova.compute.db import block_devices
from kilonova.compute.volume_api import ATTACHMENTS_VERSION
from kilonova.manage import load_conf
from kilonova.manage.audit import CellUnreadable, _read_cell, run_async, service_auth

SETTLED = ("attached",)


def register(groups) -> None:
    group = groups.add_parser("volume_attachment", help="volume attachment checks")
    actions = group.add_subparsers(dest="action", required=True)
    audit = actions.add_parser("audit", help="compare servers' volumes with the volume service's attachments")
    audit.set_defaults(func=run)


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    unaudited: dict[str, str] = field(default_factory=dict)
    mappings: int = 0
    attachments: int = 0


def compare(bdms: list[dict], attachments: list[dict], findings: Findings) -> None:
    """The disagreements between the cells' mappings and the volume service's attachments."""
    by_id = {a["id"]: a for a in attachments}
    held = set()
    for bdm in bdms:
        if bdm["status"] not in SETTLED:
            held.add(bdm.get("attachment_id"))
            continue
        attachment = by_id.get(bdm.get("attachment_id") or "")
        where = f"volume {bdm['volume_id']} of server {bdm['instance_uuid']}"
        if attachment is None:
            findings.problems.append(f"{where} ({bdm['device_name']}) names attachment {bdm.get('attachment_id')}, "
                                     "which the volume service does not have")
        elif (attachment["volume_id"], attachment["instance"]) != (bdm["volume_id"], bdm["instance_uuid"]):
            findings.problems.append(f"{where} names attachment {attachment['id']}, which the volume service "
                                     f"has for volume {attachment['volume_id']} and server {attachment['instance']}")
        held.add(bdm.get("attachment_id"))
    for attachment in attachments:
        if attachment["id"] not in held:
            findings.problems.append(f"attachment {attachment['id']} of volume {attachment['volume_id']} "
                                     f"({attachment['status']}) names server {attachment['instance']}, which does "
                                     "not hold it")


async def _attachments(volumes: ServiceClient) -> list[dict]:
    await volumes.auth.token()
    found, marker = [], None
    while True:
        params = {"all_tenants": "1", "limit": "1000", **({"marker": marker} if marker else {})}
        response = await volumes.get(f"/v3/{volumes.auth.project_id}/attachments/detail", params=params,
                                     headers=ATTACHMENTS_VERSION)
        response.raise_for_status()
        page = response.json()["attachments"]
        found += page
        if len(page) < 1000:
            return found
        marker = page[-1]["id"]


async def audit(conf, volumes: ServiceClient) -> Findings:
    findings = Findings()
    api_db = Database(conf.get("api_database", "connection"), name="nova_api", workers=2)
    cells = cells_mod.Cells(api_db)
    try:
        cells.load()
        bdms: list[dict] = []
        for cell in cells.real():
            try:
                bdms += await _read_cell(cell, block_devices.with_volumes)
            except CellUnreadable as exc:
                findings.unaudited[exc.cell] = exc.reason
        attachments = await _attachments(volumes)
        findings.mappings, findings.attachments = len(bdms), len(attachments)
        if not findings.unaudited:  # a cell not read: its servers' attachments would all look stray
            compare(bdms, attachments, findings)
    finally:
        for cell in cells.all():
            cell.db.close()
        api_db.close()
    return findings


async def _run(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    identity, auth = service_auth(conf)
    volumes = ServiceClient(httpx.AsyncClient(base_url=root_urls(conf)["block-storage"], timeout=30), auth)
    try:
        findings = await audit(conf, volumes)
    finally:
        await identity.aclose()
        await volumes.http.aclose()
    print(f"Processed {findings.mappings} volume mappings and {findings.attachments} attachments: "
          f"{len(findings.problems)} disagreements")
    for problem in findings.problems:
        print(f"  {problem}")
    for cell, reason in sorted(findings.unaudited.items()):
        print(f"Cell {cell} could not be audited: {reason}")
    if findings.unaudited:
        return 1
    return 3 if findings.problems else 0


def run(args: argparse.Namespace) -> int:
    return run_async(_run, args)
