#!/bin/bash
# Run the CPU-dependent checks from prebuilt binaries, on a machine that may have no Rust
# toolchain (a lent machine with more cores or other instructions): the CPU's name and flags,
# the forced-dispatch and golden tests (each instruction set the CPU has, against the i64
# oracle; a SKIPPED line names each one it lacks), then VGG8B and GEMM thread scaling.
#
#   make cpu-check-bins            # here: build and strip the binaries into target/cpu-check
#   bash scripts/cpu_check.sh      # there (or here), from the repository root
#
# The tests find their fixtures through the path they were built at (/work/main): where the
# repository lies elsewhere, that path is linked to it.
set -u
cd "$(dirname "$0")/.."
B=${1:-target/cpu-check}
if [ ! -x "$B/bench_cnn" ]; then
  echo "no binaries in $B: run 'make cpu-check-bins' first" >&2
  exit 2
fi
built_at=$(cat "$B/BUILT_AT")
if [ "$PWD" != "$built_at" ] && [ ! -e "$built_at" ]; then
  mkdir -p "$(dirname "$built_at")" && ln -s "$PWD" "$built_at"
fi
echo "== CPU"
lscpu | grep -E 'Model name|^CPU\(s\)|Thread\(s\)|Socket|L2|L3'
echo -n "flags: "
grep -o -w 'avx2\|avx512_vnni\|avx_vnni\|amx_int8\|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' '
echo
status=0
for t in kernel_paths sparse_grad golden_cnn golden_mlp determinism cnn_layers data_parallel; do
  echo "== test $t"
  start=$SECONDS
  out=$(timeout 300 "$B/$t" --test-threads 4 --nocapture 2>&1) || status=1
  echo "$out" | grep -E 'SKIPPED|warning|^test result|FAILED|panicked' | sort | uniq -c
  echo "   ($t: $((SECONDS - start)) s)"
done
echo "== VGG8B step and inference (bench_cnn, trained-size weights) by threads"
for n in 1 2 4 8 16 32; do
  [ "$n" -gt "$(nproc)" ] && break
  echo -n "threads $n: "
  RAYON_NUM_THREADS=$n timeout 120 "$B/bench_cnn" --steps 3 --infer 256 \
    | grep -E 'training|inference|products' | tr '\n' ' '
  echo
done
echo "== GEMM 50176x1152x256 (VGG8B block 2) by threads"
for n in $(printf '%s\n' 1 2 "$(nproc)" | sort -nu); do
  echo -n "threads $n: "
  RAYON_NUM_THREADS=$n timeout 120 "$B/gemm_speed" 50176 1152 256 3
done
exit $status
