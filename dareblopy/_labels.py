"""Labels of samples: from ``name label`` text files, from ImageFolder-style
parent directories, or from a mapping or callable given by the caller."""
from __future__ import annotations

import os
from typing import Callable, Dict, Iterator, Mapping, Sequence, Tuple, Union

PathLike = Union[str, os.PathLike]
Labels = Union[Mapping[str, int], Callable[[str], int], None]

__all__ = ["read_label_file", "labels_from_parent_dirs"]


def numbered_label_lines(path: PathLike, integer: bool = True
                         ) -> Iterator[Tuple[int, str, Union[int, str]]]:
    """(line number, name, label) for each ``name label`` line of a text
    file; blank lines and lines starting with '#' are skipped, names may
    hold spaces.  ``integer=False`` yields each label's text (a class name)
    instead."""
    # surrogateescape: names that are not UTF-8 keep their bytes, as
    # os.walk and the shard readers give them
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, label = line.rpartition(" ")
            if not name.strip() or (integer and not label.lstrip("-").isdigit()):
                raise ValueError(f"{os.fspath(path)}:{lineno}: expected 'name label', "
                                 f"got {line!r}")
            yield lineno, name.strip(), int(label) if integer else label


def name_label_lines(path: PathLike, integer: bool = True) -> Iterator[Tuple[str, int]]:
    """(name, label) for each line, as :func:`numbered_label_lines` reads them."""
    for _, name, label in numbered_label_lines(path, integer):
        yield name, label


def read_label_file(path: PathLike) -> Dict[str, int]:
    """A label map from a text file of ``name label`` lines.  A name may
    repeat only with the same label (merged files disagreeing is an error,
    not a silent choice)."""
    labels: Dict[str, Tuple[int, int]] = {}  # name: (label, line number)
    for lineno, name, label in numbered_label_lines(path):
        if name in labels and labels[name][0] != label:
            raise ValueError(f"{os.fspath(path)}:{lineno}: {name!r} has label {label} here "
                             f"but {labels[name][0]} on line {labels[name][1]}")
        labels.setdefault(name, (label, lineno))
    return {name: label for name, (label, _) in labels.items()}


def labels_from_parent_dirs(classes: Sequence[str]) -> Callable[[str], int]:
    """ImageFolder-style labels: a sample's label is the index, in
    ``classes``, of its parent directory's name."""
    index = {c: i for i, c in enumerate(classes)}

    def label(key: str) -> int:
        parent = key.replace("\\", "/").rsplit("/", 2)
        cls = parent[-2] if len(parent) >= 2 else ""
        if cls not in index:
            raise KeyError(f"sample {key!r}: directory {cls!r} is not one of the classes")
        return index[cls]
    return label


def label_of(labels: Labels, name: str) -> int:
    """The label that ``labels`` (a mapping or a callable) gives ``name``."""
    return int(labels[name] if isinstance(labels, Mapping) else labels(name))
