/* Fuzz target: path normalisation must never escape the root, overflow or
 * return a path with '.', '..' or empty components. */
#include "dbr.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *path = malloc(size + 1);
    if (!path)
        return 0;
    memcpy(path, data, size);
    path[size] = '\0';
    char out[4096];
    size_t len = 0;
    if (dbr_path_normalize(path, out, sizeof out, &len) == DBR_OK) {
        if (len != strlen(out) || (len && (out[0] == '/' || out[len - 1] == '/')))
            abort();
        for (char *c = strtok(out, "/"); c; c = strtok(NULL, "/"))
            if (!strcmp(c, ".") || !strcmp(c, ".."))
                abort();
    }
    free(path);
    return 0;
}
