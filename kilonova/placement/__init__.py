"""Placement: the inventory and allocation service (upstream openstack-placement's API)."""
