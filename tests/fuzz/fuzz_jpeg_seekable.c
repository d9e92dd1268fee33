/* Fuzz target: the seekable rewrite and the restart-marker scanner.
 * The input (after 4 option bytes) is rewritten with dbr_jpeg_make_seekable
 * and also cropped as it is (a mutated DRI or mutated RSTn markers reach
 * the scanner in jpeg_intervals.c).  When the rewrite succeeds, a crop of
 * it that seeks must equal the same crop decoded from the whole scan
 * (strict mode never seeks): a mismatch aborts. */
#include "dbr.h"

#include <stdlib.h>
#include <string.h>

static int crop(const uint8_t *data, size_t size, int policy, const dbr_jpeg_crop *c,
                unsigned char *out, size_t n)
{
    dbr_jpeg_options o;
    memset(&o, 0, sizeof o);
    o.lenient = policy;
    o.max_pixels = 1u << 20;
    o.max_scans = 64;
    dbr_jpeg_result res;
    memset(out, 0, n);
    return dbr_jpeg_decode_crop(data, size, &o, c, 0, out, 0, n, &res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint8_t a = data[0], b = data[1], c = data[2], d = data[3];
    data += 4;
    size -= 4;
    dbr_jpeg_info info;
    if (dbr_jpeg_read_header(data, size, &info) != DBR_OK ||
        (uint64_t)info.width * info.height > (1u << 20))
        return 0;
    /* A box inside the image, chosen by the option bytes. */
    dbr_jpeg_crop cr;
    memset(&cr, 0, sizeof cr);
    cr.mode = DBR_CROP_BOX;
    cr.box_x = (double)(a % info.width);
    cr.box_y = (double)(b % info.height);
    cr.box_w = 1 + (double)(c % (info.width - (uint32_t)cr.box_x));
    cr.box_h = 1 + (double)(d % (info.height - (uint32_t)cr.box_y));
    /* Full scale when the output is the box's size; a small output picks
     * a reduced DCT scale. */
    cr.out_w = d & 1 ? 1 + (uint32_t)cr.box_w / 8 : (uint32_t)cr.box_w;
    cr.out_h = d & 1 ? 1 + (uint32_t)cr.box_h / 8 : (uint32_t)cr.box_h;
    size_t n = (size_t)cr.out_w * cr.out_h * 3;
    unsigned char *one = malloc(n), *two = malloc(n);
    size_t cap = size + size / 8 + 4096, len = 0;
    unsigned char *seek = malloc(cap);
    if (one && two && seek) {
        crop(data, size, DBR_JPEG_RECOVER, &cr, one, n);
        if (dbr_jpeg_make_seekable(data, size, a & 15, seek, cap, &len) == DBR_OK) {
            int r1 = crop(seek, len, DBR_JPEG_RECOVER, &cr, one, n);
            int r2 = crop(seek, len, DBR_JPEG_STRICT, &cr, two, n);
            if (r1 != r2 || (r1 == DBR_OK && memcmp(one, two, n) != 0))
                abort();
        }
    }
    free(one);
    free(two);
    free(seek);
    return 0;
}
