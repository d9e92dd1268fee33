#!/usr/bin/env bash
# check_foreign_wheel.sh ARCH   (e.g. aarch64, after .ci/wheels/build ARCH)
# The wheel of a foreign architecture, installed and used: pip installs it
# with its dependencies' ARCH wheels (cffi, numpy) into a site-packages
# directory, and Debian's ARCH CPython runs tests/wheel/smoke.py against it
# under qemu-user.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The installed wheel must load its own libdbr, not the checkout's (make exports this).
unset DAREBLOPY_LIBDBR
arch=$1
declare -A debian_arch=([aarch64]=arm64 [x86_64]=amd64 [ppc64le]=ppc64el [s390x]=s390x)
root=$PWD/build-wheels/$arch-python
python=$(.ci/wheels/foreign-python "${debian_arch[$arch]}" "$root")
qemu=(qemu-"$arch"-static -L "$root")
version=$("${qemu[@]}" "$root/usr/bin/$python" -c 'import sys; print("%d%d" % sys.version_info[:2])')
wheel=$(ls wheelhouse/dareblopy-*"_$arch".whl)
echo "== $arch: wheel smoke test on Debian's $python under qemu-$arch: $(basename "$wheel")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/pip install -q --target "$work/site-packages" --only-binary=:all: --implementation cp \
  --python-version "$version" --abi "cp$version" --platform "manylinux2014_$arch" "$wheel"
.venv/bin/python tests/wheel/make_smoke_jpeg.py "$work/smoke.jpg"
cp tests/wheel/smoke.py "$work/"
# The host's ldd cannot read a foreign library: the emulated loader lists it.
(cd "$work" && PYTHONPATH="$work/site-packages" \
  DBR_SMOKE_LDD="${qemu[*]} $(ls "$root"/lib/ld-linux-*.so.*) --list" \
  "${qemu[@]}" "$root/usr/bin/$python" smoke.py)
