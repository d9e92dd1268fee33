"""The TFRecord commands of ``python -m dareblopy``: ``index FILE...`` and
``pack --format tfrecord --shards N``.  ``__main__`` wires these in."""
from __future__ import annotations

import os
from typing import List

from ._example import serialize_example
from ._tfrecord import TFRecordWriter, _compression, index_path_for, load_index


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


def add_pack_tfrecord_arguments(parser):
    """Options `pack` gains for ``--format tfrecord``."""
    parser.add_argument("--shards", type=int, default=1, help="number of TFRecord files")
    parser.add_argument("--compression", default="NONE", choices=["NONE", "GZIP", "ZLIB"])


def shard_names(out_pattern: str, shards: int) -> List[str]:
    """``out_pattern`` may use {shard} and {shards}; otherwise
    ``-00000-of-00004`` is appended (before a .tfrecord suffix if any)."""
    if "{shard" in out_pattern:
        return [out_pattern.format(shard=i, shards=shards) for i in range(shards)]
    stem, ext = os.path.splitext(out_pattern)
    if ext not in (".tfrecord", ".tfrecords"):
        stem, ext = out_pattern, ""
    if shards == 1:
        return [out_pattern]
    return [f"{stem}-{i:05d}-of-{shards:05d}{ext}" for i in range(shards)]


def pack_tfrecord(src_dir, out_pattern: str, shards: int = 1, compression=None,
                  progress: bool = True) -> List[str]:
    """Packs every file under ``src_dir`` (sorted, recursively) into
    ``shards`` TFRecord files of Examples {'path': bytes, 'data': bytes},
    consecutive files to a shard.  Returns the shard paths."""
    if shards < 1:
        raise ValueError("pack: --shards must be at least 1")
    src_dir = os.fspath(src_dir)
    files = sorted(os.path.relpath(os.path.join(root, n), src_dir)
                   for root, _, names in os.walk(src_dir) for n in names)
    names = shard_names(out_pattern, shards)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(files), unit="file", desc="pack")
    per = -(-len(files) // shards) if files else 0
    comp = _compression(compression)
    for s, out in enumerate(names):
        with TFRecordWriter(out, comp) as w:
            for rel in files[s * per:(s + 1) * per]:
                with open(os.path.join(src_dir, rel), "rb") as fh:
                    w.write(serialize_example({"path": rel.replace(os.sep, "/"),
                                               "data": fh.read()}))
                if bar:
                    bar.update(1)
    if bar:
        bar.close()
    return names
