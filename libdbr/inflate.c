/* inflate.c - raw deflate of a whole buffer whose decoded size is known.
 *
 * ZIP entries declare their decoded size, so the whole entry can be decoded
 * in one call into the caller's buffer.  libdeflate does exactly that and
 * runs about twice as fast as zlib's streaming inflate (it needs no window
 * and decodes with wider table lookups); zlib stays for streams whose size
 * is unknown (GZIP/ZLIB TFRecords) and for entries too large to hold whole.
 * Built without libdeflate (DBR_HAVE_LIBDEFLATE unset), callers stream with
 * zlib instead. */
#include "internal.h"

#ifdef DBR_HAVE_LIBDEFLATE
#include <libdeflate.h>

int dbr__inflate_whole(const void *src, size_t src_len, void *dst, size_t dst_len,
                       const char **why)
{
    /* A decompressor is ~32 KiB of tables: one per call keeps batch
     * threads free of thread-local state (they are started per batch). */
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    if (!d) {
        *why = "out of memory";
        return DBR_E_NOMEM;
    }
    size_t got = 0;
    enum libdeflate_result r = libdeflate_deflate_decompress(d, src, src_len, dst, dst_len, &got);
    libdeflate_free_decompressor(d);
    if (r == LIBDEFLATE_SUCCESS && got == dst_len)
        return DBR_OK;
    *why = r == LIBDEFLATE_SUCCESS ? "the deflate data decodes to fewer bytes than declared"
         : r == LIBDEFLATE_INSUFFICIENT_SPACE ? "the deflate data holds more than the "
                                                "declared size"
         : "bad or truncated deflate data";
    return DBR_E_CORRUPT;
}

int dbr__inflate_whole_available(void) { return 1; }
#else
int dbr__inflate_whole(const void *src, size_t src_len, void *dst, size_t dst_len,
                       const char **why)
{
    (void)src; (void)src_len; (void)dst; (void)dst_len;
    *why = "built without libdeflate";
    return DBR_E_UNSUPPORTED;
}

int dbr__inflate_whole_available(void) { return 0; }
#endif
