/* tar_vfs.c - a tar archive as a VFS mount: the tar side of archive_vfs.c,
 * which builds the directory tree from the member names. */
#include "internal.h"

static const char *tar_path(const void *tar) { return dbr_tar_path(tar); }

static int tar_entry(const void *tar, size_t i, const char **name, size_t *len, int *is_dir)
{
    dbr_tar_entry e;
    int rc = dbr_tar_entries(tar, i, 1, &e);
    if (rc == DBR_OK) {
        *name = e.name;
        *len = (size_t)e.name_len;
        *is_dir = e.is_dir != 0;
    }
    return rc;
}

static int tar_open(const void *tar, size_t i, dbr_file **out)
{
    return dbr_tar_open_entry(tar, i, out);
}

static int tar_stat(const void *tar, size_t i, uint64_t *size, int64_t *mtime)
{
    dbr_tar_entry e;
    int rc = dbr_tar_entries(tar, i, 1, &e);
    if (rc == DBR_OK) {
        *size = e.size;
        *mtime = e.mtime;
    }
    return rc;
}

static const dbr__archive_ops tar_ops = {tar_path, tar_entry, tar_open, tar_stat,
                                         dbr__tar_release};

int dbr_vfs_mount_tar(dbr_vfs *vfs, dbr_tar *tar)
{
    if (!vfs || !tar)
        return dbr__fail(DBR_E_ARG, "dbr_vfs_mount_tar: NULL argument");
    dbr_tar_retain(tar); /* the mount's reference, dropped by its release */
    return dbr__vfs_mount_archive(vfs, &tar_ops, tar, dbr_tar_count(tar));
}
