/* jpeg.c - decodes one JPEG through libjpeg-turbo into a caller's buffer:
 * any pixel format, DCT-domain scaling, a region of interest and EXIF
 * orientation, with errors and warnings turned into statuses.
 *
 * Every call creates its own decompressor, so calls never share state.
 * Rows go straight into the destination when no conversion is needed;
 * otherwise one row at a time passes through a small buffer owned by the
 * decompressor (freed with it, also when libjpeg longjmps out). */
#include "internal.h"

#include <setjmp.h>
#include <stdio.h> /* jpeglib.h uses FILE */
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

typedef struct decoder {
    struct jpeg_decompress_struct d; /* first: callbacks cast back */
    struct jpeg_error_mgr err;
    struct jpeg_progress_mgr progress;
    jmp_buf jmp;
    int policy;    /* DBR_JPEG_RECOVER, _LENIENT or _STRICT */
    int rows_done; /* every output row exists: running out of data now only
                      loses the end marker */
    int truncated; /* refused because the data ended before the last row */
    int max_scans, warnings, limit_hit;
    char msg[JMSG_LENGTH_MAX];
} decoder;

static void on_error(j_common_ptr c)
{
    decoder *dec = (decoder *)c;
    (*c->err->format_message)(c, dec->msg);
    longjmp(dec->jmp, 1);
}

/* Level < 0 is a warning: libjpeg met corrupt data and carried on.  The
 * default policy follows Pillow, which ignores warnings but refuses data
 * that ends before the last row (libjpeg then reports JWRN_JPEG_EOF and
 * would invent the missing rows); strict mode stops at any warning (as
 * TurboJPEG's stop-on-warning does); lenient mode never stops. */
static void on_message(j_common_ptr c, int level)
{
    decoder *dec = (decoder *)c;
    if (level >= 0)
        return;
    int truncated = c->err->msg_code == JWRN_JPEG_EOF && !dec->rows_done;
    if (!dec->warnings || (truncated && dec->policy == DBR_JPEG_RECOVER))
        (*c->err->format_message)(c, dec->msg);
    dec->warnings++;
    if (dec->policy == DBR_JPEG_STRICT)
        longjmp(dec->jmp, 1);
    if (truncated && dec->policy == DBR_JPEG_RECOVER) {
        dec->truncated = 1;
        longjmp(dec->jmp, 1);
    }
}

/* Each progressive scan makes libjpeg revisit every coefficient, so a file
 * of thousands of tiny scans is a CPU bomb; cap the count. */
static void on_progress(j_common_ptr c)
{
    decoder *dec = (decoder *)c;
    if (dec->d.input_scan_number > dec->max_scans) {
        dec->limit_hit = 1;
        snprintf(dec->msg, sizeof dec->msg, "more than %d progressive scans (raise "
                 "max_scans if you trust this file)", dec->max_scans);
        longjmp(dec->jmp, 1);
    }
}

static int error_code(const decoder *dec)
{
    if (dec->limit_hit)
        return DBR_E_LIMIT;
    switch (dec->err.msg_code) {
    case JERR_OUT_OF_MEMORY: return DBR_E_NOMEM;
    case JERR_NOT_COMPILED:
    case JERR_NOTIMPL:
    case JERR_CONVERSION_NOTIMPL: return DBR_E_UNSUPPORTED;
    default: return DBR_E_CORRUPT;
    }
}

static int channels_of(int format) { return format == DBR_PIXEL_GRAY ? 1 : format == DBR_PIXEL_RGBA ? 4 : 3; }

uint32_t dbr__jpeg_scaled(uint32_t side, int eighths)
{
    return (uint32_t)(((uint64_t)side * (uint64_t)eighths + 7) / 8);
}

int dbr__jpeg_plan(const void *src, size_t len, const dbr_jpeg_options *o,
                   dbr__jpeg_plan_t *pl)
{
    int rc = dbr_jpeg_read_header(src, len, &pl->info);
    if (rc != DBR_OK)
        return rc;
    const dbr_jpeg_info *in = &pl->info;
    if (in->colorspace == DBR_JPEG_CS_UNKNOWN)
        return dbr__fail(DBR_E_UNSUPPORTED, "JPEG with %d components: only 1 (gray), 3 "
                         "(YCbCr, RGB) and 4 (CMYK, YCCK) are supported", in->components);
    uint64_t limit = o->max_pixels ? o->max_pixels : DBR_JPEG_DEFAULT_MAX_PIXELS;
    uint64_t pixels = (uint64_t)in->width * in->height;
    if (pixels > limit)
        return dbr__fail(DBR_E_LIMIT, "JPEG header claims %ux%u = %llu pixels, above the "
                         "limit of %llu (raise max_pixels if you trust this file)",
                         in->width, in->height, (unsigned long long)pixels,
                         (unsigned long long)limit);
    if (o->format < DBR_PIXEL_RGB || o->format > DBR_PIXEL_RGBA)
        return dbr__fail(DBR_E_ARG, "JPEG: unknown pixel format %d", o->format);
    if (o->lenient < DBR_JPEG_RECOVER || o->lenient > DBR_JPEG_STRICT)
        return dbr__fail(DBR_E_ARG, "JPEG: unknown damage policy %d (lenient must be "
                         "DBR_JPEG_RECOVER, _LENIENT or _STRICT)", o->lenient);
    pl->channels = channels_of(o->format);
    int num = o->scale_num, den = o->scale_denom;
    if (num == 0 && den == 0)
        num = den = 1;
    if (num <= 0 || den <= 0 || (int64_t)num * 8 > (int64_t)den * 16)
        return dbr__fail(DBR_E_ARG, "JPEG: scale %d/%d is not in (0, 2]", num, den);
    pl->eighths = 1;
    while ((int64_t)pl->eighths * den < (int64_t)num * 8)
        pl->eighths++;
    uint32_t sw = dbr__jpeg_scaled(in->width, pl->eighths);
    uint32_t sh = dbr__jpeg_scaled(in->height, pl->eighths);
    pl->orientation = o->apply_orientation ? in->orientation : 1;
    int swap = pl->orientation >= 5;
    uint32_t dw = swap ? sh : sw, dh = swap ? sw : sh;
    uint32_t x = o->roi_x, y = o->roi_y, w = o->roi_w, h = o->roi_h;
    if (w == 0) {
        x = y = 0;
        w = dw;
        h = dh;
    } else if (h == 0 || (uint64_t)x + w > dw || (uint64_t)y + h > dh) {
        return dbr__fail(DBR_E_ARG, "JPEG: region %ux%u at (%u, %u) is not inside the "
                         "%ux%u output", w, h, x, y, dw, dh);
    }
    pl->out_w = w;
    pl->out_h = h;
    pl->scaled_w = sw;
    pl->scaled_h = sh;
    /* The same region in stored (unrotated) coordinates. */
    uint32_t rx, ry, rw = swap ? h : w, rh = swap ? w : h;
    switch (pl->orientation) {
    default: rx = x; ry = y; break;
    case 2: rx = sw - x - w; ry = y; break;
    case 3: rx = sw - x - w; ry = sh - y - h; break;
    case 4: rx = x; ry = sh - y - h; break;
    case 5: rx = y; ry = x; break;
    case 6: rx = y; ry = sh - x - w; break;
    case 7: rx = sw - y - h; ry = sh - x - w; break;
    case 8: rx = sw - y - h; ry = x; break;
    }
    pl->roi_x = rx;
    pl->roi_y = ry;
    pl->roi_w = rw;
    pl->roi_h = rh;
    return DBR_OK;
}

/* Pillow's CMYK -> RGB (Convert.c cmyk2rgb) on Adobe's inverted samples,
 * which Pillow un-inverts first: x = k' - round(c * k' / 255), with
 * c = 255 - raw c and k' = 255 - k = raw k. */
static unsigned char cmyk_channel(unsigned raw_c, unsigned raw_k)
{
    unsigned t = (255 - raw_c) * raw_k + 128;
    unsigned m = ((t >> 8) + t) >> 8;
    return (unsigned char)(raw_k - m);
}

/* Writes one decoded row of n pixels to d, stepping by step bytes per
 * pixel (negative or a whole pitch when rotating). */
static void store_row(const unsigned char *s, uint32_t n, unsigned char *d,
                      ptrdiff_t step, int cmyk, int format, int ch)
{
    if (!cmyk && step == ch) {
        memcpy(d, s, (size_t)n * (size_t)ch);
        return;
    }
    if (!cmyk) { /* rotated or mirrored: one pixel at a time */
        for (uint32_t i = 0; i < n; i++, s += ch, d += step)
            memcpy(d, s, (size_t)ch);
        return;
    }
    for (uint32_t i = 0; i < n; i++, s += 4, d += step) {
        unsigned char r = cmyk_channel(s[0], s[3]), g = cmyk_channel(s[1], s[3]),
                      b = cmyk_channel(s[2], s[3]);
        switch (format) {
        case DBR_PIXEL_RGB: d[0] = r; d[1] = g; d[2] = b; break;
        case DBR_PIXEL_BGR: d[0] = b; d[1] = g; d[2] = r; break;
        case DBR_PIXEL_RGBA: d[0] = r; d[1] = g; d[2] = b; d[3] = 255; break;
        default: /* Pillow's RGB -> L: ITU-R 601-2 luma in 16-bit fixed point */
            d[0] = (unsigned char)((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
            break;
        }
    }
}

/* Where stored row r of the region starts in dst, and the step between its
 * pixels, for each EXIF orientation (see dbr__jpeg_plan for the inverse). */
static unsigned char *row_target(const dbr__jpeg_plan_t *pl, uint32_t r,
                                 unsigned char *dst, size_t pitch, ptrdiff_t *step)
{
    size_t bpp = (size_t)pl->channels;
    uint32_t sw = pl->roi_w, sh = pl->roi_h;
    size_t x, y;
    switch (pl->orientation) {
    default: x = 0; y = r; *step = (ptrdiff_t)bpp; break;
    case 2: x = sw - 1; y = r; *step = -(ptrdiff_t)bpp; break;
    case 3: x = sw - 1; y = sh - 1 - r; *step = -(ptrdiff_t)bpp; break;
    case 4: x = 0; y = sh - 1 - r; *step = (ptrdiff_t)bpp; break;
    case 5: x = r; y = 0; *step = (ptrdiff_t)pitch; break;
    case 6: x = sh - 1 - r; y = 0; *step = (ptrdiff_t)pitch; break;
    case 7: x = sh - 1 - r; y = sw - 1; *step = -(ptrdiff_t)pitch; break;
    case 8: x = r; y = sw - 1; *step = -(ptrdiff_t)pitch; break;
    }
    return dst + y * pitch + x * bpp;
}

/* 1 if the entropy-coded data after what the decoder has consumed runs
 * into an EOI marker (restart markers and stuffed FF 00 are part of the
 * data).  A decode of the remaining rows could then never run out of data:
 * the bit reader and the restart resync both stop at EOI and never read
 * past it.  A scan for FF bytes costs a few microseconds. */
static int reaches_eoi(const struct jpeg_decompress_struct *d)
{
    int m = d->unread_marker; /* a marker the bit reader already stopped at */
    if (m == JPEG_EOI)
        return 1;
    if (m != 0 && (m < 0xD0 || m > 0xD7))
        return 0;
    const unsigned char *p = d->src->next_input_byte;
    const unsigned char *end = p + d->src->bytes_in_buffer;
    while ((p = memchr(p, 0xFF, (size_t)(end - p))) != NULL) {
        while (p < end && *p == 0xFF)
            p++;
        if (p == end)
            return 0;
        unsigned c = *p++;
        if (c == JPEG_EOI)
            return 1;
        if (c != 0 && (c < 0xD0 || c > 0xD7))
            return 0;
    }
    return 0;
}

/* Ends a decode whose wanted rows are all written.  Acceptance must not
 * depend on the region: a crop that stops above the damage is refused
 * exactly when a whole decode would be.  Multi-scan images have read all
 * their input already; a single scan that runs into EOI cannot be
 * truncated; otherwise (or in strict mode, which must see every warning)
 * the remaining rows are entropy-decoded without IDCT and the end read.
 * Lenient mode accepts anything, so it reads no further. */
static void finish(decoder *dec)
{
    struct jpeg_decompress_struct *d = &dec->d;
    if (d->output_scanline < d->output_height && dec->policy != DBR_JPEG_LENIENT &&
        !jpeg_input_complete(d) && !(dec->policy == DBR_JPEG_RECOVER && reaches_eoi(d))) {
        JDIMENSION left = d->output_height - d->output_scanline;
        /* Skipping to the very bottom reads nothing (libjpeg-turbo just
         * marks the input done), so the last row is decoded for real. */
        if (left > 1)
            jpeg_skip_scanlines(d, left - 1);
        JSAMPARRAY row = (*d->mem->alloc_sarray)(
            (j_common_ptr)d, JPOOL_IMAGE, d->output_width * (JDIMENSION)d->output_components, 1);
        if (d->output_scanline + 1 == d->output_height)
            jpeg_read_scanlines(d, row, 1);
    }
    if (d->output_scanline == d->output_height) {
        dec->rows_done = 1;
        jpeg_finish_decompress(d);
    }
}

/* The libjpeg part; dec lives in the caller so nothing that longjmp
 * crosses is a local of this function. */
static int run(decoder *dec, const unsigned char *src, size_t len,
               const dbr_jpeg_options *o, const dbr__jpeg_plan_t *pl,
               unsigned char *dst, size_t pitch, dbr__row_sink sink, void *sink_ctx)
{
    struct jpeg_decompress_struct *d = &dec->d;
    d->err = jpeg_std_error(&dec->err);
    dec->err.error_exit = on_error;
    dec->err.emit_message = on_message;
    if (setjmp(dec->jmp)) {
        int code = error_code(dec);
        size_t at = d->src ? len - d->src->bytes_in_buffer : 0;
        jpeg_destroy_decompress(d);
        const char *why = dec->truncated ? " before the last row (truncated; lenient "
                                           "decoding would fill the missing rows)"
                          : dec->warnings && dec->policy == DBR_JPEG_STRICT
                              ? " (strict mode refuses every warning)" : "";
        return dbr__fail(code, "JPEG (%zu bytes) near byte %zu: %s%s", len, at, dec->msg, why);
    }
    jpeg_create_decompress(d);
    jpeg_mem_src(d, src, (unsigned long)len);
    jpeg_read_header(d, TRUE);
    if (d->image_width != pl->info.width || d->image_height != pl->info.height) {
        snprintf(dec->msg, sizeof dec->msg, "frame size %ux%u disagrees with the "
                 "header probe's %ux%u", d->image_width, d->image_height,
                 pl->info.width, pl->info.height);
        longjmp(dec->jmp, 1);
    }
    int cmyk = d->jpeg_color_space == JCS_CMYK || d->jpeg_color_space == JCS_YCCK;
    static const J_COLOR_SPACE spaces[] = {JCS_EXT_RGB, JCS_EXT_BGR, JCS_GRAYSCALE,
                                           JCS_EXT_RGBA};
    d->out_color_space = cmyk ? JCS_CMYK : spaces[o->format];
    d->scale_num = (unsigned)pl->eighths;
    d->scale_denom = 8;
    if (o->fast) {
        d->dct_method = JDCT_IFAST;
        d->do_fancy_upsampling = FALSE;
        d->do_block_smoothing = FALSE;
    } else {
        d->dct_method = JDCT_ISLOW;
    }
    if (jpeg_has_multiple_scans(d)) {
        dec->progress.progress_monitor = on_progress;
        d->progress = &dec->progress;
    }
    jpeg_start_decompress(d);
    if (d->output_width != pl->scaled_w || d->output_height != pl->scaled_h) {
        snprintf(dec->msg, sizeof dec->msg, "libjpeg scaled to %ux%u, not %ux%u",
                 d->output_width, d->output_height, pl->scaled_w, pl->scaled_h);
        longjmp(dec->jmp, 1);
    }
    JDIMENSION xoff = pl->roi_x, width = pl->roi_w;
    if (width != d->output_width) {
        /* One more pixel each side where the image has it: fancy upsampling
         * treats the edges of a cropped row as image edges, so the region's
         * own edge pixels keep their neighbours (and match a full decode). */
        JDIMENSION right = xoff + width + (xoff + width < d->output_width);
        xoff -= xoff > 0;
        width = right - xoff;
        jpeg_crop_scanline(d, &xoff, &width); /* widens to whole blocks */
    }
    if (pl->roi_y && jpeg_skip_scanlines(d, pl->roi_y) != pl->roi_y) {
        snprintf(dec->msg, sizeof dec->msg, "could not skip %u rows", pl->roi_y);
        longjmp(dec->jmp, 1);
    }
    int direct = !cmyk && pl->orientation == 1 && xoff == pl->roi_x && width == pl->roi_w;
    if (sink) { /* one row at a time, so the sink may reuse its buffers */
        int in_ch = d->output_components;
        /* The wider block-aligned row fits the sink's pads: write it there
         * (a row buffer plus a copy costs far more than the copy itself). */
        size_t before = (size_t)(pl->roi_x - xoff) * in_ch;
        size_t after = (size_t)(xoff + width - pl->roi_x - pl->roi_w) * in_ch;
        int padded = !cmyk && before <= DBR__SINK_PAD && after <= DBR__SINK_PAD;
        direct = direct || padded;
        JSAMPARRAY buf = direct ? NULL
                                : (*d->mem->alloc_sarray)((j_common_ptr)d, JPOOL_IMAGE,
                                                          width * (JDIMENSION)in_ch, 1);
        const unsigned char *first = direct ? NULL : buf[0] + before;
        unsigned char *to;
        for (uint32_t r = 0; r < pl->roi_h && (to = sink(sink_ctx, r)) != NULL; r++) {
            JSAMPROW row = direct ? to - before : buf[0];
            if (jpeg_read_scanlines(d, &row, 1) != 1) {
                snprintf(dec->msg, sizeof dec->msg, "no rows decoded");
                longjmp(dec->jmp, 1);
            }
            if (!direct)
                store_row(first, pl->roi_w, to, pl->channels, cmyk, o->format, pl->channels);
        }
    } else if (direct) {
        JSAMPROW rows[16];
        for (uint32_t done = 0; done < pl->roi_h;) {
            uint32_t n = pl->roi_h - done < 16 ? pl->roi_h - done : 16;
            for (uint32_t i = 0; i < n; i++)
                rows[i] = dst + (size_t)(done + i) * pitch;
            JDIMENSION got = jpeg_read_scanlines(d, rows, n);
            if (got == 0) {
                snprintf(dec->msg, sizeof dec->msg, "no rows decoded");
                longjmp(dec->jmp, 1);
            }
            done += got;
        }
    } else {
        int in_ch = d->output_components;
        JSAMPARRAY buf = (*d->mem->alloc_sarray)((j_common_ptr)d, JPOOL_IMAGE,
                                                  width * (JDIMENSION)in_ch, 1);
        const unsigned char *first = buf[0] + (size_t)(pl->roi_x - xoff) * in_ch;
        for (uint32_t r = 0; r < pl->roi_h; r++) {
            if (jpeg_read_scanlines(d, buf, 1) != 1) {
                snprintf(dec->msg, sizeof dec->msg, "no rows decoded");
                longjmp(dec->jmp, 1);
            }
            ptrdiff_t step;
            unsigned char *to = row_target(pl, r, dst, pitch, &step);
            store_row(first, pl->roi_w, to, step, cmyk, o->format, pl->channels);
        }
    }
    finish(dec);
    jpeg_destroy_decompress(d);
    return DBR_OK;
}

static int out_bytes(const dbr__jpeg_plan_t *pl, size_t *pitch, size_t *need)
{
    size_t row = (size_t)pl->out_w * (size_t)pl->channels;
    if (*pitch == 0)
        *pitch = row;
    if (*pitch < row)
        return dbr__fail(DBR_E_ARG, "JPEG: pitch %zu is less than a %u-pixel row of %zu "
                         "bytes", *pitch, pl->out_w, row);
    *need = *pitch * (pl->out_h - 1) + row;
    return DBR_OK;
}

static void fill_result(const dbr__jpeg_plan_t *pl, dbr_jpeg_result *out)
{
    memset(out, 0, sizeof *out);
    out->width = pl->out_w;
    out->height = pl->out_h;
    out->channels = (uint32_t)pl->channels;
}

int dbr_jpeg_output_size(const void *src, size_t len, const dbr_jpeg_options *opts,
                         dbr_jpeg_result *out)
{
    static const dbr_jpeg_options defaults;
    dbr__jpeg_plan_t pl;
    if (!src || !out)
        return dbr__fail(DBR_E_ARG, "dbr_jpeg_output_size: src and out must not be NULL");
    int rc = dbr__jpeg_plan(src, len, opts ? opts : &defaults, &pl);
    if (rc == DBR_OK)
        fill_result(&pl, out);
    return rc;
}

int dbr__jpeg_decode_planned(const void *src, size_t len, const dbr_jpeg_options *o,
                             const dbr__jpeg_plan_t *pl, void *dst, size_t pitch,
                             dbr__row_sink sink, void *sink_ctx, uint32_t *warnings)
{
    decoder dec;
    dec.policy = o->lenient;
    dec.rows_done = 0;
    dec.truncated = 0;
    dec.max_scans = o->max_scans > 0 ? o->max_scans : DBR_JPEG_DEFAULT_MAX_SCANS;
    dec.warnings = 0;
    dec.limit_hit = 0;
    dec.msg[0] = '\0';
    int rc = run(&dec, src, len, o, pl, dst, pitch, sink, sink_ctx);
    *warnings = dec.warnings ? DBR_JPEG_WARN_CORRUPT : 0;
    if (rc == DBR_OK && dec.warnings)
        dbr__fail(DBR_OK, "JPEG (%zu bytes): recovered from corrupt data: %s", len, dec.msg);
    return rc;
}

int dbr_jpeg_decode(const void *src, size_t len, const dbr_jpeg_options *opts, void *dst,
                    size_t pitch, size_t cap, dbr_jpeg_result *out)
{
    static const dbr_jpeg_options defaults;
    dbr__jpeg_plan_t pl;
    size_t need = 0;
    if (!src || !out)
        return dbr__fail(DBR_E_ARG, "dbr_jpeg_decode: src and out must not be NULL");
    if (!opts)
        opts = &defaults;
    int rc = dbr__jpeg_plan(src, len, opts, &pl);
    if (rc != DBR_OK)
        return rc;
    fill_result(&pl, out);
    rc = out_bytes(&pl, &pitch, &need);
    if (rc != DBR_OK)
        return rc;
    if (!dst || cap < need)
        return dbr__fail(DBR_E_TOO_SMALL, "decoding a %ux%u JPEG to %u channels needs %zu "
                         "bytes, got %zu", pl.out_w, pl.out_h, out->channels, need, cap);
    return dbr__jpeg_decode_planned(src, len, opts, &pl, dst, pitch, NULL, NULL,
                                    &out->warnings);
}
