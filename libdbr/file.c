/* file.c - dbr_file: a byte range of an fd, or bytes in memory, read with
 * pread so that concurrent readers never share a file offset.  A file is
 * reference-counted: dbr_file_close drops one reference, and readers built
 * on a file (TFRecord readers) hold their own. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct dbr_file {
    int refs;          /* atomic: the opener plus every dbr_file_retain      */
    int fd;            /* -1 for memory-backed files                  */
    int owns_fd;
    uint64_t base;     /* offset of byte 0 within fd                  */
    uint64_t size;
    uint64_t pos;      /* for dbr_file_read / seek / tell only        */
    unsigned char *mem;
    char *path;
    int64_t mtime;
    void *owner;       /* kept alive while the file is open           */
    void (*release_owner)(void *owner);
};

static int file_new(const char *path, dbr_file **out)
{
    dbr_file *f = calloc(1, sizeof *f);
    if (!f)
        return dbr__fail(DBR_E_NOMEM, "out of memory opening '%s'", path);
    f->path = dbr__strdup(path);
    if (!f->path) {
        free(f);
        return DBR_E_NOMEM;
    }
    f->fd = -1;
    f->refs = 1;
    *out = f;
    return DBR_OK;
}

int dbr__file_from_fd(int fd, int owns_fd, uint64_t base, uint64_t size,
                      const char *path, int64_t mtime, dbr_file **out)
{
    int rc = file_new(path, out);
    if (rc != DBR_OK)
        return rc;
    (*out)->fd = fd;
    (*out)->owns_fd = owns_fd;
    (*out)->base = base;
    (*out)->size = size;
    (*out)->mtime = mtime;
    return DBR_OK;
}

int dbr__file_from_memory(void *mem, uint64_t size, const char *path,
                          int64_t mtime, dbr_file **out)
{
    int rc = file_new(path, out);
    if (rc != DBR_OK) {
        free(mem);
        return rc;
    }
    (*out)->mem = mem;
    (*out)->size = size;
    (*out)->mtime = mtime;
    return DBR_OK;
}

void dbr__file_set_owner(dbr_file *file, void *owner,
                         void (*release)(void *owner))
{
    file->owner = owner;
    file->release_owner = release;
}

int dbr__file_fd(const dbr_file *file, uint64_t *base)
{
    *base = file->base;
    return file->fd;
}

/* Files that report a size of 0 but have content (procfs, some sysfs and
 * FUSE files) are read to their end once, up to this many bytes, and
 * served from memory: their size is only known after reading. */
#define SIZELESS_MAX ((size_t)64 << 20)

static int slurp(int fd, const char *path, int64_t mtime, dbr_file **out)
{
    size_t len = 0, cap = 4096;
    unsigned char *mem = malloc(cap);
    if (!mem)
        return dbr__fail(DBR_E_NOMEM, "out of memory reading '%s'", path);
    for (;;) {
        if (len == cap) {
            if (cap >= SIZELESS_MAX) {
                free(mem);
                return dbr__fail(DBR_E_LIMIT, "'%s' reports no size and holds more than "
                                 "%zu bytes", path, SIZELESS_MAX);
            }
            unsigned char *grown = realloc(mem, cap * 2);
            if (!grown) {
                free(mem);
                return dbr__fail(DBR_E_NOMEM, "out of memory reading '%s'", path);
            }
            mem = grown;
            cap *= 2;
        }
        ssize_t n = read(fd, mem + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            free(mem);
            return dbr__fail_errno(err, "cannot read", path);
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    return dbr__file_from_memory(mem, len, path, mtime, out);
}

int dbr__file_from_open_fd(int fd, const char *path, dbr_file **out)
{
    struct stat st;
    int rc;
    if (fstat(fd, &st) != 0)
        rc = dbr__fail_errno(errno, "cannot stat", path);
    else if (S_ISDIR(st.st_mode))
        rc = dbr__fail(DBR_E_IS_DIR, "cannot open '%s': it is a directory", path);
    else if (!S_ISREG(st.st_mode))
        rc = dbr__fail(DBR_E_UNSUPPORTED, "cannot read '%s': it is %s, not a regular file",
                       path, S_ISFIFO(st.st_mode)   ? "a FIFO"
                             : S_ISSOCK(st.st_mode) ? "a socket"
                             : S_ISCHR(st.st_mode)  ? "a character device"
                             : S_ISBLK(st.st_mode)  ? "a block device"
                                                    : "a special file");
    else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0)
        rc = dbr__fail_errno(errno, "cannot read", path);
    else if (st.st_size == 0)
        rc = slurp(fd, path, (int64_t)st.st_mtime, out);
    else if ((rc = dbr__file_from_fd(fd, 1, 0, (uint64_t)st.st_size, path,
                                     (int64_t)st.st_mtime, out)) == DBR_OK)
        return DBR_OK; /* the file owns fd now */
    close(fd);
    return rc;
}

int dbr_file_open(const char *path, dbr_file **out)
{
    int fd;
    if (!path || !out)
        return dbr__fail(DBR_E_ARG, "dbr_file_open: path and out must not be NULL");
    *out = NULL;
    do {
        /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is
         * refused once fstat shows what it is; regular files drop it). */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return dbr__fail_errno(errno, "cannot open", path);
    return dbr__file_from_open_fd(fd, path, out);
}

void dbr_file_retain(const dbr_file *file)
{
    if (file)
        __atomic_fetch_add(&((dbr_file *)file)->refs, 1, __ATOMIC_RELAXED);
}

void dbr_file_close(dbr_file *file)
{
    if (!file || __atomic_sub_fetch(&file->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (file->owns_fd && file->fd >= 0)
        close(file->fd);
    if (file->release_owner)
        file->release_owner(file->owner);
    free(file->mem);
    free(file->path);
    free(file);
}

uint64_t dbr_file_size(const dbr_file *file) { return file ? file->size : 0; }
const char *dbr_file_path(const dbr_file *file) { return file ? file->path : ""; }
int64_t dbr_file_mtime(const dbr_file *file) { return file ? file->mtime : 0; }
const void *dbr_file_data(const dbr_file *file) { return file ? file->mem : NULL; }
uint64_t dbr_file_tell(const dbr_file *file) { return file ? file->pos : 0; }

int dbr__pread_full(int fd, void *dst, size_t cap, uint64_t offset,
                    size_t *out_len, const char *path)
{
    size_t done = 0;
    while (done < cap) {
        ssize_t n = pread(fd, (char *)dst + done, cap - done, (off_t)(offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            *out_len = done;
            return dbr__fail_errno(errno, "cannot read", path);
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    *out_len = done;
    return DBR_OK;
}

int dbr_file_pread(const dbr_file *file, void *dst, size_t cap,
                   uint64_t offset, size_t *out_len)
{
    if (!file || !out_len || (!dst && cap))
        return dbr__fail(DBR_E_ARG, "dbr_file_pread: NULL argument");
    *out_len = 0;
    if (offset >= file->size)
        return DBR_OK;
    uint64_t left = file->size - offset;
    size_t want = left < cap ? (size_t)left : cap;
    if (file->mem) {
        memcpy(dst, file->mem + offset, want);
        *out_len = want;
        return DBR_OK;
    }
    int rc = dbr__pread_full(file->fd, dst, want, file->base + offset, out_len,
                             file->path);
    if (rc == DBR_OK && *out_len < want)
        return dbr__fail(DBR_E_IO, "'%s' is shorter than its recorded size %llu "
                         "(truncated while open?)", file->path,
                         (unsigned long long)file->size);
    return rc;
}

int dbr_file_read(dbr_file *file, void *dst, size_t cap, size_t *out_len)
{
    if (!file)
        return dbr__fail(DBR_E_ARG, "dbr_file_read: NULL file");
    int rc = dbr_file_pread(file, dst, cap, file->pos, out_len);
    if (rc == DBR_OK)
        file->pos += *out_len;
    return rc;
}

int dbr_file_read_all(const dbr_file *file, void *dst, size_t cap,
                      size_t *out_len)
{
    if (!file || !out_len)
        return dbr__fail(DBR_E_ARG, "dbr_file_read_all: NULL argument");
    if (cap < file->size) {
        *out_len = (size_t)file->size;
        return dbr__fail(DBR_E_TOO_SMALL, "reading '%s' needs %llu bytes, got %zu",
                         file->path, (unsigned long long)file->size, cap);
    }
    return dbr_file_pread(file, dst, (size_t)file->size, 0, out_len);
}

int dbr_file_seek(dbr_file *file, int64_t offset, int whence, uint64_t *out_pos)
{
    int64_t origin;
    if (!file)
        return dbr__fail(DBR_E_ARG, "dbr_file_seek: NULL file");
    switch (whence) {
    case DBR_SEEK_SET: origin = 0; break;
    case DBR_SEEK_CUR: origin = (int64_t)file->pos; break;
    case DBR_SEEK_END: origin = (int64_t)file->size; break;
    default:
        return dbr__fail(DBR_E_ARG, "seek in '%s': whence %d is not 0, 1 or 2",
                         file->path, whence);
    }
    if ((offset < 0 && origin + offset < 0) ||
        (offset > 0 && origin > INT64_MAX - offset))
        return dbr__fail(DBR_E_ARG, "seek in '%s' to %lld%+lld is out of range",
                         file->path, (long long)origin, (long long)offset);
    file->pos = (uint64_t)(origin + offset);
    if (out_pos)
        *out_pos = file->pos;
    return DBR_OK;
}
