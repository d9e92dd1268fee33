/* jpeg_batch.c - decodes many JPEGs into one n x h x w x c array on a few
 * threads, from memory buffers or from files (OS paths or a VFS, so also
 * archive entries).  One call per batch: a binding releases its global
 * lock once, and every item's outcome lands in per-index arrays. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct batch {
    const void *const *srcs;
    const size_t *lens;
    const dbr_vfs *vfs;
    const char *const *paths; /* non-NULL: items are files */
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

/* Reads a file into memory unless it already is in memory (a decompressed
 * archive entry); *owned is what to free afterwards. */
static int load(const batch *b, size_t i, dbr_file **file, const void **data, size_t *len,
                void **owned)
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

static void decode_one(void *ctx, size_t i)
{
    batch *b = ctx;
    unsigned char *slot = b->dst + i * b->item_bytes;
    dbr_jpeg_result res;
    memset(&res, 0, sizeof res);
    dbr_file *file = NULL;
    void *owned = NULL;
    const void *data;
    size_t len;
    int rc;
    if (b->paths) {
        rc = load(b, i, &file, &data, &len, &owned);
    } else {
        data = b->srcs[i];
        len = b->lens[i];
        rc = data ? DBR_OK : dbr__fail(DBR_E_ARG, "buffer is NULL");
    }
    if (rc == DBR_OK)
        rc = dbr_jpeg_decode_crop(data, len, b->opts, b->crop, b->first_index + i, slot, 0,
                                  b->item_bytes, &res);
    if (rc != DBR_OK && b->paths && !strstr(dbr_last_error(), b->paths[i])) {
        char detail[512];
        dbr__copy_last_error(detail, sizeof detail);
        dbr__fail(rc, "'%s': %s", b->paths[i], detail);
    }
    free(owned);
    dbr_file_close(file);
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
