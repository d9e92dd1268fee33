"""The TFRecord command of ``python -m dareblopy``: ``index FILE...``
(``pack --format tfrecord`` lives with the other pack formats in _pack.py)."""
from __future__ import annotations

from ._tfrecord import index_path_for, load_index


def add_index_parser(subparsers):
    p = subparsers.add_parser("index", help="build `offset length` indexes of TFRecord files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--cache-dir", default=None,
                   help="write indexes here instead of beside the files")
    p.add_argument("--compression", default="NONE", choices=["NONE", "GZIP", "ZLIB"])
    p.set_defaults(func=run_index)
    return p


def run_index(args) -> int:
    for name in args.files:
        index = load_index(name, args.compression, cache_dir=args.cache_dir, rebuild=True)
        print(f"{name}: {len(index)} records -> {index_path_for(name, args.cache_dir)}")
    return 0
