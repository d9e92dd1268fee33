"""Where index files derived from a data file live (TFRecord ``.idx`` files;
any other per-file index, such as a tar member index, uses the same rule).

Beside the data (``FILE<suffix>``) when that folder is writable, so the
index travels with the data; otherwise in a per-user cache directory,
because datasets often sit on read-only or shared mounts.  That directory is
``$DAREBLOPY_CACHE_DIR/index``, else ``$XDG_CACHE_HOME/dareblopy/index``,
else ``~/.cache/dareblopy/index``.  Names there carry a digest of the data's
absolute path, so equal file names in different folders never collide."""
from __future__ import annotations

import hashlib
import os
from typing import Callable, List, Optional

__all__ = ["user_cache_dir", "cached_path", "index_locations", "store_index"]


def user_cache_dir() -> str:
    """dareblopy's per-user cache directory (not created here)."""
    return os.environ.get("DAREBLOPY_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "dareblopy")


def cached_path(path, suffix: str, cache_dir: str) -> str:
    """The name of ``path``'s index inside ``cache_dir``."""
    path = os.fspath(path)
    digest = hashlib.sha1(os.path.abspath(path).encode("utf-8", "surrogateescape")).hexdigest()
    return os.path.join(cache_dir, f"{os.path.basename(path)}-{digest[:16]}{suffix}")


def index_locations(path, suffix: str, cache_dir: Optional[str] = None) -> List[str]:
    """Where the index of ``path`` may be, in the order to look and to
    write: only ``cache_dir`` when one is given, else beside the data and
    then the user cache."""
    if cache_dir is not None:
        return [cached_path(path, suffix, cache_dir)]
    return [os.fspath(path) + suffix,
            cached_path(path, suffix, os.path.join(user_cache_dir(), "index"))]


def store_index(locations: List[str], write: Callable[[str], None]) -> Optional[str]:
    """Calls ``write(location)`` for the first location whose folder can be
    made and written; returns it, or None when none could be (the caller
    then keeps its index in memory only)."""
    for location in locations:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(location)), exist_ok=True)
            write(location)
            return location
        except OSError:
            continue
    return None
