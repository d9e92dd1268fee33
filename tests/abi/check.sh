#!/usr/bin/env bash
# Compares the built libdbr against the committed ABI baseline (libdbr/libdbr.abi).
#   tests/abi/check.sh [LIB]            exit 0 if the ABI is unchanged, 1 if it changed
#   tests/abi/check.sh --update [LIB]   rewrite the baseline (a deliberate release step)
# Needs abigail-tools (abidw, abidiff) and a library built with debug info
# (meson's default buildtype here is debugoptimized).
set -euo pipefail
cd "$(dirname "$0")/../.."
update=0
if [[ "${1:-}" == "--update" ]]; then update=1; shift; fi
lib="${1:-build/libdbr/libdbr.so.1}"
baseline=libdbr/libdbr.abi
if ((update)); then
  # No paths of the building machine in the committed baseline.
  abidw --no-corpus-path --no-comp-dir-path --short-locs --headers-dir include "$lib" > "$baseline"
  echo "abi: baseline rewritten from $lib ($(grep -c '<elf-symbol ' "$baseline") symbols)"
  exit 0
fi
set +e
report=$(abidiff --no-added-syms --headers-dir1 include --headers-dir2 include "$baseline" "$lib")
status=$?
set -e
if ((status != 0)); then
  echo "$report"
  echo "abi: FAILED: $lib differs from $baseline (abidiff status $status)."
  echo "     Removing or changing a dbr_* symbol or public struct breaks users; add new"
  echo "     functions in a new version node and run 'tests/abi/check.sh --update' deliberately."
  exit 1
fi
echo "abi: ok, $lib matches $baseline"
