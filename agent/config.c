#include "config.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <strings.h>
#include <unistd.h>

#include "adapt.h"
#include "buf.h"
#include "readfile.h"

typedef enum { T_STR, T_BOOL, T_LONG, T_LEVEL, T_SIZE, T_LIST, T_TRISTATE, T_DURATION } opt_type;

typedef struct {
    const char *section;
    const char *name;  /* file key */
    const char *env;   /* STOWAGE_* */
    const char *flag;  /* --flag */
    const char *alias; /* second flag spelling (singular of list flags) or NULL */
    opt_type type;
    size_t offset;
    long min, max;
    const char *help;
} option;

#define OFF(f) offsetof(stow_config, f)

static const option options[] = {
    {"storage", "url", "STOWAGE_URL", "--url", NULL, T_STR, OFF(url), 0, 0,
     "store: file:///dir, s3://bucket/prefix, http(s)://host/prefix"},
    {"storage", "endpoint", "STOWAGE_ENDPOINT", "--endpoint", NULL, T_STR, OFF(endpoint), 0, 0,
     "S3-compatible endpoint URL (MinIO, Ceph, R2, ...); when unset, AWS_ENDPOINT_URL_S3, then "
     "AWS_ENDPOINT_URL"},
    {"storage", "region", "STOWAGE_REGION", "--region", NULL, T_STR, OFF(region), 0, 0,
     "S3 region (us-east-1)"},
    {"storage", "path_style", "STOWAGE_PATH_STYLE", "--path-style", NULL, T_TRISTATE,
     OFF(path_style), 0, 0, "S3 path-style addressing: true, false or auto"},
    {"storage", "verify_tls", "STOWAGE_VERIFY_TLS", "--verify-tls", NULL, T_BOOL, OFF(verify_tls),
     0, 0, "verify TLS certificates (true)"},
    {"storage", "ca_bundle", "STOWAGE_CA_BUNDLE", "--ca-bundle", NULL, T_STR, OFF(ca_bundle), 0, 0,
     "CA bundle file for TLS (S3: AWS_CA_BUNDLE when unset)"},
    {"storage", "sts_endpoint", "STOWAGE_STS_ENDPOINT", "--sts-endpoint", NULL, T_STR,
     OFF(sts_endpoint), 0, 0, "S3: AWS STS endpoint URL (after AWS_ENDPOINT_URL_STS)"},
    {"storage", "connect_timeout_ms", "STOWAGE_CONNECT_TIMEOUT_MS", "--connect-timeout-ms", NULL,
     T_LONG, OFF(connect_timeout_ms), 1, 600000, "connect timeout in milliseconds (10000)"},
    {"storage", "low_speed_timeout", "STOWAGE_LOW_SPEED_TIMEOUT", "--low-speed-timeout", NULL,
     T_LONG, OFF(low_speed_timeout_s), 1, 3600,
     "abort a transfer below low_speed_limit this many seconds (30)"},
    {"storage", "low_speed_limit", "STOWAGE_LOW_SPEED_LIMIT", "--low-speed-limit", NULL, T_LONG,
     OFF(low_speed_limit), 1, 1073741824, "bytes per second a transfer must keep up (1024)"},
    {"storage", "deadline", "STOWAGE_DEADLINE", "--deadline", NULL, T_LONG, OFF(deadline_s), 1,
     86400, "seconds one store operation, retries included, may go without progress (60)"},
    {"storage", "retries", "STOWAGE_RETRIES", "--retries", NULL, T_LONG, OFF(retries), 0, 20,
     "retries for 5xx, 429, resets and timeouts (5)"},
    {"storage", "parallel", "STOWAGE_PARALLEL", "--parallel", NULL, T_LONG, OFF(parallel), 1, 64,
     "parallel connections per transfer (4)"},
    {"storage", "token_env", "STOWAGE_TOKEN_ENV", "--token-env", NULL, T_STR, OFF(token_env), 0, 0,
     "HTTP: variable holding a bearer token (STOWAGE_HTTP_TOKEN)"},
    {"storage", "headers", "STOWAGE_HEADERS", "--header", NULL, T_LIST, OFF(headers), 0, 0,
     "HTTP: extra \"Name: value\" headers"},
    {"cache", "key", "STOWAGE_KEY", "--key", NULL, T_STR, OFF(key), 0, 0,
     "key template, e.g. docker-{os}-{arch}-{hash:requirements.txt}"},
    {"cache", "restore_keys", "STOWAGE_RESTORE_KEYS", "--restore-key", "--restore-keys", T_LIST,
     OFF(restore_keys), 0, 0, "restore-key prefixes, tried in order after the exact key"},
    {"cache", "paths", "STOWAGE_PATHS", "--path", "--paths", T_LIST, OFF(paths), 0, 0,
     "cache directories (~ and $VARS expand on the runner)"},
    {"cache", "scope", "STOWAGE_SCOPE", "--scope", NULL, T_STR, OFF(scope), 0, 0,
     "scope written to, e.g. {branch} (default)"},
    {"cache", "fallback_scopes", "STOWAGE_FALLBACK_SCOPES", "--fallback-scope", "--fallback-scopes",
     T_LIST, OFF(fallback_scopes), 0, 0, "scopes read when the own scope misses, e.g. main"},
    {"cache", "compression_level", "STOWAGE_COMPRESSION_LEVEL", "--compression-level", NULL,
     T_LEVEL, OFF(level), 1, 19,
     "zstd level, or auto: adapt between compression_min and compression_max to the upload (auto)"},
    {"cache", "compression_min", "STOWAGE_COMPRESSION_MIN", "--compression-min", NULL, T_LONG,
     OFF(level_min), 1, 19,
     "auto: lowest zstd level, used while the compressor is the bottleneck (1)"},
    {"cache", "compression_max", "STOWAGE_COMPRESSION_MAX", "--compression-max", NULL, T_LONG,
     OFF(level_max), 1, 19, "auto: highest zstd level, for slow uploads (9)"},
    {"cache", "threads", "STOWAGE_THREADS", "--threads", NULL, T_LONG, OFF(threads), 0, 256,
     "zstd worker threads (0 = one per core)"},
    {"cache", "layer_size", "STOWAGE_LAYER_SIZE", "--layer-size", NULL, T_SIZE, OFF(layer_size), 1,
     0, "split saves into layers of about this size (1G)"},
    {"cache", "state_dir", "STOWAGE_STATE_DIR", "--state-dir", NULL, T_STR, OFF(state_dir), 0, 0,
     "where restore leaves state for save (~/.cache/stowage/state)"},
    {"cache", "strict", "STOWAGE_STRICT", "--strict", NULL, T_BOOL, OFF(strict), 0, 0,
     "storage and data errors fail the command instead of warning"},
    {"cache", "fail_on_miss", "STOWAGE_FAIL_ON_MISS", "--fail-on-miss", NULL, T_BOOL,
     OFF(fail_on_miss), 0, 0, "restore fails (exit 3) when no entry matches"},
    {"cache", "lookup_only", "STOWAGE_LOOKUP_ONLY", "--lookup-only", NULL, T_BOOL, OFF(lookup_only),
     0, 0, "restore only reports whether an entry exists"},
    {"cache", "preserve_setid", "STOWAGE_PRESERVE_SETID", "--preserve-setid", NULL, T_BOOL,
     OFF(preserve_setid), 0, 0,
     "restore: keep setuid/setgid bits as stored (false: they are stripped, like tar without -p)"},
    {"cache", "save_on_failure", "STOWAGE_SAVE_ON_FAILURE", "--save-on-failure", NULL, T_BOOL,
     OFF(save_on_failure), 0, 0, "stowage run: save also when the command fails (true)"},
    {"cache", "checksum", "STOWAGE_CHECKSUM", "--checksum", NULL, T_BOOL, OFF(checksum), 0, 0,
     "save: compare file contents too, not only size, mtime and mode (false)"},
    {"cache", "update", "STOWAGE_UPDATE", "--update", NULL, T_BOOL, OFF(update), 0, 0,
     "save: update an existing key with a delta (true; --no-update keeps entries immutable)"},
    {"cache", "prune_buildx", "STOWAGE_PRUNE_BUILDX", "--prune-buildx", NULL, T_BOOL,
     OFF(prune_buildx), 0, 0,
     "save: delete blobs index.json does not reach from buildx local caches (true)"},
    {"cache", "buildx_dirs", "STOWAGE_BUILDX_DIRS", "--buildx-dir", "--buildx-dirs", T_LIST,
     OFF(buildx_dirs), 0, 0,
     "buildx cache directories to prune besides the paths detected by oci-layout + index.json"},
    {"cache", "max_layers", "STOWAGE_MAX_LAYERS", "--max-layers", NULL, T_LONG, OFF(max_layers), 2,
     1000, "repack the smallest layers once an entry has more than this many (16)"},
    {"cache", "trim_unused_after", "STOWAGE_TRIM_UNUSED_AFTER", "--trim-unused-after", NULL, T_LONG,
     OFF(trim_unused_after), 0, 1000,
     "save: drop files no build read in this many saves (0 = never)"},
    {"cache", "trim", "STOWAGE_TRIM", "--trim", NULL, T_BOOL, OFF(trim), 0, 0,
     "save: apply trim_unused_after (true; --no-trim skips it once)"},
    {"cache", "trim_local", "STOWAGE_TRIM_LOCAL", "--trim-local", NULL, T_BOOL, OFF(trim_local), 0,
     0, "save: trimmed files are deleted from the runner's directories too (false)"},
    {"cache", "build_status", "STOWAGE_BUILD_STATUS", "--build-status", NULL, T_STR,
     OFF(build_status), 0, 0,
     "save: success, failed or canceled, or the build's exit code; no trimming after a failure"},
    {"cache", "read_only", "STOWAGE_READ_ONLY", "--read-only", NULL, T_BOOL, OFF(read_only), 0, 0,
     "restore only: save writes nothing and exits 0, prune refuses (untrusted jobs)"},
    {"cache", "save", "STOWAGE_SAVE", "--save", NULL, T_BOOL, OFF(save), 0, 0,
     "false is read_only = true (the action's save input)"},
    {"cache", "signing_key_file", "STOWAGE_SIGNING_KEY_FILE", "--signing-key-file", NULL, T_STR,
     OFF(signing_key_file), 0, 0,
     "sign entries: HMAC secret file or Ed25519 private key (PEM); or STOWAGE_SIGNING_KEY"},
    {"cache", "verify_key_file", "STOWAGE_VERIFY_KEY_FILE", "--verify-key-file", NULL, T_STR,
     OFF(verify_key_file), 0, 0,
     "Ed25519 public key (PEM): restore refuses entries it did not sign; cannot sign"},
    {"prune", "max_age", "STOWAGE_MAX_AGE", "--max-age", NULL, T_DURATION, OFF(max_age), 0, 0,
     "prune: delete entries unused for longer than this (e.g. 7d, 12h; 0d: all)"},
    {"prune", "max_size", "STOWAGE_MAX_SIZE", "--max-size", NULL, T_SIZE, OFF(max_size), 0, 0,
     "prune: then delete least recently used entries until the store fits (e.g. 20G)"},
    {"prune", "grace", "STOWAGE_GRACE", "--grace", NULL, T_DURATION, OFF(grace), 0, 0,
     "prune: keep unreferenced layers younger than this, for saves in progress (1h)"},
    {"prune", "dry_run", "STOWAGE_DRY_RUN", "--dry-run", NULL, T_BOOL, OFF(dry_run), 0, 0,
     "prune: report what would be deleted, delete nothing"},
    {"prune", "json", "STOWAGE_JSON", "--json", NULL, T_BOOL, OFF(json), 0, 0,
     "list, stats: JSON output"},
    {"buildkit", "mounts", "STOWAGE_BUILDKIT_MOUNTS", "--buildkit-mount", "--buildkit-mounts",
     T_LIST, OFF(mounts), 0, 0,
     "BuildKit cache mounts kept in host dirs: NAME:TARGET [id=ID] [sharing=S] [uid=N] [gid=N] [mode=0755]"},
    {"buildkit", "dockerfile", "STOWAGE_BUILDKIT_DOCKERFILE", "--dockerfile", NULL, T_STR,
     OFF(dockerfile), 0, 0, "also keep the RUN --mount=type=cache mounts this Dockerfile declares"},
    {"buildkit", "mounts_dir", "STOWAGE_BUILDKIT_MOUNTS_DIR", "--mounts-dir", NULL, T_STR,
     OFF(mounts_dir), 0, 0,
     "host directory holding one directory per mount NAME (~/.docker-cache)"},
    {"buildkit", "helper_image", "STOWAGE_BUILDKIT_HELPER_IMAGE", "--buildkit-helper-image", NULL,
     T_STR, OFF(helper_image), 0, 0, "image of the transfer builds: sh and tar (busybox)"},
    {"buildkit", "builder", "STOWAGE_BUILDKIT_BUILDER", "--builder", NULL, T_STR, OFF(builder), 0,
     0, "buildx builder (docker buildx build --builder); default: docker build"},
    {"buildkit", "docker", "STOWAGE_DOCKER", "--docker", NULL, T_STR, OFF(docker), 0, 0,
     "docker client binary (docker)"},
    {"buildkit", "extract_on_failure", "STOWAGE_BUILDKIT_EXTRACT_ON_FAILURE",
     "--extract-on-failure", NULL, T_BOOL, OFF(extract_on_failure), 0, 0,
     "stowage run: extract the mounts also when the command fails (true)"},
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

typedef enum { SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG } source;

typedef struct {
    stow_config *cfg;
    source src[NOPTIONS];
    const char *file;
    char msg[STOW_ERROR_MSG_MAX];
    int failed;
} loader;

static int parse_bool(int *out, const char *v)
{
    if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") || !strcmp(v, "1"))
        *out = 1;
    else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off") ||
             !strcmp(v, "0"))
        *out = 0;
    else
        return -1;
    return 0;
}

static int parse_duration(long long *out, const char *v)
{
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (end == v || errno != 0 || n < 0)
        return -1;
    long long mul = 1;
    if (*end) {
        switch (*end) {
        case 's': mul = 1; break;
        case 'm': mul = 60; break;
        case 'h': mul = 3600; break;
        case 'd': mul = 86400; break;
        case 'w': mul = 7 * 86400; break;
        default: return -1;
        }
        if (end[1] != '\0')
            return -1;
    }
    if (n > (long long)(INT64_MAX / 2) / mul)
        return -1;
    *out = n * mul;
    return 0;
}

static int parse_size(uint64_t *out, const char *v)
{
    char *end = NULL;
    /* strtoull skips blanks and accepts a sign, and wraps negative numbers to huge ones
     * (" -1" would become 2^64-1): only plain digits may start a size. */
    if (!(v[0] >= '0' && v[0] <= '9'))
        return -1;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (end == v || errno != 0)
        return -1;
    uint64_t mul = 1;
    if (*end) {
        switch (*end) {
        case 'k':
        case 'K': mul = 1ull << 10; break;
        case 'm':
        case 'M': mul = 1ull << 20; break;
        case 'g':
        case 'G': mul = 1ull << 30; break;
        case 't':
        case 'T': mul = 1ull << 40; break;
        default: return -1;
        }
        end++;
        if (*end == 'i' || *end == 'I')
            end++;
        if (*end == 'b' || *end == 'B')
            end++;
        if (*end)
            return -1;
    }
    if (n > UINT64_MAX / mul)
        return -1;
    *out = n * mul;
    return 0;
}

/* Applies value v from source src to option o. where describes the source for messages. */
static int set_option(loader *ld, size_t oi, source src, const char *v, const char *where,
                      stow_error *err)
{
    const option *o = &options[oi];
    char *base = (char *)ld->cfg;
    void *field = base + o->offset;
    switch (o->type) {
    case T_STR: {
        char *dup = strdup(v);
        if (dup == NULL)
            return stow_error_set(err, STOW_ERR, "out of memory");
        free(*(char **)field);
        *(char **)field = dup;
        break;
    }
    case T_BOOL:
        if (parse_bool((int *)field, v) != 0)
            return stow_error_set(err, STOW_EUSAGE, "%s: %s must be true or false, not \"%s\"",
                                  where, o->name, v);
        break;
    case T_TRISTATE:
        if (!strcasecmp(v, "auto"))
            *(int *)field = -1;
        else if (parse_bool((int *)field, v) != 0)
            return stow_error_set(err, STOW_EUSAGE,
                                  "%s: %s must be true, false or auto, not \"%s\"", where, o->name,
                                  v);
        break;
    case T_LEVEL:
        if (!strcasecmp(v, "auto")) {
            *(long *)field = 0;
            break;
        }
        /* fall through */
    case T_LONG: {
        char *end = NULL;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (end == v || *end != '\0' || errno != 0 || n < o->min || n > o->max)
            return stow_error_set(err, STOW_EUSAGE,
                                  "%s: %s must be %sa whole number from %ld to %ld, not \"%s\"",
                                  where, o->name, o->type == T_LEVEL ? "auto or " : "", o->min,
                                  o->max, v);
        *(long *)field = n;
        break;
    }
    case T_SIZE:
        if (parse_size((uint64_t *)field, v) != 0 || *(uint64_t *)field < (uint64_t)o->min)
            return stow_error_set(err, STOW_EUSAGE,
                                  "%s: %s must be a size such as 512M or 2G, not \"%s\"", where,
                                  o->name, v);
        break;
    case T_DURATION:
        if (parse_duration((long long *)field, v) != 0)
            return stow_error_set(err, STOW_EUSAGE,
                                  "%s: %s must be a duration such as 30m, 12h or 7d, not \"%s\"",
                                  where, o->name, v);
        break;
    case T_LIST: {
        stow_strlist *l = field;
        /* A later source replaces the list; repeats within one source accumulate. */
        if (ld->src[oi] != src)
            stow_strlist_free(l);
        int rc = o->offset == OFF(headers) ? stow_strlist_add(l, v, err)
                                           : stow_strlist_split(l, v, err);
        if (rc != STOW_OK)
            return rc;
        break;
    }
    }
    ld->src[oi] = src;
    return STOW_OK;
}

static int on_ini_value(void *user, const char *section, const char *name, const char *value)
{
    loader *ld = user;
    if (ld->failed)
        return 1;
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (strcmp(options[i].section, section) == 0 && strcmp(options[i].name, name) == 0) {
            stow_error e = {0};
            if (ld->src[i] == SRC_FILE && options[i].type != T_LIST) {
                snprintf(ld->msg, sizeof(ld->msg), "%s is set twice in [%s]", name, section);
                ld->failed = 1;
                return 0;
            }
            if (set_option(ld, i, SRC_FILE, value, "value", &e) != STOW_OK) {
                snprintf(ld->msg, sizeof(ld->msg), "%s", e.msg);
                ld->failed = 1;
                return 0;
            }
            return 1;
        }
    }
    int known_section = strcmp(section, "storage") == 0 || strcmp(section, "cache") == 0 ||
                        strcmp(section, "prune") == 0 || strcmp(section, "buildkit") == 0;
    if (section[0] == '\0')
        snprintf(ld->msg, sizeof(ld->msg),
                 "\"%s\" is outside any section (put [storage], [cache], [prune] or "
                 "[buildkit] above it)",
                 name);
    else if (known_section)
        snprintf(ld->msg, sizeof(ld->msg), "unknown key \"%s\" in [%s]", name, section);
    else
        snprintf(ld->msg, sizeof(ld->msg),
                 "unknown section [%s] (expected [storage], [cache], [prune] or [buildkit])",
                 section);
    ld->failed = 1;
    return 0;
}

static void set_defaults(stow_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->path_style = -1;
    cfg->verify_tls = 1;
    cfg->connect_timeout_ms = 10000;
    cfg->low_speed_timeout_s = 30;
    cfg->retries = 5;
    cfg->parallel = 4;
    cfg->level = 0; /* auto */
    cfg->level_min = STOW_ADAPT_MIN_DEFAULT;
    cfg->level_max = STOW_ADAPT_MAX_DEFAULT;
    cfg->threads = 0;
    cfg->layer_size = 1ull << 30;
    cfg->save_on_failure = 1;
    cfg->update = 1;
    cfg->prune_buildx = 1;
    cfg->grace = 3600;
    cfg->max_age = -1; /* unset: no age limit; 0 (--max-age 0d) expires every entry */
    cfg->max_layers = 16;
    cfg->trim = 1;
    cfg->extract_on_failure = 1;
    cfg->save = 1;
}

static const option *find_flag(const char *flag, size_t *idx)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (strcmp(options[i].flag, flag) == 0 ||
            (options[i].alias && strcmp(options[i].alias, flag) == 0)) {
            *idx = i;
            return &options[i];
        }
    }
    return NULL;
}

/* ---- Loading, in the order of precedence: defaults < file < environment < flags ---------- */

/* The config file is named by a flag or the environment, so it is found before the flags are
 * applied: --config FILE / --config=FILE (before any "--"), else STOWAGE_CONFIG, else
 * ./stowage.ini when it exists. *file is NULL when there is none. */
static int find_config_file(const char **file, int argc, char **argv, int first, stow_error *err)
{
    const char *f = getenv("STOWAGE_CONFIG");
    int explicit_file = f != NULL && f[0] != '\0';
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc)
                return stow_error_set(err, STOW_EUSAGE, "--config needs a file name");
            f = argv[i + 1];
            explicit_file = 1;
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            f = argv[i] + 9;
            explicit_file = 1;
        }
    }
    if (!explicit_file && access("stowage.ini", F_OK) == 0)
        f = "stowage.ini";
    *file = (f != NULL && f[0] != '\0') ? f : NULL;
    return STOW_OK;
}

/* The text of line `lineno` (1-based) of text, without its line end, in out. */
static void line_of(char *out, size_t outsz, const char *text, int lineno)
{
    const char *p = text;
    for (int i = 1; i < lineno && p != NULL; i++) {
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    if (p == NULL)
        p = "";
    size_t n = strcspn(p, "\r\n");
    if (n >= outsz)
        n = outsz - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

/* Says what inih found wrong with a line it reported, or returns 0 when the line itself is
 * well-formed (then the handler's message explains the failure). */
static int describe_syntax_error(char *msg, size_t msgsz, const char *line)
{
    const char *b = line;
    while (*b == ' ' || *b == '\t')
        b++;
    size_t n = strlen(b);
    while (n > 0 && (b[n - 1] == ' ' || b[n - 1] == '\t'))
        n--;
    if (n == 0 || b[0] == ';' || b[0] == '#')
        return 0;
    if (b[0] == '[') {
        if (memchr(b, ']', n) != NULL)
            return 0;
        snprintf(msg, msgsz, "syntax error: section header `%.*s` has no closing `]`", (int)n, b);
        return 1;
    }
    if (memchr(b, '=', n) == NULL && memchr(b, ':', n) == NULL) {
        snprintf(msg, msgsz, "syntax error: `%.*s` is neither a [section] header nor key = value",
                 (int)n, b);
        return 1;
    }
    return 0;
}

/* Checks what inih cannot: NUL bytes, and lines longer than it reads (Debian's inih reads at
 * most 199 characters of a line and takes the rest for a new line). */
static int check_file_text(const char *file, const stow_buf *text, stow_error *err)
{
    if (text->len > 0 && memchr(text->ptr, '\0', text->len) != NULL)
        return stow_error_set(err, STOW_EUSAGE,
                              "config file %s: contains a NUL byte (not a text file)", file);
    const char *p = stow_buf_str(text);
    for (int lineno = 1; *p != '\0'; lineno++) {
        size_t n = strcspn(p, "\n");
        size_t ll = n;
        while (ll > 0 && p[ll - 1] == '\r')
            ll--;
        if (ll > 199)
            return stow_error_set(
                err, STOW_EUSAGE,
                "%s:%d: line is %zu characters long; the limit is 199 (continue a list "
                "on indented lines below it)",
                file, lineno, ll);
        p += n;
        if (*p == '\n')
            p++;
    }
    return STOW_OK;
}

/* Reads the config file (at most STOW_CONFIG_MAX_BYTES, a regular file) and applies it. */
static int apply_file(loader *ld, const char *file, stow_error *err)
{
    stow_buf text;
    stow_error rerr = {0};
    int rc;

    stow_buf_init(&text, STOW_CONFIG_MAX_BYTES);
    ld->file = file;
    if ((ld->cfg->config_file = strdup(file)) == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    /* /dev/null is the usual way to say "no config file": an empty file, not a device. */
    if (strcmp(file, "/dev/null") != 0 &&
        stow_read_file(&text, file, STOW_CONFIG_MAX_BYTES, &rerr) != STOW_OK) {
        rc = stow_error_set(err, STOW_EUSAGE, "config file %s", rerr.msg);
        goto done;
    }
    if ((rc = check_file_text(file, &text, err)) != STOW_OK)
        goto done;
    int line = ini_parse_string(stow_buf_str(&text), on_ini_value, ld);
    rc = STOW_OK;
    if (line > 0) {
        /* inih goes on after a syntax error, so the handler may have failed on a later line
         * (a key under a broken section header is "in no section"): the first bad line wins. */
        char text_line[256], msg[STOW_ERROR_MSG_MAX];
        line_of(text_line, sizeof(text_line), stow_buf_str(&text), line);
        if (describe_syntax_error(msg, sizeof(msg), text_line))
            rc = stow_error_set(err, STOW_EUSAGE, "%s:%d: %s", file, line, msg);
        else
            rc = stow_error_set(err, STOW_EUSAGE, "%s:%d: %s", file, line,
                                ld->failed ? ld->msg
                                           : "syntax error (expected [section] or key = value)");
    } else if (line < 0 || ld->failed) {
        rc = stow_error_set(err, STOW_EUSAGE, "%s: %s", file,
                            ld->failed ? ld->msg : "out of memory while parsing");
    }
done:
    stow_buf_free(&text);
    return rc;
}

/* Applies every STOWAGE_* variable that is set (empty counts as unset except for strings). */
static int apply_env(loader *ld, stow_error *err)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        const char *v = getenv(options[i].env);
        if (v == NULL || (v[0] == '\0' && options[i].type != T_STR))
            continue;
        int rc = set_option(ld, i, SRC_ENV, v, options[i].env, err);
        if (rc != STOW_OK)
            return rc;
    }
    return STOW_OK;
}

/* Applies one flag (argv[*i], its value possibly in argv[*i + 1]). */
static int apply_flag(loader *ld, int argc, char **argv, int *i, stow_error *err)
{
    stow_config *cfg = ld->cfg;
    const char *a = argv[*i];
    if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
        cfg->verbosity = 1;
        return STOW_OK;
    }
    if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
        cfg->verbosity = -1;
        return STOW_OK;
    }
    char flag[64];
    const char *eq = strchr(a, '=');
    size_t fl = eq ? (size_t)(eq - a) : strlen(a);
    if (fl >= sizeof(flag))
        return stow_error_set(err, STOW_EUSAGE, "unknown flag %s (see stowage help)", a);
    memcpy(flag, a, fl);
    flag[fl] = '\0';
    if (strcmp(flag, "--config") == 0) {
        if (!eq)
            (*i)++; /* read by find_config_file */
        return STOW_OK;
    }
    size_t oi;
    const option *o = find_flag(flag, &oi);
    if (o == NULL && strncmp(flag, "--no-", 5) == 0 && !eq) {
        /* --no-X turns a boolean --X off. */
        char pos_flag[64];
        snprintf(pos_flag, sizeof(pos_flag), "--%s", flag + 5);
        o = find_flag(pos_flag, &oi);
        if (o != NULL && o->type == T_BOOL)
            return set_option(ld, oi, SRC_FLAG, "false", flag, err);
        o = NULL;
    }
    if (o == NULL)
        return stow_error_set(err, STOW_EUSAGE, "unknown flag %s (see stowage help)", flag);
    const char *v;
    if (eq)
        v = eq + 1;
    else if (o->type == T_BOOL)
        v = "true";
    else if (*i + 1 < argc)
        v = argv[++(*i)];
    else
        return stow_error_set(err, STOW_EUSAGE, "%s needs a value", flag);
    if (o->type == T_LIST && o->offset != OFF(headers)) {
        /* Each repeated flag adds one item (commas allowed only via the plural form). */
        stow_strlist *l = (stow_strlist *)((char *)cfg + o->offset);
        if (ld->src[oi] != SRC_FLAG)
            stow_strlist_free(l);
        ld->src[oi] = SRC_FLAG;
        return strcmp(flag, o->flag) == 0 ? stow_strlist_add(l, v, err)
                                          : stow_strlist_split(l, v, err);
    }
    char where[80];
    snprintf(where, sizeof(where), "flag %s", flag);
    return set_option(ld, oi, SRC_FLAG, v, where, err);
}

/* Applies the flags in argv[first..argc); collects positional arguments (those not starting
 * with '-', a lone "-", and everything after "--") into pos. */
static int apply_flags(loader *ld, int argc, char **argv, int first, char **pos, int *npos,
                       stow_error *err)
{
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            for (int j = i + 1; j < argc; j++)
                pos[(*npos)++] = argv[j];
            break;
        }
        if (a[0] != '-' || a[1] == '\0') {
            pos[(*npos)++] = argv[i];
            continue;
        }
        int rc = apply_flag(ld, argc, argv, &i, err);
        if (rc != STOW_OK)
            return rc;
    }
    return STOW_OK;
}

/* What the CLI needs to know about where values came from. */
static void record_sources(loader *ld)
{
    static const char *const names[] = {NULL, "file", "environment", "flag"};
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (options[i].offset == OFF(url))
            ld->cfg->url_from = names[ld->src[i]];
        if ((options[i].offset == OFF(read_only) && ld->cfg->read_only) ||
            (options[i].offset == OFF(save) && !ld->cfg->save))
            ld->cfg->read_only_from = names[ld->src[i]];
    }
    if (ld->cfg->read_only_from != NULL)
        ld->cfg->read_only = 1;
}

int stow_config_load(stow_config *cfg, int argc, char **argv, int first, char ***rest, int *nrest,
                     stow_error *err)
{
    loader ld = {.cfg = cfg};
    const char *file = NULL;
    char **pos = NULL;
    int npos = 0;
    int rc;

    set_defaults(cfg);
    *rest = NULL;
    *nrest = 0;
    if ((rc = find_config_file(&file, argc, argv, first, err)) != STOW_OK)
        goto done;
    if (file != NULL && (rc = apply_file(&ld, file, err)) != STOW_OK)
        goto done;
    if ((rc = apply_env(&ld, err)) != STOW_OK)
        goto done;
    if ((pos = calloc((size_t)(argc > 0 ? argc : 1), sizeof(char *))) == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    if ((rc = apply_flags(&ld, argc, argv, first, pos, &npos, err)) != STOW_OK)
        goto done;
    record_sources(&ld);
    *rest = pos;
    *nrest = npos;
    pos = NULL;
done:
    free(pos);
    return rc;
}

void stow_config_free(stow_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < NOPTIONS; i++) {
        void *field = (char *)cfg + options[i].offset;
        if (options[i].type == T_STR) {
            free(*(char **)field);
            *(char **)field = NULL;
        } else if (options[i].type == T_LIST) {
            stow_strlist_free(field);
        }
    }
    free(cfg->config_file);
    cfg->config_file = NULL;
}

void stow_config_print_help(void *fp)
{
    FILE *f = fp;
    const char *section = "";
    for (size_t i = 0; i < NOPTIONS; i++) {
        const option *o = &options[i];
        if (strcmp(section, o->section) != 0) {
            section = o->section;
            fprintf(f, "\n  [%s]\n", section);
        }
        fprintf(f, "    %-20s %-28s %s\n", o->name, o->env, o->flag);
        fprintf(f, "        %s\n", o->help);
    }
}

/* Writes s for roff: backslashes and hyphens escaped, a line starting with '.' or '\'' made
 * literal. */
static void roff_put(FILE *f, const char *s)
{
    int bol = 1;
    for (; *s != '\0'; s++) {
        if (bol && (*s == '.' || *s == '\''))
            fputs("\\&", f);
        bol = *s == '\n';
        if (*s == '\\')
            fputs("\\e", f);
        else if (*s == '-')
            fputs("\\-", f);
        else
            fputc(*s, f);
    }
}

static const char *metavar(opt_type t)
{
    switch (t) {
    case T_STR: return "VALUE";
    case T_LONG: return "N";
    case T_LEVEL: return "N|auto";
    case T_SIZE: return "SIZE";
    case T_DURATION: return "DURATION";
    case T_LIST: return "ITEM";
    case T_TRISTATE: return "true|false|auto";
    case T_BOOL: break;
    }
    return NULL;
}

void stow_config_print_man(void *fp)
{
    FILE *f = fp;
    const char *section = "";
    for (size_t i = 0; i < NOPTIONS; i++) {
        const option *o = &options[i];
        if (strcmp(section, o->section) != 0) {
            section = o->section;
            fprintf(f, ".SS [%s]\n", section);
        }
        const char *mv = metavar(o->type);
        fputs(".TP\n\\fB", f);
        roff_put(f, o->flag);
        fputs("\\fR", f);
        if (mv != NULL) {
            fputs(" \\fI", f);
            roff_put(f, mv);
            fputs("\\fR", f);
        }
        if (o->alias != NULL) {
            fputs(", \\fB", f);
            roff_put(f, o->alias);
            fputs("\\fR", f);
            if (mv != NULL) {
                fputs(" \\fI", f);
                roff_put(f, mv);
                fputs("\\fR", f);
            }
        }
        if (o->type == T_BOOL) {
            fputs(", \\fB\\-\\-no", f);
            roff_put(f, o->flag + 1);
            fputs("\\fR", f);
        }
        fputs("\n", f);
        roff_put(f, o->help);
        fputs(".\n.br\nVariable \\fB", f);
        roff_put(f, o->env);
        fprintf(f, "\\fR; in the file: \\fB");
        roff_put(f, o->name);
        fprintf(f, "\\fR in [%s].\n", o->section);
    }
}

void stow_config_print_roff(void *fp, const char *text) { roff_put(fp, text); }
