"""`Alerts`: Azure Monitor metric alerts on each serving deployment, an action group to tell
people, and a saved Log Analytics query for per-deployment traffic.

Metric names are those Azure Monitor lists for Microsoft.CognitiveServices/accounts ("Supported
metrics - Microsoft.CognitiveServices/accounts", learn.microsoft.com/azure/azure-monitor/reference/
supported-metrics/microsoft-cognitiveservices-accounts-metrics, generated 2025-04-16):
`AzureOpenAIRequests` (Total; dimensions ModelDeploymentName, StatusCode, ...),
`AzureOpenAITimeToResponse` (milliseconds; Average/Min/Max), `RAIRejectedRequests` (Blocked
Volume, Total; ModelDeploymentName), `TokenTransaction` (Processed Inference Tokens = prompt +
generated, Total; ModelDeploymentName) and `AzureOpenAIProvisionedManagedUtilizationV2` (percent,
for provisioned deployments). The legacy Cognitive Services metrics (`Latency`, `ServerErrors`,
`BlockedCalls`) are documented "Do not use for Azure OpenAI service" and are not used.

A metric alert has no percentiles and no ratios of two metrics: latency is the average time to
response (the saved query shows p95 from the request logs), and the 429 and content-filter rates
are counts over the window against what the deployment's capacity admits in it.
"""

from __future__ import annotations

import pulumi
import pulumi_azure_native as an

from ftops.config.alerts import rules_for
from ftops.config.naming import Names
from ftops.config.schema import Environment

NAMESPACE = "Microsoft.CognitiveServices/accounts"

# Per-deployment traffic from the request logs the diagnostic settings stream (AzureDiagnostics,
# category RequestResponse): requests, 429s, 5xx and latency percentiles per hour.
TRAFFIC_QUERY = """AzureDiagnostics
| where ResourceProvider == "MICROSOFT.COGNITIVESERVICES" and Category == "RequestResponse"
| extend deployment = tostring(parse_json(properties_s).modelDeploymentName)
| summarize requests = count(),
    throttled = countif(ResultSignature == "429"),
    server_errors = countif(toint(ResultSignature) >= 500),
    p50_ms = percentile(DurationMs, 50), p95_ms = percentile(DurationMs, 95)
    by deployment, bin(TimeGenerated, 1h)
| order by TimeGenerated desc, deployment asc"""


class Alerts(pulumi.ComponentResource):
    rules: list[an.monitor.MetricAlert]

    def __init__(
        self,
        env: Environment,
        names: Names,
        resource_group: pulumi.Input[str],
        account_id: pulumi.Input[str],
        workspace: an.operationalinsights.Workspace,
        served: dict[str, tuple[str, str, int]],  # deployment -> (model id, sku, capacity)
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ftops:azure:Alerts", names.env, None, opts)
        spec = env.alerts
        child = pulumi.ResourceOptions(parent=self)
        actions = []
        if spec.emails or spec.webhooks:
            group = an.monitor.ActionGroup(
                "action-group",
                resource_group_name=resource_group,
                action_group_name=f"ag-{names.prefix}-{names.env}",
                location="Global",
                group_short_name=f"ftops-{names.env}"[:12],  # Azure's limit: 12 characters
                enabled=True,
                email_receivers=[
                    an.monitor.MicrosoftCommonEmailReceiverArgs(
                        name=f"email-{i}", email_address=address, use_common_alert_schema=True
                    )
                    for i, address in enumerate(spec.emails)
                ],
                webhook_receivers=[
                    an.monitor.WebhookReceiverArgs(
                        name=f"webhook-{i}", service_uri=uri, use_common_alert_schema=True
                    )
                    for i, uri in enumerate(spec.webhooks)
                ],
                tags=tags,
                opts=child,
            )
            actions = [an.monitor.MetricAlertActionArgs(action_group_id=group.id)]
        self.rules = []
        for deployment, (model, sku, capacity) in served.items():
            for rule in rules_for(spec, model, sku, capacity):
                dimensions = [
                    an.monitor.MetricDimensionArgs(
                        name="ModelDeploymentName", operator="Include", values=[deployment]
                    )
                ]
                if rule.status_codes:
                    dimensions.append(
                        an.monitor.MetricDimensionArgs(
                            name="StatusCode", operator="Include", values=list(rule.status_codes)
                        )
                    )
                self.rules.append(
                    an.monitor.MetricAlert(
                        f"alert-{deployment}-{rule.kind}",
                        resource_group_name=resource_group,
                        rule_name=f"{names.account}-{deployment}-{rule.kind}",
                        location="global",
                        description=f"ftops {names.env}: deployment {deployment}: {rule.description}",
                        severity=spec.severity,
                        enabled=True,
                        scopes=[account_id],
                        evaluation_frequency="PT5M",
                        window_size=f"PT{spec.window_minutes}M",
                        target_resource_type=NAMESPACE,
                        target_resource_region=env.location,
                        auto_mitigate=True,
                        criteria=an.monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
                            odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                            all_of=[
                                an.monitor.MetricCriteriaArgs(
                                    criterion_type="StaticThresholdCriterion",
                                    name=rule.kind,
                                    metric_name=rule.metric,
                                    metric_namespace=NAMESPACE,
                                    operator="GreaterThan",
                                    threshold=rule.threshold,
                                    time_aggregation=rule.aggregation,
                                    dimensions=dimensions,
                                )
                            ],
                        ),
                        actions=actions,
                        tags=tags,
                        opts=child,
                    )
                )
        an.operationalinsights.SavedSearch(
            "traffic-query",
            resource_group_name=resource_group,
            workspace_name=workspace.name,
            saved_search_id="ftops-deployment-traffic",
            category="ftops",
            display_name=f"ftops {names.env}: traffic per deployment",
            query=TRAFFIC_QUERY,
            opts=child,
        )
        self.register_outputs({"rules": [r.name for r in self.rules]})
