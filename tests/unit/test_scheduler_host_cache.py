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
