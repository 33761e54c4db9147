"""CPU per policy check on the shared engine (kilonova/common/policy.py), for the compute API's hot rules.

Prints, per rule, microseconds per check: ``first`` (a rule, token and target never seen: a full oslo.policy
evaluation), ``repeated`` (seen before: the remembered decision) and ``unpatched`` (oslo.policy's own
evaluation, which inspects each check's signature every time; what the engine avoids).

    .venv/bin/python benchmarks/policy_checks.py [--checks 20000] [--runs 5]
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from oslo_policy import _checks  # noqa: E402

from kilonova.common import policy  # noqa: E402
from kilonova.common.context import RequestContext  # noqa: E402
from kilonova.compute import policies  # noqa: E402

MEMBER = RequestContext(user_id="me", project_id="p" * 32, roles=["member", "reader"])
ADMIN = RequestContext(user_id="admin", project_id="q" * 32, roles=["admin", "manager", "member", "reader"])
CASES = [("os_compute_api:servers:show", MEMBER), ("os_compute_api:servers:create", MEMBER),
         ("os_compute_api:servers:detail", ADMIN), ("os_compute_api:os-hypervisors:list", MEMBER)]
_RUNS = itertools.count()


def per_check(enforcer, rule: str, ctx: RequestContext, checks: int, distinct: bool) -> float:
    run = next(_RUNS)
    targets = [{"project_id": "p" * 32, "user_id": f"u{run}-{i}" if distinct else "me"} for i in range(checks)]
    started = time.process_time()
    for target in targets:
        enforcer.authorize(rule, target, ctx)
    return (time.process_time() - started) / checks * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    enforcer = policy.Enforcer("compute", policies.RULES)
    print(f"{'rule':42} {'first':>14} {'repeated':>14} {'unpatched':>14}   (us of CPU a check: min / median)")
    patched = _checks._check
    for rule, ctx in CASES:
        row = []
        for distinct, unpatch in ((True, False), (False, False), (True, True)):
            _checks._check = policy._original_check if unpatch else patched
            times = [per_check(enforcer, rule, ctx, args.checks // (10 if unpatch else 1), distinct)
                     for _ in range(args.runs)]
            row.append(f"{min(times):6.1f} / {statistics.median(times):5.1f}")
        _checks._check = patched
        print(f"{rule:42} {row[0]:>14} {row[1]:>14} {row[2]:>14}")


if __name__ == "__main__":
    main()
