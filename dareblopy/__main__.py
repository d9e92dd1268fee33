"""The ``dareblopy`` command line: ``pack``, ``ls``, ``cat``, ``verify`` and
``index``.

Each subcommand is a ``cmd_*`` function plus an ``add_*`` function that
declares its arguments, registered in ``SUBCOMMANDS``."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from ._errors import DbrError, NotFoundError


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

def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_pack(sub) -> None:
    p = sub.add_parser(
        "pack", help="pack files into zip, TFRecord or WebDataset tar shards",
        description="SRC is a directory (packed as a tree, or as ImageFolder classes with "
                    "--labels imagefolder) or a list file of 'path label' lines, whose "
                    "labels are integers or class names (numbered in sorted order).")
    p.add_argument("src", metavar="SRC")
    p.add_argument("out", metavar="OUT",
                   help="output file; with --shards N > 1, -0000i-of-0000N is added before "
                        "the extension (or use {shard} and {shards} in OUT)")
    p.add_argument("--format", choices=["zip", "tfrecord", "tar"], default="zip",
                   help="tar: WebDataset shards (KEY.jpg + KEY.cls), read by webdataset")
    p.add_argument("--shards", type=_positive, default=1,
                   help="number of shards (at most one per file)")
    p.add_argument("--labels", choices=["none", "imagefolder"], default="none",
                   help="imagefolder: top-level subdirectories of SRC are classes")
    p.add_argument("--shuffle", action="store_true", help="shuffle items before sharding")
    p.add_argument("--seed", type=int, default=0, help="seed of --shuffle")
    p.add_argument("--workers", type=int, default=0,
                   help="threads writing shards (default: one per core)")
    p.add_argument("--method", choices=["auto", "stored", "deflate", "lz4"], default="auto",
                   help="compression of zip entries (default auto: store files that are "
                        "compressed already, such as .jpg .png .gz .zip, as zip -n does, and "
                        "deflate the rest; lz4 is read by dareblopy and DareBlopy only)")
    p.add_argument("--level", type=int, default=0,
                   help="compression level: deflate 1-9, lz4 1-12 (0 = default)")
    p.add_argument("--compression", default="NONE", choices=["NONE", "GZIP", "ZLIB"],
                   help="compression of TFRecord files")
    p.add_argument("--seekable-jpeg", action="store_true",
                   help="rewrite .jpg/.jpeg files losslessly with restart markers (same "
                        "pixels) so random crops decode only what they cover; recorded in "
                        "the manifest")


def cmd_pack(args) -> int:
    from . import _pack
    classes = None
    if os.path.isfile(args.src):
        items, classes = _pack.list_file_items(args.src)
    elif not os.path.isdir(args.src):
        raise FileNotFoundError(f"{args.src} is neither a directory nor a list file")
    elif args.labels == "imagefolder":
        items, classes = _pack.imagefolder_items(args.src)
    else:
        items = _pack.tree_items(args.src)
    options = dict(format=args.format, shards=args.shards, shuffle=args.shuffle,
                   seed=args.seed, method=args.method, level=args.level,
                   compression=args.compression, workers=args.workers, classes=classes,
                   seekable_jpeg=args.seekable_jpeg)
    if _is_url(args.out):  # written locally, then uploaded (credentials from the environment)
        from ._remote_pack import pack_to_url
        paths, size, manifest = pack_to_url(items, args.out, **options)
    else:
        paths = _pack.pack(items, args.out, **options)
        size, manifest = sum(os.path.getsize(p) for p in paths), _pack.manifest_path(args.out)
    if len(paths) < args.shards:
        print(f"dareblopy pack: {len(items)} files make {len(paths)} shards, not "
              f"{args.shards}: a shard holds at least one file", file=sys.stderr)
    print(f"{args.out}: {len(items)} files in {len(paths)} {args.format} shard(s), "
          f"{size} bytes; manifest {manifest}")
    return 0


# ---- archives at paths or URLs

def _is_url(path: str) -> bool:
    from ._remote import is_url
    return is_url(path)


def _open_archive(path: str, **options):
    """A zip at a path, or at a URL (s3://, gs://, https://, ...), read by
    range requests; credentials come from the backend's environment."""
    if _is_url(path):
        from ._remote import RemoteObject
        from ._remote_zip import RemoteArchive
        return RemoteArchive(RemoteObject(path), **options)
    from ._zip import Archive
    return Archive(path, **options)


# ---- ls

def add_ls(sub) -> None:
    p = sub.add_parser("ls", help="list the entries of a zip archive")
    p.add_argument("archive", metavar="ARCHIVE")


def cmd_ls(args) -> int:
    names = {0: "stored", 8: "deflate", 30: "lz4"}
    with _open_archive(args.archive) as archive:
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
    with _open_archive(args.archive) as archive:
        if args.name not in archive:
            raise NotFoundError(f"'{args.archive}' has no entry named '{args.name}' "
                                f"(`dareblopy ls {args.archive}` lists them)")
        data = archive.read(args.name)
    _write_all(data)
    return 0


def _write_all(data) -> None:
    """Writes all of data to stdout, or raises.  (sys.stdout.buffer.write
    can return after a short write to a pipe whose reader left, and report
    nothing.)"""
    sys.stdout.flush()
    fd, view = sys.stdout.fileno(), memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# ---- verify

def add_verify(sub) -> None:
    p = sub.add_parser("verify", help="read every entry and check its CRC-32")
    p.add_argument("archive", metavar="ARCHIVE")


def cmd_verify(args) -> int:
    bad: List[str] = []
    with _open_archive(args.archive, verify_crc=True) as archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if hasattr(archive, "fetch_entries"):  # at a URL: one range request for them all
            archive.fetch_entries([i.index for i in infos])
        bar = _progress(len(infos), "verifying")
        for info in infos:
            try:
                archive.read(info)  # by index: each of two equal names is checked
            except DbrError as e:
                bad.append(f"{info.filename} (entry {info.index}): {e}")
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


def _one_line(error: BaseException) -> str:
    """What went wrong, on one line (OSError without its errno prefix)."""
    if isinstance(error, OSError) and not isinstance(error, DbrError) and error.strerror:
        text = error.strerror + (f": '{error.filename}'" if error.filename else "")
    else:
        text = str(error)
    return " ".join(text.split())


def main(argv: Optional[List[str]] = None) -> int:
    """Runs one subcommand.  User errors (missing or damaged files, bad
    arguments) print one line to stderr and return 1; the reader of stdout
    going away (``dareblopy ls x.zip | head``) ends the command quietly."""
    args = build_parser().parse_args(argv)
    try:
        return SUBCOMMANDS[args.command][1](args)
    except BrokenPipeError:
        # As coreutils do.  stdout now points at /dev/null, so the final flush
        # at exit does not report the broken pipe a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # what a shell shows for a process ended by SIGPIPE
    except KeyboardInterrupt:
        return 128 + 2
    except (DbrError, OSError, ValueError) as e:
        print(f"dareblopy {args.command}: {_one_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
