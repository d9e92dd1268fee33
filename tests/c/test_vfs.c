/* The VFS: ordered mounts, lookups, listing, confinement, unmounting. */
#include "dbr.h"
#include "check.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[64];

static void write_file(const char *rel, const char *text)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *fp = fopen(p, "wb");
    fputs(text, fp);
    fclose(fp);
}

static void make_dir(const char *rel)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    mkdir(p, 0755);
}

static void read_text(dbr_vfs *vfs, const char *path, const char *want)
{
    dbr_file *f = NULL;
    char buf[64] = {0};
    size_t got = 0;
    CHECK_RC(dbr_vfs_open(vfs, path, &f), DBR_OK);
    if (!f)
        return;
    CHECK_RC(dbr_file_read_all(f, buf, sizeof buf - 1, &got), DBR_OK);
    CHECK_STR(buf, want);
    dbr_file_close(f);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/dbr_test_vfs_XXXXXX");
    if (!mkdtemp(root))
        return 2;
    make_dir("first");
    make_dir("second");
    make_dir("first/sub");
    make_dir("second/sub");
    write_file("first/a.txt", "first a");
    write_file("second/a.txt", "second a");
    write_file("second/b.txt", "second b");
    write_file("first/sub/x.txt", "x");
    write_file("second/sub/y.txt", "y");
    write_file("secret.txt", "outside");

    char first[128], second[128];
    snprintf(first, sizeof first, "%s/first", root);
    snprintf(second, sizeof second, "%s/second/", root);

    dbr_vfs *vfs = NULL;
    CHECK_RC(dbr_vfs_create(&vfs), DBR_OK);
    dbr_file *f = NULL;
    CHECK_RC(dbr_vfs_open(vfs, "a.txt", &f), DBR_E_NOT_FOUND); /* no mounts */
    CHECK_RC(dbr_vfs_mount_dir(vfs, first), DBR_OK);
    CHECK_RC(dbr_vfs_mount_dir(vfs, second), DBR_OK);
    CHECK(dbr_vfs_mount_count(vfs) == 2);
    CHECK(dbr_vfs_mount_is_dir(vfs, 0) == 1);
    CHECK_RC(dbr_vfs_mount_is_dir(vfs, 5), DBR_E_ARG);

    /* First mount wins; later mounts fill the gaps. */
    read_text(vfs, "a.txt", "first a");
    read_text(vfs, "/b.txt", "second b");
    read_text(vfs, "sub/../sub/./y.txt", "y");
    CHECK_RC(dbr_vfs_open(vfs, "nope.txt", &f), DBR_E_NOT_FOUND);
    CHECK(strstr(dbr_last_error(), "nope.txt") != NULL);
    CHECK_RC(dbr_vfs_open(vfs, "sub", &f), DBR_E_IS_DIR);

    /* Confinement: nothing outside the mount roots is reachable. */
    CHECK_RC(dbr_vfs_open(vfs, "../secret.txt", &f), DBR_E_ARG);
    CHECK_RC(dbr_vfs_exists(vfs, "../secret.txt"), DBR_E_ARG);
    CHECK_RC(dbr_vfs_open(vfs, "/../secret.txt", &f), DBR_E_ARG);
    char abs_secret[160];
    snprintf(abs_secret, sizeof abs_secret, "%s/secret.txt", root);
    CHECK_RC(dbr_vfs_open(vfs, abs_secret, &f), DBR_E_NOT_FOUND);

    CHECK(dbr_vfs_exists(vfs, "a.txt") == 1);
    CHECK(dbr_vfs_exists(vfs, "sub/x.txt") == 1);
    CHECK(dbr_vfs_exists(vfs, "sub") == 1);
    CHECK(dbr_vfs_exists(vfs, "zzz") == 0);
    dbr_stat st;
    CHECK_RC(dbr_vfs_stat(vfs, "b.txt", &st), DBR_OK);
    CHECK(st.size == 8 && st.is_dir == 0 && st.mount_index == 1);
    CHECK_RC(dbr_vfs_stat(vfs, "sub", &st), DBR_OK);
    CHECK(st.is_dir == 1 && st.mount_index == 0);

    /* Listing merges mounts, sorted, without duplicates. */
    char *names = NULL;
    size_t len = 0, count = 0;
    CHECK_RC(dbr_vfs_list(vfs, "", &names, &len, &count), DBR_OK);
    CHECK(count == 3);
    if (names && count == 3) {
        CHECK_STR(names, "a.txt");
        CHECK_STR(names + 6, "b.txt");
        CHECK_STR(names + 12, "sub/");
        CHECK(len == 17);
    }
    dbr_free(names);
    CHECK_RC(dbr_vfs_list(vfs, "sub", &names, &len, &count), DBR_OK);
    CHECK(count == 2);
    dbr_free(names);
    CHECK_RC(dbr_vfs_list(vfs, "none", &names, &len, &count), DBR_E_NOT_FOUND);
    CHECK_RC(dbr_vfs_list(vfs, "..", &names, &len, &count), DBR_E_ARG);

    /* A file opened before unmount stays readable. */
    CHECK_RC(dbr_vfs_open(vfs, "a.txt", &f), DBR_OK);
    CHECK_RC(dbr_vfs_unmount(vfs, 0), DBR_OK);
    char buf[16] = {0};
    size_t got;
    CHECK_RC(dbr_file_read_all(f, buf, sizeof buf, &got), DBR_OK);
    CHECK_STR(buf, "first a");
    dbr_file_close(f);
    read_text(vfs, "a.txt", "second a");
    CHECK_RC(dbr_vfs_unmount(vfs, 3), DBR_E_ARG);

    char missing[160];
    snprintf(missing, sizeof missing, "%s/nonexistent", root);
    CHECK_RC(dbr_vfs_mount_dir(vfs, missing), DBR_E_NOT_FOUND);
    dbr_vfs_free(vfs);
    dbr_vfs_free(NULL);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        return 2;
    return check_report("test_vfs");
}
