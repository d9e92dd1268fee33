#!/usr/bin/env bash
# Proves that tests/abi/check.sh guards the ABI: a library relinked from the same
# objects passes, and the same library with one dbr_* symbol removed, or
# with a public struct changed, fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${1:-build}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
archive="$build/libdbr/libdbr_internal.a"
libs=$(pkg-config --libs libjpeg zlib liblz4)

relink() {  # relink(map, out): libdbr from the same objects with another map
  cc -shared -o "$2" -Wl,-soname,libdbr.so.1 -Wl,--version-script="$1" \
     -Wl,--whole-archive "$archive" -Wl,--no-whole-archive $libs -lpthread
}

relink libdbr/libdbr.map "$work/same.so.1"
tests/abi/check.sh "$work/same.so.1" >/dev/null || { echo "abi test: control relink should pass"; exit 1; }

# 1. A removed function.
sed 's/local:/local:\n        dbr_free;   # an exact name beats the dbr_* glob/' \
  libdbr/libdbr.map > "$work/removed.map"
relink "$work/removed.map" "$work/removed.so.1"
if tests/abi/check.sh "$work/removed.so.1" > "$work/removed.log"; then
  echo "abi test: FAILED: removing dbr_free was not detected"; exit 1
fi
grep -q "dbr_free" "$work/removed.log" || { echo "abi test: report does not name dbr_free"; exit 1; }

# 2. A changed public struct (a field inserted into dbr_stat).
mkdir -p "$work/include"
sed 's/    uint64_t size;   \/\* bytes; 0 for directories/    uint64_t inserted_field;\n    uint64_t size;   \/* bytes; 0 for directories/' \
  include/dbr.h > "$work/include/dbr.h"
grep -q inserted_field "$work/include/dbr.h" || { echo "abi test: could not patch dbr_stat"; exit 1; }
cc -std=c99 -g -O1 -fPIC -shared -D_XOPEN_SOURCE=700 -D_DEFAULT_SOURCE -I"$work/include" -Ilibdbr \
   -o "$work/struct.so.1" -Wl,-soname,libdbr.so.1 -Wl,--version-script=libdbr/libdbr.map \
   libdbr/*.c $libs -lpthread
set +e
abidiff --no-added-syms --headers-dir1 include --headers-dir2 "$work/include" \
  libdbr/libdbr.abi "$work/struct.so.1" > "$work/struct.log"
status=$?
set -e
if ((status == 0)); then echo "abi test: FAILED: changing dbr_stat was not detected"; exit 1; fi
grep -q "dbr_stat" "$work/struct.log" || { echo "abi test: report does not name dbr_stat"; exit 1; }
echo "abi test: ok (unchanged relink passes; removed dbr_free and changed dbr_stat both fail)"
