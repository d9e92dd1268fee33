/* example.c - tf.train.Example and SequenceExample, parsed from the
 * protobuf wire format with no protobuf library.
 *
 *   Example         { Features features = 1; }
 *   SequenceExample { Features context = 1; FeatureLists feature_lists = 2; }
 *   Features        { map<string, Feature> feature = 1; }
 *   FeatureLists    { map<string, FeatureList> feature_list = 1; }
 *   FeatureList     { repeated Feature feature = 1; }
 *   Feature         { oneof { BytesList bytes_list = 1; FloatList float_list = 2;
 *                             Int64List int64_list = 3; } }
 *   *List           { repeated <type> value = 1; }  (packed or not)
 *
 * Parsing is two passes over one record: the first finds, for each feature
 * of the spec, the last map entry with its key (protobuf's "last one wins"
 * for maps and oneofs); the second decodes those into the outputs.  Fixed
 * numeric and uint8 features go straight into the caller's array; bytes,
 * VarLen and sequence features are appended to growable buffers. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct spec_feature {
    char *key;
    size_t key_len;
    int kind, dtype, in_lists, allow_missing;
    size_t inner;  /* values per record (fixed) or per step (sequence) */
    void *dflt;    /* inner values of the element type, or NULL */
} spec_feature;

struct dbr_example_parser {
    int sequence;
    size_t count, cap;
    spec_feature *f;
};

typedef struct cur {
    const unsigned char *p, *end;
} cur;

/* ---- wire format ---- */

static int varint(cur *c, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64 && c->p < c->end; shift += 7) {
        unsigned char b = *c->p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

/* Next tag; 0 at the end, -1 if malformed. */
static int next_field(cur *c, uint32_t *field, uint32_t *wt)
{
    uint64_t tag;
    if (c->p == c->end)
        return 0;
    if (!varint(c, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
        return -1;
    *field = (uint32_t)(tag >> 3);
    *wt = (uint32_t)(tag & 7);
    return 1;
}

static int sub_message(cur *c, cur *sub)
{
    uint64_t n;
    if (!varint(c, &n) || n > (uint64_t)(c->end - c->p))
        return 0;
    sub->p = c->p;
    sub->end = c->p + n;
    c->p += n;
    return 1;
}

static int skip(cur *c, uint32_t wt)
{
    uint64_t v;
    cur s;
    switch (wt) {
    case 0: return varint(c, &v);
    case 1:
        if (c->end - c->p < 8)
            return 0;
        c->p += 8;
        return 1;
    case 2: return sub_message(c, &s);
    case 5:
        if (c->end - c->p < 4)
            return 0;
        c->p += 4;
        return 1;
    default: return 0; /* groups (3, 4) never appear in tf.train messages */
    }
}

/* ---- the spec ---- */

int dbr_example_parser_create(int sequence, dbr_example_parser **out)
{
    if (!out)
        return dbr__fail(DBR_E_ARG, "dbr_example_parser_create: NULL out");
    *out = calloc(1, sizeof **out);
    if (!*out)
        return dbr__fail(DBR_E_NOMEM, "out of memory creating an Example parser");
    (*out)->sequence = sequence;
    return DBR_OK;
}

void dbr_example_parser_free(dbr_example_parser *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->count; i++) {
        free(p->f[i].key);
        free(p->f[i].dflt);
    }
    free(p->f);
    free(p);
}

static size_t elem_size(int dtype)
{
    return dtype == DBR_DTYPE_FLOAT32 ? 4 : dtype == DBR_DTYPE_INT64 ? 8 : 1;
}

static const char *dtype_name(int dtype)
{
    switch (dtype) {
    case DBR_DTYPE_STRING: return "string";
    case DBR_DTYPE_FLOAT32: return "float32";
    case DBR_DTYPE_INT64: return "int64";
    default: return "uint8";
    }
}

/* Which Feature oneof field holds a dtype: 1 bytes, 2 float, 3 int64. */
static uint32_t list_field(int dtype)
{
    return dtype == DBR_DTYPE_FLOAT32 ? 2 : dtype == DBR_DTYPE_INT64 ? 3 : 1;
}

static const char *list_name(uint32_t field)
{
    return field == 1 ? "bytes_list" : field == 2 ? "float_list" : field == 3 ? "int64_list"
                                                                              : "no value";
}

int dbr_example_parser_add(dbr_example_parser *p, const char *key, int kind, int dtype,
                           int in_feature_lists, size_t inner, const void *default_value,
                           size_t default_len, int allow_missing)
{
    if (!p || !key)
        return dbr__fail(DBR_E_ARG, "dbr_example_parser_add: NULL argument");
    if (kind < DBR_FEATURE_FIXED || kind > DBR_FEATURE_FIXED_SEQUENCE || dtype < DBR_DTYPE_STRING ||
        dtype > DBR_DTYPE_UINT8)
        return dbr__fail(DBR_E_ARG, "feature '%s': kind %d or dtype %d is unknown", key, kind,
                         dtype);
    if (in_feature_lists && (!p->sequence || kind != DBR_FEATURE_FIXED_SEQUENCE))
        return dbr__fail(DBR_E_UNSUPPORTED, "feature '%s': feature lists need a SequenceExample "
                         "parser and FixedLenSequenceFeature", key);
    if (dtype == DBR_DTYPE_UINT8 && kind != DBR_FEATURE_FIXED)
        return dbr__fail(DBR_E_UNSUPPORTED, "feature '%s': uint8 is only for FixedLenFeature "
                         "(raw bytes into an array); use string", key);
    if (default_value && dtype != DBR_DTYPE_STRING && default_len != inner * elem_size(dtype))
        return dbr__fail(DBR_E_ARG, "feature '%s': the default value has %zu bytes, the shape "
                         "needs %zu", key, default_len, inner * elem_size(dtype));
    for (size_t i = 0; i < p->count; i++)
        if (!strcmp(p->f[i].key, key) && p->f[i].in_lists == in_feature_lists)
            return dbr__fail(DBR_E_ARG, "feature '%s' is specified twice", key);
    if (p->count == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        spec_feature *f = realloc(p->f, cap * sizeof *f);
        if (!f)
            return dbr__fail(DBR_E_NOMEM, "out of memory adding feature '%s'", key);
        p->f = f;
        p->cap = cap;
    }
    spec_feature *f = &p->f[p->count];
    memset(f, 0, sizeof *f);
    if (!(f->key = dbr__strdup(key)))
        return DBR_E_NOMEM;
    if (default_value && dtype != DBR_DTYPE_STRING) {
        if (!(f->dflt = malloc(default_len ? default_len : 1))) {
            free(f->key);
            return dbr__fail(DBR_E_NOMEM, "out of memory adding feature '%s'", key);
        }
        memcpy(f->dflt, default_value, default_len);
    }
    f->key_len = strlen(key);
    f->kind = kind;
    f->dtype = dtype;
    f->in_lists = in_feature_lists;
    f->inner = inner;
    f->allow_missing = allow_missing || (default_value && dtype == DBR_DTYPE_STRING);
    p->count++;
    return DBR_OK;
}

size_t dbr_example_parser_count(const dbr_example_parser *p) { return p ? p->count : 0; }

/* Fixed numeric and uint8 features write straight into dst; everything else
 * is variable-sized and goes through the growable buffers. */
static int is_direct(const spec_feature *f)
{
    return f->kind == DBR_FEATURE_FIXED && f->dtype != DBR_DTYPE_STRING;
}

int dbr_example_parser_is_direct(const dbr_example_parser *p, size_t index)
{
    return p && index < p->count && is_direct(&p->f[index]);
}

/* ---- outputs ---- */

void dbr_feature_out_clear(dbr_feature_out *outs, size_t count)
{
    for (size_t i = 0; outs && i < count; i++) {
        free(outs[i].values);
        free(outs[i].value_lengths);
        free(outs[i].counts);
        outs[i].values = NULL;
        outs[i].value_lengths = NULL;
        outs[i].counts = NULL;
        outs[i].values_len = outs[i].values_cap = 0;
        outs[i].value_count = outs[i].lengths_cap = 0;
    }
}

static int grow(void **buf, size_t *cap, size_t need, size_t unit)
{
    if (need <= *cap)
        return 1;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    void *b = realloc(*buf, c * unit);
    if (!b)
        return 0;
    *buf = b;
    *cap = c;
    return 1;
}

static int append(dbr_feature_out *o, const void *src, size_t n)
{
    if (!n)
        return 1; /* an empty value; values may still be NULL */
    if (!grow(&o->values, &o->values_cap, o->values_len + n, 1))
        return 0;
    memcpy((char *)o->values + o->values_len, src, n);
    o->values_len += n;
    return 1;
}

static int push_length(dbr_feature_out *o, uint64_t len)
{
    if (!grow((void **)&o->value_lengths, &o->lengths_cap, o->value_count + 1, sizeof(uint64_t)))
        return 0;
    o->value_lengths[o->value_count++] = len;
    return 1;
}

/* ---- decoding one feature ---- */

typedef struct found {
    cur msg; /* the Feature (or FeatureList) message */
    int present;
} found;

/* Decodes a list of dtype values into dst (direct, capacity `cap` values)
 * or appends them to o; *count receives the number of values. */
static int decode_values(const spec_feature *f, cur feat, unsigned char *dst, size_t cap,
                         dbr_feature_out *o, size_t *count, const dbr__hole *hole)
{
    uint32_t field, wt, kind = 0;
    cur list = {NULL, NULL};
    int r;
    *count = 0;
    while ((r = next_field(&feat, &field, &wt)) > 0) {
        if (field >= 1 && field <= 3 && wt == 2) {
            if (!sub_message(&feat, &list))
                return dbr__fail(DBR_E_CORRUPT, "feature '%s': truncated value list", f->key);
            kind = field;
        } else if (!skip(&feat, wt)) {
            return dbr__fail(DBR_E_CORRUPT, "feature '%s': malformed Feature message", f->key);
        }
    }
    if (r < 0)
        return dbr__fail(DBR_E_CORRUPT, "feature '%s': malformed Feature message", f->key);
    if (kind == 0)
        return DBR_OK; /* an empty Feature: no values of any type */
    if (kind != list_field(f->dtype))
        return dbr__fail(DBR_E_ARG, "feature '%s': the data holds a %s but the spec asks for "
                         "%s", f->key, list_name(kind), dtype_name(f->dtype));
    size_t n = 0;
    while ((r = next_field(&list, &field, &wt)) > 0) {
        if (field != 1) {
            if (!skip(&list, wt))
                return dbr__fail(DBR_E_CORRUPT, "feature '%s': malformed value list", f->key);
            continue;
        }
        if (f->dtype == DBR_DTYPE_STRING || f->dtype == DBR_DTYPE_UINT8) {
            cur v;
            if (wt != 2 || !sub_message(&list, &v))
                return dbr__fail(DBR_E_CORRUPT, "feature '%s': malformed bytes value", f->key);
            size_t len = (size_t)(v.end - v.p);
            if (f->dtype == DBR_DTYPE_UINT8) {
                /* Raw bytes of one value fill the whole array slot. */
                if (n != 0 || len != cap)
                    return dbr__fail(DBR_E_ARG, "feature '%s': uint8 needs one bytes value of "
                                     "%zu bytes, got %s%zu bytes", f->key, cap,
                                     n ? "more than one value; " : "", len);
                if (!hole || v.p != hole->start)
                    memcpy(dst, v.p, len);
                else if (dst != hole->dst || len != hole->len)
                    return dbr__fail(DBR_E_ARG, "feature '%s': zero-copy slot mismatch "
                                     "(a libdbr bug; please report it)", f->key);
            } else if (!append(o, v.p, len) || !push_length(o, len)) {
                return dbr__fail(DBR_E_NOMEM, "feature '%s': out of memory", f->key);
            }
            n++;
            continue;
        }
        cur packed;
        if (wt == 2) {
            if (!sub_message(&list, &packed))
                return dbr__fail(DBR_E_CORRUPT, "feature '%s': truncated packed values", f->key);
        } else if ((f->dtype == DBR_DTYPE_FLOAT32 && wt == 5) ||
                   (f->dtype == DBR_DTYPE_INT64 && wt == 0)) {
            packed.p = list.p; /* one unpacked value: decode it like a packed run of one */
            if (!skip(&list, wt))
                return dbr__fail(DBR_E_CORRUPT, "feature '%s': truncated value", f->key);
            packed.end = list.p;
        } else {
            return dbr__fail(DBR_E_CORRUPT, "feature '%s': wire type %u is wrong for %s",
                             f->key, wt, dtype_name(f->dtype));
        }
        if (f->dtype == DBR_DTYPE_FLOAT32) {
            size_t bytes = (size_t)(packed.end - packed.p);
            if (bytes % 4)
                return dbr__fail(DBR_E_CORRUPT, "feature '%s': packed floats of %zu bytes",
                                 f->key, bytes);
            if (dst) {
                if (n + bytes / 4 > cap)
                    return dbr__fail(DBR_E_ARG, "feature '%s': more than the %zu float32 "
                                     "values of its shape", f->key, cap);
                memcpy(dst + n * 4, packed.p, bytes); /* little-endian, like the wire */
            } else if (!append(o, packed.p, bytes)) {
                return dbr__fail(DBR_E_NOMEM, "feature '%s': out of memory", f->key);
            }
            n += bytes / 4;
        } else {
            while (packed.p < packed.end) {
                uint64_t v;
                if (!varint(&packed, &v))
                    return dbr__fail(DBR_E_CORRUPT, "feature '%s': malformed varint", f->key);
                int64_t s = (int64_t)v;
                if (dst) {
                    if (n >= cap)
                        return dbr__fail(DBR_E_ARG, "feature '%s': more than the %zu int64 "
                                         "values of its shape", f->key, cap);
                    memcpy(dst + n * 8, &s, 8);
                } else if (!append(o, &s, 8)) {
                    return dbr__fail(DBR_E_NOMEM, "feature '%s': out of memory", f->key);
                }
                n++;
            }
        }
    }
    if (r < 0)
        return dbr__fail(DBR_E_CORRUPT, "feature '%s': malformed value list", f->key);
    *count = n;
    return DBR_OK;
}

/* Records where each spec feature's entry is, for one Features or
 * FeatureLists map. */
static int scan_map(const dbr_example_parser *p, cur map, int lists, found *where)
{
    uint32_t field, wt;
    int r;
    while ((r = next_field(&map, &field, &wt)) > 0) {
        cur entry;
        if (field != 1 || wt != 2) {
            if (!skip(&map, wt))
                return dbr__fail(DBR_E_CORRUPT, "malformed %s message",
                                 lists ? "FeatureLists" : "Features");
            continue;
        }
        if (!sub_message(&map, &entry))
            return dbr__fail(DBR_E_CORRUPT, "truncated map entry");
        cur key = {entry.p, entry.p}, value = {entry.p, entry.p};
        int rr;
        while ((rr = next_field(&entry, &field, &wt)) > 0) {
            if (field == 1 && wt == 2) {
                if (!sub_message(&entry, &key))
                    return dbr__fail(DBR_E_CORRUPT, "truncated feature name");
            } else if (field == 2 && wt == 2) {
                if (!sub_message(&entry, &value))
                    return dbr__fail(DBR_E_CORRUPT, "truncated feature value");
            } else if (!skip(&entry, wt)) {
                return dbr__fail(DBR_E_CORRUPT, "malformed map entry");
            }
        }
        if (rr < 0)
            return dbr__fail(DBR_E_CORRUPT, "malformed map entry");
        size_t klen = (size_t)(key.end - key.p);
        for (size_t i = 0; i < p->count; i++) {
            const spec_feature *f = &p->f[i];
            if (f->in_lists == lists && f->key_len == klen && !memcmp(f->key, key.p, klen)) {
                where[i].msg = value;
                where[i].present = 1;
                break;
            }
        }
    }
    return r < 0 ? dbr__fail(DBR_E_CORRUPT, "malformed %s message",
                             lists ? "FeatureLists" : "Features")
                 : DBR_OK;
}

static int scan_record(const dbr_example_parser *p, const unsigned char *rec, size_t len,
                       found *where)
{
    cur c = {rec, rec + len};
    uint32_t field, wt;
    int r;
    while ((r = next_field(&c, &field, &wt)) > 0) {
        cur sub;
        if ((field == 1 || (p->sequence && field == 2)) && wt == 2) {
            if (!sub_message(&c, &sub))
                return dbr__fail(DBR_E_CORRUPT, "truncated %s field",
                                 field == 1 ? "features" : "feature_lists");
            int rc = scan_map(p, sub, field == 2, where);
            if (rc != DBR_OK)
                return rc;
        } else if (!skip(&c, wt)) {
            return dbr__fail(DBR_E_CORRUPT, "malformed %s", p->sequence ? "SequenceExample"
                                                                        : "Example");
        }
    }
    return r < 0 ? dbr__fail(DBR_E_CORRUPT, "malformed %s (not a serialized message?)",
                             p->sequence ? "SequenceExample" : "Example")
                 : DBR_OK;
}

static int set_count(dbr_feature_out *o, size_t n, size_t index, int64_t count)
{
    if (!grow((void **)&o->counts, &o->counts_cap, n, sizeof(int64_t)))
        return 0;
    o->counts[index] = count;
    return 1;
}

/* One feature of one record into slot `index` of its output. */
static int decode_feature(const spec_feature *f, const found *w, size_t index, size_t n,
                          dbr_feature_out *o, const dbr__hole *hole)
{
    size_t count = 0;
    int rc;
    if (is_direct(f)) {
        size_t bytes = f->inner * elem_size(f->dtype);
        unsigned char *dst = (unsigned char *)o->dst + index * bytes;
        if (!o->dst || o->dst_cap < n * bytes)
            return dbr__fail(DBR_E_ARG, "feature '%s': output buffer of %zu bytes, %zu needed",
                             f->key, o->dst_cap, n * bytes);
        if (!w->present) {
            if (!f->dflt)
                return dbr__fail(DBR_E_ARG, "feature '%s' (%s) is required but missing",
                                 f->key, dtype_name(f->dtype));
            memcpy(dst, f->dflt, bytes);
            return DBR_OK;
        }
        rc = decode_values(f, w->msg, dst, f->dtype == DBR_DTYPE_UINT8 ? bytes : f->inner, o,
                           &count, hole);
        if (rc != DBR_OK)
            return rc;
        if (count != (f->dtype == DBR_DTYPE_UINT8 ? 1 : f->inner))
            return dbr__fail(DBR_E_ARG, "feature '%s': %zu %s values, the shape needs %zu",
                             f->key, count, dtype_name(f->dtype), f->inner);
        return DBR_OK;
    }
    int64_t total = 0;
    if (!w->present) {
        if (f->kind == DBR_FEATURE_FIXED && !f->allow_missing)
            return dbr__fail(DBR_E_ARG, "feature '%s' (%s) is required but missing",
                             f->key, dtype_name(f->dtype));
        if (f->in_lists && !f->allow_missing)
            return dbr__fail(DBR_E_ARG, "feature list '%s' is required but missing",
                             f->key);
        total = f->kind == DBR_FEATURE_FIXED ? -1 : 0; /* -1: fill in the default */
    } else if (f->in_lists) {
        /* FeatureList: each step is a Feature of exactly `inner` values. */
        cur fl = w->msg;
        uint32_t field, wt;
        int r;
        while ((r = next_field(&fl, &field, &wt)) > 0) {
            cur step;
            if (field != 1 || wt != 2) {
                if (!skip(&fl, wt))
                    return dbr__fail(DBR_E_CORRUPT, "feature list '%s': malformed", f->key);
                continue;
            }
            if (!sub_message(&fl, &step))
                return dbr__fail(DBR_E_CORRUPT, "feature list '%s': truncated step", f->key);
            if ((rc = decode_values(f, step, NULL, 0, o, &count, NULL)) != DBR_OK)
                return rc;
            if (count != f->inner)
                return dbr__fail(DBR_E_ARG, "feature list '%s': a step has %zu values, the "
                                 "shape needs %zu", f->key, count, f->inner);
            total += (int64_t)count;
        }
        if (r < 0)
            return dbr__fail(DBR_E_CORRUPT, "feature list '%s': malformed", f->key);
    } else {
        if ((rc = decode_values(f, w->msg, NULL, 0, o, &count, NULL)) != DBR_OK)
            return rc;
        if (f->kind == DBR_FEATURE_FIXED && count != f->inner)
            return dbr__fail(DBR_E_ARG, "feature '%s': %zu %s values, the shape needs %zu",
                             f->key, count, dtype_name(f->dtype), f->inner);
        if (f->kind == DBR_FEATURE_FIXED_SEQUENCE && f->inner && count % f->inner)
            return dbr__fail(DBR_E_ARG, "feature '%s': %zu values are not a whole number of "
                             "rows of %zu", f->key, count, f->inner);
        total = (int64_t)count;
    }
    if (!set_count(o, n, index, total))
        return dbr__fail(DBR_E_NOMEM, "feature '%s': out of memory", f->key);
    return DBR_OK;
}

void dbr__example_drop_record(const dbr_example_parser *p, size_t index, size_t n,
                              dbr_feature_out *outs)
{
    for (size_t i = 0; i < p->count; i++) {
        size_t bytes;
        unsigned char *slot = dbr__example_slot(p, i, index, n, outs, &bytes);
        if (slot)
            memset(slot, 0, bytes);
        else if (!is_direct(&p->f[i]))
            set_count(&outs[i], n, index, 0); /* out of memory: the batch failed anyway */
    }
}

/* Takes back what a failed record appended, so the records after it land
 * where they should, then drops the record. */
static void undo_record(const dbr_example_parser *p, size_t index, size_t n,
                        dbr_feature_out *outs, const size_t *values_len,
                        const size_t *value_count)
{
    for (size_t i = 0; i < p->count; i++) {
        if (!is_direct(&p->f[i])) {
            outs[i].values_len = values_len[i];
            outs[i].value_count = value_count[i];
        }
    }
    dbr__example_drop_record(p, index, n, outs);
}

int dbr__example_parse_one(const dbr_example_parser *p, const void *rec, size_t len,
                           size_t index, size_t n, dbr_feature_out *outs, const dbr__hole *hole)
{
    found local[16];
    size_t len_local[16], count_local[16];
    found *where = local;
    size_t *values_len = len_local, *value_count = count_local;
    if (p->count > 16) {
        where = calloc(p->count, sizeof *where);
        values_len = calloc(p->count, sizeof *values_len);
        value_count = calloc(p->count, sizeof *value_count);
    }
    int rc = where && values_len && value_count
                 ? DBR_OK : dbr__fail(DBR_E_NOMEM, "out of memory parsing an Example");
    if (rc == DBR_OK) {
        memset(where, 0, p->count * sizeof *where);
        for (size_t i = 0; i < p->count; i++) {
            values_len[i] = outs[i].values_len;
            value_count[i] = outs[i].value_count;
        }
        rc = scan_record(p, rec, len, where);
        for (size_t i = 0; rc == DBR_OK && i < p->count; i++)
            rc = decode_feature(&p->f[i], &where[i], index, n, &outs[i], hole);
        if (rc != DBR_OK)
            undo_record(p, index, n, outs, values_len, value_count);
    }
    if (where != local) {
        free(where);
        free(values_len);
        free(value_count);
    }
    return rc;
}

/* ---- zero-copy reads: finding a uint8 value before the record is read ----
 *
 * A reader that has only the first `avail` bytes of a record can still
 * learn where a large uint8 value lies, and read it from the file straight
 * into its output slot (tfrecord.c).  The walk below takes exactly the path
 * the parser takes (Example -> features -> map entry -> Feature ->
 * bytes_list -> value), from the first byte, so the value it finds is one
 * the parser reaches only through that value's own memcpy: the parser never
 * reads the value's bytes as tags.  Anything it cannot see within `avail`
 * bytes ends the search (the caller then reads the record whole). */

/* next_field, varint lengths and skips that never read at or past limit. */
static int peek_field(cur *c, const unsigned char *limit, uint32_t *field, uint32_t *wt)
{
    cur t = {c->p, c->end < limit ? c->end : limit};
    if (next_field(&t, field, wt) <= 0)
        return 0;
    c->p = t.p;
    return 1;
}

static int peek_sub(cur *c, const unsigned char *limit, cur *sub)
{
    cur t = {c->p, c->end < limit ? c->end : limit};
    uint64_t n;
    if (!varint(&t, &n) || n > (uint64_t)(c->end - t.p))
        return 0;
    sub->p = t.p;
    sub->end = t.p + n;
    c->p = sub->end;
    return 1;
}

static int peek_skip(cur *c, const unsigned char *limit, uint32_t wt)
{
    cur t = {c->p, c->end < limit ? c->end : limit}, s;
    switch (wt) {
    case 0: {
        uint64_t v;
        if (!varint(&t, &v))
            return 0;
        c->p = t.p;
        return 1;
    }
    case 1:
    case 5: {
        size_t w = wt == 1 ? 8 : 4;
        if ((size_t)(c->end - c->p) < w)
            return 0;
        c->p += w;
        return 1;
    }
    case 2: return peek_sub(c, limit, &s);
    default: return 0;
    }
}

/* The offset in a Feature message of its first bytes value of want bytes. */
static const unsigned char *find_in_feature(cur feat, const unsigned char *limit, size_t want)
{
    uint32_t field, wt;
    while (feat.p < feat.end) {
        cur list;
        if (!peek_field(&feat, limit, &field, &wt))
            return NULL;
        if (field != 1 || wt != 2) {
            if (!peek_skip(&feat, limit, wt))
                return NULL;
            continue;
        }
        if (!peek_sub(&feat, limit, &list))
            return NULL;
        while (list.p < list.end) {
            cur v;
            if (!peek_field(&list, limit, &field, &wt))
                return NULL;
            if (field != 1 || wt != 2) {
                if (!peek_skip(&list, limit, wt))
                    return NULL;
                continue;
            }
            if (!peek_sub(&list, limit, &v))
                return NULL;
            return (size_t)(v.end - v.p) == want ? v.p : NULL;
        }
    }
    return NULL;
}

int dbr__example_find_uint8(const dbr_example_parser *p, const unsigned char *rec,
                            size_t avail, size_t len, size_t min_len, size_t *feature,
                            size_t *offset)
{
    if (p->sequence || avail > len)
        return 0;
    const unsigned char *limit = rec + avail;
    cur top = {rec, rec + len};
    uint32_t field, wt;
    while (top.p < top.end) {
        cur map;
        if (!peek_field(&top, limit, &field, &wt))
            return 0;
        if (field != 1 || wt != 2) {
            if (!peek_skip(&top, limit, wt))
                return 0;
            continue;
        }
        if (!peek_sub(&top, limit, &map))
            return 0;
        while (map.p < map.end) {
            cur entry, key = {NULL, NULL};
            if (!peek_field(&map, limit, &field, &wt))
                return 0;
            if (field != 1 || wt != 2) {
                if (!peek_skip(&map, limit, wt))
                    return 0;
                continue;
            }
            if (!peek_sub(&map, limit, &entry))
                return 0;
            while (entry.p < entry.end) {
                cur sub;
                if (!peek_field(&entry, limit, &field, &wt))
                    return 0;
                if (wt != 2 || (field != 1 && field != 2)) {
                    if (!peek_skip(&entry, limit, wt))
                        return 0;
                    continue;
                }
                if (!peek_sub(&entry, limit, &sub))
                    return 0;
                if (field == 1) {
                    if (sub.end > limit)
                        return 0;
                    key = sub;
                    continue;
                }
                for (size_t i = 0; key.p && i < p->count; i++) {
                    const spec_feature *f = &p->f[i];
                    if (f->dtype != DBR_DTYPE_UINT8 || f->kind != DBR_FEATURE_FIXED ||
                        f->in_lists || f->inner < min_len || f->key_len != (size_t)(key.end - key.p) ||
                        memcmp(f->key, key.p, f->key_len))
                        continue;
                    const unsigned char *v = find_in_feature(sub, limit, f->inner);
                    if (!v)
                        return 0;
                    *feature = i;
                    *offset = (size_t)(v - rec);
                    return 1;
                }
            }
        }
    }
    return 0;
}

unsigned char *dbr__example_slot(const dbr_example_parser *p, size_t feature, size_t index,
                                 size_t n, const dbr_feature_out *outs, size_t *bytes)
{
    const spec_feature *f = &p->f[feature];
    *bytes = f->inner * elem_size(f->dtype);
    if (!is_direct(f) || !outs[feature].dst || index >= n || outs[feature].dst_cap < n * *bytes)
        return NULL;
    return (unsigned char *)outs[feature].dst + index * *bytes;
}

/* ---- batches ---- */

typedef struct batch {
    const dbr_example_parser *p;
    const void *const *records;
    const size_t *lens;
    size_t n;
    dbr_feature_out *outs;
    dbr__batch_status status;
} batch;

static void parse_item(void *ctx, size_t i)
{
    batch *b = ctx;
    int rc = dbr__example_parse_one(b->p, b->records[i], b->lens[i], i, b->n, b->outs, NULL);
    dbr__batch_item(&b->status, i, rc);
}

int dbr__example_all_direct(const dbr_example_parser *p)
{
    for (size_t i = 0; i < p->count; i++)
        if (!is_direct(&p->f[i]))
            return 0;
    return 1;
}

int dbr_example_parse_ex(const dbr_example_parser *p, const void *const *records,
                         const size_t *lens, size_t n, dbr_feature_out *outs, int threads,
                         int *statuses, char *messages, size_t message_cap)
{
    if (!p || (n && (!records || !lens || !outs)))
        return dbr__fail(DBR_E_ARG, "dbr_example_parse: NULL argument");
    batch b = {p, records, lens, n, outs,
               DBR__BATCH_STATUS_ITEMS(statuses, messages, message_cap)};
    /* Variable outputs append in record order, so only direct specs fan out. */
    if (threads != 1 && n > 1 && dbr__example_all_direct(p)) {
        dbr__parallel_for(n, threads, parse_item, &b);
    } else {
        for (size_t i = 0; i < n; i++)
            parse_item(&b, i);
    }
    if (b.status.rc != DBR_OK)
        return dbr__fail(b.status.rc, "record %zu of the batch: %s", b.status.index,
                         b.status.msg);
    return DBR_OK;
}

int dbr_example_parse(const dbr_example_parser *p, const void *const *records,
                      const size_t *lens, size_t n, dbr_feature_out *outs, int threads)
{
    return dbr_example_parse_ex(p, records, lens, n, outs, threads, NULL, NULL, 0);
}
