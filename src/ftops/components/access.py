"""`Access`: least-privilege data-plane roles for the people who deploy and for CI.

Cognitive Services OpenAI Contributor on the account (uploading training data, fine-tuning and
writing deployments need it; OpenAI User cannot), Storage Blob Data Contributor on each
container (not the storage account, never the subscription). Names are deterministic GUIDs, so
a re-run after a partial failure adopts what exists instead of failing on RoleAssignmentExists.
"""

from __future__ import annotations

import pulumi
import pulumi_azure_native as an

from ftops.config.naming import Names, role_assignment_name
from ftops.config.schema import Access as AccessSpec

OPENAI_CONTRIBUTOR = "a001fd3d-188f-4b5d-821b-7da978bf7442"
BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"


def role_definition(subscription_scope: pulumi.Input[str], role: str) -> pulumi.Output[str]:
    return pulumi.Output.concat(
        subscription_scope, "/providers/Microsoft.Authorization/roleDefinitions/", role
    )


def subscription_of(resource_id: pulumi.Input[str]) -> pulumi.Output[str]:
    """`/subscriptions/<id>` of a resource id: role definitions are addressed through it."""
    return pulumi.Output.from_input(resource_id).apply(lambda i: "/".join(i.split("/")[:3]))


class Access(pulumi.ComponentResource):
    assignments: list[an.authorization.RoleAssignment]

    def __init__(
        self,
        spec: AccessSpec,
        names: Names,
        account_id: pulumi.Input[str],
        containers: dict[str, pulumi.Input[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ftops:azure:Access", names.env, None, opts)
        principals = [
            (who, principal, kind)
            for who, principal, kind in (
                ("deployer", spec.deployer_principal_id, spec.deployer_principal_type),
                ("ci", spec.ci_principal_id, "ServicePrincipal"),
            )
            if principal is not None
        ]
        subscription = subscription_of(account_id)
        grants: list[tuple[str, pulumi.Input[str], str]] = [("account", account_id, OPENAI_CONTRIBUTOR)]
        grants += [(f"container-{role}", cid, BLOB_DATA_CONTRIBUTOR) for role, cid in containers.items()]
        self.assignments = []
        for who, principal, kind in principals:
            for scope_key, scope, role in grants:
                self.assignments.append(
                    an.authorization.RoleAssignment(
                        f"{who}-{scope_key}",
                        role_assignment_name=role_assignment_name(
                            f"{names.resource_group}/{names.prefix}/{names.env}/{scope_key}", role, principal
                        ),
                        principal_id=principal,
                        principal_type=kind,
                        role_definition_id=role_definition(subscription, role),
                        scope=scope,
                        description=f"ftops {names.env}: {who}",
                        opts=pulumi.ResourceOptions(parent=self),
                    )
                )
        self.register_outputs({})
