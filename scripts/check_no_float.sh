#!/usr/bin/env bash
# Integer purity, proven on machine code (docs/algorithm.md §9): disassemble and fail on any
# floating-point instruction or soft-float helper.
#
#   check_no_float.sh host          build nitro-core without std for the host (x86-64, release) and
#                                   scan every object in its .rlib — nitro-core's own functions and
#                                   every generic (ndarray, core, …) it instantiates
#   check_no_float.sh arm ELF       scan an Arm (Thumb) firmware ELF (the whole linked image)
#   check_no_float.sh riscv ELF     scan a RISC-V firmware ELF (the whole linked image)
#   check_no_float.sh x86 FILE      scan one x86-64 object/archive/ELF
#   check_no_float.sh selftest      prove the x86 scan detects a float (a one-line f32 function)
#
# Caveat: a generic function shows up only where it is instantiated; the rlib holds what the
# crate's own non-generic code instantiates, and the firmware holds what it actually uses.
set -euo pipefail
if [[ -n "${2:-}" ]]; then set -- "$1" "$(realpath "$2")"; fi   # paths are relative to the caller
cd "$(dirname "$0")/.."

# Float arithmetic / conversion / comparison mnemonics, Intel syntax. Deliberately *not* listed:
# moves and bitwise ops on xmm (movaps, xorps, pshufd, …), which compilers use for integers too.
X86_RE='^(v?(add|sub|mul|div|min|max|sqrt|round|cmp)(ss|sd|ps|pd)|v?(rcp|rsqrt)(14|28)?(ss|sd|ps|pd)|v?u?comis[sd]|v?cvt[a-z0-9]*|vfn?m(add|sub|addsub|subadd)[0-9a-z]*|v?h(add|sub)p[sd]|v?addsubp[sd]|v?dpp[sd]|f(ld|ild|st|stp|ist|istp|isttp|add|addp|iadd|sub|subp|subr|subrp|isub|mul|mulp|imul|div|divp|divr|divrp|idiv|sqrt|chs|abs|com|comp|compp|ucom|ucomp|ucompp|comi|comip|ucomi|ucomip|rndint|scale|prem|prem1|sin|cos|sincos|ptan|patan|2xm1|yl2x|yl2xp1|ld1|ldz|ldpi))$'
# Arm VFP/Helium: any data-processing instruction with a floating-point type, every conversion,
# fused multiply-adds; soft-float helpers (AEABI and libgcc names).
ARM_RE='^(v[a-z0-9]+\.(f16|f32|f64)(\.[a-z0-9]+)?|vcvt[a-z]*(\..*)?|vfn?m[as](\..*)?|vrint[a-z]*(\..*)?)$'
# RISC-V F/D/Q/Zfh: every instruction of the floating-point extensions starts with f (fadd.s,
# flw, fmv.x.w, fcvt.w.s, …; the integer ISA has only fence/fence.i), compressed loads/stores c.f*.
RISCV_RE='^(f(add|sub|mul|div|sqrt|min|max|n?madd|n?msub|sgnjn?x?|cvt|mv|eq|lt|le|class|l[whdq]|s[whdq])(\.[a-z0-9.]+)?|c\.f(l|s)[wd](sp)?)$'
SOFT_RE='__aeabi_[fd][a-z0-9]*|__(add|sub|mul|div|neg|pow)[sdtx]f[0-9]|__(float|fix)[a-z]*[sdt]f[a-z]*|__(extend|trunc)[a-z]*f[0-9]|__(eq|ne|lt|le|gt|ge|un|cmp)[sdt]f2'

# Nothing is tolerated: the safetensors/JSON persistence layer (whose JSON number parser has
# float code) is a `std`-only module, so the no_std object checked here contains no JSON parser.
# ALLOW_RE may name functions to tolerate while investigating a failure (default: none).
ALLOW_RE=${ALLOW_RE-''}

scan() { # $1 = disassembly file, $2 = mnemonic regex, $3 = label, $4 = allowed-function regex
  local hits allowed=""
  if [[ -n "${4:-}" ]]; then
    allowed=$(awk -v re="$2" -v allow="$4" '
      /^[0-9a-f]+ <.*>:$/ { fn = substr($0, index($0, "<")); next }
      /^ *[0-9a-f]+:[ \t]/ {
        ins = $0; sub(/^ *[0-9a-f]+:[ \t]+/, "", ins); gsub(/\t/, " ", ins); split(ins, w, / +/)
        if (w[1] ~ re && fn ~ allow) { n[fn]++ }
      }
      END { for (f in n) print "  " n[f] " in " f }' "$1")
  fi
  hits=$(awk -v re="$2" -v allow="${4:-^\$NEVER}" '
    /^[0-9a-f]+ <.*>:$/ { fn = substr($0, index($0, "<")); next }
    /^ *[0-9a-f]+:[ \t]/ {
      ins = $0; sub(/^ *[0-9a-f]+:[ \t]+/, "", ins); gsub(/\t/, " ", ins); split(ins, w, / +/)
      if (w[1] ~ re && fn !~ allow) { print fn "  " ins; c++ }
    }
    END { exit 0 }' "$1" | sort | uniq -c | sort -rn | head -40)
  local calls
  calls=$(grep -Eo "$SOFT_RE" "$1" | sort | uniq -c | head -20 || true)
  if [[ -n "$hits" || -n "$calls" ]]; then
    echo "FLOAT FOUND in $3:"
    [[ -n "$hits" ]] && echo "$hits"
    [[ -n "$calls" ]] && echo "soft-float helpers:" && echo "$calls"
    return 1
  fi
  if [[ -n "$allowed" ]]; then
    echo "tolerated (ALLOW_RE='$4', JSON metadata parsing, not engine arithmetic):"
    echo "$allowed"
  fi
  echo "integer purity OK: $3 ($(grep -cE '^ *[0-9a-f]+:[[:space:]]' "$1") instructions, $(grep -cE '^[0-9a-f]+ <' "$1") functions, no float instruction or soft-float helper)"
}

x86() { # $1 = file, $2 = label, $3 = allowed-function regex
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' RETURN
  objdump -d -M intel --no-show-raw-insn -C "$1" > "$tmp/dis" 2>/dev/null || {
    echo "objdump failed on $1"; return 2; }
  nm -C "$1" 2>/dev/null | grep -E "$SOFT_RE" >> "$tmp/dis" || true
  scan "$tmp/dis" "$X86_RE" "$2" "${3:-}"
}

arm() {
  local tmp dump; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' RETURN
  dump=$(command -v llvm-objdump-16 || command -v llvm-objdump || command -v arm-none-eabi-objdump)
  "$dump" -d --no-show-raw-insn -C "$1" > "$tmp/dis"
  (command -v llvm-nm-16 >/dev/null && llvm-nm-16 "$1" || arm-none-eabi-nm "$1") 2>/dev/null \
    | grep -E "$SOFT_RE" >> "$tmp/dis" || true
  scan "$tmp/dis" "$ARM_RE" "$2"
}

riscv() {
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' RETURN
  llvm-objdump-16 -d --no-show-raw-insn -C "$1" > "$tmp/dis"
  llvm-nm-16 "$1" 2>/dev/null | grep -E "$SOFT_RE" >> "$tmp/dis" || true
  scan "$tmp/dis" "$RISCV_RE" "$2"
}

case "${1:-}" in
  host)
    rlib=$(cargo build -p nitro-core --no-default-features --release --message-format=json 2>/dev/null \
      | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="nitro_core":
        print(next(f for f in m["filenames"] if f.endswith(".rlib")))')
    [[ -n "$rlib" ]] || { echo "no nitro-core rlib"; exit 2; }
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && ar x "$rlib")
    objs=("$tmp"/*.o)
    [[ -e "${objs[0]}" ]] || { echo "no objects in $rlib"; exit 2; }
    ld -r -o "$tmp/all.o" "${objs[@]}"
    x86 "$tmp/all.o" "nitro-core no_std x86-64 ($(basename "$rlib"), ${#objs[@]} object files)" "$ALLOW_RE"
    ;;
  arm) arm "$2" "firmware $2 (Thumb)" ;;
  riscv) riscv "$2" "firmware $2 (RISC-V)" ;;
  x86) x86 "$2" "$2" ;;
  selftest)
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    printf '%s\n' '#[no_mangle] pub fn scale(x: f32, k: i32) -> f32 { x * k as f32 }' > "$tmp/canary.rs"
    rustc --crate-type lib --emit obj -C opt-level=2 -o "$tmp/canary.o" "$tmp/canary.rs"
    if x86 "$tmp/canary.o" "canary" > "$tmp/out"; then
      cat "$tmp/out"; echo "SELFTEST FAILED: a float function passed the check"; exit 1
    fi
    echo "selftest OK: the check rejects a float function ($(grep -Eo '(mulss|cvtsi2ss)' "$tmp/out" | sort -u | tr '\n' ' '))"
    ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
