/* archive_vfs.c - an archive (ZIP, tar) as a VFS mount.  Entry names are
 * normalised like VFS paths once, at mount time, into a second index: files
 * (from the entries) and directories (explicit entries, and every parent of
 * a name, because archives often omit directory entries).  Names that climb
 * out of the root are left out, so nothing outside the mount is reachable.
 * The archive itself is reached only through its dbr__archive_ops. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct node {
    size_t name;    /* offset of the normalised, NUL-terminated name   */
    size_t len;
    size_t entry;   /* archive entry; SIZE_MAX for an implied directory */
    int is_dir;
} node;

typedef struct amount {
    const dbr__archive_ops *ops;
    void *archive;
    node *nodes;
    size_t count, cap;
    char *names;
    size_t names_len, names_cap;
    size_t *table;  /* node index + 1, 0 = empty */
    size_t mask;
} amount;

static const char *node_name(const amount *m, const node *n) { return m->names + n->name; }

/* The slot holding name, or the empty slot where it would go. */
static size_t find_slot(const amount *m, const char *name, size_t len)
{
    size_t slot = (size_t)dbr__hash_bytes(name, len) & m->mask;
    for (size_t i; (i = m->table[slot]) != 0; slot = (slot + 1) & m->mask) {
        const node *n = &m->nodes[i - 1];
        if (n->len == len && memcmp(node_name(m, n), name, len) == 0)
            break;
    }
    return slot;
}

static int grow_table(amount *m)
{
    size_t size = (m->mask + 1) * 2;
    size_t *table = calloc(size, sizeof *table);
    if (!table)
        return dbr__fail(DBR_E_NOMEM, "out of memory mounting '%s'", m->ops->path(m->archive));
    free(m->table);
    m->table = table;
    m->mask = size - 1;
    for (size_t i = 0; i < m->count; i++) {
        const node *n = &m->nodes[i];
        m->table[find_slot(m, node_name(m, n), n->len)] = i + 1;
    }
    return DBR_OK;
}

/* Adds a node, or for a file replaces an earlier file of the same name (the
 * later entry wins, as in the archive's own index).  Directories never
 * replace anything. */
static int add_node(amount *m, const char *name, size_t len, size_t entry, int is_dir)
{
    if ((m->count + 1) * 2 > m->mask + 1 && grow_table(m) != DBR_OK)
        return DBR_E_NOMEM;
    size_t slot = find_slot(m, name, len);
    if (m->table[slot]) {
        node *old = &m->nodes[m->table[slot] - 1];
        if (!is_dir && !old->is_dir)
            old->entry = entry;
        return DBR_OK;
    }
    if (m->count == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        node *nodes = realloc(m->nodes, cap * sizeof *nodes);
        if (!nodes)
            return dbr__fail(DBR_E_NOMEM, "out of memory mounting '%s'", m->ops->path(m->archive));
        m->nodes = nodes;
        m->cap = cap;
    }
    if (m->names_len + len + 1 > m->names_cap) {
        size_t cap = m->names_cap ? m->names_cap : 4096;
        while (m->names_len + len + 1 > cap)
            cap *= 2;
        char *names = realloc(m->names, cap);
        if (!names)
            return dbr__fail(DBR_E_NOMEM, "out of memory mounting '%s'", m->ops->path(m->archive));
        m->names = names;
        m->names_cap = cap;
    }
    memcpy(m->names + m->names_len, name, len);
    m->names[m->names_len + len] = '\0';
    m->nodes[m->count] = (node){m->names_len, len, entry, is_dir};
    m->names_len += len + 1;
    m->table[slot] = ++m->count;
    return DBR_OK;
}

/* Adds the entry's normalised name and every parent directory of it; buf
 * has room for name_len + 1 bytes. */
static int add_entry(amount *m, const char *name, size_t name_len, int is_dir, size_t index,
                     char *buf)
{
    size_t len;
    if (dbr_path_normalize(name, buf, name_len + 1, &len) != DBR_OK)
        return DBR_OK; /* climbs out of the root: unreachable on purpose */
    if (len == 0)
        return DBR_OK; /* "/" or "./": the root itself */
    int rc = add_node(m, buf, len, index, is_dir != 0);
    for (size_t i = len; rc == DBR_OK && i-- > 0; )
        if (buf[i] == '/')
            rc = add_node(m, buf, i, SIZE_MAX, 1);
    return rc;
}

static void amount_release(void *impl)
{
    amount *m = impl;
    m->ops->release(m->archive);
    free(m->nodes);
    free(m->names);
    free(m->table);
    free(m);
}

static const node *lookup(const amount *m, const char *path)
{
    size_t i = m->table[find_slot(m, path, strlen(path))];
    return i ? &m->nodes[i - 1] : NULL;
}

static int amount_open(void *impl, const char *path, dbr_file **out)
{
    amount *m = impl;
    const node *n = lookup(m, path);
    if (!n && *path)
        return DBR_E_NOT_FOUND;
    if (!n || n->is_dir)
        return dbr__fail(DBR_E_IS_DIR, "cannot open '%s' in archive '%s': it is a directory",
                         path, m->ops->path(m->archive));
    return m->ops->open(m->archive, n->entry, out);
}

static int amount_stat(void *impl, const char *path, dbr_stat *out)
{
    amount *m = impl;
    const node *n = lookup(m, path);
    memset(out, 0, sizeof *out);
    if (!*path) {
        out->is_dir = 1;
        return DBR_OK;
    }
    if (!n)
        return DBR_E_NOT_FOUND;
    out->is_dir = n->is_dir;
    if (n->entry != SIZE_MAX) {
        int rc = m->ops->stat(m->archive, n->entry, &out->size, &out->mtime);
        if (rc != DBR_OK)
            return rc;
        if (n->is_dir)
            out->size = 0;
    }
    return DBR_OK;
}

static int amount_list(void *impl, const char *dir, dbr__names *names)
{
    amount *m = impl;
    size_t dlen = strlen(dir);
    if (dlen) {
        const node *d = lookup(m, dir);
        if (!d || !d->is_dir)
            return DBR_E_NOT_FOUND;
    }
    int rc = DBR_OK;
    char *tmp = NULL;
    for (size_t i = 0; i < m->count && rc == DBR_OK; i++) {
        const node *n = &m->nodes[i];
        const char *s = node_name(m, n);
        if (dlen && (n->len <= dlen || memcmp(s, dir, dlen) != 0 || s[dlen] != '/'))
            continue;
        const char *child = dlen ? s + dlen + 1 : s;
        size_t clen = n->len - (size_t)(child - s);
        if (memchr(child, '/', clen))
            continue; /* deeper: its parent directory is listed instead */
        if (!n->is_dir) {
            rc = dbr__names_push(names, child, clen);
            continue;
        }
        char *grown = realloc(tmp, clen + 2);
        if (!grown) {
            rc = dbr__fail(DBR_E_NOMEM, "out of memory listing '%s'", dir);
            break;
        }
        tmp = grown;
        memcpy(tmp, child, clen);
        tmp[clen] = '/';
        rc = dbr__names_push(names, tmp, clen + 1);
    }
    free(tmp);
    return rc;
}

static const dbr__mount_ops archive_mount_ops = {amount_open, amount_stat, amount_list,
                                                 amount_release};

int dbr__vfs_mount_archive(dbr_vfs *vfs, const dbr__archive_ops *ops, void *archive,
                           size_t count)
{
    amount *m = calloc(1, sizeof *m);
    if (!m) {
        ops->release(archive);
        return dbr__fail(DBR_E_NOMEM, "out of memory mounting '%s'", ops->path(archive));
    }
    m->ops = ops;
    m->archive = archive;
    m->mask = 15;
    m->table = calloc(m->mask + 1, sizeof *m->table);
    int rc = m->table ? DBR_OK
                      : dbr__fail(DBR_E_NOMEM, "out of memory mounting '%s'", ops->path(archive));
    char *buf = NULL;
    size_t buf_cap = 0;
    for (size_t i = 0; i < count && rc == DBR_OK; i++) {
        const char *name;
        size_t len;
        int is_dir;
        rc = ops->entry(archive, i, &name, &len, &is_dir);
        if (rc == DBR_OK && len + 1 > buf_cap) {
            char *grown = realloc(buf, len + 1);
            if (!grown)
                rc = dbr__fail(DBR_E_NOMEM, "out of memory mounting '%s'", ops->path(archive));
            else {
                buf = grown;
                buf_cap = len + 1;
            }
        }
        if (rc == DBR_OK)
            rc = add_entry(m, name, len, is_dir, i, buf);
    }
    free(buf);
    if (rc == DBR_OK)
        rc = dbr__vfs_mount(vfs, &archive_mount_ops, m, 0);
    if (rc != DBR_OK)
        amount_release(m);
    return rc;
}
