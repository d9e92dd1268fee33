/* check.h - a minimal assertion harness for the C unit tests: each failed
 * CHECK prints where and why, and main returns the failure count. */
#ifndef DBR_CHECK_H
#define DBR_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                         \
    do {                                                                    \
        check_count++;                                                      \
        if (!(cond)) {                                                      \
            check_failures++;                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n",   \
                    __FILE__, __LINE__, #cond, dbr_last_error());           \
        }                                                                   \
    } while (0)

#define CHECK_RC(expr, want) CHECK((expr) == (want))

#define CHECK_STR(a, b) CHECK(strcmp((a), (b)) == 0)

static int check_report(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}

#endif
