"""`Network`: where private endpoints live and how their names resolve.

A VNet with one subnet for private endpoints and the three private DNS zones linked to it; or,
with `network.existing_subnet_id`, somebody else's VNet (a hub), using their zones where the
environment names them and creating (and linking) only the missing ones.
"""

from __future__ import annotations

import pulumi
import pulumi_azure_native as an

from ftops.config.naming import Names
from ftops.config.schema import Network as NetworkSpec

ZONES = {
    # zone -> what resolves through it
    "privatelink.openai.azure.com": "account",  # <subdomain>.openai.azure.com
    "privatelink.cognitiveservices.azure.com": "account",  # <subdomain>.cognitiveservices.azure.com
    "privatelink.blob.core.windows.net": "blob",
    "privatelink.vaultcore.azure.net": "vault",  # the customer-managed key's vault, when ftops creates one
}
VAULT_ZONE = "privatelink.vaultcore.azure.net"


def _short(zone: str) -> str:
    return zone.split(".")[1]  # openai | cognitiveservices | blob | vaultcore


class Network(pulumi.ComponentResource):
    subnet_id: pulumi.Output[str]
    zone_ids: dict[str, pulumi.Output[str]]

    def __init__(
        self,
        spec: NetworkSpec,
        names: Names,
        resource_group: pulumi.Input[str],
        location: str,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
        key_vault: bool = False,  # resolve a key vault's private endpoint too
    ) -> None:
        super().__init__("ftops:azure:Network", names.env, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if spec.existing_subnet_id is not None:
            self.subnet_id = pulumi.Output.from_input(spec.existing_subnet_id)
            vnet_id: pulumi.Input[str] = spec.existing_subnet_id.split("/subnets/")[0]
        else:
            vnet = an.network.VirtualNetwork(
                "vnet",
                resource_group_name=resource_group,
                virtual_network_name=names.vnet,
                location=location,
                address_space=an.network.AddressSpaceArgs(
                    address_prefixes=[str(a) for a in spec.address_space]
                ),
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["subnets"]),
            )
            subnet = an.network.Subnet(
                "private-endpoints",
                resource_group_name=resource_group,
                virtual_network_name=vnet.name,
                subnet_name=names.subnet,
                address_prefix=str(spec.private_endpoint_subnet),
                # Network policies (NSG, UDR) apply to private endpoints only when enabled here.
                private_endpoint_network_policies="Enabled",
                default_outbound_access=False,
                opts=child,
            )
            self.subnet_id = subnet.id
            vnet_id = vnet.id
        self.zone_ids = {}
        for zone in ZONES:
            if zone == VAULT_ZONE and not key_vault:
                continue
            existing = spec.existing_dns_zone_ids.get(zone)  # type: ignore[call-overload]
            if existing is not None:
                self.zone_ids[zone] = pulumi.Output.from_input(existing)
                continue
            created = an.privatedns.PrivateZone(
                f"zone-{_short(zone)}",
                resource_group_name=resource_group,
                private_zone_name=zone,
                location="Global",
                tags=tags,
                opts=child,
            )
            an.privatedns.VirtualNetworkLink(
                f"link-{_short(zone)}",
                resource_group_name=resource_group,
                private_zone_name=created.name,
                virtual_network_link_name=f"{names.vnet}-link",
                virtual_network=an.privatedns.SubResourceArgs(id=vnet_id),
                registration_enabled=False,
                location="Global",
                tags=tags,
                opts=child,
            )
            self.zone_ids[zone] = created.id
        self.register_outputs({"subnet_id": self.subnet_id, "zone_ids": self.zone_ids})

    def private_endpoint(
        self,
        name: str,
        names: Names,
        resource_group: pulumi.Input[str],
        location: str,
        target_id: pulumi.Input[str],
        group: str,
        tags: dict[str, str],
        parent: pulumi.Resource,
    ) -> an.network.PrivateEndpoint:
        """A private endpoint to `target_id` with a zone group for every zone that resolves its group."""
        endpoint = an.network.PrivateEndpoint(
            f"pe-{name}",
            resource_group_name=resource_group,
            private_endpoint_name=names.private_endpoint(name),
            custom_network_interface_name=f"nic-{names.private_endpoint(name)}",
            location=location,
            subnet=an.network.SubnetArgs(id=self.subnet_id),
            private_link_service_connections=[
                an.network.PrivateLinkServiceConnectionArgs(
                    name=names.private_endpoint(name), private_link_service_id=target_id, group_ids=[group]
                )
            ],
            tags=tags,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        an.network.PrivateDnsZoneGroup(
            f"pe-{name}-dns",
            resource_group_name=resource_group,
            private_endpoint_name=endpoint.name,
            private_dns_zone_group_name="default",
            private_dns_zone_configs=[
                an.network.PrivateDnsZoneConfigArgs(name=zone.replace(".", "-"), private_dns_zone_id=zone_id)
                for zone, zone_id in self.zone_ids.items()
                if ZONES[zone] == group
            ],
            opts=pulumi.ResourceOptions(parent=endpoint),
        )
        return endpoint
