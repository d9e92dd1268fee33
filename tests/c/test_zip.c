/* ZIP: the writer's output read back by the reader (all three methods),
 * lookups, listings, the VFS mount, lifetimes, and damaged archives. */
#include "internal.h"
#include "check.h"

#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

static char dir[64], path[128];

static unsigned char *pattern(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i * 31 + seed) % 251 < 64 ? 'a' + i % 7 : (i * seed) >> 3);
    return p;
}

static size_t file_bytes(const char *p, unsigned char **out)
{
    FILE *fp = fopen(p, "rb");
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    *out = malloc((size_t)n);
    size_t got = fread(*out, 1, (size_t)n, fp);
    fclose(fp);
    return got;
}

static void put_bytes(const char *p, const unsigned char *data, size_t n)
{
    FILE *fp = fopen(p, "wb");
    fwrite(data, 1, n, fp);
    fclose(fp);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static int open_rc(const char *p)
{
    dbr_zip *z = NULL;
    int rc = dbr_zip_open(p, NULL, &z);
    dbr_zip_close(z);
    return rc;
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/dbr_test_zip_XXXXXX");
    if (!mkdtemp(dir))
        return 2;
    snprintf(path, sizeof path, "%s/a.zip", dir);
    unsigned char *big = pattern(100000, 7), *small = pattern(1000, 3);

    /* The folding CRC-32 agrees with zlib at every length and alignment,
     * and chains. */
    int crc_bad = 0;
    for (size_t len = 0; len < 1500; len++)
        for (size_t off = 0; off < 3; off++)
            crc_bad += dbr__crc32(0, big + off, len) != (uint32_t)crc32(0, big + off, (uInt)len);
    CHECK(crc_bad == 0);
    CHECK(dbr__crc32(dbr__crc32(0, big, 777), big + 777, 90000) ==
          (uint32_t)crc32(0, big, 90777));
    /* Each fold level (zlib, PCLMULQDQ, AVX-512; the CPU may lack the
     * wider ones, then they fall back), with and without the copy, agrees
     * with zlib, and the copy is exact. */
    unsigned char *copy = malloc(3000 + 16);
    int copy_bad = 0;
    crc_bad = 0;
    for (int level = 0; level <= 2; level++)
        for (size_t len = 0; len < 3000; len += len < 600 ? 1 : 37)
            for (size_t off = 0; off < 3; off++) {
                uint32_t want = (uint32_t)crc32(5, big + off, (uInt)len);
                crc_bad += dbr__crc32_limited(level, 5, NULL, big + off, len) != want;
                memset(copy, 0xAB, 3000 + 16);
                crc_bad += dbr__crc32_limited(level, 5, copy + off, big + off, len) != want;
                copy_bad += memcmp(copy + off, big + off, len) != 0 || copy[off + len] != 0xAB;
            }
    CHECK(crc_bad == 0);
    CHECK(copy_bad == 0);
    CHECK(dbr__crc32_copy(0, copy, big, 2999) == (uint32_t)crc32(0, big, 2999));
    free(copy);

    /* Write. */
    dbr_zip_writer *w = NULL;
    CHECK_RC(dbr_zip_writer_open(path, &w), DBR_OK);
    CHECK_RC(dbr_zip_writer_add(w, "stored.bin", big, 100000, DBR_ZIP_STORED, 0, 0), DBR_OK);
    CHECK_RC(dbr_zip_writer_add(w, "sub/deflate.bin", big, 100000, DBR_ZIP_DEFLATE, 6, 0), DBR_OK);
    CHECK_RC(dbr_zip_writer_add(w, "sub/lz4.bin", big, 100000, DBR_ZIP_LZ4, 0, 0), DBR_OK);
    CHECK_RC(dbr_zip_writer_add(w, "sub/hc.bin", small, 1000, DBR_ZIP_LZ4, 9, 1600000000), DBR_OK);
    CHECK_RC(dbr_zip_writer_add(w, "empty/", NULL, 0, DBR_ZIP_STORED, 0, 0), DBR_OK);
    CHECK_RC(dbr_zip_writer_add(w, "../evil.txt", small, 10, DBR_ZIP_STORED, 0, 0), DBR_OK);
    CHECK_RC(dbr_zip_writer_add(w, "bad", small, 10, 12, 0, 0), DBR_E_UNSUPPORTED);
    CHECK_RC(dbr_zip_writer_add(w, "d/", small, 10, 0, 0, 0), DBR_E_ARG);
    CHECK(access(path, F_OK) != 0); /* nothing visible before finish */
    CHECK_RC(dbr_zip_writer_finish(w), DBR_OK);
    CHECK_RC(dbr_zip_writer_add(w, "late", small, 1, 0, 0, 0), DBR_E_ARG);
    dbr_zip_writer_free(w);
    dbr_zip_writer_free(NULL);

    /* An abandoned writer leaves nothing behind. */
    char gone[160];
    snprintf(gone, sizeof gone, "%s/gone.zip", dir);
    CHECK_RC(dbr_zip_writer_open(gone, &w), DBR_OK);
    CHECK_RC(dbr_zip_writer_add(w, "x", small, 100, DBR_ZIP_DEFLATE, 0, 0), DBR_OK);
    dbr_zip_writer_free(w);
    CHECK(access(gone, F_OK) != 0);

    /* The UTF-8 flag only on names that are UTF-8 (and not ASCII). */
    static const struct { const char *name; int flagged; } utf[] = {
        {"ascii.txt", 0}, {"caf\xc3\xa9", 1}, {"\xf0\x9f\x90\x88", 1},
        {"caf\xe9", 0},                                 /* Latin-1 */
        {"\xc0\xaf", 0}, {"\xe0\x80\xaf", 0},          /* overlong '/' */
        {"\xed\xa0\x80", 0}, {"\xf4\x90\x80\x80", 0}, /* surrogate, past U+10FFFF */
        {"\xc3", 0}};                                   /* cut short */
    enum { NUTF = sizeof utf / sizeof utf[0] };
    char named[160];
    snprintf(named, sizeof named, "%s/names.zip", dir);
    CHECK_RC(dbr_zip_writer_open(named, &w), DBR_OK);
    for (size_t k = 0; k < NUTF; k++)
        CHECK_RC(dbr_zip_writer_add(w, utf[k].name, "x", 1, DBR_ZIP_STORED, 0, 0), DBR_OK);
    CHECK_RC(dbr_zip_writer_finish(w), DBR_OK);
    dbr_zip_writer_free(w);
    dbr_zip *zn = NULL;
    CHECK_RC(dbr_zip_open(named, NULL, &zn), DBR_OK);
    dbr_zip_entry ue[NUTF];
    CHECK_RC(dbr_zip_entries(zn, 0, NUTF, ue), DBR_OK);
    for (size_t k = 0; k < NUTF; k++)
        CHECK(!!(ue[k].flags & DBR_ZIP_FLAG_UTF8) == utf[k].flagged);
    dbr_zip_close(zn);
    unlink(named);

    /* Read back. */
    dbr_zip *z = NULL;
    CHECK_RC(dbr_zip_open(path, NULL, &z), DBR_OK);
    if (!z)
        return check_report("test_zip");
    CHECK(dbr_zip_count(z) == 6);
    const char *names[] = {"stored.bin", "sub/deflate.bin", "sub/lz4.bin"};
    unsigned char *buf = malloc(100000);
    for (int i = 0; i < 3; i++) {
        size_t idx = 99, got = 0;
        CHECK_RC(dbr_zip_find(z, names[i], &idx), DBR_OK);
        CHECK(idx == (size_t)i);
        CHECK(dbr_zip_entry_size(z, idx) == 100000);
        CHECK_RC(dbr_zip_read(z, idx, buf, 100000, &got), DBR_OK);
        CHECK(got == 100000 && memcmp(buf, big, 100000) == 0);
        CHECK_RC(dbr_zip_read(z, idx, buf, 99999, &got), DBR_E_TOO_SMALL);
        CHECK(got == 100000);
    }
    dbr_zip_entry e[6];
    CHECK_RC(dbr_zip_entries(z, 0, 6, e), DBR_OK);
    CHECK(e[0].method == DBR_ZIP_STORED && e[1].method == DBR_ZIP_DEFLATE &&
          e[2].method == DBR_ZIP_LZ4 && e[1].compressed_size < 100000);
    CHECK(e[3].mtime == 1600000000 && e[4].is_dir == 1 && e[0].is_dir == 0);
    CHECK_STR(e[4].name, "empty/");
    CHECK_RC(dbr_zip_entries(z, 5, 2, e), DBR_E_ARG);
    size_t idx;
    CHECK_RC(dbr_zip_find(z, "missing", &idx), DBR_E_NOT_FOUND);
    CHECK(strstr(dbr_last_error(), "missing") != NULL);

    /* Batch reads, with one bad item reported by index. */
    size_t want[3] = {0, 1, 2}, caps[3] = {100000, 100000, 10}, lens[3];
    int statuses[3];
    unsigned char *b1 = malloc(100000), *b2 = malloc(100000), b3[10];
    void *dsts[3] = {b1, b2, b3};
    CHECK_RC(dbr_zip_read_many(z, want, 3, dsts, caps, lens, statuses, 2), DBR_E_TOO_SMALL);
    CHECK(statuses[0] == DBR_OK && statuses[1] == DBR_OK && statuses[2] == DBR_E_TOO_SMALL);
    CHECK(memcmp(b1, big, 100000) == 0 && memcmp(b2, big, 100000) == 0);
    CHECK(strstr(dbr_last_error(), "sub/lz4.bin") != NULL);

    /* Entry files outlive the archive handle. */
    dbr_file *f = NULL;
    CHECK_RC(dbr_zip_open_entry(z, 1, &f), DBR_OK);
    dbr_file *none = NULL;
    CHECK_RC(dbr_zip_open_entry(z, 4, &none), DBR_E_IS_DIR);
    CHECK(none == NULL);
    dbr_zip_options opts;
    dbr_zip_options_init(&opts);
    opts.verify_crc = 0;
    dbr_zip *raw = NULL;
    CHECK_RC(dbr_zip_open(path, &opts, &raw), DBR_OK);
    dbr_file *window = NULL;
    CHECK_RC(dbr_zip_open_entry(raw, 0, &window), DBR_OK);
    CHECK(dbr_file_data(window) == NULL); /* a pread window, no copy */

    /* The VFS mount. */
    dbr_vfs *vfs = NULL;
    CHECK_RC(dbr_vfs_create(&vfs), DBR_OK);
    CHECK_RC(dbr_vfs_mount_zip(vfs, z), DBR_OK);
    dbr_zip_close(z);
    dbr_zip_close(raw);
    size_t got = 0;
    CHECK_RC(dbr_file_read_all(f, buf, 100000, &got), DBR_OK);
    CHECK(got == 100000 && memcmp(buf, big, 100000) == 0);
    dbr_file_close(f);
    CHECK_RC(dbr_file_pread(window, buf, 10, 5, &got), DBR_OK);
    CHECK(got == 10 && memcmp(buf, big + 5, 10) == 0);
    dbr_file_close(window);
    CHECK(dbr_vfs_exists(vfs, "sub") == 1);
    CHECK(dbr_vfs_exists(vfs, "/sub/./lz4.bin") == 1);
    CHECK(dbr_vfs_exists(vfs, "empty") == 1);
    CHECK(dbr_vfs_exists(vfs, "evil.txt") == 0);
    dbr_stat st;
    CHECK_RC(dbr_vfs_stat(vfs, "sub/hc.bin", &st), DBR_OK);
    CHECK(st.size == 1000 && st.is_dir == 0 && st.mtime == 1600000000);
    char *list = NULL;
    size_t len = 0, count = 0;
    CHECK_RC(dbr_vfs_list(vfs, "", &list, &len, &count), DBR_OK);
    CHECK(count == 3 && memcmp(list, "empty/\0stored.bin\0sub/\0", len) == 0);
    dbr_free(list);
    CHECK_RC(dbr_vfs_list(vfs, "sub", &list, &len, &count), DBR_OK);
    CHECK(count == 3 && memcmp(list, "deflate.bin\0hc.bin\0lz4.bin\0", len) == 0);
    dbr_free(list);
    CHECK_RC(dbr_vfs_open(vfs, "sub/hc.bin", &f), DBR_OK);
    CHECK_RC(dbr_file_read_all(f, buf, 1000, &got), DBR_OK);
    CHECK(got == 1000 && memcmp(buf, small, 1000) == 0);
    dbr_file_close(f);
    CHECK_RC(dbr_vfs_open(vfs, "sub", &f), DBR_E_IS_DIR);
    dbr_vfs_free(vfs);

    /* Damage: a flipped data byte fails the CRC; garbage and truncation
     * fail the open; each message names the archive. */
    unsigned char *bytes;
    size_t n = file_bytes(path, &bytes);
    char bad[160];
    snprintf(bad, sizeof bad, "%s/bad.zip", dir);
    bytes[30 + 10 + 500] ^= 0x55; /* inside stored.bin's data */
    put_bytes(bad, bytes, n);
    CHECK_RC(dbr_zip_open(bad, NULL, &z), DBR_OK);
    CHECK_RC(dbr_zip_read(z, 0, buf, 100000, &got), DBR_E_CORRUPT);
    CHECK(strstr(dbr_last_error(), "stored.bin") && strstr(dbr_last_error(), "CRC"));
    dbr_zip_close(z);
    bytes[30 + 10 + 500] ^= 0x55;
    put_bytes(bad, bytes, n / 2);
    CHECK_RC(open_rc(bad), DBR_E_CORRUPT);
    CHECK(strstr(dbr_last_error(), "bad.zip") != NULL);
    put_bytes(bad, big, 5000);
    CHECK_RC(open_rc(bad), DBR_E_CORRUPT);
    put_bytes(bad, big, 3);
    CHECK_RC(open_rc(bad), DBR_E_CORRUPT);
    CHECK_RC(open_rc("/nonexistent/x.zip"), DBR_E_NOT_FOUND);
    dbr_zip_close(NULL);

    /* A stored entry that declares 4 GiB in a 79-byte zip: refused as
     * corrupt before anyone is asked for (or allocates) a 4 GiB buffer. */
    unsigned char tiny[31 + 1 + 47 + 22] = {0};
    unsigned char *lfh = tiny, *cdh = tiny + 32, *end = tiny + 32 + 47;
    put32(lfh, 0x04034b50), put32(lfh + 18, 0xfffffff0), put32(lfh + 22, 0xfffffff0);
    lfh[26] = 1, lfh[30] = 'a';
    put32(cdh, 0x02014b50), put32(cdh + 20, 0xfffffff0), put32(cdh + 24, 0xfffffff0);
    cdh[28] = 1, cdh[46] = 'a';
    put32(end, 0x06054b50), end[8] = end[10] = 1, end[12] = 47, end[16] = 32;
    put_bytes(bad, tiny, sizeof tiny);
    CHECK_RC(dbr_zip_open(bad, NULL, &z), DBR_OK);
    CHECK_RC(dbr_zip_read(z, 0, NULL, 0, &got), DBR_E_CORRUPT);
    CHECK(strstr(dbr_last_error(), "'a'") && strstr(dbr_last_error(), "run past"));
    dbr_file *huge = NULL;
    CHECK_RC(dbr_zip_open_entry(z, 0, &huge), DBR_E_CORRUPT);
    CHECK(huge == NULL);
    dbr_zip_close(z);

    free(bytes);
    free(buf);
    free(b1);
    free(b2);
    free(big);
    free(small);
    unlink(bad);
    unlink(path);
    rmdir(dir);
    return check_report("test_zip");
}
