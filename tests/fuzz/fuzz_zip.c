/* Fuzz target: the ZIP reader over arbitrary bytes - end records, the
 * central directory, ZIP64 extras, local headers, inflate and LZ4 - plus
 * the VFS mount built from the result.  Anything may fail, cleanly: no
 * crash, no sanitizer report, no hang, no allocation past the limits. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    void *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    dbr_file *file = NULL;
    if (dbr__file_from_memory(copy, size, "fuzz.zip", 0, &file) != DBR_OK)
        return 0;
    dbr_zip_options opts;
    dbr_zip_options_init(&opts);
    opts.max_entry_size = 1 << 20; /* keep inflation small */
    opts.max_entries = 1 << 16;
    dbr_zip *zip = NULL;
    int rc = dbr_zip_open_file(file, &opts, &zip);
    dbr_file_close(file);
    if (rc != DBR_OK)
        return 0;
    static unsigned char buf[1 << 20];
    size_t count = dbr_zip_count(zip);
    for (size_t i = 0; i < count && i < 64; i++) {
        dbr_zip_entry e;
        size_t got, index;
        if (dbr_zip_entries(zip, i, 1, &e) != DBR_OK)
            abort();
        if (dbr_zip_find(zip, e.name, &index) != DBR_OK || index < i)
            abort(); /* every name is found, at itself or a later duplicate */
        rc = dbr_zip_read(zip, i, buf, sizeof buf, &got);
        if (rc == DBR_OK && got != e.size)
            abort();
        dbr_file *f = NULL;
        if (dbr_zip_open_entry(zip, i, &f) == DBR_OK && dbr_file_size(f) != e.size)
            abort();
        dbr_file_close(f);
    }
    dbr_vfs *vfs = NULL;
    if (dbr_vfs_create(&vfs) == DBR_OK && dbr_vfs_mount_zip(vfs, zip) == DBR_OK) {
        char *list = NULL;
        size_t len, n;
        if (dbr_vfs_list(vfs, "", &list, &len, &n) == DBR_OK && n) {
            dbr_stat st;
            dbr_vfs_stat(vfs, list, &st); /* the first name */
        }
        dbr_free(list);
    }
    dbr_vfs_free(vfs);
    dbr_zip_close(zip);
    return 0;
}
