"""The one-time Azure and GitHub set-up as a second Pulumi project (`bootstrap/`): identities with
OIDC subjects per GitHub environment, least-privilege roles, the state storage account, GitHub
environments, variables and rules, and a runner inside the VNet."""
