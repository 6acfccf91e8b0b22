# A newcomer needs two commands; each sets itself up on a fresh machine (idempotent):
#   make up     the main job
#   make test   lint, type-check and test
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help up test bench clean

help:
	@echo "make up     the main job: check the environments and validate the example training data"
	@echo "make test   ruff, mypy and pytest (what CI runs)"
	@echo "make bench  benchmarks in bench/ (figures appended to bench/RESULTS.md)"
	@echo "make clean  remove .venv and generated benchmark data"

up:
	@bash .ci/up

test:
	@bash .ci/test

bench:
	@bash .ci/bootstrap dev,emulator,eval
	@.venv/bin/python bench/bench_validate.py
	@.venv/bin/python bench/bench_training.py
	@.venv/bin/python bench/bench_eval.py

clean:
	rm -rf .venv bench/out
