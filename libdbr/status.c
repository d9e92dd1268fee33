/* status.c - status codes, error detail per thread, version, dbr_free. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per thread, so concurrent calls (the GIL is released) never mix details. */
static __thread char last_error[1024];

int dbr_version_number(void) { return DBR_VERSION_NUMBER; }

const char *dbr_version_string(void)
{
#define DBR_STR2(x) #x
#define DBR_STR(x) DBR_STR2(x)
    return DBR_STR(DBR_VERSION_MAJOR) "." DBR_STR(DBR_VERSION_MINOR) "." DBR_STR(
        DBR_VERSION_PATCH);
}

const char *dbr_strerror(int code)
{
    switch (code) {
    case DBR_OK: return "success";
    case DBR_E_ARG: return "invalid argument";
    case DBR_E_NOMEM: return "out of memory";
    case DBR_E_IO: return "I/O error";
    case DBR_E_NOT_FOUND: return "not found";
    case DBR_E_CORRUPT: return "corrupt data";
    case DBR_E_UNSUPPORTED: return "unsupported feature";
    case DBR_E_TOO_SMALL: return "destination buffer too small";
    case DBR_E_LIMIT: return "safety limit exceeded";
    case DBR_E_IS_DIR: return "is a directory";
    case DBR_E_PERMISSION: return "permission denied";
    case DBR_E_EOF: return "end of stream";
    default: return "unknown status code";
    }
}

const char *dbr_last_error(void) { return last_error; }

void dbr_free(void *ptr) { free(ptr); }

int dbr__fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    /* Details quote names from untrusted archives: control characters
     * (terminal escapes, newlines forging log lines) become '?'. */
    for (unsigned char *c = (unsigned char *)last_error; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            *c = '?';
    return code;
}

int dbr__fail_errno(int err, const char *what, const char *path)
{
    int code;
    switch (err) {
    case ENOENT:
    case ENOTDIR: code = DBR_E_NOT_FOUND; break;
    case EACCES:
    case EPERM: code = DBR_E_PERMISSION; break;
    case EISDIR: code = DBR_E_IS_DIR; break;
    case ENOMEM: code = DBR_E_NOMEM; break;
    case EINVAL:
    case ENAMETOOLONG: code = DBR_E_ARG; break;
    default: code = DBR_E_IO; break;
    }
    return dbr__fail(code, "%s '%s': %s", what, path ? path : "", strerror(err));
}

void dbr__copy_last_error(char *dst, size_t cap)
{
    if (cap == 0)
        return;
    snprintf(dst, cap, "%s", last_error);
}

char *dbr__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (!copy) {
        dbr__fail(DBR_E_NOMEM, "out of memory copying a %zu-byte string", n);
        return NULL;
    }
    memcpy(copy, s, n);
    return copy;
}
