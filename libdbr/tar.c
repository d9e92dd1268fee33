/* tar.c - reading tar archives (WebDataset shards): one scan of the
 * headers at open builds an immutable member index (data offsets, sizes,
 * names in a hash table); members are then read from a read-only mapping of
 * the file (or with pread) straight into the caller's buffer.  The index can
 * be saved and loaded again, so a shard is scanned once, not per open.
 *
 * Formats: POSIX ustar (name + prefix), pax extended headers ('x': path,
 * size, mtime), GNU long names ('L') and base-256 numbers, and V7 headers.
 * Names follow CPython's tarfile: cut at the first NUL, the ustar prefix
 * joined with '/', trailing '/' dropped from directories.  Only regular
 * files and directories are indexed; links and devices are skipped. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { BLOCK = 512 };

typedef struct tmember {
    uint64_t hdr;    /* offset of its first header (pax / long name included) */
    uint64_t data;   /* offset of the data                                    */
    uint64_t size;
    int64_t mtime;
    size_t name;     /* offset of the NUL-terminated name in tar->names        */
    uint32_t name_len;
    uint32_t mode;
    uint32_t type;   /* the typeflag byte; '5' for directories               */
} tmember;

struct dbr_tar {
    int refs;          /* atomic: the opener, open member files, VFS mounts */
    dbr_file *src;
    int fd;
    uint64_t size;
    int64_t mtime_ns;  /* of the file at open: a saved index must match it */
    const unsigned char *bytes; /* the mapping, or NULL: use pread         */
    void *map;
    size_t map_len;
    char *path;
    char *damage;      /* what ended a kept prefix (keep_intact_prefix)    */
    dbr_tar_options opts;
    tmember *members;
    size_t count, cap;
    char *names;
    size_t names_len, names_cap;
    uint32_t *table;   /* open addressing: member index + 1, 0 = empty     */
    size_t mask;
};

void dbr_tar_options_init(dbr_tar_options *opts)
{
    if (!opts)
        return;
    memset(opts, 0, sizeof *opts);
    opts->max_members = DBR_TAR_DEFAULT_MAX_MEMBERS;
    opts->max_header_size = DBR_TAR_DEFAULT_MAX_HEADER_SIZE;
}

static const char *member_name(const dbr_tar *t, const tmember *m) { return t->names + m->name; }

/* Exactly n bytes at off, or DBR_E_CORRUPT naming what was cut off. */
static int read_at(const dbr_tar *t, void *dst, size_t n, uint64_t off, const char *what)
{
    if (off > t->size || n > t->size - off)
        return dbr__fail(DBR_E_CORRUPT, "tar '%s': %s at offset %llu (%zu bytes) runs past "
                         "the end of the %llu-byte file (truncated?)", t->path, what,
                         (unsigned long long)off, n, (unsigned long long)t->size);
    if (n == 0)
        return DBR_OK;
    if (t->bytes) {
        memcpy(dst, t->bytes + off, n);
        return DBR_OK;
    }
    size_t got = 0;
    int rc = dbr__pread_full(t->fd, dst, n, off, &got, t->path);
    if (rc == DBR_OK && got != n)
        rc = dbr__fail(DBR_E_IO, "tar '%s' shrank while open: %s at offset %llu", t->path,
                       what, (unsigned long long)off);
    return rc;
}

/* ---- header fields ---- */

/* A numeric field as tarfile reads it: base-256 when the top bit of the
 * first byte is set (GNU, for values over the octal range), else octal
 * digits up to the first NUL, surrounded by optional spaces.  -1 if it is
 * neither. */
static int parse_number(const unsigned char *p, size_t n, int64_t *out)
{
    if (p[0] & 0x80) {
        if (p[0] == 0xff)
            return -1; /* negative: no size or time we accept is */
        uint64_t v = p[0] & 0x3f;
        for (size_t i = 1; i < n; i++) {
            if (v >> 55)
                return -1;
            v = v << 8 | p[i];
        }
        if (v > INT64_MAX)
            return -1;
        *out = (int64_t)v;
        return 0;
    }
    size_t i = 0, end = 0;
    while (end < n && p[end] != 0)
        end++;
    while (i < end && (p[i] == ' ' || p[i] == '\t'))
        i++;
    while (end > i && (p[end - 1] == ' ' || p[end - 1] == '\t'))
        end--;
    uint64_t v = 0;
    for (; i < end; i++) {
        if (p[i] < '0' || p[i] > '7' || v >> 60)
            return -1;
        v = v * 8 + (uint64_t)(p[i] - '0');
    }
    *out = (int64_t)v;
    return 0;
}

/* The stored checksum matches the unsigned or the signed byte sum (both
 * exist in the wild; tarfile accepts either), with the field as spaces. */
static int checksum_ok(const unsigned char *h)
{
    int64_t stored;
    if (parse_number(h + 148, 8, &stored) != 0)
        return 0;
    int64_t u = 8 * ' ', s = 8 * ' ';
    for (int i = 0; i < BLOCK; i++) {
        if (i >= 148 && i < 156)
            continue;
        u += h[i];
        s += (signed char)h[i];
    }
    return stored == u || stored == s;
}

static int all_zero(const unsigned char *h)
{
    for (int i = 0; i < BLOCK; i++)
        if (h[i])
            return 0;
    return 1;
}

/* 1 if a '/'-separated component of name is exactly "..". */
static int climbs(const char *name, size_t len)
{
    for (size_t i = 0; i < len; ) {
        size_t j = i;
        while (j < len && name[j] != '/')
            j++;
        if (j - i == 2 && name[i] == '.' && name[i + 1] == '.')
            return 1;
        i = j + 1;
    }
    return 0;
}

/* ---- building the index ---- */

static int add_member(dbr_tar *t, const tmember *m, const char *name, size_t len)
{
    if (t->count >= t->opts.max_members)
        return dbr__fail(DBR_E_LIMIT, "tar '%s' has more than %llu members (raise "
                         "max_members to open it)", t->path,
                         (unsigned long long)t->opts.max_members);
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        tmember *grown = realloc(t->members, cap * sizeof *grown);
        if (!grown)
            return dbr__fail(DBR_E_NOMEM, "out of memory indexing '%s'", t->path);
        t->members = grown;
        t->cap = cap;
    }
    if (t->names_len + len + 1 > t->names_cap) {
        size_t cap = t->names_cap ? t->names_cap : 4096;
        while (t->names_len + len + 1 > cap)
            cap *= 2;
        char *grown = realloc(t->names, cap);
        if (!grown)
            return dbr__fail(DBR_E_NOMEM, "out of memory indexing '%s'", t->path);
        t->names = grown;
        t->names_cap = cap;
    }
    memcpy(t->names + t->names_len, name, len);
    t->names[t->names_len + len] = '\0';
    tmember *dst = &t->members[t->count++];
    *dst = *m;
    dst->name = t->names_len;
    dst->name_len = (uint32_t)len;
    t->names_len += len + 1;
    return DBR_OK;
}

/* Pending overrides from pax ('x') and GNU long name ('L') records, which
 * apply to the next real header. */
typedef struct pending {
    char *name;     /* malloc'd, or NULL */
    size_t name_len;
    int has_size, has_mtime;
    int64_t size, mtime;
    uint64_t first_hdr; /* where the first of these records began */
    int active;
} pending;

static void pending_clear(pending *p)
{
    free(p->name);
    memset(p, 0, sizeof *p);
}

static int set_pending_name(dbr_tar *t, pending *p, const char *s, size_t n)
{
    char *copy = malloc(n + 1);
    if (!copy)
        return dbr__fail(DBR_E_NOMEM, "out of memory indexing '%s'", t->path);
    memcpy(copy, s, n);
    copy[n] = '\0';
    free(p->name);
    p->name = copy;
    p->name_len = n;
    return DBR_OK;
}

/* Reads the data of a pax or long name record, bounded by max_header_size
 * so a declared size never drives a large allocation. */
static int read_record(dbr_tar *t, uint64_t data, int64_t size, const char *kind,
                       const char *name, char **out)
{
    if ((uint64_t)size > t->opts.max_header_size)
        return dbr__fail(DBR_E_LIMIT, "tar '%s': %s record for '%s' at offset %llu declares "
                         "%lld bytes, over the max_header_size limit of %llu", t->path, kind,
                         name, (unsigned long long)data - BLOCK, (long long)size,
                         (unsigned long long)t->opts.max_header_size);
    char *buf = malloc((size_t)size + 1);
    if (!buf)
        return dbr__fail(DBR_E_NOMEM, "out of memory indexing '%s'", t->path);
    int rc = read_at(t, buf, (size_t)size, data, kind);
    if (rc != DBR_OK) {
        free(buf);
        return rc;
    }
    buf[size] = '\0';
    *out = buf;
    return DBR_OK;
}

/* Parses pax records "LEN key=value\n" (POSIX.1-2001); path, size and
 * mtime are used, other keys ignored. */
static int parse_pax(dbr_tar *t, pending *p, const char *rec, size_t n, uint64_t at)
{
    size_t pos = 0;
    while (pos < n) {
        if (rec[pos] == '\0')
            break; /* trailing NUL padding */
        size_t len = 0, i = pos;
        while (i < n && rec[i] >= '0' && rec[i] <= '9' && len < n)
            len = len * 10 + (size_t)(rec[i++] - '0');
        if (i == pos || i >= n || rec[i] != ' ' || len <= i - pos + 1 || len > n - pos ||
            rec[pos + len - 1] != '\n')
            return dbr__fail(DBR_E_CORRUPT, "tar '%s': malformed pax header at offset %llu "
                             "(record at byte %zu)", t->path, (unsigned long long)at, pos);
        const char *key = rec + i + 1, *end = rec + pos + len - 1;
        const char *eq = memchr(key, '=', (size_t)(end - key));
        if (!eq)
            return dbr__fail(DBR_E_CORRUPT, "tar '%s': pax record without '=' at offset "
                             "%llu", t->path, (unsigned long long)at);
        size_t klen = (size_t)(eq - key), vlen = (size_t)(end - eq - 1);
        const char *val = eq + 1;
        if (klen == 4 && memcmp(key, "path", 4) == 0) {
            const char *nul = memchr(val, '\0', vlen);
            int rc = set_pending_name(t, p, val, nul ? (size_t)(nul - val) : vlen);
            if (rc != DBR_OK)
                return rc;
        } else if ((klen == 4 && memcmp(key, "size", 4) == 0) ||
                   (klen == 5 && memcmp(key, "mtime", 5) == 0)) {
            int is_size = klen == 4;
            uint64_t v = 0;
            size_t k = 0;
            for (; k < vlen && val[k] >= '0' && val[k] <= '9'; k++) {
                if (v > (uint64_t)INT64_MAX / 10)
                    break;
                v = v * 10 + (uint64_t)(val[k] - '0');
            }
            /* mtime may have a fraction; size must be all digits */
            int ok = k > 0 && v <= (uint64_t)INT64_MAX &&
                     (k == vlen || (!is_size && val[k] == '.'));
            if (!ok && is_size)
                return dbr__fail(DBR_E_CORRUPT, "tar '%s': pax header at offset %llu has a "
                                 "bad size '%.*s'", t->path, (unsigned long long)at,
                                 (int)(vlen < 40 ? vlen : 40), val);
            if (ok && is_size) {
                p->has_size = 1;
                p->size = (int64_t)v;
            } else if (ok) {
                p->has_mtime = 1;
                p->mtime = (int64_t)v;
            }
        }
        pos += len;
    }
    return DBR_OK;
}

/* The name a plain header gives: name field, joined to the ustar prefix
 * (except for GNU record types), as tarfile builds it. */
static size_t header_name(const unsigned char *h, char type, char *dst)
{
    size_t n = 0, pn = 0;
    while (n < 100 && h[n])
        n++;
    while (pn < 155 && h[345 + pn])
        pn++;
    size_t len = 0;
    if (pn && type != 'L' && type != 'K' && type != 'S') {
        memcpy(dst, h + 345, pn);
        dst[pn] = '/';
        len = pn + 1;
    }
    memcpy(dst + len, h, n);
    return len + n;
}

/* The compression whose magic number starts block h (a .tar.gz, .tar.bz2,
 * .tar.xz or .tar.zst shard), or NULL. */
static const char *compression_of(const unsigned char *h)
{
    if (h[0] == 0x1f && h[1] == 0x8b)
        return "gzip";
    if (memcmp(h, "BZh", 3) == 0)
        return "bzip2";
    if (memcmp(h, "\xfd" "7zXZ", 5) == 0)
        return "xz";
    if (memcmp(h, "\x28\xb5\x2f\xfd", 4) == 0)
        return "zstd";
    return NULL;
}

static int refuse_compressed(const dbr_tar *t, const char *kind)
{
    return dbr__fail(DBR_E_UNSUPPORTED, "tar '%s' is %s-compressed: members are read in "
                     "place, so it needs decompressing first (dareblopy's Python TarArchive "
                     "and tar_shards do that into a cache)", t->path, kind);
}

static int scan(dbr_tar *t)
{
    if (t->size == 0)
        return dbr__fail(DBR_E_CORRUPT, "'%s' is empty: not a tar archive", t->path);
    unsigned char h[BLOCK];
    char hname[100 + 1 + 155 + 1];
    pending p;
    memset(&p, 0, sizeof p);
    const char *last = NULL; /* the member before, for errors without a name */
    int rc = DBR_OK;
    uint64_t off = 0, header_at = 0;
    while (rc == DBR_OK && off < t->size) {
        header_at = off;
        if (t->size - off < BLOCK) {
            size_t got = 0; /* a compressed tar this small is named too */
            memset(h, 0, sizeof h);
            if (off == 0 && dbr_file_pread(t->src, h, (size_t)t->size, 0, &got) == DBR_OK &&
                compression_of(h) != NULL)
                rc = refuse_compressed(t, compression_of(h));
            else
                rc = dbr__fail(DBR_E_CORRUPT, "tar '%s': header at offset %llu is cut off "
                               "after %llu bytes (truncated file; the member before is '%s')",
                               t->path, (unsigned long long)off,
                               (unsigned long long)(t->size - off), last ? last : "(none)");
            break;
        }
        if ((rc = read_at(t, h, BLOCK, off, "header")) != DBR_OK)
            break;
        if (all_zero(h))
            break; /* end of archive */
        char type = (char)h[156];
        size_t hlen = header_name(h, type, hname);
        hname[hlen] = '\0';
        const char *name = p.name ? p.name : hname;
        const char *packed = off == 0 ? compression_of(h) : NULL;
        if (!checksum_ok(h) && packed) {
            rc = refuse_compressed(t, packed);
            break;
        }
        if (!checksum_ok(h)) {
            rc = dbr__fail(DBR_E_CORRUPT, "tar '%s': bad header checksum at offset %llu "
                           "(member '%s'; the member before is '%s'): not a tar file, or "
                           "damaged", t->path, (unsigned long long)off, name,
                           last ? last : "(none)");
            break;
        }
        int64_t size, mtime, mode;
        if (parse_number(h + 124, 12, &size) != 0 || parse_number(h + 136, 12, &mtime) != 0 ||
            parse_number(h + 100, 8, &mode) != 0) {
            rc = dbr__fail(DBR_E_CORRUPT, "tar '%s': member '%s' at offset %llu has a "
                           "malformed size, mtime or mode field", t->path, name,
                           (unsigned long long)off);
            break;
        }
        int record = type == 'x' || type == 'L' || type == 'g' || type == 'K' || type == 'X';
        if (!record && p.has_size)
            size = p.size;
        if (!record && p.has_mtime)
            mtime = p.mtime;
        uint64_t data = off + BLOCK;
        if ((uint64_t)size > t->size - data) {
            rc = dbr__fail(DBR_E_CORRUPT, "tar '%s': member '%s' at offset %llu: its %lld "
                           "bytes of data run past the end of the %llu-byte file "
                           "(truncated?)", t->path, name, (unsigned long long)off,
                           (long long)size, (unsigned long long)t->size);
            break;
        }
        uint64_t next = data + ((uint64_t)size + BLOCK - 1) / BLOCK * BLOCK;
        if (!p.active) {
            p.active = 1;
            p.first_hdr = off;
        }
        if (type == 'L' || type == 'x' || type == 'X') {
            char *rec = NULL;
            rc = read_record(t, data, size, type == 'L' ? "GNU long name" : "pax header",
                             name, &rec);
            if (rc == DBR_OK)
                rc = type == 'L' ? set_pending_name(t, &p, rec, strlen(rec))
                                 : parse_pax(t, &p, rec, (size_t)size, off);
            free(rec);
            off = next;
            continue;
        }
        if (type == 'K' || type == 'g') {
            /* a long link name, or global pax records: nothing we use */
            if ((uint64_t)size > t->opts.max_header_size) {
                rc = dbr__fail(DBR_E_LIMIT, "tar '%s': record at offset %llu declares %lld "
                               "bytes, over the max_header_size limit of %llu", t->path,
                               (unsigned long long)off, (long long)size,
                               (unsigned long long)t->opts.max_header_size);
                break;
            }
            off = next;
            continue;
        }
        int is_dir = type == '5' || (type == '\0' && hlen && hname[hlen - 1] == '/');
        int is_file = !is_dir && (type == '0' || type == '\0' || type == '7');
        if (type == 'S' || type == 'M') {
            rc = dbr__fail(DBR_E_UNSUPPORTED, "tar '%s': member '%s' at offset %llu is a GNU "
                           "%s member, which is not supported", t->path, name,
                           (unsigned long long)off, type == 'S' ? "sparse" : "multi-volume");
            break;
        }
        size_t nlen = strlen(name);
        if (climbs(name, nlen)) {
            rc = dbr__fail(DBR_E_CORRUPT, "tar '%s': member '%s' at offset %llu has '..' in "
                           "its name, which could escape the archive", t->path, name,
                           (unsigned long long)off);
            break;
        }
        if (is_dir)
            while (nlen > 1 && name[nlen - 1] == '/')
                nlen--;
        if (is_file || is_dir) {
            if (nlen > UINT32_MAX) {
                rc = dbr__fail(DBR_E_LIMIT, "tar '%s': a member name is too long", t->path);
                break;
            }
            tmember m = {p.first_hdr, data, is_dir ? 0 : (uint64_t)size, mtime, 0, 0,
                         (uint32_t)mode, is_dir ? '5' : (uint32_t)(unsigned char)type};
            rc = add_member(t, &m, name, nlen);
            if (rc == DBR_OK)
                last = member_name(t, &t->members[t->count - 1]);
        }
        pending_clear(&p);
        off = next;
    }
    /* As tarfile: the padding after the last data must be there too (the
     * member itself is kept with keep_intact_prefix, its data being whole). */
    if (rc == DBR_OK && off > t->size)
        rc = dbr__fail(DBR_E_CORRUPT, "tar '%s': the file ends inside the padding after the "
                       "data of the header at offset %llu (member '%s'): truncated file",
                       t->path, (unsigned long long)header_at, last ? last : "(none)");
    if (rc == DBR_OK && p.active && (p.name || p.has_size))
        rc = dbr__fail(DBR_E_CORRUPT, "tar '%s': a pax or long name record at offset %llu "
                       "is not followed by its member (truncated?)", t->path,
                       (unsigned long long)p.first_hdr);
    pending_clear(&p);
    /* Damage after intact members: keep them (tarfile and webdataset read
     * them too), and keep the reason for the caller. */
    if (rc == DBR_E_CORRUPT && t->opts.keep_intact_prefix && t->count > 0) {
        t->damage = dbr__strdup(dbr_last_error());
        rc = t->damage ? DBR_OK : dbr__fail(DBR_E_NOMEM, "out of memory opening '%s'",
                                            t->path);
    }
    return rc;
}

static int build_table(dbr_tar *t)
{
    size_t size = 16;
    while (size < t->count * 2)
        size *= 2;
    t->table = calloc(size, sizeof *t->table);
    if (!t->table)
        return dbr__fail(DBR_E_NOMEM, "out of memory indexing '%s'", t->path);
    t->mask = size - 1;
    for (size_t i = 0; i < t->count; i++) {
        const tmember *m = &t->members[i];
        size_t slot = (size_t)dbr__hash_bytes(member_name(t, m), m->name_len) & t->mask;
        for (uint32_t j; (j = t->table[slot]) != 0; slot = (slot + 1) & t->mask) {
            const tmember *o = &t->members[j - 1];
            if (o->name_len == m->name_len &&
                memcmp(member_name(t, o), member_name(t, m), m->name_len) == 0)
                break;
        }
        t->table[slot] = (uint32_t)(i + 1); /* a later duplicate wins, as on extraction */
    }
    return DBR_OK;
}

/* ---- the saved index ----
 *
 * Little-endian: "DBRTAR1\n", file size, file mtime (ns), member count,
 * names bytes; then per member hdr, data, size, mtime, mode | type << 32,
 * name_len (6 x u64); then the names, each NUL-terminated; then the FNV-1a
 * hash of everything before it.  Loading checks every field against the
 * file it is for, so a stale or damaged index is refused, never trusted. */

static const char INDEX_MAGIC[8] = {'D', 'B', 'R', 'T', 'A', 'R', '1', '\n'};
enum { INDEX_HEAD = 8 + 4 * 8, INDEX_ROW = 6 * 8 };

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

int dbr_tar_save_index(const dbr_tar *tar, void **out, size_t *out_len)
{
    if (!tar || !out || !out_len)
        return dbr__fail(DBR_E_ARG, "dbr_tar_save_index: NULL argument");
    if (tar->damage)
        return dbr__fail(DBR_E_CORRUPT, "tar '%s' is damaged, so its index is not kept: %s",
                         tar->path, tar->damage);
    size_t n = INDEX_HEAD + tar->count * INDEX_ROW + tar->names_len + 8;
    unsigned char *b = malloc(n);
    if (!b)
        return dbr__fail(DBR_E_NOMEM, "out of memory saving the index of '%s'", tar->path);
    memcpy(b, INDEX_MAGIC, 8);
    put64(b + 8, tar->size);
    put64(b + 16, (uint64_t)tar->mtime_ns);
    put64(b + 24, tar->count);
    put64(b + 32, tar->names_len);
    unsigned char *p = b + INDEX_HEAD;
    for (size_t i = 0; i < tar->count; i++, p += INDEX_ROW) {
        const tmember *m = &tar->members[i];
        put64(p, m->hdr);
        put64(p + 8, m->data);
        put64(p + 16, m->size);
        put64(p + 24, (uint64_t)m->mtime);
        put64(p + 32, m->mode | (uint64_t)m->type << 32);
        put64(p + 40, m->name_len);
    }
    if (tar->names_len) /* names is NULL in an empty tar */
        memcpy(p, tar->names, tar->names_len);
    p += tar->names_len;
    put64(p, dbr__hash_bytes((const char *)b, (size_t)(p - b)));
    *out = b;
    *out_len = n;
    return DBR_OK;
}

static int load_index(dbr_tar *t, const unsigned char *b, size_t n)
{
#define STALE(...) dbr__fail(DBR_E_CORRUPT, __VA_ARGS__)
    if (n < INDEX_HEAD + 8 || memcmp(b, INDEX_MAGIC, 8) != 0)
        return STALE("saved index for tar '%s' is not a dareblopy tar index", t->path);
    if (get64(b + n - 8) != dbr__hash_bytes((const char *)b, n - 8))
        return STALE("saved index for tar '%s' is damaged (hash mismatch)", t->path);
    if (get64(b + 8) != t->size || (int64_t)get64(b + 16) != t->mtime_ns)
        return STALE("saved index for tar '%s' is stale: the file changed since", t->path);
    uint64_t count = get64(b + 24), names_len = get64(b + 32);
    if (count > t->opts.max_members || count > (n - INDEX_HEAD) / INDEX_ROW ||
        names_len != n - INDEX_HEAD - 8 - count * INDEX_ROW)
        return STALE("saved index for tar '%s' has inconsistent sizes", t->path);
    t->members = malloc((count ? count : 1) * sizeof *t->members);
    t->names = malloc(names_len ? names_len : 1);
    if (!t->members || !t->names)
        return dbr__fail(DBR_E_NOMEM, "out of memory loading the index of '%s'", t->path);
    const unsigned char *p = b + INDEX_HEAD, *names = p + count * INDEX_ROW;
    memcpy(t->names, names, names_len);
    t->names_len = t->names_cap = names_len;
    size_t at = 0;
    for (size_t i = 0; i < count; i++, p += INDEX_ROW) {
        tmember *m = &t->members[i];
        m->hdr = get64(p);
        m->data = get64(p + 8);
        m->size = get64(p + 16);
        m->mtime = (int64_t)get64(p + 24);
        uint64_t mt = get64(p + 32), len = get64(p + 40);
        m->mode = (uint32_t)mt;
        m->type = (uint32_t)(mt >> 32);
        if (len >= names_len - at || t->names[at + len] != '\0' ||
            memchr(t->names + at, '\0', len) || climbs(t->names + at, len) ||
            m->data > t->size || m->size > t->size - m->data || m->hdr + BLOCK > m->data)
            return STALE("saved index for tar '%s' has a bad entry %zu", t->path, i);
        m->name = at;
        m->name_len = (uint32_t)len;
        at += len + 1;
    }
    if (at != names_len)
        return STALE("saved index for tar '%s' has stray name bytes", t->path);
    t->count = t->cap = count;
    return DBR_OK;
#undef STALE
}

/* ---- opening ---- */

/* Maps the file read-only (shared, so forked children and the page cache
 * share it); a failed mmap is not an error: reads fall back to pread. */
static void map_file(dbr_tar *t)
{
    if (t->opts.use_pread || t->size == 0 || t->size > SIZE_MAX)
        return;
    void *m = mmap(NULL, (size_t)t->size, PROT_READ, MAP_SHARED, t->fd, 0);
    if (m == MAP_FAILED)
        return;
    t->map = m;
    t->map_len = (size_t)t->size;
    t->bytes = m;
}

static void tar_free(dbr_tar *t)
{
    if (t->map)
        munmap(t->map, t->map_len);
    dbr_file_close(t->src);
    free(t->path);
    free(t->damage);
    free(t->members);
    free(t->names);
    free(t->table);
    free(t);
}

int dbr_tar_open_indexed(const char *path, const dbr_tar_options *opts, const void *index,
                         size_t index_len, dbr_tar **out)
{
    if (!path || !out || (!index && index_len))
        return dbr__fail(DBR_E_ARG, "dbr_tar_open_indexed: NULL argument");
    *out = NULL;
    dbr_tar *t = calloc(1, sizeof *t);
    if (!t)
        return dbr__fail(DBR_E_NOMEM, "out of memory opening '%s'", path);
    t->refs = 1;
    if (opts)
        t->opts = *opts;
    else
        dbr_tar_options_init(&t->opts);
    if (t->opts.max_members > UINT32_MAX - 1) /* the hash table holds uint32 */
        t->opts.max_members = UINT32_MAX - 1;
    t->path = dbr__strdup(path);
    int rc = t->path ? dbr_file_open(path, &t->src) : DBR_E_NOMEM;
    if (rc == DBR_OK) {
        uint64_t base;
        struct stat st;
        t->fd = dbr__file_fd(t->src, &base);
        t->size = dbr_file_size(t->src);
        if (fstat(t->fd, &st) == 0)
            t->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        map_file(t);
        rc = index ? load_index(t, index, index_len) : scan(t);
    }
    if (rc == DBR_OK)
        rc = build_table(t);
    if (rc != DBR_OK) {
        tar_free(t);
        return rc;
    }
    *out = t;
    return DBR_OK;
}

int dbr_tar_open(const char *path, const dbr_tar_options *opts, dbr_tar **out)
{
    return dbr_tar_open_indexed(path, opts, NULL, 0, out);
}

void dbr_tar_retain(const dbr_tar *tar)
{
    if (tar)
        __atomic_fetch_add(&((dbr_tar *)tar)->refs, 1, __ATOMIC_RELAXED);
}

void dbr__tar_release(void *tar)
{
    dbr_tar *t = tar;
    if (__atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0)
        tar_free(t);
}

void dbr_tar_close(dbr_tar *tar)
{
    if (tar)
        dbr__tar_release(tar);
}

/* ---- queries ---- */

const char *dbr_tar_path(const dbr_tar *tar) { return tar ? tar->path : ""; }
const char *dbr_tar_damage(const dbr_tar *tar) { return tar ? tar->damage : NULL; }
size_t dbr_tar_count(const dbr_tar *tar) { return tar ? tar->count : 0; }

uint64_t dbr_tar_entry_size(const dbr_tar *tar, size_t index)
{
    return tar && index < tar->count ? tar->members[index].size : 0;
}

int dbr_tar_entries(const dbr_tar *tar, size_t first, size_t count, dbr_tar_entry *out)
{
    if (!tar || (!out && count))
        return dbr__fail(DBR_E_ARG, "dbr_tar_entries: NULL argument");
    if (first > tar->count || count > tar->count - first)
        return dbr__fail(DBR_E_ARG, "tar '%s': members %zu..%zu requested but it has %zu",
                         tar->path, first, first + count, tar->count);
    for (size_t i = 0; i < count; i++) {
        const tmember *m = &tar->members[first + i];
        dbr_tar_entry *o = &out[i];
        memset(o, 0, sizeof *o);
        o->size = m->size;
        o->offset = m->data;
        o->header_offset = m->hdr;
        o->mtime = m->mtime;
        o->name = member_name(tar, m);
        o->name_len = m->name_len;
        o->mode = m->mode;
        o->is_dir = m->type == '5';
    }
    return DBR_OK;
}

int dbr_tar_names(const dbr_tar *tar, char **out, size_t *out_len)
{
    if (!tar || !out || !out_len)
        return dbr__fail(DBR_E_ARG, "dbr_tar_names: NULL argument");
    *out = malloc(tar->names_len ? tar->names_len : 1);
    if (!*out)
        return dbr__fail(DBR_E_NOMEM, "out of memory listing '%s'", tar->path);
    if (tar->names_len)
        memcpy(*out, tar->names, tar->names_len);
    *out_len = tar->names_len;
    return DBR_OK;
}

int dbr_tar_find(const dbr_tar *tar, const char *name, size_t *index)
{
    if (!tar || !name || !index)
        return dbr__fail(DBR_E_ARG, "dbr_tar_find: NULL argument");
    size_t n = strlen(name);
    size_t slot = (size_t)dbr__hash_bytes(name, n) & tar->mask;
    for (uint32_t i; (i = tar->table[slot]) != 0; slot = (slot + 1) & tar->mask) {
        const tmember *m = &tar->members[i - 1];
        if (m->name_len == n && memcmp(member_name(tar, m), name, n) == 0) {
            *index = i - 1;
            return DBR_OK;
        }
    }
    return dbr__fail(DBR_E_NOT_FOUND, "tar '%s' has no member named '%s'", tar->path, name);
}

/* ---- reading ---- */

/* Member index, which must exist and be a file. */
static int file_member(const dbr_tar *tar, size_t index, const tmember **out)
{
    if (index >= tar->count)
        return dbr__fail(DBR_E_ARG, "tar '%s': no member %zu (it has %zu)", tar->path, index,
                         tar->count);
    *out = &tar->members[index];
    if ((*out)->type == '5')
        return dbr__fail(DBR_E_IS_DIR, "tar '%s' member '%s' is a directory", tar->path,
                         member_name(tar, *out));
    return DBR_OK;
}

int dbr__tar_member_bytes(const dbr_tar *tar, size_t index, const void **data, size_t *len)
{
    const tmember *m = NULL;
    int rc = file_member(tar, index, &m);
    if (rc != DBR_OK)
        return rc;
    if (m->size > SIZE_MAX)
        return dbr__fail(DBR_E_LIMIT, "tar '%s' member '%s' is too large for memory",
                         tar->path, member_name(tar, m));
    *len = (size_t)m->size;
    *data = tar->bytes ? tar->bytes + m->data : NULL; /* inside the file: checked at open */
    return DBR_OK;
}

int dbr_tar_read(const dbr_tar *tar, size_t index, void *dst, size_t cap, size_t *out_len)
{
    if (!tar || !out_len || (!dst && cap))
        return dbr__fail(DBR_E_ARG, "dbr_tar_read: NULL argument");
    const void *mapped;
    int rc = dbr__tar_member_bytes(tar, index, &mapped, out_len);
    if (rc != DBR_OK)
        return rc;
    const tmember *m = &tar->members[index];
    if (cap < *out_len)
        return dbr__fail(DBR_E_TOO_SMALL, "tar '%s' member '%s' needs %zu bytes, the buffer "
                         "has %zu", tar->path, member_name(tar, m), *out_len, cap);
    if (mapped) {
        memcpy(dst, mapped, *out_len);
        return DBR_OK;
    }
    rc = read_at(tar, dst, *out_len, m->data, "member data");
    if (rc != DBR_OK) {
        char cause[512]; /* copied out: the new message is written where it lives */
        dbr__copy_last_error(cause, sizeof cause);
        return dbr__fail(rc, "tar '%s' member '%s': %s", tar->path, member_name(tar, m), cause);
    }
    return DBR_OK;
}

typedef struct read_batch {
    const dbr_tar *tar;
    const size_t *indices;
    void *const *dsts;
    const size_t *caps;
    size_t *out_lens;
    dbr__batch_status status;
} read_batch;

static void read_one(void *ctx, size_t i)
{
    read_batch *b = ctx;
    size_t len = 0;
    int rc = dbr_tar_read(b->tar, b->indices[i], b->dsts[i], b->caps[i], &len);
    if (b->out_lens)
        b->out_lens[i] = len;
    dbr__batch_item(&b->status, i, rc);
}

int dbr_tar_read_many(const dbr_tar *tar, const size_t *indices, size_t n, void *const *dsts,
                      const size_t *caps, size_t *out_lens, int threads, int *statuses,
                      char *messages, size_t message_cap)
{
    if (!tar || (n && (!indices || !dsts || !caps)))
        return dbr__fail(DBR_E_ARG, "dbr_tar_read_many: NULL argument");
    read_batch b = {tar, indices, dsts, caps, out_lens,
                    DBR__BATCH_STATUS_ITEMS(statuses, messages, message_cap)};
    /* Copies from the mapping are fast: threads pay only for big batches. */
    dbr__parallel_for(n, threads, read_one, &b);
    return dbr__batch_result(&b.status, 0);
}

int dbr_tar_open_entry(const dbr_tar *tar, size_t index, dbr_file **out)
{
    if (!tar || !out)
        return dbr__fail(DBR_E_ARG, "dbr_tar_open_entry: NULL argument");
    *out = NULL;
    const tmember *m = NULL;
    int rc = file_member(tar, index, &m);
    if (rc != DBR_OK)
        return rc;
    /* A window onto the archive file: no copy, read with pread. */
    rc = dbr__file_from_fd(tar->fd, 0, m->data, m->size, member_name(tar, m), m->mtime, out);
    if (rc == DBR_OK) {
        dbr_tar_retain(tar);
        dbr__file_set_owner(*out, (void *)tar, dbr__tar_release);
    }
    return rc;
}
