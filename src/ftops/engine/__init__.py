"""The Pulumi engine, driven through `pulumi.automation`: find or build the CLI, run the stack
program inline (up, preview, refresh, destroy), report its events, recover from a crashed update."""
