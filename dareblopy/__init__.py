"""dareblopy: framework-agnostic, fast data reading for deep learning.

A thin layer over libdbr (C99): files and a virtual file system, ZIP
archives, JPEG decoding into numpy and TFRecords, with every call releasing
the GIL.  The DareBlopy 0.0.5 names work; modern entry points stand beside
them.
"""
from ._ffi import ffi as _ffi, lib as _lib
from ._errors import (ArgumentTypeError, BufferTooSmallError, CorruptDataError, DbrError,
                      EndOfStreamError, InvalidArgumentError,
                      IsADirectoryDbrError, LimitExceededError, NotFoundError,
                      OutOfMemoryError, PermissionDbrError, ReadError,
                      UnsupportedError)
from ._files import (File, FileSystem, Location, Mode, open_as_bytes,
                     open_as_numpy_ubyte, read_files, readinto)
from ._status import Status
from . import utils
# DareBlopy 0.0.5 exported the open modes at module level too.
read, write, append = Mode.read, Mode.write, Mode.append
read_update, write_update, append_update = Mode.read_update, Mode.write_update, Mode.append_update

__version__ = _ffi.string(_lib.dbr_version_string()).decode()
libdbr_version = _lib.dbr_version_number()

# ---- ZIP archives
from ._zip import Archive, ZipInfo, ZipWriter, open_zip_archive

# ---- JPEG
from ._jpeg import (JpegInfo, crop_box, decode_jpeg, decode_jpeg_batch,
                    decode_jpeg_entries, decode_jpeg_files, jpeg_info, jpeg_make_seekable,
                    read_jpg_as_numpy)

# ---- TFRecord
from ._example import (DataType, Example, FixedLenFeature, FixedLenSequenceFeature, Ragged,
                       RecordParser, VarLenFeature, serialize_example,
                       serialize_sequence_example)
from ._tfrecord import (Compression, ParsedRecordYielderRandomized,
                        ParsedTFRecordsDatasetIterator, RecordReader, RecordYielderBasic,
                        RecordYielderRandomized, TFRecordsDatasetIterator, TFRecordWriter,
                        build_index, load_index, read_index, write_index)
from ._shuffle import permutation
string, float32, int64, uint8 = DataType.string, DataType.float32, DataType.int64, DataType.uint8
NONE, GZIP, ZLIB = Compression.NONE, Compression.GZIP, Compression.ZLIB

# ---- data loading
from ._loader import DataLoaderIterator, data_loader
from ._shards import (DirectoryShard, Sample, ShardReader, TFRecordShard, ZipShard,
                      directory_shards, tfrecord_shards, zip_shards)
from ._labels import labels_from_parent_dirs, read_label_file
from ._dataset import IndexedSamples, ShardedDataset
from ._pack import read_manifest_labels
from ._mix import MixedDataset, mix

# ---- shards at URLs (fsspec), through a node-local cache
from ._cache import CacheDiskFullError, CacheLimitError, ShardCache
from ._remote import (RemoteAccessError, RemoteError, RemoteNotFoundError, ShardChangedError,
                      expand_braces)
from ._remote_zip import RemoteArchive
from ._source import read_manifest_hashes
from ._pipeline import image_batch_transform, image_classification_dataset
from ._tar import TarArchive, TarShard, decode_jpeg_members, open_tar_archive, tar_shards
