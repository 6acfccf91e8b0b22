//go:build tools

// Package engine pins the Pulumi CLI that ftops builds from Pulumi's own Go modules when no CLI is
// installed: no registry ships the CLI, and `go install pkg@version` refuses pkg/v3 (its go.mod has
// replace directives), hence this wrapper module. The version lives in go.mod, nowhere else.
package engine

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
