"""Ports for the servers of one host, through the network service's API (as the service user)."""
from __future__ import annotations

import logging
import uuid
from typing import Any

from kilonova.common.clients import neutron_error
from kilonova.compute.cleanup import release_ports
from kilonova.compute.virt.driver import BuildAbort, BuildFailure

LOG = logging.getLogger(__name__)
DHCP_OWNER = "network:dhcp"


class PortBinder:
    def __init__(self, network, host: str, zone: str, dhcp: bool = False):
        self.network = network
        self.host = host
        self.zone = zone
        self.dhcp = dhcp  # this host serves DHCP to its guests (the libvirt dataplane): it has a DHCP port per network
        self._network_names: dict[str, str] = {}
        self._networks: dict[str, dict] = {}
        self._subnets: dict[str, dict] = {}
        self._dhcp_servers: dict[str, dict[str, str]] = {}

    async def _network_name(self, network_id: str) -> str:
        if network_id not in self._network_names:
            response = await self.network.get(f"/v2.0/networks/{network_id}")
            if response.status_code != 200:
                raise BuildFailure(f"Network {network_id} could not be found.")
            self._networks[network_id] = response.json()["network"]
            self._network_names[network_id] = response.json()["network"]["name"] or network_id
        return self._network_names[network_id]

    async def _dhcp_server(self, network_id: str) -> dict[str, str]:
        """This host's DHCP addresses on ``network_id``'s DHCP subnets, by subnet (Nova reads them into a subnet's
        ``dhcp_server``): the fixed IPs of its ``network:dhcp`` port, made here the first time, as Neutron's DHCP
        agent makes its port for a network it serves. {} when this host serves none or the port cannot be had."""
        if not self.dhcp:
            return {}
        if network_id not in self._dhcp_servers:
            device_id = f"dhcp{uuid.uuid5(uuid.NAMESPACE_DNS, self.host)}-{network_id}"
            response = await self.network.get("/v2.0/ports", params={"network_id": network_id, "device_id": device_id,
                                                                    "device_owner": DHCP_OWNER})
            found = response.json()["ports"] if response.status_code == 200 else []
            if not found:
                await self._network_name(network_id)
                network = self._networks.get(network_id) or {}
                subnets = [s for s in [await self._subnet(i) for i in network.get("subnets") or []]
                           if s and s.get("enable_dhcp") is not False and s.get("ip_version", 4) == 4]
                if not subnets:
                    return {}
                response = await self.network.post("/v2.0/ports", json={"port": {
                    "network_id": network_id, "project_id": network.get("project_id"), "device_id": device_id,
                    "device_owner": DHCP_OWNER, "binding:host_id": self.host, "name": f"dhcp-{self.host}",
                    "fixed_ips": [{"subnet_id": subnet["id"]} for subnet in subnets]}})
                if response.status_code != 201:
                    LOG.warning("no DHCP port on network %s for %s: %s %s", network_id, self.host,
                                response.status_code, response.text[:200])
                    return {}
                found = [response.json()["port"]]
            self._dhcp_servers[network_id] = {ip["subnet_id"]: ip["ip_address"] for ip in found[0]["fixed_ips"]}
        return self._dhcp_servers[network_id]

    def _binding(self, instance: dict) -> dict[str, Any]:
        return {"device_id": instance["uuid"], "device_owner": f"compute:{self.zone}", "binding:host_id": self.host}

    async def allocate(self, instance: dict, requested: list[dict]) -> list[dict]:
        """Create (or bind pre-created) ports; returns the instance's network_info."""
        network_info: list[dict] = []
        try:
            for request in requested:
                if request.get("port_id"):
                    response = await self.network.put(f"/v2.0/ports/{request['port_id']}",
                                                      json={"port": self._binding(instance)})
                    preexisting = True
                else:
                    port: dict[str, Any] = {"network_id": request["network_id"], "project_id": instance["project_id"],
                                            **self._binding(instance)}
                    if request.get("fixed_ip"):
                        port["fixed_ips"] = [{"ip_address": request["fixed_ip"]}]
                    if request.get("security_groups") is not None:  # else the project's default group
                        port["security_groups"] = request["security_groups"]
                    response = await self.network.post("/v2.0/ports", json={"port": port})
                    preexisting = False
                if response.status_code not in (200, 201):
                    if neutron_error(response).get("type") == "IpAddressGenerationFailure":
                        # No host can give this server an address on that network: not worth a retry.
                        raise BuildAbort("Failed to allocate the network(s) with error No fixed IP addresses "
                                         f"available for network: {request['network_id']}, not rescheduling.")
                    raise BuildFailure(f"Port allocation failed: {response.status_code} {response.text[:200]}")
                # A port made for this server has no floating IP yet; one handed in may have.
                network_info.append(await self._vif(response.json()["port"], preexisting, floating=preexisting))
        except Exception:
            await self.release(instance["uuid"], network_info)
            raise
        return network_info

    async def _subnet(self, subnet_id: str | None) -> dict | None:
        """What a dataplane and a config drive need of a subnet (cached: subnets rarely change)."""
        if not subnet_id:
            return None
        if subnet_id not in self._subnets:
            response = await self.network.get(f"/v2.0/subnets/{subnet_id}")
            if response.status_code != 200:
                return None
            subnet = response.json()["subnet"]
            self._subnets[subnet_id] = {key: subnet.get(key) for key in (
                "id", "cidr", "gateway_ip", "ip_version", "dns_nameservers", "enable_dhcp", "ipv6_ra_mode",
                "ipv6_address_mode")}
        return self._subnets[subnet_id]

    async def _floating_ips(self, port_id: str) -> dict[str, list[str]]:
        """The floating addresses of a port, by the fixed address each is associated with."""
        response = await self.network.get("/v2.0/floatingips", params={"port_id": port_id})
        if response.status_code != 200:
            LOG.warning("the floating IPs of port %s could not be read: %s", port_id, response.status_code)
            return {}
        found: dict[str, list[str]] = {}
        for fip in response.json()["floatingips"]:
            if fip.get("fixed_ip_address"):
                found.setdefault(fip["fixed_ip_address"], []).append(fip["floating_ip_address"])
        return found

    async def _vif(self, port: dict, preexisting: bool, floating: bool = True) -> dict:
        """A port as the server's network information holds it (``floating``: with its floating IPs, which
        the server's addresses show, as upstream's network info cache has them)."""
        fixed_ips = port.get("fixed_ips", [])
        subnets = []
        dhcp = await self._dhcp_server(port["network_id"]) if fixed_ips else {}
        for subnet_id in dict.fromkeys(ip.get("subnet_id") for ip in fixed_ips):
            subnet = await self._subnet(subnet_id)
            if subnet is not None:
                subnets.append({**subnet, "dhcp_server": dhcp[subnet_id]} if subnet_id in dhcp else subnet)
        floating_ips = await self._floating_ips(port["id"]) if floating else {}
        return {"port_id": port["id"], "network_id": port["network_id"], "mac_address": port["mac_address"],
                "network_label": await self._network_name(port["network_id"]), "preexisting": preexisting,
                "fixed_ips": [{"ip_address": ip["ip_address"], "subnet_id": ip.get("subnet_id"),
                               "version": 6 if ":" in ip["ip_address"] else 4,
                               "floating_ips": floating_ips.get(ip["ip_address"], [])} for ip in fixed_ips],
                "subnets": subnets}

    async def security_group_names(self, ports: list[dict]) -> list[str] | None:
        """The names of the groups ``ports`` are in (None: the network service could not say)."""
        ids = list(dict.fromkeys(g for port in ports for g in port.get("security_groups") or []))
        if not ids:
            return []
        response = await self.network.get("/v2.0/security-groups", params={"id": ids, "fields": ["id", "name"]})
        if response.status_code != 200:
            return None
        names = {group["id"]: group["name"] or group["id"] for group in response.json()["security_groups"]}
        return list(dict.fromkeys(names[g] for g in ids if g in names))

    async def release(self, instance_uuid: str, network_info: list[dict]) -> None:
        await release_ports(self.network, instance_uuid, network_info)
