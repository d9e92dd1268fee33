/* path.c - VFS path normalisation: the one place that decides whether a
 * path stays inside a mount root. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Normalises into out, which has room for strlen(path) + 1 bytes (the result
 * is never longer than the input).  Returns the length or a negative status. */
static long normalize_into(const char *path, char *out)
{
    size_t len = 0;
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        const char *start = p;
        while (*p && *p != '/')
            p++;
        size_t n = (size_t)(p - start);
        if (n == 0 || (n == 1 && start[0] == '.'))
            continue;
        if (n == 2 && start[0] == '.' && start[1] == '.') {
            if (len == 0)
                return dbr__fail(DBR_E_ARG, "path '%s' climbs above the root with '..'",
                                 path);
            while (len > 0 && out[len - 1] != '/')
                len--;
            if (len > 0)
                len--; /* the separator before the dropped component */
            continue;
        }
        if (len > 0)
            out[len++] = '/';
        memcpy(out + len, start, n);
        len += n;
    }
    out[len] = '\0';
    return (long)len;
}

int dbr_path_normalize(const char *path, char *dst, size_t cap, size_t *out_len)
{
    if (!path || !out_len || (!dst && cap))
        return dbr__fail(DBR_E_ARG, "dbr_path_normalize: NULL argument");
    size_t in_len = strlen(path);
    char stack_buf[512];
    char *tmp = in_len < sizeof stack_buf ? stack_buf : malloc(in_len + 1);
    if (!tmp)
        return dbr__fail(DBR_E_NOMEM, "out of memory normalising a %zu-byte path",
                         in_len);
    long len = normalize_into(path, tmp);
    int rc = DBR_OK;
    if (len < 0) {
        rc = (int)len;
    } else {
        *out_len = (size_t)len;
        if ((size_t)len + 1 > cap)
            rc = dbr__fail(DBR_E_TOO_SMALL, "normalised path needs %ld bytes plus NUL",
                           len);
        else
            memcpy(dst, tmp, (size_t)len + 1);
    }
    if (tmp != stack_buf)
        free(tmp);
    return rc;
}
