/* c_decode_floor.c - the physical limit for single-thread JPEG decoding: a
 * plain C loop over libjpeg-turbo (jpeglib.h), the files already in memory,
 * one decompressor reused for every image, accurate settings (islow IDCT,
 * fancy upsampling), RGB rows written into one preallocated buffer.
 *
 * bench_jpeg.py compiles it at run time:
 *   cc -O2 c_decode_floor.c $(pkg-config --cflags --libs libjpeg)
 * Usage: c_decode_floor FILE...   then each line read from stdin runs one
 * pass over all files and prints its seconds, so the benchmark can
 * interleave it with the Python contenders. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jpeglib.h>

static jmp_buf fail;

static void on_error(j_common_ptr c)
{
    (*c->err->output_message)(c);
    longjmp(fail, 1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE...\n", argv[0]);
        return 2;
    }
    int n = argc - 1;
    unsigned char **data = calloc((size_t)n, sizeof *data);
    size_t *len = calloc((size_t)n, sizeof *len);
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(argv[i + 1], "rb");
        if (!f || fseek(f, 0, SEEK_END) != 0)
            return perror(argv[i + 1]), 1;
        len[i] = (size_t)ftell(f);
        rewind(f);
        data[i] = malloc(len[i]);
        if (fread(data[i], 1, len[i], f) != len[i])
            return perror(argv[i + 1]), 1;
        fclose(f);
    }
    unsigned char *out = malloc(64u << 20);
    struct jpeg_decompress_struct d;
    struct jpeg_error_mgr err;
    d.err = jpeg_std_error(&err);
    err.error_exit = on_error;
    if (setjmp(fail))
        return 1;
    jpeg_create_decompress(&d);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        double start = now();
        for (int i = 0; i < n; i++) {
            jpeg_mem_src(&d, data[i], (unsigned long)len[i]);
            jpeg_read_header(&d, TRUE);
            d.out_color_space = JCS_RGB;
            jpeg_start_decompress(&d);
            size_t pitch = (size_t)d.output_width * 3;
            while (d.output_scanline < d.output_height) {
                JSAMPROW row = out + d.output_scanline * pitch;
                jpeg_read_scanlines(&d, &row, 1);
            }
            jpeg_finish_decompress(&d);
        }
        printf("%.9f\n", now() - start);
        fflush(stdout);
    }
    jpeg_destroy_decompress(&d);
    return 0;
}
