"""The base of dareblopy's enums (Mode, Compression, DataType)."""
import enum


class LegacyIntEnum(enum.IntEnum):
    """An IntEnum that prints as ``Compression.GZIP``, as DareBlopy 0.0.5's
    enums did (Python 3.11 prints a plain IntEnum as its number), so logs
    and messages written for 0.0.5 read the same.  Format specs other than
    the empty one still format the number (``f"{c:d}"``)."""

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self.name}"

    def __format__(self, spec: str) -> str:
        return str(self) if not spec else int.__format__(int(self), spec)
