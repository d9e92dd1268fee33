/* Path normalisation: the guard that keeps VFS lookups inside mounts. */
#include "dbr.h"
#include "check.h"

static void expect(const char *in, const char *want)
{
    char buf[256];
    size_t len = 0;
    int rc = dbr_path_normalize(in, buf, sizeof buf, &len);
    CHECK(rc == DBR_OK);
    if (rc == DBR_OK) {
        CHECK_STR(buf, want);
        CHECK(len == strlen(want));
        if (strcmp(buf, want) != 0)
            fprintf(stderr, "  normalize('%s') = '%s', want '%s'\n", in, buf, want);
    }
}

static void expect_escape(const char *in)
{
    char buf[256];
    size_t len;
    CHECK_RC(dbr_path_normalize(in, buf, sizeof buf, &len), DBR_E_ARG);
    CHECK(strstr(dbr_last_error(), "climbs above the root") != NULL);
}

int main(void)
{
    expect("a/b/c.txt", "a/b/c.txt");
    expect("/a/b", "a/b");
    expect("a//b///c/", "a/b/c");
    expect("./a/./b/.", "a/b");
    expect("a/b/../c", "a/c");
    expect("a/..", "");
    expect("", "");
    expect("/", "");
    expect("...", "...");         /* only exactly '..' is special */
    expect("a/..b/c", "a/..b/c");
    expect("a\\..\\b", "a\\..\\b"); /* backslash is an ordinary byte */
    expect("x/y/z/../../w", "x/w");

    expect_escape("..");
    expect_escape("../etc/passwd");
    expect_escape("/../etc/passwd");
    expect_escape("a/../../b");
    expect_escape("a/b/../../..");

    /* Too small: the need is reported, nothing else changes. */
    char tiny[4];
    size_t need = 0;
    CHECK_RC(dbr_path_normalize("abc/def", tiny, sizeof tiny, &need), DBR_E_TOO_SMALL);
    CHECK(need == 7);

    /* Long paths go through the heap branch. */
    char longp[2000], out[2000];
    for (int i = 0; i < 1998; i += 2) { longp[i] = 'a'; longp[i + 1] = '/'; }
    longp[1998] = 'b'; longp[1999] = '\0';
    CHECK_RC(dbr_path_normalize(longp, out, sizeof out, &need), DBR_OK);
    CHECK(need == 1999);

    CHECK_RC(dbr_path_normalize(NULL, out, sizeof out, &need), DBR_E_ARG);
    return check_report("test_path");
}
