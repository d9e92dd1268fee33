/* file_batch.c - many files in one call: open (OS or VFS paths), read on
 * the thread pool, close.  Bindings that drop a global lock per call make
 * three calls per batch instead of four per file. */
#include "internal.h"

int dbr_file_open_many(const dbr_vfs *vfs, const char *const *paths, size_t n,
                       dbr_file **files, uint64_t *sizes, int *statuses)
{
    if (n && (!paths || !files || !sizes || !statuses))
        return dbr__fail(DBR_E_ARG, "dbr_file_open_many: NULL argument");
    dbr__batch_status status = DBR__BATCH_STATUS_INIT;
    for (size_t i = 0; i < n; i++) {
        files[i] = NULL;
        int rc = vfs ? dbr_vfs_open(vfs, paths[i], &files[i]) : dbr_file_open(paths[i], &files[i]);
        statuses[i] = rc;
        sizes[i] = rc == DBR_OK ? dbr_file_size(files[i]) : 0;
        if (rc != DBR_OK)
            dbr__batch_fail(&status, rc, i);
    }
    return dbr__batch_result(&status, 0);
}

typedef struct read_batch {
    dbr_file *const *files;
    void *const *dsts;
    const size_t *caps;
    size_t *out_lens;
    int *statuses;
    dbr__batch_status status;
} read_batch;

static void read_one(void *ctx, size_t i)
{
    read_batch *b = ctx;
    if (!b->files[i])
        return;
    int rc = dbr_file_read_all(b->files[i], b->dsts[i], b->caps[i], &b->out_lens[i]);
    b->statuses[i] = rc;
    if (rc != DBR_OK)
        dbr__batch_fail(&b->status, rc, i);
}

int dbr_file_read_many(dbr_file *const *files, size_t n, void *const *dsts,
                       const size_t *caps, size_t *out_lens, int *statuses, int threads)
{
    if (n && (!files || !dsts || !caps || !out_lens || !statuses))
        return dbr__fail(DBR_E_ARG, "dbr_file_read_many: NULL argument");
    read_batch b = {files, dsts, caps, out_lens, statuses, DBR__BATCH_STATUS_INIT};
    dbr__parallel_for(n, threads, read_one, &b);
    return dbr__batch_result(&b.status, 0);
}

void dbr_file_close_many(dbr_file *const *files, size_t n)
{
    if (!files)
        return;
    for (size_t i = 0; i < n; i++)
        dbr_file_close(files[i]);
}
