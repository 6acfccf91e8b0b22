"""An environment as declared, and what follows from the declaration alone:

- `schema`: the pydantic model of `ftops:environment` and the release pins;
- `yamlfiles`: where the files are, YAML with line numbers, one line per problem;
- `pins`: every read and write of release pins;
- `load`: an environment with its pins and the promotion chain, validated;
- `naming`: the Azure names of its resources;
- `site`: where it lives (the emulator or Azure): account, audit log, evidence store;
- `gates`: its gate for a model as the request `evaluation` runs.

It sits below everything that acts on an environment; above it only `errors`, `catalog`, the
Azure edge (`Site`'s account) and `evaluation` (the grader registry and the gate request).
"""
