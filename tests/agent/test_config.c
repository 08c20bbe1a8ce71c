/* Unit tests for agent/config.c: file < environment < flags for every kind of option, and
 * errors that name the file and line, the variable or the flag. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "test.h"

extern char **environ;

static char dir[PATH_MAX];

static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(name, "w");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    fputs(text, f);
    fclose(f);
}

/* Removes every STOWAGE_* variable, so the outer environment cannot leak in. */
static void clear_env(void)
{
    for (;;) {
        char name[256] = "";
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "STOWAGE_", 8) == 0) {
                size_t n = strcspn(*e, "=");
                if (n < sizeof(name)) {
                    memcpy(name, *e, n);
                    name[n] = '\0';
                }
                break;
            }
        }
        if (name[0] == '\0')
            return;
        unsetenv(name);
    }
}

typedef struct {
    stow_config cfg;
    char **rest;
    int nrest;
    stow_error err;
    int rc;
} result;

/* argv[0] is the program, argv[1] the command; flags start at index 2 as in main. */
#define LOAD(r, ...)                                                                               \
    do {                                                                                           \
        char *argv_[] = {"stowage", "restore", __VA_ARGS__};                                       \
        load(r, (int)(sizeof(argv_) / sizeof(argv_[0])), argv_);                                   \
    } while (0)

static void load(result *r, int argc, char **argv)
{
    memset(r, 0, sizeof(*r));
    r->rc = stow_config_load(&r->cfg, argc, argv, 2, &r->rest, &r->nrest, &r->err);
}

static void release(result *r)
{
    stow_config_free(&r->cfg);
    free(r->rest);
    r->rest = NULL;
}

/* Expects failure with STOW_EUSAGE and every given fragment in the message. */
static void expect_error(result *r, int line, const char *a, const char *b)
{
    if (r->rc != STOW_EUSAGE || (a && strstr(r->err.msg, a) == NULL) ||
        (b && strstr(r->err.msg, b) == NULL)) {
        fprintf(stderr, "%s:%d: expected EUSAGE with \"%s\" and \"%s\", got rc=%d msg=\"%s\"\n",
                __FILE__, line, a ? a : "", b ? b : "", r->rc, r->err.msg);
        stow_test_failures++;
    }
}
#define EXPECT_ERROR(r, a, b) expect_error(r, __LINE__, a, b)

static void check_list(const stow_strlist *l, int line, size_t n, const char *const *want)
{
    int bad = l->n != n;
    for (size_t i = 0; !bad && i < n; i++)
        bad = strcmp(l->v[i], want[i]) != 0;
    if (bad) {
        fprintf(stderr, "%s:%d: list mismatch: got %zu item(s):", __FILE__, line, l->n);
        for (size_t i = 0; i < l->n; i++)
            fprintf(stderr, " \"%s\"", l->v[i]);
        fprintf(stderr, "\n");
        stow_test_failures++;
    }
}
#define CHECK_LIST(l, ...)                                                                         \
    do {                                                                                           \
        const char *const want_[] = {__VA_ARGS__};                                                 \
        check_list(l, __LINE__, sizeof(want_) / sizeof(want_[0]), want_);                          \
    } while (0)

static void test_defaults(void)
{
    result r;
    char *argv[] = {"stowage", "restore"};
    load(&r, 2, argv);
    CHECK_INT(r.rc, STOW_OK);
    CHECK(r.cfg.url == NULL && r.cfg.key == NULL && r.cfg.config_file == NULL);
    CHECK_INT(r.cfg.path_style, -1);
    CHECK_INT(r.cfg.verify_tls, 1);
    CHECK_INT(r.cfg.level, 0); /* auto */
    CHECK_INT(r.cfg.level_min, 1);
    CHECK_INT(r.cfg.level_max, 9);
    CHECK(r.cfg.layer_size == (1ull << 30));
    CHECK_INT(r.cfg.retries, 5);
    CHECK_INT(r.cfg.strict, 0);
    CHECK_INT(r.cfg.paths.n, 0);
    CHECK_INT(r.nrest, 0);
    release(&r);
}

static void test_string_precedence(void)
{
    result r;
    write_file("stowage.ini", "[storage]\nurl = file:///srv/cache\n[cache]\nkey = from-file\n");
    LOAD(&r, "-v");
    CHECK_INT(r.rc, STOW_OK);
    CHECK_STR(r.cfg.key, "from-file");
    CHECK_STR(r.cfg.url, "file:///srv/cache");
    CHECK_STR(r.cfg.config_file, "stowage.ini");
    CHECK_INT(r.cfg.verbosity, 1);
    release(&r);

    setenv("STOWAGE_KEY", "from-env", 1);
    LOAD(&r, "-q");
    CHECK_INT(r.rc, STOW_OK);
    CHECK_STR(r.cfg.key, "from-env");
    CHECK_STR(r.cfg.url, "file:///srv/cache"); /* untouched options keep the file's value */
    CHECK_INT(r.cfg.verbosity, -1);
    release(&r);

    LOAD(&r, "--key", "from-flag");
    CHECK_INT(r.rc, STOW_OK);
    CHECK_STR(r.cfg.key, "from-flag");
    release(&r);

    LOAD(&r, "--key=eq-form", "--url=file:///x");
    CHECK_INT(r.rc, STOW_OK);
    CHECK_STR(r.cfg.key, "eq-form");
    CHECK_STR(r.cfg.url, "file:///x");
    release(&r);

    /* The last repeated scalar flag wins. */
    LOAD(&r, "--key", "one", "--key", "two");
    CHECK_INT(r.rc, STOW_OK);
    CHECK_STR(r.cfg.key, "two");
    release(&r);

    LOAD(&r, "--key");
    EXPECT_ERROR(&r, "--key", "needs a value");
    release(&r);

    unsetenv("STOWAGE_KEY");
    unlink("stowage.ini");
}

static void test_list_precedence(void)
{
    result r;
    write_file("stowage.ini", "[cache]\npaths = a, b\n");
    char *argv0[] = {"stowage", "save"};
    load(&r, 2, argv0);
    CHECK_INT(r.rc, STOW_OK);
    CHECK_LIST(&r.cfg.paths, "a", "b");
    release(&r);

    /* An empty variable is treated as unset (CI systems export empty inputs). */
    setenv("STOWAGE_PATHS", "", 1);
    load(&r, 2, argv0);
    CHECK_LIST(&r.cfg.paths, "a", "b");
    release(&r);

    setenv("STOWAGE_PATHS", "c\nd", 1);
    load(&r, 2, argv0);
    CHECK_INT(r.rc, STOW_OK);
    CHECK_LIST(&r.cfg.paths, "c", "d");
    release(&r);

    setenv("STOWAGE_PATHS", " c ,\r\n, d\n", 1);
    load(&r, 2, argv0);
    CHECK_LIST(&r.cfg.paths, "c", "d");
    release(&r);

    LOAD(&r, "--path", "e", "--path", "f");
    CHECK_INT(r.rc, STOW_OK);
    CHECK_LIST(&r.cfg.paths, "e", "f");
    release(&r);

    /* The singular flag takes one item verbatim; the plural form splits. */
    LOAD(&r, "--path", "x,y", "--paths", "g, h");
    CHECK_INT(r.rc, STOW_OK);
    CHECK_LIST(&r.cfg.paths, "x,y", "g", "h");
    release(&r);

    /* Repeated keys in the file accumulate. */
    unsetenv("STOWAGE_PATHS");
    write_file("stowage.ini", "[cache]\npaths = a\npaths = b, c\nrestore_keys = docker-\n");
    load(&r, 2, argv0);
    CHECK_INT(r.rc, STOW_OK);
    CHECK_LIST(&r.cfg.paths, "a", "b", "c");
    CHECK_LIST(&r.cfg.restore_keys, "docker-");
    release(&r);

    LOAD(&r, "--restore-key", "k-", "--restore-keys", "j-,i-");
    CHECK_LIST(&r.cfg.restore_keys, "k-", "j-", "i-");
    CHECK_LIST(&r.cfg.paths, "a", "b", "c");
    release(&r);

    /* Headers keep commas: a header value may contain them. */
    LOAD(&r, "--header", "X-A: 1, 2", "--header", "X-B: 3");
    CHECK_INT(r.rc, STOW_OK);
    CHECK_LIST(&r.cfg.headers, "X-A: 1, 2", "X-B: 3");
    release(&r);
    unlink("stowage.ini");
}

static void test_bool_and_tristate(void)
{
    result r;
    char *argv0[] = {"stowage", "save"};
    write_file("stowage.ini",
               "[cache]\nstrict = yes\n[storage]\npath_style = true\nverify_tls = off\n");
    load(&r, 2, argv0);
    CHECK_INT(r.rc, STOW_OK);
    CHECK_INT(r.cfg.strict, 1);
    CHECK_INT(r.cfg.path_style, 1);
    CHECK_INT(r.cfg.verify_tls, 0);
    release(&r);

    setenv("STOWAGE_STRICT", "false", 1);
    setenv("STOWAGE_PATH_STYLE", "auto", 1);
    load(&r, 2, argv0);
    CHECK_INT(r.rc, STOW_OK);
    CHECK_INT(r.cfg.strict, 0);
    CHECK_INT(r.cfg.path_style, -1);
    release(&r);

    LOAD(&r, "--strict", "--path-style", "false");
    CHECK_INT(r.rc, STOW_OK);
    CHECK_INT(r.cfg.strict, 1);
    CHECK_INT(r.cfg.path_style, 0);
    release(&r);

    LOAD(&r, "--strict=0");
    CHECK_INT(r.rc, STOW_OK);
    CHECK_INT(r.cfg.strict, 0);
    release(&r);

    setenv("STOWAGE_STRICT", "maybe", 1);
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "STOWAGE_STRICT", "\"maybe\"");
    release(&r);
    unsetenv("STOWAGE_STRICT");
    unsetenv("STOWAGE_PATH_STYLE");

    write_file("stowage.ini", "[cache]\n\nstrict = sometimes\n");
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "stowage.ini:3:", "strict must be true or false");
    release(&r);
    unlink("stowage.ini");

    LOAD(&r, "--path-style=sideways");
    EXPECT_ERROR(&r, "--path-style", "true, false or auto");
    release(&r);
}

static void test_long_and_size(void)
{
    result r;
    char *argv0[] = {"stowage", "save"};
    write_file("stowage.ini", "[cache]\ncompression_level = 19\nlayer_size = 512M\n");
    load(&r, 2, argv0);
    CHECK_INT(r.rc, STOW_OK);
    CHECK_INT(r.cfg.level, 19);
    CHECK(r.cfg.layer_size == 512ull << 20);
    release(&r);

    write_file("stowage.ini", "; comment\n[cache]\ncompression_level = 0\n");
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "stowage.ini:3:", "compression_level");
    CHECK(strstr(r.err.msg, "1 to 19") != NULL);
    release(&r);
    unlink("stowage.ini");

    setenv("STOWAGE_COMPRESSION_LEVEL", "0", 1);
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "STOWAGE_COMPRESSION_LEVEL", "\"0\"");
    release(&r);
    setenv("STOWAGE_COMPRESSION_LEVEL", "7", 1);
    load(&r, 2, argv0);
    CHECK_INT(r.rc, STOW_OK);
    CHECK_INT(r.cfg.level, 7);
    release(&r);

    LOAD(&r, "--compression-level", "0");
    EXPECT_ERROR(&r, "--compression-level", "\"0\"");
    CHECK(strstr(r.err.msg, "auto or a whole number from 1 to 19") != NULL);
    release(&r);
    /* auto, in any case, from a flag, the environment or the file; then the bounds */
    setenv("STOWAGE_COMPRESSION_LEVEL", "7", 1);
    LOAD(&r, "--compression-level", "AUTO");
    CHECK_INT(r.rc, STOW_OK);
    CHECK_INT(r.cfg.level, 0);
    release(&r);
    unsetenv("STOWAGE_COMPRESSION_LEVEL");
    write_file("stowage.ini",
               "[cache]\ncompression_level = auto\ncompression_min = 2\ncompression_max = 12\n");
    load(&r, 2, argv0);
    CHECK_INT(r.rc, STOW_OK);
    CHECK_INT(r.cfg.level, 0);
    CHECK_INT(r.cfg.level_min, 2);
    CHECK_INT(r.cfg.level_max, 12);
    release(&r);
    unlink("stowage.ini");
    LOAD(&r, "--compression-max", "20");
    EXPECT_ERROR(&r, "--compression-max", "\"20\"");
    release(&r);
    LOAD(&r, "--compression-min", "auto");
    EXPECT_ERROR(&r, "--compression-min", "\"auto\"");
    release(&r);
    LOAD(&r, "--compression-level", "20");
    EXPECT_ERROR(&r, "--compression-level", "\"20\"");
    release(&r);
    LOAD(&r, "--compression-level", "3x");
    EXPECT_ERROR(&r, "--compression-level", "\"3x\"");
    release(&r);
    LOAD(&r, "--compression-level", "99999999999999999999999");
    EXPECT_ERROR(&r, "--compression-level", NULL);
    release(&r);
    LOAD(&r, "--compression-level=12");
    CHECK_INT(r.rc, STOW_OK);
    CHECK_INT(r.cfg.level, 12);
    release(&r);
    unsetenv("STOWAGE_COMPRESSION_LEVEL");

    static const struct {
        const char *v;
        uint64_t want; /* 0 = must be refused */
    } sizes[] = {
        {"512M", 512ull << 20},
        {"2G", 2ull << 30},
        {"2g", 2ull << 30},
        {"1KiB", 1024},
        {"3MB", 3ull << 20},
        {"1T", 1ull << 40},
        {"4096", 4096},
        {"0", 0},
        {"-1", 0},
        {" -1", 0},
        {"-1G", 0},
        {"+5M", 0},
        {"1.5G", 0},
        {"5X", 0},
        {"5MM", 0},
        {"M", 0},
        {"", 0},
        {"99999999999T", 0},
        {"18446744073709551616", 0},
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char arg[64];
        snprintf(arg, sizeof(arg), "--layer-size=%s", sizes[i].v);
        char *argv[] = {"stowage", "save", arg};
        load(&r, 3, argv);
        int ok = sizes[i].want ? (r.rc == STOW_OK && r.cfg.layer_size == sizes[i].want)
                               : (r.rc == STOW_EUSAGE && strstr(r.err.msg, "--layer-size") != NULL);
        if (!ok) {
            fprintf(stderr, "layer size \"%s\": rc=%d size=%llu msg=\"%s\"\n", sizes[i].v, r.rc,
                    (unsigned long long)r.cfg.layer_size, r.err.msg);
            stow_test_failures++;
        }
        release(&r);
    }
    setenv("STOWAGE_LAYER_SIZE", " -1", 1);
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "STOWAGE_LAYER_SIZE", "size");
    release(&r);
    unsetenv("STOWAGE_LAYER_SIZE");
}

static void test_file_errors(void)
{
    result r;
    char *argv0[] = {"stowage", "save"};

    write_file("stowage.ini", "[cache]\nkey = k\nbogus_key = 1\n");
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "stowage.ini:3:", "\"bogus_key\"");
    release(&r);

    /* A key of the other section is unknown where it stands. */
    write_file("stowage.ini", "[storage]\nkey = k\n");
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "stowage.ini:2:", "unknown key \"key\" in [storage]");
    release(&r);

    write_file("stowage.ini", "[cache]\nkey = k\n\n[weird]\nx = 1\n");
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "stowage.ini:5:", "unknown section [weird]");
    release(&r);

    write_file("stowage.ini", "url = file:///x\n");
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "stowage.ini:1:", "\"url\" is outside any section");
    release(&r);

    /* A section header without its ']' is named as such, on its own line, even though inih
     * goes on and the keys below it then land in no section (or the previous one). */
    write_file("stowage.ini", "; comment\n\n[cache\nkey = k\n");
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "stowage.ini:3: syntax error: section header `[cache` has no closing `]`",
                 NULL);
    release(&r);
    write_file("stowage.ini", "[storage]\nurl = file:///x\n[cache  \nkey = k\n");
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "stowage.ini:3: syntax error: section header `[cache` has no closing `]`",
                 NULL);
    release(&r);

    write_file("stowage.ini", "[cache]\nkey = a\nscope = s\nkey = b\n");
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "stowage.ini:4:", "key is set twice");
    release(&r);

    write_file("stowage.ini", "[cache]\nkey = a\nthis line has no equals sign\n");
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "stowage.ini:3: syntax error: `this line has no equals sign` is neither",
                 NULL);
    release(&r);

    /* Lines inih would cut, and NUL bytes, are refused before parsing. */
    char longline[300];
    memset(longline, 'x', sizeof(longline));
    memcpy(longline, "[cache]\nkey = ", 14);
    longline[sizeof(longline) - 2] = '\n';
    longline[sizeof(longline) - 1] = '\0';
    write_file("stowage.ini", longline);
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "stowage.ini:2: line is 290 characters long", NULL);
    release(&r);
    FILE *nf = fopen("stowage.ini", "w");
    CHECK(nf != NULL);
    if (nf != NULL) {
        fwrite("[cache]\nkey = a\0b\n", 1, 18, nf);
        fclose(nf);
    }
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "stowage.ini", "NUL byte");
    release(&r);

    /* A flag does not rescue a broken file: the file is still read and its error reported. */
    write_file("stowage.ini", "[cache]\nbogus = 1\n");
    LOAD(&r, "--key", "k");
    EXPECT_ERROR(&r, "stowage.ini:2:", "bogus");
    release(&r);
    unlink("stowage.ini");
}

static void test_config_file_selection(void)
{
    result r;
    char *argv0[] = {"stowage", "save"};
    char path[PATH_MAX + 32];

    LOAD(&r, "--config", "/nonexistent/stow.ini");
    EXPECT_ERROR(&r, "/nonexistent/stow.ini", NULL);
    release(&r);
    LOAD(&r, "--config=/nonexistent/eq.ini");
    EXPECT_ERROR(&r, "/nonexistent/eq.ini", NULL);
    release(&r);
    LOAD(&r, "--config");
    EXPECT_ERROR(&r, "--config", NULL);
    release(&r);

    write_file("stowage.ini", "[cache]\nkey = cwd-file\n");
    write_file("env.ini", "[cache]\nkey = env-file\n");
    write_file("flag.ini", "[cache]\nkey = flag-file\n");

    load(&r, 2, argv0);
    CHECK_STR(r.cfg.key, "cwd-file");
    release(&r);

    snprintf(path, sizeof(path), "%s/env.ini", dir);
    setenv("STOWAGE_CONFIG", path, 1);
    load(&r, 2, argv0);
    CHECK_INT(r.rc, STOW_OK);
    CHECK_STR(r.cfg.key, "env-file");
    CHECK_STR(r.cfg.config_file, path);
    release(&r);

    LOAD(&r, "--config", "flag.ini");
    CHECK_INT(r.rc, STOW_OK);
    CHECK_STR(r.cfg.key, "flag-file");
    release(&r);

    /* --config may come after other flags; its value is not a positional argument. */
    LOAD(&r, "--strict", "--config=flag.ini", "--scope", "s");
    CHECK_INT(r.rc, STOW_OK);
    CHECK_STR(r.cfg.key, "flag-file");
    CHECK_INT(r.nrest, 0);
    release(&r);

    setenv("STOWAGE_CONFIG", "/nonexistent/env.ini", 1);
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "/nonexistent/env.ini", NULL);
    release(&r);

    unsetenv("STOWAGE_CONFIG");
    unlink("stowage.ini");
    unlink("env.ini");
    unlink("flag.ini");
    load(&r, 2, argv0);
    CHECK_INT(r.rc, STOW_OK);
    CHECK(r.cfg.key == NULL && r.cfg.config_file == NULL);
    release(&r);
}

/* Local inputs are capped before anything is allocated: /dev/zero, a FIFO nobody writes and
 * a (sparse) 2 GB file are refused at once, naming the file. */
static void test_config_file_limits(void)
{
    result r;
    char *argv0[] = {"stowage", "save"};

    setenv("STOWAGE_CONFIG", "/dev/zero", 1);
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "config file /dev/zero: not a regular file", NULL);
    release(&r);

    /* /dev/null is the usual "no config file": read as an empty file */
    setenv("STOWAGE_CONFIG", "/dev/null", 1);
    load(&r, 2, argv0);
    CHECK_INT(r.rc, STOW_OK);
    CHECK_STR(r.cfg.config_file, "/dev/null");
    release(&r);

    CHECK_INT(mkfifo("fifo.ini", 0600), 0);
    setenv("STOWAGE_CONFIG", "fifo.ini", 1);
    load(&r, 2, argv0);
    EXPECT_ERROR(&r, "config file fifo.ini: not a regular file", NULL);
    release(&r);
    unlink("fifo.ini");

    FILE *f = fopen("big.ini", "w");
    CHECK(f != NULL);
    if (f != NULL) {
        CHECK_INT(ftruncate(fileno(f), 2LL << 30), 0);
        fclose(f);
    }
    LOAD(&r, "--config", "big.ini");
    EXPECT_ERROR(&r, "config file big.ini: 2147483648 bytes; the limit is 1048576", NULL);
    release(&r);
    unlink("big.ini");

    LOAD(&r, "--config", ".");
    EXPECT_ERROR(&r, "config file .: not a regular file", NULL);
    release(&r);
    unsetenv("STOWAGE_CONFIG");
}

/* The CLI warns about a password in a URL given on the command line, so it needs to know
 * where the URL came from. */
static void test_url_source(void)
{
    result r;
    char *argv0[] = {"stowage", "save"};
    load(&r, 2, argv0);
    CHECK(r.cfg.url_from == NULL);
    release(&r);
    write_file("stowage.ini", "[storage]\nurl = file:///f\n");
    load(&r, 2, argv0);
    CHECK_STR(r.cfg.url_from, "file");
    release(&r);
    setenv("STOWAGE_URL", "file:///e", 1);
    load(&r, 2, argv0);
    CHECK_STR(r.cfg.url_from, "environment");
    release(&r);
    LOAD(&r, "--url", "http://u:p@h/x");
    CHECK_STR(r.cfg.url_from, "flag");
    CHECK_STR(r.cfg.url, "http://u:p@h/x");
    release(&r);
    unsetenv("STOWAGE_URL");
    unlink("stowage.ini");
}

static void test_flags_and_rest(void)
{
    result r;
    LOAD(&r, "--bogus");
    EXPECT_ERROR(&r, "--bogus", "unknown flag");
    release(&r);
    LOAD(&r, "--bogus=1");
    EXPECT_ERROR(&r, "--bogus", "unknown flag");
    CHECK(strstr(r.err.msg, "=1") == NULL);
    release(&r);
    LOAD(&r, "-x");
    EXPECT_ERROR(&r, "-x", "unknown flag");
    release(&r);
    LOAD(&r, "--key", "k",
         "--this-flag-name-is-far-too-long-to-be-any-real-option-of-stowage-at-all");
    EXPECT_ERROR(&r, "unknown flag", NULL);
    release(&r);

    LOAD(&r, "pos1", "--key", "k", "-", "--", "--strict", "x", "--", "-v");
    CHECK_INT(r.rc, STOW_OK);
    CHECK_STR(r.cfg.key, "k");
    CHECK_INT(r.cfg.strict, 0);
    CHECK_INT(r.cfg.verbosity, 0);
    CHECK_INT(r.nrest, 6);
    if (r.nrest == 6) {
        CHECK_STR(r.rest[0], "pos1");
        CHECK_STR(r.rest[1], "-");
        CHECK_STR(r.rest[2], "--strict");
        CHECK_STR(r.rest[3], "x");
        CHECK_STR(r.rest[4], "--");
        CHECK_STR(r.rest[5], "-v");
    }
    release(&r);

    /* After "--", "--config" is an argument of the command, not a config file. */
    LOAD(&r, "--", "--config", "/nonexistent/x.ini");
    CHECK_INT(r.rc, STOW_OK);
    CHECK_INT(r.nrest, 2);
    release(&r);

    LOAD(&r, "--");
    CHECK_INT(r.rc, STOW_OK);
    CHECK_INT(r.nrest, 0);
    release(&r);
}

static void test_strlist(void)
{
    stow_error err = {0};
    stow_strlist l = {0};
    CHECK_INT(stow_strlist_split(&l, "", &err), STOW_OK);
    CHECK_INT(l.n, 0);
    CHECK_INT(stow_strlist_split(&l, ",,\n ,", &err), STOW_OK);
    CHECK_INT(l.n, 0);
    CHECK_INT(stow_strlist_split(&l, "a b ,\tc\t", &err), STOW_OK);
    CHECK_LIST(&l, "a b", "c");
    CHECK_INT(stow_strlist_add(&l, " d ", &err), STOW_OK);
    CHECK_LIST(&l, "a b", "c", " d ");
    stow_strlist_free(&l);
    CHECK(l.n == 0 && l.v == NULL);
    stow_strlist_free(&l);
}

int main(void)
{
    clear_env();
    snprintf(dir, sizeof(dir), "/tmp/stow-test-config-XXXXXX");
    if (mkdtemp(dir) == NULL || chdir(dir) != 0) {
        perror(dir);
        return 1;
    }
    test_defaults();
    test_string_precedence();
    test_list_precedence();
    test_bool_and_tristate();
    test_long_and_size();
    test_file_errors();
    test_config_file_selection();
    test_config_file_limits();
    test_url_source();
    test_flags_and_rest();
    test_strlist();
    CHECK_INT(rmdir(dir), 0); /* every test removed its files */
    TEST_DONE();
}
