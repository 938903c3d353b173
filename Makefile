# nitrod-rs — the README's commands: `make demo`, `make test`, `make bench`.
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python

.PHONY: test test-rust test-nostd lint test-python demo bench example data

## test: everything CI checks (format, lints, Rust tests, no_std build, Python tests)
test: lint test-rust test-nostd test-python

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-rust:
	$(CARGO) test --workspace --release

test-nostd:
	$(CARGO) build -p nitro-core --no-default-features

## data: real datasets available offline on this kind of machine (idempotent)
data:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || \
	  echo "warning: could not install dataset-fashion-mnist"; fi

test-python:
	@echo "python tests: added with the Python package"

## example: the Rust training example on Fashion-MNIST (MLP2, 10 epochs)
example: data
	$(CARGO) run --release -p nitro-core --example train -- --preset mlp2 \
	  --data-dir /usr/share/datasets/fashion-mnist --epochs 10 --seed 0

demo: example

bench:
	$(CARGO) bench -p nitro-core
