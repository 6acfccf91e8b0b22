"""Log Analytics for the environment, and diagnostic settings that send a resource's logs there."""

from __future__ import annotations

import pulumi
import pulumi_azure_native as an

from ftops.config.naming import Names


class Monitoring(pulumi.ComponentResource):
    workspace: an.operationalinsights.Workspace
    workspace_id: pulumi.Output[str]

    def __init__(
        self,
        names: Names,
        resource_group: pulumi.Input[str],
        location: str,
        retention_days: int,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ftops:azure:Monitoring", names.env, None, opts)
        workspace = an.operationalinsights.Workspace(
            "logs",
            resource_group_name=resource_group,
            workspace_name=names.workspace,
            location=location,
            sku=an.operationalinsights.WorkspaceSkuArgs(name="PerGB2018"),
            retention_in_days=retention_days,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.workspace = workspace
        self.workspace_id = workspace.id
        self.register_outputs({"workspace_id": self.workspace_id})


def diagnostics(
    name: str,
    resource_uri: pulumi.Input[str],
    workspace_id: pulumi.Input[str],
    metrics: str,
    parent: pulumi.Resource,
) -> an.monitor.DiagnosticSetting:
    """Every log category (the `allLogs` group includes `audit`) and the resource's metrics, in
    resource-specific tables (queryable per resource type, cheaper than AzureDiagnostics)."""
    return an.monitor.DiagnosticSetting(
        f"{name}-diagnostics",
        name="to-log-analytics",
        resource_uri=resource_uri,
        workspace_id=workspace_id,
        log_analytics_destination_type="Dedicated",
        logs=[an.monitor.DiagnosticsLogSettingsArgs(category_group="allLogs", enabled=True)],
        metrics=[an.monitor.DiagnosticsMetricSettingsArgs(category=metrics, enabled=True)],
        opts=pulumi.ResourceOptions(parent=parent),
    )
