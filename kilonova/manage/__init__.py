"""``kilonova manage``: admin commands in the spirit of nova-manage and nova-status.

::

    kilonova manage db sync                 migrate cell0, the [database] cell and every mapped cell
    kilonova manage api_db sync             migrate the API database
    kilonova manage cell_v2 map_cell0 [--database_connection URL]
    kilonova manage cell_v2 create_cell --name NAME --database_connection URL [--transport-url URL]
    kilonova manage cell_v2 list_cells [--verbose]
    kilonova manage cell_v2 discover_hosts [--cell_uuid UUID] [--verbose]
    kilonova manage cell_v2 list_hosts [--cell_uuid UUID]
    kilonova manage status upgrade check
    kilonova manage placement audit [--heal] [--verbose]
    kilonova manage volume_attachment audit
    kilonova manage policy list [--service NAME] [--overridden]
    kilonova manage limits migrate_to_unified_limits [--project-id P] [--region-id R] [--verbose] [--dry-run]
    kilonova manage scheduler explain --flavor F [--image I] [--hint K=V] [--availability-zone AZ] [--json]

Exit codes follow upstream: 0 success, 1 a warning or "nothing done", 2 failure
(``status upgrade check``: 0 all checks passed, 1 warnings, 2 failures).
"""
from __future__ import annotations

import argparse


def register(sub: "argparse._SubParsersAction") -> None:
    """Add ``manage`` and its commands to the ``kilonova`` parser."""
    from kilonova.manage import audit, cells, limits, policy_list, scheduler, status, volume_audit

    manage = sub.add_parser("manage", help="admin commands (db sync, cells, upgrade checks, allocation audit, "
                                           "policy)")
    groups = manage.add_subparsers(dest="manage_group", required=True)
    cells.register(groups)
    status.register(groups)
    audit.register(groups)
    volume_audit.register(groups)
    policy_list.register(groups)
    scheduler.register(groups)
    limits.register(groups)


def load_conf(args: argparse.Namespace):
    """The configuration, with the ports of the cloud running on its state directory (`kilonova up
    --base-port` moves them without a configuration file saying so)."""
    from kilonova import runtime
    from kilonova.config import Config

    conf = Config.load(getattr(args, "config", None), state_dir=getattr(args, "state_dir", None))
    info = runtime.running(conf.state_dir) or {}
    for service, port in info.get("ports", {}).items():
        conf.set("ports", service, port)
    if info.get("novncproxy_port"):
        conf.set("vnc", "novncproxy_port", info["novncproxy_port"])
    return conf


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A prettytable-style table, as the upstream commands print."""
    cells = [[str(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

    return "\n".join([rule, line(headers), rule, *[line(row) for row in cells], rule])
