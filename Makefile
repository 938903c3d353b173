# nitrod-rs — the README's commands: `make demo`, `make test`, `make bench`.
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python

.PHONY: test test-rust test-nostd lint test-python demo bench example data

## test: everything CI checks (format, lints, Rust tests, no_std build, Python tests)
test: lint test-rust test-nostd test-purity test-python

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

## test-purity: integer purity on machine code — no float instruction in nitro-core (no_std, x86-64)
test-purity:
	scripts/check_no_float.sh selftest
	scripts/check_no_float.sh host

## embedded: install the Debian toolchain if missing, build the Cortex-M4F firmware (build-std,
## lld-16), check its image for floats, and train on QEMU mps2-an386 (exit status = success)
EMB_PKGS := rustc-web cargo-web rust-web-src lld-16 llvm-16 qemu-system-arm dataset-fashion-mnist
EMB_ELF := embedded/target/thumbv7em-none-eabihf/release/nitrod-firmware
.PHONY: embedded test-purity
embedded:
	@if ! dpkg -s $(EMB_PKGS) >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends $(EMB_PKGS); fi
	$(PYTHON) embedded/gen_data.py
	cd embedded && PATH=/usr/bin:/bin RUSTC_BOOTSTRAP=1 cargo build --release
	llvm-size-16 -A $(EMB_ELF) | grep -E '^(section|\.vector_table|\.text|\.rodata|\.data|\.bss|\.uninit|Total)'
	llvm-size-16 $(EMB_ELF)
	scripts/check_no_float.sh arm $(EMB_ELF)
	timeout 900 qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic -monitor none \
	  -serial none -semihosting-config enable=on,target=native -kernel $(EMB_ELF)
