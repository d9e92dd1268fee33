#!/usr/bin/env bash
# Installs the built wheel of this machine's architecture into fresh venvs
# of Python 3.9 and 3.13 (pyenv's, or DBR_WHEEL_PYTHONS="python3.x ...") in
# a temporary directory outside the source tree, and runs
# tests/wheel/smoke.py from there.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The installed wheel must load its own libdbr, not the checkout's (make exports this).
unset DAREBLOPY_LIBDBR
wheel=$(ls wheelhouse/dareblopy-*"_$(uname -m)".whl)
pythons=${DBR_WHEEL_PYTHONS:-"$(ls -d "$HOME"/.pyenv/versions/3.9*/bin/python3.9 2>/dev/null | head -1) $(ls -d "$HOME"/.pyenv/versions/3.13*/bin/python3.13 2>/dev/null | head -1)"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp tests/wheel/smoke.py "$work/"
.venv/bin/python tests/wheel/make_smoke_jpeg.py "$work/smoke.jpg"
ran=0
for py in $pythons; do
  [[ -x "$py" ]] || continue
  ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  echo "== wheel smoke test on Python $ver: $(basename "$wheel")"
  "$py" -m venv "$work/venv-$ver"
  "$work/venv-$ver/bin/pip" install -q "$wheel"
  (cd "$work" && "$work/venv-$ver/bin/python" smoke.py)
  ran=$((ran + 1))
done
if ((ran == 0)); then echo "wheel smoke: no Python 3.9/3.13 interpreter found"; exit 1; fi
echo "wheel smoke: passed on $ran interpreters"
