"""pytest setup: import dareblopy from this checkout, against the libdbr that
`make build` produced (the Makefile also exports DAREBLOPY_LIBDBR)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
_built = os.path.join(ROOT, "build", "libdbr", "libdbr.so")
if "DAREBLOPY_LIBDBR" not in os.environ and os.path.exists(_built):
    os.environ["DAREBLOPY_LIBDBR"] = _built
