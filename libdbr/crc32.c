/* crc32.c - CRC-32 of ZIP and gzip (reflected polynomial 0xEDB88320).
 *
 * On x86-64 with PCLMULQDQ, blocks are folded 64 bytes at a time with
 * carry-less multiplication, then reduced with Barrett's method (Gopal et
 * al., "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ",
 * Intel, 2009); the constants are powers of x modulo the polynomial, bit-
 * reflected, as that paper derives them.  That runs at ~10x zlib's table
 * CRC, which matters because every ZIP read checks one.  Elsewhere, and
 * for short tails, zlib's crc32 does the work. */
#include "internal.h"

#include <zlib.h>

static uint32_t crc_zlib(uint32_t crc, const unsigned char *p, size_t len)
{
    uLong c = crc;
    while (len) { /* zlib takes uInt lengths */
        uInt n = len > 0x40000000u ? 0x40000000u : (uInt)len;
        c = crc32(c, p, n);
        p += n;
        len -= n;
    }
    return (uint32_t)c;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define FOLD_TARGET __attribute__((target("pclmul,sse4.1")))

/* x = x.lo * k.lo ^ x.hi * k.hi ^ data: one 128-bit fold step. */
FOLD_TARGET static __m128i fold(__m128i x, __m128i k, __m128i data)
{
    __m128i lo = _mm_clmulepi64_si128(x, k, 0x00);
    __m128i hi = _mm_clmulepi64_si128(x, k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(lo, hi), data);
}

/* len >= 64 and a multiple of 16; crc is the running value as zlib keeps
 * it (pre- and post-inverted), so results chain with crc_zlib. */
FOLD_TARGET static uint32_t crc_fold(uint32_t crc, const unsigned char *p, size_t len)
{
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
    const __m128i k5 = _mm_set_epi64x(0, 0x0163cd6124);
    const __m128i poly = _mm_set_epi64x(0x01f7011641, 0x01db710641); /* mu, P' */
    const __m128i low32 = _mm_set_epi32(0, 0, 0, -1);

    __m128i x0 = _mm_loadu_si128((const __m128i *)p);
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)~crc));
    p += 64;
    len -= 64;
    for (; len >= 64; p += 64, len -= 64) {
        x0 = fold(x0, k1k2, _mm_loadu_si128((const __m128i *)p));
        x1 = fold(x1, k1k2, _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = fold(x2, k1k2, _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = fold(x3, k1k2, _mm_loadu_si128((const __m128i *)(p + 48)));
    }
    x0 = fold(x0, k3k4, x1);
    x0 = fold(x0, k3k4, x2);
    x0 = fold(x0, k3k4, x3);
    for (; len >= 16; p += 16, len -= 16)
        x0 = fold(x0, k3k4, _mm_loadu_si128((const __m128i *)p));

    /* 128 bits to 64, then to 32, then Barrett reduction. */
    __m128i t = _mm_clmulepi64_si128(x0, k3k4, 0x10);
    x0 = _mm_xor_si128(_mm_srli_si128(x0, 8), t);
    t = _mm_srli_si128(x0, 4);
    x0 = _mm_clmulepi64_si128(_mm_and_si128(x0, low32), k5, 0x00);
    x0 = _mm_xor_si128(x0, t);
    t = _mm_clmulepi64_si128(_mm_and_si128(x0, low32), poly, 0x10);
    t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), poly, 0x00);
    x0 = _mm_xor_si128(x0, t);
    return ~(uint32_t)_mm_extract_epi32(x0, 1);
}

static int have_fold(void)
{
    static int cached = -1; /* a benign race: every thread stores the same */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}

uint32_t dbr__crc32(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
    if (len >= 64 && have_fold()) {
        size_t bulk = len & ~(size_t)15;
        crc = crc_fold(crc, p, bulk);
        p += bulk;
        len -= bulk;
    }
    return crc_zlib(crc, p, len);
}
#else
uint32_t dbr__crc32(uint32_t crc, const void *data, size_t len)
{
    return crc_zlib(crc, data, len);
}
#endif
