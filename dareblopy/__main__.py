"""The ``dareblopy`` command line: ``pack``, ``ls``, ``cat`` and ``verify``.

Each subcommand is a ``cmd_*`` function plus an ``add_*`` function that
declares its arguments; a new subcommand (or a new ``pack --format``) adds
its pair and registers it in ``SUBCOMMANDS`` or ``PACK_FORMATS``."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from ._errors import DbrError


def _progress(total: int, desc: str):
    """A tqdm bar on stderr when tqdm is installed, else a stand-in that
    does nothing."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is None:
        class _Null:
            def update(self, n=1):
                pass

            def close(self):
                pass
        return _Null()
    return tqdm(total=total, desc=desc, unit="file", file=sys.stderr, leave=False)


def _walk(src: str) -> Iterable[Tuple[str, str, bool]]:
    """(OS path, archive name, is_dir) under src, sorted, directories too."""
    for root, dirs, files in os.walk(src):
        dirs.sort()
        rel_root = os.path.relpath(root, src)
        prefix = "" if rel_root == "." else rel_root.replace(os.sep, "/") + "/"
        if prefix:
            yield root, prefix, True
        for name in sorted(files):
            yield os.path.join(root, name), prefix + name, False


# ---- pack

def pack_zip(args) -> int:
    from ._zip import ZipWriter
    items = list(_walk(args.src))
    bar = _progress(len(items), f"packing {os.path.basename(args.out)}")
    with ZipWriter(args.out, method=args.method, level=args.level) as writer:
        for path, name, is_dir in items:
            mtime = os.stat(path).st_mtime
            if is_dir:
                writer.mkdir(name, mtime=mtime)
            else:
                with open(path, "rb") as fh:
                    writer.write(name, fh.read(), mtime=mtime)
            bar.update(1)
    bar.close()
    files = sum(1 for *_, is_dir in items if not is_dir)
    print(f"{args.out}: {files} files, {os.path.getsize(args.out)} bytes ({args.method})")
    return 0


# Other formats register here: name -> function(args) -> exit code.
PACK_FORMATS: Dict[str, Callable] = {"zip": pack_zip}


def add_pack(sub) -> None:
    p = sub.add_parser("pack", help="pack a directory into an archive")
    p.add_argument("src", metavar="SRC_DIR")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--format", choices=sorted(PACK_FORMATS), default="zip")
    p.add_argument("--method", choices=["stored", "deflate", "lz4"], default="deflate",
                   help="compression of zip entries (default deflate; lz4 is read by "
                        "dareblopy and DareBlopy only)")
    p.add_argument("--level", type=int, default=0,
                   help="compression level: deflate 1-9, lz4 1-12 (0 = default)")


def cmd_pack(args) -> int:
    if not os.path.isdir(args.src):
        print(f"dareblopy pack: {args.src} is not a directory", file=sys.stderr)
        return 2
    return PACK_FORMATS[args.format](args)


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


SUBCOMMANDS = {"pack": (add_pack, cmd_pack), "ls": (add_ls, cmd_ls),
               "cat": (add_cat, cmd_cat), "verify": (add_verify, cmd_verify)}


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
