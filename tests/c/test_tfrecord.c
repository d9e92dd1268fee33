/* TFRecord framing and Example parsing through the C API: records written
 * by hand from the spec, read back, indexed, randomly accessed, corrupted,
 * and parsed in batches. */
#include "dbr.h"
#include "internal.h"
#include "check.h"

#include <stdlib.h>
#include <unistd.h>

static char dir[64], path[128];

static void put_frame(FILE *fp, const void *data, uint64_t n)
{
    unsigned char h[12];
    for (int i = 0; i < 8; i++)
        h[i] = (unsigned char)(n >> (8 * i));
    uint32_t c = dbr_crc32c_mask(dbr_crc32c(0, h, 8));
    for (int i = 0; i < 4; i++)
        h[8 + i] = (unsigned char)(c >> (8 * i));
    fwrite(h, 1, 12, fp);
    fwrite(data, 1, (size_t)n, fp);
    c = dbr_crc32c_mask(dbr_crc32c(0, data, (size_t)n));
    unsigned char f[4] = {(unsigned char)c, (unsigned char)(c >> 8), (unsigned char)(c >> 16),
                          (unsigned char)(c >> 24)};
    fwrite(f, 1, 4, fp);
}

/* Example {features {feature {key: "x" value {int64_list {value: [v, 2]}}}
 *                    feature {key: "img" value {bytes_list {value: "abcd"}}}}} */
static size_t example(unsigned char *out, unsigned char v)
{
    static const unsigned char tmpl[] = {
        0x0a, 0x1f,                                   /* Example.features      */
        0x0a, 0x0d, 0x0a, 0x01, 'x',                  /* entry, key "x"        */
        0x12, 0x08, 0x1a, 0x06, 0x0a, 0x04, 0x00, 0x02, 0x00, 0x00, /* int64_list packed */
        0x0a, 0x0e, 0x0a, 0x03, 'i', 'm', 'g',        /* entry, key "img"      */
        0x12, 0x07, 0x0a, 0x05, 0x0a, 0x03, 'a', 'b', 'c'};
    memcpy(out, tmpl, sizeof tmpl);
    out[13] = v;
    /* fix the packed int64 run: [v, 2] is 2 bytes, pad the list with an unknown field */
    out[12] = 0x02;
    out[15] = 0x10; /* unknown field 2, varint 0 */
    out[16] = 0x00;
    return sizeof tmpl;
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/dbr_test_tfr_XXXXXX");
    if (!mkdtemp(dir))
        return 2;
    snprintf(path, sizeof path, "%s/r.tfrecord", dir);
    FILE *fp = fopen(path, "wb");
    unsigned char recs[5][64];
    size_t lens[5];
    for (int i = 0; i < 5; i++) {
        lens[i] = example(recs[i], (unsigned char)(10 + i));
        put_frame(fp, recs[i], lens[i]);
    }
    fclose(fp);

    /* dbr_tfrecord_frame writes what put_frame (from the spec) writes. */
    {
        static unsigned char big[3000];
        for (size_t i = 0; i < sizeof big; i++)
            big[i] = (unsigned char)(i * 7 + 3);
        size_t sizes[] = {0, 1, 8, 12, sizeof big};
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
            char spec_path[160];
            snprintf(spec_path, sizeof spec_path, "%s/spec.bin", dir);
            FILE *sp = fopen(spec_path, "wb");
            put_frame(sp, big, sizes[k]);
            fclose(sp);
            unsigned char expect[sizeof big + 16];
            sp = fopen(spec_path, "rb");
            size_t got = fread(expect, 1, sizeof expect, sp);
            fclose(sp);
            unlink(spec_path);
            unsigned char h[12], ft[4];
            CHECK_RC(dbr_tfrecord_frame(sizes[k] ? big : NULL, sizes[k], h, ft), DBR_OK);
            CHECK(got == sizes[k] + 16);
            CHECK(!memcmp(expect, h, 12) && !memcmp(expect + 12, big, sizes[k]) &&
                  !memcmp(expect + 12 + sizes[k], ft, 4));
        }
        unsigned char h[12], ft[4];
        CHECK_RC(dbr_tfrecord_frame(NULL, 5, h, ft), DBR_E_ARG);
        CHECK_RC(dbr_tfrecord_frame(big, 5, NULL, ft), DBR_E_ARG);
        CHECK_RC(dbr_tfrecord_frame(big, 5, h, NULL), DBR_E_ARG);
    }

    dbr_file *f = NULL;
    CHECK_RC(dbr_file_open(path, &f), DBR_OK);
    dbr_tfrecord_reader *r = NULL;
    CHECK_RC(dbr_tfrecord_reader_open(f, DBR_TFRECORD_NONE, 1, 0, &r), DBR_OK);
    const void *data;
    size_t len;
    uint64_t off, offsets[5];
    for (int i = 0; i < 5; i++) {
        CHECK_RC(dbr_tfrecord_reader_next(r, &data, &len, &off), DBR_OK);
        CHECK(len == lens[i] && !memcmp(data, recs[i], len));
        offsets[i] = off;
    }
    CHECK_RC(dbr_tfrecord_reader_next(r, &data, &len, &off), DBR_E_EOF);
    dbr_tfrecord_reader_close(r);
    dbr_tfrecord_reader_close(NULL);

    uint64_t *pairs = NULL;
    size_t count = 0;
    CHECK_RC(dbr_tfrecord_index(f, DBR_TFRECORD_NONE, 0, 0, &pairs, &count), DBR_OK);
    CHECK(count == 5 && pairs[2 * 3] == offsets[3] && pairs[2 * 3 + 1] == lens[3] + 16);

    unsigned char buf[64];
    CHECK_RC(dbr_tfrecord_read_at(f, offsets[2], 1, buf, 3, &len), DBR_E_TOO_SMALL);
    CHECK(len == lens[2]);
    CHECK_RC(dbr_tfrecord_read_at(f, offsets[2], 1, buf, sizeof buf, &len), DBR_OK);
    CHECK(!memcmp(buf, recs[2], len));
    CHECK_RC(dbr_tfrecord_read_at(f, offsets[2] + 1, 1, buf, sizeof buf, &len), DBR_E_CORRUPT);
    CHECK(strstr(dbr_last_error(), "offset") != NULL);

    /* Parse: x = int64[2], img = string. */
    dbr_example_parser *p = NULL;
    CHECK_RC(dbr_example_parser_create(0, &p), DBR_OK);
    CHECK_RC(dbr_example_parser_add(p, "x", DBR_FEATURE_FIXED, DBR_DTYPE_INT64, 0, 2, NULL, 0, 0),
             DBR_OK);
    CHECK_RC(dbr_example_parser_add(p, "img", DBR_FEATURE_FIXED, DBR_DTYPE_STRING, 0, 1, NULL, 0,
                                    0), DBR_OK);
    CHECK_RC(dbr_example_parser_add(p, "x", DBR_FEATURE_VAR, DBR_DTYPE_INT64, 0, 0, NULL, 0, 0),
             DBR_E_ARG);
    CHECK(dbr_example_parser_count(p) == 2);
    int64_t xs[10];
    dbr_feature_out outs[2];
    memset(outs, 0, sizeof outs);
    outs[0].dst = xs;
    outs[0].dst_cap = sizeof xs;
    const dbr_file *files[5] = {f, f, f, f, f};
    uint64_t frames[5];
    for (int i = 0; i < 5; i++)
        frames[i] = lens[i] + 16;
    CHECK_RC(dbr_tfrecord_parse_at(p, files, offsets, frames, 5, 1, outs, 0), DBR_OK);
    for (int i = 0; i < 5; i++)
        CHECK(xs[2 * i] == 10 + i && xs[2 * i + 1] == 2);
    CHECK(outs[1].value_count == 5 && outs[1].values_len == 15 && outs[1].counts[4] == 1);
    CHECK(!memcmp(outs[1].values, "abcabcabcabcabc", 15));
    dbr_feature_out_clear(outs, 2);
    CHECK(outs[1].values == NULL);

    /* A stale index is caught, not trusted. */
    frames[1] += 1;
    memset(outs, 0, sizeof outs);
    outs[0].dst = xs;
    outs[0].dst_cap = sizeof xs;
    CHECK_RC(dbr_tfrecord_parse_at(p, files, offsets, frames, 5, 1, outs, 0), DBR_E_CORRUPT);
    dbr_feature_out_clear(outs, 2);

    /* Batch parse from memory with a shape mismatch in record 3. */
    const void *ptrs[5];
    size_t plens[5];
    for (int i = 0; i < 5; i++) {
        ptrs[i] = recs[i];
        plens[i] = lens[i];
    }
    dbr_example_parser *p3 = NULL;
    CHECK_RC(dbr_example_parser_create(0, &p3), DBR_OK);
    CHECK_RC(dbr_example_parser_add(p3, "x", DBR_FEATURE_FIXED, DBR_DTYPE_INT64, 0, 3, NULL, 0, 0),
             DBR_OK);
    memset(outs, 0, sizeof outs);
    int64_t x3[15];
    outs[0].dst = x3;
    outs[0].dst_cap = sizeof x3;
    CHECK_RC(dbr_example_parse(p3, ptrs, plens, 5, outs, 0), DBR_E_ARG);
    CHECK(strstr(dbr_last_error(), "record 0") && strstr(dbr_last_error(), "'x'"));
    dbr_example_parser_free(p3);
    dbr_example_parser_free(p);
    dbr_example_parser_free(NULL);

    /* Truncations of the file: always DBR_E_CORRUPT, never a crash. */
    dbr_file_close(f);
    FILE *in = fopen(path, "rb");
    unsigned char whole[1024];
    size_t total = fread(whole, 1, sizeof whole, in);
    fclose(in);
    for (size_t cut = 1; cut < total; cut += 3) {
        fp = fopen(path, "wb");
        fwrite(whole, 1, cut, fp);
        fclose(fp);
        CHECK_RC(dbr_file_open(path, &f), DBR_OK);
        CHECK_RC(dbr_tfrecord_reader_open(f, DBR_TFRECORD_NONE, 1, 0, &r), DBR_OK);
        int rc;
        while ((rc = dbr_tfrecord_reader_next(r, &data, &len, NULL)) == DBR_OK)
            ;
        int boundary = 0;
        for (int i = 0; i < 5; i++)
            boundary |= cut == offsets[i];
        CHECK(rc == (boundary ? DBR_E_EOF : DBR_E_CORRUPT));
        dbr_tfrecord_reader_close(r);
        dbr_file_close(f);
    }
    free(pairs);
    unlink(path);
    rmdir(dir);
    /* The shuffle pinned in tests/python (dareblopy.permutation(8, 7, 3)). */
    int64_t perm[8], pinned[8] = {6, 1, 2, 5, 3, 7, 0, 4};
    CHECK_RC(dbr_permutation(8, 7, 3, perm), DBR_OK);
    CHECK(memcmp(perm, pinned, sizeof perm) == 0);
    CHECK_RC(dbr_permutation(0, 7, 3, NULL), DBR_OK);
    CHECK_RC(dbr_permutation(3, 7, 3, NULL), DBR_E_ARG);
    /* The one seed derivation, pinned with tests/python (derive_seed): one
     * step is the first output of the permutation's stream. */
    uint64_t parts[3] = {3, 1, 2};
    CHECK(dbr_seed_derive(7, parts, 1) == 0x94c90e5239685a5dull);
    CHECK(dbr_seed_derive(7, parts, 3) == 0xc2b2e97574b5c6f6ull);
    CHECK(dbr_seed_derive(7, NULL, 0) == 7);
    return check_report("test_tfrecord");
}
