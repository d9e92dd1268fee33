/* jpeg_header.c - reads a JPEG's markers up to the first scan: size,
 * components, colour space, coding and EXIF orientation, without libjpeg.
 *
 * Our own walk over the segments (ITU T.81 annex B, EXIF 2.3 / TIFF 6 for
 * APP1) costs well under a microsecond, so the Python layer can size its
 * array before the one decoding call.  The colour space follows the rules
 * libjpeg documents for jpeg_read_header (JFIF, Adobe transform, component
 * ids), and the decoder cross-checks the size against libjpeg's. */
#include "internal.h"

#include <string.h>

static unsigned be16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }

/* TIFF values in the byte order the EXIF block declares. */
static unsigned tiff16(const unsigned char *p, int le)
{
    return le ? (unsigned)p[1] << 8 | p[0] : be16(p);
}

static uint32_t tiff32(const unsigned char *p, int le)
{
    return le ? (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The Orientation tag (0x0112) of IFD0 in an APP1 "Exif\0\0" payload, or 1.
 * Anything malformed is ignored: orientation is a hint, not image data. */
static int exif_orientation(const unsigned char *p, size_t n)
{
    if (n < 14 || memcmp(p, "Exif\0\0", 6) != 0)
        return 1;
    p += 6;
    n -= 6;
    int le;
    if (memcmp(p, "II*\0", 4) == 0)
        le = 1;
    else if (memcmp(p, "MM\0*", 4) == 0)
        le = 0;
    else
        return 1;
    uint32_t ifd = tiff32(p + 4, le);
    if (ifd > n - 2 || ifd < 8)
        return 1;
    unsigned count = tiff16(p + ifd, le);
    for (unsigned i = 0; i < count; i++) {
        size_t at = (size_t)ifd + 2 + (size_t)i * 12;
        if (at + 12 > n)
            return 1;
        if (tiff16(p + at, le) == 0x0112) {
            unsigned type = tiff16(p + at + 2, le);
            unsigned v = type == 3 ? tiff16(p + at + 8, le)
                         : type == 4 ? (unsigned)tiff32(p + at + 8, le) : 0;
            return v >= 1 && v <= 8 ? (int)v : 1;
        }
    }
    return 1;
}

int dbr_jpeg_read_header(const void *src, size_t len, dbr_jpeg_info *out)
{
    const unsigned char *p = src;
    if (!src || !out)
        return dbr__fail(DBR_E_ARG, "dbr_jpeg_read_header: src and out must not be NULL");
    memset(out, 0, sizeof *out);
    out->orientation = 1;
    if (len < 4 || p[0] != 0xFF || p[1] != 0xD8)
        return dbr__fail(DBR_E_CORRUPT, "not a JPEG: %zu bytes that do not start with "
                         "the SOI marker FF D8", len);
    int saw_sof = 0, saw_jfif = 0, saw_adobe = 0, saw_exif = 0, adobe_transform = 0;
    unsigned char ids[4] = {0};
    size_t at = 2;
    for (;;) {
        /* A marker is FF, any number of FF fill bytes, then its code.  Stray
         * bytes before it, a stuffed FF 00 among them, are skipped, as
         * libjpeg does (with a warning that fails a strict decode). */
        while (at < len && p[at] != 0xFF)
            at++;
        while (at < len && p[at] == 0xFF)
            at++;
        if (at >= len)
            return dbr__fail(DBR_E_CORRUPT, "JPEG header: data ends before the first "
                             "scan (%zu bytes)", len);
        unsigned m = p[at++];
        if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD7))
            continue; /* stuffed zero; TEM, RSTn: no payload */
        if (m == 0xD8 || m == 0xD9)
            return dbr__fail(DBR_E_CORRUPT, "JPEG header: unexpected marker FF %02X at "
                             "byte %zu", m, at - 1);
        if (at + 2 > len)
            return dbr__fail(DBR_E_CORRUPT, "JPEG header: truncated at byte %zu of %zu",
                             at, len);
        size_t seg = be16(p + at);
        if (seg < 2 || at + seg > len)
            return dbr__fail(DBR_E_CORRUPT, "JPEG header: marker FF %02X at byte %zu has "
                             "length %zu but %zu bytes remain", m, at - 2, seg, len - at);
        const unsigned char *q = p + at + 2;
        size_t n = seg - 2;
        if (m == 0xDA) { /* SOS: the header is complete */
            if (!saw_sof)
                return dbr__fail(DBR_E_CORRUPT, "JPEG header: scan at byte %zu before "
                                 "any frame header (SOF)", at - 2);
            break;
        }
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            if (saw_sof)
                return dbr__fail(DBR_E_CORRUPT, "JPEG header: second frame header at "
                                 "byte %zu", at - 2);
            if (n < 6)
                return dbr__fail(DBR_E_CORRUPT, "JPEG header: frame header at byte %zu "
                                 "is %zu bytes, too short", at - 2, n);
            unsigned kind = m & 0x0F;
            if (kind == 3 || kind == 7 || kind == 11 || kind == 15 || kind == 5 ||
                kind == 6 || kind == 13 || kind == 14)
                return dbr__fail(DBR_E_UNSUPPORTED, "JPEG uses a lossless or "
                                 "hierarchical process (SOF%u), which is not supported",
                                 kind);
            if (q[0] != 8)
                return dbr__fail(DBR_E_UNSUPPORTED, "JPEG has %u-bit samples; only 8-bit "
                                 "JPEGs are supported", q[0]);
            out->height = be16(q + 1);
            out->width = be16(q + 3);
            out->components = q[5];
            if (out->width == 0 || out->height == 0)
                return dbr__fail(DBR_E_UNSUPPORTED, "JPEG frame header gives size %ux%u; "
                                 "sizes set later by a DNL marker are not supported",
                                 out->width, out->height);
            if (out->components < 1 || n < 6 + 3 * (size_t)out->components)
                return dbr__fail(DBR_E_CORRUPT, "JPEG frame header at byte %zu: %d "
                                 "components do not fit in %zu bytes", at - 2,
                                 out->components, n);
            for (int c = 0; c < out->components && c < 4; c++)
                ids[c] = q[6 + 3 * c];
            out->progressive = kind == 2 || kind == 10;
            out->arithmetic = kind >= 9;
            saw_sof = 1;
        } else if (m == 0xE0 && n >= 5 && memcmp(q, "JFIF\0", 5) == 0) {
            saw_jfif = 1;
        } else if (m == 0xEE && n >= 12 && memcmp(q, "Adobe", 5) == 0) {
            saw_adobe = 1;
            adobe_transform = q[11];
        } else if (m == 0xE1 && !saw_exif && n >= 6 && memcmp(q, "Exif\0\0", 6) == 0) {
            saw_exif = 1;
            out->orientation = exif_orientation(q, n);
        }
        at += seg;
    }
    switch (out->components) {
    case 1:
        out->colorspace = DBR_JPEG_CS_GRAY;
        break;
    case 3:
        if (saw_jfif)
            out->colorspace = DBR_JPEG_CS_YCBCR;
        else if (saw_adobe)
            out->colorspace = adobe_transform == 0 ? DBR_JPEG_CS_RGB : DBR_JPEG_CS_YCBCR;
        else if (ids[0] == 'R' && ids[1] == 'G' && ids[2] == 'B')
            out->colorspace = DBR_JPEG_CS_RGB;
        else
            out->colorspace = DBR_JPEG_CS_YCBCR;
        break;
    case 4:
        out->colorspace = saw_adobe && adobe_transform != 0 ? DBR_JPEG_CS_YCCK
                                                            : DBR_JPEG_CS_CMYK;
        break;
    default:
        out->colorspace = DBR_JPEG_CS_UNKNOWN;
        break;
    }
    return DBR_OK;
}
