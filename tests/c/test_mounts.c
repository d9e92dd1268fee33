/* Directory mounts keep their promise: a symlink that leads out of the
 * mount is refused (with openat2 and with the user-space walk), one that
 * stays inside works, and follow_symlinks follows anything.  Also files
 * that report size 0 but hold content (procfs). */
#include "dbr.h"
#include "internal.h"
#include "check.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[64], mnt[128];

static void put(const char *rel, const char *text)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *fp = fopen(p, "wb");
    fputs(text, fp);
    fclose(fp);
}

static void link_at(const char *target, const char *rel)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    CHECK(symlink(target, p) == 0);
}

static int open_text(dbr_vfs *vfs, const char *path, char *buf, size_t cap)
{
    dbr_file *f = NULL;
    size_t got = 0;
    memset(buf, 0, cap);
    int rc = dbr_vfs_open(vfs, path, &f);
    if (rc == DBR_OK)
        rc = dbr_file_read_all(f, buf, cap - 1, &got);
    dbr_file_close(f);
    return rc;
}

static void expect_text(dbr_vfs *vfs, const char *path, const char *want)
{
    char buf[64];
    CHECK_RC(open_text(vfs, path, buf, sizeof buf), DBR_OK);
    CHECK_STR(buf, want);
}

static void confined(const char *how)
{
    dbr_vfs *vfs = NULL;
    char buf[64];
    dbr_stat st;
    printf("confined mount, %s\n", how);
    CHECK_RC(dbr_vfs_create(&vfs), DBR_OK);
    CHECK_RC(dbr_vfs_mount_dir(vfs, mnt), DBR_OK);
    /* inside: plain, relative link, link through "..", link to a dir */
    expect_text(vfs, "sub/f.txt", "inside");
    expect_text(vfs, "in", "inside");
    expect_text(vfs, "sub/up", "inside");
    expect_text(vfs, "dirlink/f.txt", "inside");
    expect_text(vfs, "chain", "inside");
    CHECK_RC(dbr_vfs_stat(vfs, "dirlink", &st), DBR_OK);
    CHECK(st.is_dir == 1);
    CHECK_RC(dbr_vfs_stat(vfs, "in", &st), DBR_OK);
    CHECK(st.is_dir == 0 && st.size == 6);
    /* out: "..", a directory, an absolute target (refused even though it
     * points back in, as RESOLVE_BENEATH does) */
    CHECK_RC(open_text(vfs, "esc", buf, sizeof buf), DBR_E_PERMISSION);
    CHECK(strstr(dbr_last_error(), "leads out of the directory mount") != NULL);
    CHECK(buf[0] == '\0');
    CHECK_RC(open_text(vfs, "escdir/secret.txt", buf, sizeof buf), DBR_E_PERMISSION);
    CHECK_RC(open_text(vfs, "abs", buf, sizeof buf), DBR_E_PERMISSION);
    CHECK_RC(dbr_vfs_stat(vfs, "esc", &st), DBR_E_PERMISSION);
    CHECK_RC(dbr_vfs_exists(vfs, "escdir"), DBR_E_PERMISSION);
    char *names = NULL;
    size_t len = 0, count = 0;
    CHECK_RC(dbr_vfs_list(vfs, "escdir", &names, &len, &count), DBR_E_PERMISSION);
    CHECK_RC(dbr_vfs_list(vfs, "", &names, &len, &count), DBR_OK);
    int saw_dirlink = 0, saw_escdir_as_dir = 0;
    for (char *p = names; p && p < names + len; p += strlen(p) + 1) {
        saw_dirlink |= strcmp(p, "dirlink/") == 0;
        saw_escdir_as_dir |= strcmp(p, "escdir/") == 0;
    }
    CHECK(saw_dirlink && !saw_escdir_as_dir);
    dbr_free(names);
    /* a loop fails cleanly */
    CHECK(open_text(vfs, "loop", buf, sizeof buf) < 0);
    expect_text(vfs, "sub/f.txt", "inside");
    dbr_vfs_free(vfs);
}

static void followed(void)
{
    dbr_vfs *vfs = NULL;
    dbr_mount_options opts;
    memset(&opts, 0, sizeof opts);
    opts.follow_symlinks = 1;
    CHECK_RC(dbr_vfs_create(&vfs), DBR_OK);
    CHECK_RC(dbr_vfs_mount_dir_ex(vfs, mnt, &opts), DBR_OK);
    expect_text(vfs, "esc", "secret");
    expect_text(vfs, "escdir/secret.txt", "secret");
    expect_text(vfs, "abs", "inside");
    expect_text(vfs, "in", "inside");
    dbr_vfs_free(vfs);
}

/* procfs files report st_size 0: they are read at open. */
static void sizeless(void)
{
    dbr_file *f = NULL;
    char buf[8] = {0};
    size_t got = 0;
    CHECK_RC(dbr_file_open("/proc/self/status", &f), DBR_OK);
    CHECK(f && dbr_file_size(f) > 100);
    CHECK_RC(dbr_file_pread(f, buf, 5, 0, &got), DBR_OK);
    CHECK_STR(buf, "Name:");
    dbr_file_close(f);
    dbr_vfs *vfs = NULL;
    CHECK_RC(dbr_vfs_create(&vfs), DBR_OK);
    CHECK_RC(dbr_vfs_mount_dir(vfs, "/proc/self"), DBR_OK);
    CHECK_RC(dbr_vfs_open(vfs, "status", &f), DBR_OK);
    CHECK(f && dbr_file_size(f) > 100);
    dbr_file_close(f);
    dbr_vfs_free(vfs);
    /* a really empty file stays empty */
    char empty[160];
    snprintf(empty, sizeof empty, "%s/empty", root);
    fclose(fopen(empty, "wb"));
    CHECK_RC(dbr_file_open(empty, &f), DBR_OK);
    CHECK(f && dbr_file_size(f) == 0);
    dbr_file_close(f);
    unlink(empty);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/dbr_test_mounts_XXXXXX");
    if (!mkdtemp(root))
        return 2;
    snprintf(mnt, sizeof mnt, "%s/m", root);
    char p[256];
    snprintf(p, sizeof p, "%s/outside", root);
    mkdir(p, 0755);
    mkdir(mnt, 0755);
    snprintf(p, sizeof p, "%s/m/sub", root);
    mkdir(p, 0755);
    put("outside/secret.txt", "secret");
    put("m/sub/f.txt", "inside");
    link_at("sub/f.txt", "m/in");
    link_at("../sub/f.txt", "m/sub/up");
    link_at("sub", "m/dirlink");
    link_at("dirlink/../in", "m/chain");
    link_at("../outside/secret.txt", "m/esc");
    link_at("../outside", "m/escdir");
    snprintf(p, sizeof p, "%s/m/sub/f.txt", root);
    link_at(p, "m/abs");
    link_at("loop", "m/loop");

    int kernel = dbr__vfs_allow_openat2(1);
    confined(kernel ? "openat2" : "walk (the kernel lacks openat2)");
    dbr__vfs_allow_openat2(0);
    confined("walk");
    dbr__vfs_allow_openat2(1);
    followed();
    sizeless();

    const char *rm[] = {"m/in", "m/sub/up", "m/dirlink", "m/chain", "m/esc", "m/escdir",
                        "m/abs", "m/loop", "m/sub/f.txt", "outside/secret.txt"};
    for (size_t i = 0; i < sizeof rm / sizeof *rm; i++) {
        snprintf(p, sizeof p, "%s/%s", root, rm[i]);
        unlink(p);
    }
    const char *dirs[] = {"m/sub", "m", "outside", ""};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(p, sizeof p, "%s/%s", root, dirs[i]);
        rmdir(p);
    }
    return check_report("test_mounts");
}
