/*
 * dbr.h - the whole public C API of libdbr, the engine under dareblopy.
 *
 * libdbr reads training data fast: plain files and a virtual file system
 * (VFS) of directories and mounted archives, ZIP entries, JPEG pixels and
 * TFRecord records, always into buffers that the caller owns.
 *
 * Conventions (they hold for every function below):
 *  - Names: functions and types start with dbr_, macros and enum values
 *    with DBR_.  Objects are opaque; you hold pointers to them.
 *  - Errors: every fallible call returns int, DBR_OK (0) or a negative
 *    dbr_status.  dbr_strerror(code) gives static text for the code;
 *    dbr_last_error() gives this thread's detail for the latest failure
 *    (which file, which entry, which offset).  Success does not clear it.
 *  - Buffers belong to the caller: functions take (dst, cap, *out_len).  If
 *    cap is too small they return DBR_E_TOO_SMALL and store the size that is
 *    needed in *out_len.  Memory that libdbr allocates for you is released
 *    with dbr_free().  libdbr never frees caller memory.
 *  - Every *_close / *_free accepts NULL.
 *  - Lifetimes: archives (zip, tar), VFSs, files and TFRecord readers are
 *    reference-counted (atomically).  The opener holds one reference;
 *    dbr_*_retain takes another; *_close / *_free drops one, and the object
 *    is freed when the last goes.  Objects built on others hold references to what
 *    they use: a file opened from an archive (directly or through a VFS
 *    mount) holds the archive, a VFS mount holds its archive, a TFRecord
 *    reader holds its file.  So closing early is always safe for the
 *    objects that remain.  A pointer whose reference the caller has
 *    dropped must not be passed again: a binding that lets one thread
 *    close what another thread is using must make every call hold a
 *    reference of its own for the call's duration (dareblopy holds it in
 *    the Python object the call uses, see dareblopy/_files.py).
 *  - Batches: every batch call reports each item's outcome in one shape,
 *    its trailing parameters (int *statuses, char *messages, size_t
 *    message_cap): statuses[i] is item i's status and messages +
 *    i * message_cap its NUL-terminated message ("" on success, cut to
 *    message_cap bytes); each array may be NULL.  The call returns DBR_OK
 *    if every item succeeded, else the status of the lowest-numbered
 *    failed item, with its detail as dbr_last_error().
 *  - Threads: each object states how it may be shared.  libdbr never calls
 *    back into a language runtime, so bindings may drop their global locks
 *    around any call.
 *  - ABI: symbols are versioned (DBR_1.0 node, DBR_1.1 for what was added
 *    since); values of enums and layouts of public structs are never
 *    changed, only appended to.  A library is compatible with this header
 *    when its dbr_version_number() has the same major and is at least
 *    DBR_VERSION_NUMBER.
 *
 * The block between DBR_CDEF_BEGIN and DBR_CDEF_END is also read verbatim by
 * the Python binding (dareblopy/_ffi.py), so keep it to plain declarations
 * and integer #defines there.
 */
#ifndef DBR_H
#define DBR_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  define DBR_API __declspec(dllimport)
#elif defined(__GNUC__)
#  define DBR_API __attribute__((visibility("default")))
#else
#  define DBR_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* DBR_CDEF_BEGIN */

/* ---- Versions --------------------------------------------------------- */

#define DBR_VERSION_MAJOR 0
#define DBR_VERSION_MINOR 2
#define DBR_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH, as a literal so bindings can read it.
 * These equal the project version in meson.build (meson setup checks it). */
#define DBR_VERSION_NUMBER 200

/* The version of the library actually loaded.  It serves this header if it
 * has the same major (number / 10000) and is at least DBR_VERSION_NUMBER:
 * within a major version the ABI is only appended to. */
DBR_API int dbr_version_number(void);
DBR_API const char *dbr_version_string(void);

/* ---- Status codes ------------------------------------------------------- */

/* Pinned values: never renumber or reuse one, only append. */
typedef enum dbr_status {
    DBR_OK = 0,
    DBR_E_ARG = -1,         /* invalid argument (NULL, bad flag, bad path)     */
    DBR_E_NOMEM = -2,       /* an allocation failed                            */
    DBR_E_IO = -3,          /* the operating system reported a read error      */
    DBR_E_NOT_FOUND = -4,   /* no such file, entry or feature                  */
    DBR_E_CORRUPT = -5,     /* the data is malformed, truncated or fails a CRC */
    DBR_E_UNSUPPORTED = -6, /* valid data using a feature libdbr lacks         */
    DBR_E_TOO_SMALL = -7,   /* dst is too small; *out_len holds the need       */
    DBR_E_LIMIT = -8,       /* input exceeds a configured safety limit         */
    DBR_E_IS_DIR = -9,      /* a directory where a file was expected           */
    DBR_E_PERMISSION = -10, /* the operating system denied access              */
    DBR_E_EOF = -11         /* the end of a stream was reached cleanly         */
} dbr_status;

/* Static English text for a status code; never NULL. */
DBR_API const char *dbr_strerror(int code);

/* Detail of the latest failure on the calling thread ("" if none): which
 * file, entry or offset, and what a person can do about it.  The pointer
 * stays valid until this thread's next libdbr call. */
DBR_API const char *dbr_last_error(void);

/* Releases memory that libdbr allocated and handed to the caller. */
DBR_API void dbr_free(void *ptr);

/* ---- Files ---------------------------------------------------------------- */

/* A readable file: a plain OS file, or an entry of a mounted archive.
 *
 * Threads: dbr_file_pread, dbr_file_size, dbr_file_path, dbr_file_mtime and
 * dbr_file_data never change the handle and may run concurrently on one
 * handle (they use pread, not a shared file offset).  dbr_file_read and
 * dbr_file_seek move the handle's own position; serialise them per handle.
 * Handles stay usable in a forked child. */
typedef struct dbr_file dbr_file;

/* Where dbr_file_seek measures from (same values as SEEK_SET/CUR/END). */
typedef enum dbr_whence {
    DBR_SEEK_SET = 0,
    DBR_SEEK_CUR = 1,
    DBR_SEEK_END = 2
} dbr_whence;

/* Opens an OS path (absolute or relative to the working directory) for
 * reading.  *out receives a handle to close with dbr_file_close.  A file
 * that reports a size of 0 but has content (/proc/self/status and other
 * procfs files) is read to its end at open (up to 64 MiB, else
 * DBR_E_LIMIT) and served from memory, so its size is what it holds.
 * Only regular files are read: a FIFO, socket or device is
 * DBR_E_UNSUPPORTED at once (a FIFO never blocks the open). */
DBR_API int dbr_file_open(const char *path, dbr_file **out);

/* Drops a reference (the opener's, or one taken by dbr_file_retain); the
 * file closes when the last one goes. */
DBR_API void dbr_file_close(dbr_file *file);

/* Takes one more reference to the file (DBR_1.1); drop it with
 * dbr_file_close.  Thread-safe. */
DBR_API void dbr_file_retain(const dbr_file *file);

/* Size in bytes. */
DBR_API uint64_t dbr_file_size(const dbr_file *file);

/* The path the file was opened with (a VFS path for VFS opens). */
DBR_API const char *dbr_file_path(const dbr_file *file);

/* Last modification time in seconds since the Unix epoch (for archive
 * entries, the entry's timestamp). */
DBR_API int64_t dbr_file_mtime(const dbr_file *file);

/* The file's bytes, if they already sit in memory (a decompressed archive
 * entry); NULL for files read from disk.  Valid until dbr_file_close. */
DBR_API const void *dbr_file_data(const dbr_file *file);

/* Reads up to cap bytes at offset into dst without touching the position.
 * *out_len receives the count, which is less than cap only at end of file. */
DBR_API int dbr_file_pread(const dbr_file *file, void *dst, size_t cap,
                           uint64_t offset, size_t *out_len);

/* Reads up to cap bytes at the current position and advances it. */
DBR_API int dbr_file_read(dbr_file *file, void *dst, size_t cap,
                          size_t *out_len);

/* Reads the whole file into dst.  If cap < size, returns DBR_E_TOO_SMALL
 * with the size in *out_len and reads nothing. */
DBR_API int dbr_file_read_all(const dbr_file *file, void *dst, size_t cap,
                              size_t *out_len);

/* Moves the position; seeking past the end is allowed (reads return 0),
 * before the start is DBR_E_ARG.  *out_pos (may be NULL) gets the result. */
DBR_API int dbr_file_seek(dbr_file *file, int64_t offset, int whence,
                          uint64_t *out_pos);
DBR_API uint64_t dbr_file_tell(const dbr_file *file);

/* ---- Paths -------------------------------------------------------------- */

/* Normalises a VFS path: '\\' is not special, empty and '.' components are
 * dropped, '..' removes the previous component, a leading '/' means the VFS
 * root.  A '..' that would climb above the root is DBR_E_ARG, so a
 * normalised path can never escape a mount.  The result has no leading or
 * trailing '/'; the root itself is "".  dst receives a NUL-terminated
 * string; *out_len its length without the NUL (or the need, on
 * DBR_E_TOO_SMALL). */
DBR_API int dbr_path_normalize(const char *path, char *dst, size_t cap,
                               size_t *out_len);

/* ---- Virtual file system ------------------------------------------------ */

/* An ordered list of mounts (directories now, archives through the same
 * interface); a path is looked up in each mount in order and the first hit
 * wins.  VFS paths are always relative to the mount roots and are
 * normalised by dbr_path_normalize, so no lookup escapes a mount: in a
 * directory mount, a symlink that leads out of the mount (an absolute
 * target, or ".." above the root) is refused with DBR_E_PERMISSION unless
 * the mount was made with follow_symlinks; symlinks that stay inside
 * work.
 *
 * Threads: lookups (open, exists, stat, list) may run concurrently from any
 * number of threads.  Mount changes take an internal write lock, so they are
 * safe too, and a file opened before an unmount stays readable. */
typedef struct dbr_vfs dbr_vfs;

/* What dbr_vfs_stat reports. */
typedef struct dbr_stat {
    uint64_t size;   /* bytes; 0 for directories               */
    int64_t mtime;   /* seconds since the Unix epoch           */
    int is_dir;      /* 1 for a directory, 0 for a file        */
    int mount_index; /* which mount answered (0 = first)       */
} dbr_stat;

DBR_API int dbr_vfs_create(dbr_vfs **out);

/* Drops a reference (the creator's, or one taken by dbr_vfs_retain); the
 * VFS and its mounts go when the last one does.  Files opened from it stay
 * readable. */
DBR_API void dbr_vfs_free(dbr_vfs *vfs);

/* Takes one more reference to the VFS (DBR_1.1); drop it with
 * dbr_vfs_free.  Thread-safe. */
DBR_API void dbr_vfs_retain(const dbr_vfs *vfs);

/* Appends an OS directory as a mount (searched after earlier mounts), with
 * the default options (dbr_vfs_mount_dir_ex with NULL). */
DBR_API int dbr_vfs_mount_dir(dbr_vfs *vfs, const char *dir);

/* Options of a directory mount.  All zero (or a NULL pointer) means the
 * defaults; leave the reserved fields zero. */
typedef struct dbr_mount_options {
    /* 0 (default): a path whose resolution leaves the mount through a
     * symlink is refused (openat2 with RESOLVE_BENEATH where the kernel has
     * it, Linux 5.6+; elsewhere a walk of O_NOFOLLOW opens, one component
     * at a time).  1: symlinks are followed wherever they lead. */
    int follow_symlinks;
    int reserved_int[3];
    uint64_t reserved[4];
} dbr_mount_options;

/* Appends an OS directory as a mount with options (DBR_1.1). */
DBR_API int dbr_vfs_mount_dir_ex(dbr_vfs *vfs, const char *dir,
                                 const dbr_mount_options *opts);

/* Number of mounts, and removal of the mount at index (0 = first). */
DBR_API size_t dbr_vfs_mount_count(const dbr_vfs *vfs);
DBR_API int dbr_vfs_unmount(dbr_vfs *vfs, size_t index);

/* 1 if the mount at index is a directory mount, 0 if it is an archive,
 * DBR_E_ARG if there is no such mount. */
DBR_API int dbr_vfs_mount_is_dir(const dbr_vfs *vfs, size_t index);

DBR_API int dbr_vfs_open(const dbr_vfs *vfs, const char *path,
                         dbr_file **out);

/* 1 if path names a file or directory in any mount, 0 if not, or a
 * negative status (DBR_E_ARG for a path that escapes the root). */
DBR_API int dbr_vfs_exists(const dbr_vfs *vfs, const char *path);
DBR_API int dbr_vfs_stat(const dbr_vfs *vfs, const char *path,
                         dbr_stat *out);

/* Lists a directory across all mounts: the names, sorted and without
 * duplicates, each followed by a NUL; subdirectories end in '/'.  *out is
 * allocated by libdbr (free with dbr_free), *out_len is its byte length and
 * *out_count the number of names.  DBR_E_NOT_FOUND if no mount has it. */
DBR_API int dbr_vfs_list(const dbr_vfs *vfs, const char *dir, char **out,
                         size_t *out_len, size_t *out_count);

/* ---- Many files in one call -------------------------------------------- */

/* Opens n paths in one call: OS paths, or VFS paths when vfs is not NULL.
 * For each item, files[i] and sizes[i] receive its handle and size (NULL
 * and 0 if it failed); statuses, messages and message_cap report each
 * item's outcome in the one batch shape (see the conventions at the top).
 * Release the handles with dbr_file_close_many.  Thread-safe (as
 * dbr_file_open / dbr_vfs_open).  (DBR_1.1) */
DBR_API int dbr_file_open_many_ex(const dbr_vfs *vfs, const char *const *paths,
                                  size_t n, dbr_file **files, uint64_t *sizes,
                                  int *statuses, char *messages,
                                  size_t message_cap);

/* dbr_file_open_many_ex without messages (statuses required). */
DBR_API int dbr_file_open_many(const dbr_vfs *vfs, const char *const *paths,
                               size_t n, dbr_file **files, uint64_t *sizes,
                               int *statuses);

/* Reads files[i] whole into dsts[i] (capacity caps[i]) for every i with
 * a non-NULL file, on up to `threads` threads (0 = one per CPU); out_lens[i]
 * receives each item's length, and statuses/messages its outcome in the
 * one batch shape.  NULL files are skipped with their status and message
 * left as they were, so passing the arrays that dbr_file_open_many_ex
 * filled keeps the open failures' messages.  Bindings read a whole batch
 * this way with their global lock released once.  (DBR_1.1) */
DBR_API int dbr_file_read_many_ex(dbr_file *const *files, size_t n,
                                  void *const *dsts, const size_t *caps,
                                  size_t *out_lens, int threads, int *statuses,
                                  char *messages, size_t message_cap);

/* dbr_file_read_many_ex without messages (statuses required). */
DBR_API int dbr_file_read_many(dbr_file *const *files, size_t n,
                               void *const *dsts, const size_t *caps,
                               size_t *out_lens, int *statuses, int threads);

/* Drops n handles' references; NULL entries are skipped. */
DBR_API void dbr_file_close_many(dbr_file *const *files, size_t n);

/* ---- ZIP archives ------------------------------------------------------- */

/* (zip.c: reading, VFS mounting; zip_writer.c: writing) */

/* A ZIP archive opened for reading.  Opening reads the end records and the
 * whole central directory in one read and indexes the names in a hash
 * table; no local header is touched until an entry is read.  Handles:
 * stored, deflate and LZ4 (method 30, one raw LZ4 block, as DareBlopy and
 * fsal write it) entries; ZIP64; data descriptors (the central directory's
 * sizes and CRC are used); archive comments; data prepended before the
 * archive (self-extractors); directory entries.  Names are bytes as stored
 * (flag bit 11 says whether they are declared UTF-8); a name is cut at a NUL
 * byte, as CPython's zipfile does.  If two entries share a name, the later
 * one wins for lookups (zipfile's rule).
 *
 * Threads: a dbr_zip is immutable after open.  Every function below except
 * dbr_zip_close may run concurrently on one handle from any number of
 * threads, with identical results; reads use pread.  A handle stays usable
 * in a forked child.  dbr_zip_close drops the caller's reference; files and
 * VFS mounts made from the archive hold their own, so the archive lives
 * until the last of them is closed. */
typedef struct dbr_zip dbr_zip;

/* Compression methods (the ZIP "method" field). */
#define DBR_ZIP_STORED 0
#define DBR_ZIP_DEFLATE 8
#define DBR_ZIP_LZ4 30

/* Flag bits of an entry (the ZIP "general purpose" field). */
#define DBR_ZIP_FLAG_ENCRYPTED 1
#define DBR_ZIP_FLAG_DATA_DESCRIPTOR 8
#define DBR_ZIP_FLAG_UTF8 2048

/* Defaults of dbr_zip_options, for documentation and bindings. */
#define DBR_ZIP_DEFAULT_MAX_ENTRY_SIZE 1073741824
#define DBR_ZIP_DEFAULT_MAX_ENTRIES 16777216

/* Options for opening.  Fill with dbr_zip_options_init, then change
 * fields; passing NULL means the defaults.  The reserved fields keep the
 * layout stable when options are added: leave them zero. */
typedef struct dbr_zip_options {
    /* 1 (default): check each entry's CRC-32 whenever it is read whole
     * (dbr_zip_read, dbr_zip_read_many, dbr_zip_open_entry).  0 skips the
     * check; a damaged entry is then returned silently.  The check is cheap:
     * for stored entries read from the mapping it runs during the copy, and
     * elsewhere it folds at ~30 GB/s with PCLMULQDQ. */
    int verify_crc;
    /* 0 (default): map an archive file into memory at open and serve reads
     * from the mapping (a copy from the page cache, no system call per
     * entry).  The file must then not be truncated or rewritten in place
     * while open (replacing it by rename is fine): reading a page cut off
     * by truncation raises SIGBUS.  1: read every entry with pread; slower,
     * but a file that shrinks gives DBR_E_IO.  Archives that cannot be
     * mapped use pread anyway. */
    int use_pread;
    /* Largest declared uncompressed size accepted for a compressed (deflate,
     * LZ4) entry, since that size decides what callers allocate; larger
     * entries give DBR_E_LIMIT.  Stored entries need no limit: their size is
     * checked against the bytes actually in the file.  Default 1 GiB. */
    uint64_t max_entry_size;
    /* Most central directory entries accepted; more is DBR_E_LIMIT.  The
     * index costs about 64 bytes plus the name per entry.  Default 16 Mi. */
    uint64_t max_entries;
    uint64_t reserved[4];
} dbr_zip_options;

/* One entry as the central directory describes it.  Fixed layout (8-byte
 * fields first) so bindings can view arrays of it; the reserved fields keep
 * it stable as fields are added. */
typedef struct dbr_zip_entry {
    uint64_t size;            /* uncompressed bytes                         */
    uint64_t compressed_size; /* bytes of entry data in the file            */
    uint64_t header_offset;   /* file offset of the local header            */
    int64_t mtime;            /* DOS timestamp read as UTC, Unix seconds     */
    const char *name;         /* NUL-terminated; valid while the archive is */
    uint64_t name_len;        /* bytes of name, without the NUL             */
    uint32_t crc32;
    uint32_t external_attr;   /* host attributes (Unix mode << 16)          */
    uint16_t method;          /* DBR_ZIP_STORED, _DEFLATE, _LZ4 or another   */
    uint16_t flags;           /* DBR_ZIP_FLAG_* bits                        */
    uint16_t dos_date;        /* as stored, for exact date_time tuples      */
    uint16_t dos_time;
    uint32_t is_dir;          /* 1 if the name ends with '/'                */
    uint32_t reserved0;
    uint64_t reserved[2];
} dbr_zip_entry;

DBR_API void dbr_zip_options_init(dbr_zip_options *opts);

/* Opens the archive at an OS path.  opts may be NULL (defaults).  A file
 * that is not a ZIP archive, or whose end records or central directory are
 * damaged, gives DBR_E_CORRUPT naming the file and what is wrong. */
DBR_API int dbr_zip_open(const char *path, const dbr_zip_options *opts,
                         dbr_zip **out);

/* Opens an archive stored in an open dbr_file (an OS file or an entry of
 * another archive).  The archive keeps its own reference to the bytes, so
 * file may be closed afterwards. */
DBR_API int dbr_zip_open_file(const dbr_file *file, const dbr_zip_options *opts,
                              dbr_zip **out);

/* Drops a reference (the opener's, or one taken by dbr_zip_retain). */
DBR_API void dbr_zip_close(dbr_zip *zip);

/* Takes one more reference to the archive (DBR_1.1); drop it with
 * dbr_zip_close.  Thread-safe. */
DBR_API void dbr_zip_retain(const dbr_zip *zip);

/* The path the archive was opened with. */
DBR_API const char *dbr_zip_path(const dbr_zip *zip);

/* Number of entries in the central directory (directories included). */
DBR_API size_t dbr_zip_count(const dbr_zip *zip);

/* The archive comment (not NUL-terminated; *out_len bytes, maybe 0). */
DBR_API const char *dbr_zip_comment(const dbr_zip *zip, size_t *out_len);

/* Fills out[0..count) with entries first..first+count-1 (one call for a
 * whole listing).  DBR_E_ARG if the range passes the end. */
DBR_API int dbr_zip_entries(const dbr_zip *zip, size_t first, size_t count,
                            dbr_zip_entry *out);

/* All names, each followed by a NUL, in central directory order, in memory
 * allocated by libdbr (release with dbr_free); *out_len is the byte count. */
DBR_API int dbr_zip_names(const dbr_zip *zip, char **out, size_t *out_len);

/* Index of the entry named exactly name (bytes as stored; no
 * normalisation).  DBR_E_NOT_FOUND if there is none. */
DBR_API int dbr_zip_find(const dbr_zip *zip, const char *name, size_t *index);

/* Uncompressed size of entry index (0 for a bad index). */
DBR_API uint64_t dbr_zip_entry_size(const dbr_zip *zip, size_t index);

/* Reads entry index whole into dst and checks its CRC-32 (unless
 * verify_crc is 0).  Stored entries are copied straight into dst from the
 * mapping (checking the CRC in the same pass) or read with pread.
 * cap < size gives DBR_E_TOO_SMALL with the size in *out_len.  Methods
 * other than stored, deflate and LZ4, and encrypted entries, give
 * DBR_E_UNSUPPORTED naming the method; damage gives DBR_E_CORRUPT naming
 * the archive, the entry and what is wrong. */
DBR_API int dbr_zip_read(const dbr_zip *zip, size_t index, void *dst,
                         size_t cap, size_t *out_len);

/* Reads count entries in one call on up to `threads` threads (0 = one per
 * CPU).  For each item i: entry indices[i] into dsts[i] (capacity caps[i]);
 * out_lens[i] receives its length, and statuses/messages its outcome in
 * the one batch shape (see the conventions at the top).  (DBR_1.1) */
DBR_API int dbr_zip_read_many_ex(const dbr_zip *zip, const size_t *indices,
                                 size_t count, void *const *dsts,
                                 const size_t *caps, size_t *out_lens,
                                 int threads, int *statuses, char *messages,
                                 size_t message_cap);

/* dbr_zip_read_many_ex without messages (statuses required). */
DBR_API int dbr_zip_read_many(const dbr_zip *zip, const size_t *indices,
                              size_t count, void *const *dsts,
                              const size_t *caps, size_t *out_lens,
                              int *statuses, int threads);

/* Opens entry index as a dbr_file.  With verify_crc off, a stored entry is
 * a window onto the archive file (no copy); otherwise the entry is read,
 * checked and served from memory.  Directories give DBR_E_IS_DIR. */
DBR_API int dbr_zip_open_entry(const dbr_zip *zip, size_t index, dbr_file **out);

/* Appends the archive as a VFS mount (searched after earlier mounts).
 * Entry names are normalised like VFS paths; entries whose names climb out
 * of the root ("../x", "/abs" is kept as "abs") are unreachable.  A
 * directory exists if an entry names it or any entry lies below it.  The
 * mount keeps the archive alive. */
DBR_API int dbr_vfs_mount_zip(dbr_vfs *vfs, dbr_zip *zip);

/* Writes a ZIP archive atomically: entries go to a temporary file beside
 * the target, which dbr_zip_writer_finish renames into place, so an
 * interrupted run never leaves a file that looks like a valid archive.
 * ZIP64 records are written when sizes, offsets or the entry count need
 * them.  CPython's zipfile and Info-ZIP read the result (LZ4 entries
 * excepted, which only libdbr and DareBlopy read).
 *
 * Threads: one thread at a time per writer. */
typedef struct dbr_zip_writer dbr_zip_writer;

DBR_API int dbr_zip_writer_open(const char *path, dbr_zip_writer **out);

/* Adds an entry from memory.  method: DBR_ZIP_STORED, DBR_ZIP_DEFLATE or
 * DBR_ZIP_LZ4; level: 0 for the method's default, else deflate 1-9 or LZ4
 * 1 (fast) to 12 (HC).  A compressed entry that would not be smaller is
 * stored instead, as Info-ZIP does.  A name ending in '/' adds a directory
 * (len must be 0).  mtime is Unix seconds, written as a DOS timestamp in
 * UTC (pass local time shifted to UTC for local DOS times). */
DBR_API int dbr_zip_writer_add(dbr_zip_writer *writer, const char *name,
                               const void *data, size_t len, int method,
                               int level, int64_t mtime);

/* Writes the central directory, flushes and renames into place. */
DBR_API int dbr_zip_writer_finish(dbr_zip_writer *writer);

/* Frees the writer; if it was not finished, deletes the temporary file. */
DBR_API void dbr_zip_writer_free(dbr_zip_writer *writer);

/* ---- Tar archives ------------------------------------------------------ */

/* (tar.c: reading; tar_vfs.c: VFS mounting) */

/* A tar archive opened for reading, such as a WebDataset shard.  Opening
 * scans the headers once (one 512-byte header per member, read from a
 * mapping of the file) into an index of data offsets, sizes and names
 * (hashed for lookups); dbr_tar_save_index / dbr_tar_open_indexed let a
 * caller keep that index so later opens skip the scan.  Members are read
 * straight from the mapping (or with pread) into the caller's buffer.
 *
 * Formats: POSIX ustar (with the name prefix), pax extended headers (path,
 * size and mtime are used), GNU long names and base-256 numbers, V7.  Names
 * are bytes as stored, built as CPython's tarfile builds them: cut at the
 * first NUL, the ustar prefix joined with '/', trailing '/' dropped from
 * directories.  Only regular files and directories are members; links,
 * devices and FIFOs are skipped; GNU sparse files are DBR_E_UNSUPPORTED.
 * The index ends at the first zero block (or the end of the file).  If two
 * members share a name, the later one wins for lookups.  A compressed tar
 * (gzip, bzip2, xz, zstd) cannot be read in place: DBR_E_UNSUPPORTED,
 * saying so.
 *
 * Untrusted input: a header with a bad checksum, a member whose data runs
 * past the end of the file, a header cut off by the end of the file, a
 * malformed pax record, or a member name with a '..' component each give
 * DBR_E_CORRUPT naming the file, the member and the offset.  Member sizes
 * are checked against the file before anything is read; pax and long name
 * records are read only up to max_header_size.
 *
 * Threads: a dbr_tar is immutable after open; every function below except
 * dbr_tar_close may run concurrently on one handle from any number of
 * threads.  It stays usable in a forked child.  dbr_tar_close drops the
 * caller's reference; files and VFS mounts made from the archive keep it
 * alive until they are closed.  With the default mapping, the file must
 * not be truncated in place while open (replacing it by rename is fine). */
typedef struct dbr_tar dbr_tar;

/* Defaults of dbr_tar_options. */
#define DBR_TAR_DEFAULT_MAX_MEMBERS 16777216
#define DBR_TAR_DEFAULT_MAX_HEADER_SIZE 1048576

/* Options for opening: fill with dbr_tar_options_init, then change
 * fields; NULL means the defaults.  Leave the reserved fields zero. */
typedef struct dbr_tar_options {
    /* 0 (default): map the file and copy members from the page cache;
     * 1: read every member with pread (a file that shrinks gives
     * DBR_E_IO instead of SIGBUS). */
    int use_pread;
    /* 0 (default): a tar whose structure breaks part-way (cut off, or a
     * damaged header after the first) fails to open; 1: it opens with the
     * members before the break, and dbr_tar_damage says what broke.  A tar
     * broken before its first member fails either way. */
    int keep_intact_prefix;
    /* Most members indexed; more is DBR_E_LIMIT.  Default 16 Mi. */
    uint64_t max_members;
    /* Largest pax extended header or GNU long name record read (their
     * declared size decides an allocation); larger is DBR_E_LIMIT.
     * Default 1 MiB. */
    uint64_t max_header_size;
    uint64_t reserved[4];
} dbr_tar_options;

/* One member.  Fixed layout (8-byte fields first); reserved fields keep it
 * stable as fields are added. */
typedef struct dbr_tar_entry {
    uint64_t size;          /* bytes of data (0 for directories)          */
    uint64_t offset;        /* file offset of the data                    */
    uint64_t header_offset; /* file offset of its first header block (a
                               pax or long name record, if it has one)   */
    int64_t mtime;          /* Unix seconds                               */
    const char *name;       /* NUL-terminated; valid while the tar is     */
    uint64_t name_len;      /* bytes of name, without the NUL             */
    uint32_t mode;          /* permission bits as stored                  */
    uint32_t is_dir;        /* 1 for a directory                          */
    uint64_t reserved[2];
} dbr_tar_entry;

DBR_API void dbr_tar_options_init(dbr_tar_options *opts);

/* Opens the tar at an OS path and scans its headers. */
DBR_API int dbr_tar_open(const char *path, const dbr_tar_options *opts,
                         dbr_tar **out);

/* Opens the tar at path with an index that dbr_tar_save_index produced
 * (index_len bytes), without scanning.  The index records the file's size
 * and modification time (ns): if the file changed since, or the index is
 * damaged or inconsistent with the file, this fails with DBR_E_CORRUPT and
 * the caller scans again (dbr_tar_open).  index NULL means scan. */
DBR_API int dbr_tar_open_indexed(const char *path, const dbr_tar_options *opts,
                                 const void *index, size_t index_len,
                                 dbr_tar **out);

/* The member index as bytes to keep beside the shard: *out (free with
 * dbr_free) receives *out_len bytes.  A damaged tar (dbr_tar_damage) has
 * no index to keep: DBR_E_CORRUPT, so every open scans it again and
 * reports the damage. */
DBR_API int dbr_tar_save_index(const dbr_tar *tar, void **out,
                               size_t *out_len);

/* Drops a reference (the opener's, or one taken by dbr_tar_retain). */
DBR_API void dbr_tar_close(dbr_tar *tar);

/* Takes one more reference to the tar (DBR_1.1); drop it with
 * dbr_tar_close.  Thread-safe. */
DBR_API void dbr_tar_retain(const dbr_tar *tar);

/* The path the tar was opened with. */
DBR_API const char *dbr_tar_path(const dbr_tar *tar);

/* NULL for an intact tar; for one opened with keep_intact_prefix whose
 * structure broke, the error that ended the index (naming the file, the
 * offset and the member before).  Valid while the tar is open. */
DBR_API const char *dbr_tar_damage(const dbr_tar *tar);

/* Number of members (regular files and directories), in archive order. */
DBR_API size_t dbr_tar_count(const dbr_tar *tar);

/* Fills out[0..count) with members first..first+count-1.  DBR_E_ARG if
 * the range passes the end. */
DBR_API int dbr_tar_entries(const dbr_tar *tar, size_t first, size_t count,
                            dbr_tar_entry *out);

/* All names, each followed by a NUL, in archive order, in memory allocated
 * by libdbr (release with dbr_free); *out_len is the byte count. */
DBR_API int dbr_tar_names(const dbr_tar *tar, char **out, size_t *out_len);

/* Index of the member named exactly name.  DBR_E_NOT_FOUND if none. */
DBR_API int dbr_tar_find(const dbr_tar *tar, const char *name, size_t *index);

/* Size of member index (0 for a bad index). */
DBR_API uint64_t dbr_tar_entry_size(const dbr_tar *tar, size_t index);

/* Reads member index whole into dst.  cap < size gives DBR_E_TOO_SMALL
 * with the size in *out_len; a directory gives DBR_E_IS_DIR. */
DBR_API int dbr_tar_read(const dbr_tar *tar, size_t index, void *dst,
                         size_t cap, size_t *out_len);

/* Reads n members in one call on up to `threads` threads (0 = one per
 * CPU): member indices[i] into dsts[i] (capacity caps[i]).  Per item (each
 * array may be NULL): out_lens[i] its length, statuses[i] its status,
 * messages + i * message_cap its error text ("" on success).  Returns
 * DBR_OK if every item succeeded, else the status of the first failed
 * item, with its message as dbr_last_error(). */
DBR_API int dbr_tar_read_many(const dbr_tar *tar, const size_t *indices,
                              size_t n, void *const *dsts, const size_t *caps,
                              size_t *out_lens, int threads, int *statuses,
                              char *messages, size_t message_cap);

/* Opens member index as a dbr_file: a window onto the tar file (no copy).
 * Directories give DBR_E_IS_DIR. */
DBR_API int dbr_tar_open_entry(const dbr_tar *tar, size_t index,
                               dbr_file **out);

/* Appends the tar as a VFS mount, like dbr_vfs_mount_zip: names are
 * normalised like VFS paths, a directory exists if a member names it or
 * lies below it, and the mount keeps the tar alive. */
DBR_API int dbr_vfs_mount_tar(dbr_vfs *vfs, dbr_tar *tar);

/* ---- JPEG ------------------------------------------------------------------ */

/* (jpeg.c: header probe, decode, crops; jpeg_batch.c: batches) */

/* jpeg_header.c: header probe; jpeg.c: decode; resize.c + jpeg_crop.c:
 * fused crops; jpeg_batch.c: batches.
 *
 * Threads: every call builds its own decompressor on its stack and heap, so
 * any number of threads may decode at once, also from one source buffer. */

/* Pixel layouts of decoded output, 8 bits per channel, interleaved. */
typedef enum dbr_pixel_format {
    DBR_PIXEL_RGB = 0,
    DBR_PIXEL_BGR = 1,
    DBR_PIXEL_GRAY = 2,
    DBR_PIXEL_RGBA = 3 /* alpha is 255 */
} dbr_pixel_format;

/* The colour space the JPEG stores, as libjpeg infers it (JFIF/Adobe
 * markers, component ids). */
typedef enum dbr_jpeg_colorspace {
    DBR_JPEG_CS_UNKNOWN = 0,
    DBR_JPEG_CS_GRAY = 1,
    DBR_JPEG_CS_YCBCR = 2,
    DBR_JPEG_CS_RGB = 3,
    DBR_JPEG_CS_CMYK = 4,
    DBR_JPEG_CS_YCCK = 5
} dbr_jpeg_colorspace;

/* 128 Mpixel (e.g. 16384 x 8192): a header claiming more is refused before
 * anything is allocated. */
#define DBR_JPEG_DEFAULT_MAX_PIXELS 134217728
/* Progressive scans; real files have about 10 (TurboJPEG's limit is 500). */
#define DBR_JPEG_DEFAULT_MAX_SCANS 500
/* dbr_jpeg_result.warnings: the data was corrupt and libjpeg recovered
 * (never set in strict mode, which fails instead). */
#define DBR_JPEG_WARN_CORRUPT 1

/* What a decode does with damaged data: the values of
 * dbr_jpeg_options.lenient (the field is named after its first use).
 * RECOVER (0, the default) accepts exactly what Pillow accepts: data that
 * libjpeg recovers from with a warning (extraneous bytes before a marker,
 * a stray FF 00 in the header, corrupt entropy codes) decodes, with
 * DBR_JPEG_WARN_CORRUPT set; data that ends before the last row
 * (truncation) is DBR_E_CORRUPT, as in Pillow without LOAD_TRUNCATED_IMAGES.
 * LENIENT (1) also decodes truncated data, the missing rows gray.
 * STRICT (2) refuses every warning (TurboJPEG's stop-on-warning).
 * The decision does not depend on the region or crop: a decode that stops
 * above damaged data still sees it.  For RECOVER that costs a scan for the
 * end marker after the last wanted row (an FF search, microseconds); only
 * scans that do not run into EOI, and every STRICT region, have the rest
 * of the entropy data decoded (without IDCT) to decide. */
#define DBR_JPEG_RECOVER 0
#define DBR_JPEG_LENIENT 1
#define DBR_JPEG_STRICT 2

/* What the header says, found without decoding. */
typedef struct dbr_jpeg_info {
    uint32_t width, height; /* as stored, before EXIF orientation      */
    int components;         /* 1, 3 or 4                               */
    int colorspace;         /* dbr_jpeg_colorspace                     */
    int progressive;        /* 1 for progressive (SOF2/SOF10)          */
    int orientation;        /* EXIF orientation 1..8; 1 if absent      */
    int arithmetic;         /* 1 for arithmetic coding (SOF9..SOF11)   */
    uint32_t reserved[7];
} dbr_jpeg_info;

/* Parses the markers up to the first scan: src must hold at least that
 * much.  DBR_E_CORRUPT for data that is not a JPEG, DBR_E_UNSUPPORTED for
 * lossless, 12-bit or DNL-sized images. */
DBR_API int dbr_jpeg_read_header(const void *src, size_t len,
                                 dbr_jpeg_info *out);

/* Decoding options.  All-zero bytes (or a NULL pointer) mean the defaults:
 * RGB, accurate, Pillow's acceptance (DBR_JPEG_RECOVER), stored
 * orientation, default limits, full size. */
typedef struct dbr_jpeg_options {
    int format;            /* dbr_pixel_format                               */
    int fast;              /* 1: fast integer IDCT, no fancy upsampling       */
    int lenient;           /* DBR_JPEG_RECOVER, _LENIENT or _STRICT (above)   */
    int apply_orientation; /* 1: rotate/flip by the EXIF orientation          */
    uint64_t max_pixels;   /* of the stored image; 0: the default            */
    int max_scans;         /* 0: DBR_JPEG_DEFAULT_MAX_SCANS                  */
    /* DCT-domain scaling by scale_num/scale_denom, rounded up to the next
     * multiple of 1/8 (1/8 .. 16/8); 0/0 means 1.  Output sides are
     * ceil(side * M / 8). */
    int scale_num, scale_denom;
    /* Region of interest in output pixels (after scaling and orientation);
     * roi_w == 0 means the whole image.  Rows above and blocks left of it
     * are skipped, rows below are never decoded. */
    uint32_t roi_x, roi_y, roi_w, roi_h;
    uint32_t reserved[8];
} dbr_jpeg_options;

/* What a decode produced (or would produce). */
typedef struct dbr_jpeg_result {
    uint32_t width, height, channels;
    uint32_t warnings; /* DBR_JPEG_WARN_* flags */
    uint32_t reserved[4];
} dbr_jpeg_result;

/* The output width, height and channels for opts, from the header alone. */
DBR_API int dbr_jpeg_output_size(const void *src, size_t len,
                                 const dbr_jpeg_options *opts,
                                 dbr_jpeg_result *out);

/* Decodes into dst: row y starts at dst + y * pitch (pitch 0 means
 * width * channels); cap is dst's size.  If cap is too small, returns
 * DBR_E_TOO_SMALL with the sizes in *out and decodes nothing.
 * CMYK and YCCK images are taken to hold Adobe's inverted CMYK (what
 * Photoshop and Pillow write) and give exactly Pillow's convert('RGB');
 * gray output from them is Pillow's convert('L') of that RGB. */
DBR_API int dbr_jpeg_decode(const void *src, size_t len,
                            const dbr_jpeg_options *opts, void *dst,
                            size_t pitch, size_t cap, dbr_jpeg_result *out);

/* How the fused crop picks its box (in displayed full-size pixels). */
typedef enum dbr_crop_mode {
    DBR_CROP_NONE = 0,   /* no crop, no resize: output must be out_w x out_h */
    DBR_CROP_RESIZE = 1, /* the whole image resized to out_w x out_h        */
    DBR_CROP_CENTER = 2, /* validation: resize the shorter side to
                            `shorter`, then take the centre out_w x out_h   */
    DBR_CROP_RANDOM = 3, /* torchvision RandomResizedCrop semantics          */
    DBR_CROP_BOX = 4     /* the box box_x, box_y, box_w, box_h              */
} dbr_crop_mode;

typedef enum dbr_interp {
    DBR_INTERP_BILINEAR = 0, /* triangle filter, widened when shrinking     */
    DBR_INTERP_AREA = 1      /* box filter: exact area average              */
} dbr_interp;

/* dbr_jpeg_crop.flip */
#define DBR_FLIP_NONE 0
#define DBR_FLIP_ALWAYS 1
#define DBR_FLIP_RANDOM 2

/* A crop box decoded at the smallest DCT scale that still covers the
 * target, from only the blocks under the box, then resized to
 * out_w x out_h.  Random choices come from a generator seeded by
 * (seed, index), so they are the same on every machine and thread count. */
typedef struct dbr_jpeg_crop {
    int mode;                 /* dbr_crop_mode                              */
    uint32_t out_w, out_h;
    int interp;               /* dbr_interp                                 */
    int flip;                 /* DBR_FLIP_*: horizontal flip                */
    uint64_t seed;
    /* DBR_CROP_RANDOM: area fraction and aspect ratio ranges; 0 means
     * torchvision's (0.08, 1) and (3/4, 4/3).  NaN, infinite or negative
     * values and decreasing ranges are DBR_E_ARG. */
    double scale_min, scale_max, ratio_min, ratio_max;
    /* DBR_CROP_CENTER: shorter side after resizing; 0 means
     * max(out_w, out_h), i.e. no margin. */
    uint32_t shorter;
    double box_x, box_y, box_w, box_h; /* DBR_CROP_BOX */
    uint32_t reserved[8];
} dbr_jpeg_crop;

/* The box (x, y, w, h in displayed full-size pixels) and flip (0/1) that
 * crop picks for item `index` of a width x height image: apply the same
 * transform to boxes or keypoints of that image. */
DBR_API int dbr_jpeg_crop_box(const dbr_jpeg_crop *crop, uint32_t width,
                              uint32_t height, uint64_t index, double *box,
                              int *flip);

/* Decodes one image through crop into dst (out_h rows of pitch bytes, 0 =
 * out_w * channels).  index only seeds the random choices. */
DBR_API int dbr_jpeg_decode_crop(const void *src, size_t len,
                                 const dbr_jpeg_options *opts,
                                 const dbr_jpeg_crop *crop, uint64_t index,
                                 void *dst, size_t pitch, size_t cap,
                                 dbr_jpeg_result *out);

/* Decodes n images, srcs[i] of lens[i] bytes, through crop (required: it
 * gives the slot size; DBR_CROP_NONE decodes images that must be exactly
 * out_w x out_h) into dst, an n x out_h x out_w x channels array of cap
 * bytes, on `threads` threads (0 = one per CPU).  opts' roi and scale must
 * be unset.  Item i is seeded with index first_index + i.
 * Per item (each array may be NULL): statuses[i] is its status; results[i]
 * its sizes and warnings; messages + i * message_cap its error text (NUL-
 * terminated, "" on success).  A failed item's slot is zero-filled.
 * Returns DBR_OK if every item succeeded, else the status of the first
 * failed item, with its message as dbr_last_error(). */
DBR_API int dbr_jpeg_decode_batch(size_t n, const void *const *srcs,
                                  const size_t *lens,
                                  const dbr_jpeg_options *opts,
                                  const dbr_jpeg_crop *crop,
                                  uint64_t first_index, void *dst, size_t cap,
                                  int threads, int *statuses,
                                  dbr_jpeg_result *results, char *messages,
                                  size_t message_cap);

/* The same for files: paths[i] is looked up in vfs (directories and
 * mounted archives), or opened as an OS path if vfs is NULL.  Each worker
 * reads its file itself, so reading overlaps decoding. */
DBR_API int dbr_jpeg_decode_files(const dbr_vfs *vfs, size_t n,
                                  const char *const *paths,
                                  const dbr_jpeg_options *opts,
                                  const dbr_jpeg_crop *crop,
                                  uint64_t first_index, void *dst, size_t cap,
                                  int threads, int *statuses,
                                  dbr_jpeg_result *results, char *messages,
                                  size_t message_cap);

/* The same for archive entries (DBR_1.1): item i is entry indices[i] of
 * zip.  Each worker reads its entry with dbr_zip_read (CRC checked as the
 * archive was opened) into a buffer it keeps for its next item, so reading
 * overlaps decoding and the compressed bytes never leave libdbr.  Failed
 * items' messages name the archive and the entry; an index past the end
 * is that item's DBR_E_ARG.  Safe to run concurrently with any other read
 * of zip; the call holds its own reference to zip while it runs. */
DBR_API int dbr_jpeg_decode_entries(const dbr_zip *zip, size_t n,
                                    const size_t *indices,
                                    const dbr_jpeg_options *opts,
                                    const dbr_jpeg_crop *crop,
                                    uint64_t first_index, void *dst,
                                    size_t cap, int threads, int *statuses,
                                    dbr_jpeg_result *results, char *messages,
                                    size_t message_cap);

/* The same for members of a tar (indices as in dbr_tar_entries): each
 * member is decoded where it lies in the tar's mapping, without a copy
 * (read into a worker's buffer when the tar uses pread).  Failed items'
 * messages name the tar and the member. */
DBR_API int dbr_jpeg_decode_tar(const dbr_tar *tar, size_t n,
                                const size_t *indices,
                                const dbr_jpeg_options *opts,
                                const dbr_jpeg_crop *crop,
                                uint64_t first_index, void *dst, size_t cap,
                                int threads, int *statuses,
                                dbr_jpeg_result *results, char *messages,
                                size_t message_cap);

/* Seekable JPEGs (jpeg_seekable.c, DBR_1.1).  dbr_jpeg_make_seekable
 * rewrites a JPEG losslessly through libjpeg's coefficient API (as jpegtran
 * -restart): the same DCT coefficients, quantisation tables and APPn/COM
 * markers, as one baseline scan with Huffman tables computed for the image
 * and a restart marker every k MCUs, k the smallest divisor of the MCUs
 * per row that is >= restart_mcus (0: DBR_JPEG_SEEKABLE_MCUS, chosen by
 * measurement; a row of a prime number of MCUs gets one marker per row).
 * Every decoder gives the original's pixels; dbr_jpeg_decode_crop and the
 * batch decoders then entropy-decode only the intervals under a crop (plus
 * one MCU of margin; same pixels as the ordinary path) when the file has
 * such markers, all present and in order, and its scan ends in EOI; not
 * in DBR_JPEG_STRICT mode (it must see every interval) nor for crops that
 * apply an EXIF rotation.  Damage in intervals a crop skips is not read,
 * so it sets no DBR_JPEG_WARN_CORRUPT.
 * Writes *out_len bytes to dst; if cap is smaller (or dst NULL) returns
 * DBR_E_TOO_SMALL with *out_len set to the size needed.  Damaged input
 * (any libjpeg warning, truncation included) is DBR_E_CORRUPT: a rewrite
 * would hide the damage.  Thread-safe. */
#define DBR_JPEG_SEEKABLE_MCUS 4
DBR_API int dbr_jpeg_make_seekable(const void *src, size_t len,
                                   uint32_t restart_mcus, void *dst,
                                   size_t cap, size_t *out_len);

/* ---- TFRecord and tf.train.Example ------------------------------------ */

/* (crc32c.c, tfrecord.c, example.c) */

/* CRC-32C (Castagnoli).  dbr_crc32c extends crc (0 to start) over len bytes;
 * it uses SSE4.2 or the ARMv8 CRC instructions when the CPU has them (see
 * dbr_crc32c_hardware), a table loop otherwise.  dbr_crc32c_mask is
 * TFRecord's rotate-and-add masking.  All three are pure and thread-safe. */
DBR_API uint32_t dbr_crc32c(uint32_t crc, const void *data, size_t len);
DBR_API uint32_t dbr_crc32c_mask(uint32_t crc);
DBR_API int dbr_crc32c_hardware(void);

/* Compression of a TFRecord file (values as in TensorFlow's options). */
typedef enum dbr_tfrecord_compression {
    DBR_TFRECORD_NONE = 0,
    DBR_TFRECORD_GZIP = 1,
    DBR_TFRECORD_ZLIB = 2
} dbr_tfrecord_compression;

/* A sequential reader of the records of one file (plain, GZIP or ZLIB).
 * The reader holds a reference to the file, so the caller may close the
 * file while the reader is in use.
 * max_record_size (0 = 1 GiB) bounds what a compressed record may claim;
 * for plain files the file size bounds it.  Truncation, a bad CRC or an
 * impossible length is DBR_E_CORRUPT with the file and the offset.
 *
 * Threads: one reader per thread; readers over one dbr_file may run
 * concurrently (each reads with pread at its own offset). */
typedef struct dbr_tfrecord_reader dbr_tfrecord_reader;

DBR_API int dbr_tfrecord_reader_open(const dbr_file *file, int compression,
                                     int verify_crc, uint64_t max_record_size,
                                     dbr_tfrecord_reader **out);
/* Drops a reference (the opener's or a retained one); the last one frees
 * the reader and drops its reference to the file. */
DBR_API void dbr_tfrecord_reader_close(dbr_tfrecord_reader *reader);

/* Takes one more reference to the reader (DBR_1.1); drop it with
 * dbr_tfrecord_reader_close.  Thread-safe (the reader itself is not). */
DBR_API void dbr_tfrecord_reader_retain(const dbr_tfrecord_reader *reader);

/* The next record: *data points into the reader's buffer and stays valid
 * until the next call on the reader; *offset (may be NULL) receives the
 * record's offset in the (decompressed) stream.  DBR_E_EOF at the end. */
DBR_API int dbr_tfrecord_reader_next(dbr_tfrecord_reader *reader,
                                     const void **data, size_t *len,
                                     uint64_t *offset);

/* Stream offset of the next record. */
DBR_API uint64_t dbr_tfrecord_reader_tell(const dbr_tfrecord_reader *reader);

/* Random access to the record at offset of a plain file: its data into dst.
 * With cap below the record size: DBR_E_TOO_SMALL and the size in
 * *out_len.  Thread-safe. */
DBR_API int dbr_tfrecord_read_at(const dbr_file *file, uint64_t offset,
                                 int verify_crc, void *dst, size_t cap,
                                 size_t *out_len);

/* Index of a file: *out_pairs (free with dbr_free) receives *out_count
 * pairs (offset, frame length), the frame being header + data + footer, as
 * in the `offset length` text indexes of the tfrecord package and DALI.
 * For plain files without verify_crc only the headers are read.  For
 * compressed files the offsets are positions in the decompressed stream
 * (they count records, they cannot seek).  Thread-safe. */
DBR_API int dbr_tfrecord_index(const dbr_file *file, int compression,
                               int verify_crc, uint64_t max_record_size,
                               uint64_t **out_pairs, size_t *out_count);

/* Framing for writers (tfrecord_frame.c): fills the 12-byte header (length
 * and its masked CRC-32C) and the 4-byte footer (masked CRC-32C of the
 * data) of a record of len bytes; the record is header, data, footer.
 * GZIP / ZLIB files are these frames compressed as one stream.  Pure and
 * thread-safe; DBR_E_ARG for NULL pointers. */
DBR_API int dbr_tfrecord_frame(const void *data, size_t len,
                               unsigned char header[12], unsigned char footer[4]);

/* tf.train.Example / SequenceExample parsing. */
typedef enum dbr_dtype {
    DBR_DTYPE_STRING = 0,
    DBR_DTYPE_FLOAT32 = 1,
    DBR_DTYPE_INT64 = 2,
    DBR_DTYPE_UINT8 = 3 /* one bytes value that fills a uint8 array */
} dbr_dtype;

typedef enum dbr_feature_kind {
    DBR_FEATURE_FIXED = 0,          /* FixedLenFeature                */
    DBR_FEATURE_VAR = 1,            /* VarLenFeature                  */
    DBR_FEATURE_FIXED_SEQUENCE = 2  /* FixedLenSequenceFeature        */
} dbr_feature_kind;

/* A feature spec.  Build it (single-threaded), then use it from any number
 * of threads: parsing never changes it. */
typedef struct dbr_example_parser dbr_example_parser;

/* sequence = 1 parses SequenceExample (context + feature lists). */
DBR_API int dbr_example_parser_create(int sequence, dbr_example_parser **out);
DBR_API void dbr_example_parser_free(dbr_example_parser *parser);

/* Adds a feature.  inner: values per record for FIXED (bytes for uint8),
 * values per row for FIXED_SEQUENCE.  in_feature_lists: the feature lives in
 * a SequenceExample's feature_lists.  default_value: inner values of the
 * dtype (NULL: the feature is required); for strings only its presence
 * matters (the binding fills the value in). */
DBR_API int dbr_example_parser_add(dbr_example_parser *parser, const char *key,
                                   int kind, int dtype, int in_feature_lists,
                                   size_t inner, const void *default_value,
                                   size_t default_len, int allow_missing);
DBR_API size_t dbr_example_parser_count(const dbr_example_parser *parser);

/* 1 if feature index writes straight into dbr_feature_out.dst (fixed
 * float32/int64/uint8), 0 if it fills the growable fields. */
DBR_API int dbr_example_parser_is_direct(const dbr_example_parser *parser,
                                         size_t index);

/* Where one feature of a batch of n records goes; one per parser feature.
 * Direct features: the caller sets dst to n * inner values.  Others:
 * libdbr appends the values (int64, float32, or the bytes of strings back
 * to back with each length in value_lengths) and sets counts[i], the number
 * of values of record i (-1: missing, use the default).  Release with
 * dbr_feature_out_clear.  Zero-initialise before use. */
typedef struct dbr_feature_out {
    void *dst;
    size_t dst_cap;
    void *values;
    size_t values_len, values_cap;
    uint64_t *value_lengths;
    size_t value_count, lengths_cap;
    int64_t *counts;
    size_t counts_cap;
} dbr_feature_out;

DBR_API void dbr_feature_out_clear(dbr_feature_out *outs, size_t count);

/* Parses n serialized records in one call, on up to `threads` threads
 * (0 = all CPUs; batches with variable features run on one), reporting
 * each record's outcome in the one batch shape; a message names the
 * feature.  A failed record takes nothing from the outputs: its direct
 * slots are zeroed and its counts are 0.  (DBR_1.1) */
DBR_API int dbr_example_parse_ex(const dbr_example_parser *parser,
                                 const void *const *records,
                                 const size_t *lens, size_t n,
                                 dbr_feature_out *outs, int threads,
                                 int *statuses, char *messages,
                                 size_t message_cap);

/* dbr_example_parse_ex without per-record outcomes; the error names the
 * record and the feature. */
DBR_API int dbr_example_parse(const dbr_example_parser *parser,
                              const void *const *records, const size_t *lens,
                              size_t n, dbr_feature_out *outs, int threads);

/* Reads n records of plain files by their index entries (record i: files[i],
 * offsets[i], frame_lengths[i]), checks the framing and CRCs, and parses
 * them like dbr_example_parse_ex: one call from disk to arrays, each
 * record's outcome in the one batch shape, its message naming the file and
 * the offset.  (DBR_1.1) */
DBR_API int dbr_tfrecord_parse_at_ex(const dbr_example_parser *parser,
                                     const dbr_file *const *files,
                                     const uint64_t *offsets,
                                     const uint64_t *frame_lengths, size_t n,
                                     int verify_crc, dbr_feature_out *outs,
                                     int threads, int *statuses, char *messages,
                                     size_t message_cap);

/* dbr_tfrecord_parse_at_ex without per-record outcomes. */
DBR_API int dbr_tfrecord_parse_at(const dbr_example_parser *parser,
                                  const dbr_file *const *files,
                                  const uint64_t *offsets,
                                  const uint64_t *frame_lengths, size_t n,
                                  int verify_crc, dbr_feature_out *outs,
                                  int threads);

/* The one seed derivation of libdbr and dareblopy: a new 64-bit seed from
 * seed and a path of count integers (for example epoch, stream, batch), so
 * independent streams never share a state by accident.  One step maps
 * (s, part) to the first SplitMix64 output from state
 * s * 0x9E3779B97F4A7C15 + part * 0xD1B54A32D192ED03 (mod 2^64); parts
 * chain left to right; count 0 returns seed.  Random crops seed image i of
 * a batch with dbr_seed_derive(crop seed, {first_index + i}, 1).  Pure and
 * thread-safe. */
DBR_API uint64_t dbr_seed_derive(uint64_t seed, const uint64_t *parts, size_t count);

/* A permutation of 0..n-1 into out[0..n), fixed by (seed, epoch): the
 * shuffle of dareblopy's datasets (SplitMix64 + Fisher-Yates, shuffle.c),
 * the same on every machine.  Pure and thread-safe. */
DBR_API int dbr_permutation(uint64_t n, uint64_t seed, uint64_t epoch, int64_t *out);

/* DBR_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* DBR_H */
