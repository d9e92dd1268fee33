/* zip_vfs.c - a ZIP archive as a VFS mount: the zip side of archive_vfs.c,
 * which builds the directory tree from the entry names. */
#include "internal.h"

static const char *zip_path(const void *zip) { return dbr_zip_path(zip); }

static int zip_entry(const void *zip, size_t i, const char **name, size_t *len, int *is_dir)
{
    dbr_zip_entry e;
    int rc = dbr_zip_entries(zip, i, 1, &e);
    if (rc == DBR_OK) {
        *name = e.name;
        *len = (size_t)e.name_len;
        *is_dir = e.is_dir != 0;
    }
    return rc;
}

static int zip_open(const void *zip, size_t i, dbr_file **out)
{
    return dbr_zip_open_entry(zip, i, out);
}

static int zip_stat(const void *zip, size_t i, uint64_t *size, int64_t *mtime)
{
    dbr_zip_entry e;
    int rc = dbr_zip_entries(zip, i, 1, &e);
    if (rc == DBR_OK) {
        *size = e.size;
        *mtime = e.mtime;
    }
    return rc;
}

static const dbr__archive_ops zip_ops = {zip_path, zip_entry, zip_open, zip_stat,
                                         dbr__zip_release};

int dbr_vfs_mount_zip(dbr_vfs *vfs, dbr_zip *zip)
{
    if (!vfs || !zip)
        return dbr__fail(DBR_E_ARG, "dbr_vfs_mount_zip: NULL argument");
    dbr_zip_retain(zip); /* the mount's reference, dropped by its release */
    return dbr__vfs_mount_archive(vfs, &zip_ops, zip, dbr_zip_count(zip));
}
