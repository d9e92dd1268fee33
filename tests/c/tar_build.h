/* tar_build.h - builds tar archives in memory for the C tests: ustar, GNU
 * and V7 headers with correct checksums, member data padded to blocks, and
 * the end-of-archive blocks.  Header-only: each test includes it once. */
#ifndef DBR_TAR_BUILD_H
#define DBR_TAR_BUILD_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* An archive being built in memory. */
typedef struct tarbuf {
    unsigned char *b;
    size_t len, cap;
} tarbuf;

static void put(tarbuf *t, const void *data, size_t n)
{
    if (t->len + n > t->cap) {
        t->cap = (t->len + n) * 2 + 4096;
        t->b = realloc(t->b, t->cap);
    }
    memcpy(t->b + t->len, data, n);
    t->len += n;
}

static void pad(tarbuf *t)
{
    static const unsigned char zeros[512];
    if (t->len % 512)
        put(t, zeros, 512 - t->len % 512);
}

/* width - 1 octal digits and a NUL, as tar writes numeric fields. */
static void octal(unsigned char *dst, int width, uint64_t v)
{
    dst[width - 1] = 0;
    for (int i = width - 2; i >= 0; i--, v >>= 3)
        dst[i] = (unsigned char)('0' + (v & 7));
}

/* A header block; magic 0: V7, 1: POSIX ustar, 2: GNU. */
static void header(tarbuf *t, const char *name, const char *prefix, char type, size_t size,
                   int magic)
{
    unsigned char h[512];
    memset(h, 0, sizeof h);
    memcpy(h, name, strlen(name) < 100 ? strlen(name) : 100);
    octal(h + 100, 8, 0644);
    octal(h + 108, 8, 0);
    octal(h + 116, 8, 0);
    octal(h + 124, 12, size);
    octal(h + 136, 12, 1700000000);
    h[156] = (unsigned char)type;
    if (magic == 1)
        memcpy(h + 257, "ustar\0" "00", 8);
    else if (magic == 2)
        memcpy(h + 257, "ustar  ", 8);
    if (prefix)
        memcpy(h + 345, prefix, strlen(prefix));
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    octal(h + 148, 7, sum);
    put(t, h, sizeof h);
}

static void member(tarbuf *t, const char *name, const void *data, size_t n, int magic)
{
    header(t, name, NULL, '0', n, magic);
    put(t, data, n);
    pad(t);
}

static void finish(tarbuf *t)
{
    static const unsigned char zeros[1024];
    put(t, zeros, sizeof zeros);
}

#endif
