"""dareblopy: framework-agnostic, fast data reading for deep learning.

A thin layer over libdbr (C99): files and a virtual file system, ZIP
archives, JPEG decoding into numpy and TFRecords, with every call releasing
the GIL.  The DareBlopy 0.0.5 names work; modern entry points stand beside
them.
"""
from ._ffi import ffi as _ffi, lib as _lib
from ._errors import (BufferTooSmallError, CorruptDataError, DbrError,
                      EndOfStreamError, InvalidArgumentError,
                      IsADirectoryDbrError, LimitExceededError, NotFoundError,
                      OutOfMemoryError, PermissionDbrError, ReadError,
                      UnsupportedError)
from ._files import (File, FileSystem, Location, Mode, open_as_bytes,
                     open_as_numpy_ubyte, readinto)

__version__ = _ffi.string(_lib.dbr_version_string()).decode()
libdbr_version = _lib.dbr_version_number()

# ---- ZIP archives

# ---- JPEG
from ._jpeg import (JpegInfo, crop_box, decode_jpeg, decode_jpeg_batch,
                    decode_jpeg_files, jpeg_info, read_jpg_as_numpy)

# ---- TFRecord

# ---- data loading
