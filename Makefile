# A newcomer needs two commands; each sets itself up on a fresh machine (idempotent):
#   make up     the main job
#   make test   lint, type-check and test
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help up test bench clean

help:
	@echo "make up     the main job: the local stack through the Pulumi engine against the emulator (train, gate, deploy)"
	@echo "make test   ruff, mypy and pytest (what CI runs)"
	@echo "make bench  benchmarks in bench/ (figures appended to bench/RESULTS.md)"
	@echo "make clean  remove .venv and generated benchmark data (the built Pulumi CLI stays in ~/.cache/ftops)"

up:
	@bash .ci/up

test:
	@bash .ci/test

bench:
	@bash .ci/bootstrap dev,emulator,eval
	@.venv/bin/ftops engine install
	@.venv/bin/python bench/bench_validate.py
	@.venv/bin/python bench/bench_training.py
	@.venv/bin/python bench/bench_eval.py
	@.venv/bin/python bench/bench_engine.py

clean:
	rm -rf .venv bench/out
