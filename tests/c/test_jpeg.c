/* test_jpeg.c - the JPEG C API: header probe, sizes and buffer contracts,
 * pitch, YCCK (which Pillow cannot write), EXIF parsing in both byte
 * orders, crops, batches, archive entries and truncation.  Fixtures are
 * encoded here with libjpeg. */
#include "dbr.h"
#include "internal.h"
#include "check.h"
#include "tar_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>

/* A smooth test pattern of w x h x comps. */
static unsigned char *pattern(int w, int h, int comps)
{
    unsigned char *p = malloc((size_t)w * h * comps);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < comps; c++)
                p[((size_t)y * w + x) * comps + c] = (unsigned char)((x * (c + 1) + y * 2) % 200 + 20);
    return p;
}

/* Encodes pixels to a JPEG in memory (free with free()).  space: the
 * input space; jpeg_space: what to store (e.g. YCCK from CMYK). */
static unsigned char *encode(const unsigned char *px, int w, int h, J_COLOR_SPACE space,
                             int comps, J_COLOR_SPACE jpeg_space, int progressive,
                             const unsigned char *app1, unsigned app1_len, unsigned long *len)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    unsigned char *out = NULL;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &out, len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = space;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, jpeg_space);
    jpeg_set_quality(&c, 100, TRUE);
    for (int i = 0; i < c.num_components; i++)
        c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
    if (progressive)
        jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    if (app1)
        jpeg_write_marker(&c, JPEG_APP0 + 1, app1, app1_len);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * w * comps);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return out;
}

static void test_header_and_sizes(void)
{
    unsigned char *px = pattern(37, 21, 3);
    unsigned long len;
    unsigned char *jpg = encode(px, 37, 21, JCS_RGB, 3, JCS_YCbCr, 1, NULL, 0, &len);
    dbr_jpeg_info info;
    CHECK_RC(dbr_jpeg_read_header(jpg, len, &info), DBR_OK);
    CHECK(info.width == 37 && info.height == 21 && info.components == 3);
    CHECK(info.colorspace == DBR_JPEG_CS_YCBCR && info.progressive == 1);
    CHECK(info.orientation == 1 && info.arithmetic == 0);

    dbr_jpeg_result res;
    dbr_jpeg_options o;
    memset(&o, 0, sizeof o);
    o.format = DBR_PIXEL_RGBA;
    o.scale_num = 1;
    o.scale_denom = 4;
    CHECK_RC(dbr_jpeg_output_size(jpg, len, &o, &res), DBR_OK);
    CHECK(res.width == 10 && res.height == 6 && res.channels == 4);

    /* Too small: the need comes back, nothing is written. */
    unsigned char small[8];
    CHECK_RC(dbr_jpeg_decode(jpg, len, NULL, small, 0, sizeof small, &res), DBR_E_TOO_SMALL);
    CHECK(res.width == 37 && res.height == 21 && res.channels == 3);
    CHECK_RC(dbr_jpeg_decode(jpg, len, NULL, NULL, 0, 0, &res), DBR_E_TOO_SMALL);
    CHECK(strstr(dbr_last_error(), "needs 2331 bytes") != NULL);

    /* A pitch wider than the row leaves the gap alone. */
    size_t pitch = 37 * 3 + 5;
    unsigned char *dst = malloc(pitch * 21);
    unsigned char *tight = malloc(37 * 3 * 21);
    memset(dst, 0xAB, pitch * 21);
    CHECK_RC(dbr_jpeg_decode(jpg, len, NULL, dst, pitch, pitch * 20 + 37 * 3, &res), DBR_OK);
    CHECK_RC(dbr_jpeg_decode(jpg, len, NULL, tight, 0, 37 * 3 * 21, &res), DBR_OK);
    int same = 1, gap = 1;
    for (int y = 0; y < 21; y++) {
        same &= memcmp(dst + y * pitch, tight + y * 37 * 3, 37 * 3) == 0;
        if (y < 20)
            for (int k = 0; k < 5; k++)
                gap &= dst[y * pitch + 37 * 3 + k] == 0xAB;
    }
    CHECK(same && gap);
    /* The decode is close to the pattern (quality 100, 4:4:4). */
    int maxdiff = 0;
    for (size_t i = 0; i < 37 * 3 * 21; i++) {
        int d = abs((int)tight[i] - (int)px[i]);
        maxdiff = d > maxdiff ? d : maxdiff;
    }
    CHECK(maxdiff <= 6);
    CHECK_RC(dbr_jpeg_decode(jpg, len, NULL, dst, 10, pitch * 21, &res), DBR_E_ARG);

    /* NULLs and bad options. */
    CHECK_RC(dbr_jpeg_read_header(NULL, 0, &info), DBR_E_ARG);
    CHECK_RC(dbr_jpeg_decode(jpg, len, NULL, dst, 0, pitch * 21, NULL), DBR_E_ARG);
    o.format = 9;
    CHECK_RC(dbr_jpeg_output_size(jpg, len, &o, &res), DBR_E_ARG);
    o.format = 0;
    o.scale_num = 3;
    o.scale_denom = 1;
    CHECK_RC(dbr_jpeg_output_size(jpg, len, &o, &res), DBR_E_ARG);
    o.scale_num = o.scale_denom = 0;
    o.roi_x = 30;
    o.roi_w = 8;
    o.roi_h = 1;
    CHECK_RC(dbr_jpeg_output_size(jpg, len, &o, &res), DBR_E_ARG);

    /* Truncation: strict fails, lenient recovers with a flag. */
    CHECK_RC(dbr_jpeg_decode(jpg, len - 20, NULL, tight, 0, 37 * 3 * 21, &res), DBR_E_CORRUPT);
    o.roi_x = o.roi_w = o.roi_h = 0;
    o.lenient = 1;
    CHECK_RC(dbr_jpeg_decode(jpg, len - 20, &o, tight, 0, 37 * 3 * 21, &res), DBR_OK);
    CHECK(res.warnings == DBR_JPEG_WARN_CORRUPT);
    free(dst);
    free(tight);
    free(jpg);
    free(px);
}

static void test_ycck_equals_cmyk(void)
{
    unsigned char *px = pattern(24, 16, 4);
    unsigned long l1, l2;
    unsigned char *cmyk = encode(px, 24, 16, JCS_CMYK, 4, JCS_CMYK, 0, NULL, 0, &l1);
    unsigned char *ycck = encode(px, 24, 16, JCS_CMYK, 4, JCS_YCCK, 0, NULL, 0, &l2);
    dbr_jpeg_info a, b;
    CHECK_RC(dbr_jpeg_read_header(cmyk, l1, &a), DBR_OK);
    CHECK_RC(dbr_jpeg_read_header(ycck, l2, &b), DBR_OK);
    CHECK(a.colorspace == DBR_JPEG_CS_CMYK && b.colorspace == DBR_JPEG_CS_YCCK);
    unsigned char o1[24 * 16 * 3], o2[24 * 16 * 3];
    dbr_jpeg_result res;
    CHECK_RC(dbr_jpeg_decode(cmyk, l1, NULL, o1, 0, sizeof o1, &res), DBR_OK);
    CHECK_RC(dbr_jpeg_decode(ycck, l2, NULL, o2, 0, sizeof o2, &res), DBR_OK);
    int maxdiff = 0;
    for (size_t i = 0; i < sizeof o1; i++) {
        int d = abs((int)o1[i] - (int)o2[i]);
        maxdiff = d > maxdiff ? d : maxdiff;
    }
    CHECK(maxdiff <= 4); /* YCC<->RGB rounding only; the CMYK->RGB formula
                            itself is checked against Pillow in Python */
    free(cmyk);
    free(ycck);
    free(px);
}

static void test_exif(void)
{
    /* APP1 "Exif\0\0" + TIFF header + IFD0 with one Orientation entry. */
    static const unsigned char be[] = {'E', 'x', 'i', 'f', 0, 0, 'M', 'M', 0, 42, 0, 0, 0, 8,
                                       0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0,
                                       0, 0, 0, 0};
    static const unsigned char le[] = {'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 8, 0, 0, 0,
                                       1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 8, 0, 0, 0,
                                       0, 0, 0, 0};
    static const unsigned char bad[] = {'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 0xF0, 0xFF,
                                        0, 0, 1, 0};
    unsigned char *px = pattern(20, 12, 3);
    unsigned long len;
    dbr_jpeg_info info;
    dbr_jpeg_result res;
    dbr_jpeg_options o;
    memset(&o, 0, sizeof o);
    o.apply_orientation = 1;

    unsigned char *jpg = encode(px, 20, 12, JCS_RGB, 3, JCS_YCbCr, 0, be, sizeof be, &len);
    CHECK_RC(dbr_jpeg_read_header(jpg, len, &info), DBR_OK);
    CHECK(info.orientation == 6);
    CHECK_RC(dbr_jpeg_output_size(jpg, len, &o, &res), DBR_OK);
    CHECK(res.width == 12 && res.height == 20);
    /* Orientation 6 shows stored pixel (x, y) at (H-1-y, x). */
    unsigned char stored[20 * 12 * 3], shown[12 * 20 * 3];
    CHECK_RC(dbr_jpeg_decode(jpg, len, NULL, stored, 0, sizeof stored, &res), DBR_OK);
    CHECK_RC(dbr_jpeg_decode(jpg, len, &o, shown, 0, sizeof shown, &res), DBR_OK);
    int ok = 1;
    for (int y = 0; y < 12; y++)
        for (int x = 0; x < 20; x++)
            ok &= memcmp(stored + (y * 20 + x) * 3, shown + (x * 12 + (11 - y)) * 3, 3) == 0;
    CHECK(ok);
    free(jpg);

    jpg = encode(px, 20, 12, JCS_RGB, 3, JCS_YCbCr, 0, le, sizeof le, &len);
    CHECK_RC(dbr_jpeg_read_header(jpg, len, &info), DBR_OK);
    CHECK(info.orientation == 8);
    free(jpg);

    jpg = encode(px, 20, 12, JCS_RGB, 3, JCS_YCbCr, 0, bad, sizeof bad, &len);
    CHECK_RC(dbr_jpeg_read_header(jpg, len, &info), DBR_OK);
    CHECK(info.orientation == 1); /* a broken EXIF block is ignored */
    free(jpg);
    free(px);
}

static void test_crops_and_batches(void)
{
    unsigned char *px = pattern(64, 48, 3);
    unsigned long len;
    unsigned char *jpg = encode(px, 64, 48, JCS_RGB, 3, JCS_YCbCr, 0, NULL, 0, &len);
    dbr_jpeg_crop crop;
    memset(&crop, 0, sizeof crop);
    crop.mode = DBR_CROP_RANDOM;
    crop.out_w = 16;
    crop.out_h = 16;
    crop.flip = DBR_FLIP_RANDOM;
    crop.seed = 99;
    double box1[4], box2[4];
    int f1, f2, differ = 0;
    for (uint64_t i = 0; i < 50; i++) {
        CHECK_RC(dbr_jpeg_crop_box(&crop, 64, 48, i, box1, &f1), DBR_OK);
        CHECK_RC(dbr_jpeg_crop_box(&crop, 64, 48, i, box2, &f2), DBR_OK);
        CHECK(memcmp(box1, box2, sizeof box1) == 0 && f1 == f2);
        CHECK(box1[0] >= 0 && box1[1] >= 0 && box1[0] + box1[2] <= 64 && box1[1] + box1[3] <= 48);
        CHECK(box1[2] * box1[3] >= 0.08 * 64 * 48 * 0.9);
        CHECK_RC(dbr_jpeg_crop_box(&crop, 64, 48, i + 1, box2, &f2), DBR_OK);
        differ += memcmp(box1, box2, sizeof box1) != 0;
    }
    CHECK(differ > 40);

    /* A batch of three: the middle one is not a JPEG. */
    const void *srcs[3] = {jpg, "garbage!", jpg};
    size_t lens[3] = {len, 8, len};
    unsigned char out[3 * 16 * 16 * 3];
    int statuses[3];
    dbr_jpeg_result results[3];
    char messages[3 * 128];
    memset(out, 0x55, sizeof out);
    CHECK_RC(dbr_jpeg_decode_batch(3, srcs, lens, NULL, &crop, 0, out, sizeof out, 2, statuses,
                                   results, messages, 128), DBR_E_CORRUPT);
    CHECK(strstr(dbr_last_error(), "batch item 1") != NULL);
    CHECK(statuses[0] == DBR_OK && statuses[1] == DBR_E_CORRUPT && statuses[2] == DBR_OK);
    CHECK(messages[0] == '\0' && strstr(messages + 128, "SOI") != NULL);
    CHECK(results[0].width == 16 && results[2].channels == 3);
    int zero = 1;
    for (size_t i = 16 * 16 * 3; i < 2 * 16 * 16 * 3; i++)
        zero &= out[i] == 0;
    CHECK(zero);
    /* The same item index gives the same crop as a single call. */
    unsigned char one[16 * 16 * 3];
    dbr_jpeg_result r;
    CHECK_RC(dbr_jpeg_decode_crop(jpg, len, NULL, &crop, 2, one, 0, sizeof one, &r), DBR_OK);
    CHECK(memcmp(one, out + 2 * sizeof one, sizeof one) == 0);
    CHECK_RC(dbr_jpeg_decode_batch(3, srcs, lens, NULL, &crop, 0, out, 10, 2, NULL, NULL, NULL,
                                   0), DBR_E_TOO_SMALL);
    CHECK_RC(dbr_jpeg_decode_batch(0, NULL, NULL, NULL, &crop, 0, NULL, 0, 2, NULL, NULL, NULL,
                                   0), DBR_OK);
    CHECK_RC(dbr_jpeg_decode_files(NULL, 1, (const char *const[]){"/nonexistent/x.jpg"}, NULL,
                                   &crop, 0, out, sizeof out, 1, statuses, NULL, NULL, 0),
             DBR_E_NOT_FOUND);
    CHECK(strstr(dbr_last_error(), "/nonexistent/x.jpg") != NULL);
    crop.mode = 17;
    CHECK_RC(dbr_jpeg_decode_crop(jpg, len, NULL, &crop, 0, one, 0, sizeof one, &r), DBR_E_ARG);

    /* A header claiming 60000 x 60000 is refused by the limit. */
    unsigned char *bomb = malloc(len);
    memcpy(bomb, jpg, len);
    for (unsigned long i = 0; i + 9 < len; i++)
        if (bomb[i] == 0xFF && bomb[i + 1] == 0xC0) {
            bomb[i + 5] = bomb[i + 7] = 0xEA;
            bomb[i + 6] = bomb[i + 8] = 0x60;
            break;
        }
    CHECK_RC(dbr_jpeg_decode(bomb, len, NULL, one, 0, sizeof one, &r), DBR_E_LIMIT);
    free(bomb);
    free(jpg);
    free(px);
}

/* The SIMD resize passes and the scalar ones give the same bytes, for
 * every channel count, filter, flip and scale (shrink and enlarge), with
 * fractional boxes touching the image edges. */
static void test_resize_simd_equals_scalar(void)
{
    enum { SW = 97, SH = 61 };
    static unsigned char src[SW * SH * 4], a[130 * 90 * 4], b[130 * 90 * 4];
    uint32_t seed = 12345;
    for (size_t i = 0; i < sizeof src; i++) {
        seed = seed * 1103515245u + 12345u;
        src[i] = (unsigned char)(seed >> 23);
    }
    static const double boxes[][4] = {{0, 0, SW, SH}, {3.5, 2.25, 60.5, 40}, {90, 50, 7, 11},
                                      {0.75, 10, 96.25, 51}};
    static const uint32_t sizes[][2] = {{13, 9}, {32, 20}, {130, 90}, {61, 33}, {1, 1}};
    for (int ch = 1; ch <= 4; ch++)
        for (size_t bi = 0; bi < sizeof boxes / sizeof *boxes; bi++)
            for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
                for (int mode = 0; mode < 4; mode++) {
                    const double *bx = boxes[bi];
                    uint32_t dw = sizes[si][0], dh = sizes[si][1];
                    int interp = mode & 1 ? DBR_INTERP_AREA : DBR_INTERP_BILINEAR;
                    size_t n = (size_t)dw * dh * ch;
                    memset(b, 2, n);
                    int was = dbr__resize_set_simd(0);
                    CHECK_RC(dbr__resize(src, SW, SH, (size_t)SW * ch, bx[0], bx[1], bx[2],
                                         bx[3], b, dw, dh, (size_t)dw * ch, ch, interp,
                                         mode >> 1), DBR_OK);
                    /* Each SIMD level (SSE2/SSSE3, AVX2), where the CPU has it. */
                    for (int level = 1; level <= 2; level++) {
                        memset(a, 1, n);
                        dbr__resize_set_simd(level);
                        CHECK_RC(dbr__resize(src, SW, SH, (size_t)SW * ch, bx[0], bx[1],
                                             bx[2], bx[3], a, dw, dh, (size_t)dw * ch, ch,
                                             interp, mode >> 1), DBR_OK);
                        CHECK(memcmp(a, b, n) == 0);
                    }
                    dbr__resize_set_simd(was);
                }
}

/* Archive entries decode like the same bytes passed in memory; a truncated
 * entry is refused whatever its crop (the rows below the crop are checked
 * too), an index past the end fails alone, and messages name the entry. */
static void test_entries_and_truncation(void)
{
    unsigned char *px = pattern(96, 80, 3);
    unsigned long len;
    unsigned char *jpg = encode(px, 96, 80, JCS_RGB, 3, JCS_YCbCr, 0, NULL, 0, &len);
    char path[] = "/tmp/dbr_test_jpeg_entries_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    dbr_zip_writer *w;
    CHECK_RC(dbr_zip_writer_open(path, &w), DBR_OK);
    CHECK_RC(dbr_zip_writer_add(w, "a.jpg", jpg, len, DBR_ZIP_STORED, 0, 0), DBR_OK);
    CHECK_RC(dbr_zip_writer_add(w, "cut.jpg", jpg, len / 2, DBR_ZIP_DEFLATE, 0, 0), DBR_OK);
    CHECK_RC(dbr_zip_writer_add(w, "b.jpg", jpg, len, DBR_ZIP_DEFLATE, 6, 0), DBR_OK);
    CHECK_RC(dbr_zip_writer_finish(w), DBR_OK);
    dbr_zip_writer_free(w);
    dbr_zip *zip;
    CHECK_RC(dbr_zip_open(path, NULL, &zip), DBR_OK);

    dbr_jpeg_crop crop;
    memset(&crop, 0, sizeof crop);
    crop.mode = DBR_CROP_BOX; /* the top-left corner: stops far above the cut */
    crop.out_w = crop.out_h = 8;
    crop.box_w = crop.box_h = 16;
    enum { ITEM = 8 * 8 * 3 };
    unsigned char out[4 * ITEM], ref[ITEM];
    int statuses[4];
    char messages[4 * 256];
    dbr_jpeg_result r;
    const size_t indices[4] = {0, 1, 2, 7};
    CHECK_RC(dbr_jpeg_decode_entries(zip, 4, indices, NULL, &crop, 0, out, sizeof out, 2,
                                     statuses, NULL, messages, 256), DBR_E_CORRUPT);
    CHECK(statuses[0] == DBR_OK && statuses[1] == DBR_E_CORRUPT && statuses[2] == DBR_OK &&
          statuses[3] == DBR_E_ARG);
    CHECK(strstr(messages + 256, "cut.jpg") != NULL && strstr(messages + 256, "truncated"));
    CHECK(strstr(messages + 3 * 256, "no entry 7") != NULL && messages[0] == '\0');
    CHECK(strstr(dbr_last_error(), "batch item 1") != NULL);
    CHECK_RC(dbr_jpeg_decode_crop(jpg, len, NULL, &crop, 0, ref, 0, sizeof ref, &r), DBR_OK);
    CHECK(memcmp(out, ref, ITEM) == 0 && memcmp(out + 2 * ITEM, ref, ITEM) == 0);
    /* The same cut bytes in memory: refused by crops and whole decodes alike,
     * accepted by lenient mode, which fills the missing rows. */
    CHECK_RC(dbr_jpeg_decode_crop(jpg, len / 2, NULL, &crop, 0, ref, 0, sizeof ref, &r),
             DBR_E_CORRUPT);
    dbr_jpeg_options o;
    memset(&o, 0, sizeof o);
    o.lenient = DBR_JPEG_LENIENT;
    CHECK_RC(dbr_jpeg_decode_crop(jpg, len / 2, &o, &crop, 0, ref, 0, sizeof ref, &r), DBR_OK);
    o.lenient = DBR_JPEG_STRICT;
    CHECK_RC(dbr_jpeg_decode_crop(jpg, len / 2, &o, &crop, 0, ref, 0, sizeof ref, &r),
             DBR_E_CORRUPT);
    CHECK_RC(dbr_jpeg_decode_crop(jpg, len, &o, &crop, 0, ref, 0, sizeof ref, &r), DBR_OK);
    o.lenient = 3;
    CHECK_RC(dbr_jpeg_decode_crop(jpg, len, &o, &crop, 0, ref, 0, sizeof ref, &r), DBR_E_ARG);
    CHECK_RC(dbr_jpeg_decode_entries(NULL, 1, indices, NULL, &crop, 0, out, sizeof out, 1, NULL,
                                     NULL, NULL, 0), DBR_E_ARG);
    CHECK_RC(dbr_jpeg_decode_entries(zip, 0, NULL, NULL, &crop, 0, NULL, 0, 1, NULL, NULL, NULL,
                                     0), DBR_OK);
    dbr_zip_close(zip);
    unlink(path);
    free(jpg);
    free(px);
}

/* Members of a tar decoded in place: the same pixels as the bytes, from
 * the mapping and with pread; a member that is not a JPEG, a directory and
 * an index past the end fail alone, named by tar and member. */
static void test_tar_members(void)
{
    int w = 96, h = 64;
    unsigned char *px = pattern(w, h, 3);
    unsigned long len;
    unsigned char *jpg = encode(px, w, h, JCS_RGB, 3, JCS_YCbCr, 0, NULL, 0, &len);
    tarbuf tb = {0};
    member(&tb, "000.jpg", jpg, len, 1);
    member(&tb, "000.cls", "4", 1, 1);
    header(&tb, "folder", NULL, '5', 0, 1);
    member(&tb, "001.jpg", jpg, len, 2);
    finish(&tb);
    char path[] = "/tmp/dbr_test_jpeg_tar_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, tb.b, tb.len) == (ssize_t)tb.len);
    close(fd);
    dbr_jpeg_crop crop;
    memset(&crop, 0, sizeof crop);
    crop.mode = DBR_CROP_RANDOM;
    crop.out_w = crop.out_h = 32;
    crop.flip = DBR_FLIP_RANDOM;
    crop.seed = 5;
    enum { ITEM = 32 * 32 * 3 };
    unsigned char out[5 * ITEM], ref[2 * ITEM];
    const void *srcs[2] = {jpg, jpg};
    size_t lens[2] = {(size_t)len, (size_t)len};
    CHECK_RC(dbr_jpeg_decode_batch(2, srcs, lens, NULL, &crop, 0, ref, sizeof ref, 1, NULL,
                                   NULL, NULL, 0), DBR_OK);
    for (int use_pread = 0; use_pread < 2; use_pread++) {
        dbr_tar_options opts;
        dbr_tar_options_init(&opts);
        opts.use_pread = use_pread;
        dbr_tar *tar = NULL;
        CHECK_RC(dbr_tar_open(path, &opts, &tar), DBR_OK);
        const size_t indices[5] = {0, 3, 1, 2, 9};
        int statuses[5];
        char messages[5 * 256];
        CHECK_RC(dbr_jpeg_decode_tar(tar, 5, indices, NULL, &crop, 0, out, sizeof out, 2,
                                     statuses, NULL, messages, 256), DBR_E_CORRUPT);
        CHECK(statuses[0] == DBR_OK && statuses[1] == DBR_OK && statuses[2] == DBR_E_CORRUPT &&
              statuses[3] == DBR_E_IS_DIR && statuses[4] == DBR_E_ARG);
        CHECK(memcmp(out, ref, 2 * ITEM) == 0);
        CHECK(strstr(messages + 2 * 256, "000.cls") && strstr(messages + 2 * 256, path));
        CHECK(strstr(messages + 3 * 256, "folder") && strstr(messages + 4 * 256, "no member 9"));
        CHECK(messages[0] == '\0');
        dbr_tar_close(tar);
    }
    CHECK_RC(dbr_jpeg_decode_tar(NULL, 1, NULL, NULL, &crop, 0, out, sizeof out, 1, NULL,
                                 NULL, NULL, 0), DBR_E_ARG);
    unlink(path);
    free(tb.b);
    free(jpg);
    free(px);
}

/* The seekable rewrite in the colour spaces Python cannot write (YCCK,
 * stored RGB), its buffer contract, and crops that seek in it. */
static void test_seekable(void)
{
    static const J_COLOR_SPACE in[] = {JCS_CMYK, JCS_CMYK, JCS_RGB, JCS_RGB};
    static const J_COLOR_SPACE stored[] = {JCS_CMYK, JCS_YCCK, JCS_RGB, JCS_YCbCr};
    static const int comps[] = {4, 4, 3, 3};
    for (int t = 0; t < 4; t++) {
        int w = 95, h = 61; /* 12 MCUs per row: intervals of 2 */
        unsigned char *px = pattern(w, h, comps[t]);
        unsigned long len;
        unsigned char *jpg = encode(px, w, h, in[t], comps[t], stored[t], t == 3, NULL, 0, &len);
        size_t need = 0;
        CHECK_RC(dbr_jpeg_make_seekable(jpg, len, 2, NULL, 0, &need), DBR_E_TOO_SMALL);
        CHECK(need > 0);
        unsigned char *seek = malloc(need);
        size_t got = 0;
        CHECK_RC(dbr_jpeg_make_seekable(jpg, len, 2, seek, need, &got), DBR_OK);
        CHECK(got == need);
        dbr_jpeg_info a, b;
        CHECK_RC(dbr_jpeg_read_header(jpg, len, &a), DBR_OK);
        CHECK_RC(dbr_jpeg_read_header(seek, got, &b), DBR_OK);
        CHECK(a.colorspace == b.colorspace && !b.progressive);
        size_t n = (size_t)w * h * 3;
        unsigned char *o1 = malloc(n), *o2 = malloc(n), *c1 = malloc(n);
        dbr_jpeg_result res;
        CHECK_RC(dbr_jpeg_decode(jpg, len, NULL, o1, 0, n, &res), DBR_OK);
        CHECK_RC(dbr_jpeg_decode(seek, got, NULL, o2, 0, n, &res), DBR_OK);
        CHECK(memcmp(o1, o2, n) == 0);
        /* Box crops at full scale copy the whole decode exactly. */
        dbr_jpeg_crop crop;
        memset(&crop, 0, sizeof crop);
        crop.mode = DBR_CROP_BOX;
        static const int boxes[][4] = {{40, 30, 20, 17}, {0, 0, 9, 9}, {80, 50, 15, 11},
                                       {17, 0, 40, 61}};
        for (int i = 0; i < 4; i++) {
            crop.box_x = boxes[i][0];
            crop.box_y = boxes[i][1];
            crop.out_w = (uint32_t)(crop.box_w = boxes[i][2]);
            crop.out_h = (uint32_t)(crop.box_h = boxes[i][3]);
            CHECK_RC(dbr_jpeg_decode_crop(seek, got, NULL, &crop, 0, c1, 0, n, &res), DBR_OK);
            int same = 1;
            for (int y = 0; y < boxes[i][3]; y++)
                same &= memcmp(c1 + (size_t)y * boxes[i][2] * 3,
                               o1 + ((size_t)(boxes[i][1] + y) * w + boxes[i][0]) * 3,
                               (size_t)boxes[i][2] * 3) == 0;
            CHECK(same);
        }
        free(o1);
        free(o2);
        free(c1);
        free(seek);
        free(jpg);
        free(px);
    }
    size_t got = 1;
    CHECK_RC(dbr_jpeg_make_seekable(NULL, 10, 0, NULL, 0, &got), DBR_E_ARG);
    CHECK_RC(dbr_jpeg_make_seekable("\xff\xd8\xff\xd9", 4, 0, NULL, 0, &got), DBR_E_CORRUPT);
    CHECK(got == 0);
}

int main(void)
{
    test_seekable();
    test_tar_members();
    test_resize_simd_equals_scalar();
    test_header_and_sizes();
    test_ycck_equals_cmyk();
    test_exif();
    test_crops_and_batches();
    test_entries_and_truncation();
    return check_report("test_jpeg");
}
