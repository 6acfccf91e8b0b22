"""An environment as declared: the schema (`schema`), its files and their YAML (`files`), the
release pins (`pins`) and loading with every problem on one line each (`load`).

It sits below everything that acts on an environment, and imports only `errors`, `catalog` and
the grader registry of `evaluation`."""
