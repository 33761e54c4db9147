"""Kilonova's Placement and upstream openstack-placement 16.0.0, driven side by side with the same requests.

    .venv/bin/python benchmarks/placement_compare.py [--show N] [--only PREFIX,...] [--json FILE]
    .venv/bin/python benchmarks/placement_compare.py --only rs-,oc- --record tests/placement_db/upstream_answers.json.gz
    .venv/bin/python benchmarks/placement_compare.py --replay tests/placement_db/upstream_answers.json.gz

Both servers are started as ``benchmarks/placement.py`` starts them (upstream from PyPI into its own
virtualenv, on waitress with noauth2; Kilonova as ``kilonova serve placement``), each on a fresh SQLite
database, at the same time. Every request of ``placement_scenario.steps()`` (every route, every
microversion from 1.0 to 1.39, error paths, reshapes, secure-RBAC tokens; 3,033) goes to upstream
and then to Kilonova, and the two answers are compared after normalising what must differ:

* request ids, the servers' base URLs, dates (``last-modified`` is compared by presence only);
* uuids neither side was given (a provider created without one, upstream's in some errors);
* list order (Placement orders no list; upstream's order is the database's);
* transport headers (date, server, content-length, connection).

Compared: the status, ``content-type``, ``location``, ``cache-control``, ``last-modified`` (present or
not), ``allow``, ``openstack-api-version``, ``vary``, the names of all other headers but the transport's,
and the body (JSON parsed, text as is).
Differences documented as deliberate in BENCHMARKS.md are listed in ``DELIBERATE`` and counted apart.
Exit status 1 when any other difference is found.

``--record`` keeps upstream's (normalised) answers; ``--replay`` then runs Kilonova alone against them,
which is what tests/placement_db/test_placement_upstream_answers.py does (no upstream install needed).
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import placement as bench  # noqa: E402  (benchmarks/placement.py: server start-up)
import placement_scenario as scenario  # noqa: E402

HEADERS = ("content-type", "location", "cache-control", "allow", "openstack-api-version", "vary")
PRESENCE_ONLY = ("last-modified",)
TRANSPORT = {"date", "server", "content-length", "connection", "transfer-encoding", "keep-alive"}
_REQ_ID = re.compile(r"req-[0-9a-f-]{36}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# Differences deliberate and documented (BENCHMARKS.md, "Placement"): why -> test on (step, upstream's answer).
DELIBERATE = {
    "upstream's 409 for a duplicate inventory quotes its SQL error (Kilonova names the class and provider)":
        lambda step, up: "UNIQUE constraint failed: inventories" in json.dumps(up.get("body")),
    "a claim naming a missing provider leaves an empty consumer at generation 0 upstream (not copied)":
        lambda step, up: step["label"] == "alloc-missing-provider-leftover",
    "NaN and Infinity are malformed JSON here (upstream's json reads them; as an allocation ratio they pass its "
    "schema)": lambda step, up: step["body"] is not None and ("NaN" in step["body"] or "Infinity" in step["body"]),
    "upstream counts an amount twice when a group is split over a tree and a sharing provider or over two "
    "providers (a candidate asking more than the query, not copied)":
        lambda step, up: _inflated(step["request"], up),
    "when the unsuffixed group is served by sharing providers alone with other groups, upstream pairs it "
    "with one anchored tree (Python's set order); Kilonova with every anchored tree":
        lambda step, up: _more_with_sharing(up, step["kilonova"]),
    "upstream lists a message's groups in set order": lambda step, up: _same_but_list_order(up, step["kilonova"]),
    "which candidates a limit keeps: upstream's order is a Python set's, which the hash seed changes per process":
        lambda step, up: "limit=" in step["request"] and _same_count(up, step["kilonova"]),
}


def _requested(request: str) -> dict[str, int]:
    """What a candidates query asks for in all, by class (its groups summed)."""
    totals: dict[str, int] = {}
    for pair in request.split("?", 1)[-1].split("&"):
        key, _, value = pair.partition("=")
        if key.startswith("resources"):
            for item in filter(None, value.split(",")):
                rc, _, amount = item.partition(":")
                if amount.isdigit():
                    totals[rc] = totals.get(rc, 0) + int(amount)
    return totals


def _candidates(answer: dict) -> list[dict] | None:
    body = answer.get("body")
    if answer["status"] != 200 or not isinstance(body, dict) or "allocation_requests" not in body:
        return None
    return body["allocation_requests"]


def _inflated(request: str, up: dict) -> bool:
    """An upstream candidate allocating more of a class than the whole query asks for."""
    candidates = _candidates(up)
    if not candidates or "/allocation_candidates" not in request:
        return False
    wanted = _requested(request)
    for candidate in candidates:
        allocations = candidate["allocations"]
        rows = allocations.values() if isinstance(allocations, dict) else allocations
        given: dict[str, int] = {}
        for row in rows:
            for rc, amount in row["resources"].items():
                given[rc] = given.get(rc, 0) + amount
        if any(amount > wanted.get(rc, 0) for rc, amount in given.items()):
            return True
    return False


def _more_with_sharing(up: dict, kn: dict) -> bool:
    """Kilonova's candidates are upstream's and more, each extra one using a sharing provider."""
    ours, theirs = _candidates(kn), _candidates(up)
    if ours is None or theirs is None:
        return False
    sharing = {rp for rp, summary in kn["body"]["provider_summaries"].items()
               if "MISC_SHARES_VIA_AGGREGATE" in summary.get("traits", [])}
    extra = [c for c in ours if c not in theirs]
    return bool(extra) and all(c in ours for c in theirs) and all(
        sharing & set(c["allocations"]) for c in extra)


_LIST = re.compile(r"\[('[^'\]]*'(?:, '[^'\]]*')*)\]")   # a Python list of strings in a message


def _same_but_list_order(a: dict, b: dict) -> bool:
    """Two texts the same but for the order of a bracketed list."""
    def key(text):
        return _LIST.sub(lambda m: "[" + ", ".join(sorted(m.group(1).split(", "))) + "]", text)
    ta, tb = json.dumps(a.get("body")), json.dumps(b.get("body"))
    return ta != tb and key(ta) == key(tb) and a["status"] == b["status"]


def _same_count(a: dict, b: dict) -> bool:
    """Two 200s with as many allocation requests."""
    if a["status"] != 200 or b["status"] != 200:
        return False
    return len(a["body"]["allocation_requests"]) == len(b["body"]["allocation_requests"])


def deliberate(result: dict) -> str | None:
    return next((why for why, test in DELIBERATE.items() if test(result, result["upstream"])), None)


class Normaliser:
    """Makes one server's answers comparable with the other's (one instance per server)."""

    def __init__(self, base_url: str, known: set[str]):
        self.base_url = base_url
        self.known = known

    def text(self, value: str) -> str:
        value = value.replace(self.base_url, "<base>")
        value = _REQ_ID.sub("<request-id>", value)
        return _UUID.sub(self._uuid, value)

    def _uuid(self, match: re.Match) -> str:
        value = match.group(0)
        return value if value in self.known else "<uuid>"

    def value(self, data):
        if isinstance(data, dict):
            return {self.text(k): (("<request-id>" if k == "request_id" else self.value(v))) for k, v in data.items()}
        if isinstance(data, list):
            items = [self.value(v) for v in data]
            return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
        if isinstance(data, str):
            return self.text(data)
        return data

    def response(self, response: httpx.Response) -> dict:
        out = {"status": response.status_code}
        for name in HEADERS:
            if name in response.headers:
                out[name] = self.text(response.headers[name])
        for name in PRESENCE_ONLY:
            out[name] = name in response.headers
        out["header names"] = sorted(set(response.headers) - TRANSPORT)
        try:
            out["body"] = self.value(response.json()) if response.content else ""
        except ValueError:
            out["body"] = self.text(response.text)
        return out


def send(client: httpx.Client, step: scenario.Step) -> httpx.Response:
    return client.request(step.method, step.path, headers=step.headers, content=step.content)


def run(upstream_url: str | None, kilonova_url: str, steps: list[scenario.Step],
        recorded: list[dict] | None = None) -> list[dict]:
    """Each step to upstream (or its answer ``recorded`` from an earlier run) and to Kilonova, compared."""
    known = scenario.known_uuids()
    norm = {"upstream": Normaliser(upstream_url or "", known), "kilonova": Normaliser(kilonova_url, known)}
    results = []
    with httpx.Client(base_url=upstream_url or kilonova_url, timeout=60) as up, \
            httpx.Client(base_url=kilonova_url, timeout=60) as kn:
        for index, step in enumerate(steps):
            if recorded is None:
                a = norm["upstream"].response(send(up, step))
            else:
                if recorded[index]["label"] != step.label:
                    raise RuntimeError(f"step {index}: {step.label}, recorded {recorded[index]['label']}")
                a = recorded[index]["upstream"]
            b = norm["kilonova"].response(send(kn, step))
            fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            results.append({"label": step.label, "request": f"{step.method} {step.path}",
                            "version": step.headers.get("OpenStack-API-Version", ""),
                            "body": step.content.decode(errors="replace") if step.content else None,
                            "fields": fields, "upstream": a, "kilonova": b})
    return results


def selected(only: str) -> list[scenario.Step]:
    """The steps whose label starts with one of ``only``'s comma-separated prefixes (all when empty), and
    the setup steps they build on."""
    prefixes = tuple(p for p in only.split(",") if p) or ("",)
    return [s for s in scenario.steps() if s.label.startswith(prefixes) or s.setup]


def replay(recording: Path, workdir: Path) -> list[dict]:
    """Kilonova alone against upstream's answers recorded by ``--record`` (no upstream needed)."""
    data = json.loads(gzip.decompress(recording.read_bytes()) if recording.suffix == ".gz" else recording.read_text())
    steps = selected(data["only"])
    proc, url = bench.start_kilonova(workdir)
    try:
        bench.wait_up(url, proc)
        return run(None, url, steps, data["answers"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def summary(results: list[dict], show: int) -> int:
    differing = [r for r in results if r["fields"]]
    on_purpose = [r for r in differing if deliberate(r)]
    other = [r for r in differing if not deliberate(r)]
    for r in other[:show]:
        print(f"--- {r['label']}: {r['request']} [{r['version']}] {r['body'] or ''}")
        for field in r["fields"]:
            print(f"    {field}: upstream {json.dumps(r['upstream'].get(field))[:600]}")
            print(f"    {' ' * len(field)}  kilonova {json.dumps(r['kilonova'].get(field))[:600]}")
    print(f"{len(results)} requests; {len(other)} differ ({len(on_purpose)} more differ on purpose: "
          f"{'; '.join(sorted({deliberate(r) for r in on_purpose})) or 'none'})")
    return len(other)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, default=Path.home() / ".cache/kilonova-bench/placement-16.0.0")
    parser.add_argument("--show", type=int, default=50, help="differences printed in full")
    parser.add_argument("--only", default="", help="comma-separated label prefixes of the steps to run")
    parser.add_argument("--json", type=Path, help="write every result here")
    parser.add_argument("--record", type=Path, help="write upstream's answers here (for --replay)")
    parser.add_argument("--replay", type=Path, help="run Kilonova alone against answers recorded earlier")
    args = parser.parse_args()
    started = time.monotonic()
    if args.replay:
        with tempfile.TemporaryDirectory() as kn_dir:
            results = replay(args.replay, Path(kn_dir))
    else:
        steps = selected(args.only)
        with tempfile.TemporaryDirectory() as up_dir, tempfile.TemporaryDirectory() as kn_dir:
            up_proc, up_url = bench.start_upstream(args.venv, Path(up_dir))
            kn_proc, kn_url = bench.start_kilonova(Path(kn_dir))
            try:
                bench.wait_up(up_url, up_proc)
                bench.wait_up(kn_url, kn_proc)
                started = time.monotonic()
                results = run(up_url, kn_url, steps)
            finally:
                for proc in (up_proc, kn_proc):
                    proc.terminate()
                    proc.wait(timeout=30)
    print(f"({time.monotonic() - started:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.record:
        answers = [{"label": r["label"], "upstream": r["upstream"]} for r in results]
        text = json.dumps({"upstream": "openstack-placement 16.0.0", "only": args.only, "answers": answers},
                          indent=0, sort_keys=True) + "\n"
        if args.record.suffix == ".gz":
            args.record.write_bytes(gzip.compress(text.encode(), mtime=0))
        else:
            args.record.write_text(text)
    return 1 if summary(results, args.show) else 0


if __name__ == "__main__":
    sys.exit(main())
