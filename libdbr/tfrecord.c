/* tfrecord.c - TFRecord framing: reading records from a dbr_file.
 *
 * A record is: uint64 length (little endian), uint32 masked CRC-32C of those
 * 8 bytes, length bytes of data, uint32 masked CRC-32C of the data.  Files
 * may be plain, or one GZIP / ZLIB stream of such records, inflated here a
 * window at a time so memory stays bounded by the largest record.
 *
 * The streaming reader reads with pread at its own offset, so several
 * readers may share one dbr_file; random access (dbr_tfrecord_read_at) needs
 * only the file and is safe from any thread. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <zlib.h>

#define HEADER 12
#define FOOTER 4
#define CHUNK (1u << 20) /* bytes per pread / inflate step */
#define DEFAULT_MAX_RECORD ((uint64_t)1 << 30)
#define PREFIX 1024               /* bytes read first to find a large uint8 value */
#define MIN_SPLIT (16u << 10)     /* smaller values are copied: not worth a split */
#define MAX_SCRATCH 64            /* most threads reading one batch at once */

struct dbr_tfrecord_reader {
    int refs;           /* atomic: the opener plus every retain               */
    dbr_file *file;     /* a reference of the reader's own                    */
    int compression, verify;
    uint64_t max_record;
    uint64_t raw_pos; /* next byte of the file to read                    */
    uint64_t pos;     /* stream offset of the next record (decompressed)   */
    unsigned char *buf; /* decoded bytes; unread ones are [off, len)       */
    size_t cap, len, off;
    unsigned char *in; /* compressed input (GZIP / ZLIB only)             */
    z_stream zs;
    int z_ready, z_done;
};

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static const char *comp_name(int c)
{
    return c == DBR_TFRECORD_GZIP ? "GZIP" : c == DBR_TFRECORD_ZLIB ? "ZLIB" : "NONE";
}

int dbr__tfrecord_check_header(const unsigned char *h, const char *path, uint64_t offset,
                               uint64_t *out_len)
{
    uint64_t len = le64(h);
    if (dbr_crc32c_mask(dbr_crc32c(0, h, 8)) != le32(h + 8)) {
        /* A compressed file read as plain fails here, at its first header:
         * name the compression its first bytes announce (gzip's magic; a
         * zlib header is CMF 0x78 with CMF*256+FLG a multiple of 31). */
        const char *packed = offset != 0 ? NULL
                             : h[0] == 0x1f && h[1] == 0x8b ? "GZIP"
                             : h[0] == 0x78 && (h[0] * 256 + h[1]) % 31 == 0 ? "ZLIB"
                                                                              : NULL;
        if (packed)
            return dbr__fail(DBR_E_CORRUPT,
                             "TFRecord '%s' is %s-compressed: read it with that compression "
                             "(a TFRecord shard must be uncompressed: decompress it first)",
                             path, packed);
        return dbr__fail(DBR_E_CORRUPT,
                         "TFRecord '%s': the length of the record at offset %llu fails its "
                         "CRC-32C (corrupt, or not a TFRecord file, or compressed: pass the "
                         "right compression)", path, (unsigned long long)offset);
    }
    *out_len = len;
    return DBR_OK;
}

int dbr__tfrecord_check_data(const unsigned char *data, uint64_t len, const char *path,
                             uint64_t offset)
{
    if (dbr_crc32c_mask(dbr_crc32c(0, data, (size_t)len)) != le32(data + len))
        return dbr__fail(DBR_E_CORRUPT,
                         "TFRecord '%s': the data of the record at offset %llu (%llu bytes) "
                         "fails its CRC-32C", path, (unsigned long long)offset,
                         (unsigned long long)len);
    return DBR_OK;
}

int dbr_tfrecord_reader_open(const dbr_file *file, int compression, int verify_crc,
                             uint64_t max_record_size, dbr_tfrecord_reader **out)
{
    if (!file || !out)
        return dbr__fail(DBR_E_ARG, "dbr_tfrecord_reader_open: NULL argument");
    if (compression < DBR_TFRECORD_NONE || compression > DBR_TFRECORD_ZLIB)
        return dbr__fail(DBR_E_ARG, "TFRecord '%s': compression %d is not NONE (0), GZIP (1) "
                         "or ZLIB (2)", dbr_file_path(file), compression);
    dbr_tfrecord_reader *r = calloc(1, sizeof *r);
    if (!r)
        return dbr__fail(DBR_E_NOMEM, "out of memory opening TFRecord '%s'", dbr_file_path(file));
    r->refs = 1;
    r->compression = compression;
    r->verify = verify_crc;
    r->max_record = max_record_size ? max_record_size : DEFAULT_MAX_RECORD;
    if (compression != DBR_TFRECORD_NONE) {
        r->in = malloc(CHUNK);
        if (!r->in || inflateInit2(&r->zs, compression == DBR_TFRECORD_GZIP ? 16 + 15 : 15) != Z_OK) {
            free(r->in);
            free(r);
            return dbr__fail(DBR_E_NOMEM, "out of memory opening TFRecord '%s'",
                             dbr_file_path(file));
        }
        r->z_ready = 1;
    }
    dbr_file_retain(file);
    r->file = (dbr_file *)file;
    *out = r;
    return DBR_OK;
}

void dbr_tfrecord_reader_retain(const dbr_tfrecord_reader *r)
{
    if (r)
        __atomic_fetch_add(&((dbr_tfrecord_reader *)r)->refs, 1, __ATOMIC_RELAXED);
}

void dbr_tfrecord_reader_close(dbr_tfrecord_reader *r)
{
    if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (r->z_ready)
        inflateEnd(&r->zs);
    dbr_file_close(r->file);
    free(r->in);
    free(r->buf);
    free(r);
}

/* Room for at least `more` bytes after len, compacting first; the buffer
 * only doubles, so it never outgrows twice the data actually decoded. */
static int reserve(dbr_tfrecord_reader *r, size_t more)
{
    if (r->off) {
        memmove(r->buf, r->buf + r->off, r->len - r->off);
        r->len -= r->off;
        r->off = 0;
    }
    if (r->cap - r->len >= more)
        return DBR_OK;
    size_t cap = r->cap ? r->cap : CHUNK;
    while (cap - r->len < more)
        cap *= 2;
    unsigned char *b = realloc(r->buf, cap);
    if (!b)
        return dbr__fail(DBR_E_NOMEM, "TFRecord '%s': out of memory for a %zu-byte buffer",
                         dbr_file_path(r->file), cap);
    r->buf = b;
    r->cap = cap;
    return DBR_OK;
}

/* Decodes more bytes into buf; *got = 0 means the stream ended. */
static int refill(dbr_tfrecord_reader *r, size_t want, size_t *got)
{
    const char *path = dbr_file_path(r->file);
    size_t step = want > CHUNK ? want : CHUNK;
    /* Grow gradually for compressed data: a claimed length is not trusted. */
    if (r->compression != DBR_TFRECORD_NONE && step > r->cap && r->cap)
        step = r->cap;
    int rc = reserve(r, step);
    if (rc != DBR_OK)
        return rc;
    size_t room = r->cap - r->len;
    *got = 0;
    if (r->compression == DBR_TFRECORD_NONE) {
        rc = dbr_file_pread(r->file, r->buf + r->len, room, r->raw_pos, got);
        r->raw_pos += *got;
        r->len += *got;
        return rc;
    }
    while (*got == 0 && !r->z_done) {
        if (r->zs.avail_in == 0) {
            size_t n = 0;
            rc = dbr_file_pread(r->file, r->in, CHUNK, r->raw_pos, &n);
            if (rc != DBR_OK)
                return rc;
            if (n == 0)
                return dbr__fail(DBR_E_CORRUPT, "TFRecord '%s' (%s): the compressed stream "
                                 "is truncated at file offset %llu", path,
                                 comp_name(r->compression), (unsigned long long)r->raw_pos);
            r->raw_pos += n;
            r->zs.next_in = r->in;
            r->zs.avail_in = (uInt)n;
        }
        r->zs.next_out = r->buf + r->len;
        r->zs.avail_out = (uInt)(room > 0x40000000u ? 0x40000000u : room);
        uInt before = r->zs.avail_out;
        int z = inflate(&r->zs, Z_NO_FLUSH);
        *got = before - r->zs.avail_out;
        r->len += *got;
        if (z == Z_STREAM_END) {
            /* GZIP files may hold several members back to back. */
            int more = r->compression == DBR_TFRECORD_GZIP &&
                       (r->zs.avail_in > 0 || r->raw_pos < dbr_file_size(r->file));
            if (more && inflateReset(&r->zs) == Z_OK)
                continue;
            r->z_done = 1;
        } else if (z != Z_OK && z != Z_BUF_ERROR) {
            return dbr__fail(DBR_E_CORRUPT, "TFRecord '%s' (%s): bad compressed data near file "
                             "offset %llu: %s", path, comp_name(r->compression),
                             (unsigned long long)(r->raw_pos - r->zs.avail_in),
                             r->zs.msg ? r->zs.msg : "inflate failed");
        }
    }
    return DBR_OK;
}

/* Makes `need` unread bytes available, or as many as the stream has. */
static int fill(dbr_tfrecord_reader *r, uint64_t need, size_t *avail)
{
    while ((uint64_t)(r->len - r->off) < need) {
        size_t got;
        int rc = refill(r, (size_t)(need - (r->len - r->off)), &got);
        if (rc != DBR_OK)
            return rc;
        if (got == 0)
            break;
    }
    *avail = r->len - r->off;
    return DBR_OK;
}

int dbr_tfrecord_reader_next(dbr_tfrecord_reader *r, const void **data, size_t *len,
                             uint64_t *offset)
{
    if (!r || !data || !len)
        return dbr__fail(DBR_E_ARG, "dbr_tfrecord_reader_next: NULL argument");
    const char *path = dbr_file_path(r->file);
    size_t avail;
    int rc = fill(r, HEADER, &avail);
    if (rc != DBR_OK)
        return rc;
    if (avail == 0)
        return dbr__fail(DBR_E_EOF, "TFRecord '%s': end of file", path);
    if (avail < HEADER)
        return dbr__fail(DBR_E_CORRUPT, "TFRecord '%s' is truncated: %zu stray bytes at offset "
                         "%llu where a 12-byte record header should be", path, avail,
                         (unsigned long long)r->pos);
    uint64_t n = 0;
    rc = dbr__tfrecord_check_header(r->buf + r->off, path, r->pos, &n);
    if (rc != DBR_OK)
        return rc;
    uint64_t limit = r->compression == DBR_TFRECORD_NONE
                         ? dbr_file_size(r->file) - r->pos - HEADER
                         : r->max_record;
    if (n > limit || n > SIZE_MAX - HEADER - FOOTER)
        return dbr__fail(DBR_E_CORRUPT, "TFRecord '%s': the record at offset %llu claims %llu "
                         "bytes, more than %s (%llu)", path, (unsigned long long)r->pos,
                         (unsigned long long)n,
                         r->compression == DBR_TFRECORD_NONE ? "the rest of the file"
                                                             : "max_record_size",
                         (unsigned long long)limit);
    rc = fill(r, HEADER + n + FOOTER, &avail);
    if (rc != DBR_OK)
        return rc;
    if (avail < HEADER + n + FOOTER)
        return dbr__fail(DBR_E_CORRUPT, "TFRecord '%s' is truncated: the record at offset %llu "
                         "needs %llu bytes, the file ends after %zu", path,
                         (unsigned long long)r->pos, (unsigned long long)(HEADER + n + FOOTER),
                         avail);
    unsigned char *rec = r->buf + r->off + HEADER;
    if (r->verify && (rc = dbr__tfrecord_check_data(rec, n, path, r->pos)) != DBR_OK)
        return rc;
    *data = rec;
    *len = (size_t)n;
    if (offset)
        *offset = r->pos;
    r->off += HEADER + n + FOOTER;
    r->pos += HEADER + n + FOOTER;
    return DBR_OK;
}

uint64_t dbr_tfrecord_reader_tell(const dbr_tfrecord_reader *r) { return r ? r->pos : 0; }

/* preadv until every iovec is full, retrying EINTR and short reads; *got
 * receives the bytes read (less only at end of file). */
static int preadv_full(int fd, struct iovec *iov, int count, uint64_t offset, size_t *got,
                       const char *path)
{
    *got = 0;
    while (count > 0) {
        ssize_t r = preadv(fd, iov, count, (off_t)offset);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return dbr__fail_errno(errno, "reading", path);
        }
        if (r == 0)
            return DBR_OK;
        *got += (size_t)r;
        offset += (uint64_t)r;
        while (count > 0 && (size_t)r >= iov->iov_len) {
            r -= (ssize_t)iov->iov_len;
            iov++;
            count--;
        }
        if (count > 0) {
            iov->iov_base = (char *)iov->iov_base + r;
            iov->iov_len -= (size_t)r;
        }
    }
    return DBR_OK;
}

/* Checks the header of a frame read into buf against the index's length. */
static int check_frame(const unsigned char *buf, size_t got, const char *path, uint64_t offset,
                       uint64_t frame_len)
{
    if (got < frame_len || frame_len < HEADER + FOOTER)
        return dbr__fail(DBR_E_CORRUPT, "TFRecord '%s': the record at offset %llu is truncated "
                         "(%zu of %llu bytes; is the index stale?)", path,
                         (unsigned long long)offset, got, (unsigned long long)frame_len);
    uint64_t n = 0;
    int rc = dbr__tfrecord_check_header(buf, path, offset, &n);
    if (rc != DBR_OK)
        return rc;
    if (n != frame_len - HEADER - FOOTER)
        return dbr__fail(DBR_E_CORRUPT, "TFRecord '%s': the record at offset %llu holds %llu "
                         "bytes, but the index says %llu (rebuild the index)", path,
                         (unsigned long long)offset, (unsigned long long)n,
                         (unsigned long long)(frame_len - HEADER - FOOTER));
    return DBR_OK;
}

int dbr__tfrecord_frame_at(const dbr_file *file, uint64_t offset, uint64_t frame_len,
                           unsigned char *dst, int verify)
{
    const char *path = dbr_file_path(file);
    size_t got;
    int rc = dbr_file_pread(file, dst, (size_t)frame_len, offset, &got);
    if (rc == DBR_OK)
        rc = check_frame(dst, got, path, offset, frame_len);
    if (rc != DBR_OK)
        return rc;
    uint64_t n = frame_len - HEADER - FOOTER;
    return verify ? dbr__tfrecord_check_data(dst + HEADER, n, path, offset) : DBR_OK;
}

int dbr_tfrecord_read_at(const dbr_file *file, uint64_t offset, int verify_crc, void *dst,
                         size_t cap, size_t *out_len)
{
    if (!file || !out_len || (!dst && cap))
        return dbr__fail(DBR_E_ARG, "dbr_tfrecord_read_at: NULL argument");
    const char *path = dbr_file_path(file);
    uint64_t size = dbr_file_size(file);
    unsigned char h[HEADER], f[FOOTER];
    size_t got;
    int rc = dbr_file_pread(file, h, HEADER, offset, &got);
    if (rc != DBR_OK)
        return rc;
    if (got < HEADER)
        return dbr__fail(DBR_E_CORRUPT, "TFRecord '%s': no record header at offset %llu (the "
                         "file has %llu bytes)", path, (unsigned long long)offset,
                         (unsigned long long)size);
    uint64_t n = 0;
    if ((rc = dbr__tfrecord_check_header(h, path, offset, &n)) != DBR_OK)
        return rc;
    if (n > size - offset - HEADER || size - offset - HEADER - n < FOOTER)
        return dbr__fail(DBR_E_CORRUPT, "TFRecord '%s' is truncated: the record at offset %llu "
                         "claims %llu bytes, the file ends first", path,
                         (unsigned long long)offset, (unsigned long long)n);
    *out_len = (size_t)n;
    if (cap < n)
        return dbr__fail(DBR_E_TOO_SMALL, "TFRecord '%s': the record at offset %llu needs %llu "
                         "bytes, the buffer has %zu", path, (unsigned long long)offset,
                         (unsigned long long)n, cap);
    if ((rc = dbr_file_pread(file, dst, (size_t)n, offset + HEADER, &got)) != DBR_OK ||
        (rc = dbr_file_pread(file, f, FOOTER, offset + HEADER + n, &got)) != DBR_OK)
        return rc;
    if (verify_crc &&
        dbr_crc32c_mask(dbr_crc32c(0, dst, (size_t)n)) != le32(f))
        return dbr__fail(DBR_E_CORRUPT, "TFRecord '%s': the data of the record at offset %llu "
                         "(%llu bytes) fails its CRC-32C", path, (unsigned long long)offset,
                         (unsigned long long)n);
    return DBR_OK;
}

/* Grows a (offset, frame length) pair array. */
static int push_pair(uint64_t **pairs, size_t *count, size_t *cap, uint64_t off, uint64_t len)
{
    if (*count == *cap) {
        size_t c = *cap ? *cap * 2 : 1024;
        uint64_t *p = realloc(*pairs, c * 2 * sizeof **pairs);
        if (!p)
            return dbr__fail(DBR_E_NOMEM, "out of memory indexing a TFRecord file");
        *pairs = p;
        *cap = c;
    }
    (*pairs)[2 * *count] = off;
    (*pairs)[2 * *count + 1] = len;
    (*count)++;
    return DBR_OK;
}

int dbr_tfrecord_index(const dbr_file *file, int compression, int verify_crc,
                       uint64_t max_record_size, uint64_t **out_pairs, size_t *out_count)
{
    if (!file || !out_pairs || !out_count)
        return dbr__fail(DBR_E_ARG, "dbr_tfrecord_index: NULL argument");
    uint64_t *pairs = NULL;
    size_t count = 0, cap = 0;
    int rc = DBR_OK;
    if (compression == DBR_TFRECORD_NONE && !verify_crc) {
        /* Headers only: one small pread per record, data never touched. */
        const char *path = dbr_file_path(file);
        uint64_t size = dbr_file_size(file), off = 0;
        while (rc == DBR_OK && off < size) {
            unsigned char h[HEADER];
            size_t got;
            uint64_t n = 0;
            if ((rc = dbr_file_pread(file, h, HEADER, off, &got)) != DBR_OK)
                break;
            if (got < HEADER) {
                rc = dbr__fail(DBR_E_CORRUPT, "TFRecord '%s' is truncated: %zu stray bytes at "
                               "offset %llu", path, got, (unsigned long long)off);
                break;
            }
            if ((rc = dbr__tfrecord_check_header(h, path, off, &n)) != DBR_OK)
                break;
            if (n > size - off - HEADER || size - off - HEADER - n < FOOTER) {
                rc = dbr__fail(DBR_E_CORRUPT, "TFRecord '%s' is truncated: the record at "
                               "offset %llu claims %llu bytes, the file ends first", path,
                               (unsigned long long)off, (unsigned long long)n);
                break;
            }
            rc = push_pair(&pairs, &count, &cap, off, HEADER + n + FOOTER);
            off += HEADER + n + FOOTER;
        }
    } else {
        dbr_tfrecord_reader *r = NULL;
        rc = dbr_tfrecord_reader_open(file, compression, verify_crc, max_record_size, &r);
        while (rc == DBR_OK) {
            const void *d;
            size_t n;
            uint64_t off;
            rc = dbr_tfrecord_reader_next(r, &d, &n, &off);
            if (rc == DBR_OK)
                rc = push_pair(&pairs, &count, &cap, off, HEADER + (uint64_t)n + FOOTER);
        }
        if (rc == DBR_E_EOF)
            rc = DBR_OK;
        dbr_tfrecord_reader_close(r);
    }
    if (rc != DBR_OK) {
        free(pairs);
        return rc;
    }
    *out_pairs = pairs;
    *out_count = count;
    return DBR_OK;
}

/* ---- reading and parsing a batch of indexed records ---- */

/* A buffer that one item at a time holds (busy is taken atomically). */
typedef struct scratch {
    unsigned char *data;
    size_t cap;
    int busy;
} scratch;

typedef struct parse_batch {
    const dbr_example_parser *p;
    const dbr_file *const *files;
    const uint64_t *offsets, *frame_lens;
    size_t n;
    int verify;
    dbr_feature_out *outs;
    dbr__batch_status status;
    /* Frame buffers, one per thread that can run at once, kept for the
     * whole batch: a fresh buffer per record would be fresh pages per
     * record, each faulted in by the kernel. */
    scratch bufs[MAX_SCRATCH];
} parse_batch;

static scratch *take_scratch(parse_batch *b)
{
    for (;;) /* fewer items run at once than there are buffers: one is free */
        for (size_t k = 0; k < MAX_SCRATCH; k++)
            if (!__atomic_exchange_n(&b->bufs[k].busy, 1, __ATOMIC_ACQUIRE))
                return &b->bufs[k];
}

/* Reads a frame into buf (frame_len bytes, allocated), with the bytes of
 * one large uint8 value read by the kernel straight into their output slot
 * rather than into buf: the copy out of the page cache is then the only
 * copy, and the CRC runs over the slot while it is still in cache.  buf's
 * bytes under the value stay unread; *hole says where they are.  Returns 0
 * (and reads nothing) when the record does not qualify: too small, not a
 * plain file, or no such value within its first PREFIX bytes. */
static int read_split(parse_batch *b, size_t i, unsigned char *buf, dbr__hole *hole, int *rc)
{
    const dbr_file *file = b->files[i];
    const char *path = dbr_file_path(file);
    uint64_t offset = b->offsets[i], frame = b->frame_lens[i], base;
    int fd = dbr__file_fd(file, &base);
    size_t got, k, at;
    if (fd < 0 || frame < PREFIX + MIN_SPLIT || offset > dbr_file_size(file) - frame)
        return 0;
    if ((*rc = dbr_file_pread(file, buf, PREFIX, offset, &got)) != DBR_OK)
        return 1;
    if (got < PREFIX ||
        !dbr__example_find_uint8(b->p, buf + HEADER, PREFIX - HEADER, (size_t)frame - HEADER - FOOTER,
                                 MIN_SPLIT, &k, &at))
        return 0;
    size_t len; /* the value fills its slot exactly */
    unsigned char *slot = dbr__example_slot(b->p, k, i, b->n, b->outs, &len);
    if (!slot)
        return 0;
    if ((*rc = check_frame(buf, (size_t)frame, path, offset, frame)) != DBR_OK)
        return 1;
    /* Frame positions: [0, PREFIX) is read; the value is [v, v + len). */
    size_t v = HEADER + at, done = 0;
    struct iovec iov[3];
    int count = 0;
    if (v > PREFIX) {
        iov[count].iov_base = buf + PREFIX;
        iov[count++].iov_len = v - PREFIX;
    } else {
        done = PREFIX - v; /* the value's first bytes came with the prefix */
        memcpy(slot, buf + v, done);
    }
    iov[count].iov_base = slot + done;
    iov[count++].iov_len = len - done;
    iov[count].iov_base = buf + v + len;
    iov[count++].iov_len = (size_t)frame - v - len;
    /* Either way the rest of the frame starts right after the prefix. */
    if ((*rc = preadv_full(fd, iov, count, base + offset + PREFIX, &got, path)) != DBR_OK)
        return 1;
    if (got < (size_t)frame - PREFIX) {
        *rc = check_frame(buf, PREFIX + got, path, offset, frame);
        return 1;
    }
    if (b->verify) {
        uint64_t n = frame - HEADER - FOOTER;
        uint32_t crc = dbr_crc32c(0, buf + HEADER, v - HEADER);
        crc = dbr_crc32c(crc, slot, len);
        crc = dbr_crc32c(crc, buf + v + len, (size_t)n - (v - HEADER) - len);
        if (dbr_crc32c_mask(crc) != le32(buf + HEADER + n)) {
            *rc = dbr__fail(DBR_E_CORRUPT, "TFRecord '%s': the data of the record at offset "
                            "%llu (%llu bytes) fails its CRC-32C", path,
                            (unsigned long long)offset, (unsigned long long)n);
            return 1;
        }
    }
    hole->start = buf + v;
    hole->len = len;
    hole->dst = slot;
    return 1;
}

static void read_parse_item(void *ctx, size_t i)
{
    parse_batch *b = ctx;
    const dbr_file *file = b->files[i];
    uint64_t frame = b->frame_lens[i];
    int rc = DBR_OK;
    scratch *sc = take_scratch(b);
    dbr__hole hole = {NULL, 0, NULL};
    if (frame > dbr_file_size(file) || frame < HEADER + FOOTER) {
        rc = dbr__fail(DBR_E_CORRUPT, "TFRecord '%s': the index gives the record at offset %llu "
                       "a length of %llu bytes, impossible for this file (rebuild the index)",
                       dbr_file_path(file), (unsigned long long)b->offsets[i],
                       (unsigned long long)frame);
    } else if (sc->cap < frame) {
        free(sc->data);
        sc->cap = 0;
        if (!(sc->data = malloc((size_t)frame)))
            rc = dbr__fail(DBR_E_NOMEM, "out of memory reading a %llu-byte record",
                           (unsigned long long)frame);
        else
            sc->cap = (size_t)frame;
    }
    unsigned char *buf = sc->data;
    if (rc == DBR_OK && !read_split(b, i, buf, &hole, &rc))
        rc = dbr__tfrecord_frame_at(file, b->offsets[i], frame, buf, b->verify);
    if (rc != DBR_OK)
        dbr__example_drop_record(b->p, i, b->n, b->outs);
    if (rc == DBR_OK &&
        (rc = dbr__example_parse_one(b->p, buf + HEADER, (size_t)frame - HEADER - FOOTER, i,
                                     b->n, b->outs, hole.start ? &hole : NULL)) != DBR_OK) {
        char detail[512];
        dbr__copy_last_error(detail, sizeof detail);
        rc = dbr__fail(rc, "TFRecord '%s', record at offset %llu: %s", dbr_file_path(file),
                       (unsigned long long)b->offsets[i], detail);
    }
    __atomic_store_n(&sc->busy, 0, __ATOMIC_RELEASE);
    dbr__batch_item(&b->status, i, rc);
}

int dbr_tfrecord_parse_at_ex(const dbr_example_parser *parser, const dbr_file *const *files,
                             const uint64_t *offsets, const uint64_t *frame_lengths, size_t n,
                             int verify_crc, dbr_feature_out *outs, int threads,
                             int *statuses, char *messages, size_t message_cap)
{
    if (!parser || (n && (!files || !offsets || !frame_lengths || !outs)))
        return dbr__fail(DBR_E_ARG, "dbr_tfrecord_parse_at: NULL argument");
    for (size_t i = 0; i < n; i++)
        if (!files[i])
            return dbr__fail(DBR_E_ARG, "dbr_tfrecord_parse_at: file %zu is NULL", i);
    parse_batch batch = {parser, files, offsets, frame_lengths, n, verify_crc, outs,
                         DBR__BATCH_STATUS_ITEMS(statuses, messages, message_cap),
                         {{NULL, 0, 0}}}, *b = &batch;
    if (threads <= 0)
        threads = dbr__cpu_count();
    if (threads > MAX_SCRATCH)
        threads = MAX_SCRATCH;
    if (threads != 1 && n > 1 && dbr__example_all_direct(parser)) {
        dbr__parallel_for(n, threads, read_parse_item, b);
    } else {
        for (size_t i = 0; i < n; i++)
            read_parse_item(b, i);
    }
    for (size_t k = 0; k < MAX_SCRATCH; k++)
        free(b->bufs[k].data);
    return dbr__batch_result(&b->status, 0);
}

int dbr_tfrecord_parse_at(const dbr_example_parser *parser, const dbr_file *const *files,
                          const uint64_t *offsets, const uint64_t *frame_lengths, size_t n,
                          int verify_crc, dbr_feature_out *outs, int threads)
{
    return dbr_tfrecord_parse_at_ex(parser, files, offsets, frame_lengths, n, verify_crc, outs,
                                    threads, NULL, NULL, 0);
}
