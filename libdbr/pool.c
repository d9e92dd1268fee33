/* pool.c - run a batch of independent items on several threads.
 *
 * Threads are started per batch rather than kept in a global pool: a batch
 * (tens of JPEGs, hundreds of records) costs milliseconds, thread start-up
 * tens of microseconds, and no global state means nothing to repair in a
 * forked child (DataLoader workers fork).  dbr__batch_status carries each
 * item's outcome, and the first failure of a batch, back to its caller. */
#include "internal.h"

#include <pthread.h>
#include <unistd.h>

typedef struct batch {
    size_t count;
    size_t next; /* claimed with an atomic add, so items balance across threads */
    void (*fn)(void *ctx, size_t index);
    void *ctx;
} batch;

static void *worker(void *arg)
{
    batch *b = arg;
    for (;;) {
        size_t i = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED);
        if (i >= b->count)
            break;
        b->fn(b->ctx, i);
    }
    return NULL;
}

int dbr__cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

void dbr__parallel_for(size_t count, int threads,
                       void (*fn)(void *ctx, size_t index), void *ctx)
{
    enum { MAX_THREADS = 256 };
    pthread_t ids[MAX_THREADS];
    batch b = {count, 0, fn, ctx};
    if (threads <= 0)
        threads = dbr__cpu_count();
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if ((size_t)threads > count)
        threads = (int)count;
    int started = 0;
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&ids[started], NULL, worker, &b) != 0)
            break; /* fewer threads still finish the batch */
        started++;
    }
    worker(&b);
    for (int t = 0; t < started; t++)
        pthread_join(ids[t], NULL);
}

void dbr__batch_fail(dbr__batch_status *status, int rc, size_t index)
{
    while (__atomic_exchange_n(&status->lock, 1, __ATOMIC_ACQUIRE))
        ;
    if (status->rc == DBR_OK || index < status->index) {
        status->rc = rc;
        status->index = index;
        dbr__copy_last_error(status->msg, sizeof status->msg);
    }
    __atomic_store_n(&status->lock, 0, __ATOMIC_RELEASE);
}

void dbr__batch_item(dbr__batch_status *status, size_t index, int rc)
{
    if (status->statuses)
        status->statuses[index] = rc;
    if (status->messages && status->message_cap) {
        char *msg = status->messages + index * status->message_cap;
        if (rc != DBR_OK)
            dbr__copy_last_error(msg, status->message_cap);
        else
            msg[0] = '\0';
    }
    if (rc != DBR_OK)
        dbr__batch_fail(status, rc, index);
}

int dbr__batch_result(const dbr__batch_status *status, int name_index)
{
    if (status->rc == DBR_OK)
        return DBR_OK;
    if (name_index)
        return dbr__fail(status->rc, "batch item %zu: %s", status->index, status->msg);
    return dbr__fail(status->rc, "%s", status->msg);
}
