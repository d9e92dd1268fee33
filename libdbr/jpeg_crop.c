/* jpeg_crop.c - the fused training crop: choose a box, decode only the
 * blocks under it at the smallest DCT scale that still covers the target,
 * then resize to the target size, optionally flipped.
 *
 * The random box follows torchvision's RandomResizedCrop (area fraction
 * and log-uniform aspect ratio, 10 attempts, then a centre crop clamped to
 * the ratio range), drawn from splitmix64 seeded by dbr_seed_derive(seed,
 * {index}): the same crop on every machine, thread count and batch split. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t next64(rng *r)
{
    r->s += 0x9E3779B97F4A7C15ULL;
    return mix64(r->s);
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform(rng *r) { return (double)(next64(r) >> 11) * (1.0 / 9007199254740992.0); }

/* Uniform integer in [0, n]. */
static uint32_t upto(rng *r, uint32_t n)
{
    uint64_t v = (uint64_t)(uniform(r) * ((double)n + 1.0));
    return v > n ? n : (uint32_t)v;
}

static void random_box(const dbr_jpeg_crop *c, rng *r, uint32_t W, uint32_t H, double box[4])
{
    double smin = c->scale_min > 0 ? c->scale_min : 0.08;
    double smax = c->scale_max > 0 ? c->scale_max : 1.0;
    double rmin = c->ratio_min > 0 ? c->ratio_min : 3.0 / 4.0;
    double rmax = c->ratio_max > 0 ? c->ratio_max : 4.0 / 3.0;
    double area = (double)W * H;
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * (smin + (smax - smin) * uniform(r));
        double aspect = exp(log(rmin) + (log(rmax) - log(rmin)) * uniform(r));
        double w = round(sqrt(target * aspect)), h = round(sqrt(target / aspect));
        if (w > 0 && h > 0 && w <= W && h <= H) {
            uint32_t y = upto(r, H - (uint32_t)h), x = upto(r, W - (uint32_t)w);
            box[0] = x;
            box[1] = y;
            box[2] = w;
            box[3] = h;
            return;
        }
    }
    double w = W, h = H, in_ratio = (double)W / H;
    if (in_ratio < rmin)
        h = round(w / rmin);
    else if (in_ratio > rmax)
        w = round(h * rmax);
    if (w < 1)
        w = 1;
    if (h < 1)
        h = 1;
    box[0] = floor((W - w) / 2);
    box[1] = floor((H - h) / 2);
    box[2] = w;
    box[3] = h;
}

int dbr__jpeg_check_crop(const dbr_jpeg_crop *c)
{
    if (!c)
        return dbr__fail(DBR_E_ARG, "JPEG crop: crop options must not be NULL");
    if (c->mode < DBR_CROP_NONE || c->mode > DBR_CROP_BOX)
        return dbr__fail(DBR_E_ARG, "JPEG crop: unknown mode %d", c->mode);
    if (c->out_w == 0 || c->out_h == 0 || (uint64_t)c->out_w * c->out_h > (1u << 28))
        return dbr__fail(DBR_E_ARG, "JPEG crop: output size %ux%u is empty or too large",
                         c->out_w, c->out_h);
    if (c->interp != DBR_INTERP_BILINEAR && c->interp != DBR_INTERP_AREA)
        return dbr__fail(DBR_E_ARG, "JPEG crop: unknown interpolation %d", c->interp);
    if (c->flip < DBR_FLIP_NONE || c->flip > DBR_FLIP_RANDOM)
        return dbr__fail(DBR_E_ARG, "JPEG crop: unknown flip %d", c->flip);
    if (!isfinite(c->scale_min) || !isfinite(c->scale_max) || !isfinite(c->ratio_min) ||
        !isfinite(c->ratio_max))
        return dbr__fail(DBR_E_ARG, "JPEG crop: scale (%g, %g) and ratio (%g, %g) must be "
                         "finite numbers", c->scale_min, c->scale_max, c->ratio_min,
                         c->ratio_max);
    if (c->scale_min < 0 || c->scale_max < 0 || c->ratio_min < 0 || c->ratio_max < 0 ||
        (c->scale_max > 0 && c->scale_min > c->scale_max) ||
        (c->ratio_max > 0 && c->ratio_min > c->ratio_max))
        return dbr__fail(DBR_E_ARG, "JPEG crop: scale (%g, %g) or ratio (%g, %g) is not "
                         "an increasing positive range", c->scale_min, c->scale_max,
                         c->ratio_min, c->ratio_max);
    return DBR_OK;
}

/* The box (x, y, w, h in displayed full-size pixels) and flip for one
 * image of W x H. */
static int choose(const dbr_jpeg_crop *c, uint64_t index, uint32_t W, uint32_t H,
                  double box[4], int *flip)
{
    rng r = {dbr__seed_step(c->seed, index)}; /* = dbr_seed_derive(seed, {index}, 1) */
    box[0] = box[1] = 0;
    box[2] = W;
    box[3] = H;
    if (c->mode == DBR_CROP_RANDOM) {
        random_box(c, &r, W, H, box);
    } else if (c->mode == DBR_CROP_CENTER) {
        double shorter = c->shorter ? c->shorter : (c->out_w > c->out_h ? c->out_w : c->out_h);
        double f = shorter / (W < H ? W : H); /* resize factor */
        box[2] = fmin(c->out_w / f, W);
        box[3] = fmin(c->out_h / f, H);
        box[0] = (W - box[2]) / 2;
        box[1] = (H - box[3]) / 2;
    } else if (c->mode == DBR_CROP_BOX) {
        if (!(c->box_w > 0 && c->box_h > 0 && c->box_x >= 0 && c->box_y >= 0 &&
              c->box_x + c->box_w <= W && c->box_y + c->box_h <= H))
            return dbr__fail(DBR_E_ARG, "JPEG crop: box %gx%g at (%g, %g) is not inside "
                             "the %ux%u image", c->box_w, c->box_h, c->box_x, c->box_y,
                             W, H);
        box[0] = c->box_x;
        box[1] = c->box_y;
        box[2] = c->box_w;
        box[3] = c->box_h;
    }
    *flip = c->flip == DBR_FLIP_ALWAYS || (c->flip == DBR_FLIP_RANDOM && uniform(&r) < 0.5);
    return DBR_OK;
}

int dbr_jpeg_crop_box(const dbr_jpeg_crop *crop, uint32_t width, uint32_t height,
                      uint64_t index, double *box, int *flip)
{
    int rc = dbr__jpeg_check_crop(crop);
    if (rc != DBR_OK)
        return rc;
    if (!box || !flip || width == 0 || height == 0)
        return dbr__fail(DBR_E_ARG, "dbr_jpeg_crop_box: empty image or NULL output");
    return choose(crop, index, width, height, box, flip);
}

/* Reverses each row's pixels in place (DBR_CROP_NONE with a flip). */
static void flip_rows(unsigned char *dst, uint32_t w, uint32_t h, size_t pitch, int ch)
{
    for (uint32_t y = 0; y < h; y++) {
        unsigned char *a = dst + y * pitch, *b = a + (size_t)(w - 1) * ch;
        for (; a < b; a += ch, b -= ch)
            for (int c = 0; c < ch; c++) {
                unsigned char t = a[c];
                a[c] = b[c];
                b[c] = t;
            }
    }
}

static unsigned char *sink_row(void *ctx, uint32_t y) { return dbr__resizer_row(ctx, y); }

int dbr_jpeg_decode_crop(const void *src, size_t len, const dbr_jpeg_options *opts,
                         const dbr_jpeg_crop *crop, uint64_t index, void *dst,
                         size_t pitch, size_t cap, dbr_jpeg_result *out)
{
    static const dbr_jpeg_options defaults;
    if (!src || !out)
        return dbr__fail(DBR_E_ARG, "dbr_jpeg_decode_crop: src and out must not be NULL");
    int rc = dbr__jpeg_check_crop(crop);
    if (rc != DBR_OK)
        return rc;
    dbr_jpeg_options o = opts ? *opts : defaults;
    if (o.roi_w || o.scale_num || o.scale_denom)
        return dbr__fail(DBR_E_ARG, "dbr_jpeg_decode_crop: the crop chooses scale and "
                         "region; leave them unset in the options");
    dbr__jpeg_plan_t pl;
    rc = dbr__jpeg_plan(src, len, &o, &pl);
    if (rc != DBR_OK)
        return rc;
    memset(out, 0, sizeof *out);
    out->width = crop->out_w;
    out->height = crop->out_h;
    out->channels = (uint32_t)pl.channels;
    size_t row = (size_t)crop->out_w * pl.channels;
    if (pitch == 0)
        pitch = row;
    if (pitch < row)
        return dbr__fail(DBR_E_ARG, "JPEG crop: pitch %zu is less than a row of %zu bytes",
                         pitch, row);
    size_t need = pitch * (crop->out_h - 1) + row;
    if (!dst || cap < need)
        return dbr__fail(DBR_E_TOO_SMALL, "a %ux%u crop with %d channels needs %zu bytes, "
                         "got %zu", crop->out_w, crop->out_h, pl.channels, need, cap);
    uint32_t W = pl.out_w, H = pl.out_h; /* displayed, full size */
    double box[4];
    int flip;
    rc = choose(crop, index, W, H, box, &flip);
    if (rc != DBR_OK)
        return rc;
    if (crop->mode == DBR_CROP_NONE) {
        if (W != crop->out_w || H != crop->out_h)
            return dbr__fail(DBR_E_ARG, "JPEG is %ux%u but %ux%u is expected (choose a "
                             "crop or resize mode for images of other sizes)", W, H,
                             crop->out_w, crop->out_h);
        rc = dbr__jpeg_decode_planned(src, len, &o, &pl, dst, pitch, NULL, NULL,
                                      &out->warnings);
        if (rc == DBR_OK && flip)
            flip_rows(dst, W, H, pitch, pl.channels);
        return rc;
    }
    /* Smallest scale m/8 at which the box still covers the target.  Only
     * 1/8, 2/8, 4/8 and 8/8: libjpeg-turbo's other scaled IDCTs have no
     * SIMD and cost more than a full-size decode. */
    int m = 1;
    while (m < 8 && (box[2] * m / 8 < crop->out_w || box[3] * m / 8 < crop->out_h))
        m *= 2;
    uint32_t sw = dbr__jpeg_scaled(W, m), sh = dbr__jpeg_scaled(H, m);
    /* Each 8x8 block becomes m x m pixels, so source x maps to x * m / 8
     * exactly (the rounded-up size only adds part of a pixel at the end). */
    double fx = m / 8.0, fy = fx;
    double x0 = box[0] * fx, y0 = box[1] * fy, bw = box[2] * fx, bh = box[3] * fy;
    /* Decode the box plus the filter's reach beyond it. */
    double mx = 2 + (bw / crop->out_w > 1 ? bw / crop->out_w : 1);
    double my = 2 + (bh / crop->out_h > 1 ? bh / crop->out_h : 1);
    uint32_t rx0 = (uint32_t)fmax(0, floor(x0 - mx)), ry0 = (uint32_t)fmax(0, floor(y0 - my));
    uint32_t rx1 = (uint32_t)fmin(sw, ceil(x0 + bw + mx)), ry1 = (uint32_t)fmin(sh, ceil(y0 + bh + my));
    o.scale_num = m;
    o.scale_denom = 8;
    o.roi_x = rx0;
    o.roi_y = ry0;
    o.roi_w = rx1 - rx0;
    o.roi_h = ry1 - ry0;
    rc = dbr__jpeg_plan(src, len, &o, &pl);
    if (rc != DBR_OK)
        return rc;
    if (pl.orientation == 1) {
        /* Decoded rows stream into the resize: no region buffer, and the
         * decode stops at the last row the filter reads. */
        unsigned char *sub = NULL;
        if (o.lenient != DBR_JPEG_STRICT) { /* strict must see every interval's warnings */
            /* The region (plus the decoder's one-pixel widening) in
             * full-size pixels; each scaled pixel is 8/m of them. */
            uint32_t px0 = (rx0 > 0 ? rx0 - 1 : 0) * (8 / m);
            uint32_t py0 = ry0 * (8 / m);
            uint32_t px1 = (rx1 + 1) * (8 / m), py1 = ry1 * (8 / m);
            size_t sub_len;
            uint32_t sub_x, sub_y;
            if (dbr__jpeg_seek_box(src, len, px0, py0, px1, py1, &sub, &sub_len, &sub_x,
                                   &sub_y)) {
                o.roi_x = rx0 - sub_x / (8 / m);
                o.roi_y = ry0 - sub_y / (8 / m);
                rc = dbr__jpeg_plan(sub, sub_len, &o, &pl);
                if (rc != DBR_OK) {
                    free(sub);
                    return rc;
                }
                src = sub;
                len = sub_len;
            }
        }
        dbr__resizer *rs;
        rc = dbr__resizer_new(pl.out_w, pl.out_h, x0 - rx0, y0 - ry0, bw, bh, dst,
                              crop->out_w, crop->out_h, pitch, pl.channels, crop->interp,
                              flip, &rs);
        if (rc != DBR_OK) {
            free(sub);
            return rc;
        }
        rc = dbr__jpeg_decode_planned(src, len, &o, &pl, NULL, 0, sink_row, rs,
                                      &out->warnings);
        if (rc == DBR_OK)
            dbr__resizer_finish(rs);
        dbr__resizer_free(rs);
        free(sub);
        return rc;
    }
    /* Rotated: stored rows are output columns, so decode the region first. */
    size_t tpitch = (size_t)pl.out_w * pl.channels;
    unsigned char *tmp = malloc(tpitch * pl.out_h);
    if (!tmp)
        return dbr__fail(DBR_E_NOMEM, "JPEG crop: out of memory for a %ux%u region",
                         pl.out_w, pl.out_h);
    rc = dbr__jpeg_decode_planned(src, len, &o, &pl, tmp, tpitch, NULL, NULL, &out->warnings);
    if (rc == DBR_OK)
        rc = dbr__resize(tmp, pl.out_w, pl.out_h, tpitch, x0 - rx0, y0 - ry0, bw, bh, dst,
                         crop->out_w, crop->out_h, pitch, pl.channels, crop->interp, flip);
    free(tmp);
    return rc;
}
