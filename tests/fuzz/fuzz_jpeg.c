/* Fuzz target: the header probe, the decoder (every format, scale, region,
 * orientation, each damage policy) and the fused crop must reject bad
 * input with a status, never crash, overrun or hang.  The first 4 bytes
 * choose the options; the rest is the JPEG. */
#include "dbr.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint8_t a = data[0], b = data[1], c = data[2], d = data[3];
    data += 4;
    size -= 4;
    dbr_jpeg_info info;
    if (dbr_jpeg_read_header(data, size, &info) != DBR_OK)
        return 0;
    dbr_jpeg_options o;
    memset(&o, 0, sizeof o);
    o.format = a & 3;
    o.fast = (a >> 2) & 1;
    o.lenient = (a >> 3) & 1 ? DBR_JPEG_LENIENT : d & 0x80 ? DBR_JPEG_STRICT : DBR_JPEG_RECOVER;
    o.apply_orientation = (a >> 4) & 1;
    o.max_pixels = 1u << 20; /* keep each run small */
    o.max_scans = 64;
    if (b & 1) {
        o.scale_num = (b >> 1) & 15 ? (b >> 1) & 15 : 1;
        o.scale_denom = 8;
    }
    dbr_jpeg_result res;
    if (dbr_jpeg_output_size(data, size, &o, &res) != DBR_OK)
        return 0;
    if (c & 1 && res.width > 1 && res.height > 1) { /* a region inside the output */
        o.roi_x = (c >> 1) % res.width;
        o.roi_y = d % res.height;
        o.roi_w = res.width - o.roi_x;
        o.roi_h = res.height - o.roi_y;
        if (dbr_jpeg_output_size(data, size, &o, &res) != DBR_OK)
            abort();
    }
    size_t pitch = (size_t)res.width * res.channels + (a >> 5);
    size_t cap = pitch * res.height;
    unsigned char *dst = malloc(cap ? cap : 1);
    if (!dst)
        return 0;
    dbr_jpeg_result got;
    if (dbr_jpeg_decode(data, size, &o, dst, pitch, cap, &got) == DBR_OK &&
        (got.width != res.width || got.height != res.height))
        abort();
    free(dst);

    if (b & 0x20) { /* the fused crop as the batch decoder runs it */
        dbr_jpeg_crop crop;
        memset(&crop, 0, sizeof crop);
        crop.mode = 1 + c % 4;
        crop.out_w = 1 + d % 40;
        crop.out_h = 1 + (d >> 2) % 40;
        crop.interp = (b >> 6) & 1;
        crop.flip = (b >> 7) ? DBR_FLIP_RANDOM : DBR_FLIP_NONE;
        crop.seed = a;
        crop.box_w = crop.box_h = 1;
        o.scale_num = o.scale_denom = 0;
        o.roi_x = o.roi_y = o.roi_w = o.roi_h = 0;
        size_t n = (size_t)crop.out_w * crop.out_h * 4;
        unsigned char *out = malloc(n);
        if (out) {
            dbr_jpeg_decode_crop(data, size, &o, &crop, b, out, 0, n, &got);
            free(out);
        }
    }
    return 0;
}
