/* Fuzz target: tf.train.Example / SequenceExample parsing with a spec of
 * every kind.  The first byte picks Example or SequenceExample; the rest is
 * the record, parsed alone and as a batch of two.  Examples also check the
 * zero-copy reads of tfrecord.c: a uint8 value found from a prefix of the
 * record, left unread (poisoned here) and supplied in its slot, must parse
 * exactly as the whole record does. */
#include "dbr.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static dbr_example_parser *make(int sequence)
{
    dbr_example_parser *p = NULL;
    int64_t dflt[2] = {7, 8};
    if (dbr_example_parser_create(sequence, &p) != DBR_OK)
        abort();
    dbr_example_parser_add(p, "i", DBR_FEATURE_FIXED, DBR_DTYPE_INT64, 0, 2, dflt, sizeof dflt, 0);
    dbr_example_parser_add(p, "f", DBR_FEATURE_FIXED, DBR_DTYPE_FLOAT32, 0, 3, NULL, 0, 0);
    dbr_example_parser_add(p, "u", DBR_FEATURE_FIXED, DBR_DTYPE_UINT8, 0, 4, NULL, 0, 0);
    dbr_example_parser_add(p, "s", DBR_FEATURE_FIXED, DBR_DTYPE_STRING, 0, 1, "", 1, 0);
    dbr_example_parser_add(p, "v", DBR_FEATURE_VAR, DBR_DTYPE_INT64, 0, 0, NULL, 0, 0);
    dbr_example_parser_add(p, "w", DBR_FEATURE_VAR, DBR_DTYPE_STRING, 0, 0, NULL, 0, 0);
    dbr_example_parser_add(p, "q", DBR_FEATURE_FIXED_SEQUENCE, DBR_DTYPE_FLOAT32, 0, 2, NULL, 0, 1);
    if (sequence)
        dbr_example_parser_add(p, "l", DBR_FEATURE_FIXED_SEQUENCE, DBR_DTYPE_INT64, 1, 2, NULL, 0,
                               1);
    return p;
}

/* Parses rec alone.  With a hole, its bytes are put in the slot first, as
 * the kernel's read would have put them there. */
static int parse_alone(const dbr_example_parser *p, const unsigned char *rec, size_t len,
                       const dbr__hole *hole, const unsigned char *value, dbr_feature_out *outs,
                       int64_t *i, float *f, unsigned char *u)
{
    memset(outs, 0, 8 * sizeof *outs);
    memset(i, 0, 16);
    memset(f, 0, 12);
    memcpy(u, hole ? value : (const unsigned char *)"\0\0\0\0", 4);
    outs[0].dst = i, outs[0].dst_cap = 16;
    outs[1].dst = f, outs[1].dst_cap = 12;
    outs[2].dst = u, outs[2].dst_cap = 4;
    return dbr__example_parse_one(p, rec, len, 0, 1, outs, hole);
}

static void check_hole(const dbr_example_parser *p, const unsigned char *rec, size_t len,
                       size_t avail)
{
    size_t k, at, n = dbr_example_parser_count(p);
    if (!dbr__example_find_uint8(p, rec, avail, len, 1, &k, &at))
        return;
    if (k != 2 || at > len || len - at < 4)
        abort(); /* not the uint8 feature "u", or past the record */
    dbr_feature_out a[8], b[8];
    int64_t ia[2], ib[2];
    float fa[3], fb[3];
    unsigned char ua[4], ub[4], *copy = malloc(len);
    if (!copy)
        return;
    memcpy(copy, rec, len);
    memset(copy + at, 0xAA, 4); /* never read: the parser must not look */
    dbr__hole hole = {copy + at, 4, ub};
    int ra = parse_alone(p, rec, len, NULL, NULL, a, ia, fa, ua);
    int rb = parse_alone(p, copy, len, &hole, rec + at, b, ib, fb, ub);
    if (ra != rb || (ra == DBR_OK && (memcmp(ia, ib, sizeof ia) || memcmp(fa, fb, sizeof fa) ||
                                      memcmp(ua, ub, sizeof ua))))
        abort(); /* the hole changed the outcome */
    for (size_t j = 3; ra == DBR_OK && j < n; j++)
        if (a[j].values_len != b[j].values_len ||
            (a[j].values_len && memcmp(a[j].values, b[j].values, a[j].values_len)))
            abort();
    dbr_feature_out_clear(a, n);
    dbr_feature_out_clear(b, n);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static dbr_example_parser *parsers[2];
    if (size < 1)
        return 0;
    int seq = data[0] & 1;
    if (!parsers[seq])
        parsers[seq] = make(seq);
    dbr_example_parser *p = parsers[seq];
    size_t n = dbr_example_parser_count(p);
    dbr_feature_out outs[8];
    int64_t i[4];
    float f[6];
    unsigned char u[8];
    const void *recs[2] = {data + 1, data + 1};
    size_t lens[2] = {size - 1, size - 1};
    for (size_t batch = 1; batch <= 2; batch++) {
        memset(outs, 0, sizeof outs);
        outs[0].dst = i, outs[0].dst_cap = batch * 16;
        outs[1].dst = f, outs[1].dst_cap = batch * 12;
        outs[2].dst = u, outs[2].dst_cap = batch * 4;
        if (dbr_example_parse(p, recs, lens, batch, outs, 1) == DBR_OK) {
            for (size_t k = 3; k < n; k++) {
                int64_t sum = 0;
                for (size_t r = 0; r < batch; r++)
                    sum += outs[k].counts[r] > 0 ? outs[k].counts[r] : 0;
                size_t unit = k == 5 || k == 3 ? 0 : k == 6 ? 4 : 8;
                if (unit && (uint64_t)sum * unit != outs[k].values_len)
                    abort(); /* counts disagree with the values */
            }
        }
        dbr_feature_out_clear(outs, n);
    }
    if (!seq)
        for (size_t avail = 0; avail <= size - 1; avail += 1 + (size - 1) / 4)
            check_hole(p, data + 1, size - 1, avail);
    return 0;
}
