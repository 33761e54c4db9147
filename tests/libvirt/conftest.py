"""What every real-guest module shares: the machine prepared for real guests, and the guest built."""
from __future__ import annotations

import fcntl

import pytest

from tests.libvirt import hostsetup


@pytest.fixture(scope="module")
def host_packages() -> None:
    """The Debian packages real-guest and dataplane tests use (ping, arping, nft, ...), installed where missing;
    skips the module where that cannot be (under the same lock as the guest's setup)."""
    try:
        hostsetup.CACHE_DIR.mkdir(parents=True, exist_ok=True)
        with open(hostsetup.CACHE_DIR / "setup.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            hostsetup.ensure_packages()
    except (hostsetup.HostSetupError, OSError) as exc:
        pytest.skip(f"cannot install the host's packages here: {exc}")


@pytest.fixture(scope="module")
def guest() -> hostsetup.Guest:
    """hostsetup's tiny guest (the machine set up for it first); skips the module where that cannot be.

    Real-guest modules run on both xdist workers: one process at a time sets the machine up (two apt-gets,
    two libvirtds starting, or two guest builds renaming over each other would fail)."""
    try:
        hostsetup.CACHE_DIR.mkdir(parents=True, exist_ok=True)
        with open(hostsetup.CACHE_DIR / "setup.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return hostsetup.prepare()
    except (hostsetup.HostSetupError, OSError) as exc:
        pytest.skip(f"cannot run real guests here: {exc}")
