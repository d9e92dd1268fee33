/* Fuzz target: TFRecord framing.  The first byte picks the compression
 * (NONE, GZIP, ZLIB); the rest is the file.  Reading, indexing and random
 * access must end in DBR_OK, DBR_E_EOF or a clean error, never a crash,
 * and must agree with each other. */
#include "dbr.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int comp = data[0] % 3;
    void *mem = malloc(size);
    if (!mem)
        return 0;
    memcpy(mem, data + 1, size - 1);
    dbr_file *f = NULL;
    if (dbr__file_from_memory(mem, size - 1, "fuzz.tfrecord", 0, &f) != DBR_OK)
        return 0;
    dbr_tfrecord_reader *r = NULL;
    size_t records = 0;
    int rc = dbr_tfrecord_reader_open(f, comp, 1, 1 << 20, &r);
    if (rc == DBR_OK) {
        const void *d;
        size_t len;
        uint64_t off;
        while ((rc = dbr_tfrecord_reader_next(r, &d, &len, &off)) == DBR_OK) {
            records++;
            if (comp == DBR_TFRECORD_NONE) {
                unsigned char *copy = malloc(len ? len : 1);
                size_t got;
                if (copy && (dbr_tfrecord_read_at(f, off, 1, copy, len, &got) != DBR_OK ||
                             got != len || memcmp(copy, d, len)))
                    abort(); /* random access disagrees with streaming */
                free(copy);
            }
        }
        dbr_tfrecord_reader_close(r);
    }
    uint64_t *pairs = NULL;
    size_t count = 0;
    int irc = dbr_tfrecord_index(f, comp, 1, 1 << 20, &pairs, &count);
    if ((irc == DBR_OK) != (rc == DBR_E_EOF) || (irc == DBR_OK && count != records))
        abort(); /* the index and the reader disagree */
    dbr_free(pairs);
    dbr_file_close(f);
    return 0;
}
