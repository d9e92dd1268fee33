/* resize.c - resamples a box of an 8-bit interleaved image to a new size:
 * separable, horizontal pass then vertical, fixed-point weights.
 *
 * Bilinear is a triangle filter widened by the shrink factor (antialiased,
 * the convention of Pillow and of torchvision with antialias=True); area
 * weighs each source pixel by its exact overlap with the output pixel's
 * footprint (OpenCV's INTER_AREA when shrinking; it falls back to bilinear
 * when enlarging, as OpenCV does).  The box may be fractional, so a crop
 * decoded at a DCT scale still maps to the exact region asked for. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { PRECISION = 22 }; /* 255 * 2^22 * (sum of weights = 1) fits int32 */

/* For each output index: the first source index and `taps` weights. */
typedef struct taps {
    int n;         /* weights per output (the widest footprint)  */
    int *first;    /* [out]                                      */
    int *count;    /* [out]: weights used, first + count <= in   */
    int32_t *w;    /* [out * n], zero-padded                     */
} taps;

static double triangle(double t)
{
    t = fabs(t);
    return t < 1.0 ? 1.0 - t : 0.0;
}

/* Output i covers source [x0 + i * scale, x0 + (i + 1) * scale). */
static int make_taps(taps *t, int in, int out, double x0, double len, int interp, int flip)
{
    double scale = len / out;
    int area = interp == DBR_INTERP_AREA && scale > 1.0;
    double widen = scale > 1.0 ? scale : 1.0;
    double support = area ? scale / 2 : widen;
    t->n = (int)ceil(2 * support) + 2;
    t->first = malloc(sizeof *t->first * (size_t)out);
    t->count = malloc(sizeof *t->count * (size_t)out);
    t->w = calloc((size_t)out * (size_t)t->n, sizeof *t->w);
    double *tmp = malloc(sizeof *tmp * (size_t)t->n);
    if (!t->first || !t->count || !t->w || !tmp) {
        free(tmp);
        return dbr__fail(DBR_E_NOMEM, "resize: out of memory for %d x %d weights", out, t->n);
    }
    for (int i = 0; i < out; i++) {
        double center = x0 + (i + 0.5) * scale;
        int lo = (int)floor(center - support), hi = (int)ceil(center + support);
        if (lo < 0)
            lo = 0;
        if (hi > in)
            hi = in;
        if (hi - lo > t->n)
            hi = lo + t->n;
        double sum = 0;
        for (int x = lo; x < hi; x++) {
            double w;
            if (area) { /* overlap of [x, x+1) with the footprint */
                double a = center - scale / 2, b = center + scale / 2;
                double l = x > a ? x : a, r = x + 1 < b ? x + 1 : b;
                w = r > l ? r - l : 0.0;
            } else {
                w = triangle((x + 0.5 - center) / widen);
            }
            tmp[x - lo] = w;
            sum += w;
        }
        if (sum <= 0) { /* footprint between samples: nearest pixel */
            lo = (int)center < in ? (int)center : in - 1;
            hi = lo + 1;
            tmp[0] = sum = 1.0;
        }
        int slot = flip ? out - 1 - i : i;
        t->first[slot] = lo;
        t->count[slot] = hi - lo;
        for (int x = lo; x < hi; x++)
            t->w[(size_t)slot * t->n + (x - lo)] =
                (int32_t)lround(tmp[x - lo] / sum * (1 << PRECISION));
    }
    free(tmp);
    return DBR_OK;
}

static void free_taps(taps *t)
{
    free(t->first);
    free(t->count);
    free(t->w);
}

static unsigned char clamp8(int32_t acc)
{
    acc = (acc + (1 << (PRECISION - 1))) >> PRECISION;
    return (unsigned char)(acc < 0 ? 0 : acc > 255 ? 255 : acc);
}

/* One source row to dw output pixels; ch is a constant in each caller so
 * the compiler unrolls the channel loop. */
static inline void hpass(const unsigned char *row, unsigned char *o, const taps *h,
                         uint32_t dw, int ch)
{
    for (uint32_t x = 0; x < dw; x++, o += ch) {
        const int32_t *w = h->w + (size_t)x * h->n;
        const unsigned char *p = row + (size_t)h->first[x] * ch;
        int32_t acc[4] = {0, 0, 0, 0};
        for (int k = 0, n = h->count[x]; k < n; k++, p += ch)
            for (int c = 0; c < ch; c++)
                acc[c] += w[k] * p[c];
        for (int c = 0; c < ch; c++)
            o[c] = clamp8(acc[c]);
    }
}

int dbr__resize(const unsigned char *src, uint32_t sw, uint32_t sh, size_t spitch,
                double bx, double by, double bw, double bh, unsigned char *dst,
                uint32_t dw, uint32_t dh, size_t dpitch, int ch, int interp, int flip)
{
    taps h = {0}, v = {0};
    unsigned char *mid = NULL;
    int32_t *acc = NULL;
    int rc = make_taps(&h, (int)sw, (int)dw, bx, bw, interp, flip);
    if (rc == DBR_OK)
        rc = make_taps(&v, (int)sh, (int)dh, by, bh, interp, 0);
    if (rc != DBR_OK)
        goto done;
    /* Only the source rows some output row reads go through pass one. */
    int y0 = v.first[0], y1 = v.first[dh - 1] + v.count[dh - 1];
    size_t mid_pitch = (size_t)dw * (size_t)ch;
    mid = malloc(mid_pitch * (size_t)(y1 - y0));
    if (!mid) {
        rc = dbr__fail(DBR_E_NOMEM, "resize: out of memory for %d rows", y1 - y0);
        goto done;
    }
    acc = malloc(sizeof *acc * mid_pitch);
    if (!acc) {
        rc = dbr__fail(DBR_E_NOMEM, "resize: out of memory for a %u-pixel row", dw);
        goto done;
    }
    for (int y = y0; y < y1; y++) {
        const unsigned char *row = src + (size_t)y * spitch;
        unsigned char *o = mid + (size_t)(y - y0) * mid_pitch;
        switch (ch) {
        case 1: hpass(row, o, &h, dw, 1); break;
        case 3: hpass(row, o, &h, dw, 3); break;
        default: hpass(row, o, &h, dw, 4); break;
        }
    }
    /* Vertical: whole rows at a time, a loop the compiler vectorises. */
    for (uint32_t y = 0; y < dh; y++) {
        const int32_t *w = v.w + (size_t)y * v.n;
        const unsigned char *base = mid + (size_t)(v.first[y] - y0) * mid_pitch;
        memset(acc, 0, sizeof *acc * mid_pitch);
        for (int k = 0; k < v.count[y]; k++) {
            const unsigned char *r = base + (size_t)k * mid_pitch;
            int32_t wk = w[k];
            for (size_t i = 0; i < mid_pitch; i++)
                acc[i] += wk * r[i];
        }
        unsigned char *o = dst + (size_t)y * dpitch;
        for (size_t i = 0; i < mid_pitch; i++)
            o[i] = clamp8(acc[i]);
    }
done:
    free(acc);
    free(mid);
    free_taps(&h);
    free_taps(&v);
    return rc;
}
