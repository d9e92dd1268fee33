#!/usr/bin/env bash
# check_c_tests.sh ARCH   (after .ci/wheels/build ARCH)
# Runs libdbr's C tests compiled by the wheel's toolchain: the same zig
# target (old glibc, baseline CPU) and the same static libjpeg-turbo, zlib
# and lz4 as the wheel.  A foreign ARCH runs under qemu-user, through the
# exe_wrapper of the build's meson cross file (Debian's cross glibc as root).
set -euo pipefail
cd "$(dirname "$0")/../.."
arch=$1
t=$PWD/build-wheels/$arch-glibc${DBR_WHEEL_GLIBC:-2.17}
[[ -f "$t/cross.ini" ]] || { echo "no $t/cross.ini: run .ci/wheels/build $arch first" >&2; exit 1; }
export PATH=$PWD/.venv/bin:$PATH  # meson, ninja
echo "== $arch: libdbr C tests of the wheel toolchain$([[ $arch != "$(uname -m)" ]] && echo " under qemu-$arch")"
if [[ ! -f "$t/ctest/build.ninja" ]]; then
  meson setup "$t/ctest" --cross-file "$t/cross.ini" -Dpython=disabled >/dev/null
fi
ninja -C "$t/ctest" >/dev/null
meson test -C "$t/ctest" --print-errorlogs
