/* zip_vfs.c - a ZIP archive as a VFS mount.  Entry names are normalised
 * like VFS paths once, at mount time, into a second index: files (from the
 * entries) and directories (explicit entries, and every parent of a name,
 * because archives often omit directory entries).  Names that climb out of
 * the root are left out, so nothing outside the mount is reachable. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct node {
    size_t name;    /* offset of the normalised, NUL-terminated name   */
    size_t len;
    size_t entry;   /* archive entry; SIZE_MAX for an implied directory */
    int is_dir;
} node;

typedef struct zmount {
    dbr_zip *zip;
    node *nodes;
    size_t count, cap;
    char *names;
    size_t names_len, names_cap;
    size_t *table;  /* node index + 1, 0 = empty */
    size_t mask;
} zmount;

static const char *node_name(const zmount *m, const node *n) { return m->names + n->name; }

/* The slot holding name, or the empty slot where it would go. */
static size_t find_slot(const zmount *m, const char *name, size_t len)
{
    size_t slot = (size_t)dbr__hash_bytes(name, len) & m->mask;
    for (size_t i; (i = m->table[slot]) != 0; slot = (slot + 1) & m->mask) {
        const node *n = &m->nodes[i - 1];
        if (n->len == len && memcmp(node_name(m, n), name, len) == 0)
            break;
    }
    return slot;
}

static int grow_table(zmount *m)
{
    size_t size = (m->mask + 1) * 2;
    size_t *table = calloc(size, sizeof *table);
    if (!table)
        return dbr__fail(DBR_E_NOMEM, "out of memory mounting '%s'", dbr_zip_path(m->zip));
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
static int add_node(zmount *m, const char *name, size_t len, size_t entry, int is_dir)
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
            return dbr__fail(DBR_E_NOMEM, "out of memory mounting '%s'", dbr_zip_path(m->zip));
        m->nodes = nodes;
        m->cap = cap;
    }
    if (m->names_len + len + 1 > m->names_cap) {
        size_t cap = m->names_cap ? m->names_cap : 4096;
        while (m->names_len + len + 1 > cap)
            cap *= 2;
        char *names = realloc(m->names, cap);
        if (!names)
            return dbr__fail(DBR_E_NOMEM, "out of memory mounting '%s'", dbr_zip_path(m->zip));
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

/* Adds the entry's normalised name and every parent directory of it. */
static int add_entry(zmount *m, const dbr_zip_entry *e, size_t index, char *buf)
{
    size_t len;
    if (dbr_path_normalize(e->name, buf, (size_t)e->name_len + 1, &len) != DBR_OK)
        return DBR_OK; /* climbs out of the root: unreachable on purpose */
    if (len == 0)
        return DBR_OK; /* "/" or "./": the root itself */
    int rc = add_node(m, buf, len, index, e->is_dir != 0);
    for (size_t i = len; rc == DBR_OK && i-- > 0; )
        if (buf[i] == '/')
            rc = add_node(m, buf, i, SIZE_MAX, 1);
    return rc;
}

static void zmount_release(void *impl)
{
    zmount *m = impl;
    dbr_zip_close(m->zip);
    free(m->nodes);
    free(m->names);
    free(m->table);
    free(m);
}

static const node *lookup(const zmount *m, const char *path)
{
    size_t i = m->table[find_slot(m, path, strlen(path))];
    return i ? &m->nodes[i - 1] : NULL;
}

static int zmount_open(void *impl, const char *path, dbr_file **out)
{
    zmount *m = impl;
    const node *n = lookup(m, path);
    if (!n && *path)
        return DBR_E_NOT_FOUND;
    if (!n || n->is_dir)
        return dbr__fail(DBR_E_IS_DIR, "cannot open '%s' in archive '%s': it is a directory",
                         path, dbr_zip_path(m->zip));
    return dbr_zip_open_entry(m->zip, n->entry, out);
}

static int zmount_stat(void *impl, const char *path, dbr_stat *out)
{
    zmount *m = impl;
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
        dbr_zip_entry e;
        int rc = dbr_zip_entries(m->zip, n->entry, 1, &e);
        if (rc != DBR_OK)
            return rc;
        out->size = n->is_dir ? 0 : e.size;
        out->mtime = e.mtime;
    }
    return DBR_OK;
}

static int zmount_list(void *impl, const char *dir, dbr__names *names)
{
    zmount *m = impl;
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

static const dbr__mount_ops zip_ops = {zmount_open, zmount_stat, zmount_list, zmount_release};

int dbr_vfs_mount_zip(dbr_vfs *vfs, dbr_zip *zip)
{
    if (!vfs || !zip)
        return dbr__fail(DBR_E_ARG, "dbr_vfs_mount_zip: NULL argument");
    zmount *m = calloc(1, sizeof *m);
    if (!m)
        return dbr__fail(DBR_E_NOMEM, "out of memory mounting '%s'", dbr_zip_path(zip));
    dbr_zip_retain(zip);
    m->zip = zip;
    m->mask = 15;
    m->table = calloc(m->mask + 1, sizeof *m->table);
    char *buf = malloc(65536); /* ZIP names are at most 65535 bytes */
    int rc = m->table && buf ? DBR_OK
                             : dbr__fail(DBR_E_NOMEM, "out of memory mounting '%s'",
                                         dbr_zip_path(zip));
    size_t total = dbr_zip_count(zip);
    dbr_zip_entry e;
    for (size_t i = 0; i < total && rc == DBR_OK; i++) {
        rc = dbr_zip_entries(zip, i, 1, &e);
        if (rc == DBR_OK)
            rc = add_entry(m, &e, i, buf);
    }
    free(buf);
    if (rc == DBR_OK)
        rc = dbr__vfs_mount(vfs, &zip_ops, m, 0);
    if (rc != DBR_OK)
        zmount_release(m);
    return rc;
}
