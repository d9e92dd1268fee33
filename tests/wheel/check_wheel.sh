#!/usr/bin/env bash
# Installs a built wheel into fresh venvs of Python 3.9 and 3.13 (pyenv's, or
# DBR_WHEEL_PYTHONS="python3.x ...") in a temporary directory outside the
# source tree, and runs tests/wheel/smoke.py from there.
set -euo pipefail
cd "$(dirname "$0")/../.."
wheel=$(ls wheelhouse/*.whl | head -1)
pythons=${DBR_WHEEL_PYTHONS:-"$(ls -d "$HOME"/.pyenv/versions/3.9*/bin/python3.9 2>/dev/null | head -1) $(ls -d "$HOME"/.pyenv/versions/3.13*/bin/python3.13 2>/dev/null | head -1)"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp tests/wheel/smoke.py "$work/"
# A small JPEG for the smoke test (the fresh venvs have no encoder).
.venv/bin/python -c "
import numpy as np; from PIL import Image
ramp = np.tile(np.linspace(0, 252, 64).astype(np.uint8), (48, 1))
Image.fromarray(np.dstack([ramp, ramp[::-1], ramp // 2])).save('$work/smoke.jpg', quality=95)"
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
