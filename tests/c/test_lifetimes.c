/* Reference counts: every object lives until its last holder lets go, so
 * closing early is safe for everything built on it (run under ASan in CI,
 * which turns a premature free into a failure). */
#include "dbr.h"
#include "check.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static char dir[64], zpath[128], tpath[128];

static void write_zip(void)
{
    dbr_zip_writer *w = NULL;
    CHECK_RC(dbr_zip_writer_open(zpath, &w), DBR_OK);
    CHECK_RC(dbr_zip_writer_add(w, "a.txt", "hello", 5, DBR_ZIP_STORED, 0, 0), DBR_OK);
    CHECK_RC(dbr_zip_writer_add(w, "b.txt", "world!", 6, DBR_ZIP_DEFLATE, 0, 0), DBR_OK);
    CHECK_RC(dbr_zip_writer_finish(w), DBR_OK);
    dbr_zip_writer_free(w);
}

/* Two TFRecord frames with payloads "one" and "two". */
static void write_tfrecord(void)
{
    FILE *fp = fopen(tpath, "wb");
    const char *payloads[2] = {"one", "two"};
    for (int r = 0; r < 2; r++) {
        unsigned char h[12] = {3};
        uint32_t c = dbr_crc32c_mask(dbr_crc32c(0, h, 8));
        for (int i = 0; i < 4; i++)
            h[8 + i] = (unsigned char)(c >> (8 * i));
        fwrite(h, 1, 12, fp);
        fwrite(payloads[r], 1, 3, fp);
        c = dbr_crc32c_mask(dbr_crc32c(0, payloads[r], 3));
        unsigned char f[4] = {(unsigned char)c, (unsigned char)(c >> 8),
                              (unsigned char)(c >> 16), (unsigned char)(c >> 24)};
        fwrite(f, 1, 4, fp);
    }
    fclose(fp);
}

static int read_is(dbr_file *f, const char *want)
{
    char buf[32] = {0};
    size_t got = 0;
    return dbr_file_pread(f, buf, sizeof buf - 1, 0, &got) == DBR_OK && strcmp(buf, want) == 0;
}

static void test_file(void)
{
    dbr_file *f = NULL;
    CHECK_RC(dbr_file_open(zpath, &f), DBR_OK);
    dbr_file_retain(f);
    dbr_file_close(f); /* the opener's reference */
    CHECK(dbr_file_size(f) > 0);
    dbr_file_close(f); /* the retained one: freed now (ASan checks) */
    dbr_file_retain(NULL);
    dbr_file_close(NULL);
}

static void test_zip(void)
{
    dbr_zip *z = NULL;
    dbr_file *a = NULL, *b = NULL, *c = NULL;
    dbr_vfs *vfs = NULL;
    CHECK_RC(dbr_zip_open(zpath, NULL, &z), DBR_OK);
    CHECK_RC(dbr_zip_open_entry(z, 0, &a), DBR_OK);
    CHECK_RC(dbr_vfs_create(&vfs), DBR_OK);
    CHECK_RC(dbr_vfs_mount_zip(vfs, z), DBR_OK);
    dbr_zip_retain(z);
    dbr_zip_close(z); /* the opener's reference; entry, mount and retain remain */
    CHECK_RC(dbr_zip_open_entry(z, 1, &b), DBR_OK);
    dbr_zip_close(z); /* the retained one: the entry and the mount remain */
    CHECK(read_is(a, "hello"));
    CHECK(read_is(b, "world!"));
    CHECK_RC(dbr_vfs_open(vfs, "b.txt", &c), DBR_OK);
    dbr_vfs_free(vfs); /* the mount goes; c still holds the archive */
    CHECK(read_is(c, "world!"));
    dbr_file_close(a);
    dbr_file_close(b);
    CHECK(read_is(c, "world!"));
    dbr_file_close(c); /* the last holder: the archive goes now */
}

static void test_vfs(void)
{
    dbr_vfs *vfs = NULL;
    dbr_file *f = NULL;
    CHECK_RC(dbr_vfs_create(&vfs), DBR_OK);
    CHECK_RC(dbr_vfs_mount_dir(vfs, dir), DBR_OK);
    dbr_vfs_retain(vfs);
    dbr_vfs_free(vfs);
    CHECK_RC(dbr_vfs_open(vfs, "r.tfrecord", &f), DBR_OK);
    dbr_vfs_free(vfs);
    CHECK(f && dbr_file_size(f) == 2 * 19);
    dbr_file_close(f);
}

static void test_reader(void)
{
    dbr_file *f = NULL;
    dbr_tfrecord_reader *r = NULL;
    const void *data;
    size_t len;
    CHECK_RC(dbr_file_open(tpath, &f), DBR_OK);
    CHECK_RC(dbr_tfrecord_reader_open(f, DBR_TFRECORD_NONE, 1, 0, &r), DBR_OK);
    CHECK_RC(dbr_tfrecord_reader_next(r, &data, &len, NULL), DBR_OK);
    CHECK(len == 3 && memcmp(data, "one", 3) == 0);
    dbr_file_close(f); /* the reader holds the file */
    CHECK_RC(dbr_tfrecord_reader_next(r, &data, &len, NULL), DBR_OK);
    CHECK(len == 3 && memcmp(data, "two", 3) == 0);
    CHECK_STR(dbr_file_path(f), tpath);
    dbr_tfrecord_reader_retain(r);
    dbr_tfrecord_reader_close(r);
    CHECK_RC(dbr_tfrecord_reader_next(r, &data, &len, NULL), DBR_E_EOF);
    dbr_tfrecord_reader_close(r); /* frees the reader, then the file */
}

/* Threads that each hold a reference read while the opener lets go. */
typedef struct reader_arg {
    dbr_zip *zip;
    int ok;
} reader_arg;

static void *read_loop(void *p)
{
    reader_arg *a = p;
    char buf[8];
    size_t got;
    a->ok = 1;
    for (int i = 0; i < 2000; i++)
        if (dbr_zip_read(a->zip, 0, buf, sizeof buf, &got) != DBR_OK || got != 5 ||
            memcmp(buf, "hello", 5) != 0)
            a->ok = 0;
    dbr_zip_close(a->zip);
    return NULL;
}

static void test_threads(void)
{
    for (int round = 0; round < 20; round++) {
        dbr_zip *z = NULL;
        CHECK_RC(dbr_zip_open(zpath, NULL, &z), DBR_OK);
        enum { N = 4 };
        pthread_t t[N];
        reader_arg args[N];
        for (int i = 0; i < N; i++) {
            dbr_zip_retain(z);
            args[i] = (reader_arg){z, 0};
            pthread_create(&t[i], NULL, read_loop, &args[i]);
        }
        dbr_zip_close(z); /* while the threads still read */
        for (int i = 0; i < N; i++) {
            pthread_join(t[i], NULL);
            CHECK(args[i].ok);
        }
    }
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/dbr_test_life_XXXXXX");
    if (!mkdtemp(dir))
        return 2;
    snprintf(zpath, sizeof zpath, "%s/a.zip", dir);
    snprintf(tpath, sizeof tpath, "%s/r.tfrecord", dir);
    write_zip();
    write_tfrecord();
    test_file();
    test_zip();
    test_vfs();
    test_reader();
    test_threads();
    unlink(zpath);
    unlink(tpath);
    rmdir(dir);
    return check_report("test_lifetimes");
}
