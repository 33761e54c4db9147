"""The scheduler's shared database reads: concurrent requests share a read, none gets data older than itself."""
import asyncio

import pytest

from kilonova.compute.scheduler.host_cache import FreshRead


async def settle():
    """Let every task that can run, run."""
    for _ in range(10):
        await asyncio.sleep(0)


class SlowSource:
    """A read that takes until the test releases it; returns how many reads have started."""

    def __init__(self):
        self.started = 0
        self.release = asyncio.Event()
        self.fail = False

    async def read(self):
        self.started += 1
        number = self.started
        await self.release.wait()
        if self.fail:
            raise RuntimeError("database went away")
        return number


async def test_sequential_calls_read_each_time():
    source = SlowSource()
    source.release.set()
    reader = FreshRead(source.read)
    assert [await reader.get() for _ in range(3)] == [1, 2, 3]


async def test_callers_arriving_during_a_read_share_the_next_one():
    source = SlowSource()
    reader = FreshRead(source.read)
    first = asyncio.ensure_future(reader.get())
    await settle()
    assert source.started == 1
    # these arrive after read 1 began: its data may predate them, so they all wait for read 2
    later = [asyncio.ensure_future(reader.get()) for _ in range(20)]
    await settle()
    source.release.set()
    assert await first == 1
    assert await asyncio.gather(*later) == [2] * 20
    assert source.started == 2 and reader.reads == 2


async def test_a_caller_that_gives_up_does_not_cancel_the_shared_read():
    source = SlowSource()
    reader = FreshRead(source.read)
    first = asyncio.ensure_future(reader.get())
    await settle()
    impatient = asyncio.ensure_future(reader.get())
    patient = asyncio.ensure_future(reader.get())
    await settle()
    impatient.cancel()
    await settle()
    source.release.set()
    assert await first == 1
    assert await patient == 2
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_a_failed_read_fails_its_callers_and_the_next_call_reads_again():
    source = SlowSource()
    source.fail = True
    reader = FreshRead(source.read)
    waiting = [asyncio.ensure_future(reader.get()) for _ in range(3)]
    await settle()
    source.release.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    source.fail = False
    assert await reader.get() == source.started


# ---------------------------------------------------------------- spreading concurrent requests over equal hosts

def test_shuffle_best_same_weighed_hosts_spreads_over_equal_hosts_only(tmp_path):
    from kilonova.compute.scheduler.host_state import HostState
    from kilonova.compute.scheduler.manager import SchedulerManager
    from kilonova.config import Config

    def host(name, free_ram):
        return HostState(uuid=name, host=name, nodename=name, cell_uuid="c", availability_zone="nova",
                         service_up=True, service_disabled=False,
                         capacity={"MEMORY_MB": 4096, "VCPU": 8}, used={"MEMORY_MB": 4096 - free_ram, "VCPU": 0})

    hosts = [host(f"empty{i}", 4096) for i in range(10)] + [host("busy", 1024)]
    conf = Config.load(state_dir=tmp_path)
    fixed = SchedulerManager(conf, placement=None, cells=None)
    assert {fixed._order(hosts, {})[0].host for _ in range(50)} == {"empty0"}  # the default: Nova's
    conf.set("filter_scheduler", "shuffle_best_same_weighed_hosts", "true")
    shuffled = SchedulerManager(conf, placement=None, cells=None)
    firsts = {shuffled._order(hosts, {})[0].host for _ in range(200)}
    assert len(firsts) > 5 and "busy" not in firsts
    assert shuffled._order(hosts, {})[-1].host == "busy"
