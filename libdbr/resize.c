/* resize.c - resamples a box of an 8-bit interleaved image to a new size:
 * separable, fixed-point weights precomputed per output pixel, fed one
 * source row at a time so a decoder can stream into it.
 *
 * Bilinear is a triangle filter widened by the shrink factor (antialiased,
 * the convention of Pillow and of torchvision with antialias=True); area
 * weighs each source pixel by its exact overlap with the output pixel's
 * footprint (OpenCV's INTER_AREA when shrinking; it falls back to bilinear
 * when enlarging, as OpenCV does).  The box may be fractional, so a crop
 * decoded at a DCT scale still maps to the exact region asked for.
 *
 * The vertical pass runs first, on whole source rows held in a ring of as
 * many rows as one output row reads, so an output row is produced as soon
 * as its last source row arrives and memory stays a few rows, and only
 * the columns some output reads.  It is SIMD (pmaddwd on pairs of rows,
 * 14-bit weights: AVX2 32 bytes a step, else SSE2 16); the horizontal pass
 * then turns that one row into the output row, mirrored if asked: one
 * 16-byte load per 4 taps shuffled into channel pairs for pmaddwd, all
 * channels at once, two output pixels per AVX2 vector (else one per SSSE3
 * vector), levels checked at run time.  Vertical-first keeps the
 * hard-to-vectorise horizontal pass at out_h rows.  The scalar fallbacks
 * do the same integer arithmetic, so every machine gives the same bytes. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { BITS = 14 }; /* weights fit int16 for pmaddwd; each output's sum to 1 << BITS */

/* SIMD levels: the passes use the lower of the CPU's and the test cap. */
enum { SCALAR = 0, SSSE3_LEVEL = 1, AVX2_LEVEL = 2 };

static int simd = AVX2_LEVEL; /* dbr__resize_set_simd */

int dbr__resize_set_simd(int level)
{
    int was = simd;
    simd = level;
    return was;
}

/* For each output index: the first source index and `count` weights. */
typedef struct taps {
    int n;         /* weight slots per output (the widest footprint) */
    int *first;    /* [out]                                          */
    int *count;    /* [out]: weights used, first + count <= in       */
    int32_t *w;    /* [out * n]                                      */
    int32_t *pair; /* [out * n / 2]: w[2j] | w[2j + 1] << 16, for pmaddwd */
    int quads;     /* 4-tap groups that cover the widest count          */
    /* [out / 2][quads * 2][2][4]: each pair four times, zero-padded, for
     * outputs 2i and 2i + 1 side by side (one AVX2 vector for both). */
    int32_t *wv;
} taps;

struct dbr__resizer {
    taps h, v;
    uint32_t dw, dh;
    int ch;
    size_t row_bytes;     /* one source row: sw * ch                      */
    size_t row_alloc;     /* its stride in the ring, slack included       */
    size_t vx0, vx1;      /* the bytes of a row that weigh in any output  */
    int y0, y1;           /* the source rows any output reads             */
    int ring;             /* source rows kept: v.n                        */
    unsigned char *rows;  /* [ring][row_bytes]                            */
    unsigned char *vrow;  /* one vertically filtered row                  */
    unsigned char *spare; /* where rows nobody reads go                   */
    unsigned char **ptrs; /* [ring]: the rows of one output, in order      */
    uint32_t next;        /* next output row                              */
    unsigned char *dst;
    size_t dpitch;
    double *scratch;      /* weights in floating point, while building    */
};

/* lround for v >= 0 (weights are) without the libm call: v - (long)v is
 * exact, so halves round up exactly as lround rounds them. */
static int32_t round_weight(double v)
{
    int32_t r = (int32_t)v;
    return r + (v - r >= 0.5);
}

static double triangle(double t)
{
    t = fabs(t);
    return t < 1.0 ? 1.0 - t : 0.0;
}

/* Output i covers source [x0 + i * scale, x0 + (i + 1) * scale).  The
 * integer weights of each output sum to exactly 1 << bits, so flat areas
 * stay flat. */
static void make_taps(taps *t, double *tmp, int in, int out, double x0, double len,
                      int interp, int flip, int bits)
{
    double scale = len / out;
    int area = interp == DBR_INTERP_AREA && scale > 1.0;
    double widen = scale > 1.0 ? scale : 1.0;
    double support = area ? scale / 2 : widen;
    int32_t one = (int32_t)1 << bits;
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
        /* Zero weights at the ends would only cost multiplications. */
        int k0 = 0, k1 = hi - lo;
        while (k0 < k1 && tmp[k0] <= 0)
            k0++;
        while (k1 > k0 && tmp[k1 - 1] <= 0)
            k1--;
        const double *kept = tmp + k0;
        hi = lo + k1;
        lo += k0;
        if (sum <= 0) { /* footprint between samples: nearest pixel */
            lo = (int)center < in ? (int)center : in - 1;
            if (lo < 0)
                lo = 0;
            hi = lo + 1;
            tmp[0] = sum = 1.0;
            kept = tmp;
        }
        int slot = flip ? out - 1 - i : i;
        int32_t *w = t->w + (size_t)slot * t->n;
        int32_t total = 0;
        int big = 0;
        for (int k = 0; k < hi - lo; k++) {
            w[k] = round_weight(kept[k] / sum * one);
            total += w[k];
            if (w[k] > w[big])
                big = k;
        }
        w[big] += one - total;
        for (int k = hi - lo; k < t->n; k++)
            w[k] = 0;
        for (int k = 0; k + 1 < t->n; k += 2) {
            int32_t pr = (int32_t)((uint32_t)w[k] | (uint32_t)w[k + 1] << 16);
            size_t j = ((size_t)slot * t->n + k) / 2;
            t->pair[j] = pr;
        }
        t->first[slot] = lo;
        t->count[slot] = hi - lo;
    }
}

/* The SIMD horizontal pass loads 4 taps at a time: size its weight vectors
 * by the widest count actually used, usually below the slots reserved. */
static void pack_vectors(taps *t, uint32_t out)
{
    int widest = 1;
    for (uint32_t i = 0; i < out; i++)
        widest = t->count[i] > widest ? t->count[i] : widest;
    t->quads = (widest + 3) / 4;
    size_t per = (size_t)t->quads * 2; /* vectors per output */
    memset(t->wv, 0, (size_t)(out + 1) / 2 * 2 * per * 4 * sizeof(int32_t));
    for (uint32_t i = 0; i < out; i++)
        for (int j = 0; j < (t->count[i] + 1) / 2; j++)
            for (int l = 0; l < 4; l++)
                t->wv[(((i / 2) * per + (size_t)j) * 2 + (i & 1)) * 4 + l] =
                    t->pair[(size_t)i * t->n / 2 + j];
}

static int tap_slots(int in, int out, double len, int interp)
{
    double scale = len / out;
    double support = interp == DBR_INTERP_AREA && scale > 1.0 ? scale / 2
                     : scale > 1.0 ? scale : 1.0;
    int n = (int)ceil(2 * support) + 2;
    n = n < in ? n : in;
    return (n + 1) & ~1; /* even, for the weight pairs */
}

/* Carves n items of size bytes, 16-aligned, from *at. */
static void *carve(unsigned char **at, size_t n, size_t size)
{
    void *p = *at;
    *at += (n * size + 15) & ~(size_t)15;
    return p;
}

int dbr__resizer_new(uint32_t sw, uint32_t sh, double bx, double by, double bw, double bh,
                     unsigned char *dst, uint32_t dw, uint32_t dh, size_t dpitch, int ch,
                     int interp, int flip, dbr__resizer **out)
{
    *out = NULL;
    int hn = tap_slots((int)sw, (int)dw, bw, interp), vn = tap_slots((int)sh, (int)dh, bh, interp);
    size_t row_bytes = (size_t)sw * (size_t)ch;
    int widest = hn > vn ? hn : vn;
    /* One allocation for everything: a few rows and the weight tables.
     * Every row has slack after it, zeroed: SIMD loads of a pixel's 4-tap
     * groups may run past the row's last pixel (into taps of weight 0);
     * and a sink's pad before and after (see dbr__row_sink). */
    int quads = (hn + 3) / 4;
    size_t slack = 16 * (size_t)quads + 32; /* and 32-byte vertical steps */
    size_t row_alloc = DBR__SINK_PAD + row_bytes + (slack > DBR__SINK_PAD ? slack : DBR__SINK_PAD);
    size_t bytes = sizeof(dbr__resizer) + 16 * 14 +
                   ((size_t)dw + dh) * 2 * sizeof(int) +
                   ((size_t)dw * hn * 3 / 2 + ((size_t)dw + 1) * quads * 8 + (size_t)dh * vn * 3 / 2) * sizeof(int32_t) +
                   ((size_t)vn + 2) * row_alloc + (size_t)widest * sizeof(double) +
                   ((size_t)vn + 1) * sizeof(unsigned char *) + 16;
    unsigned char *mem = malloc(bytes);
    if (!mem)
        return dbr__fail(DBR_E_NOMEM, "resize: out of memory for %ux%u -> %ux%u (%zu bytes)",
                         sw, sh, dw, dh, bytes);
    dbr__resizer *r = (dbr__resizer *)mem;
    unsigned char *at = mem + ((sizeof *r + 15) & ~(size_t)15);
    memset(r, 0, sizeof *r);
    r->h.n = hn;
    r->v.n = vn;
    r->h.first = carve(&at, dw, sizeof(int));
    r->h.count = carve(&at, dw, sizeof(int));
    r->h.w = carve(&at, (size_t)dw * hn, sizeof(int32_t));
    r->h.pair = carve(&at, (size_t)dw * hn / 2, sizeof(int32_t));
    r->h.wv = carve(&at, ((size_t)dw + 1) / 2 * 2 * quads * 8, sizeof(int32_t));
    r->v.first = carve(&at, dh, sizeof(int));
    r->v.count = carve(&at, dh, sizeof(int));
    r->v.w = carve(&at, (size_t)dh * vn, sizeof(int32_t));
    r->v.pair = carve(&at, (size_t)dh * vn / 2, sizeof(int32_t));
    r->scratch = carve(&at, (size_t)widest, sizeof(double));
    r->ptrs = carve(&at, (size_t)vn + 1, sizeof(unsigned char *));
    r->rows = carve(&at, (size_t)vn, row_alloc);
    r->vrow = carve(&at, 1, row_alloc);
    r->spare = carve(&at, 1, row_alloc);
    memset(r->rows, 0, ((size_t)vn + 2) * row_alloc);
    r->rows += DBR__SINK_PAD; /* each row starts after its pad */
    r->vrow += DBR__SINK_PAD;
    r->spare += DBR__SINK_PAD;
    make_taps(&r->h, r->scratch, (int)sw, (int)dw, bx, bw, interp, flip, BITS);
    make_taps(&r->v, r->scratch, (int)sh, (int)dh, by, bh, interp, 0, BITS);
    pack_vectors(&r->h, dw);
    r->dw = dw;
    r->dh = dh;
    r->ch = ch;
    r->row_bytes = row_bytes;
    r->row_alloc = row_alloc;
    /* The vertical pass need not filter columns no output reads. */
    int x0 = (int)sw, x1 = 0;
    for (uint32_t x = 0; x < dw; x++) {
        x0 = r->h.first[x] < x0 ? r->h.first[x] : x0;
        x1 = r->h.first[x] + r->h.count[x] > x1 ? r->h.first[x] + r->h.count[x] : x1;
    }
    r->vx0 = (size_t)x0 * ch;
    r->vx1 = (size_t)x1 * ch;
    r->ring = vn;
    r->y0 = r->v.first[0];
    r->y1 = 0;
    for (uint32_t y = 0; y < dh; y++)
        if (r->v.first[y] + r->v.count[y] > r->y1)
            r->y1 = r->v.first[y] + r->v.count[y];
    r->dst = dst;
    r->dpitch = dpitch;
    *out = r;
    return DBR_OK;
}

void dbr__resizer_free(dbr__resizer *r) { free(r); }

static unsigned char clamp_round(int32_t acc, int bits)
{
    acc = (acc + (1 << (bits - 1))) >> bits;
    return (unsigned char)(acc < 0 ? 0 : acc > 255 ? 255 : acc);
}

/* Bytes [from, to) of the vertical filter: sum of w[k] * rows[k][i]. */
static void vpass_scalar(unsigned char *const *rows, const int32_t *w, int count,
                         unsigned char *o, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        int32_t acc = 0;
        for (int k = 0; k < count; k++)
            acc += w[k] * rows[k][i];
        o[i] = clamp_round(acc, BITS);
    }
}

/* One row to dw output pixels, scalar. */
static void hpass_scalar(const unsigned char *row, unsigned char *o, const taps *h,
                         uint32_t from, uint32_t dw, int ch)
{
    o += (size_t)from * ch;
    for (uint32_t x = from; x < dw; x++, o += ch) {
        const int32_t *w = h->w + (size_t)x * h->n;
        for (int c = 0; c < ch; c++) {
            const unsigned char *p = row + (size_t)h->first[x] * ch + c;
            int32_t acc = 0;
            for (int k = 0, n = h->count[x]; k < n; k++, p += ch)
                acc += w[k] * *p;
            o[c] = clamp_round(acc, BITS);
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define SSSE3 __attribute__((target("ssse3")))
#define AVX2 __attribute__((target("avx2")))
#define INLINE static inline __attribute__((always_inline))

/* The SIMD vertical passes take row pairs: interleaved 16-bit samples of
 * two rows times (w0, w1) with pmaddwd.  `pairs` = (count + 1) / 2; an odd
 * count repeats its last row with weight 0, so there is no branch.  They
 * store whole vectors, up to 31 bytes past `to`, into the rows' slack. */
static void vpass_sse2(unsigned char *const *rows, const int32_t *pair, int pairs,
                       unsigned char *o, size_t from, size_t to)
{
    const __m128i zero = _mm_setzero_si128(), half = _mm_set1_epi32(1 << (BITS - 1));
    for (size_t i = from; i < to; i += 16) {
        __m128i a0 = half, a1 = half, a2 = half, a3 = half;
        for (int j = 0; j < pairs; j++) {
            __m128i p = _mm_loadu_si128((const __m128i *)(rows[2 * j] + i));
            __m128i q = _mm_loadu_si128((const __m128i *)(rows[2 * j + 1] + i));
            __m128i wk = _mm_set1_epi32(pair[j]);
            __m128i pl = _mm_unpacklo_epi8(p, zero), ph = _mm_unpackhi_epi8(p, zero);
            __m128i ql = _mm_unpacklo_epi8(q, zero), qh = _mm_unpackhi_epi8(q, zero);
            a0 = _mm_add_epi32(a0, _mm_madd_epi16(_mm_unpacklo_epi16(pl, ql), wk));
            a1 = _mm_add_epi32(a1, _mm_madd_epi16(_mm_unpackhi_epi16(pl, ql), wk));
            a2 = _mm_add_epi32(a2, _mm_madd_epi16(_mm_unpacklo_epi16(ph, qh), wk));
            a3 = _mm_add_epi32(a3, _mm_madd_epi16(_mm_unpackhi_epi16(ph, qh), wk));
        }
        __m128i lo = _mm_packs_epi32(_mm_srai_epi32(a0, BITS), _mm_srai_epi32(a1, BITS));
        __m128i hi = _mm_packs_epi32(_mm_srai_epi32(a2, BITS), _mm_srai_epi32(a3, BITS));
        _mm_storeu_si128((__m128i *)(o + i), _mm_packus_epi16(lo, hi));
    }
}

/* AVX2: 32 bytes a step, each 16 loaded straight into 16-bit lanes
 * (vpmovzxbw), so a row pair costs 4 loads, 4 unpacks, 4 pmaddwd. */
AVX2 INLINE void vpass_avx2_n(unsigned char *const *rows, const int32_t *pair, int pairs,
                              unsigned char *o, size_t from, size_t to)
{
    const __m256i half = _mm256_set1_epi32(1 << (BITS - 1));
    for (size_t i = from; i < to; i += 32) {
        __m256i a0 = half, a1 = half, a2 = half, a3 = half;
        for (int j = 0; j < pairs; j++) {
            const __m128i *p = (const __m128i *)(rows[2 * j] + i);
            const __m128i *q = (const __m128i *)(rows[2 * j + 1] + i);
            __m256i wk = _mm256_set1_epi32(pair[j]);
            __m256i p0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(p));
            __m256i q0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(q));
            __m256i p1 = _mm256_cvtepu8_epi16(_mm_loadu_si128(p + 1));
            __m256i q1 = _mm256_cvtepu8_epi16(_mm_loadu_si128(q + 1));
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_unpacklo_epi16(p0, q0), wk));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_unpackhi_epi16(p0, q0), wk));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_unpacklo_epi16(p1, q1), wk));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_unpackhi_epi16(p1, q1), wk));
        }
        /* The unpacks work within 128-bit lanes, and so do the packs: the
         * words come out in order, the bytes need one 64-bit permute. */
        __m256i lo = _mm256_packs_epi32(_mm256_srai_epi32(a0, BITS), _mm256_srai_epi32(a1, BITS));
        __m256i hi = _mm256_packs_epi32(_mm256_srai_epi32(a2, BITS), _mm256_srai_epi32(a3, BITS));
        __m256i v = _mm256_permute4x64_epi64(_mm256_packus_epi16(lo, hi), 0xD8);
        _mm256_storeu_si256((__m256i *)(o + i), v);
    }
}

AVX2 static void vpass_avx2(unsigned char *const *rows, const int32_t *pair, int pairs,
                            unsigned char *o, size_t from, size_t to)
{
    /* The common tap counts get their own unrolled copies. */
    if (pairs == 1)
        vpass_avx2_n(rows, pair, 1, o, from, to);
    else if (pairs == 2)
        vpass_avx2_n(rows, pair, 2, o, from, to);
    else if (pairs == 3)
        vpass_avx2_n(rows, pair, 3, o, from, to);
    else
        vpass_avx2_n(rows, pair, pairs, o, from, to);
}

/* The lo and hi pshufb masks of hpixel for 3 or 4 channels. */
SSSE3 INLINE __m128i spread_lo(int ch)
{
    return ch == 3 ? _mm_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1)
                   : _mm_setr_epi8(0, -1, 4, -1, 1, -1, 5, -1, 2, -1, 6, -1, 3, -1, 7, -1);
}

SSSE3 INLINE __m128i spread_hi(__m128i lo, int ch)
{
    return _mm_add_epi8(lo, _mm_and_si128(_mm_cmpgt_epi8(lo, _mm_set1_epi8(-1)),
                                          _mm_set1_epi8((char)(2 * ch))));
}

/* (r0 g0 b0 _ r1 g1 b1 _ ...) -> 12 packed bytes */
SSSE3 INLINE __m128i squeeze3(void)
{
    return _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
}

/* One output pixel of 3 or 4 channels as 32-bit sums (rounding included).
 * A 16-byte load holds 4 pixels; pshufb spreads pixels (0, 1) and (2, 3)
 * into 16-bit lanes (c0 of a, c0 of b, c1 of a, ...) for pmaddwd with the
 * weight pairs; lanes past the channels are zero.  quads: 4-tap groups;
 * the pixel's weight vectors are every other one of wv. */
SSSE3 INLINE __m128i hpixel(const unsigned char *p, const __m128i *wv, int quads, int ch,
                            __m128i lo, __m128i hi)
{
    __m128i acc = _mm_set1_epi32(1 << (BITS - 1));
    for (int q = 0; q < quads; q++, p += 4 * ch, wv += 4) {
        __m128i px = _mm_loadu_si128((const __m128i *)p);
        acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_shuffle_epi8(px, lo), wv[0]));
        acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_shuffle_epi8(px, hi), wv[2]));
    }
    return acc;
}

/* Four output pixels at a time from pixel `from` (even); returns where it
 * stopped. */
SSSE3 INLINE uint32_t hpass_quads(const unsigned char *row, unsigned char *o, const taps *h,
                                  uint32_t from, uint32_t dw, int ch, int quads)
{
    const __m128i lo = spread_lo(ch), hi = spread_hi(lo, ch), squeeze = squeeze3();
    const int *first = h->first;
    const __m128i *wv = (const __m128i *)h->wv;
    size_t step = (size_t)quads * 4; /* weight vectors per output pair */
    uint32_t x = from;
    for (o += (size_t)x * ch; x + 4 <= dw; x += 4, o += 4 * ch) {
        const __m128i *w = wv + x / 2 * step;
        __m128i a0 = hpixel(row + (size_t)first[x] * ch, w, quads, ch, lo, hi);
        __m128i a1 = hpixel(row + (size_t)first[x + 1] * ch, w + 1, quads, ch, lo, hi);
        __m128i a2 = hpixel(row + (size_t)first[x + 2] * ch, w + step, quads, ch, lo, hi);
        __m128i a3 = hpixel(row + (size_t)first[x + 3] * ch, w + step + 1, quads, ch, lo, hi);
        __m128i v = _mm_packus_epi16(
            _mm_packs_epi32(_mm_srai_epi32(a0, BITS), _mm_srai_epi32(a1, BITS)),
            _mm_packs_epi32(_mm_srai_epi32(a2, BITS), _mm_srai_epi32(a3, BITS)));
        if (ch == 4) {
            _mm_storeu_si128((__m128i *)o, v);
        } else {
            v = _mm_shuffle_epi8(v, squeeze);
            _mm_storel_epi64((__m128i *)o, v);
            uint32_t tail = (uint32_t)_mm_cvtsi128_si32(_mm_srli_si128(v, 8));
            memcpy(o + 8, &tail, 4);
        }
    }
    return x;
}

SSSE3 static uint32_t hpass_ssse3(const unsigned char *row, unsigned char *o, const taps *h,
                                  uint32_t from, uint32_t dw, int ch)
{
    int quads = h->quads;
    /* The common tap counts get their own unrolled copies. */
    if (ch == 3)
        return quads == 1 ? hpass_quads(row, o, h, from, dw, 3, 1)
               : quads == 2 ? hpass_quads(row, o, h, from, dw, 3, 2)
                            : hpass_quads(row, o, h, from, dw, 3, quads);
    return quads == 1 ? hpass_quads(row, o, h, from, dw, 4, 1)
           : quads == 2 ? hpass_quads(row, o, h, from, dw, 4, 2)
                        : hpass_quads(row, o, h, from, dw, 4, quads);
}

/* hpixel for two output pixels at once, one per 128-bit lane: their
 * weight vectors sit side by side in wv. */
AVX2 INLINE __m256i hpair(const unsigned char *a, const unsigned char *b, const __m256i *wv,
                          int quads, int ch, __m256i lo, __m256i hi)
{
    __m256i acc = _mm256_set1_epi32(1 << (BITS - 1));
    for (int q = 0; q < quads; q++, a += 4 * ch, b += 4 * ch, wv += 2) {
        __m256i px = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)a)),
            _mm_loadu_si128((const __m128i *)b), 1);
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_shuffle_epi8(px, lo),
                                                      _mm256_loadu_si256(wv)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_shuffle_epi8(px, hi),
                                                      _mm256_loadu_si256(wv + 1)));
    }
    return acc;
}

/* Eight output pixels at a time; returns where it stopped. */
AVX2 INLINE uint32_t hpass_octets(const unsigned char *row, unsigned char *o, const taps *h,
                                  uint32_t dw, int ch, int quads)
{
    const __m128i lo1 = spread_lo(ch);
    const __m256i lo = _mm256_broadcastsi128_si256(lo1);
    const __m256i hi = _mm256_broadcastsi128_si256(spread_hi(lo1, ch));
    const __m256i squeeze = _mm256_broadcastsi128_si256(squeeze3());
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const int *first = h->first;
    const __m256i *wv = (const __m256i *)h->wv;
    size_t step = (size_t)quads * 2; /* weight vectors per output pair */
    uint32_t x = 0;
    for (; x + 8 <= dw; x += 8, o += 8 * ch) {
        const __m256i *w = wv + x / 2 * step;
        const unsigned char *p = row;
        __m256i a01 = hpair(p + (size_t)first[x] * ch, p + (size_t)first[x + 1] * ch, w,
                            quads, ch, lo, hi);
        __m256i a23 = hpair(p + (size_t)first[x + 2] * ch, p + (size_t)first[x + 3] * ch,
                            w + step, quads, ch, lo, hi);
        __m256i a45 = hpair(p + (size_t)first[x + 4] * ch, p + (size_t)first[x + 5] * ch,
                            w + 2 * step, quads, ch, lo, hi);
        __m256i a67 = hpair(p + (size_t)first[x + 6] * ch, p + (size_t)first[x + 7] * ch,
                            w + 3 * step, quads, ch, lo, hi);
        /* Lane 0 packs pixels 0 2 4 6, lane 1 pixels 1 3 5 7: interleave. */
        __m256i v = _mm256_packus_epi16(
            _mm256_packs_epi32(_mm256_srai_epi32(a01, BITS), _mm256_srai_epi32(a23, BITS)),
            _mm256_packs_epi32(_mm256_srai_epi32(a45, BITS), _mm256_srai_epi32(a67, BITS)));
        v = _mm256_permutevar8x32_epi32(v, order);
        if (ch == 4) {
            _mm256_storeu_si256((__m256i *)o, v);
        } else {
            /* 12 bytes per lane; the first store's 4 extra are overwritten. */
            v = _mm256_shuffle_epi8(v, squeeze);
            __m128i b = _mm256_extracti128_si256(v, 1);
            _mm_storeu_si128((__m128i *)o, _mm256_castsi256_si128(v));
            _mm_storel_epi64((__m128i *)(o + 12), b);
            uint32_t tail = (uint32_t)_mm_cvtsi128_si32(_mm_srli_si128(b, 8));
            memcpy(o + 20, &tail, 4);
        }
    }
    return x;
}

AVX2 static uint32_t hpass_avx2(const unsigned char *row, unsigned char *o, const taps *h,
                                uint32_t dw, int ch)
{
    int quads = h->quads;
    if (ch == 3)
        return quads == 1 ? hpass_octets(row, o, h, dw, 3, 1)
               : quads == 2 ? hpass_octets(row, o, h, dw, 3, 2)
                            : hpass_octets(row, o, h, dw, 3, quads);
    return quads == 1 ? hpass_octets(row, o, h, dw, 4, 1)
           : quads == 2 ? hpass_octets(row, o, h, dw, 4, 2)
                        : hpass_octets(row, o, h, dw, 4, quads);
}

static int cpu_level(void)
{
    static int cached = -1; /* a benign race: every thread stores the same */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2")    ? AVX2_LEVEL
            : __builtin_cpu_supports("ssse3") ? SSSE3_LEVEL
                                              : SCALAR;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}
#else
static int cpu_level(void) { return SCALAR; }
#endif

static int level(void)
{
    int cpu = cpu_level();
    return simd < cpu ? simd : cpu;
}

/* Bytes [from, to) of the vertical filter.  rows has (count + 1) / 2
 * pairs of entries (see vpass_sse2). */
static void vpass(unsigned char *const *rows, const int32_t *w, const int32_t *pair,
                  int count, unsigned char *o, size_t from, size_t to)
{
#if defined(__x86_64__) && defined(__GNUC__)
    int lv = level();
    if (lv == AVX2_LEVEL)
        vpass_avx2(rows, pair, (count + 1) / 2, o, from, to);
    else if (lv == SSSE3_LEVEL)
        vpass_sse2(rows, pair, (count + 1) / 2, o, from, to);
    else
#else
    (void)pair;
#endif
        vpass_scalar(rows, w, count, o, from, to);
}

/* One row to dw output pixels: SIMD for 3 or 4 channels, the same sums
 * in scalar code for the rest.  Rows have slack after them, so loads may
 * run past the last tap. */
static void hpass(const unsigned char *row, unsigned char *o, const taps *h, uint32_t dw,
                  int ch)
{
    uint32_t done = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    int lv = level();
    if ((ch == 3 || ch == 4) && lv == AVX2_LEVEL)
        done = hpass_avx2(row, o, h, dw, ch);
    if ((ch == 3 || ch == 4) && lv >= SSSE3_LEVEL)
        done = hpass_ssse3(row, o, h, done, dw, ch);
#endif
    hpass_scalar(row, o, h, done, dw, ch);
}

/* Emits every output row whose source rows all lie below `ready`. */
static void emit(dbr__resizer *r, int ready)
{
    const taps *v = &r->v;
    for (; r->next < r->dh; r->next++) {
        uint32_t y = r->next;
        int first = v->first[y], count = v->count[y];
        if (first + count > ready)
            return;
        for (int k = 0; k < count; k++)
            r->ptrs[k] = r->rows + (size_t)((first + k - r->y0) % r->ring) * r->row_alloc;
        r->ptrs[count] = r->ptrs[count - 1]; /* pads an odd count; weight 0 */
        const unsigned char *src = r->ptrs[0];
        if (count > 1) {
            vpass(r->ptrs, v->w + (size_t)y * v->n, v->pair + (size_t)y * v->n / 2, count,
                  r->vrow, r->vx0, r->vx1);
            src = r->vrow;
        }
        unsigned char *o = r->dst + (size_t)y * r->dpitch;
        hpass(src, o, &r->h, r->dw, r->ch);
    }
}

unsigned char *dbr__resizer_row(dbr__resizer *r, uint32_t y)
{
    int iy = (int)y;
    if (iy >= r->y1 || r->next >= r->dh)
        return NULL;
    emit(r, iy);
    if (iy < r->y0)
        return r->spare;
    return r->rows + (size_t)((iy - r->y0) % r->ring) * r->row_alloc;
}

void dbr__resizer_finish(dbr__resizer *r) { emit(r, r->y1); }

int dbr__resize(const unsigned char *src, uint32_t sw, uint32_t sh, size_t spitch,
                double bx, double by, double bw, double bh, unsigned char *dst,
                uint32_t dw, uint32_t dh, size_t dpitch, int ch, int interp, int flip)
{
    dbr__resizer *r;
    int rc = dbr__resizer_new(sw, sh, bx, by, bw, bh, dst, dw, dh, dpitch, ch, interp, flip, &r);
    if (rc != DBR_OK)
        return rc;
    unsigned char *to;
    for (uint32_t y = 0; (to = dbr__resizer_row(r, y)) != NULL; y++)
        memcpy(to, src + (size_t)y * spitch, r->row_bytes);
    dbr__resizer_finish(r);
    dbr__resizer_free(r);
    return DBR_OK;
}
