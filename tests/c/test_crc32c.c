/* CRC-32C: published check values, and the hardware path against the table
 * path at every length and alignment around the interleaved block size. */
#include "dbr.h"
#include "internal.h"
#include "check.h"

#include <stdlib.h>

int main(void)
{
    CHECK(dbr_crc32c(0, "123456789", 9) == 0xe3069283u);
    unsigned char zeros[32] = {0}, ones[32];
    memset(ones, 0xff, sizeof ones);
    CHECK(dbr_crc32c(0, zeros, 32) == 0x8a9136aau); /* RFC 3720 B.4 */
    CHECK(dbr_crc32c(0, ones, 32) == 0x62a8ab43u);
    CHECK(dbr_crc32c(0, NULL, 0) == 0);
    CHECK(dbr_crc32c_mask(0) == 0xa282ead8u);

    size_t big = 3 * 2048 * 3 + 77;
    unsigned char *buf = malloc(big + 8);
    unsigned s = 12345;
    for (size_t i = 0; i < big + 8; i++) {
        s = s * 1103515245u + 12345u;
        buf[i] = (unsigned char)(s >> 16);
    }
    size_t lens[] = {0, 1, 7, 8, 9, 6143, 6144, 6145, 12288, 12300, big};
    for (size_t a = 0; a < 8; a++)
        for (size_t k = 0; k < sizeof lens / sizeof *lens; k++)
            CHECK(dbr_crc32c(0, buf + a, lens[k]) == dbr__crc32c_sw(0, buf + a, lens[k]));
    /* Around the threshold and the 256-byte step of the folding path. */
    for (size_t len = 1000; len < 1800; len += 3)
        CHECK(dbr_crc32c(0x1234567u, buf + len % 8, len) ==
              dbr__crc32c_sw(0x1234567u, buf + len % 8, len));
    /* Extending in pieces equals one pass. */
    uint32_t whole = dbr_crc32c(0, buf, big);
    CHECK(dbr_crc32c(dbr_crc32c(0, buf, 1000), buf + 1000, big - 1000) == whole);
    free(buf);
    printf("hardware CRC-32C: %d\n", dbr_crc32c_hardware());
    return check_report("test_crc32c");
}
