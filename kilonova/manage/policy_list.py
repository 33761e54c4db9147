"""``kilonova manage policy list``: every service's rules in force, as ``oslopolicy-policy-generator`` prints them.

One YAML document: for each service its rules with the check string in force (the default, or the
``[oslo_policy] policy_file`` override with the default it replaced in a comment). ``--service`` narrows
the list, ``--overridden`` shows only the rules the file changes. Rules the file names that no service has
are listed last (a typo there is silently ignored by every service). A malformed file: exit 2 with why.
"""
from __future__ import annotations

import argparse
import json

from kilonova.common import policy
from kilonova.manage import load_conf


def register(groups) -> None:
    group = groups.add_parser("policy", help="policy rules (defaults and policy.yaml overrides)")
    actions = group.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the rules in force of every service")
    listing.add_argument("--service", action="append", choices=sorted(policy.SERVICES),
                         help="only this service (repeatable)")
    listing.add_argument("--overridden", action="store_true", help="only the rules the policy file overrides")
    listing.set_defaults(func=run)


def _quoted(text: str) -> str:
    return json.dumps(text)   # a YAML double-quoted scalar


def render(conf, services: list[str], overridden_only: bool = False) -> str:
    path = policy.policy_path(conf)
    lines = [f"# policy file: {path}" + ("" if path.is_file() else " (absent: every rule is its default)")]
    known: set[str] = set()
    overrides: dict[str, str] = {}
    for service in sorted(policy.SERVICES):
        enforcer = policy.from_conf(conf, service, policy.defaults(service))
        rows = enforcer.effective()
        known.update(row["name"] for row in rows)
        overrides = enforcer.overrides()
        if service not in services:
            continue
        shown = [row for row in rows if row["overridden"] or not overridden_only]
        lines.append(f"\n# {service}: {len(rows)} rules, {sum(row['overridden'] for row in rows)} overridden")
        for row in shown:
            note = f"  # overridden; default: {row['default']}" if row["overridden"] else ""
            lines.append(f"{_quoted(row['name'])}: {_quoted(row['check_str'])}{note}")
    unknown = sorted(set(overrides) - known)
    if unknown:
        lines.append("\n# in the policy file but no service has these rules (ignored):")
        lines.extend(f"{_quoted(name)}: {_quoted(overrides[name])}" for name in unknown)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    print(render(conf, args.service or sorted(policy.SERVICES), args.overridden))
    return 0
