/* Status codes, error detail and versions. */
#include "dbr.h"
#include "internal.h"
#include "check.h"

#include <pthread.h>

static void *other_thread(void *arg)
{
    (void)arg;
    dbr__fail(DBR_E_IO, "detail from another thread");
    return NULL;
}

int main(void)
{
    CHECK(dbr_version_number() == DBR_VERSION_NUMBER);
    CHECK(DBR_VERSION_NUMBER ==
          DBR_VERSION_MAJOR * 10000 + DBR_VERSION_MINOR * 100 + DBR_VERSION_PATCH);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", DBR_VERSION_MAJOR, DBR_VERSION_MINOR,
             DBR_VERSION_PATCH);
    CHECK_STR(dbr_version_string(), want);

    /* Pinned values: a change here is an ABI break. */
    CHECK(DBR_OK == 0 && DBR_E_ARG == -1 && DBR_E_NOMEM == -2 && DBR_E_IO == -3);
    CHECK(DBR_E_NOT_FOUND == -4 && DBR_E_CORRUPT == -5 && DBR_E_UNSUPPORTED == -6);
    CHECK(DBR_E_TOO_SMALL == -7 && DBR_E_LIMIT == -8 && DBR_E_IS_DIR == -9);
    CHECK(DBR_E_PERMISSION == -10 && DBR_E_EOF == -11);

    for (int code = 0; code >= -11; code--)
        CHECK(strcmp(dbr_strerror(code), "unknown status code") != 0);
    CHECK_STR(dbr_strerror(-999), "unknown status code");
    CHECK_STR(dbr_strerror(DBR_E_CORRUPT), "corrupt data");

    CHECK(dbr__fail(DBR_E_CORRUPT, "entry %s at offset %d", "a.jpg", 42) == DBR_E_CORRUPT);
    CHECK_STR(dbr_last_error(), "entry a.jpg at offset 42");
    /* Names from hostile archives may hold control characters (terminal
     * escapes, newlines that forge log lines): the detail shows them as
     * '?', keeping other bytes (UTF-8 names) as they are. */
    dbr__fail(DBR_E_CORRUPT, "member '%s'", "a\nERROR\x1b[2J\x7f\tcaf\xc3\xa9");
    CHECK_STR(dbr_last_error(), "member 'a?ERROR?[2J??caf\xc3\xa9'");
    CHECK(dbr__fail(DBR_E_CORRUPT, "entry %s at offset %d", "a.jpg", 42) == DBR_E_CORRUPT);

    /* Thread-local: another thread's failure leaves ours alone. */
    pthread_t t;
    pthread_create(&t, NULL, other_thread, NULL);
    pthread_join(t, NULL);
    CHECK_STR(dbr_last_error(), "entry a.jpg at offset 42");

    dbr_free(NULL);
    return check_report("test_status");
}
