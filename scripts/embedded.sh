#!/usr/bin/env bash
# `make embedded`: the firmware (embedded/) for every microcontroller target, each image checked
# for floats, each trained under QEMU, and every target's final weights compared with the
# host's, bit for bit (the HASH lines of embedded/src/app.rs's runs).
#
#   target                          CPU                         QEMU board (why)
#   thumbv7em-none-eabihf           Cortex-M4F (has an FPU)     mps2-an386 (an M4 board)
#   thumbv7m-none-eabi              Cortex-M3, no FPU           mps2-an385 (an M3 board)
#   thumbv6m-none-eabi              Cortex-M0+: no FPU, no      mps2-an385: QEMU has no M0 board
#                                   divide, no DSP              with RAM for this; ARMv6-M is a
#                                                               subset of ARMv7-M, and the image
#                                                               is checked to hold only v6-M code
#   riscv32imac-unknown-none-elf    RISC-V rv32imac, no FPU     virt (generic, machine mode)
#
# QEMU runs with -icount shift=0 (one instruction per virtual ns) so that the firmware's
# instruction counts are exact. Runs go in parallel, one per core. Needs Debian's rustc-web,
# cargo-web, rust-web-src, lld-16, llvm-16, qemu-system-arm and qemu-system-misc (the Makefile
# installs them); a missing tool is an error, never a skipped target.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(thumbv7em-none-eabihf thumbv7m-none-eabi thumbv6m-none-eabi riscv32imac-unknown-none-elf)
declare -A CPU=(
  [thumbv7em-none-eabihf]="Cortex-M4F"
  [thumbv7m-none-eabi]="Cortex-M3"
  [thumbv6m-none-eabi]="Cortex-M0+"
  [riscv32imac-unknown-none-elf]="RV32IMAC"
)
declare -A QEMU=(
  [thumbv7em-none-eabihf]="qemu-system-arm -machine mps2-an386 -cpu cortex-m4"
  [thumbv7m-none-eabi]="qemu-system-arm -machine mps2-an385 -cpu cortex-m3"
  [thumbv6m-none-eabi]="qemu-system-arm -machine mps2-an385 -cpu cortex-m3"
  [riscv32imac-unknown-none-elf]="qemu-system-riscv32 -machine virt -bios none"
)
# A typical part's clock, for the labelled estimate of milliseconds per step (MHz).
declare -A MHZ=(
  [thumbv7em-none-eabihf]=168    # e.g. STM32F407
  [thumbv7m-none-eabi]=72        # e.g. STM32F103
  [thumbv6m-none-eabi]=48        # e.g. SAMD21
  [riscv32imac-unknown-none-elf]=108   # e.g. GD32VF103
)

for tool in /usr/bin/rustc /usr/bin/cargo ld.lld-16 llvm-size-16 llvm-objdump-16 qemu-system-arm qemu-system-riscv32; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found (make embedded installs Debian's packages)"; exit 2; }
done
[[ -d /usr/lib/rustlib/src/rust/library ]] || { echo "error: rust-web-src missing (/usr/lib/rustlib/src/rust/library)"; exit 2; }

RUNS=embedded/target/runs
rm -rf "$RUNS"; mkdir -p "$RUNS"

echo "== host: the same runs with the host's engine (no_std build, one thread)"
cargo run --release -q -p nitro-core --no-default-features --example firmware_host -- embedded/data \
  > "$RUNS/host.txt"
grep -E '^(HASH|mlp:|cnn:)' "$RUNS/host.txt"

for t in "${TARGETS[@]}"; do
  echo "== $t (${CPU[$t]}): build"
  (cd embedded && PATH=/usr/bin:/bin RUSTC_BOOTSTRAP=1 cargo build --release -q --target "$t")
  elf=embedded/target/$t/release/nitrod-firmware
  llvm-size-16 "$elf"
  if [[ $t == riscv32* ]]; then
    scripts/check_no_float.sh riscv "$elf"
  else
    scripts/check_no_float.sh arm "$elf"
  fi
  if [[ $t == thumbv6m* ]]; then
    # Disassembled as ARMv6-M, an instruction that only ARMv7-M has shows as <unknown>.
    bad=$(llvm-objdump-16 -d --triple=thumbv6m-none-eabi --no-show-raw-insn "$elf" | grep -c '<unknown>' || true)
    [[ $bad == 0 ]] || { echo "error: $bad instructions outside ARMv6-M in $elf"; exit 1; }
    echo "ARMv6-M only: every instruction of $elf decodes as ARMv6-M"
  fi
done

echo "== QEMU runs (parallel, -icount shift=0)"
for t in "${TARGETS[@]}"; do
  # shellcheck disable=SC2086
  ( rc=0; timeout 1500 ${QEMU[$t]} -nographic -monitor none -serial none \
      -semihosting-config enable=on,target=native -icount shift=0 \
      -kernel "embedded/target/$t/release/nitrod-firmware" > "$RUNS/$t.txt" 2>&1 || rc=$?
    echo "$rc" > "$RUNS/$t.rc" ) &
  # At most one run per core at a time.
  while (( $(jobs -rp | wc -l) >= $(nproc) )); do wait -n || true; done
done
wait
fail=0
for t in "${TARGETS[@]}"; do
  rc=$(cat "$RUNS/$t.rc")
  echo "--- $t: exit status $rc"
  cat "$RUNS/$t.txt"
  [[ $rc == 0 ]] || fail=1
done

# One table: target × run (mlp, cnn, tune = fine-tuning) → accuracy, peak heap, .text,
# instructions per step, weights hash.
echo
echo "| target | CPU | model | test accuracy | peak heap | .text | instructions / step | est. ms / step | weights = host |"
echo "|---|---|---|---|---|---|---|---|---|"
for t in "${TARGETS[@]}"; do
  text=$(llvm-size-16 -A "embedded/target/$t/release/nitrod-firmware" | awk '$1==".text"{print $2}')
  for m in mlp cnn tune; do
    f=$RUNS/$t.txt
    acc=$(grep -E "^$m: (PASS|FAIL)" "$f" | grep -Eo 'accuracy [0-9.]+%' | cut -d' ' -f2 || true)
    heap=$(grep -E "^$m: peak heap" "$f" | grep -Eo 'peak heap [0-9]+' | cut -d' ' -f3 || true)
    insn=$(grep -E "^$m: peak heap" "$f" | grep -Eo '[0-9]+ instructions per' | cut -d' ' -f1 || true)
    batch=$(grep -E "^$m: peak heap" "$f" | grep -Eo 'batch [0-9]+' | cut -d' ' -f2 || true)
    hash=$(grep -E "^HASH $m " "$f" | cut -d' ' -f3 || true)
    host=$(grep -E "^HASH $m " "$RUNS/host.txt" | cut -d' ' -f3)
    same=no; [[ -n $hash && $hash == "$host" ]] && same="yes ($hash)"
    [[ $same == no ]] && fail=1
    est="-"; [[ -n $insn ]] && est="$(( insn / (MHZ[$t] * 1000) )) at ${MHZ[$t]} MHz"
    echo "| $t | ${CPU[$t]} | $m (batch ${batch:-?}) | ${acc:-?} | ${heap:-?} B | $text B | ${insn:-?} | $est | $same |"
  done
done
echo
echo "est. ms / step: instructions / clock, assuming one instruction per cycle (an estimate: real"
echo "parts take more cycles for loads, branches and multiplies, and flash wait states)."
if [[ $fail != 0 ]]; then echo "embedded: FAILED"; exit 1; fi
echo "embedded: every target trained, within its heap, to the host's weights bit for bit"
