/* vfs.c - the virtual file system: an ordered list of mounts behind one
 * lookup, plus the directory mount.  Archive mounts plug in through
 * dbr__vfs_mount with their own dbr__mount_ops. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct mount {
    const dbr__mount_ops *ops;
    void *impl;
    int is_dir;
} mount;

struct dbr_vfs {
    int refs;              /* atomic: the creator plus every dbr_vfs_retain */
    pthread_rwlock_t lock; /* readers: lookups; writer: mount changes */
    mount *mounts;
    size_t count, cap;
};

/* ---- name lists ---- */

int dbr__names_push(dbr__names *names, const char *name, size_t len)
{
    if (names->count == names->cap) {
        size_t cap = names->cap ? names->cap * 2 : 16;
        char **items = realloc(names->items, cap * sizeof *items);
        if (!items)
            return dbr__fail(DBR_E_NOMEM, "out of memory listing a directory");
        names->items = items;
        names->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return dbr__fail(DBR_E_NOMEM, "out of memory listing a directory");
    memcpy(copy, name, len);
    copy[len] = '\0';
    names->items[names->count++] = copy;
    return DBR_OK;
}

void dbr__names_clear(dbr__names *names)
{
    for (size_t i = 0; i < names->count; i++)
        free(names->items[i]);
    free(names->items);
    names->items = NULL;
    names->count = names->cap = 0;
}

/* ---- directory mounts ---- */

typedef struct dir_mount {
    int fd;      /* the root, opened once; lookups go relative to it          */
    int follow;  /* 1: symlinks may lead anywhere (dbr_mount_options)         */
    char *root;  /* for messages and dbr_file_path */
} dir_mount;

/* "root/path" for messages; "root" for the mount root itself. */
static char *dir_join(const dir_mount *d, const char *path)
{
    size_t a = strlen(d->root), b = strlen(path);
    char *s = malloc(a + b + 2);
    if (!s) {
        dbr__fail(DBR_E_NOMEM, "out of memory joining a path");
        return NULL;
    }
    memcpy(s, d->root, a);
    s[a] = '/';
    memcpy(s + a + 1, path, b + 1);
    if (b == 0)
        s[a] = '\0';
    return s;
}

static const char *dir_rel(const char *path) { return *path ? path : "."; }

/* Confinement.  A confined mount opens paths with openat2(RESOLVE_BENEATH)
 * where the kernel has it (Linux 5.6+): the kernel refuses, with EXDEV,
 * any symlink or ".." that would leave the root.  Elsewhere the walk below
 * does the same in user space, one O_NOFOLLOW component at a time. */
#ifndef O_PATH
#define O_PATH O_RDONLY
#endif

#if defined(__linux__) && !defined(SYS_openat2)
#define SYS_openat2 437 /* the same number on every architecture */
#endif

#ifdef SYS_openat2
struct open_how_v0 { uint64_t flags, mode, resolve; }; /* linux/openat2.h */
#define RESOLVE_NO_MAGICLINKS_ 0x02
#define RESOLVE_BENEATH_ 0x08

static int openat2_beneath(int dirfd, const char *path, int flags)
{
    struct open_how_v0 how = {(uint64_t)flags, 0, RESOLVE_BENEATH_ | RESOLVE_NO_MAGICLINKS_};
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

static int kernel_openat2;      /* probed once                        */
static int openat2_allowed = 1; /* tests turn it off to test the walk */
static pthread_once_t openat2_once = PTHREAD_ONCE_INIT;

/* Seccomp filters may answer ENOSYS or EPERM for a syscall they do not
 * know, so a real call decides, once; any other failure (a working
 * directory that is gone or unreadable) still proves the call exists. */
static void probe_openat2(void)
{
    int fd = openat2_beneath(AT_FDCWD, ".", O_PATH | O_CLOEXEC);
    kernel_openat2 = fd >= 0 || (errno != ENOSYS && errno != EPERM);
    if (fd >= 0)
        close(fd);
}

static int use_openat2(void)
{
    pthread_once(&openat2_once, probe_openat2);
    return kernel_openat2 && openat2_allowed;
}

int dbr__vfs_allow_openat2(int allow)
{
    pthread_once(&openat2_once, probe_openat2);
    openat2_allowed = allow;
    return kernel_openat2;
}
#else
static int use_openat2(void) { return 0; }
int dbr__vfs_allow_openat2(int allow) { (void)allow; return 0; }
#endif

enum { MAX_LINK_HOPS = 40 }; /* as the kernel's ELOOP limit */

/* The user-space walk: every component is checked with
 * AT_SYMLINK_NOFOLLOW and opened with O_NOFOLLOW; a symlink's target is
 * spliced into the path, which is normalised again (a ".." above the root
 * or an absolute target gives EXDEV) and walked from the root again.
 * Returns an fd, or -1 with errno set. */
static int walk_beneath(const dir_mount *d, const char *path, int flags)
{
    size_t len = strlen(path);
    char *buf = malloc(len + 1);
    if (!buf)
        return errno = ENOMEM, -1;
    memcpy(buf, path, len + 1);
    int fd = -1, err = 0, hops = 0, cur = d->fd;
    char *comp = buf;
    while (!err && fd < 0) {
        if (!*buf) {
            fd = openat(d->fd, ".", flags);
            err = fd < 0 ? errno : 0;
            break;
        }
        char *slash = strchr(comp, '/');
        if (slash)
            *slash = '\0';
        struct stat st;
        if (fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            err = errno;
        } else if (S_ISLNK(st.st_mode)) {
            char target[4096];
            ssize_t n = readlinkat(cur, comp, target, sizeof target - 1);
            if (n < 0) {
                err = errno;
                break;
            }
            target[n] = '\0';
            if (target[0] == '/' || ++hops > MAX_LINK_HOPS) {
                err = target[0] == '/' ? EXDEV : ELOOP;
                break;
            }
            /* prefix (up to comp) + target + "/" + rest, normalised */
            const char *rest = slash ? slash + 1 : "";
            size_t pre = (size_t)(comp - buf), tl = (size_t)n, rl = strlen(rest);
            char *joined = malloc(pre + tl + rl + 2);
            size_t out_len;
            if (!joined) {
                err = ENOMEM;
                break;
            }
            memcpy(joined, buf, pre);
            memcpy(joined + pre, target, tl);
            joined[pre + tl] = '/';
            memcpy(joined + pre + tl + 1, rest, rl + 1);
            int rc = dbr_path_normalize(joined, joined, pre + tl + rl + 2, &out_len);
            free(buf);
            buf = joined;
            if (rc != DBR_OK) {
                err = EXDEV; /* climbs above the root */
                break;
            }
            if (cur != d->fd)
                close(cur);
            cur = d->fd;
            comp = buf;
        } else if (!slash) {
            fd = openat(cur, comp, flags | O_NOFOLLOW);
            err = fd < 0 ? errno : 0;
        } else if (!S_ISDIR(st.st_mode)) {
            err = ENOTDIR;
        } else {
            int next = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (next < 0) {
                err = errno;
                break;
            }
            if (cur != d->fd)
                close(cur);
            cur = next;
            *slash = '/';
            comp = slash + 1;
        }
    }
    if (cur != d->fd)
        close(cur);
    free(buf);
    if (fd < 0)
        errno = err;
    return fd;
}

/* Opens a normalised path of the mount with flags (O_CLOEXEC is added);
 * -1 with errno set on failure, EXDEV when it would leave the mount. */
static int dir_openat(const dir_mount *d, const char *path, int flags)
{
    int fd;
    flags |= O_CLOEXEC;
    do {
        if (d->follow)
            fd = openat(d->fd, dir_rel(path), flags);
#ifdef SYS_openat2
        else if (use_openat2())
            fd = openat2_beneath(d->fd, dir_rel(path), flags);
#endif
        else
            fd = walk_beneath(d, path, flags);
    } while (fd < 0 && (errno == EINTR || errno == EAGAIN));
    return fd;
}

/* The status for a failed lookup of path: DBR_E_NOT_FOUND without a
 * message (the VFS tries the next mount), else a recorded failure. */
static int dir_error(const dir_mount *d, int err, const char *what, const char *path)
{
    if (err == ENOENT || err == ENOTDIR)
        return DBR_E_NOT_FOUND;
    char *full = dir_join(d, path);
    int rc = err == EXDEV
                 ? dbr__fail(DBR_E_PERMISSION, "cannot %s '%s': a symlink on the way leads out "
                             "of the directory mount '%s' (mount it with follow_symlinks to "
                             "allow that)", what, path, d->root)
                 : dbr__fail_errno(err, what, full ? full : path);
    free(full);
    return rc;
}

static int dir_open(void *impl, const char *path, dbr_file **out)
{
    dir_mount *d = impl;
    int fd = dir_openat(d, path, O_RDONLY | O_NONBLOCK); /* see dbr_file_open */
    if (fd < 0)
        return dir_error(d, errno, "open", path);
    char *full = dir_join(d, path);
    if (!full) {
        close(fd);
        return DBR_E_NOMEM;
    }
    int rc = dbr__file_from_open_fd(fd, full, out);
    free(full);
    return rc;
}

static int dir_stat(void *impl, const char *path, dbr_stat *out)
{
    dir_mount *d = impl;
    struct stat st;
    int ok;
    if (d->follow) {
        ok = fstatat(d->fd, dir_rel(path), &st, 0) == 0;
    } else {
        int fd = dir_openat(d, path, O_PATH);
        ok = fd >= 0 && fstat(fd, &st) == 0;
        if (fd >= 0) {
            int err = errno;
            close(fd);
            errno = err;
        }
    }
    if (!ok)
        return dir_error(d, errno, "stat", path);
    out->is_dir = S_ISDIR(st.st_mode) ? 1 : 0;
    out->size = out->is_dir ? 0 : (uint64_t)st.st_size;
    out->mtime = (int64_t)st.st_mtime;
    return DBR_OK;
}

static int dir_list(void *impl, const char *dir, dbr__names *names)
{
    dir_mount *d = impl;
    int fd = dir_openat(d, dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return dir_error(d, errno, "list", dir);
    DIR *dp = fdopendir(fd);
    if (!dp) {
        int err = errno;
        close(fd);
        return dbr__fail_errno(err, "cannot list", dir);
    }
    int rc = DBR_OK;
    struct dirent *e;
    while (rc == DBR_OK && (e = readdir(dp)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        int is_dir = e->d_type == DT_DIR, is_link = e->d_type == DT_LNK;
        struct stat st;
        if (e->d_type == DT_UNKNOWN &&
            fstatat(dirfd(dp), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            is_dir = S_ISDIR(st.st_mode);
            is_link = S_ISLNK(st.st_mode);
        }
        if (is_link && d->follow) {
            is_dir = fstatat(dirfd(dp), e->d_name, &st, 0) == 0 && S_ISDIR(st.st_mode);
        } else if (is_link) {
            /* A link is a directory only if it leads to one inside the
             * mount, as a lookup through it would. */
            char *sub = malloc(strlen(dir) + strlen(e->d_name) + 2);
            dbr_stat ds;
            if (sub) {
                sprintf(sub, "%s%s%s", dir, *dir ? "/" : "", e->d_name);
                is_dir = dir_stat(d, sub, &ds) == DBR_OK && ds.is_dir;
                free(sub);
            }
        }
        size_t n = strlen(e->d_name);
        char name[sizeof e->d_name + 1];
        memcpy(name, e->d_name, n);
        if (is_dir)
            name[n++] = '/';
        rc = dbr__names_push(names, name, n);
    }
    closedir(dp);
    return rc;
}

static void dir_release(void *impl)
{
    dir_mount *d = impl;
    close(d->fd);
    free(d->root);
    free(d);
}

static const dbr__mount_ops dir_ops = {dir_open, dir_stat, dir_list, dir_release};

/* ---- the VFS ---- */

int dbr_vfs_create(dbr_vfs **out)
{
    if (!out)
        return dbr__fail(DBR_E_ARG, "dbr_vfs_create: out must not be NULL");
    dbr_vfs *vfs = calloc(1, sizeof *vfs);
    if (!vfs)
        return dbr__fail(DBR_E_NOMEM, "out of memory creating a VFS");
    if (pthread_rwlock_init(&vfs->lock, NULL) != 0) {
        free(vfs);
        return dbr__fail(DBR_E_NOMEM, "cannot create the VFS lock");
    }
    vfs->refs = 1;
    *out = vfs;
    return DBR_OK;
}

void dbr_vfs_retain(const dbr_vfs *vfs)
{
    if (vfs)
        __atomic_fetch_add(&((dbr_vfs *)vfs)->refs, 1, __ATOMIC_RELAXED);
}

void dbr_vfs_free(dbr_vfs *vfs)
{
    if (!vfs || __atomic_sub_fetch(&vfs->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (size_t i = 0; i < vfs->count; i++)
        vfs->mounts[i].ops->release(vfs->mounts[i].impl);
    free(vfs->mounts);
    pthread_rwlock_destroy(&vfs->lock);
    free(vfs);
}

int dbr__vfs_mount(dbr_vfs *vfs, const dbr__mount_ops *ops, void *impl, int is_dir)
{
    int rc = DBR_OK;
    pthread_rwlock_wrlock(&vfs->lock);
    if (vfs->count == vfs->cap) {
        size_t cap = vfs->cap ? vfs->cap * 2 : 4;
        mount *m = realloc(vfs->mounts, cap * sizeof *m);
        if (!m) {
            rc = dbr__fail(DBR_E_NOMEM, "out of memory adding a mount");
        } else {
            vfs->mounts = m;
            vfs->cap = cap;
        }
    }
    if (rc == DBR_OK)
        vfs->mounts[vfs->count++] = (mount){ops, impl, is_dir};
    pthread_rwlock_unlock(&vfs->lock);
    return rc;
}

int dbr_vfs_mount_dir(dbr_vfs *vfs, const char *dir)
{
    return dbr_vfs_mount_dir_ex(vfs, dir, NULL);
}

int dbr_vfs_mount_dir_ex(dbr_vfs *vfs, const char *dir, const dbr_mount_options *opts)
{
    if (!vfs || !dir)
        return dbr__fail(DBR_E_ARG, "dbr_vfs_mount_dir: NULL argument");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return dbr__fail_errno(errno, "cannot mount directory", dir);
    dir_mount *d = calloc(1, sizeof *d);
    char *root = dbr__strdup(dir);
    if (!d || !root) {
        close(fd);
        free(d);
        free(root);
        return dbr__fail(DBR_E_NOMEM, "out of memory mounting '%s'", dir);
    }
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        root[--n] = '\0';
    d->fd = fd;
    d->follow = opts && opts->follow_symlinks;
    d->root = root;
    int rc = dbr__vfs_mount(vfs, &dir_ops, d, 1);
    if (rc != DBR_OK)
        dir_release(d);
    return rc;
}

size_t dbr_vfs_mount_count(const dbr_vfs *vfs)
{
    if (!vfs)
        return 0;
    pthread_rwlock_rdlock((pthread_rwlock_t *)&vfs->lock);
    size_t n = vfs->count;
    pthread_rwlock_unlock((pthread_rwlock_t *)&vfs->lock);
    return n;
}

int dbr_vfs_mount_is_dir(const dbr_vfs *vfs, size_t index)
{
    if (!vfs)
        return dbr__fail(DBR_E_ARG, "dbr_vfs_mount_is_dir: NULL VFS");
    pthread_rwlock_rdlock((pthread_rwlock_t *)&vfs->lock);
    int rc = index < vfs->count ? vfs->mounts[index].is_dir
                                : dbr__fail(DBR_E_ARG, "no mount at index %zu (there are %zu)",
                                            index, vfs->count);
    pthread_rwlock_unlock((pthread_rwlock_t *)&vfs->lock);
    return rc;
}

int dbr_vfs_unmount(dbr_vfs *vfs, size_t index)
{
    if (!vfs)
        return dbr__fail(DBR_E_ARG, "dbr_vfs_unmount: NULL VFS");
    pthread_rwlock_wrlock(&vfs->lock);
    if (index >= vfs->count) {
        size_t count = vfs->count;
        pthread_rwlock_unlock(&vfs->lock);
        return dbr__fail(DBR_E_ARG, "no mount at index %zu (there are %zu)", index, count);
    }
    mount gone = vfs->mounts[index];
    memmove(vfs->mounts + index, vfs->mounts + index + 1,
            (vfs->count - index - 1) * sizeof *vfs->mounts);
    vfs->count--;
    pthread_rwlock_unlock(&vfs->lock);
    gone.ops->release(gone.impl);
    return DBR_OK;
}

/* Normalises path into buf (size cap) or, if longer, into *heap. */
static int normalize_arg(const char *path, char *buf, size_t cap, char **heap,
                         const char **out)
{
    size_t len;
    *heap = NULL;
    if (!path)
        return dbr__fail(DBR_E_ARG, "VFS path must not be NULL");
    int rc = dbr_path_normalize(path, buf, cap, &len);
    if (rc == DBR_E_TOO_SMALL) {
        *heap = malloc(len + 1);
        if (!*heap)
            return dbr__fail(DBR_E_NOMEM, "out of memory normalising '%s'", path);
        rc = dbr_path_normalize(path, *heap, len + 1, &len);
        *out = *heap;
    } else {
        *out = buf;
    }
    return rc;
}

/* Runs one lookup over the mounts in order under the read lock.  kind:
 * 0 = open, 1 = stat. */
static int lookup(const dbr_vfs *vfs, const char *path, int kind, dbr_file **file,
                  dbr_stat *st)
{
    char buf[512], *heap;
    const char *norm = NULL;
    if (!vfs)
        return dbr__fail(DBR_E_ARG, "VFS must not be NULL");
    int rc = normalize_arg(path, buf, sizeof buf, &heap, &norm);
    if (rc != DBR_OK)
        return rc;
    pthread_rwlock_rdlock((pthread_rwlock_t *)&vfs->lock);
    rc = DBR_E_NOT_FOUND;
    for (size_t i = 0; i < vfs->count && rc == DBR_E_NOT_FOUND; i++) {
        const mount *m = &vfs->mounts[i];
        if (kind == 0) {
            rc = m->ops->open(m->impl, norm, file);
        } else {
            rc = m->ops->stat(m->impl, norm, st);
            if (rc == DBR_OK)
                st->mount_index = (int)i;
        }
    }
    size_t mounts = vfs->count;
    pthread_rwlock_unlock((pthread_rwlock_t *)&vfs->lock);
    if (rc == DBR_E_NOT_FOUND)
        dbr__fail(rc, "'%s' not found in any of the %zu mounted locations", path, mounts);
    free(heap);
    return rc;
}

int dbr_vfs_open(const dbr_vfs *vfs, const char *path, dbr_file **out)
{
    if (!out)
        return dbr__fail(DBR_E_ARG, "dbr_vfs_open: out must not be NULL");
    *out = NULL;
    return lookup(vfs, path, 0, out, NULL);
}

int dbr_vfs_stat(const dbr_vfs *vfs, const char *path, dbr_stat *out)
{
    if (!out)
        return dbr__fail(DBR_E_ARG, "dbr_vfs_stat: out must not be NULL");
    return lookup(vfs, path, 1, NULL, out);
}

int dbr_vfs_exists(const dbr_vfs *vfs, const char *path)
{
    dbr_stat st;
    int rc = dbr_vfs_stat(vfs, path, &st);
    if (rc == DBR_OK)
        return 1;
    return rc == DBR_E_NOT_FOUND ? 0 : rc;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int dbr_vfs_list(const dbr_vfs *vfs, const char *dir, char **out, size_t *out_len,
                 size_t *out_count)
{
    char buf[512], *heap;
    const char *norm = NULL;
    if (!vfs || !out || !out_len || !out_count)
        return dbr__fail(DBR_E_ARG, "dbr_vfs_list: NULL argument");
    *out = NULL;
    *out_len = *out_count = 0;
    int rc = normalize_arg(dir, buf, sizeof buf, &heap, &norm);
    if (rc != DBR_OK)
        return rc;
    dbr__names names = {0};
    int found = 0;
    pthread_rwlock_rdlock((pthread_rwlock_t *)&vfs->lock);
    for (size_t i = 0; i < vfs->count && rc == DBR_OK; i++) {
        int r = vfs->mounts[i].ops->list(vfs->mounts[i].impl, norm, &names);
        if (r == DBR_OK)
            found = 1;
        else if (r != DBR_E_NOT_FOUND)
            rc = r;
    }
    pthread_rwlock_unlock((pthread_rwlock_t *)&vfs->lock);
    if (rc == DBR_OK && !found)
        rc = dbr__fail(DBR_E_NOT_FOUND, "directory '%s' not found in any mount", dir);
    if (rc == DBR_OK) {
        if (names.count) /* qsort's pointer must be valid even for zero items */
            qsort(names.items, names.count, sizeof *names.items, compare_names);
        size_t total = 0, unique = 0;
        for (size_t i = 0; i < names.count; i++)
            if (i == 0 || strcmp(names.items[i], names.items[i - 1]) != 0)
                total += strlen(names.items[i]) + 1;
        char *blob = malloc(total ? total : 1);
        if (!blob) {
            rc = dbr__fail(DBR_E_NOMEM, "out of memory listing '%s'", dir);
        } else {
            char *p = blob;
            for (size_t i = 0; i < names.count; i++) {
                if (i > 0 && strcmp(names.items[i], names.items[i - 1]) == 0)
                    continue;
                size_t n = strlen(names.items[i]) + 1;
                memcpy(p, names.items[i], n);
                p += n;
                unique++;
            }
            *out = blob;
            *out_len = total;
            *out_count = unique;
        }
    }
    dbr__names_clear(&names);
    free(heap);
    return rc;
}
