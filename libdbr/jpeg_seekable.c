/* jpeg_seekable.c - the lossless rewrite that makes a JPEG seekable: the
 * same DCT coefficients and quantisation tables, written as one baseline
 * (sequential Huffman) scan with a restart marker every k MCUs, where k
 * divides the MCUs of a row, so every MCU row and every k-MCU column span
 * starts on a marker (the crop decoder's jpeg_intervals.c uses them).
 *
 * It goes through libjpeg's coefficient API, as jpegtran -restart does:
 * jpeg_read_coefficients -> jpeg_copy_critical_parameters -> restart
 * interval -> jpeg_write_coefficients; nothing is dequantised, so any
 * decoder produces the pixels of the original.  Huffman tables are
 * computed for the image (optimize_coding), which a progressive or
 * arithmetic-coded source needs anyway. */
#include "internal.h"

#include <setjmp.h>
#include <stdio.h> /* jpeglib.h uses FILE */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

typedef struct rewriter {
    struct jpeg_decompress_struct d;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr derr, cerr;
    struct jpeg_destination_mgr dest;
    struct jpeg_progress_mgr progress;
    jmp_buf jmp;
    unsigned char *out; /* our growing destination (libjpeg's own memory
                           destination frees what it hands out on growth) */
    size_t out_cap, out_size;
    int warnings;
    char msg[JMSG_LENGTH_MAX];
} rewriter;

static void on_error(j_common_ptr c)
{
    rewriter *rw = c->client_data;
    (*c->err->format_message)(c, rw->msg);
    longjmp(rw->jmp, 1);
}

/* A rewrite of damaged data would hide the damage behind a clean file:
 * any warning (corrupt or missing entropy data) refuses it. */
static void on_message(j_common_ptr c, int level)
{
    rewriter *rw = c->client_data;
    if (level >= 0)
        return;
    (*c->err->format_message)(c, rw->msg);
    rw->warnings++;
    longjmp(rw->jmp, 1);
}

/* The smallest divisor of mcus_per_row that is at least want (so the
 * markers never cost more than asked; a prime row gets one per row). */
static unsigned interval_for(unsigned mcus_per_row, unsigned want)
{
    if (want == 0)
        want = DBR_JPEG_SEEKABLE_MCUS;
    for (unsigned k = want; k < mcus_per_row; k++)
        if (mcus_per_row % k == 0)
            return k;
    return mcus_per_row;
}

/* JFIF and Adobe markers that libjpeg writes itself from the copied
 * parameters; copying them too would duplicate them. */
static int written_by_libjpeg(const struct jpeg_compress_struct *c, jpeg_saved_marker_ptr m)
{
    if (m->marker == JPEG_APP0 && c->write_JFIF_header && m->data_length >= 5 &&
        memcmp(m->data, "JFIF\0", 5) == 0)
        return 1;
    return m->marker == JPEG_APP0 + 14 && c->write_Adobe_marker && m->data_length >= 5 &&
           memcmp(m->data, "Adobe", 5) == 0;
}

static void dest_init(j_compress_ptr c)
{
    rewriter *rw = c->client_data;
    rw->dest.next_output_byte = rw->out;
    rw->dest.free_in_buffer = rw->out_cap;
}

static boolean dest_grow(j_compress_ptr c)
{
    rewriter *rw = c->client_data;
    size_t used = rw->out_cap; /* libjpeg calls this only when the buffer is full */
    unsigned char *bigger = realloc(rw->out, rw->out_cap * 2);
    if (!bigger)
        ERREXIT1(c, JERR_OUT_OF_MEMORY, 0);
    rw->out = bigger;
    rw->out_cap *= 2;
    rw->dest.next_output_byte = bigger + used;
    rw->dest.free_in_buffer = rw->out_cap - used;
    return TRUE;
}

static void dest_term(j_compress_ptr c)
{
    rewriter *rw = c->client_data;
    rw->out_size = rw->out_cap - rw->dest.free_in_buffer;
}

/* The decoder's cap on progressive scans (a CPU bomb otherwise). */
static void on_progress(j_common_ptr c)
{
    rewriter *rw = c->client_data;
    if (c->is_decompressor && rw->d.input_scan_number > DBR_JPEG_DEFAULT_MAX_SCANS) {
        snprintf(rw->msg, sizeof rw->msg, "more than %d progressive scans",
                 DBR_JPEG_DEFAULT_MAX_SCANS);
        longjmp(rw->jmp, 1);
    }
}

static int run(rewriter *rw, const unsigned char *src, size_t len, unsigned want)
{
    struct jpeg_decompress_struct *d = &rw->d;
    struct jpeg_compress_struct *c = &rw->c;
    d->err = jpeg_std_error(&rw->derr);
    c->err = jpeg_std_error(&rw->cerr);
    rw->derr.error_exit = rw->cerr.error_exit = on_error;
    rw->derr.emit_message = rw->cerr.emit_message = on_message;
    d->client_data = c->client_data = rw;
    if (setjmp(rw->jmp)) {
        jpeg_destroy_compress(c);
        jpeg_destroy_decompress(d);
        int nomem = rw->derr.msg_code == JERR_OUT_OF_MEMORY ||
                    rw->cerr.msg_code == JERR_OUT_OF_MEMORY;
        return dbr__fail(nomem ? DBR_E_NOMEM : DBR_E_CORRUPT,
                         "JPEG (%zu bytes) cannot be made seekable: %s%s", len, rw->msg,
                         rw->warnings ? " (a lossless rewrite refuses damaged data)" : "");
    }
    jpeg_create_decompress(d);
    jpeg_create_compress(c);
    jpeg_mem_src(d, src, (unsigned long)len);
    jpeg_save_markers(d, JPEG_COM, 0xFFFF);
    for (int i = 0; i < 16; i++)
        jpeg_save_markers(d, JPEG_APP0 + i, 0xFFFF);
    jpeg_read_header(d, TRUE);
    rw->progress.progress_monitor = on_progress;
    d->progress = &rw->progress;
    jvirt_barray_ptr *coefs = jpeg_read_coefficients(d);
    jpeg_copy_critical_parameters(d, c);
    c->optimize_coding = TRUE;
    c->arith_code = FALSE;
    c->scan_info = NULL; /* one sequential scan */
    c->num_scans = 0;
    /* MCUs per row of the interleaved scan (a gray image's MCU is one
     * block, so its row counts blocks). */
    unsigned hmax = 1; /* c->max_h_samp_factor is set only once writing starts */
    for (int i = 0; i < c->num_components; i++)
        if ((unsigned)c->comp_info[i].h_samp_factor > hmax)
            hmax = (unsigned)c->comp_info[i].h_samp_factor;
    unsigned mcu_w = c->num_components == 1 ? DCTSIZE : hmax * DCTSIZE;
    unsigned per_row = (c->image_width + mcu_w - 1) / mcu_w;
    c->restart_interval = interval_for(per_row, want);
    c->restart_in_rows = 0;
    rw->out_cap = len + len / 8 + 4096; /* markers add a few percent at most */
    rw->out = malloc(rw->out_cap);
    if (!rw->out)
        ERREXIT1(c, JERR_OUT_OF_MEMORY, 0);
    rw->dest.init_destination = dest_init;
    rw->dest.empty_output_buffer = dest_grow;
    rw->dest.term_destination = dest_term;
    c->dest = &rw->dest;
    jpeg_write_coefficients(c, coefs);
    for (jpeg_saved_marker_ptr m = d->marker_list; m; m = m->next)
        if (!written_by_libjpeg(c, m))
            jpeg_write_marker(c, m->marker, m->data, m->data_length);
    jpeg_finish_compress(c);
    jpeg_finish_decompress(d);
    jpeg_destroy_compress(c);
    jpeg_destroy_decompress(d);
    return DBR_OK;
}

int dbr_jpeg_make_seekable(const void *src, size_t len, uint32_t restart_mcus, void *dst,
                           size_t cap, size_t *out_len)
{
    if (!src || !out_len)
        return dbr__fail(DBR_E_ARG, "dbr_jpeg_make_seekable: src and out_len must not be "
                         "NULL");
    *out_len = 0;
    dbr_jpeg_info info;
    int rc = dbr_jpeg_read_header(src, len, &info); /* clear errors before libjpeg's */
    if (rc != DBR_OK)
        return rc;
    if ((uint64_t)info.width * info.height > DBR_JPEG_DEFAULT_MAX_PIXELS)
        return dbr__fail(DBR_E_LIMIT, "JPEG header claims %ux%u pixels, above the limit of "
                         "%llu", info.width, info.height,
                         (unsigned long long)DBR_JPEG_DEFAULT_MAX_PIXELS);
    rewriter *rw = calloc(1, sizeof *rw); /* two codecs: too big for a worker's stack */
    if (!rw)
        return dbr__fail(DBR_E_NOMEM, "dbr_jpeg_make_seekable: out of memory");
    rc = run(rw, src, len, restart_mcus);
    if (rc == DBR_OK) {
        *out_len = rw->out_size;
        if (!dst || cap < rw->out_size)
            rc = dbr__fail(DBR_E_TOO_SMALL, "the seekable JPEG is %zu bytes, the buffer %zu",
                           rw->out_size, cap);
        else
            memcpy(dst, rw->out, rw->out_size);
    }
    free(rw->out);
    free(rw);
    return rc;
}
