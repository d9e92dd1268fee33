"""``dareblopy pack`` into a URL: each shard is written locally, atomically,
as a local pack writes it, then uploaded; the manifest (with the shards'
sha256, which caches check downloads against) goes last, so a reader that
finds the manifest finds every shard it names."""
from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from ._remote import RemoteObject


def pack_to_url(items, out_url: str, storage_options: Optional[Dict[str, Any]] = None,
                **options) -> Tuple[List[str], int, str]:
    """Packs items (see :func:`dareblopy._pack.pack`) to shards beside
    ``out_url``; returns the shard URLs, their total size and the
    manifest's URL.  Needs local temporary space for the shards."""
    from ._pack import manifest_path, pack
    folder, base = out_url.rstrip("/").rsplit("/", 1)
    with tempfile.TemporaryDirectory(prefix="dareblopy-pack-") as tmp:
        local_out = os.path.join(tmp, base)
        paths = pack(items, local_out, **options)
        size = sum(os.path.getsize(p) for p in paths)
        urls = []
        for path in paths + [manifest_path(local_out)]:
            url = f"{folder}/{os.path.basename(path)}"
            RemoteObject(url, storage_options).upload_from(path)
            urls.append(url)
    return urls[:-1], size, urls[-1]
