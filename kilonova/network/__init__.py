"""The network service: Neutron's v2.0 API for networks, subnets and ports, with its own IPAM."""
