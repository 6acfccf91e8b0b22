"""The bootstrap's GitHub side, with `pulumi-github`: the repository's environments, what each
holds (variables, never secrets), who must approve a deployment, which branch may deploy, the
ruleset on the default branch, and the Actions setting that lets the promote and rollback
workflows open pull requests. The provider reads its token from GITHUB_TOKEN (`gh auth token`):
it is never an input.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_github as gh

from ftops.bootstrap.settings import CANARY_ENVIRONMENT, READ_ONLY_ENVIRONMENTS, Bootstrap

# The GitHub Actions app: a required check must be posted by it, not by any app that names a
# status after the job.
GITHUB_ACTIONS_APP_ID = 15368
VARIABLES = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_SUBSCRIPTION_ID",
    "PULUMI_BACKEND_URL",
    "FTOPS_RUNNER",
)


class GitHubRepository(pulumi.ComponentResource):
    def __init__(
        self,
        settings: Bootstrap,
        client_ids: Mapping[str, pulumi.Input[str]],
        backend_url: str,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """`client_ids`: GitHub environment -> the client id of the identity federated to it."""
        super().__init__("ftops:bootstrap:GitHubRepository", settings.github.repository, None, opts)
        repo, spec = settings.github.repository, settings.github
        provider = gh.Provider("github", owner=spec.owner, opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        for env in [*settings.environments, *READ_ONLY_ENVIRONMENTS, CANARY_ENVIRONMENT]:
            deploys = env in settings.environments
            # The canary's identity writes (audit log, evidence): like a deploying one, only the
            # default branch reaches it; no reviewers (it runs nightly, unattended).
            main_only = deploys or env == CANARY_ENVIRONMENT
            reviewed = deploys and settings.reviewed(env)
            environment = gh.RepositoryEnvironment(
                f"env-{env}",
                repository=repo,
                environment=env,
                reviewers=[
                    gh.RepositoryEnvironmentReviewerArgs(
                        teams=spec.reviewers.teams, users=spec.reviewers.users
                    )
                ]
                if reviewed
                else None,
                prevent_self_review=spec.prevent_self_review if reviewed else None,
                can_admins_bypass=not reviewed,
                # Deploying environments: only the default branch (a PR branch never reaches a
                # deploying identity); preview and readonly run on PRs and schedules.
                deployment_branch_policy=gh.RepositoryEnvironmentDeploymentBranchPolicyArgs(
                    protected_branches=False, custom_branch_policies=True
                )
                if main_only
                else None,
                opts=child,
            )
            if main_only:
                gh.RepositoryEnvironmentDeploymentPolicy(
                    f"env-{env}-branch",
                    repository=repo,
                    environment=environment.environment,
                    branch_pattern=spec.branch,
                    opts=child,
                )
            values: dict[str, pulumi.Input[str]] = {
                "AZURE_CLIENT_ID": client_ids[env],
                "AZURE_TENANT_ID": settings.tenant_id,
                "AZURE_SUBSCRIPTION_ID": settings.subscription_id,
                "PULUMI_BACKEND_URL": backend_url,
                "FTOPS_RUNNER": settings.runner.label,
            }
            for name in VARIABLES:
                gh.ActionsEnvironmentVariable(
                    f"env-{env}-{name.lower().replace('_', '-')}",
                    repository=repo,
                    environment=environment.environment,
                    variable_name=name,
                    value=values[name],
                    opts=child,
                )
        gh.RepositoryRuleset(
            "default-branch",
            repository=repo,
            name=f"ftops: {spec.branch}",
            target="branch",
            enforcement="active",
            conditions=gh.RepositoryRulesetConditionsArgs(
                ref_name=gh.RepositoryRulesetConditionsRefNameArgs(
                    includes=[f"refs/heads/{spec.branch}"], excludes=[]
                )
            ),
            rules=gh.RepositoryRulesetRulesArgs(
                deletion=True,
                non_fast_forward=True,
                pull_request=gh.RepositoryRulesetRulesPullRequestArgs(
                    required_approving_review_count=spec.required_approvals,
                    dismiss_stale_reviews_on_push=True,
                    require_last_push_approval=True,
                ),
                required_status_checks=gh.RepositoryRulesetRulesRequiredStatusChecksArgs(
                    required_checks=[
                        gh.RepositoryRulesetRulesRequiredStatusChecksRequiredCheckArgs(
                            context=check, integration_id=GITHUB_ACTIONS_APP_ID
                        )
                        for check in spec.required_checks
                    ],
                    strict_required_status_checks_policy=True,
                ),
            ),
            opts=child,
        )
        # "Allow GitHub Actions to create and approve pull requests": promote and rollback open
        # their PRs with the workflow's token. The token stays read-only by default; the ruleset's
        # last-push approval keeps a bot's approval of its own PR from counting.
        gh.WorkflowRepositoryPermissions(
            "workflow-permissions",
            repository=repo,
            default_workflow_permissions="read",
            can_approve_pull_request_reviews=True,
            opts=child,
        )
        self.register_outputs({})
