"""Per-item outcomes of libdbr's batch calls.

Every batch call in dbr.h ends with the same three parameters, ``int
*statuses, char *messages, size_t message_cap``: item i's status, and its
message at ``messages + i * message_cap``.  :class:`Outcomes` allocates them
and turns the failed items into exceptions, so a caller never repeats work
to learn why an item failed."""
from __future__ import annotations

from typing import Dict

import numpy as np

from ._errors import DbrError, InvalidArgumentError, error_from_code
from ._ffi import ffi

MESSAGE_CAP = 512  # bytes per item's message; longer details are cut

# libdbr writes every item's message ("" on success), so the message block
# needs no zeroing: for a batch of 64 that saves clearing 32 KiB.
_uncleared = ffi.new_allocator(should_clear_after_alloc=False)


def check_errors_mode(errors: str) -> None:
    if errors not in ("raise", "return"):
        raise InvalidArgumentError(f"errors must be 'raise' or 'return', not {errors!r}")


class Outcomes:
    """The statuses and messages of one batch of ``n`` items; pass
    ``*outcomes.args`` as a batch call's last three arguments."""

    __slots__ = ("n", "statuses", "messages")

    def __init__(self, n: int):
        self.n = n
        self.statuses = ffi.new("int[]", max(n, 1))  # zero: DBR_OK until written
        self.messages = _uncleared("char[]", max(n, 1) * MESSAGE_CAP)

    @property
    def args(self):
        return self.statuses, self.messages, MESSAGE_CAP

    def failed(self) -> np.ndarray:
        """Indices of the items that failed, in order."""
        codes = np.frombuffer(ffi.buffer(self.statuses), np.intc)[:self.n]
        return np.flatnonzero(codes)

    def error(self, i: int) -> DbrError:
        """Item i's exception, from its own status and message."""
        text = ffi.string(self.messages + i * MESSAGE_CAP).decode("utf-8", "replace")
        return error_from_code(self.statuses[i], text)

    def errors(self) -> Dict[int, DbrError]:
        """{index: exception} for every failed item."""
        return {int(i): self.error(int(i)) for i in self.failed()}
