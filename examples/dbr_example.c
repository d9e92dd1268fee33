/*
 * dbr_example.c - libdbr from C: list a zip archive, decode a JPEG stored in
 * it, and parse the tf.train.Examples of a TFRecord file.
 *
 * Build against an installed libdbr with pkg-config alone:
 *     cc -std=c99 dbr_example.c $(pkg-config --cflags --libs dbr) -o dbr_example
 * Run:
 *     ./dbr_example ARCHIVE.zip ENTRY.jpg DIR FILE.tfrecord
 * FILE.tfrecord is read through a VFS with DIR mounted; it holds Examples
 * with an int64 feature "label" and a bytes feature "name"
 * (make_fixtures.py writes such files).
 */
#include <dbr.h>

#include <stdio.h>
#include <stdlib.h>

/* Prints the failure with libdbr's detail and returns 1. */
static int fail(const char *what, int rc)
{
    fprintf(stderr, "%s: %s (%s)\n", what, dbr_strerror(rc), dbr_last_error());
    return 1;
}

static int list_and_decode(const char *archive_path, const char *jpeg_name)
{
    dbr_zip *zip = NULL;
    int rc = dbr_zip_open(archive_path, NULL, &zip); /* NULL: default limits */
    if (rc != DBR_OK)
        return fail("open archive", rc);

    size_t count = dbr_zip_count(zip);
    dbr_zip_entry *entries = calloc(count ? count : 1, sizeof *entries);
    if (!entries || (rc = dbr_zip_entries(zip, 0, count, entries)) != DBR_OK) {
        free(entries);
        dbr_zip_close(zip);
        return fail("list archive", entries ? rc : DBR_E_NOMEM);
    }
    printf("%s: %zu entries\n", archive_path, count);
    for (size_t i = 0; i < count; i++)
        printf("  %10llu  %s\n", (unsigned long long)entries[i].size, entries[i].name);
    free(entries);

    /* Read the entry into a buffer we own (the CRC is checked), then probe
     * the header and decode into a second buffer we own. */
    size_t index, len;
    if ((rc = dbr_zip_find(zip, jpeg_name, &index)) != DBR_OK) {
        dbr_zip_close(zip);
        return fail("find entry", rc);
    }
    size_t size = (size_t)dbr_zip_entry_size(zip, index);
    unsigned char *jpeg = malloc(size ? size : 1);
    rc = jpeg ? dbr_zip_read(zip, index, jpeg, size, &len) : DBR_E_NOMEM;
    dbr_zip_close(zip);
    if (rc != DBR_OK) {
        free(jpeg);
        return fail("read entry", rc);
    }

    dbr_jpeg_info info;
    if ((rc = dbr_jpeg_read_header(jpeg, len, &info)) != DBR_OK) {
        free(jpeg);
        return fail("jpeg header", rc);
    }
    dbr_jpeg_options opts = {0}; /* zero = defaults: RGB, accurate, strict */
    opts.format = DBR_PIXEL_RGB;
    size_t pitch = (size_t)info.width * 3;
    unsigned char *pixels = malloc(pitch * info.height);
    dbr_jpeg_result result;
    rc = pixels ? dbr_jpeg_decode(jpeg, len, &opts, pixels, pitch, pitch * info.height, &result)
                : DBR_E_NOMEM;
    free(jpeg);
    if (rc != DBR_OK) {
        free(pixels);
        return fail("jpeg decode", rc);
    }
    double sum = 0;
    for (size_t i = 0; i < pitch * result.height; i++)
        sum += pixels[i];
    printf("%s: %ux%u, %u channels, mean value %.2f\n", jpeg_name, result.width,
           result.height, result.channels, sum / (double)(pitch * result.height));
    free(pixels);
    return 0;
}

static int parse_tfrecord(const char *dir, const char *path)
{
    dbr_vfs *vfs = NULL;
    dbr_file *file = NULL;
    dbr_tfrecord_reader *reader = NULL;
    dbr_example_parser *parser = NULL;
    /* A VFS with one directory mounted: path is relative to it and can
     * never climb out of it. */
    int rc = dbr_vfs_create(&vfs);
    if (rc == DBR_OK)
        rc = dbr_vfs_mount_dir(vfs, dir);
    if (rc == DBR_OK)
        rc = dbr_vfs_open(vfs, path, &file);
    dbr_vfs_free(vfs); /* open files stay readable */
    if (rc != DBR_OK)
        return fail("open tfrecord through the VFS", rc);
    rc = dbr_tfrecord_reader_open(file, DBR_TFRECORD_NONE, 1, 0, &reader);
    if (rc == DBR_OK)
        rc = dbr_example_parser_create(0, &parser);
    /* label: FixedLenFeature([], int64), written straight into our int64. */
    if (rc == DBR_OK)
        rc = dbr_example_parser_add(parser, "label", DBR_FEATURE_FIXED, DBR_DTYPE_INT64, 0, 1,
                                    NULL, 0, 0);
    long long total = 0;
    size_t records = 0;
    while (rc == DBR_OK) {
        const void *data;
        size_t len;
        rc = dbr_tfrecord_reader_next(reader, &data, &len, NULL);
        if (rc != DBR_OK)
            break;
        int64_t label = 0;
        dbr_feature_out out = {0};
        out.dst = &label;
        out.dst_cap = sizeof label;
        rc = dbr_example_parse(parser, &data, &len, 1, &out, 1);
        dbr_feature_out_clear(&out, 1);
        total += label;
        records++;
    }
    dbr_example_parser_free(parser);
    dbr_tfrecord_reader_close(reader);
    dbr_file_close(file);
    if (rc != DBR_E_EOF)
        return fail("parse tfrecord", rc);
    printf("%s: %zu records, sum of labels %lld\n", path, records, total);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s ARCHIVE.zip ENTRY.jpg DIR FILE.tfrecord\n", argv[0]);
        return 2;
    }
    printf("libdbr %s (header %d, library %d)\n", dbr_version_string(), DBR_VERSION_NUMBER,
           dbr_version_number());
    /* A library serves this header if it has the same major version and is
     * at least as new: libdbr only appends to its ABI within a major. */
    if (dbr_version_number() / 10000 != DBR_VERSION_MAJOR ||
        dbr_version_number() < DBR_VERSION_NUMBER)
        return 1;
    return list_and_decode(argv[1], argv[2]) || parse_tfrecord(argv[3], argv[4]);
}
