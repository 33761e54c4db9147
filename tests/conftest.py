import shutil

import pytest

from tests.cloud import SHARED_CLOUD_CONFIG, new_cloud

# Modules (and packages of modules) whose tests share a deployment started for them: each stays on one worker,
# so that its deployment starts once.
_WHOLE_MODULES = "tests/distributed/"
# Modules that start one deployment per database kind (test ids end in [postgresql] or [mysql]): one unit
# of work per kind, so that the two deployments run on both workers at once.
_ONE_UNIT_PER_DATABASE = ("tests/distributed/test_processes.py",)
# Every other module is a unit of its own, the real-guest ones (tests/libvirt) too: each cloud, driver host and
# second libvirtd keeps to names, subnets, domains and files of its own, and the machine is set up for real
# guests by one process at a time (tests/libvirt/conftest.py). Tests on the machine's RabbitMQ each use vhosts
# of their own; the one that stops its broker has a node of its own.

# The units that take longest (seconds of wall time, setup included, at load ~9 on the 2-core reference machine
# with the CLIs forked from a warm process: tests/forked_cli.py; 2026-12-06 22:20-22:50 UTC), handed out first:
# a long unit that starts last would leave one worker running it alone at the end. Every unit of a minute or
# more is here; the rest follow, those with most tests first (xdist's order). Only the order counts.
# The real-guest lifecycle comes first: QEMU without KVM makes it the unit that grows most with the load
# (92 s of its test at load 2, 515 s at load 10).
_LONG_UNITS = {
    "tests/libvirt/test_real_guest.py": 300, "tests/distributed/faults": 280,
    "tests/functional/test_shelve_cli.py": 240, "tests/libvirt/test_lifecycle.py": 215,
    "tests/distributed/moves": 195, "tests/distributed/test_lifecycle_faults.py": 190,
    "tests/functional/test_soft_delete_cli.py": 175, "tests/libvirt/test_real_guest_lifecycle.py": 165,
    "tests/functional/test_live_migration_cli.py": 155, "tests/distributed/test_processes.py[mysql]": 135,
    "tests/libvirt/test_live_migration.py": 100, "tests/distributed/test_rescue_events.py": 90,
    "tests/libvirt/test_real_guest_moves.py": 90, "tests/functional/test_evacuate_cli.py": 90,
    "tests/distributed/test_cells_down.py": 90, "tests/functional/test_resize_faults.py": 90,
    "tests/distributed/test_processes.py[postgresql]": 90, "tests/distributed/test_evacuate.py": 85,
    "tests/distributed/test_multihost.py": 85, "tests/functional/test_external_events.py": 80,
    "tests/placement_db/test_placement_concurrency.py": 75, "tests/functional/test_resize_cli.py": 75,
    "tests/libvirt/test_real_guest_volumes.py": 65, "tests/distributed/test_databases.py": 60,
    "tests/functional/test_rescue_cli.py": 60, "tests/functional/test_group_placement_moves.py": 65,
}

# Units that never run at the same time on two workers (one worker may run them one after the other): the
# distributed fault package cuts the machine's PostgreSQL connections and kills processes while the moves
# package's deployment, on the same PostgreSQL, waits on deadlines of a few seconds (7 failures when they overlapped).
_APART = ({"tests/distributed/faults", "tests/distributed/moves"},)


def _apart(unit: str, running: set[str]) -> bool:
    """Whether ``unit`` may start while ``running`` run on other workers."""
    return not any(unit in group and running & (group - {unit}) for group in _APART)


def scheduling_unit(nodeid: str) -> str:
    """What one worker runs together: a whole module or package right under ``_WHOLE_MODULES``, one database's
    half of a module of ``_ONE_UNIT_PER_DATABASE``, or else the test's module (whose module-scoped cloud then
    starts on one worker only)."""
    path = nodeid.split("::", 1)[0]
    if path in _ONE_UNIT_PER_DATABASE:
        return f"{path}[{'mysql' if nodeid.endswith('[mysql]') else 'postgresql'}]"
    if path.startswith(_WHOLE_MODULES):
        return "/".join(path.split("/")[:3])  # tests/distributed/<module or package>
    return path


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """Load balancing where each module or package of ``_WHOLE_MODULES`` and each other module is one unit of
    work (one worker runs it all), the longest units handed out first.

    xdist's own ``xdist_group`` marks do not group anything under pytest 9.2 (xdist renames
    ``item._nodeid``, which pytest no longer reads), so the groups are worked out from the test ids here.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        _ordered = False

        def _split_scope(self, nodeid: str) -> str:
            return scheduling_unit(nodeid)

        def _assign_work_unit(self, node) -> None:
            """The first unit of the queue that may run beside the other workers' units (``_APART``); none
            while every unit left must wait for one of those to end (``mark_test_complete`` asks again)."""
            if not self._ordered:  # the queue is complete by the first assignment
                self._ordered = True
                units = sorted(self.workqueue.items(), key=lambda unit: -_LONG_UNITS.get(unit[0], 0))  # stable
                self.workqueue.clear()
                self.workqueue.update(units)
            running = {unit for other, work in self.assigned_work.items() if other is not node
                       for unit, tests in work.items() if not all(tests.values())}
            chosen = next((unit for unit in self.workqueue if _apart(unit, running)), None)
            if chosen is not None:
                self.workqueue.move_to_end(chosen, last=False)
                super()._assign_work_unit(node)

        def mark_test_complete(self, node, item_index: int, duration: float = 0) -> None:
            """Also give work to (or shut down) the workers waiting for a unit: the test that ended may have
            ended a unit that kept theirs waiting (``_APART``)."""
            super().mark_test_complete(node, item_index, duration)
            for other in self.nodes:
                if other is not node and self._pending_of(self.assigned_work[other]) <= 1:
                    self._reschedule(other)

        def _reschedule(self, node) -> None:
            """xdist gives a worker its next unit once 2 of its tests are left; here once 1 is: the unit then goes
            to whichever worker is free first, even after a module whose last test is long. (A worker runs a
            test once it knows the next one, so its last one waits for this assignment either way.)"""
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            if self._pending_of(self.assigned_work[node]) <= 1:
                self._assign_work_unit(node)

    return UnitScheduling(config, log)


@pytest.fixture(scope="session")
def cloud():
    """One all-in-one Kilonova for the functional tests of a session (of each xdist worker)."""
    instance = new_cloud(hosts=4, config=SHARED_CLOUD_CONFIG)
    instance.start()
    yield instance
    instance.stop()
    shutil.rmtree(instance.workdir, ignore_errors=True)


# Where each worker's time went, printed at the end of a run with xdist workers: when each worker ran out of work,
# and each long unit's worker, start and length (setup and teardown included) -- the figures ``_LONG_UNITS`` and
# the balance of the workers at the end of the suite are judged by.
_UNIT_SPANS: dict[str, list] = {}  # unit -> [worker, first start, last stop] (epoch seconds)


def pytest_runtest_logreport(report):
    node = getattr(report, "node", None)  # set on the xdist controller only
    start, stop = getattr(report, "start", None), getattr(report, "stop", None)
    if node is None or start is None or stop is None:
        return
    span = _UNIT_SPANS.setdefault(scheduling_unit(report.nodeid), [node.gateway.id, start, stop])
    span[1], span[2] = min(span[1], start), max(span[2], stop)


def pytest_terminal_summary(terminalreporter):
    if not _UNIT_SPANS:
        return
    began = min(span[1] for span in _UNIT_SPANS.values())
    clock = lambda seconds: f"{int(seconds - began) // 60}:{int(seconds - began) % 60:02d}"  # noqa: E731
    write = terminalreporter.write_line
    terminalreporter.section("time per worker and unit")
    for worker in sorted({span[0] for span in _UNIT_SPANS.values()}):
        units = sorted((span[1], span[2], unit) for unit, span in _UNIT_SPANS.items() if span[0] == worker)
        write(f"{worker}: {len(units)} units, busy {sum(b - a for a, b, _ in units):.0f} s, last one ended at "
              f"{clock(units[-1][1])} ({units[-1][2]})")
    for unit, (worker, start, stop) in sorted(_UNIT_SPANS.items(), key=lambda item: item[1][1] - item[1][2]):
        if stop - start < 45:
            break
        write(f"{stop - start:5.0f} s  {worker} {clock(start)}-{clock(stop)}  {unit}")
