/* file_batch.c - many files in one call: open (OS or VFS paths), read on
 * the thread pool, close.  Bindings that drop a global lock per call make
 * three calls per batch instead of four per file.  Every item reports its
 * own status and message (dbr.h's one shape for batch outcomes). */
#include "internal.h"

int dbr_file_open_many_ex(const dbr_vfs *vfs, const char *const *paths, size_t n,
                          dbr_file **files, uint64_t *sizes, int *statuses, char *messages,
                          size_t message_cap)
{
    if (n && (!paths || !files || !sizes))
        return dbr__fail(DBR_E_ARG, "dbr_file_open_many: NULL argument");
    dbr__batch_status status = DBR__BATCH_STATUS_ITEMS(statuses, messages, message_cap);
    for (size_t i = 0; i < n; i++) {
        files[i] = NULL;
        int rc = vfs ? dbr_vfs_open(vfs, paths[i], &files[i]) : dbr_file_open(paths[i], &files[i]);
        sizes[i] = rc == DBR_OK ? dbr_file_size(files[i]) : 0;
        dbr__batch_item(&status, i, rc);
    }
    return dbr__batch_result(&status, 0);
}

int dbr_file_open_many(const dbr_vfs *vfs, const char *const *paths, size_t n,
                       dbr_file **files, uint64_t *sizes, int *statuses)
{
    if (n && !statuses)
        return dbr__fail(DBR_E_ARG, "dbr_file_open_many: NULL argument");
    return dbr_file_open_many_ex(vfs, paths, n, files, sizes, statuses, NULL, 0);
}

typedef struct read_batch {
    dbr_file *const *files;
    void *const *dsts;
    const size_t *caps;
    size_t *out_lens;
    dbr__batch_status status;
} read_batch;

static void read_one(void *ctx, size_t i)
{
    read_batch *b = ctx;
    if (!b->files[i])
        return;
    int rc = dbr_file_read_all(b->files[i], b->dsts[i], b->caps[i], &b->out_lens[i]);
    dbr__batch_item(&b->status, i, rc);
}

int dbr_file_read_many_ex(dbr_file *const *files, size_t n, void *const *dsts,
                          const size_t *caps, size_t *out_lens, int threads, int *statuses,
                          char *messages, size_t message_cap)
{
    if (n && (!files || !dsts || !caps || !out_lens))
        return dbr__fail(DBR_E_ARG, "dbr_file_read_many: NULL argument");
    read_batch b = {files, dsts, caps, out_lens,
                    DBR__BATCH_STATUS_ITEMS(statuses, messages, message_cap)};
    dbr__parallel_for(n, threads, read_one, &b);
    return dbr__batch_result(&b.status, 0);
}

int dbr_file_read_many(dbr_file *const *files, size_t n, void *const *dsts,
                       const size_t *caps, size_t *out_lens, int *statuses, int threads)
{
    if (n && !statuses)
        return dbr__fail(DBR_E_ARG, "dbr_file_read_many: NULL argument");
    return dbr_file_read_many_ex(files, n, dsts, caps, out_lens, threads, statuses, NULL, 0);
}

void dbr_file_close_many(dbr_file *const *files, size_t n)
{
    if (!files)
        return;
    for (size_t i = 0; i < n; i++)
        dbr_file_close(files[i]);
}
