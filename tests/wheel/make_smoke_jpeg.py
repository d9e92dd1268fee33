"""make_smoke_jpeg.py PATH: writes the small photo-like gradient JPEG that
smoke.py decodes (its venvs have no encoder, so the dev venv's Pillow makes it)."""
import sys

import numpy as np
from PIL import Image

ramp = np.tile(np.linspace(0, 252, 64).astype(np.uint8), (48, 1))
Image.fromarray(np.dstack([ramp, ramp[::-1], ramp // 2])).save(sys.argv[1], quality=95)
