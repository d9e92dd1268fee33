/* crc32c.c - CRC-32C (Castagnoli), the checksum of TFRecord framing.
 *
 * Three paths, chosen once at run time: SSE4.2's crc32 instruction on x86-64
 * and the ARMv8 CRC extension on aarch64, each run as three interleaved
 * streams (the instruction has a 3-cycle latency but issues every cycle), and
 * a portable slicing-by-8 table loop.  The streams are joined with the
 * linearity of CRCs: crc(A||B) = shift(crc(A), |B|) ^ crc0(B), where shift
 * appends |B| zero bytes; for the fixed stream length the shift is a linear
 * map on 32 bits, kept as four byte tables built at first use. */
#include "internal.h"

#include <pthread.h>
#include <string.h>

#define POLY 0x82f63b78u /* reflected Castagnoli polynomial */
#define STREAM 2048      /* bytes per stream in one interleaved block */

static uint32_t slice[8][256];
static uint32_t shift_tab[4][256]; /* state -> state after STREAM zero bytes */
static int have_hw;
static pthread_once_t once = PTHREAD_ONCE_INIT;
#if defined(__aarch64__) && defined(__linux__)
static int arm_has_crc32(void);
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
#elif defined(__aarch64__) && defined(__linux__)
    have_hw = arm_has_crc32();
#endif
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t hw_update(uint32_t crc, const unsigned char *p,
                                                           size_t n)
{
    uint64_t c0 = crc;
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
            c0 = __builtin_aarch64_crc32cx(c0, a);
            c1 = __builtin_aarch64_crc32cx(c1, b);
            c2 = __builtin_aarch64_crc32cx(c2, c);
        }
        c0 = shift_stream(shift_stream(c0) ^ c1) ^ c2;
        p += 2 * STREAM;
        n -= 3 * STREAM;
    }
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t a;
        memcpy(&a, p, 8);
        c0 = __builtin_aarch64_crc32cx(c0, a);
    }
    while (n--)
        c0 = __builtin_aarch64_crc32cb(c0, *p++);
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
