/* Compiled against dbr.h and libdbr.so alone, like a user's program. */
#include "dbr.h"

#include <stdio.h>
#include <string.h>

int main(void)
{
    if (dbr_version_number() != DBR_VERSION_NUMBER) {
        fprintf(stderr, "header %d != library %d\n", DBR_VERSION_NUMBER,
                dbr_version_number());
        return 1;
    }
    dbr_file *f = NULL;
    if (dbr_file_open("/nonexistent/dbr", &f) != DBR_E_NOT_FOUND || f != NULL)
        return 1;
    if (strlen(dbr_last_error()) == 0)
        return 1;
    printf("test_public_api: libdbr %s ok\n", dbr_version_string());
    return 0;
}
