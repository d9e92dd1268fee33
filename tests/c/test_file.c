/* The file layer: open, pread, read/seek/tell, read_all, errors. */
#include "dbr.h"
#include "internal.h"
#include "check.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];
static char path[128];

static void make_fixture(void)
{
    snprintf(dir, sizeof dir, "/tmp/dbr_test_file_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(path, sizeof path, "%s/data.bin", dir);
    FILE *fp = fopen(path, "wb");
    for (int i = 0; i < 1000; i++)
        fputc(i & 0xff, fp);
    fclose(fp);
}

int main(void)
{
    make_fixture();
    dbr_file *f = NULL;
    unsigned char buf[2000];
    size_t got = 0;
    uint64_t pos = 0;

    CHECK_RC(dbr_file_open(path, &f), DBR_OK);
    CHECK(dbr_file_size(f) == 1000);
    CHECK_STR(dbr_file_path(f), path);
    CHECK(dbr_file_mtime(f) > 1500000000);
    CHECK(dbr_file_data(f) == NULL);

    CHECK_RC(dbr_file_pread(f, buf, 10, 995, &got), DBR_OK);
    CHECK(got == 5 && buf[0] == (995 & 0xff) && buf[4] == (999 & 0xff));
    CHECK_RC(dbr_file_pread(f, buf, 10, 5000, &got), DBR_OK);
    CHECK(got == 0);
    CHECK(dbr_file_tell(f) == 0); /* pread never moves the position */

    CHECK_RC(dbr_file_read(f, buf, 300, &got), DBR_OK);
    CHECK(got == 300 && buf[299] == 299 % 256);
    CHECK(dbr_file_tell(f) == 300);
    CHECK_RC(dbr_file_seek(f, -100, DBR_SEEK_END, &pos), DBR_OK);
    CHECK(pos == 900);
    CHECK_RC(dbr_file_read(f, buf, 1000, &got), DBR_OK);
    CHECK(got == 100 && buf[0] == 900 % 256);
    CHECK_RC(dbr_file_seek(f, 10, DBR_SEEK_CUR, &pos), DBR_OK);
    CHECK(pos == 1010);
    CHECK_RC(dbr_file_read(f, buf, 10, &got), DBR_OK);
    CHECK(got == 0);
    CHECK_RC(dbr_file_seek(f, -2000, DBR_SEEK_CUR, &pos), DBR_E_ARG);
    CHECK_RC(dbr_file_seek(f, 0, 7, &pos), DBR_E_ARG);

    /* read_all: too small reports the need and reads nothing. */
    got = 0;
    CHECK_RC(dbr_file_read_all(f, buf, 999, &got), DBR_E_TOO_SMALL);
    CHECK(got == 1000);
    CHECK(strstr(dbr_last_error(), "needs 1000 bytes") != NULL);
    CHECK_RC(dbr_file_read_all(f, buf, sizeof buf, &got), DBR_OK);
    CHECK(got == 1000 && buf[999] == 999 % 256);
    dbr_file_close(f);
    dbr_file_close(NULL);

    /* Errors name the path. */
    char missing[160];
    snprintf(missing, sizeof missing, "%s/missing.bin", dir);
    CHECK_RC(dbr_file_open(missing, &f), DBR_E_NOT_FOUND);
    CHECK(f == NULL);
    CHECK(strstr(dbr_last_error(), "missing.bin") != NULL);
    CHECK_RC(dbr_file_open(dir, &f), DBR_E_IS_DIR);
    CHECK_RC(dbr_file_open(NULL, &f), DBR_E_ARG);

    /* A FIFO (or socket, or device) in a data folder is refused at once,
     * naming it: opening a FIFO without a writer used to block forever
     * (the alarm kills the test if it still does). */
    char fifo[160];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    CHECK(mkfifo(fifo, 0600) == 0);
    alarm(20);
    CHECK_RC(dbr_file_open(fifo, &f), DBR_E_UNSUPPORTED);
    CHECK(f == NULL);
    CHECK(strstr(dbr_last_error(), "fifo") != NULL);
    CHECK(strstr(dbr_last_error(), "not a regular file") != NULL);
    dbr_vfs *vfs = NULL;
    CHECK_RC(dbr_vfs_create(&vfs), DBR_OK);
    CHECK_RC(dbr_vfs_mount_dir(vfs, dir), DBR_OK);
    CHECK_RC(dbr_vfs_open(vfs, "fifo", &f), DBR_E_UNSUPPORTED);
    CHECK(strstr(dbr_last_error(), "not a regular file") != NULL);
    dbr_vfs_free(vfs);
    CHECK_RC(dbr_file_open("/dev/null", &f), DBR_E_UNSUPPORTED);
    alarm(0);
    unlink(fifo);

    /* Memory-backed files (decompressed archive entries use these). */
    char *mem = malloc(4);
    memcpy(mem, "abcd", 4);
    CHECK_RC(dbr__file_from_memory(mem, 4, "mem.txt", 0, &f), DBR_OK);
    CHECK(dbr_file_data(f) != NULL);
    CHECK_RC(dbr_file_pread(f, buf, 3, 1, &got), DBR_OK);
    CHECK(got == 3 && memcmp(buf, "bcd", 3) == 0);
    dbr_file_close(f);

    /* Many files in one call: open (one missing), read, close. */
    const char *many[3] = {path, missing, path};
    dbr_file *files[3];
    uint64_t sizes[3];
    int statuses[3];
    CHECK_RC(dbr_file_open_many(NULL, many, 3, files, sizes, statuses), DBR_E_NOT_FOUND);
    CHECK(strstr(dbr_last_error(), "missing.bin") != NULL);
    CHECK(statuses[0] == DBR_OK && statuses[1] == DBR_E_NOT_FOUND && statuses[2] == DBR_OK);
    CHECK(sizes[0] == 1000 && files[1] == NULL && sizes[1] == 0);
    unsigned char a[1000], c[10];
    void *dsts[3] = {a, NULL, c};
    size_t caps[3] = {sizeof a, 0, sizeof c}, lens[3] = {0, 0, 0};
    CHECK_RC(dbr_file_read_many(files, 3, dsts, caps, lens, statuses, 2), DBR_E_TOO_SMALL);
    CHECK(statuses[0] == DBR_OK && lens[0] == 1000 && a[999] == 999 % 256);
    CHECK(statuses[1] == DBR_E_NOT_FOUND); /* skipped, left as it was */
    CHECK(statuses[2] == DBR_E_TOO_SMALL && lens[2] == 1000);
    dbr_file_close_many(files, 3);
    dbr_file_close_many(NULL, 3);
    CHECK_RC(dbr_file_open_many(NULL, NULL, 1, files, sizes, statuses), DBR_E_ARG);

    unlink(path);
    rmdir(dir);
    return check_report("test_file");
}
