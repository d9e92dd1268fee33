/*
 * internal.h - what libdbr's own source files share and users never see.
 * Nothing here is exported: the linker map keeps only dbr_* of dbr.h.
 */
#ifndef DBR_INTERNAL_H
#define DBR_INTERNAL_H

#include "dbr.h"

#include <stdarg.h>
#include <stdint.h>

/* ---- errors (status.c) ---- */

/* Records a printf-style detail for dbr_last_error() and returns code, so
 * a failure reads `return dbr__fail(DBR_E_CORRUPT, "...", ...);`. */
int dbr__fail(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Maps an errno value to a status and records "<what> '<path>': strerror". */
int dbr__fail_errno(int err, const char *what, const char *path);

/* Copies this thread's last error into dst (always NUL-terminated); for
 * batch calls whose workers fail on other threads. */
void dbr__copy_last_error(char *dst, size_t cap);

/* strdup that is C99 and reports DBR_E_NOMEM through dbr__fail. */
char *dbr__strdup(const char *s);

/* ---- seeds (shuffle.c) ---- */

/* dbr_seed_derive(state, &part, 1): one step of the one seed derivation. */
uint64_t dbr__seed_step(uint64_t state, uint64_t part);

/* ---- files (file.c) ---- */

/* A file over the byte range [base, base+size) of fd.  If owns_fd, the fd is
 * closed with the file.  path is copied. */
int dbr__file_from_fd(int fd, int owns_fd, uint64_t base, uint64_t size,
                      const char *path, int64_t mtime, dbr_file **out);

/* A file over an fd just opened for reading, which it takes (closing it on
 * failure): directories are DBR_E_IS_DIR, and files that report size 0
 * (procfs) are read whole into memory.  path is copied. */
int dbr__file_from_open_fd(int fd, const char *path, dbr_file **out);

/* A file over malloc'd bytes; the file takes ownership of mem (also on
 * failure).  path is copied. */
int dbr__file_from_memory(void *mem, uint64_t size, const char *path,
                          int64_t mtime, dbr_file **out);

/* Ties an owner's lifetime to the file: release(owner) runs at close.  An
 * archive uses it to stay alive while entries opened from it are open. */
void dbr__file_set_owner(dbr_file *file, void *owner,
                         void (*release)(void *owner));

/* pread until cap bytes or end of file, retrying EINTR and short reads. */
int dbr__pread_full(int fd, void *dst, size_t cap, uint64_t offset,
                    size_t *out_len, const char *path);

/* ---- VFS mounts (vfs.c) ---- */

/* A growable list of names, for listing directories across mounts. */
typedef struct dbr__names {
    char **items;
    size_t count, cap;
} dbr__names;

int dbr__names_push(dbr__names *names, const char *name, size_t len);
void dbr__names_clear(dbr__names *names);

/* What a mount provides.  Paths passed in are already normalised (see
 * dbr_path_normalize); "" is the mount's root.  stat and open return
 * DBR_E_NOT_FOUND, without recording an error, when the path is absent, so
 * the VFS can try the next mount quietly. */
typedef struct dbr__mount_ops {
    int (*open)(void *impl, const char *path, dbr_file **out);
    int (*stat)(void *impl, const char *path, dbr_stat *out);
    /* Appends the names in dir (directories with a trailing '/'). */
    int (*list)(void *impl, const char *dir, dbr__names *names);
    void (*release)(void *impl);
} dbr__mount_ops;

/* Tests only: allow (1, the default) or forbid (0) openat2 for confined
 * directory mounts, so the user-space walk can be tested on any kernel;
 * returns 1 if the kernel has openat2 (not thread-safe). */
int dbr__vfs_allow_openat2(int allow);

/* Appends a mount; on success the VFS owns impl and calls ops->release. */
int dbr__vfs_mount(dbr_vfs *vfs, const dbr__mount_ops *ops, void *impl,
                   int is_dir);

/* An archive seen by a VFS mount (archive_vfs.c): its path for messages,
 * entry i's name and kind, opening and stat of entry i, and dropping the
 * mount's reference. */
typedef struct dbr__archive_ops {
    const char *(*path)(const void *archive);
    int (*entry)(const void *archive, size_t i, const char **name, size_t *len, int *is_dir);
    int (*open)(const void *archive, size_t i, dbr_file **out);
    int (*stat)(const void *archive, size_t i, uint64_t *size, int64_t *mtime);
    void (*release)(void *archive);
} dbr__archive_ops;

/* Mounts an archive of count entries.  The caller has taken a reference
 * for the mount; it is dropped through ops->release when the mount goes,
 * or at once if mounting fails. */
int dbr__vfs_mount_archive(dbr_vfs *vfs, const dbr__archive_ops *ops, void *archive,
                           size_t count);

/* ---- threads (pool.c) ---- */

/* Calls fn(ctx, i) for every i in [0, count) on up to `threads` threads
 * (0 = one per online CPU), the calling thread included.  Each item's
 * outcome is fn's business: it stores results and errors through ctx. */
void dbr__parallel_for(size_t count, int threads,
                       void (*fn)(void *ctx, size_t index), void *ctx);

/* Number of online CPUs (at least 1). */
int dbr__cpu_count(void);

/* The outcome of a batch as its caller reports it: every item's status
 * and message in the caller's arrays, and the failure of the
 * lowest-numbered failed item, whichever thread ran it (a worker's
 * dbr_last_error() is its own, so the detail is copied here). */
typedef struct dbr__batch_status {
    int lock;       /* spin lock: failures are rare, the critical part a copy */
    int rc;         /* DBR_OK, or the status of item `index`                   */
    size_t index;
    char msg[768];
    /* The caller's per-item arrays, each may be NULL (dbr.h's one shape for
     * batch outcomes): item i's status at statuses[i], its message at
     * messages + i * message_cap. */
    int *statuses;
    char *messages;
    size_t message_cap;
} dbr__batch_status;

#define DBR__BATCH_STATUS_INIT {0, DBR_OK, 0, {0}, NULL, NULL, 0}
#define DBR__BATCH_STATUS_ITEMS(statuses, messages, message_cap) \
    {0, DBR_OK, 0, {0}, (statuses), (messages), (message_cap)}

/* Records that item index failed with rc; call it on the worker right after
 * the failure, while dbr_last_error() still holds the detail. */
void dbr__batch_fail(dbr__batch_status *status, int rc, size_t index);

/* Records item index's outcome: its status, its message (this thread's
 * dbr_last_error() on failure, "" on success) and, on failure,
 * dbr__batch_fail.  Call it on the worker right after the item. */
void dbr__batch_item(dbr__batch_status *status, size_t index, int rc);

/* DBR_OK, or the recorded failure re-recorded on the calling thread (with
 * "batch item N: " before the detail when name_index is set). */
int dbr__batch_result(const dbr__batch_status *status, int name_index);

/* ---- ZIP archives (zip.c, zip_vfs.c) ---- */

/* The fd behind a file (-1 for memory-backed files) and the offset of the
 * file's byte 0 within it (file.c). */
int dbr__file_fd(const dbr_file *file, uint64_t *base);

/* Releases one reference to an archive, as dbr_zip_close does (a
 * dbr__file_set_owner release callback). */
void dbr__zip_release(void *zip);

/* Raw deflate of a whole buffer into exactly dst_len bytes (inflate.c,
 * libdeflate).  DBR_E_CORRUPT with *why set when the data is bad or decodes
 * to another size; dbr__inflate_whole_available() is 0 in builds without
 * libdeflate, where callers stream with zlib. */
int dbr__inflate_whole(const void *src, size_t src_len, void *dst, size_t dst_len,
                       const char **why);
int dbr__inflate_whole_available(void);

/* CRC-32 of ZIP/gzip (crc32.c), chaining like zlib's crc32: start at 0. */
uint32_t dbr__crc32(uint32_t crc, const void *data, size_t len);

/* The same over src while copying it to dst: one pass over memory. */
uint32_t dbr__crc32_copy(uint32_t crc, void *dst, const void *src, size_t len);

/* dbr__crc32 (dst NULL) or dbr__crc32_copy using at most the given fold
 * level (0 zlib, 1 PCLMULQDQ, 2 AVX-512), so tests can compare the paths. */
uint32_t dbr__crc32_limited(int max_level, uint32_t crc, void *dst, const void *src,
                            size_t len);

/* The hash of the name indexes (FNV-1a). */
uint64_t dbr__hash_bytes(const char *s, size_t n);

/* ---- tar archives (tar.c, tar_vfs.c) ---- */

/* Releases one reference to a tar, as dbr_tar_close does (a
 * dbr__file_set_owner release callback). */
void dbr__tar_release(void *tar);

/* Member index's size, and where its bytes lie in the tar's mapping (*data
 * NULL when the tar is read with pread: use dbr_tar_read). */
int dbr__tar_member_bytes(const dbr_tar *tar, size_t index, const void **data, size_t *len);

/* ---- TFRecord and Example (crc32c.c, tfrecord.c, example.c) ---- */

/* The table-driven CRC-32C, whatever the CPU (tests compare the paths). */
uint32_t dbr__crc32c_sw(uint32_t crc, const void *data, size_t len);

/* Checks a 12-byte record header at offset; *out_len gets the data length. */
int dbr__tfrecord_check_header(const unsigned char *h, const char *path, uint64_t offset,
                               uint64_t *out_len);
/* Checks data[0, len) against the masked CRC stored at data + len. */
int dbr__tfrecord_check_data(const unsigned char *data, uint64_t len, const char *path,
                             uint64_t offset);
/* Reads and checks the whole frame (header, data, footer) at offset. */
int dbr__tfrecord_frame_at(const dbr_file *file, uint64_t offset, uint64_t frame_len,
                           unsigned char *dst, int verify);

/* Bytes [start, start + len) of a record being parsed that were never read
 * into it: they were read straight into dst, the output slot of a uint8
 * feature, so the parser skips that copy (tfrecord.c's zero-copy reads). */
typedef struct dbr__hole {
    const unsigned char *start;
    size_t len;
    const unsigned char *dst;
} dbr__hole;

/* Parses one record into slot index of a batch of n; hole may be NULL. */
int dbr__example_parse_one(const dbr_example_parser *p, const void *rec, size_t len,
                           size_t index, size_t n, dbr_feature_out *outs, const dbr__hole *hole);
/* From the first avail bytes of a record of len bytes (an Example), finds
 * the bytes value of a fixed uint8 feature (of at least min_len bytes) that
 * the parser reads only to copy it into that feature's slot: 1 with the
 * feature index and the value's offset in the record, 0 if none is visible
 * in those bytes. */
int dbr__example_find_uint8(const dbr_example_parser *p, const unsigned char *rec,
                            size_t avail, size_t len, size_t min_len, size_t *feature,
                            size_t *offset);
/* Output slot (*bytes long) of feature for record index of n; NULL if outs
 * cannot take it (the parser then reports why). */
unsigned char *dbr__example_slot(const dbr_example_parser *p, size_t feature, size_t index,
                                 size_t n, const dbr_feature_out *outs, size_t *bytes);
/* Marks record index of a batch of n as failed in the outputs: its direct
 * slots zeroed, its counts 0 (dbr__example_parse_one does it itself; a
 * record whose frame failed to read needs it too). */
void dbr__example_drop_record(const dbr_example_parser *p, size_t index, size_t n,
                              dbr_feature_out *outs);
/* 1 if every feature writes straight into dst (batches may fan out). */
int dbr__example_all_direct(const dbr_example_parser *p);


/* ---- JPEG (jpeg.c) ---- */

/* A decode worked out from the header and options before any libjpeg
 * state exists: limits checked, scale in eighths, region in stored
 * coordinates. */
typedef struct dbr__jpeg_plan_t {
    dbr_jpeg_info info;
    int channels;
    int eighths;                   /* output side = ceil(side * eighths / 8) */
    int orientation;               /* applied; 1 when not asked for         */
    uint32_t scaled_w, scaled_h;   /* stored image after scaling            */
    uint32_t roi_x, roi_y, roi_w, roi_h; /* in stored, scaled coordinates   */
    uint32_t out_w, out_h;         /* what lands in dst                     */
} dbr__jpeg_plan_t;

int dbr__jpeg_plan(const void *src, size_t len, const dbr_jpeg_options *opts,
                   dbr__jpeg_plan_t *plan);

/* Where region row y goes; NULL once no more rows are wanted.  A row has
 * DBR__SINK_PAD writable bytes before and after it, so the decoder can
 * write libjpeg's block-aligned wider row in place, with no copy. */
typedef unsigned char *(*dbr__row_sink)(void *ctx, uint32_t y);
enum { DBR__SINK_PAD = 256 }; /* 64 pixels of 4 bytes: the widest iMCU */

/* Decodes per plan into dst (pitch already resolved and cap checked), or,
 * when sink is set (orientation 1 only), into the rows it hands out, in
 * order, stopping early when it returns NULL. */
int dbr__jpeg_decode_planned(const void *src, size_t len,
                             const dbr_jpeg_options *opts,
                             const dbr__jpeg_plan_t *plan, void *dst,
                             size_t pitch, dbr__row_sink sink, void *sink_ctx,
                             uint32_t *warnings);

/* DBR_OK, or DBR_E_ARG with the reason, for crop options (jpeg_crop.c). */
int dbr__jpeg_check_crop(const dbr_jpeg_crop *crop);

/* jpeg_intervals.c: for a JPEG whose restart interval divides its MCU
 * rows, a stream of just the intervals covering the full-size stored box
 * [x0, x1) x [y0, y1) plus one MCU of margin, in a malloc'd *sub whose
 * image starts at (*sub_x, *sub_y) of the original.  Returns 1, or 0 (and
 * *sub NULL) if the image does not qualify: decode the original then. */
int dbr__jpeg_seek_box(const void *src, size_t len, uint32_t x0, uint32_t y0, uint32_t x1,
                       uint32_t y1, unsigned char **sub, size_t *sub_len, uint32_t *sub_x,
                       uint32_t *sub_y);

/* ceil(side * eighths / 8): libjpeg's size for a scale of eighths/8. */
uint32_t dbr__jpeg_scaled(uint32_t side, int eighths);

/* ---- resizing (resize.c) ---- */

/* Resamples the box (bx, by, bw, bh) of src (sw x sh, ch channels) to
 * dst (dw x dh) with a dbr_interp filter, mirrored left-right if flip. */
int dbr__resize(const unsigned char *src, uint32_t sw, uint32_t sh,
                size_t spitch, double bx, double by, double bw, double bh,
                unsigned char *dst, uint32_t dw, uint32_t dh, size_t dpitch,
                int ch, int interp, int flip);

/* The same, streaming: source rows 0, 1, ... of the sw x sh region are
 * written into the buffers dbr__resizer_row hands out (NULL: no more rows
 * needed), then dbr__resizer_finish writes the last output rows. */
typedef struct dbr__resizer dbr__resizer;
int dbr__resizer_new(uint32_t sw, uint32_t sh, double bx, double by, double bw,
                     double bh, unsigned char *dst, uint32_t dw, uint32_t dh,
                     size_t dpitch, int ch, int interp, int flip, dbr__resizer **out);
unsigned char *dbr__resizer_row(dbr__resizer *r, uint32_t y);
void dbr__resizer_finish(dbr__resizer *r);
void dbr__resizer_free(dbr__resizer *r);
/* Tests only: caps the resize passes' SIMD at a level (0 scalar, 1 SSE2 and
 * SSSE3, 2 AVX2; the default), all of which must give the same bytes;
 * returns the previous cap (not thread-safe). */
int dbr__resize_set_simd(int level);

#endif /* DBR_INTERNAL_H */
