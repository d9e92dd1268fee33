/* zip.c - reading ZIP archives: the end records and central directory are
 * parsed once, at open, into an immutable index (entries plus a hash table
 * of names); entries are then read from a read-only mapping of the archive
 * (or with pread), stored ones straight into the caller's buffer with the
 * CRC checked during the copy.  Layouts follow PKWARE's APPNOTE.TXT (4.3). */
#include "internal.h"

#include <errno.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

enum {
    EOCD_SIZE = 22,            /* end of central directory record   */
    EOCD64_SIZE = 56,          /* ZIP64 end of central directory    */
    LOCATOR64_SIZE = 20,       /* ZIP64 end of central dir locator  */
    CDH_SIZE = 46,             /* central directory file header     */
    LFH_SIZE = 30,             /* local file header                 */
    MAX_COMMENT = 65535,
    INFLATE_CHUNK = 256 * 1024 /* compressed bytes read per pread    */
};

#define SIG_LFH 0x04034b50u
#define SIG_CDH 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u

/* Deflate cannot expand data by more than 1032:1 and an LZ4 block by more
 * than 255:1, so a larger declared ratio is a lie we can refuse up front. */
#define DEFLATE_MAX_RATIO 1033u
#define LZ4_MAX_RATIO 256u

typedef struct zentry {
    uint64_t hdr;   /* file offset of the local header                       */
    uint64_t csize, usize;
    uint64_t limit; /* the next local header or the central directory: data
                       reaching past it overlaps something else            */
    uint64_t data;  /* offset of the data, 0 until the local header was read:
                       a benign cache, written atomically, same value from
                       every thread                                       */
    size_t name;    /* offset of the NUL-terminated name in zip->names       */
    uint32_t name_len, crc, ext_attr;
    uint16_t method, flags, dos_date, dos_time;
} zentry;

struct dbr_zip {
    int refs;          /* atomic: the opener, open entry files, VFS mounts */
    dbr_file *src;     /* the archive's bytes (own fd or own memory)       */
    int fd;            /* src's fd, or -1 when src lives in memory          */
    uint64_t base;     /* src's offset within fd                           */
    uint64_t size;
    const unsigned char *bytes; /* all size bytes in memory (the mapping or
                                   src's own memory), or NULL: use pread   */
    void *map;         /* what munmap releases, NULL if nothing is mapped  */
    size_t map_len;
    char *path;
    dbr_zip_options opts;
    zentry *entries;
    size_t count;
    char *names;       /* all names, NUL-terminated, back to back          */
    uint32_t *table;   /* open addressing: entry index + 1, 0 = empty      */
    size_t mask;       /* table size - 1 (a power of two)                  */
    char *comment;
    size_t comment_len;
};

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static const char *entry_name(const dbr_zip *z, const zentry *e) { return z->names + e->name; }

/* FNV-1a: names are short, and this needs no alignment or length tricks. */
uint64_t dbr__hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

void dbr_zip_options_init(dbr_zip_options *opts)
{
    if (!opts)
        return;
    memset(opts, 0, sizeof *opts);
    opts->verify_crc = 1;
    opts->max_entry_size = DBR_ZIP_DEFAULT_MAX_ENTRY_SIZE;
    opts->max_entries = DBR_ZIP_DEFAULT_MAX_ENTRIES;
}

/* Reads exactly n bytes at off of the archive, or says it is truncated. */
static int read_at(const dbr_zip *z, void *dst, size_t n, uint64_t off, const char *what)
{
    size_t got = 0;
    if (n == 0 && off <= z->size)
        return DBR_OK;
    if (off > z->size || n > z->size - off)
        return dbr__fail(DBR_E_CORRUPT, "archive '%s': %s at offset %llu (%zu bytes) "
                         "lies beyond the end of the %llu-byte file (truncated?)",
                         z->path, what, (unsigned long long)off, n,
                         (unsigned long long)z->size);
    if (z->bytes) {
        memcpy(dst, z->bytes + off, n);
        return DBR_OK;
    }
    int rc = z->fd >= 0 ? dbr__pread_full(z->fd, dst, n, z->base + off, &got, z->path)
                        : dbr_file_pread(z->src, dst, n, off, &got);
    if (rc == DBR_OK && got != n)
        rc = dbr__fail(DBR_E_IO, "archive '%s' shrank while open: %s at offset %llu",
                       z->path, what, (unsigned long long)off);
    return rc;
}

/* ---- opening ---- */

typedef struct cd_loc {
    uint64_t offset, size, count; /* as recorded                          */
    uint64_t start;               /* where the directory actually is      */
    uint64_t shift;               /* bytes prepended before the archive   */
} cd_loc;

/* Finds the end record: at the very end, or before a comment of up to
 * 64 KiB.  The last signature whose comment fits the file wins, as in
 * zipfile. */
static int find_end(dbr_zip *z, cd_loc *loc)
{
    size_t tail = z->size < EOCD_SIZE + MAX_COMMENT ? (size_t)z->size : EOCD_SIZE + MAX_COMMENT;
    if (tail < EOCD_SIZE)
        return dbr__fail(DBR_E_CORRUPT, "'%s' is not a ZIP archive: %llu bytes is too "
                         "short for the end record", z->path, (unsigned long long)z->size);
    unsigned char *buf = malloc(tail);
    if (!buf)
        return dbr__fail(DBR_E_NOMEM, "out of memory opening '%s'", z->path);
    uint64_t tail_at = z->size - tail;
    int rc = read_at(z, buf, tail, tail_at, "end of archive");
    if (rc != DBR_OK) {
        free(buf);
        return rc;
    }
    long found = -1;
    for (long i = (long)tail - EOCD_SIZE; i >= 0; i--) {
        if (buf[i] == 'P' && rd32(buf + i) == SIG_EOCD &&
            (size_t)i + EOCD_SIZE + rd16(buf + i + 20) <= tail) {
            found = i;
            break;
        }
    }
    if (found < 0) {
        free(buf);
        return dbr__fail(DBR_E_CORRUPT, "'%s' is not a ZIP archive: no end of central "
                         "directory record in its last %zu bytes", z->path, tail);
    }
    const unsigned char *e = buf + found;
    uint64_t eocd_at = tail_at + (uint64_t)found;
    if (rd16(e + 4) != 0 || rd16(e + 6) != 0 || rd16(e + 8) != rd16(e + 10)) {
        free(buf);
        return dbr__fail(DBR_E_UNSUPPORTED, "archive '%s' spans several disks "
                         "(split or spanned ZIP), which is not supported", z->path);
    }
    loc->count = rd16(e + 10);
    loc->size = rd32(e + 12);
    loc->offset = rd32(e + 16);
    z->comment_len = rd16(e + 20);
    z->comment = malloc(z->comment_len + 1);
    if (!z->comment) {
        free(buf);
        return dbr__fail(DBR_E_NOMEM, "out of memory opening '%s'", z->path);
    }
    memcpy(z->comment, e + EOCD_SIZE, z->comment_len);
    z->comment[z->comment_len] = '\0';
    free(buf);

    /* ZIP64: the locator sits right before the end record and the ZIP64 end
     * record right before the locator (read there, not at its recorded
     * offset, so prepended data does not matter). */
    uint64_t dir_end = eocd_at;
    if (eocd_at >= LOCATOR64_SIZE) {
        unsigned char l[LOCATOR64_SIZE];
        rc = read_at(z, l, sizeof l, eocd_at - LOCATOR64_SIZE, "ZIP64 locator");
        if (rc != DBR_OK)
            return rc;
        if (rd32(l) == SIG_LOCATOR64) {
            unsigned char r[EOCD64_SIZE];
            if (eocd_at < LOCATOR64_SIZE + EOCD64_SIZE)
                return dbr__fail(DBR_E_CORRUPT, "archive '%s': ZIP64 locator at offset %llu "
                                 "has no room for the ZIP64 end record before it",
                                 z->path, (unsigned long long)(eocd_at - LOCATOR64_SIZE));
            dir_end = eocd_at - LOCATOR64_SIZE - EOCD64_SIZE;
            rc = read_at(z, r, sizeof r, dir_end, "ZIP64 end record");
            if (rc != DBR_OK)
                return rc;
            if (rd32(r) != SIG_EOCD64)
                return dbr__fail(DBR_E_CORRUPT, "archive '%s': bad ZIP64 end of central "
                                 "directory signature at offset %llu", z->path,
                                 (unsigned long long)dir_end);
            loc->count = rd64(r + 32);
            loc->size = rd64(r + 40);
            loc->offset = rd64(r + 48);
        }
    }
    if (loc->size > dir_end || loc->offset > dir_end - loc->size)
        return dbr__fail(DBR_E_CORRUPT, "archive '%s': central directory (%llu bytes at "
                         "offset %llu) does not fit before its end record at %llu "
                         "(truncated or not a ZIP?)", z->path,
                         (unsigned long long)loc->size, (unsigned long long)loc->offset,
                         (unsigned long long)dir_end);
    loc->start = dir_end - loc->size;
    loc->shift = loc->start - loc->offset;
    return DBR_OK;
}

/* Replaces 0xFFFFFFFF fields with their ZIP64 extra values (APPNOTE 4.5.3):
 * present in the order size, compressed size, offset, only for the fields
 * that overflowed. */
static int parse_extra(const dbr_zip *z, const unsigned char *x, size_t n, zentry *e,
                       const char *name)
{
    while (n >= 4) {
        unsigned id = rd16(x), len = rd16(x + 2);
        if (len + 4u > n)
            return dbr__fail(DBR_E_CORRUPT, "archive '%s' entry '%s': extra field 0x%04x "
                             "claims %u bytes but only %zu remain", z->path, name, id, len,
                             n - 4);
        if (id == 0x0001) {
            const unsigned char *p = x + 4, *end = x + 4 + len;
            uint64_t *fields[3] = {&e->usize, &e->csize, &e->hdr};
            for (int i = 0; i < 3; i++) {
                if (*fields[i] != 0xFFFFFFFFu)
                    continue;
                if (end - p < 8)
                    return dbr__fail(DBR_E_CORRUPT, "archive '%s' entry '%s': ZIP64 extra "
                                     "field lacks the %s", z->path, name,
                                     i == 0 ? "size" : i == 1 ? "compressed size" : "offset");
                *fields[i] = rd64(p);
                p += 8;
            }
        }
        x += 4 + len;
        n -= 4 + len;
    }
    return DBR_OK;
}

/* 0 if equal (hash hit check). */
static int name_differs(const dbr_zip *z, const zentry *e, const char *name, size_t n)
{
    return e->name_len != n || memcmp(entry_name(z, e), name, n) != 0;
}

static int build_table(dbr_zip *z)
{
    size_t size = 16;
    while (size < z->count * 2)
        size *= 2;
    z->table = calloc(size, sizeof *z->table);
    if (!z->table)
        return dbr__fail(DBR_E_NOMEM, "out of memory indexing %zu entries of '%s'",
                         z->count, z->path);
    z->mask = size - 1;
    for (size_t i = 0; i < z->count; i++) {
        const zentry *e = &z->entries[i];
        size_t slot = (size_t)dbr__hash_bytes(entry_name(z, e), e->name_len) & z->mask;
        while (z->table[slot] &&
               name_differs(z, &z->entries[z->table[slot] - 1], entry_name(z, e), e->name_len))
            slot = (slot + 1) & z->mask;
        z->table[slot] = (uint32_t)(i + 1); /* a later duplicate replaces */
    }
    return DBR_OK;
}

static int by_hdr(const void *a, const void *b)
{
    uint64_t x = (*(zentry *const *)a)->hdr, y = (*(zentry *const *)b)->hdr;
    return x < y ? -1 : x > y;
}

/* Gives every entry the offset where the next one (or the directory)
 * starts.  An entry whose header and data would run into that offset (two
 * records sharing one local header, or sizes that overlap the next entry)
 * fails when it is read (data_offset), naming the entry and the offsets;
 * the archive's other entries stay readable, as with zipfile. */
static int set_limits(dbr_zip *z, uint64_t dir_start)
{
    size_t n = z->count;
    zentry **order = NULL;
    int sorted = 1;
    for (size_t i = 1; i < n && sorted; i++)
        sorted = z->entries[i - 1].hdr < z->entries[i].hdr;
    if (!sorted) {
        order = malloc(n * sizeof *order);
        if (!order)
            return dbr__fail(DBR_E_NOMEM, "out of memory checking '%s'", z->path);
        for (size_t i = 0; i < n; i++)
            order[i] = &z->entries[i];
        qsort(order, n, sizeof *order, by_hdr);
    }
    for (size_t i = 0; i < n; i++) {
        zentry *e = order ? order[i] : &z->entries[i];
        e->limit = i + 1 < n ? (order ? order[i + 1] : &z->entries[i + 1])->hdr : dir_start;
    }
    free(order);
    return DBR_OK;
}

static int parse_directory(dbr_zip *z, const cd_loc *loc)
{
    if (loc->size > SIZE_MAX)
        return dbr__fail(DBR_E_LIMIT, "archive '%s': central directory too large", z->path);
    size_t cd_size = (size_t)loc->size;
    unsigned char *cd = malloc(cd_size ? cd_size : 1);
    if (!cd)
        return dbr__fail(DBR_E_NOMEM, "out of memory reading the %zu-byte central "
                         "directory of '%s'", cd_size, z->path);
    int rc = read_at(z, cd, cd_size, loc->start, "central directory");
    /* Every record takes at least CDH_SIZE bytes, so the directory's real
     * size bounds the entry count whatever the end record claims. */
    size_t cap = cd_size / CDH_SIZE, names_len = 0;
    if (rc == DBR_OK && cap > z->opts.max_entries)
        cap = (size_t)z->opts.max_entries + 1;
    if (rc == DBR_OK) {
        z->entries = malloc((cap ? cap : 1) * sizeof *z->entries);
        z->names = malloc(cd_size + cap + 1); /* names are inside cd, plus NULs */
        if (!z->entries || !z->names)
            rc = dbr__fail(DBR_E_NOMEM, "out of memory indexing '%s'", z->path);
    }
    size_t pos = 0;
    while (rc == DBR_OK && pos < cd_size) {
        const unsigned char *p = cd + pos;
        if (cd_size - pos < CDH_SIZE || rd32(p) != SIG_CDH) {
            rc = dbr__fail(DBR_E_CORRUPT, "archive '%s': bad central directory record "
                           "%zu at offset %llu (bad signature or truncated)", z->path,
                           z->count, (unsigned long long)(loc->start + pos));
            break;
        }
        if (z->count >= z->opts.max_entries) {
            rc = dbr__fail(DBR_E_LIMIT, "archive '%s' has more than %llu entries "
                           "(raise max_entries to open it)", z->path,
                           (unsigned long long)z->opts.max_entries);
            break;
        }
        size_t nlen = rd16(p + 28), xlen = rd16(p + 30), clen = rd16(p + 32);
        size_t rec = CDH_SIZE + nlen + xlen + clen;
        if (rec > cd_size - pos) {
            rc = dbr__fail(DBR_E_CORRUPT, "archive '%s': central directory record %zu at "
                           "offset %llu runs past the directory's end", z->path, z->count,
                           (unsigned long long)(loc->start + pos));
            break;
        }
        zentry *e = &z->entries[z->count];
        const char *raw = (const char *)p + CDH_SIZE;
        const char *nul = memchr(raw, '\0', nlen); /* zipfile cuts names at NUL */
        e->name_len = (uint32_t)(nul ? (size_t)(nul - raw) : nlen);
        e->name = names_len;
        memcpy(z->names + names_len, raw, e->name_len);
        names_len += e->name_len;
        z->names[names_len++] = '\0';
        e->flags = rd16(p + 8);
        e->method = rd16(p + 10);
        e->dos_time = rd16(p + 12);
        e->dos_date = rd16(p + 14);
        e->crc = rd32(p + 16);
        e->csize = rd32(p + 20);
        e->usize = rd32(p + 24);
        e->ext_attr = rd32(p + 38);
        e->hdr = rd32(p + 42);
        e->data = 0;
        rc = parse_extra(z, p + CDH_SIZE + nlen, xlen, e, entry_name(z, e));
        if (rc != DBR_OK)
            break;
        if (e->hdr >= loc->offset) {
            rc = dbr__fail(DBR_E_CORRUPT, "archive '%s' entry '%s': local header offset "
                           "%llu is not before the central directory", z->path,
                           entry_name(z, e), (unsigned long long)e->hdr);
            break;
        }
        e->hdr += loc->shift;
        z->count++;
        pos += rec;
    }
    free(cd);
    if (rc == DBR_OK)
        rc = set_limits(z, loc->start);
    if (rc == DBR_OK)
        rc = build_table(z);
    return rc;
}

/* Makes the archive's bytes addressable: memory-backed sources already
 * are; files are mapped read-only (shared, so forked children keep the
 * mapping and the page cache serves everyone).  Reads then cost a copy, not
 * a system call.  A failed mmap (no address space, a file that cannot be
 * mapped) is not an error: reads fall back to pread. */
static void map_archive(dbr_zip *z)
{
    if (z->fd < 0) {
        z->bytes = dbr_file_data(z->src);
        return;
    }
    if (z->opts.use_pread || z->size == 0)
        return;
    long page = sysconf(_SC_PAGESIZE);
    uint64_t start = page > 0 ? z->base - z->base % (uint64_t)page : z->base;
    uint64_t len = z->size + (z->base - start);
    if (len > SIZE_MAX)
        return;
    void *m = mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED, z->fd, (off_t)start);
    if (m == MAP_FAILED)
        return;
    z->map = m;
    z->map_len = (size_t)len;
    z->bytes = (const unsigned char *)m + (z->base - start);
}

static int zip_init(dbr_zip *z, const dbr_zip_options *opts)
{
    if (opts)
        z->opts = *opts;
    else
        dbr_zip_options_init(&z->opts);
    if (z->opts.max_entries > UINT32_MAX - 1) /* the hash table holds uint32 */
        z->opts.max_entries = UINT32_MAX - 1;
    z->refs = 1;
    z->size = dbr_file_size(z->src);
    z->fd = dbr__file_fd(z->src, &z->base);
    map_archive(z);
    cd_loc loc = {0, 0, 0, 0, 0};
    int rc = find_end(z, &loc);
    if (rc == DBR_OK)
        rc = parse_directory(z, &loc);
    return rc;
}

static void zip_free(dbr_zip *z)
{
    if (z->map)
        munmap(z->map, z->map_len);
    dbr_file_close(z->src);
    free(z->path);
    free(z->entries);
    free(z->names);
    free(z->table);
    free(z->comment);
    free(z);
}

static int zip_new(const char *path, dbr_zip **out)
{
    dbr_zip *z = calloc(1, sizeof *z);
    if (!z)
        return dbr__fail(DBR_E_NOMEM, "out of memory opening '%s'", path);
    z->path = dbr__strdup(path);
    if (!z->path) {
        free(z);
        return DBR_E_NOMEM;
    }
    *out = z;
    return DBR_OK;
}

static int zip_finish_open(dbr_zip *z, const dbr_zip_options *opts, dbr_zip **out)
{
    int rc = zip_init(z, opts);
    if (rc != DBR_OK) {
        zip_free(z);
        return rc;
    }
    *out = z;
    return DBR_OK;
}

int dbr_zip_open(const char *path, const dbr_zip_options *opts, dbr_zip **out)
{
    if (!path || !out)
        return dbr__fail(DBR_E_ARG, "dbr_zip_open: path and out must not be NULL");
    *out = NULL;
    dbr_zip *z = NULL;
    int rc = zip_new(path, &z);
    if (rc != DBR_OK)
        return rc;
    rc = dbr_file_open(path, &z->src);
    if (rc != DBR_OK) {
        zip_free(z);
        return rc;
    }
    return zip_finish_open(z, opts, out);
}

int dbr_zip_open_file(const dbr_file *file, const dbr_zip_options *opts, dbr_zip **out)
{
    if (!file || !out)
        return dbr__fail(DBR_E_ARG, "dbr_zip_open_file: file and out must not be NULL");
    *out = NULL;
    const char *path = dbr_file_path(file);
    dbr_zip *z = NULL;
    int rc = zip_new(path, &z);
    if (rc != DBR_OK)
        return rc;
    uint64_t base, size = dbr_file_size(file);
    int fd = dbr__file_fd(file, &base);
    if (fd >= 0) {
        /* Our own descriptor: the caller may close theirs. */
        int own = dup(fd);
        if (own < 0)
            rc = dbr__fail_errno(errno, "cannot duplicate the descriptor of", path);
        else if ((rc = dbr__file_from_fd(own, 1, base, size, path, dbr_file_mtime(file),
                                          &z->src)) != DBR_OK)
            close(own);
    } else {
        void *copy = size > SIZE_MAX ? NULL : malloc(size ? (size_t)size : 1);
        if (!copy)
            rc = dbr__fail(DBR_E_NOMEM, "out of memory copying '%s'", path);
        else {
            memcpy(copy, dbr_file_data(file), (size_t)size);
            rc = dbr__file_from_memory(copy, size, path, dbr_file_mtime(file), &z->src);
        }
    }
    if (rc != DBR_OK) {
        zip_free(z);
        return rc;
    }
    return zip_finish_open(z, opts, out);
}

void dbr_zip_retain(const dbr_zip *zip)
{
    if (zip)
        __atomic_fetch_add(&((dbr_zip *)zip)->refs, 1, __ATOMIC_RELAXED);
}

void dbr__zip_release(void *zip)
{
    dbr_zip *z = zip;
    if (__atomic_sub_fetch(&z->refs, 1, __ATOMIC_ACQ_REL) == 0)
        zip_free(z);
}

void dbr_zip_close(dbr_zip *zip)
{
    if (zip)
        dbr__zip_release(zip);
}

/* ---- queries ---- */

const char *dbr_zip_path(const dbr_zip *zip) { return zip ? zip->path : ""; }
size_t dbr_zip_count(const dbr_zip *zip) { return zip ? zip->count : 0; }

const char *dbr_zip_comment(const dbr_zip *zip, size_t *out_len)
{
    if (out_len)
        *out_len = zip ? zip->comment_len : 0;
    return zip ? zip->comment : "";
}

uint64_t dbr_zip_entry_size(const dbr_zip *zip, size_t index)
{
    return zip && index < zip->count ? zip->entries[index].usize : 0;
}

/* DOS date and time as if UTC, to Unix seconds (days_from_civil, after
 * Howard Hinnant's published algorithm). */
static int64_t dos_to_unix(uint16_t date, uint16_t time)
{
    int64_t y = 1980 + (date >> 9), m = (date >> 5) & 15, d = date & 31;
    if (m < 1 || m > 12 || d < 1)
        return 0;
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = era * 146097 + doe - 719468;
    return days * 86400 + (time >> 11) * 3600 + ((time >> 5) & 63) * 60 + (time & 31) * 2;
}

int dbr_zip_entries(const dbr_zip *zip, size_t first, size_t count, dbr_zip_entry *out)
{
    if (!zip || (!out && count))
        return dbr__fail(DBR_E_ARG, "dbr_zip_entries: NULL argument");
    if (first > zip->count || count > zip->count - first)
        return dbr__fail(DBR_E_ARG, "archive '%s': entries %zu..%zu requested but it has %zu",
                         zip->path, first, first + count, zip->count);
    for (size_t i = 0; i < count; i++) {
        const zentry *e = &zip->entries[first + i];
        dbr_zip_entry *o = &out[i];
        memset(o, 0, sizeof *o);
        o->size = e->usize;
        o->compressed_size = e->csize;
        o->header_offset = e->hdr;
        o->mtime = dos_to_unix(e->dos_date, e->dos_time);
        o->name = entry_name(zip, e);
        o->name_len = e->name_len;
        o->crc32 = e->crc;
        o->external_attr = e->ext_attr;
        o->method = e->method;
        o->flags = e->flags;
        o->dos_date = e->dos_date;
        o->dos_time = e->dos_time;
        o->is_dir = e->name_len > 0 && o->name[e->name_len - 1] == '/';
    }
    return DBR_OK;
}

int dbr_zip_names(const dbr_zip *zip, char **out, size_t *out_len)
{
    if (!zip || !out || !out_len)
        return dbr__fail(DBR_E_ARG, "dbr_zip_names: NULL argument");
    size_t n = zip->count ? zip->entries[zip->count - 1].name +
                            zip->entries[zip->count - 1].name_len + 1 : 0;
    *out = malloc(n ? n : 1);
    if (!*out)
        return dbr__fail(DBR_E_NOMEM, "out of memory listing '%s'", zip->path);
    memcpy(*out, zip->names, n);
    *out_len = n;
    return DBR_OK;
}

int dbr_zip_find(const dbr_zip *zip, const char *name, size_t *index)
{
    if (!zip || !name || !index)
        return dbr__fail(DBR_E_ARG, "dbr_zip_find: NULL argument");
    size_t n = strlen(name);
    size_t slot = (size_t)dbr__hash_bytes(name, n) & zip->mask;
    for (uint32_t i; (i = zip->table[slot]) != 0; slot = (slot + 1) & zip->mask) {
        if (!name_differs(zip, &zip->entries[i - 1], name, n)) {
            *index = i - 1;
            return DBR_OK;
        }
    }
    return dbr__fail(DBR_E_NOT_FOUND, "archive '%s' has no entry named '%s'", zip->path, name);
}

/* ---- reading ---- */

static const char *method_name(unsigned method)
{
    switch (method) {
    case 1: return "shrink";
    case 6: return "implode";
    case 9: return "deflate64";
    case 12: return "bzip2";
    case 14: return "LZMA";
    case 93: return "zstd";
    case 95: return "xz";
    case 98: return "PPMd";
    case 99: return "AES encryption";
    default: return "unknown";
    }
}

/* Offset of the entry's data, reading (and checking) its local header the
 * first time. */
static int data_offset(const dbr_zip *z, zentry *e, uint64_t *out)
{
    uint64_t data = __atomic_load_n(&e->data, __ATOMIC_RELAXED);
    if (data) {
        *out = data;
        return DBR_OK;
    }
    unsigned char h[LFH_SIZE];
    const char *name = entry_name(z, e);
    int rc = read_at(z, h, sizeof h, e->hdr, "local header");
    if (rc != DBR_OK)
        return rc;
    if (rd32(h) != SIG_LFH)
        return dbr__fail(DBR_E_CORRUPT, "archive '%s' entry '%s': no local header at "
                         "offset %llu (bad signature)", z->path, name,
                         (unsigned long long)e->hdr);
    uint64_t nlen = rd16(h + 26), xlen = rd16(h + 28);
    data = e->hdr + LFH_SIZE + nlen + xlen;
    if (data > e->limit || e->limit - data < e->csize)
        return dbr__fail(DBR_E_CORRUPT, "archive '%s' entry '%s': %llu bytes of data at "
                         "offset %llu run past the next entry or the central directory "
                         "at %llu", z->path, name, (unsigned long long)e->csize,
                         (unsigned long long)data, (unsigned long long)e->limit);
    char stack[256], *local = nlen <= sizeof stack ? stack : malloc(nlen);
    if (!local)
        return dbr__fail(DBR_E_NOMEM, "out of memory reading '%s'", name);
    rc = read_at(z, local, nlen, e->hdr + LFH_SIZE, "local header name");
    /* zipfile refuses a local name that differs from the directory's. */
    if (rc == DBR_OK && (nlen < e->name_len || memcmp(local, name, e->name_len) != 0 ||
                         (nlen > e->name_len && local[e->name_len] != '\0')))
        rc = dbr__fail(DBR_E_CORRUPT, "archive '%s' entry '%s': the local header at "
                       "offset %llu names a different file", z->path, name,
                       (unsigned long long)e->hdr);
    if (local != stack)
        free(local);
    if (rc != DBR_OK)
        return rc;
    __atomic_store_n(&e->data, data, __ATOMIC_RELAXED);
    *out = data;
    return DBR_OK;
}

/* Entries up to this many compressed bytes are decoded whole when read with
 * pread (a mapping is decoded where it lies, at any size): reading them
 * whole costs at most this much memory per thread. */
#define INFLATE_WHOLE_MAX ((uint64_t)64 << 20)

/* Decodes the entry in one libdeflate call (inflate.c). */
static int inflate_entry_whole(const dbr_zip *z, const zentry *e, uint64_t data, void *dst)
{
    const char *name = entry_name(z, e);
    unsigned char *in = z->bytes ? (unsigned char *)(z->bytes + data)
                                 : malloc(e->csize ? (size_t)e->csize : 1);
    if (!in)
        return dbr__fail(DBR_E_NOMEM, "out of memory inflating '%s'", name);
    int rc = z->bytes ? DBR_OK : read_at(z, in, (size_t)e->csize, data, "deflate data");
    const char *why = "";
    if (rc == DBR_OK && dbr__inflate_whole(in, (size_t)e->csize, dst, (size_t)e->usize,
                                           &why) != DBR_OK)
        rc = dbr__fail(DBR_E_CORRUPT, "archive '%s' entry '%s': %s (%llu bytes declared)",
                       z->path, name, why, (unsigned long long)e->usize);
    if (!z->bytes)
        free(in);
    return rc;
}

/* Inflates straight into dst with zlib's streaming inflate: for builds
 * without libdeflate, and for entries too large to hold whole.  From a
 * mapping, the whole input goes in at once, and with Z_FINISH and room for
 * the whole output zlib decodes in one call and never allocates or fills
 * its 32 KiB window. */
static int inflate_entry_stream(const dbr_zip *z, const zentry *e, uint64_t data, void *dst)
{
    const char *name = entry_name(z, e);
    size_t chunk = z->bytes ? 0x40000000u
                            : e->csize < INFLATE_CHUNK ? (size_t)e->csize : INFLATE_CHUNK;
    unsigned char *in = z->bytes ? NULL : malloc(chunk ? chunk : 1);
    if (!z->bytes && !in)
        return dbr__fail(DBR_E_NOMEM, "out of memory inflating '%s'", name);
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit2(&s, -MAX_WBITS) != Z_OK) {
        free(in);
        return dbr__fail(DBR_E_NOMEM, "cannot start zlib for '%s'", name);
    }
    int rc = DBR_OK, zrc = Z_OK;
    uint64_t done_in = 0, done_out = 0;
    unsigned char *out = dst;
    while (rc == DBR_OK && zrc != Z_STREAM_END) {
        if (s.avail_in == 0) {
            if (done_in == e->csize) {
                rc = dbr__fail(DBR_E_CORRUPT, "archive '%s' entry '%s': deflate data ends "
                               "after %llu of %llu bytes (truncated)", z->path, name,
                               (unsigned long long)done_out, (unsigned long long)e->usize);
                break;
            }
            size_t n = e->csize - done_in < chunk ? (size_t)(e->csize - done_in) : chunk;
            if (z->bytes) {
                s.next_in = (Bytef *)(z->bytes + data + done_in);
            } else {
                rc = read_at(z, in, n, data + done_in, "deflate data");
                if (rc != DBR_OK)
                    break;
                s.next_in = in;
            }
            done_in += n;
            s.avail_in = (uInt)n;
        }
        /* Output is capped at the declared size: inflation never runs past it. */
        uint64_t left = e->usize - done_out;
        s.next_out = out + done_out;
        s.avail_out = left > 0x40000000u ? 0x40000000u : (uInt)left;
        uInt before = s.avail_out;
        int last = done_in == e->csize && left == s.avail_out;
        zrc = inflate(&s, last ? Z_FINISH : Z_NO_FLUSH);
        done_out += before - s.avail_out;
        if (zrc == Z_BUF_ERROR && s.avail_out == 0 && done_out == e->usize)
            rc = dbr__fail(DBR_E_CORRUPT, "archive '%s' entry '%s': deflate data holds "
                           "more than the declared %llu bytes", z->path, name,
                           (unsigned long long)e->usize);
        else if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR)
            rc = dbr__fail(DBR_E_CORRUPT, "archive '%s' entry '%s': bad deflate data "
                           "after %llu output bytes (%s)", z->path, name,
                           (unsigned long long)done_out, s.msg ? s.msg : "zlib error");
    }
    if (rc == DBR_OK && done_out != e->usize)
        rc = dbr__fail(DBR_E_CORRUPT, "archive '%s' entry '%s': deflate data gives %llu "
                       "bytes, the directory says %llu", z->path, name,
                       (unsigned long long)done_out, (unsigned long long)e->usize);
    inflateEnd(&s);
    free(in);
    return rc;
}

/* Decodes a deflate entry into dst, whole where it can. */
static int inflate_entry(const dbr_zip *z, const zentry *e, uint64_t data, void *dst)
{
    if (dbr__inflate_whole_available() && (z->bytes || e->csize <= INFLATE_WHOLE_MAX) &&
        e->csize <= SIZE_MAX)
        return inflate_entry_whole(z, e, data, dst);
    return inflate_entry_stream(z, e, data, dst);
}

static int lz4_entry(const dbr_zip *z, const zentry *e, uint64_t data, void *dst)
{
    const char *name = entry_name(z, e);
    if (e->csize > LZ4_MAX_INPUT_SIZE || e->usize > LZ4_MAX_INPUT_SIZE * (uint64_t)LZ4_MAX_RATIO
        || e->usize > INT32_MAX)
        return dbr__fail(DBR_E_UNSUPPORTED, "archive '%s' entry '%s': an LZ4 block "
                         "larger than 2 GiB is not supported", z->path, name);
    /* From a mapping, the block is decoded where it lies. */
    char *in = z->bytes ? (char *)(z->bytes + data) : malloc(e->csize ? (size_t)e->csize : 1);
    if (!in)
        return dbr__fail(DBR_E_NOMEM, "out of memory reading '%s'", name);
    int rc = z->bytes ? DBR_OK : read_at(z, in, (size_t)e->csize, data, "LZ4 data");
    if (rc == DBR_OK) {
        int n = LZ4_decompress_safe(in, dst, (int)e->csize, (int)e->usize);
        if (n < 0 || (uint64_t)n != e->usize)
            rc = dbr__fail(DBR_E_CORRUPT, "archive '%s' entry '%s': bad LZ4 block (%s; "
                           "%llu bytes declared)", z->path, name,
                           n < 0 ? "malformed" : "wrong decoded size",
                           (unsigned long long)e->usize);
    }
    if (!z->bytes)
        free(in);
    return rc;
}

int dbr_zip_read(const dbr_zip *zip, size_t index, void *dst, size_t cap, size_t *out_len)
{
    if (!zip || !out_len || (!dst && cap))
        return dbr__fail(DBR_E_ARG, "dbr_zip_read: NULL argument");
    if (index >= zip->count)
        return dbr__fail(DBR_E_ARG, "archive '%s': no entry %zu (it has %zu)", zip->path,
                         index, zip->count);
    zentry *e = &zip->entries[index];
    const char *name = entry_name(zip, e);
    *out_len = e->usize > SIZE_MAX ? SIZE_MAX : (size_t)e->usize;
    if (e->flags & DBR_ZIP_FLAG_ENCRYPTED)
        return dbr__fail(DBR_E_UNSUPPORTED, "archive '%s' entry '%s' is encrypted, which "
                         "is not supported", zip->path, name);
    if (e->method != DBR_ZIP_STORED && e->method != DBR_ZIP_DEFLATE && e->method != DBR_ZIP_LZ4)
        return dbr__fail(DBR_E_UNSUPPORTED, "archive '%s' entry '%s' uses compression "
                         "method %u (%s); supported are stored (0), deflate (8) and LZ4 "
                         "(30)", zip->path, name, e->method, method_name(e->method));
    if (e->method == DBR_ZIP_STORED && e->csize != e->usize)
        return dbr__fail(DBR_E_CORRUPT, "archive '%s' entry '%s' is stored but its sizes "
                         "differ (%llu compressed, %llu uncompressed)", zip->path, name,
                         (unsigned long long)e->csize, (unsigned long long)e->usize);
    if (e->method != DBR_ZIP_STORED) {
        uint64_t ratio = e->method == DBR_ZIP_DEFLATE ? DEFLATE_MAX_RATIO : LZ4_MAX_RATIO;
        if (e->usize / ratio > e->csize)
            return dbr__fail(DBR_E_CORRUPT, "archive '%s' entry '%s': %llu compressed bytes "
                             "cannot expand to the declared %llu", zip->path, name,
                             (unsigned long long)e->csize, (unsigned long long)e->usize);
        if (e->usize > zip->opts.max_entry_size)
            return dbr__fail(DBR_E_LIMIT, "archive '%s' entry '%s' declares %llu bytes, "
                             "over the max_entry_size limit of %llu", zip->path, name,
                             (unsigned long long)e->usize,
                             (unsigned long long)zip->opts.max_entry_size);
    }
    /* Before asking the caller for a buffer of usize bytes: the data cannot
     * run past the entry's region (a stored size of 4 GiB in a 400-byte zip). */
    if (e->limit - e->hdr < LFH_SIZE || e->limit - e->hdr - LFH_SIZE < e->csize)
        return dbr__fail(DBR_E_CORRUPT, "archive '%s' entry '%s': %llu bytes of data at "
                         "offset %llu run past the next entry or the central directory at "
                         "%llu", zip->path, name, (unsigned long long)e->csize,
                         (unsigned long long)e->hdr, (unsigned long long)e->limit);
    if (e->usize > SIZE_MAX)
        return dbr__fail(DBR_E_LIMIT, "archive '%s' entry '%s' is too large for memory",
                         zip->path, name);
    if (cap < e->usize)
        return dbr__fail(DBR_E_TOO_SMALL, "archive '%s' entry '%s' needs %llu bytes, the "
                         "buffer has %zu", zip->path, name, (unsigned long long)e->usize, cap);
    unsigned char empty;
    if (!dst)
        dst = &empty; /* an empty entry into no buffer: keep pointers valid */
    uint64_t data;
    int rc = data_offset(zip, e, &data);
    if (rc != DBR_OK)
        return rc;
    int verify = zip->opts.verify_crc;
    uint32_t crc = 0;
    if (e->method == DBR_ZIP_STORED && zip->bytes && verify) {
        /* data_offset checked that the data lies inside the archive. */
        crc = dbr__crc32_copy(0, dst, zip->bytes + data, (size_t)e->usize);
    } else {
        if (e->method == DBR_ZIP_STORED)
            rc = read_at(zip, dst, (size_t)e->usize, data, "stored data");
        else if (e->method == DBR_ZIP_DEFLATE)
            rc = inflate_entry(zip, e, data, dst);
        else
            rc = lz4_entry(zip, e, data, dst);
        if (rc == DBR_OK && verify)
            crc = dbr__crc32(0, dst, (size_t)e->usize);
    }
    if (rc == DBR_OK && verify) {
        if (crc != e->crc)
            rc = dbr__fail(DBR_E_CORRUPT, "archive '%s' entry '%s': CRC-32 mismatch "
                           "(stored %08x, data gives %08x): the entry is damaged",
                           zip->path, name, e->crc, (unsigned)crc);
    }
    return rc;
}

typedef struct read_batch {
    const dbr_zip *zip;
    const size_t *indices;
    void *const *dsts;
    const size_t *caps;
    size_t *out_lens;
    dbr__batch_status status;
} read_batch;

static void read_one(void *ctx, size_t i)
{
    read_batch *b = ctx;
    int rc = dbr_zip_read(b->zip, b->indices[i], b->dsts[i], b->caps[i], &b->out_lens[i]);
    dbr__batch_item(&b->status, i, rc);
}

int dbr_zip_read_many_ex(const dbr_zip *zip, const size_t *indices, size_t count,
                         void *const *dsts, const size_t *caps, size_t *out_lens,
                         int threads, int *statuses, char *messages, size_t message_cap)
{
    if (!zip || (count && (!indices || !dsts || !caps || !out_lens)))
        return dbr__fail(DBR_E_ARG, "dbr_zip_read_many: NULL argument");
    read_batch b = {zip, indices, dsts, caps, out_lens,
                    DBR__BATCH_STATUS_ITEMS(statuses, messages, message_cap)};
    dbr__parallel_for(count, threads, read_one, &b);
    return dbr__batch_result(&b.status, 0);
}

int dbr_zip_read_many(const dbr_zip *zip, const size_t *indices, size_t count,
                      void *const *dsts, const size_t *caps, size_t *out_lens,
                      int *statuses, int threads)
{
    if (count && !statuses)
        return dbr__fail(DBR_E_ARG, "dbr_zip_read_many: NULL argument");
    return dbr_zip_read_many_ex(zip, indices, count, dsts, caps, out_lens, threads, statuses,
                                NULL, 0);
}

int dbr_zip_open_entry(const dbr_zip *zip, size_t index, dbr_file **out)
{
    if (!zip || !out)
        return dbr__fail(DBR_E_ARG, "dbr_zip_open_entry: NULL argument");
    *out = NULL;
    if (index >= zip->count)
        return dbr__fail(DBR_E_ARG, "archive '%s': no entry %zu (it has %zu)", zip->path,
                         index, zip->count);
    zentry *e = &zip->entries[index];
    const char *name = entry_name(zip, e);
    int64_t mtime = dos_to_unix(e->dos_date, e->dos_time);
    if (e->name_len && name[e->name_len - 1] == '/')
        return dbr__fail(DBR_E_IS_DIR, "archive '%s' entry '%s' is a directory", zip->path,
                         name);
    if (e->method == DBR_ZIP_STORED && !zip->opts.verify_crc && zip->fd >= 0 &&
        !(e->flags & DBR_ZIP_FLAG_ENCRYPTED) && e->csize == e->usize) {
        uint64_t data;
        int rc = data_offset(zip, e, &data);
        if (rc == DBR_OK)
            rc = dbr__file_from_fd(zip->fd, 0, zip->base + data, e->usize, name, mtime, out);
        if (rc == DBR_OK) {
            dbr_zip_retain(zip);
            dbr__file_set_owner(*out, (void *)zip, dbr__zip_release);
        }
        return rc;
    }
    size_t need = 0;
    int rc = dbr_zip_read(zip, index, NULL, 0, &need);
    if (rc != DBR_E_TOO_SMALL && rc != DBR_OK)
        return rc;
    void *mem = malloc(need ? need : 1);
    if (!mem)
        return dbr__fail(DBR_E_NOMEM, "out of memory reading '%s'", name);
    rc = dbr_zip_read(zip, index, mem, need, &need);
    if (rc != DBR_OK) {
        free(mem);
        return rc;
    }
    return dbr__file_from_memory(mem, need, name, mtime, out);
}
