"""What every real-guest module shares: the machine prepared for real guests, and the guest built."""
from __future__ import annotations

import pytest

from tests.libvirt import hostsetup


@pytest.fixture(scope="module")
def guest() -> hostsetup.Guest:
    """hostsetup's tiny guest (the machine set up for it first); skips the module where that cannot be."""
    try:
        return hostsetup.prepare()
    except hostsetup.HostSetupError as exc:
        pytest.skip(f"cannot run real guests here: {exc}")
