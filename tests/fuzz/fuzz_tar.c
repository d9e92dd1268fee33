/* Fuzz target: the tar reader over arbitrary bytes - header checksums,
 * octal and base-256 numbers, pax records, GNU long names, the ustar
 * prefix - then reads, the saved index loaded back, and the VFS mount.
 * The reader needs a path, so the input goes to a temporary file (removed
 * after each run).
 * Anything may fail, cleanly: no crash, no sanitizer report, no hang, no
 * allocation past the limits. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/dbr_fuzz_tar_%ld.tar", (long)getpid());
    }
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return 0;
    if (size && fwrite(data, 1, size, fp) != size) {
        fclose(fp);
        return 0;
    }
    fclose(fp);
    dbr_tar_options opts;
    dbr_tar_options_init(&opts);
    opts.max_header_size = 1 << 16;
    opts.max_members = 1 << 12;
    /* Opened twice: refusing damage, and keeping the intact prefix; the
     * second must agree with the first wherever the first succeeds. */
    dbr_tar *tar = NULL;
    int strict_rc = dbr_tar_open(path, &opts, &tar);
    size_t strict_count = dbr_tar_count(tar);
    dbr_tar_close(tar);
    tar = NULL;
    opts.keep_intact_prefix = 1;
    int rc = dbr_tar_open(path, &opts, &tar);
    if (strict_rc == DBR_OK && (rc != DBR_OK || dbr_tar_count(tar) != strict_count ||
                                dbr_tar_damage(tar)))
        abort(); /* an intact tar reads the same both ways */
    if (strict_rc != DBR_OK && strict_rc != DBR_E_CORRUPT && rc != strict_rc)
        abort(); /* only damage is kept, never a limit or an I/O error */
    if (strict_rc == DBR_E_CORRUPT && rc == DBR_OK && (!dbr_tar_damage(tar) || !dbr_tar_count(tar)))
        abort(); /* a kept prefix has members and a reason */
    if (rc != DBR_OK) {
        unlink(path);
        return 0;
    }
    static unsigned char buf[1 << 16];
    size_t count = dbr_tar_count(tar);
    for (size_t i = 0; i < count && i < 64; i++) {
        dbr_tar_entry e;
        size_t got, index;
        if (dbr_tar_entries(tar, i, 1, &e) != DBR_OK)
            abort();
        if (e.offset > size || e.size > size - e.offset)
            abort(); /* every member lies inside the file */
        if (dbr_tar_find(tar, e.name, &index) != DBR_OK || index < i)
            abort(); /* found at itself or a later duplicate */
        rc = dbr_tar_read(tar, i, buf, sizeof buf, &got);
        if (rc == DBR_OK && (got != e.size || memcmp(buf, data + e.offset, got) != 0))
            abort();
    }
    void *index = NULL;
    size_t index_len = 0;
    rc = dbr_tar_save_index(tar, &index, &index_len);
    if ((rc == DBR_OK) == (dbr_tar_damage(tar) != NULL))
        abort(); /* an index is kept exactly for intact tars */
    if (rc == DBR_OK) {
        dbr_tar *again = NULL;
        if (dbr_tar_open_indexed(path, &opts, index, index_len, &again) != DBR_OK ||
            dbr_tar_count(again) != count)
            abort(); /* a fresh index always loads */
        dbr_tar_close(again);
    }
    dbr_free(index);
    dbr_vfs *vfs = NULL;
    if (dbr_vfs_create(&vfs) == DBR_OK && dbr_vfs_mount_tar(vfs, tar) == DBR_OK) {
        char *list = NULL;
        size_t len, n;
        if (dbr_vfs_list(vfs, "", &list, &len, &n) == DBR_OK && n) {
            dbr_file *f = NULL;
            if (dbr_vfs_open(vfs, list, &f) == DBR_OK) { /* the first name */
                size_t got;
                dbr_file_pread(f, buf, sizeof buf, 0, &got);
                dbr_file_close(f);
            }
        }
        dbr_free(list);
    }
    dbr_vfs_free(vfs);
    dbr_tar_close(tar);
    unlink(path);
    return 0;
}
