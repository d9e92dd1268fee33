/* The one per-item outcome shape of batch calls (statuses, messages,
 * message_cap): every item reports its own status and message, a failed
 * item costs only itself, and the old entry points still work. */
#include "dbr.h"
#include "check.h"

#include <stdlib.h>
#include <unistd.h>

enum { CAP = 256 };
static char dir[64], zpath[128];

static void zip_batch(void)
{
    dbr_zip_writer *w = NULL;
    CHECK_RC(dbr_zip_writer_open(zpath, &w), DBR_OK);
    CHECK_RC(dbr_zip_writer_add(w, "a.txt", "hello", 5, DBR_ZIP_STORED, 0, 0), DBR_OK);
    CHECK_RC(dbr_zip_writer_add(w, "b.txt", "world!", 6, DBR_ZIP_DEFLATE, 0, 0), DBR_OK);
    CHECK_RC(dbr_zip_writer_finish(w), DBR_OK);
    dbr_zip_writer_free(w);
    dbr_zip *z = NULL;
    CHECK_RC(dbr_zip_open(zpath, NULL, &z), DBR_OK);
    char a[8], b[8], c[2];
    void *dsts[4] = {a, b, c, a};
    size_t idx[4] = {0, 7, 1, 1}, caps[4] = {8, 8, 2, 8}, lens[4];
    int st[4] = {1, 1, 1, 1};
    char msgs[4 * CAP];
    memset(msgs, 'x', sizeof msgs);
    CHECK_RC(dbr_zip_read_many_ex(z, idx, 4, dsts, caps, lens, 2, st, msgs, CAP), DBR_E_ARG);
    CHECK(st[0] == DBR_OK && st[1] == DBR_E_ARG && st[2] == DBR_E_TOO_SMALL && st[3] == DBR_OK);
    CHECK_STR(msgs, "");
    CHECK(strstr(msgs + CAP, "no entry 7") != NULL);
    CHECK(strstr(msgs + 2 * CAP, "b.txt") != NULL || strstr(msgs + 2 * CAP, "6") != NULL);
    CHECK_STR(msgs + 3 * CAP, "");
    CHECK(lens[3] == 6 && memcmp(a, "world!", 6) == 0);
    /* the batch's return names the first failed item, as before */
    CHECK(strstr(dbr_last_error(), "no entry 7") != NULL);
    /* messages are cut to message_cap, NUL included */
    char small[4 * 8];
    CHECK_RC(dbr_zip_read_many_ex(z, idx, 4, dsts, caps, lens, 1, NULL, small, 8), DBR_E_ARG);
    CHECK(strlen(small + 8) == 7);
    /* no arrays at all, and the old entry point */
    CHECK_RC(dbr_zip_read_many_ex(z, idx, 4, dsts, caps, lens, 1, NULL, NULL, 0), DBR_E_ARG);
    CHECK_RC(dbr_zip_read_many(z, idx, 4, dsts, caps, lens, st, 1), DBR_E_ARG);
    CHECK(st[2] == DBR_E_TOO_SMALL);
    dbr_zip_close(z);
}

static void file_batch(void)
{
    const char *paths[3] = {zpath, "/nonexistent-dbr/x", dir};
    dbr_file *files[3];
    uint64_t sizes[3];
    int st[3];
    char msgs[3 * CAP];
    CHECK_RC(dbr_file_open_many_ex(NULL, paths, 3, files, sizes, st, msgs, CAP),
             DBR_E_NOT_FOUND);
    CHECK(st[0] == DBR_OK && st[1] == DBR_E_NOT_FOUND && st[2] == DBR_E_IS_DIR);
    CHECK(files[0] && !files[1] && !files[2]);
    CHECK_STR(msgs, "");
    CHECK(strstr(msgs + CAP, "/nonexistent-dbr/x") != NULL);
    CHECK(strstr(msgs + 2 * CAP, "directory") != NULL);
    char *buf = malloc((size_t)sizes[0]);
    void *dsts[3] = {buf, NULL, NULL};
    size_t caps[3] = {(size_t)sizes[0], 0, 0}, lens[3];
    /* the read keeps the open failures' outcomes */
    CHECK_RC(dbr_file_read_many_ex(files, 3, dsts, caps, lens, 2, st, msgs, CAP), DBR_OK);
    CHECK(st[0] == DBR_OK && st[1] == DBR_E_NOT_FOUND && st[2] == DBR_E_IS_DIR);
    CHECK(strstr(msgs + CAP, "/nonexistent-dbr/x") != NULL);
    CHECK(lens[0] == sizes[0] && memcmp(buf + lens[0] - 22, "PK\5\6", 4) == 0);
    dbr_file_close_many(files, 3);
    free(buf);
}

/* Example {features {feature {key: "x" value {int64_list {value: [v]}}}}},
 * optionally with a second feature "y" (bytes "s"). */
static size_t example(unsigned char *out, unsigned char v, int with_y)
{
    static const unsigned char x[] = {0x0a, 0x0a, 0x0a, 0x01, 'x', 0x12, 0x05,
                                      0x1a, 0x03, 0x0a, 0x01, 0};
    static const unsigned char y[] = {0x0a, 0x0a, 0x0a, 0x01, 'y', 0x12, 0x05,
                                      0x0a, 0x03, 0x0a, 0x01, 's'};
    size_t n = 2;
    memcpy(out + n, x, sizeof x);
    out[n + sizeof x - 1] = v;
    n += sizeof x;
    if (with_y) {
        memcpy(out + n, y, sizeof y);
        n += sizeof y;
    }
    out[0] = 0x0a;
    out[1] = (unsigned char)(n - 2);
    return n;
}

static void example_batch(void)
{
    dbr_example_parser *p = NULL;
    CHECK_RC(dbr_example_parser_create(0, &p), DBR_OK);
    CHECK_RC(dbr_example_parser_add(p, "x", DBR_FEATURE_VAR, DBR_DTYPE_INT64, 0, 0, NULL, 0, 0),
             DBR_OK);
    CHECK_RC(dbr_example_parser_add(p, "y", DBR_FEATURE_FIXED, DBR_DTYPE_STRING, 0, 1, NULL, 0,
                                    0), DBR_OK);
    unsigned char r0[64], r1[64], r2[64], r3[4] = {0x0a, 0x30, 0x0a, 0x00};
    /* r1 lacks the required "y": it fails after "x" appended its value */
    size_t lens[4] = {example(r0, 5, 1), example(r1, 9, 0), example(r2, 7, 1), 4};
    const void *recs[4] = {r0, r1, r2, r3};
    dbr_feature_out outs[2];
    memset(outs, 0, sizeof outs);
    int st[4];
    char msgs[4 * CAP];
    CHECK_RC(dbr_example_parse_ex(p, recs, lens, 4, outs, 0, st, msgs, CAP), DBR_E_ARG);
    CHECK(st[0] == DBR_OK && st[1] == DBR_E_ARG && st[2] == DBR_OK && st[3] == DBR_E_CORRUPT);
    CHECK(strstr(msgs + CAP, "'y'") != NULL && strstr(msgs + CAP, "missing") != NULL);
    CHECK_STR(msgs + 2 * CAP, "");
    CHECK(strstr(dbr_last_error(), "record 1 of the batch") != NULL);
    /* the failed records left nothing behind: x holds 5 and 7 */
    CHECK(outs[0].values_len == 16);
    const int64_t *xs = outs[0].values;
    CHECK(xs[0] == 5 && xs[1] == 7);
    CHECK(outs[0].counts[0] == 1 && outs[0].counts[1] == 0 && outs[0].counts[2] == 1 &&
          outs[0].counts[3] == 0);
    CHECK(outs[1].value_count == 2);
    dbr_feature_out_clear(outs, 2);
    /* the old entry point */
    memset(outs, 0, sizeof outs);
    CHECK_RC(dbr_example_parse(p, recs, lens, 4, outs, 1), DBR_E_ARG);
    dbr_feature_out_clear(outs, 2);
    dbr_example_parser_free(p);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/dbr_test_batch_XXXXXX");
    if (!mkdtemp(dir))
        return 2;
    snprintf(zpath, sizeof zpath, "%s/a.zip", dir);
    zip_batch();
    file_batch();
    example_batch();
    unlink(zpath);
    rmdir(dir);
    return check_report("test_batch");
}
