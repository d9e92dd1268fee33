/* jpeg_batch.c - decodes many JPEGs into one n x h x w x c array on a few
 * threads, from memory buffers, from files (OS paths or a VFS) or from
 * the entries of an archive.  One call per batch: a binding releases its
 * global lock once, and every item's outcome lands in per-index arrays. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Read buffers that outlive an item, so a worker reading archive entries
 * reuses one allocation instead of paying malloc and page faults per
 * image.  At most one buffer per running worker is ever out. */
typedef struct scratch {
    void *data;
    size_t cap;
} scratch;

typedef struct scratch_pool {
    int lock; /* spin lock: held for a pointer swap */
    size_t count;
    scratch items[256]; /* dbr__parallel_for runs at most 256 workers */
} scratch_pool;

typedef struct batch {
    const void *const *srcs;
    const size_t *lens;
    const dbr_vfs *vfs;
    const char *const *paths; /* non-NULL: items are files */
    const dbr_zip *zip;
    const dbr_tar *tar;
    const size_t *indices;    /* non-NULL: items are entries of zip or tar */
    scratch_pool *pool;
    const dbr_jpeg_options *opts;
    const dbr_jpeg_crop *crop;
    uint64_t first_index;
    unsigned char *dst;
    size_t item_bytes;
    int *statuses;
    dbr_jpeg_result *results;
    char *messages;
    size_t message_cap;
    dbr__batch_status status;
} batch;

static scratch take(scratch_pool *pool)
{
    scratch s = {NULL, 0};
    while (__atomic_exchange_n(&pool->lock, 1, __ATOMIC_ACQUIRE))
        ;
    if (pool->count)
        s = pool->items[--pool->count];
    __atomic_store_n(&pool->lock, 0, __ATOMIC_RELEASE);
    return s;
}

static void give_back(scratch_pool *pool, scratch s)
{
    while (__atomic_exchange_n(&pool->lock, 1, __ATOMIC_ACQUIRE))
        ;
    if (pool->count < sizeof pool->items / sizeof pool->items[0]) {
        pool->items[pool->count++] = s;
        s.data = NULL;
    }
    __atomic_store_n(&pool->lock, 0, __ATOMIC_RELEASE);
    free(s.data);
}

/* Reads a file into memory unless it already is in memory (a decompressed
 * archive entry); *owned is what to free afterwards. */
static int load_file(const batch *b, size_t i, dbr_file **file, const void **data,
                     size_t *len, void **owned)
{
    int rc = b->vfs ? dbr_vfs_open(b->vfs, b->paths[i], file)
                    : dbr_file_open(b->paths[i], file);
    if (rc != DBR_OK)
        return rc;
    uint64_t size = dbr_file_size(*file);
    if (size > SIZE_MAX)
        return dbr__fail(DBR_E_LIMIT, "'%s' is too large to decode", b->paths[i]);
    *len = (size_t)size;
    *data = dbr_file_data(*file);
    if (*data)
        return DBR_OK;
    *owned = malloc(*len ? *len : 1);
    if (!*owned)
        return dbr__fail(DBR_E_NOMEM, "out of memory reading '%s' (%zu bytes)",
                         b->paths[i], *len);
    *data = *owned;
    size_t got;
    return dbr_file_read_all(*file, *owned, *len, &got);
}

/* A tar member: decoded where it lies in the tar's mapping (no copy), or
 * read into the worker's buffer when the tar is read with pread. */
static int load_member(const batch *b, size_t i, scratch *s, const void **data, size_t *len)
{
    size_t index = b->indices[i];
    int rc = dbr__tar_member_bytes(b->tar, index, data, len);
    if (rc != DBR_OK || *data)
        return rc;
    if (s->cap < *len || !s->data) {
        size_t cap = *len > s->cap * 2 ? *len : s->cap * 2; /* as load_entry grows */
        void *grown = malloc(cap ? cap : 1);
        if (!grown)
            return dbr__fail(DBR_E_NOMEM, "out of memory reading member %zu of '%s' (%zu "
                             "bytes)", index, dbr_tar_path(b->tar), *len);
        free(s->data);
        s->data = grown;
        s->cap = cap;
    }
    *data = s->data;
    return dbr_tar_read(b->tar, index, s->data, s->cap, len);
}

/* Reads (and CRC-checks) an archive entry into the worker's buffer. */
static int load_entry(const batch *b, size_t i, scratch *s, size_t *len)
{
    size_t index = b->indices[i];
    if (index >= dbr_zip_count(b->zip))
        return dbr__fail(DBR_E_ARG, "'%s' has %zu entries, there is no entry %zu",
                         dbr_zip_path(b->zip), dbr_zip_count(b->zip), index);
    uint64_t size = dbr_zip_entry_size(b->zip, index);
    if (size > SIZE_MAX)
        return dbr__fail(DBR_E_LIMIT, "entry %zu of '%s' is too large to decode", index,
                         dbr_zip_path(b->zip));
    if (s->cap < size || !s->data) {
        size_t cap = size > s->cap * 2 ? (size_t)size : s->cap * 2;
        void *grown = malloc(cap ? cap : 1);
        if (!grown)
            return dbr__fail(DBR_E_NOMEM, "out of memory reading entry %zu of '%s' (%zu "
                             "bytes)", index, dbr_zip_path(b->zip), (size_t)size);
        free(s->data);
        s->data = grown;
        s->cap = cap;
    }
    return dbr_zip_read(b->zip, index, s->data, s->cap, len);
}

/* Puts the item's name (path, or archive:entry) before a failure's detail
 * unless the detail already names it. */
static void name_failure(const batch *b, size_t i, int rc)
{
    char name[512], detail[512];
    const char *own; /* what the detail would contain if it names the item */
    dbr_zip_entry e;
    dbr_tar_entry te;
    if (b->paths) {
        own = b->paths[i];
        snprintf(name, sizeof name, "%s", own);
    } else if (b->zip && b->indices[i] < dbr_zip_count(b->zip) &&
               dbr_zip_entries(b->zip, b->indices[i], 1, &e) == DBR_OK) {
        own = e.name;
        snprintf(name, sizeof name, "%s:%s", dbr_zip_path(b->zip), own);
    } else if (b->tar && b->indices[i] < dbr_tar_count(b->tar) &&
               dbr_tar_entries(b->tar, b->indices[i], 1, &te) == DBR_OK) {
        own = te.name;
        snprintf(name, sizeof name, "%s:%s", dbr_tar_path(b->tar), own);
    } else {
        return; /* bytes carry no name; a bad index is named by its detail */
    }
    if (strstr(dbr_last_error(), own))
        return;
    dbr__copy_last_error(detail, sizeof detail);
    dbr__fail(rc, "'%s': %s", name, detail);
}

static void decode_one(void *ctx, size_t i)
{
    batch *b = ctx;
    unsigned char *slot = b->dst + i * b->item_bytes;
    dbr_jpeg_result res;
    memset(&res, 0, sizeof res);
    dbr_file *file = NULL;
    void *owned = NULL;
    scratch s = {NULL, 0};
    const void *data = NULL;
    size_t len = 0;
    int rc;
    if (b->paths) {
        rc = load_file(b, i, &file, &data, &len, &owned);
    } else if (b->zip) {
        s = take(b->pool);
        rc = load_entry(b, i, &s, &len);
        data = s.data;
    } else if (b->tar) {
        s = take(b->pool);
        rc = load_member(b, i, &s, &data, &len);
    } else {
        data = b->srcs[i];
        len = b->lens[i];
        rc = data ? DBR_OK : dbr__fail(DBR_E_ARG, "buffer is NULL");
    }
    if (rc == DBR_OK)
        rc = dbr_jpeg_decode_crop(data, len, b->opts, b->crop, b->first_index + i, slot, 0,
                                  b->item_bytes, &res);
    if (rc != DBR_OK)
        name_failure(b, i, rc);
    free(owned);
    dbr_file_close(file);
    if (b->zip || b->tar)
        give_back(b->pool, s);
    if (rc != DBR_OK)
        memset(slot, 0, b->item_bytes);
    if (b->results)
        b->results[i] = res;
    dbr__batch_item(&b->status, i, rc);
}

static int run_batch(batch *b, size_t n, void *dst, size_t cap, int threads)
{
    const dbr_jpeg_crop *c = b->crop;
    if (!c || (n && !dst))
        return dbr__fail(DBR_E_ARG, "JPEG batch: crop and dst must not be NULL");
    int rc = dbr__jpeg_check_crop(c); /* the whole call's mistake, not an item's */
    if (rc != DBR_OK)
        return rc;
    if (b->opts && (b->opts->roi_w || b->opts->scale_num || b->opts->scale_denom))
        return dbr__fail(DBR_E_ARG, "JPEG batch: scale and region come from the crop; "
                         "leave them unset in the options");
    int format = b->opts ? b->opts->format : DBR_PIXEL_RGB;
    size_t ch = format == DBR_PIXEL_GRAY ? 1 : format == DBR_PIXEL_RGBA ? 4 : 3;
    b->item_bytes = (size_t)c->out_w * c->out_h * ch;
    if (b->item_bytes && n > SIZE_MAX / b->item_bytes)
        return dbr__fail(DBR_E_ARG, "JPEG batch: %zu items of %zu bytes overflow", n,
                         b->item_bytes);
    if (cap < n * b->item_bytes)
        return dbr__fail(DBR_E_TOO_SMALL, "JPEG batch: %zu items of %ux%ux%zu need %zu "
                         "bytes, got %zu", n, c->out_h, c->out_w, ch, n * b->item_bytes, cap);
    b->dst = dst;
    b->status = (dbr__batch_status)DBR__BATCH_STATUS_ITEMS(b->statuses, b->messages,
                                                           b->message_cap);
    dbr__parallel_for(n, threads, decode_one, b);
    return dbr__batch_result(&b->status, 1);
}

int dbr_jpeg_decode_batch(size_t n, const void *const *srcs, const size_t *lens,
                          const dbr_jpeg_options *opts, const dbr_jpeg_crop *crop,
                          uint64_t first_index, void *dst, size_t cap, int threads,
                          int *statuses, dbr_jpeg_result *results, char *messages,
                          size_t message_cap)
{
    if (n && (!srcs || !lens))
        return dbr__fail(DBR_E_ARG, "dbr_jpeg_decode_batch: srcs and lens must not be NULL");
    batch b = {.srcs = srcs, .lens = lens, .opts = opts, .crop = crop,
               .first_index = first_index, .statuses = statuses, .results = results,
               .messages = messages, .message_cap = message_cap};
    return run_batch(&b, n, dst, cap, threads);
}

int dbr_jpeg_decode_files(const dbr_vfs *vfs, size_t n, const char *const *paths,
                          const dbr_jpeg_options *opts, const dbr_jpeg_crop *crop,
                          uint64_t first_index, void *dst, size_t cap, int threads,
                          int *statuses, dbr_jpeg_result *results, char *messages,
                          size_t message_cap)
{
    if (n && !paths)
        return dbr__fail(DBR_E_ARG, "dbr_jpeg_decode_files: paths must not be NULL");
    for (size_t i = 0; i < n; i++)
        if (!paths[i])
            return dbr__fail(DBR_E_ARG, "dbr_jpeg_decode_files: path %zu is NULL", i);
    batch b = {.vfs = vfs, .paths = paths, .opts = opts, .crop = crop,
               .first_index = first_index, .statuses = statuses, .results = results,
               .messages = messages, .message_cap = message_cap};
    return run_batch(&b, n, dst, cap, threads);
}

/* Runs a batch of archive entries with a pool of per-worker buffers.  The
 * call holds its own reference to the archive: a close on another thread
 * while the workers read only drops the caller's. */
static int run_pooled(batch *b, size_t n, void *dst, size_t cap, int threads)
{
    scratch_pool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return dbr__fail(DBR_E_NOMEM, "JPEG batch: out of memory");
    b->pool = pool;
    if (b->zip)
        dbr_zip_retain(b->zip);
    else
        dbr_tar_retain(b->tar);
    int rc = run_batch(b, n, dst, cap, threads);
    if (b->zip)
        dbr_zip_close((dbr_zip *)b->zip);
    else
        dbr_tar_close((dbr_tar *)b->tar);
    for (size_t i = 0; i < pool->count; i++)
        free(pool->items[i].data);
    free(pool);
    return rc;
}

int dbr_jpeg_decode_entries(const dbr_zip *zip, size_t n, const size_t *indices,
                            const dbr_jpeg_options *opts, const dbr_jpeg_crop *crop,
                            uint64_t first_index, void *dst, size_t cap, int threads,
                            int *statuses, dbr_jpeg_result *results, char *messages,
                            size_t message_cap)
{
    if (!zip || (n && !indices))
        return dbr__fail(DBR_E_ARG, "dbr_jpeg_decode_entries: zip and indices must not be "
                         "NULL");
    batch b = {.zip = zip, .indices = indices, .opts = opts, .crop = crop,
               .first_index = first_index, .statuses = statuses, .results = results,
               .messages = messages, .message_cap = message_cap};
    return run_pooled(&b, n, dst, cap, threads);
}

int dbr_jpeg_decode_tar(const dbr_tar *tar, size_t n, const size_t *indices,
                        const dbr_jpeg_options *opts, const dbr_jpeg_crop *crop,
                        uint64_t first_index, void *dst, size_t cap, int threads,
                        int *statuses, dbr_jpeg_result *results, char *messages,
                        size_t message_cap)
{
    if (!tar || (n && !indices))
        return dbr__fail(DBR_E_ARG, "dbr_jpeg_decode_tar: tar and indices must not be NULL");
    batch b = {.tar = tar, .indices = indices, .opts = opts, .crop = crop,
               .first_index = first_index, .statuses = statuses, .results = results,
               .messages = messages, .message_cap = message_cap};
    return run_pooled(&b, n, dst, cap, threads);
}
