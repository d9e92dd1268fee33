/* crc32c.c - CRC-32C (Castagnoli), the checksum of TFRecord framing.
 *
 * Three paths, chosen once at run time: SSE4.2's crc32 instruction on x86-64
 * and the ARMv8 CRC extension on aarch64, each run as three interleaved
 * streams (the instruction has a 3-cycle latency but issues every cycle), and
 * a portable slicing-by-8 table loop.  The streams are joined with the
 * linearity of CRCs: crc(A||B) = shift(crc(A), |B|) ^ crc0(B), where shift
 * appends |B| zero bytes; for the fixed stream length the shift is a linear
 * map on 32 bits, kept as four byte tables built at first use.
 *
 * On x86-64 CPUs with AVX-512 and VPCLMULQDQ, long buffers first go through
 * carry-less multiplication folding (the method of Intel's "Fast CRC
 * Computation for Generic Polynomials Using PCLMULQDQ"): 256 bytes per step
 * in four 512-bit accumulators, about three times the speed of the crc32
 * instruction, so checking a TFRecord costs a fraction of reading it.  The
 * folding constants are x^n mod P, computed at first use. */
#include "internal.h"

#include <pthread.h>
#include <string.h>

#define POLY 0x82f63b78u /* reflected Castagnoli polynomial */
#define STREAM 2048      /* bytes per stream in one interleaved block */

static uint32_t slice[8][256];
static uint32_t shift_tab[4][256]; /* state -> state after STREAM zero bytes */
static int have_hw, have_fold;
static pthread_once_t once = PTHREAD_ONCE_INIT;
#if defined(__aarch64__) && defined(__linux__)
static int arm_has_crc32(void);
#endif
#if defined(__x86_64__) && defined(__GNUC__)
static void init_fold(void);
#endif

/* The raw register update (no pre/post inversion), byte at a time. */
static uint32_t sw_bytes(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n--)
        crc = slice[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

static uint32_t sw_update(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n && ((uintptr_t)p & 7)) {
        crc = slice[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        n--;
    }
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif
        lo ^= crc;
        crc = slice[7][lo & 0xff] ^ slice[6][(lo >> 8) & 0xff] ^
              slice[5][(lo >> 16) & 0xff] ^ slice[4][lo >> 24] ^
              slice[3][hi & 0xff] ^ slice[2][(hi >> 8) & 0xff] ^
              slice[1][(hi >> 16) & 0xff] ^ slice[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    return sw_bytes(crc, p, n);
}

static uint32_t shift_stream(uint32_t crc)
{
    return shift_tab[0][crc & 0xff] ^ shift_tab[1][(crc >> 8) & 0xff] ^
           shift_tab[2][(crc >> 16) & 0xff] ^ shift_tab[3][crc >> 24];
}

static void init_tables(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (POLY & (0u - (c & 1)));
        slice[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            slice[t][i] = (slice[t - 1][i] >> 8) ^ slice[0][slice[t - 1][i] & 0xff];
    /* The shift is linear: build it from the 32 basis states. */
    static const unsigned char zeros[STREAM];
    uint32_t basis[32];
    for (int b = 0; b < 32; b++)
        basis[b] = sw_bytes(1u << b, zeros, STREAM);
    for (int t = 0; t < 4; t++)
        for (int v = 0; v < 256; v++) {
            uint32_t s = 0;
            for (int b = 0; b < 8; b++)
                if (v & (1 << b))
                    s ^= basis[t * 8 + b];
            shift_tab[t][v] = s;
        }
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    have_hw = __builtin_cpu_supports("sse4.2") != 0;
    have_fold = have_hw && __builtin_cpu_supports("avx512f") &&
                __builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("pclmul");
    init_fold();
#elif defined(__aarch64__) && defined(__linux__)
    have_hw = arm_has_crc32();
#endif
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* Folding a 16-byte block forward by k blocks multiplies its two halves by
 * x^(128k + 63) and x^(128k - 1) mod P (the -1 undoes the one-bit shift of
 * a carry-less product of bit-reflected operands).  fold_k[k] holds both,
 * bit-reflected in the high half of a qword, for k = 1..4 and 16. */
static uint64_t fold_k[17][2];

static uint32_t xpow_mod(uint32_t n) /* x^n mod P, bit-reflected */
{
    uint32_t r = 0x80000000u; /* x^0 */
    while (n--)
        r = (r >> 1) ^ (POLY & (0u - (r & 1)));
    return r;
}

static void init_fold(void)
{
    for (uint32_t k = 1; k <= 16; k++) {
        fold_k[k][0] = (uint64_t)xpow_mod(128 * k + 63) << 32;
        fold_k[k][1] = (uint64_t)xpow_mod(128 * k - 1) << 32;
    }
}

#define FOLD_TARGET __attribute__((target("avx512f,avx512vl,vpclmulqdq,pclmul,sse4.2,crc32")))

FOLD_TARGET static __m512i fold512(__m512i acc, __m512i k, __m512i next)
{
    return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(acc, k, 0x00),
                                     _mm512_clmulepi64_epi128(acc, k, 0x11), next, 0x96);
}

FOLD_TARGET static __m128i fold128(__m128i acc, int k, __m128i next)
{
    __m128i kk = _mm_loadu_si128((const __m128i *)fold_k[k]);
    return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(acc, kk, 0x00),
                                       _mm_clmulepi64_si128(acc, kk, 0x11)), next);
}

/* Consumes a multiple of 256 bytes (n >= 256) and returns the register
 * state after them, starting from crc. */
FOLD_TARGET static uint32_t fold_update(uint32_t crc, const unsigned char *p, size_t n)
{
    __m512i a0 = _mm512_loadu_si512(p), a1 = _mm512_loadu_si512(p + 64);
    __m512i a2 = _mm512_loadu_si512(p + 128), a3 = _mm512_loadu_si512(p + 192);
    /* The incoming state joins the message: XOR it into the first 4 bytes. */
    a0 = _mm512_xor_si512(a0, _mm512_castsi128_si512(_mm_cvtsi32_si128((int)crc)));
    __m512i k16 = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)fold_k[16]));
    for (p += 256, n -= 256; n >= 256; p += 256, n -= 256) {
        a0 = fold512(a0, k16, _mm512_loadu_si512(p));
        a1 = fold512(a1, k16, _mm512_loadu_si512(p + 64));
        a2 = fold512(a2, k16, _mm512_loadu_si512(p + 128));
        a3 = fold512(a3, k16, _mm512_loadu_si512(p + 192));
    }
    __m512i k4 = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)fold_k[4]));
    a1 = fold512(a0, k4, a1);
    a2 = fold512(a1, k4, a2);
    a3 = fold512(a2, k4, a3);
    __m128i x = fold128(_mm512_extracti32x4_epi32(a3, 0), 3, _mm512_extracti32x4_epi32(a3, 3));
    x = fold128(_mm512_extracti32x4_epi32(a3, 1), 2, x);
    x = fold128(_mm512_extracti32x4_epi32(a3, 2), 1, x);
    /* What is left is congruent to the message: its CRC from zero is the answer. */
    uint64_t c = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(x));
    return (uint32_t)_mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(x, 1));
}

/* clang 20+ no longer implies the crc32 feature from sse4.2: name both. */
__attribute__((target("sse4.2,crc32"))) static uint32_t hw_update(uint32_t crc,
                                                                 const unsigned char *p, size_t n)
{
    uint64_t c0 = crc;
    if (have_fold && n >= 1024) {
        size_t bulk = n & ~(size_t)255;
        c0 = fold_update(crc, p, bulk);
        p += bulk;
        n -= bulk;
    }
    while (n && ((uintptr_t)p & 7)) {
        c0 = _mm_crc32_u8((uint32_t)c0, *p++);
        n--;
    }
    while (n >= 3 * STREAM) {
        uint64_t c1 = 0, c2 = 0;
        const unsigned char *end = p + STREAM;
        for (; p < end; p += 8) {
            uint64_t a, b, c;
            memcpy(&a, p, 8);
            memcpy(&b, p + STREAM, 8);
            memcpy(&c, p + 2 * STREAM, 8);
            c0 = _mm_crc32_u64(c0, a);
            c1 = _mm_crc32_u64(c1, b);
            c2 = _mm_crc32_u64(c2, c);
        }
        c0 = shift_stream(shift_stream((uint32_t)c0) ^ (uint32_t)c1) ^ (uint32_t)c2;
        p += 2 * STREAM;
        n -= 3 * STREAM;
    }
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t a;
        memcpy(&a, p, 8);
        c0 = _mm_crc32_u64(c0, a);
    }
    while (n--)
        c0 = _mm_crc32_u8((uint32_t)c0, *p++);
    return (uint32_t)c0;
}
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
static int arm_has_crc32(void) { return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0; }
/* The CRC32C instructions under GCC's and clang's names for them. */
#if defined(__clang__)
#define CRC32CX __builtin_arm_crc32cd
#define CRC32CB __builtin_arm_crc32cb
#else
#define CRC32CX __builtin_aarch64_crc32cx
#define CRC32CB __builtin_aarch64_crc32cb
#endif

__attribute__((target("+crc"))) static uint32_t hw_update(uint32_t crc, const unsigned char *p,
                                                         size_t n)
{
    uint32_t c0 = crc;
    while (n >= 3 * STREAM) {
        uint32_t c1 = 0, c2 = 0;
        const unsigned char *end = p + STREAM;
        for (; p < end; p += 8) {
            uint64_t a, b, c;
            memcpy(&a, p, 8);
            memcpy(&b, p + STREAM, 8);
            memcpy(&c, p + 2 * STREAM, 8);
            c0 = CRC32CX(c0, a);
            c1 = CRC32CX(c1, b);
            c2 = CRC32CX(c2, c);
        }
        c0 = shift_stream(shift_stream(c0) ^ c1) ^ c2;
        p += 2 * STREAM;
        n -= 3 * STREAM;
    }
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t a;
        memcpy(&a, p, 8);
        c0 = CRC32CX(c0, a);
    }
    while (n--)
        c0 = CRC32CB(c0, *p++);
    return c0;
}
#else
static uint32_t hw_update(uint32_t crc, const unsigned char *p, size_t n)
{
    return sw_update(crc, p, n);
}
#endif

uint32_t dbr__crc32c_sw(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&once, init_tables);
    return ~sw_update(~crc, data, len);
}

uint32_t dbr_crc32c(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&once, init_tables);
    if (!data)
        return crc;
    return have_hw ? ~hw_update(~crc, data, len) : ~sw_update(~crc, data, len);
}

int dbr_crc32c_hardware(void)
{
    pthread_once(&once, init_tables);
    return have_hw;
}

uint32_t dbr_crc32c_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}
