"""The TFRecord command of ``python -m dareblopy``: ``index FILE...``
(``pack --format tfrecord`` lives with the other pack formats in _pack.py)."""
from __future__ import annotations

from ._index_cache import index_locations, store_index
from ._tfrecord import INDEX_SUFFIX, build_index, write_index


def add_index_parser(subparsers):
    p = subparsers.add_parser(
        "index", help="build `offset length` indexes of TFRecord files",
        description="Writes FILE.idx beside each file, or in the user cache directory "
                    "($XDG_CACHE_HOME/dareblopy/index) when the file's folder is not writable.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--cache-dir", default=None,
                   help="write indexes here instead of beside the files")
    p.add_argument("--compression", default="NONE", choices=["NONE", "GZIP", "ZLIB"])
    p.set_defaults(func=run_index)
    return p


def run_index(args) -> int:
    for name in args.files:
        index = build_index(name, args.compression)
        where = store_index(index_locations(name, INDEX_SUFFIX, args.cache_dir),
                            lambda location: write_index(index, location))
        if where is None:
            raise PermissionError(f"cannot write an index of '{name}' beside it or in the "
                                  f"cache; pass --cache-dir to a writable folder")
        print(f"{name}: {len(index)} records -> {where}")
    return 0
