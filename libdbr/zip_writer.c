/* zip_writer.c - writing ZIP archives (APPNOTE.TXT 4.3): each entry is
 * compressed in memory, so its local header carries the final sizes and CRC
 * (no data descriptors); the central directory collects in memory and is
 * written at finish, with ZIP64 records only where a field overflows.  All
 * of it goes to a temporary file that is renamed into place at the end. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <lz4hc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define U32_MAX 0xFFFFFFFFu

struct dbr_zip_writer {
    FILE *fp;
    char *path, *tmp;
    uint64_t offset;       /* bytes written so far                     */
    unsigned char *cd;     /* central directory records, in order      */
    size_t cd_len, cd_cap;
    uint64_t count;
    int failed, finished;  /* a failed writer refuses further work     */
};

static void put16(unsigned char *p, unsigned v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *p, uint32_t v)
{
    put16(p, v & 0xFFFF);
    put16(p + 2, v >> 16);
}
static void put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}
/* The fields local and central headers share, in the same order: version
 * needed, flags, method, time, date, CRC-32 (14 bytes). */
static void put_shared(unsigned char *p, unsigned version, unsigned flags, unsigned method,
                       unsigned time, unsigned date, uint32_t crc)
{
    put16(p, version);
    put16(p + 2, flags);
    put16(p + 4, method);
    put16(p + 6, time);
    put16(p + 8, date);
    put32(p + 10, crc);
}
static uint32_t clamp32(uint64_t v) { return v >= U32_MAX ? U32_MAX : (uint32_t)v; }

static int emit(dbr_zip_writer *w, const void *data, size_t n)
{
    if (n && fwrite(data, 1, n, w->fp) != n) {
        w->failed = 1;
        return dbr__fail_errno(errno ? errno : EIO, "cannot write", w->tmp);
    }
    w->offset += n;
    return DBR_OK;
}

/* True for a name that is valid UTF-8 and not plain ASCII: only such a
 * name may carry the UTF-8 flag (other bytes, such as a Latin-1 file name,
 * go unflagged; readers that trust the flag refuse a false one). */
static int needs_utf8_flag(const char *name, size_t n)
{
    const unsigned char *s = (const unsigned char *)name;
    int ascii = 1;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                   : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (len == 0 || n - i < len)
            return 0;
        /* the second byte's range rules out overlong forms, surrogates
         * and code points past U+10FFFF */
        unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
        unsigned hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
        for (size_t k = 1; k < len; k++) {
            unsigned b = s[i + k];
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF))
                return 0;
        }
        ascii &= len == 1;
        i += len;
    }
    return !ascii;
}

/* Creates path + ".tmpXXXXXX" (the X's made unique) beside the target, so
 * the final rename stays on one file system.  open(O_EXCL, 0666) rather
 * than mkstemp: the kernel applies the umask as for any file a tool
 * creates, where mkstemp would force 0600.  Returns the fd, or -1 with
 * errno set. */
static int create_temp_beside(char *tmp, size_t n)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    /* Only needs to differ between concurrent writers; O_EXCL decides. */
    uint64_t salt = (uint64_t)now.tv_nsec * 0x9E3779B97F4A7C15u ^ (uint64_t)getpid() << 32 ^
                    (uint64_t)(uintptr_t)tmp;
    for (int attempt = 0; attempt < 100; attempt++) {
        salt = salt * 6364136223846793005u + 1442695040888963407u;
        snprintf(tmp + n, 11, ".tmp%06x", (unsigned)(salt >> 40) & 0xFFFFFFu);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

int dbr_zip_writer_open(const char *path, dbr_zip_writer **out)
{
    if (!path || !out)
        return dbr__fail(DBR_E_ARG, "dbr_zip_writer_open: NULL argument");
    *out = NULL;
    dbr_zip_writer *w = calloc(1, sizeof *w);
    size_t n = strlen(path);
    char *tmp = malloc(n + 12);
    char *copy = dbr__strdup(path);
    if (!w || !tmp || !copy) {
        free(w);
        free(tmp);
        free(copy);
        return dbr__fail(DBR_E_NOMEM, "out of memory creating '%s'", path);
    }
    memcpy(tmp, path, n);
    int fd = create_temp_beside(tmp, n);
    if (fd < 0) {
        int err = errno;
        free(w);
        free(tmp);
        free(copy);
        return dbr__fail_errno(err, "cannot create a temporary file beside", path);
    }
    w->fp = fdopen(fd, "wb");
    if (!w->fp) {
        int err = errno;
        close(fd);
        unlink(tmp);
        free(w);
        free(tmp);
        free(copy);
        return dbr__fail_errno(err, "cannot write", path);
    }
    w->path = copy;
    w->tmp = tmp;
    *out = w;
    return DBR_OK;
}

void dbr_zip_writer_free(dbr_zip_writer *w)
{
    if (!w)
        return;
    if (w->fp) {
        fclose(w->fp);
        unlink(w->tmp);
    }
    free(w->path);
    free(w->tmp);
    free(w->cd);
    free(w);
}

/* Unix seconds (UTC) to DOS date and time, clamped to DOS's 1980-2107
 * (civil_from_days, after Howard Hinnant's published algorithm). */
static void unix_to_dos(int64_t t, uint16_t *date, uint16_t *time)
{
    if (t < 315532800)
        t = 315532800; /* 1980-01-01 */
    int64_t days = t / 86400, secs = t % 86400;
    days += 719468;
    int64_t era = days / 146097, doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    if (y > 2107) {
        y = 2107, m = 12, d = 31, secs = 86399;
    }
    *date = (uint16_t)((y - 1980) << 9 | m << 5 | d);
    *time = (uint16_t)((secs / 3600) << 11 | (secs / 60 % 60) << 5 | (secs % 60) / 2);
}

/* Deflates into a new buffer; *out stays NULL if the result is not smaller. */
static int deflate_into(const char *name, const void *data, size_t len, int level,
                        unsigned char **out, size_t *out_len)
{
    z_stream s;
    memset(&s, 0, sizeof s);
    if (deflateInit2(&s, level ? level : Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return dbr__fail(DBR_E_ARG, "deflate level %d for '%s' is not 1-9", level, name);
    size_t cap = len; /* no point in output as large as the input */
    unsigned char *buf = malloc(cap ? cap : 1);
    if (!buf) {
        deflateEnd(&s);
        return dbr__fail(DBR_E_NOMEM, "out of memory compressing '%s'", name);
    }
    const unsigned char *in = data;
    size_t in_left = len, done = 0;
    int zrc = Z_OK;
    while (zrc == Z_OK && done < cap) {
        if (s.avail_in == 0 && in_left) {
            s.avail_in = in_left > 0x40000000u ? 0x40000000u : (uInt)in_left;
            s.next_in = (unsigned char *)in;
            in += s.avail_in;
            in_left -= s.avail_in;
        }
        size_t room = cap - done;
        s.next_out = buf + done;
        s.avail_out = room > 0x40000000u ? 0x40000000u : (uInt)room;
        uInt before = s.avail_out;
        zrc = deflate(&s, in_left ? Z_NO_FLUSH : Z_FINISH);
        done += before - s.avail_out;
    }
    deflateEnd(&s);
    if (zrc != Z_STREAM_END) {
        free(buf); /* did not fit in len bytes: store instead */
        return DBR_OK;
    }
    *out = buf;
    *out_len = done;
    return DBR_OK;
}

static int lz4_into(const char *name, const void *data, size_t len, int level,
                    unsigned char **out, size_t *out_len)
{
    if (len > LZ4_MAX_INPUT_SIZE)
        return dbr__fail(DBR_E_UNSUPPORTED, "'%s' is %zu bytes, over the 2 GiB an LZ4 "
                         "block can hold; use deflate or stored", name, len);
    int cap = (int)len; /* as with deflate: only a smaller result is kept */
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf)
        return dbr__fail(DBR_E_NOMEM, "out of memory compressing '%s'", name);
    int n = level <= 1 ? LZ4_compress_default(data, (char *)buf, (int)len, cap)
                       : LZ4_compress_HC(data, (char *)buf, (int)len, cap, level);
    if (n <= 0 || (size_t)n >= len) {
        free(buf);
        return DBR_OK;
    }
    *out = buf;
    *out_len = (size_t)n;
    return DBR_OK;
}

static int cd_reserve(dbr_zip_writer *w, size_t n)
{
    if (w->cd_len + n <= w->cd_cap)
        return DBR_OK;
    size_t cap = w->cd_cap ? w->cd_cap * 2 : 65536;
    while (cap < w->cd_len + n)
        cap *= 2;
    unsigned char *cd = realloc(w->cd, cap);
    if (!cd) {
        w->failed = 1;
        return dbr__fail(DBR_E_NOMEM, "out of memory writing '%s'", w->path);
    }
    w->cd = cd;
    w->cd_cap = cap;
    return DBR_OK;
}

int dbr_zip_writer_add(dbr_zip_writer *w, const char *name, const void *data, size_t len,
                       int method, int level, int64_t mtime)
{
    if (!w || !name || (!data && len))
        return dbr__fail(DBR_E_ARG, "dbr_zip_writer_add: NULL argument");
    if (w->failed || w->finished)
        return dbr__fail(DBR_E_ARG, "archive '%s' is %s; no more entries can be added",
                         w->path, w->finished ? "finished" : "broken by an earlier error");
    size_t nlen = strlen(name);
    int is_dir = nlen && name[nlen - 1] == '/';
    if (nlen == 0 || nlen > 65535)
        return dbr__fail(DBR_E_ARG, "entry name of %zu bytes: ZIP names take 1 to 65535", nlen);
    if (is_dir && len)
        return dbr__fail(DBR_E_ARG, "entry '%s' ends with '/' (a directory) but has data", name);
    if (method != DBR_ZIP_STORED && method != DBR_ZIP_DEFLATE && method != DBR_ZIP_LZ4)
        return dbr__fail(DBR_E_UNSUPPORTED, "entry '%s': method %d cannot be written; use "
                         "stored (0), deflate (8) or LZ4 (30)", name, method);
    if (level < 0 || level > (method == DBR_ZIP_LZ4 ? LZ4HC_CLEVEL_MAX : 9))
        return dbr__fail(DBR_E_ARG, "entry '%s': level %d is out of range for method %d",
                         name, level, method);

    unsigned char *packed = NULL;
    size_t csize = len;
    int rc = DBR_OK;
    if (method == DBR_ZIP_DEFLATE && len)
        rc = deflate_into(name, data, len, level, &packed, &csize);
    else if (method == DBR_ZIP_LZ4 && len)
        rc = lz4_into(name, data, len, level, &packed, &csize);
    if (rc != DBR_OK)
        return rc;
    if (!packed) {
        method = DBR_ZIP_STORED;
        csize = len;
    }

    uint32_t crc = dbr__crc32(0, data, len);
    uint16_t date, time;
    unix_to_dos(mtime, &date, &time);
    unsigned flags = needs_utf8_flag(name, nlen) ? DBR_ZIP_FLAG_UTF8 : 0;
    int big = len >= U32_MAX || csize >= U32_MAX;   /* sizes go to ZIP64 */
    int far = w->offset >= U32_MAX;                 /* so does the offset */
    unsigned version = big || far ? 45 : 20;

    /* Local header; ZIP64 local extras hold both sizes (APPNOTE 4.5.3). */
    unsigned char h[30 + 20];
    put32(h, 0x04034b50u);
    put_shared(h + 4, version, flags, (unsigned)method, time, date, crc);
    put32(h + 18, big ? U32_MAX : (uint32_t)csize);
    put32(h + 22, big ? U32_MAX : (uint32_t)len);
    put16(h + 26, (unsigned)nlen);
    put16(h + 28, big ? 20 : 0);
    if (big) {
        put16(h + 30, 0x0001);
        put16(h + 32, 16);
        put64(h + 34, len);
        put64(h + 42, csize);
    }
    uint64_t header_at = w->offset;
    rc = emit(w, h, 30);
    if (rc == DBR_OK)
        rc = emit(w, name, nlen);
    if (rc == DBR_OK && big)
        rc = emit(w, h + 30, 20);
    if (rc == DBR_OK)
        rc = emit(w, packed ? packed : data, csize);
    free(packed);
    if (rc != DBR_OK)
        return rc;

    /* Central record; its ZIP64 extra holds only the overflowing fields. */
    unsigned char x[4 + 24];
    size_t xlen = 4;
    if (len >= U32_MAX)
        put64(x + xlen, len), xlen += 8;
    if (csize >= U32_MAX)
        put64(x + xlen, csize), xlen += 8;
    if (far)
        put64(x + xlen, header_at), xlen += 8;
    put16(x, 0x0001);
    put16(x + 2, (unsigned)(xlen - 4));
    if (xlen == 4)
        xlen = 0;
    rc = cd_reserve(w, 46 + nlen + xlen);
    if (rc != DBR_OK)
        return rc;
    unsigned char *c = w->cd + w->cd_len;
    put32(c, 0x02014b50u);
    put16(c + 4, 3 << 8 | 45);   /* made by: Unix, spec 4.5 */
    put_shared(c + 6, version, flags, (unsigned)method, time, date, crc);
    put32(c + 20, clamp32(csize));
    put32(c + 24, clamp32(len));
    put16(c + 28, (unsigned)nlen);
    put16(c + 30, (unsigned)xlen);
    put16(c + 32, 0);            /* comment */
    put16(c + 34, 0);            /* disk    */
    put16(c + 36, 0);            /* internal attributes */
    put32(c + 38, is_dir ? (040755u << 16 | 0x10) : 0100644u << 16);
    put32(c + 42, clamp32(header_at));
    memcpy(c + 46, name, nlen);
    memcpy(c + 46 + nlen, x, xlen);
    w->cd_len += 46 + nlen + xlen;
    w->count++;
    return DBR_OK;
}

int dbr_zip_writer_finish(dbr_zip_writer *w)
{
    if (!w)
        return dbr__fail(DBR_E_ARG, "dbr_zip_writer_finish: NULL writer");
    if (w->failed || w->finished)
        return dbr__fail(DBR_E_ARG, "archive '%s' is %s", w->path,
                         w->finished ? "already finished" : "broken by an earlier error");
    uint64_t cd_at = w->offset, cd_size = w->cd_len;
    int rc = emit(w, w->cd, w->cd_len);
    int zip64 = w->count >= 0xFFFF || cd_at >= U32_MAX || cd_size >= U32_MAX;
    if (rc == DBR_OK && zip64) {
        unsigned char r[56 + 20];
        uint64_t r_at = w->offset;
        put32(r, 0x06064b50u);
        put64(r + 4, 44);            /* size of the rest of the record */
        put16(r + 12, 3 << 8 | 45);
        put16(r + 14, 45);
        put32(r + 16, 0);
        put32(r + 20, 0);
        put64(r + 24, w->count);
        put64(r + 32, w->count);
        put64(r + 40, cd_size);
        put64(r + 48, cd_at);
        put32(r + 56, 0x07064b50u);  /* the locator */
        put32(r + 60, 0);
        put64(r + 64, r_at);
        put32(r + 72, 1);
        rc = emit(w, r, sizeof r);
    }
    if (rc == DBR_OK) {
        unsigned char e[22];
        unsigned n = w->count >= 0xFFFF ? 0xFFFF : (unsigned)w->count;
        put32(e, 0x06054b50u);
        put16(e + 4, 0);
        put16(e + 6, 0);
        put16(e + 8, n);
        put16(e + 10, n);
        put32(e + 12, clamp32(cd_size));
        put32(e + 16, clamp32(cd_at));
        put16(e + 20, 0);
        rc = emit(w, e, sizeof e);
    }
    /* Durable before visible: flush and sync, then rename over the target. */
    if (rc == DBR_OK && (fflush(w->fp) != 0 || fsync(fileno(w->fp)) != 0))
        rc = dbr__fail_errno(errno, "cannot flush", w->tmp);
    if (rc == DBR_OK) {
        FILE *fp = w->fp;
        w->fp = NULL;
        if (fclose(fp) != 0)
            rc = dbr__fail_errno(errno, "cannot close", w->tmp);
        else if (rename(w->tmp, w->path) != 0)
            rc = dbr__fail_errno(errno, "cannot rename the finished archive to", w->path);
        if (rc != DBR_OK)
            unlink(w->tmp);
    }
    if (rc == DBR_OK)
        w->finished = 1;
    else
        w->failed = 1;
    return rc;
}
