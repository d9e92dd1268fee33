/* tar: ustar, pax and GNU long names read back, lookups, batches with
 * per-item outcomes, saved indexes (and stale ones refused), the VFS mount,
 * lifetimes, and damaged archives (each with a clear error). */
#include "internal.h"
#include "check.h"
#include "tar_build.h"

#include <stdlib.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64], path[128];

static void save(const tarbuf *t, size_t len)
{
    FILE *fp = fopen(path, "wb");
    fwrite(t->b, 1, len, fp);
    fclose(fp);
}

static int open_rc(void)
{
    dbr_tar *t = NULL;
    int rc = dbr_tar_open(path, NULL, &t);
    dbr_tar_close(t);
    return rc;
}

static int last_error_has(const char *a, const char *b)
{
    return strstr(dbr_last_error(), a) != NULL && (!b || strstr(dbr_last_error(), b) != NULL);
}

static void read_is(dbr_tar *t, const char *name, const char *want)
{
    size_t index = 0, got = 0;
    char buf[256];
    CHECK_RC(dbr_tar_find(t, name, &index), DBR_OK);
    CHECK_RC(dbr_tar_read(t, index, buf, sizeof buf, &got), DBR_OK);
    CHECK(got == strlen(want) && memcmp(buf, want, got) == 0);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/dbr_test_tar_XXXXXX");
    if (!mkdtemp(dir))
        return 2;
    snprintf(path, sizeof path, "%s/a.tar", dir);

    /* A WebDataset-like shard in every header flavour, with a pax path and
     * size, a GNU long name, a ustar prefix, a directory and a symlink. */
    tarbuf tb = {0};
    member(&tb, "000123.jpg", "JPEGDATA", 8, 1);
    member(&tb, "000123.cls", "7", 1, 2);
    member(&tb, "000124.jpg", "v7 data", 7, 0);
    char longname[300];
    memset(longname, 'n', sizeof longname);
    memcpy(longname + 290, "/long.json", 10);
    header(&tb, "././@LongLink", NULL, 'L', sizeof longname, 2);
    put(&tb, longname, sizeof longname);
    pad(&tb);
    member(&tb, "truncated-name-ignored", "{}", 2, 2);
    const char pax[] = "21 path=pax/name.txt\n" "10 size=5\n";
    header(&tb, "PaxHeaders/x", NULL, 'x', sizeof pax - 1, 1);
    put(&tb, pax, sizeof pax - 1);
    pad(&tb);
    header(&tb, "short", NULL, '0', 5, 1); /* header size replaced by the pax size */
    put(&tb, "hello", 5);
    pad(&tb);
    header(&tb, "file.bin", "deep/prefix", '0', 3, 1);
    put(&tb, "pfx", 3);
    pad(&tb);
    header(&tb, "folder/", NULL, '5', 0, 1);
    header(&tb, "link", NULL, '2', 0, 1);
    member(&tb, "empty", "", 0, 1);
    finish(&tb);
    save(&tb, tb.len);

    dbr_tar *t = NULL;
    CHECK_RC(dbr_tar_open(path, NULL, &t), DBR_OK);
    char full_long[301];
    memcpy(full_long, longname, 300);
    full_long[300] = '\0';
    const char *want[] = {"000123.jpg", "000123.cls", "000124.jpg", full_long,
                          "pax/name.txt", "deep/prefix/file.bin", "folder", "empty"};
    size_t nwant = sizeof want / sizeof *want;
    CHECK(dbr_tar_count(t) == nwant);
    char *names = NULL;
    size_t names_len = 0;
    CHECK_RC(dbr_tar_names(t, &names, &names_len), DBR_OK);
    size_t at = 0;
    for (size_t i = 0; i < nwant && at < names_len; i++) {
        CHECK_STR(names + at, want[i]);
        at += strlen(names + at) + 1;
    }
    CHECK(at == names_len);
    dbr_free(names);
    read_is(t, "000123.jpg", "JPEGDATA");
    read_is(t, "000123.cls", "7");
    read_is(t, "000124.jpg", "v7 data");
    read_is(t, full_long, "{}");
    read_is(t, "pax/name.txt", "hello");
    read_is(t, "deep/prefix/file.bin", "pfx");
    read_is(t, "empty", "");
    size_t index;
    CHECK_RC(dbr_tar_find(t, "link", &index), DBR_E_NOT_FOUND);
    CHECK(last_error_has("link", path));
    dbr_tar_entry e[8];
    CHECK_RC(dbr_tar_entries(t, 0, nwant, e), DBR_OK);
    CHECK(e[0].size == 8 && e[0].mtime == 1700000000 && e[0].mode == 0644 && !e[0].is_dir);
    CHECK(e[6].is_dir && e[6].size == 0);
    CHECK(e[3].header_offset < e[3].offset - 512); /* the long name record comes first */
    CHECK_RC(dbr_tar_entries(t, 1, nwant, e), DBR_E_ARG);
    char small[4];
    size_t got = 0;
    CHECK_RC(dbr_tar_read(t, 0, small, sizeof small, &got), DBR_E_TOO_SMALL);
    CHECK(got == 8);
    CHECK_RC(dbr_tar_read(t, 6, small, sizeof small, &got), DBR_E_IS_DIR);

    /* A batch: one bad item (too small) reports itself, the others land. */
    size_t idx[3] = {0, 2, 1};
    char b0[16], b1[16], b2[1];
    void *dsts[3] = {b0, b1, b2};
    size_t caps[3] = {16, 16, 0}, lens[3];
    int statuses[3];
    char messages[3 * 128];
    CHECK_RC(dbr_tar_read_many(t, idx, 3, dsts, caps, lens, 2, statuses, messages, 128),
             DBR_E_TOO_SMALL);
    CHECK(statuses[0] == DBR_OK && statuses[1] == DBR_OK && statuses[2] == DBR_E_TOO_SMALL);
    CHECK(lens[0] == 8 && memcmp(b0, "JPEGDATA", 8) == 0 && lens[1] == 7);
    CHECK(messages[0] == '\0' && strstr(messages + 256, "000123.cls") != NULL);
    CHECK_RC(dbr_tar_read_many(t, idx, 2, dsts, caps, NULL, 0, NULL, NULL, 0), DBR_OK);

    /* The saved index opens the same archive without a scan. */
    void *blob = NULL;
    size_t blob_len = 0;
    CHECK_RC(dbr_tar_save_index(t, &blob, &blob_len), DBR_OK);
    dbr_tar *t2 = NULL;
    CHECK_RC(dbr_tar_open_indexed(path, NULL, blob, blob_len, &t2), DBR_OK);
    CHECK(dbr_tar_count(t2) == nwant);
    read_is(t2, "pax/name.txt", "hello");
    read_is(t2, full_long, "{}");
    dbr_tar_close(t2);
    /* ... and every damaged byte of it is refused, never trusted. */
    int refused = 0;
    unsigned char *bad = malloc(blob_len);
    for (size_t i = 0; i < blob_len; i += 7) {
        memcpy(bad, blob, blob_len);
        bad[i] ^= 0x20;
        t2 = NULL;
        refused += dbr_tar_open_indexed(path, NULL, bad, blob_len, &t2) == DBR_E_CORRUPT;
        dbr_tar_close(t2);
    }
    CHECK(refused == (int)((blob_len + 6) / 7));
    CHECK_RC(dbr_tar_open_indexed(path, NULL, blob, blob_len - 1, &t2), DBR_E_CORRUPT);
    free(bad);

    /* The VFS mount: directories from the names, files read through it. */
    dbr_vfs *vfs = NULL;
    CHECK_RC(dbr_vfs_create(&vfs), DBR_OK);
    CHECK_RC(dbr_vfs_mount_tar(vfs, t), DBR_OK);
    CHECK(dbr_vfs_exists(vfs, "deep/prefix") == 1);
    CHECK(dbr_vfs_exists(vfs, "folder") == 1);
    dbr_stat st;
    CHECK_RC(dbr_vfs_stat(vfs, "pax/name.txt", &st), DBR_OK);
    CHECK(st.size == 5 && !st.is_dir && st.mtime == 1700000000);
    char *list = NULL;
    size_t list_len, list_count;
    CHECK_RC(dbr_vfs_list(vfs, "deep/prefix", &list, &list_len, &list_count), DBR_OK);
    CHECK(list_count == 1 && strcmp(list, "file.bin") == 0);
    dbr_free(list);
    dbr_tar_retain(t); /* a binding's reference outlives the opener's */
    dbr_tar_close(t);
    CHECK(dbr_tar_count(t) > 0);
    dbr_file *f = NULL;
    CHECK_RC(dbr_vfs_open(vfs, "000123.jpg", &f), DBR_OK);
    dbr_tar_close(t); /* the file and the mount keep the archive alive */
    dbr_vfs_free(vfs);
    char fb[16];
    CHECK_RC(dbr_file_pread(f, fb, sizeof fb, 4, &got), DBR_OK);
    CHECK(got == 4 && memcmp(fb, "DATA", 4) == 0);
    dbr_file_close(f);

    /* A changed file makes the saved index stale. */
    tb.b[512] ^= 1; /* the data of the first member: same size */
    save(&tb, tb.len);
    struct stat before;
    stat(path, &before);
    struct timespec times[2] = {before.st_atim, before.st_mtim};
    times[1].tv_sec += 10;
    utimensat(AT_FDCWD, path, times, 0);
    CHECK_RC(dbr_tar_open_indexed(path, NULL, blob, blob_len, &t2), DBR_E_CORRUPT);
    CHECK(last_error_has("stale", path));
    dbr_free(blob);
    tb.b[512] ^= 1;

    /* Damage, each with a clear error naming the file and the member. */
    save(&tb, 512 + 4); /* cut inside the first member's data */
    CHECK_RC(open_rc(), DBR_E_CORRUPT);
    CHECK(last_error_has("000123.jpg", "past the end"));
    save(&tb, 1024 + 100); /* cut inside the second header */
    CHECK_RC(open_rc(), DBR_E_CORRUPT);
    CHECK(last_error_has("cut off", "000123.jpg"));
    save(&tb, 0);
    CHECK_RC(open_rc(), DBR_E_CORRUPT);
    CHECK(last_error_has("empty", path));
    tb.b[1024 + 20] ^= 1; /* the second header's name: checksum now wrong */
    save(&tb, tb.len);
    CHECK_RC(open_rc(), DBR_E_CORRUPT);
    CHECK(last_error_has("checksum", "000123.jpg"));
    tb.b[1024 + 20] ^= 1;
    save(&tb, tb.len - 1024); /* no end-of-archive blocks: fine, as in tarfile */
    CHECK_RC(open_rc(), DBR_OK);
    /* Cut inside the last member's padding: its data is whole, but the
     * file is truncated (a download cut short); tarfile refuses it too
     * ("unexpected end of data") rather than quietly losing what followed. */
    tarbuf padcut = {0};
    member(&padcut, "first.jpg", "abc", 3, 1);
    member(&padcut, "last.jpg", "xyz", 3, 1);
    save(&padcut, padcut.len - 100);
    CHECK_RC(open_rc(), DBR_E_CORRUPT);
    CHECK(last_error_has("truncated", "last.jpg"));
    dbr_tar_options keep;
    dbr_tar_options_init(&keep);
    keep.keep_intact_prefix = 1; /* both members' data are whole: both kept */
    CHECK_RC(dbr_tar_open(path, &keep, &t2), DBR_OK);
    CHECK(dbr_tar_count(t2) == 2 && strstr(dbr_tar_damage(t2), "truncated"));
    read_is(t2, "last.jpg", "xyz");
    dbr_tar_close(t2);
    free(padcut.b);

    /* A compressed tar (.tar.gz and friends) is named as such, not
     * reported as a truncated or damaged tar. */
    static const struct { const char *magic; size_t n; const char *kind; } packed[] = {
        {"\x1f\x8b\x08\x00", 4, "gzip"}, {"BZh9", 4, "bzip2"},
        {"\xfd" "7zXZ\x00", 6, "xz"}, {"\x28\xb5\x2f\xfd", 4, "zstd"}};
    for (size_t k = 0; k < sizeof packed / sizeof packed[0]; k++) {
        for (size_t len = 60; len <= 4000; len += 3940) { /* shorter and longer than a block */
            tarbuf z = {0};
            put(&z, packed[k].magic, packed[k].n);
            while (z.len < len)
                put(&z, "\x91", 1);
            save(&z, z.len);
            CHECK_RC(open_rc(), DBR_E_UNSUPPORTED);
            CHECK(last_error_has(packed[k].kind, "compressed"));
            free(z.b);
        }
    }
    tarbuf bzname = {0}; /* a member whose name starts like a bzip2 stream is fine */
    member(&bzname, "BZh91.txt", "x", 1, 1);
    finish(&bzname);
    save(&bzname, bzname.len);
    CHECK_RC(open_rc(), DBR_OK);
    free(bzname.b);

    tarbuf none = {0}; /* only a link and the end blocks: no members at all */
    header(&none, "link", NULL, '2', 0, 1);
    finish(&none);
    save(&none, none.len);
    CHECK_RC(dbr_tar_open(path, NULL, &t2), DBR_OK);
    CHECK(dbr_tar_count(t2) == 0);
    CHECK_RC(dbr_tar_names(t2, &names, &names_len), DBR_OK);
    CHECK(names_len == 0);
    dbr_free(names);
    CHECK_RC(dbr_tar_save_index(t2, &blob, &blob_len), DBR_OK);
    dbr_tar *t3 = NULL;
    CHECK_RC(dbr_tar_open_indexed(path, NULL, blob, blob_len, &t3), DBR_OK);
    CHECK(dbr_tar_count(t3) == 0);
    dbr_tar_close(t3);
    dbr_tar_close(t2);
    dbr_free(blob);
    free(none.b);

    tarbuf ev = {0};
    member(&ev, "ok.jpg", "x", 1, 1);
    member(&ev, "a/../../escape.jpg", "x", 1, 1);
    finish(&ev);
    save(&ev, ev.len);
    CHECK_RC(open_rc(), DBR_E_CORRUPT);
    CHECK(last_error_has("a/../../escape.jpg", ".."));

    tarbuf big = {0}; /* a size field claiming more than the file holds */
    header(&big, "huge.bin", NULL, '0', (size_t)1 << 32, 1);
    finish(&big);
    save(&big, big.len);
    CHECK_RC(open_rc(), DBR_E_CORRUPT);
    CHECK(last_error_has("huge.bin", "past the end"));

    tarbuf lim = {0}; /* a long name record over max_header_size */
    header(&lim, "././@LongLink", NULL, 'L', 5000, 2);
    char fill[5000];
    memset(fill, 'q', sizeof fill);
    put(&lim, fill, sizeof fill);
    pad(&lim);
    member(&lim, "x", "x", 1, 2);
    finish(&lim);
    save(&lim, lim.len);
    dbr_tar_options opts;
    dbr_tar_options_init(&opts);
    opts.max_header_size = 4096;
    CHECK_RC(dbr_tar_open(path, &opts, &t2), DBR_E_LIMIT);
    opts.max_header_size = 8192;
    opts.max_members = 0;
    CHECK_RC(dbr_tar_open(path, &opts, &t2), DBR_E_LIMIT);
    opts.max_members = 1;
    opts.use_pread = 1;
    CHECK_RC(dbr_tar_open(path, &opts, &t2), DBR_OK);
    CHECK(dbr_tar_count(t2) == 1 && dbr_tar_entries(t2, 0, 1, e) == DBR_OK &&
          e[0].name_len == 5000);
    dbr_tar_close(t2);

    tarbuf px = {0}; /* a malformed pax record */
    header(&px, "PaxHeaders/y", NULL, 'x', 9, 1);
    put(&px, "99 path=x", 9);
    pad(&px);
    member(&px, "y", "y", 1, 1);
    finish(&px);
    save(&px, px.len);
    CHECK_RC(open_rc(), DBR_E_CORRUPT);
    CHECK(last_error_has("pax", path));

    /* Cut off in its third member: refused by default; with
     * keep_intact_prefix, the two members before the break, the reason,
     * and no index to keep.  Cut off in its first member: refused both
     * ways. */
    tarbuf cut = {0};
    member(&cut, "0.jpg", "zero", 4, 1);
    member(&cut, "0.cls", "0", 1, 1);
    char body[2000];
    memset(body, 'b', sizeof body);
    member(&cut, "1.jpg", body, sizeof body, 1);
    save(&cut, cut.len - 700);
    CHECK_RC(open_rc(), DBR_E_CORRUPT);
    dbr_tar_options_init(&opts);
    opts.keep_intact_prefix = 1;
    CHECK_RC(dbr_tar_open(path, &opts, &t2), DBR_OK);
    CHECK(dbr_tar_count(t2) == 2 && dbr_tar_damage(t2) != NULL);
    CHECK(strstr(dbr_tar_damage(t2), "1.jpg") && strstr(dbr_tar_damage(t2), path));
    read_is(t2, "0.cls", "0");
    CHECK_RC(dbr_tar_save_index(t2, &blob, &blob_len), DBR_E_CORRUPT);
    dbr_tar_close(t2);
    save(&cut, 512 + 2); /* inside the first member's data */
    CHECK_RC(dbr_tar_open(path, &opts, &t2), DBR_E_CORRUPT);
    CHECK(t2 == NULL);
    save(&tb, tb.len);
    CHECK_RC(dbr_tar_open(path, &opts, &t2), DBR_OK); /* intact: no damage */
    CHECK(dbr_tar_damage(t2) == NULL && dbr_tar_count(t2) > 2);
    dbr_tar_close(t2);
    free(cut.b);

    /* Read with pread from a file truncated while open: the error keeps
     * its cause (it used to be formatted over itself, losing it). */
    tarbuf shrink = {0};
    member(&shrink, "a.bin", body, sizeof body, 1);
    member(&shrink, "b.bin", body, sizeof body, 1);
    finish(&shrink);
    save(&shrink, shrink.len);
    dbr_tar_options_init(&opts);
    opts.use_pread = 1;
    CHECK_RC(dbr_tar_open(path, &opts, &t2), DBR_OK);
    CHECK(truncate(path, 3000) == 0);
    size_t idx_b = 9, got_b = 0;
    CHECK_RC(dbr_tar_find(t2, "b.bin", &idx_b), DBR_OK);
    CHECK_RC(dbr_tar_read(t2, idx_b, body, sizeof body, &got_b), DBR_E_IO);
    CHECK(last_error_has("member 'b.bin'", "shrank while open: member data at offset 3072"));
    dbr_tar_close(t2);
    free(shrink.b);

    CHECK_RC(dbr_tar_open(NULL, NULL, &t2), DBR_E_ARG);
    snprintf(path, sizeof path, "%s/missing.tar", dir);
    CHECK_RC(open_rc(), DBR_E_NOT_FOUND);
    dbr_tar_close(NULL);

    free(tb.b);
    free(ev.b);
    free(big.b);
    free(lim.b);
    free(px.b);
    snprintf(path, sizeof path, "%s/a.tar", dir);
    unlink(path);
    rmdir(dir);
    return check_report("test_tar");
}
