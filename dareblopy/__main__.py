"""The ``dareblopy`` command line: ``pack``, ``ls``, ``cat``, ``verify`` and
``index``.

Each subcommand is a ``cmd_*`` function plus an ``add_*`` function that
declares its arguments, registered in ``SUBCOMMANDS``."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from ._errors import DbrError


def _progress(total: int, desc: str):
    """A tqdm bar on stderr when tqdm is installed, else a stand-in that
    does nothing."""
    from ._pack import _progress as bar

    class _Null:
        def update(self, n=1):
            pass

        def close(self):
            pass
    return bar(total, desc) or _Null()


# ---- pack

def add_pack(sub) -> None:
    p = sub.add_parser(
        "pack", help="pack files into zip, TFRecord or WebDataset tar shards",
        description="SRC is a directory (packed as a tree, or as ImageFolder classes with "
                    "--labels imagefolder) or a list file of 'path label' lines.")
    p.add_argument("src", metavar="SRC")
    p.add_argument("out", metavar="OUT",
                   help="output file; with --shards N > 1, -0000i-of-0000N is added before "
                        "the extension (or use {shard} and {shards} in OUT)")
    p.add_argument("--format", choices=["zip", "tfrecord", "tar"], default="zip",
                   help="tar: WebDataset shards (KEY.jpg + KEY.cls), read by webdataset")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--labels", choices=["none", "imagefolder"], default="none",
                   help="imagefolder: top-level subdirectories of SRC are classes")
    p.add_argument("--shuffle", action="store_true", help="shuffle items before sharding")
    p.add_argument("--seed", type=int, default=0, help="seed of --shuffle")
    p.add_argument("--workers", type=int, default=0,
                   help="threads writing shards (default: one per core)")
    p.add_argument("--method", choices=["stored", "deflate", "lz4"], default="deflate",
                   help="compression of zip entries (default deflate; lz4 is read by "
                        "dareblopy and DareBlopy only)")
    p.add_argument("--level", type=int, default=0,
                   help="compression level: deflate 1-9, lz4 1-12 (0 = default)")
    p.add_argument("--compression", default="NONE", choices=["NONE", "GZIP", "ZLIB"],
                   help="compression of TFRecord files")


def cmd_pack(args) -> int:
    from . import _pack
    classes = None
    if os.path.isfile(args.src):
        items = _pack.list_file_items(args.src)
    elif not os.path.isdir(args.src):
        print(f"dareblopy pack: {args.src} is neither a directory nor a list file",
              file=sys.stderr)
        return 2
    elif args.labels == "imagefolder":
        items, classes = _pack.imagefolder_items(args.src)
    else:
        items = _pack.tree_items(args.src)
    paths = _pack.pack(items, args.out, format=args.format, shards=args.shards,
                       shuffle=args.shuffle, seed=args.seed, method=args.method,
                       level=args.level, compression=args.compression,
                       workers=args.workers, classes=classes)
    size = sum(os.path.getsize(p) for p in paths)
    print(f"{args.out}: {len(items)} files in {len(paths)} {args.format} shard(s), "
          f"{size} bytes; manifest {_pack.manifest_path(args.out)}")
    return 0


# ---- ls

def add_ls(sub) -> None:
    p = sub.add_parser("ls", help="list the entries of a zip archive")
    p.add_argument("archive", metavar="ARCHIVE")


def cmd_ls(args) -> int:
    from ._zip import Archive
    names = {0: "stored", 8: "deflate", 30: "lz4"}
    with Archive(args.archive) as archive:
        for info in archive.infolist():
            stamp = "%04d-%02d-%02d %02d:%02d" % info.date_time[:5]
            method = names.get(info.compress_type, f"method{info.compress_type}")
            print(f"{info.file_size:>12} {info.compress_size:>12} {method:>8} {stamp}  "
                  f"{info.filename}")
    return 0


# ---- cat

def add_cat(sub) -> None:
    p = sub.add_parser("cat", help="write one entry of a zip archive to stdout")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("name", metavar="NAME")


def cmd_cat(args) -> int:
    from ._zip import Archive
    with Archive(args.archive) as archive:
        data = archive.read(args.name)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


# ---- verify

def add_verify(sub) -> None:
    p = sub.add_parser("verify", help="read every entry and check its CRC-32")
    p.add_argument("archive", metavar="ARCHIVE")


def cmd_verify(args) -> int:
    from ._zip import Archive
    bad: List[str] = []
    with Archive(args.archive, verify_crc=True) as archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        bar = _progress(len(infos), "verifying")
        for info in infos:
            try:
                archive.read(info.filename)  # the CRC is checked in C
            except DbrError as e:
                bad.append(f"{info.filename}: {e}")
            bar.update(1)
        bar.close()
    for line in bad:
        print(f"BAD  {line}")
    print(f"{args.archive}: {len(infos) - len(bad)} of {len(infos)} entries OK")
    return 1 if bad else 0


def add_index(sub) -> None:
    from ._tfrecord_cli import add_index_parser
    add_index_parser(sub)


def cmd_index(args) -> int:
    from ._tfrecord_cli import run_index
    return run_index(args)


SUBCOMMANDS = {"pack": (add_pack, cmd_pack), "ls": (add_ls, cmd_ls),
               "cat": (add_cat, cmd_cat), "verify": (add_verify, cmd_verify),
               "index": (add_index, cmd_index)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dareblopy",
                                     description="fast data reading for deep learning")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in SUBCOMMANDS.values():
        add(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return SUBCOMMANDS[args.command][1](args)
    except (DbrError, OSError) as e:
        print(f"dareblopy {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
