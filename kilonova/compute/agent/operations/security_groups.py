"""``security_groups_changed``: the network service's word that this host's port rules must be read again."""
from __future__ import annotations

from typing import TYPE_CHECKING

from kilonova.compute.agent.operations import remote
from kilonova.compute.agent.security_groups import security_groups

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager


@remote
async def security_groups_changed(agent: ComputeManager, security_group_ids: list[str] | None = None) -> None:
    """A cast: the host's sync looks again at once (changes arriving together make one round)."""
    security_groups(agent).changed()
