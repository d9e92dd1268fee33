/* jpeg_intervals.c - seeking in a JPEG with restart markers: one scan of
 * the entropy data finds every restart interval, and a small JPEG stream is
 * built from just the intervals under a box (the same headers with the
 * sub-image's size in SOF, the markers renumbered 0..7 in sequence, EOI).
 *
 * Restart markers reset the DC predictors and the bit reader, so each
 * interval decodes on its own; when the interval length k divides the MCUs
 * of a row, every row and k-MCU column span starts on one and the
 * sub-image's rows are whole intervals.  The sub-image starts on an MCU
 * boundary, so its blocks, DCT scaling and chroma sampling line up with
 * the original's; the caller's box keeps one MCU of margin inside it, so
 * the upsampler's edge handling at the sub-image's borders never reaches
 * the box.
 *
 * Only a single interleaved baseline/extended Huffman scan whose markers
 * are all present, numbered in order and followed by EOI qualifies: then
 * the whole decode could not run out of data either, so seeking never
 * accepts what the whole decode refuses.  Anything else returns 0 and the
 * caller decodes the original as before. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static unsigned be16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }

typedef struct layout {
    size_t scan_at;   /* first byte of entropy data */
    size_t size_at;   /* SOF's height field (width follows) */
    uint32_t width, height, mcu_w, mcu_h, cols, rows, k;
} layout;

/* The frame and scan geometry, or 0 if the stream does not qualify. */
static int read_layout(const unsigned char *p, size_t len, layout *L)
{
    int sof = 0, comps = 0;
    unsigned hmax = 1, vmax = 1, dri = 0;
    size_t at = 2;
    memset(L, 0, sizeof *L);
    for (;;) {
        while (at < len && p[at] != 0xFF)
            at++;
        while (at < len && p[at] == 0xFF)
            at++;
        if (at + 3 > len)
            return 0;
        unsigned m = p[at++];
        if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD9))
            return 0; /* odd bytes in the header: leave them to libjpeg */
        size_t seg = be16(p + at);
        if (seg < 2 || at + seg > len)
            return 0;
        const unsigned char *q = p + at + 2;
        size_t n = seg - 2;
        if (m == 0xC0 || m == 0xC1) { /* sequential Huffman */
            if (sof || n < 6 || q[0] != 8)
                return 0;
            comps = q[5];
            if (comps < 1 || comps > 4 || n < 6 + 3 * (size_t)comps)
                return 0;
            for (int c = 0; c < comps; c++) {
                unsigned h = q[7 + 3 * c] >> 4, v = q[7 + 3 * c] & 15;
                if (h < 1 || h > 4 || v < 1 || v > 4)
                    return 0;
                hmax = h > hmax ? h : hmax;
                vmax = v > vmax ? v : vmax;
            }
            L->size_at = at + 3;
            L->height = be16(q + 1);
            L->width = be16(q + 3);
            sof = 1;
        } else if ((m >= 0xC2 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) ||
                   m == 0xDC) {
            return 0; /* progressive, arithmetic, lossless; DNL */
        } else if (m == 0xDD) {
            if (n < 2)
                return 0;
            dri = be16(q);
        } else if (m == 0xDA) {
            if (!sof || n < 1 || q[0] != comps) /* one scan holds every component */
                return 0;
            L->scan_at = at + seg;
            break;
        }
        at += seg;
    }
    if (L->width == 0 || L->height == 0 || dri == 0)
        return 0;
    /* A one-component scan is not interleaved: its MCU is one block. */
    L->mcu_w = comps == 1 ? 8 : 8 * hmax;
    L->mcu_h = comps == 1 ? 8 : 8 * vmax;
    L->cols = (L->width + L->mcu_w - 1) / L->mcu_w;
    L->rows = (L->height + L->mcu_h - 1) / L->mcu_h;
    L->k = dri;
    return L->cols % dri == 0;
}

/* Where each interval's data begins and ends (before its marker), by one
 * pass over FF bytes; 0 unless exactly n intervals end in RST0..7 in
 * order and the last in EOI. */
static int find_intervals(const unsigned char *p, size_t len, size_t at, size_t n,
                          uint32_t *begin, uint32_t *end)
{
    size_t i = 0;
    begin[0] = (uint32_t)at;
    for (;;) {
        const unsigned char *f = memchr(p + at, 0xFF, len - at);
        if (!f)
            return 0; /* truncated: no EOI */
        size_t mark = (size_t)(f - p);
        at = mark + 1;
        while (at < len && p[at] == 0xFF)
            at++;
        if (at >= len)
            return 0;
        unsigned c = p[at++];
        if (c == 0x00)
            continue; /* stuffed FF in the data */
        if (c == 0xD9) {
            end[i] = (uint32_t)mark;
            return i + 1 == n;
        }
        if (c != 0xD0 + (i & 7) || i + 1 >= n)
            return 0; /* another marker, out of order or too many */
        end[i++] = (uint32_t)mark;
        begin[i] = (uint32_t)at;
    }
}

int dbr__jpeg_seek_box(const void *src, size_t len, uint32_t x0, uint32_t y0, uint32_t x1,
                       uint32_t y1, unsigned char **sub, size_t *sub_len, uint32_t *sub_x,
                       uint32_t *sub_y)
{
    const unsigned char *p = src;
    layout L;
    *sub = NULL;
    if (len < 4 || len > UINT32_MAX || !read_layout(p, len, &L))
        return 0;
    size_t n = (size_t)L.cols * L.rows / L.k;
    /* One MCU of margin, then out to interval boundaries. */
    uint32_t c0 = x0 / L.mcu_w, r0 = y0 / L.mcu_h;
    c0 = c0 > 0 ? c0 - 1 : 0;
    r0 = r0 > 0 ? r0 - 1 : 0;
    c0 -= c0 % L.k;
    uint32_t c1 = (x1 + L.mcu_w - 1) / L.mcu_w + 1, r1 = (y1 + L.mcu_h - 1) / L.mcu_h + 1;
    c1 = c1 < L.cols ? c1 : L.cols;
    r1 = r1 < L.rows ? r1 : L.rows;
    c1 += (L.k - c1 % L.k) % L.k; /* cols is a multiple of k: stays inside */
    if (c0 == 0 && r0 == 0 && c1 == L.cols && r1 == L.rows)
        return 0; /* the whole image: nothing to skip */
    uint32_t *begin = malloc(2 * n * sizeof *begin);
    if (!begin)
        return 0;
    uint32_t *end = begin + n;
    if (!find_intervals(p, len, L.scan_at, n, begin, end)) {
        free(begin);
        return 0;
    }
    size_t per_row = L.cols / L.k, first = c0 / L.k, last = c1 / L.k;
    size_t need = L.scan_at + 2;
    for (uint32_t r = r0; r < r1; r++)
        for (size_t j = r * per_row + first; j < r * per_row + last; j++)
            need += end[j] - begin[j] + 2;
    unsigned char *s = malloc(need);
    if (!s) {
        free(begin);
        return 0;
    }
    memcpy(s, p, L.scan_at);
    uint32_t w = c1 == L.cols ? L.width - c0 * L.mcu_w : (c1 - c0) * L.mcu_w;
    uint32_t h = r1 == L.rows ? L.height - r0 * L.mcu_h : (r1 - r0) * L.mcu_h;
    s[L.size_at] = (unsigned char)(h >> 8);
    s[L.size_at + 1] = (unsigned char)h;
    s[L.size_at + 2] = (unsigned char)(w >> 8);
    s[L.size_at + 3] = (unsigned char)w;
    size_t o = L.scan_at, seq = 0;
    for (uint32_t r = r0; r < r1; r++)
        for (size_t j = r * per_row + first; j < r * per_row + last; j++) {
            if (seq) {
                s[o++] = 0xFF;
                s[o++] = (unsigned char)(0xD0 + ((seq - 1) & 7));
            }
            memcpy(s + o, p + begin[j], end[j] - begin[j]);
            o += end[j] - begin[j];
            seq++;
        }
    s[o++] = 0xFF;
    s[o++] = 0xD9;
    free(begin);
    *sub = s;
    *sub_len = o;
    *sub_x = c0 * L.mcu_w;
    *sub_y = r0 * L.mcu_h;
    return 1;
}
