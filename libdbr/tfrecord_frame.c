/* tfrecord_frame.c - TFRecord framing for writers: the header and footer
 * that surround a record's data (the layout tfrecord.c reads: uint64
 * length, masked CRC-32C of those 8 bytes, data, masked CRC-32C of the
 * data, all little endian).  The caller writes header, data, footer in
 * that order, so the data is never copied. */
#include "internal.h"

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

int dbr_tfrecord_frame(const void *data, size_t len, unsigned char header[12],
                       unsigned char footer[4])
{
    if ((!data && len) || !header || !footer)
        return dbr__fail(DBR_E_ARG, "dbr_tfrecord_frame: NULL argument");
    put_le(header, (uint64_t)len, 8);
    put_le(header + 8, dbr_crc32c_mask(dbr_crc32c(0, header, 8)), 4);
    put_le(footer, dbr_crc32c_mask(len ? dbr_crc32c(0, data, len) : 0), 4);
    return DBR_OK;
}
