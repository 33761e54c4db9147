"""Kilonova's Placement against upstream openstack-placement 16.0.0's own answers.

``upstream_answers.json.gz`` holds what upstream answered (status, headers, bodies, normalised) to 1,223
requests of ``benchmarks/placement_scenario.py`` -- the reshaper's moves, over-committed inventories,
allocation mappings, HTTP details, schema errors, secure-RBAC tokens, every write's refusals --,
recorded from a side-by-side run with ``benchmarks/placement_compare.py --record``. The first test
replays them against a real ``kilonova serve placement`` over HTTP: no upstream install needed. The
second drives upstream itself side by side when ``KILONOVA_PLACEMENT_UPSTREAM`` names its virtualenv
(``benchmarks/placement.py`` makes one: ``pip install openstack-placement==16.0.0 waitress``, ~2 min).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import placement as bench  # noqa: E402
import placement_compare as compare  # noqa: E402

RECORDING = Path(__file__).with_name("upstream_answers.json.gz")


def _report(results: list[dict]) -> list[str]:
    return [f"{r['label']}: {r['request']} [{r['version']}] " +
            "; ".join(f"{f}: upstream {r['upstream'].get(f)!r:.300} kilonova {r['kilonova'].get(f)!r:.300}"
                      for f in r["fields"])
            for r in results if r["fields"] and not compare.deliberate(r)]


def test_kilonova_answers_as_upstream_recorded(tmp_path):
    results = compare.replay(RECORDING, tmp_path)
    assert len(results) > 1000
    assert _report(results) == []
    # the deliberate differences are still what BENCHMARKS.md says, and only those
    assert {compare.deliberate(r) for r in results if r["fields"]} <= set(compare.DELIBERATE)


@pytest.mark.skipif(not os.environ.get("KILONOVA_PLACEMENT_UPSTREAM"),
                    reason="set KILONOVA_PLACEMENT_UPSTREAM to upstream's virtualenv to compare live")
def test_side_by_side_with_upstream(tmp_path):
    steps = compare.selected("rs-,oc-,map-,http-")
    (tmp_path / "up").mkdir()
    (tmp_path / "kn").mkdir()
    up_proc, up_url = bench.start_upstream(Path(os.environ["KILONOVA_PLACEMENT_UPSTREAM"]), tmp_path / "up")
    kn_proc, kn_url = bench.start_kilonova(tmp_path / "kn")
    try:
        bench.wait_up(up_url, up_proc)
        bench.wait_up(kn_url, kn_proc)
        results = compare.run(up_url, kn_url, steps)
    finally:
        for proc in (up_proc, kn_proc):
            proc.terminate()
            proc.wait(timeout=30)
    assert _report(results) == []
