/* BuildKit cache mounts <-> host directories through a throwaway build (see mounts.h). */
#include "mounts.h"



#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "paths.h"
#include "progress.h"
#include "util.h"

extern char **environ;

#define MAX_MOUNTS 64
#define MAX_DOCKERFILE (4u << 20)    /* bytes of a Dockerfile read */
#define MAX_GENERATED (256u << 10)   /* bytes of a generated Dockerfile */
#define MAX_CAPTURE (64u << 10)      /* bytes of docker stdout kept */
#define ERR_TAIL 2048                /* bytes of docker stderr quoted in a message */
#define MAX_META (64u << 20)         /* bytes of a .stowage-mount.json read */

void stow_mount_list_free(stow_mount_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++) {
        stow_mount *m = &l->v[i];
        free(m->name);
        free(m->host);
        free(m->id);
        free(m->target);
        free(m->sharing);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int list_push(stow_mount_list *l, stow_mount **out, stow_error *err)
{
    if (l->n >= MAX_MOUNTS)
        return stow_error_set(err, STOW_EUSAGE, "more than %d cache mounts", MAX_MOUNTS);
    stow_mount *nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
    if (nv == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    l->v = nv;
    stow_mount *m = &l->v[l->n++];
    memset(m, 0, sizeof(*m));
    m->uid = m->gid = m->mode = -1;
    *out = m;
    return STOW_OK;
}

/* Values end up in a generated Dockerfile's --mount flag: no separators, quotes, blanks or
 * control characters, and no variable references. */
static int value_ok(const char *v)
{
    if (v == NULL || v[0] == '\0' || strlen(v) > 512)
        return 0;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= ' ' || *p == ',' || *p == '"' || *p == '\'' || *p == '\\' || *p == '$' || *p == '=' || *p == 0x7f)
            return 0;
    return 1;
}

static int set_str(char **field, const char *v, size_t n, stow_error *err)
{
    char *d = strndup(v, n);
    if (d == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    free(*field);
    *field = d;
    return STOW_OK;
}

static int parse_num(long *out, const char *v, int base, long max)
{
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, base);
    if (end == v || *end != '\0' || errno != 0 || n < 0 || n > max)
        return -1;
    *out = n;
    return 0;
}

/* Applies one key=value mount option (both the config form and the Dockerfile's CSV use the
 * same names). Returns 1 when the key is unknown. */
static int set_mount_opt(stow_mount *m, const char *key, const char *val, const char *where, stow_error *err)
{
    if (strcmp(key, "id") == 0)
        return set_str(&m->id, val, strlen(val), err);
    if (strcmp(key, "target") == 0 || strcmp(key, "dst") == 0 || strcmp(key, "destination") == 0)
        return set_str(&m->target, val, strlen(val), err);
    if (strcmp(key, "sharing") == 0) {
        if (strcmp(val, "shared") != 0 && strcmp(val, "private") != 0 && strcmp(val, "locked") != 0)
            return stow_error_set(err, STOW_EUSAGE, "%s: sharing must be shared, private or locked, not \"%s\"",
                                  where, val);
        return set_str(&m->sharing, val, strlen(val), err);
    }
    if (strcmp(key, "uid") == 0 || strcmp(key, "gid") == 0) {
        if (parse_num(key[0] == 'u' ? &m->uid : &m->gid, val, 10, 0x7fffffffL) != 0)
            return stow_error_set(err, STOW_EUSAGE, "%s: %s must be a number, not \"%s\"", where, key, val);
        return STOW_OK;
    }
    if (strcmp(key, "mode") == 0) {
        if (parse_num(&m->mode, val, 8, 07777) != 0)
            return stow_error_set(err, STOW_EUSAGE, "%s: mode must be octal (e.g. 0755), not \"%s\"", where, val);
        return STOW_OK;
    }
    return 1;
}

static int check_mount(const stow_mount *m, const char *where, stow_error *err)
{
    if (!value_ok(m->id))
        return stow_error_set(err, STOW_EUSAGE,
                              "%s: cache id \"%s\" cannot be used (no blanks, commas, quotes, '=' or '$')", where,
                              m->id ? m->id : "");
    return STOW_OK;
}

int stow_mounts_parse_spec(stow_mount_list *l, const char *spec, stow_error *err)
{
    char where[96];
    snprintf(where, sizeof(where), "[buildkit] mounts \"%.60s\"", spec);
    const char *colon = strchr(spec, ':');
    size_t tl = strcspn(spec, " \t");
    if (colon == NULL || colon == spec || (size_t)(colon - spec) >= tl || colon + 1 == spec + tl)
        return stow_error_set(err, STOW_EUSAGE, "%s: expected NAME:TARGET [id=ID] [sharing=S] [uid=N] [gid=N] [mode=0755]",
                              where);
    stow_mount *m = NULL;
    int rc = list_push(l, &m, err);
    if (rc == STOW_OK)
        rc = set_str(&m->name, spec, (size_t)(colon - spec), err);
    if (rc == STOW_OK)
        rc = set_str(&m->target, colon + 1, tl - (size_t)(colon - spec) - 1, err);
    const char *p = spec + tl;
    while (rc == STOW_OK && *p) {
        p += strspn(p, " \t");
        size_t n = strcspn(p, " \t");
        if (n == 0)
            break;
        char opt[600];
        if (n >= sizeof(opt))
            return stow_error_set(err, STOW_EUSAGE, "%s: option too long", where);
        memcpy(opt, p, n);
        opt[n] = '\0';
        char *eq = strchr(opt, '=');
        if (eq == NULL)
            return stow_error_set(err, STOW_EUSAGE, "%s: \"%s\" is not key=value", where, opt);
        *eq = '\0';
        rc = set_mount_opt(m, opt, eq + 1, where, err);
        if (rc == 1 || strcmp(opt, "target") == 0)
            return stow_error_set(err, STOW_EUSAGE, "%s: unknown option \"%s\" (id, sharing, uid, gid, mode)", where, opt);
        p += n;
    }
    if (rc != STOW_OK)
        return rc;
    if (m->id == NULL && (rc = set_str(&m->id, m->target, strlen(m->target), err)) != STOW_OK)
        return rc;
    return check_mount(m, where, err);
}

/* One CSV field of a --mount value (BuildKit reads it with encoding/csv): quotes may wrap a
 * field and "" is a quote inside one. *pp advances past the field and its comma. */
static int csv_field(char *out, size_t outsz, const char **pp)
{
    const char *p = *pp;
    size_t n = 0;
    int quoted = 0;
    for (; *p; p++) {
        if (*p == '"') {
            if (quoted && p[1] == '"') {
                p++;
            } else {
                quoted = !quoted;
                continue;
            }
        } else if (*p == ',' && !quoted) {
            p++;
            break;
        }
        if (n + 1 >= outsz)
            return -1;
        out[n++] = *p;
    }
    out[n] = '\0';
    *pp = p;
    return 0;
}

/* One --mount=... value of a RUN instruction. */
static int parse_mount_flag(stow_mount_list *l, const char *val, const char *where, stow_error *err)
{
    stow_mount tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.uid = tmp.gid = tmp.mode = -1;
    int is_cache = 0, skip = 0, rc = STOW_OK;
    const char *p = val;
    char field[1024];
    while (*p && rc == STOW_OK) {
        if (csv_field(field, sizeof(field), &p) != 0) {
            rc = stow_error_set(err, STOW_EUSAGE, "%s: --mount option too long", where);
            break;
        }
        char *eq = strchr(field, '=');
        const char *k = field, *v = eq ? eq + 1 : "";
        if (eq)
            *eq = '\0';
        if (strchr(v, '$') != NULL) {
            stow_warn("%s: cache mount option %s=%s uses a build argument; that mount is not transferred", where, k, v);
            skip = 1;
            continue;
        }
        if (strcmp(k, "type") == 0) {
            is_cache = strcmp(v, "cache") == 0;
        } else if (strcmp(k, "from") == 0 || strcmp(k, "source") == 0 || strcmp(k, "src") == 0) {
            skip = 2;
        } else if (eq != NULL) {
            int r = set_mount_opt(&tmp, k, v, where, err);
            if (r < 0)
                rc = r;
        }
    }
    if (rc == STOW_OK && is_cache && skip == 2)
        stow_warn("%s: cache mount %s is based on another stage (from=); it is not transferred", where,
                  tmp.id ? tmp.id : tmp.target ? tmp.target : "");
    if (rc == STOW_OK && is_cache && !skip) {
        if (tmp.target == NULL) {
            rc = stow_error_set(err, STOW_EUSAGE, "%s: cache mount without target", where);
        } else {
            if (tmp.id == NULL)
                rc = set_str(&tmp.id, tmp.target, strlen(tmp.target), err);
            for (size_t i = 0; rc == STOW_OK && i < l->n; i++) {
                if (strcmp(l->v[i].id, tmp.id) != 0)
                    continue;
                if (l->v[i].uid != tmp.uid || l->v[i].gid != tmp.gid || l->v[i].mode != tmp.mode)
                    stow_warn("%s: cache id %s is declared twice with different uid/gid/mode (BuildKit keeps two "
                              "caches); the first declaration is transferred", where, tmp.id);
                skip = 1;
            }
            if (rc == STOW_OK && !skip)
                rc = check_mount(&tmp, where, err);
            stow_mount *m = NULL;
            if (rc == STOW_OK && !skip && (rc = list_push(l, &m, err)) == STOW_OK) {
                *m = tmp;
                memset(&tmp, 0, sizeof(tmp));
            }
        }
    }
    free(tmp.id);
    free(tmp.target);
    free(tmp.sharing);
    free(tmp.name);
    return rc;
}

static int handle_instruction(stow_mount_list *l, const char *ins, const char *where, stow_error *err)
{
    const char *p = ins + strspn(ins, " \t");
    if (strncasecmp(p, "RUN", 3) != 0 || (p[3] != ' ' && p[3] != '\t'))
        return STOW_OK;
    p += 3;
    for (;;) {
        p += strspn(p, " \t");
        if (p[0] != '-' || p[1] != '-')
            return STOW_OK; /* the command itself starts */
        size_t n = strcspn(p, " \t");
        if (strncmp(p, "--mount=", 8) == 0) {
            char *val = strndup(p + 8, n - 8);
            if (val == NULL)
                return stow_error_set(err, STOW_ERR, "out of memory");
            int rc = parse_mount_flag(l, val, where, err);
            free(val);
            if (rc != STOW_OK)
                return rc;
        }
        p += n;
    }
}

int stow_mounts_parse_dockerfile(stow_mount_list *l, const char *text, size_t len, const char *where,
                                 stow_error *err)
{
    stow_buf ins;
    stow_buf_init(&ins, MAX_DOCKERFILE);
    char esc = '\\';
    int rc = STOW_OK, directives = 1, lineno = 0, start = 0;
    const char *p = text, *end = text + len;
    char loc[600];
    while (p < end && rc == STOW_OK) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        lineno++;
        size_t n = (size_t)(le - p);
        while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        const char *s = p;
        size_t lead = 0;
        while (lead < n && (s[lead] == ' ' || s[lead] == '\t'))
            lead++;
        p = nl ? nl + 1 : end;
        if (lead < n && s[lead] == '#') {
            /* A parser directive (# escape=`) only before the first instruction or comment. */
            if (directives && ins.len == 0) {
                const char *d = s + lead + 1;
                d += strspn(d, " \t");
                if (strncasecmp(d, "escape", 6) == 0) {
                    const char *e = d + 6 + strspn(d + 6, " \t");
                    if (*e == '=') {
                        e++;
                        e += strspn(e, " \t");
                        if (*e == '`')
                            esc = '`';
                        continue;
                    }
                }
                if (strncasecmp(d, "syntax", 6) == 0 || strncasecmp(d, "check", 5) == 0)
                    continue;
            }
            directives = 0;
            continue; /* comments, also between continuation lines */
        }
        directives = 0;
        if (ins.len == 0) {
            if (lead == n)
                continue;
            start = lineno;
        }
        int cont = n > lead && s[n - 1] == esc;
        if (cont)
            n--;
        if ((rc = stow_buf_add(&ins, s + lead, n - lead, err)) != STOW_OK)
            break;
        if (cont) {
            if ((rc = stow_buf_adds(&ins, " ", err)) != STOW_OK)
                break;
            if (p < end)
                continue;
        }
        snprintf(loc, sizeof(loc), "%s:%d", where, start);
        rc = handle_instruction(l, stow_buf_str(&ins), loc, err);
        stow_buf_reset(&ins);
    }
    stow_buf_free(&ins);
    return rc;
}

static int read_file(stow_buf *b, const char *path, size_t max, stow_error *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return stow_error_set(err, errno == ENOENT ? STOW_EUSAGE : STOW_ERR, "%s: %s", path, strerror(errno));
    stow_buf_init(b, max);
    char chunk[16384];
    size_t n;
    int rc = STOW_OK;
    while (rc == STOW_OK && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = stow_buf_add(b, chunk, n, err);
    if (rc == STOW_OK && ferror(f))
        rc = stow_error_set(err, STOW_ERR, "%s: read error", path);
    fclose(f);
    if (rc != STOW_OK)
        stow_error_wrap(err, "%s", path);
    return rc;
}

/* A host directory name for a mount known only by its id: "/root/.cache/pip" -> "root-.cache-pip". */
static int name_from_id(char **out, const char *id, stow_error *err)
{
    while (*id == '/')
        id++;
    size_t n = strlen(id);
    char *s = malloc(n + 6);
    if (s == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
                 (c == '.' && j > 0);
        s[j++] = ok ? c : '-';
    }
    if (j == 0)
        memcpy(s + j, "cache", 5), j += 5;
    s[j] = '\0';
    *out = s;
    return STOW_OK;
}

int stow_mounts_resolve(stow_mount_list *out, const stow_strlist *specs, const char *dockerfile,
                        const char *mounts_dir, stow_error *err)
{
    stow_mount_list df = {0};
    stow_buf text = {0};
    char *base = NULL;
    int rc = STOW_OK;
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; specs && i < specs->n && rc == STOW_OK; i++)
        rc = stow_mounts_parse_spec(out, specs->v[i], err);
    if (rc == STOW_OK && dockerfile != NULL && dockerfile[0] != '\0') {
        if ((rc = read_file(&text, dockerfile, MAX_DOCKERFILE, err)) == STOW_OK)
            rc = stow_mounts_parse_dockerfile(&df, text.ptr ? text.ptr : "", text.len, dockerfile, err);
        if (rc == STOW_OK && df.n == 0)
            stow_warn("%s declares no RUN --mount=type=cache", dockerfile);
    }
    for (size_t i = 0; i < df.n && rc == STOW_OK; i++) {
        stow_mount *d = &df.v[i], *m = NULL;
        for (size_t j = 0; j < out->n && m == NULL; j++)
            if (strcmp(out->v[j].id, d->id) == 0)
                m = &out->v[j];
        if (m != NULL) { /* the configured entry names the host directory; the Dockerfile the rest */
            if (m->sharing == NULL && d->sharing != NULL) {
                m->sharing = d->sharing;
                d->sharing = NULL;
            }
            if (m->uid < 0)
                m->uid = d->uid;
            if (m->gid < 0)
                m->gid = d->gid;
            if (m->mode < 0)
                m->mode = d->mode;
            continue;
        }
        if ((rc = list_push(out, &m, err)) != STOW_OK)
            break;
        *m = *d;
        memset(d, 0, sizeof(*d));
        rc = name_from_id(&m->name, m->id, err);
    }
    if (rc == STOW_OK)
        rc = stow_path_expand(&base, mounts_dir && mounts_dir[0] ? mounts_dir : "~/.docker-cache", err);
    for (size_t i = 0; i < out->n && rc == STOW_OK; i++) {
        stow_mount *m = &out->v[i];
        if (strchr(m->name, '/') != NULL || m->name[0] == '~' || m->name[0] == '$') {
            rc = stow_path_expand(&m->host, m->name, err);
        } else if (strcmp(m->name, ".") == 0 || strcmp(m->name, "..") == 0) {
            rc = stow_error_set(err, STOW_EUSAGE, "[buildkit] mounts: \"%s\" is not a directory name", m->name);
        } else {
            size_t n = strlen(base) + strlen(m->name) + 2;
            if ((m->host = malloc(n)) == NULL)
                rc = stow_error_set(err, STOW_ERR, "out of memory");
            else
                snprintf(m->host, n, "%s/%s", base, m->name);
        }
        for (size_t j = 0; j < i && rc == STOW_OK; j++)
            if (strcmp(out->v[j].host, m->host) == 0)
                rc = stow_error_set(err, STOW_EUSAGE, "cache mounts %s and %s both use %s", out->v[j].id, m->id,
                                    m->host);
    }
    free(base);
    stow_buf_free(&text);
    stow_mount_list_free(&df);
    if (rc != STOW_OK)
        stow_mount_list_free(out);
    return rc;
}

/* ---- running docker ---- */

typedef struct {
    char tail[ERR_TAIL]; /* the last bytes of stderr */
    size_t tail_len;
    stow_buf out; /* stdout, capped; NULL ptr when not kept */
    int status;   /* exit status, or 128+signal */
} proc;

static void tail_add(proc *pr, const char *d, size_t n)
{
    if (n >= sizeof(pr->tail)) {
        d += n - sizeof(pr->tail);
        n = sizeof(pr->tail);
    }
    if (pr->tail_len + n > sizeof(pr->tail)) {
        size_t drop = pr->tail_len + n - sizeof(pr->tail);
        memmove(pr->tail, pr->tail + drop, pr->tail_len - drop);
        pr->tail_len -= drop;
    }
    memcpy(pr->tail + pr->tail_len, d, n);
    pr->tail_len += n;
}

/* The last non-empty lines of stderr, on one line, for a message. */
static const char *tail_str(proc *pr, char *out, size_t outsz)
{
    size_t n = pr->tail_len, j = 0;
    while (n > 0 && (pr->tail[n - 1] == '\n' || pr->tail[n - 1] == ' '))
        n--;
    size_t start = n > outsz - 1 ? n - (outsz - 1) : 0;
    for (size_t i = start; i < n && j + 1 < outsz; i++)
        out[j++] = pr->tail[i] == '\n' ? ' ' : (pr->tail[i] < ' ' ? '?' : pr->tail[i]);
    out[j] = '\0';
    return out;
}

/* Runs argv with DOCKER_BUILDKIT=1 added to the environment, stdin from /dev/null, stdout
 * kept in pr->out (when keep_out) and stderr's tail in pr->tail (also logged at debug level). */
static int run_proc(proc *pr, char *const *argv, int keep_out, stow_error *err)
{
    int rc = STOW_OK, outp[2] = {-1, -1}, errp[2] = {-1, -1};
    char **envp = NULL;
    posix_spawn_file_actions_t fa;
    int fa_init = 0;
    pid_t pid = -1;
    memset(pr, 0, sizeof(*pr));
    stow_buf_init(&pr->out, MAX_CAPTURE);
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    if ((envp = calloc(nenv + 2, sizeof(char *))) == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], "DOCKER_BUILDKIT=", 16) != 0)
            envp[k++] = environ[i];
    envp[k++] = "DOCKER_BUILDKIT=1";
    if (pipe(outp) != 0 || pipe(errp) != 0) {
        rc = stow_error_set(err, STOW_ERR, "pipe: %s", strerror(errno));
        goto done;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(outp[i], F_SETFD, FD_CLOEXEC);
        fcntl(errp[i], F_SETFD, FD_CLOEXEC);
    }
    if (posix_spawn_file_actions_init(&fa) != 0) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    fa_init = 1;
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
    posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
    int e = posix_spawnp(&pid, argv[0], &fa, NULL, argv, envp);
    if (e != 0) {
        pid = -1;
        rc = stow_error_set(err, e == ENOENT ? STOW_ENOTFOUND : STOW_ERR, "cannot run %s: %s%s", argv[0], strerror(e),
                            e == ENOENT ? " (is the docker client installed and on PATH?)" : "");
        goto done;
    }
    close(outp[1]);
    close(errp[1]);
    outp[1] = errp[1] = -1;
    struct pollfd fds[2] = {{.fd = outp[0], .events = POLLIN}, {.fd = errp[0], .events = POLLIN}};
    int open_fds = 2;
    char buf[8192];
    while (open_fds > 0) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            rc = stow_error_set(err, STOW_ERR, "poll: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read(fds[i].fd, buf, sizeof(buf));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                fds[i].fd = -1;
                open_fds--;
                continue;
            }
            if (i == 1) {
                tail_add(pr, buf, (size_t)n);
                if (stow_log_get_level() >= STOW_LOG_DEBUG)
                    fwrite(buf, 1, (size_t)n, stderr);
            } else if (keep_out && pr->out.len + (size_t)n <= MAX_CAPTURE) {
                stow_buf_add(&pr->out, buf, (size_t)n, NULL);
            }
        }
    }
done:
    if (pid > 0) {
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        pr->status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 1;
    }
    for (int i = 0; i < 2; i++) {
        if (outp[i] >= 0)
            close(outp[i]);
        if (errp[i] >= 0)
            close(errp[i]);
    }
    if (fa_init)
        posix_spawn_file_actions_destroy(&fa);
    free(envp);
    return rc;
}

static const char *docker_bin(const stow_mounts_opts *o)
{
    return o && o->docker && o->docker[0] ? o->docker : "docker";
}

int stow_mounts_check_docker(const stow_mounts_opts *o, stow_error *err)
{
    char *argv[] = {(char *)docker_bin(o), "version", "--format", "{{.Server.Version}}", NULL};
    proc pr;
    char t[600];
    int rc = run_proc(&pr, argv, 1, err);
    if (rc == STOW_OK && pr.status != 0)
        rc = stow_error_set(err, STOW_ERR, "the Docker daemon is unreachable (%s version exited with %d: %s)", argv[0],
                            pr.status, tail_str(&pr, t, sizeof(t)));
    if (rc == STOW_OK)
        stow_debug("docker daemon %.*s", (int)strcspn(stow_buf_str(&pr.out), "\n"), stow_buf_str(&pr.out));
    stow_buf_free(&pr.out);
    return rc;
}

/* ---- host side: tar <-> directory ---- */

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if ((flag == FTW_DP ? rmdir(path) : unlink(path)) != 0 && errno != ENOENT)
        stow_warn("cannot remove %s: %s", path, strerror(errno));
    return 0;
}

static void remove_tree(const char *dir)
{
    struct stat st;
    if (dir != NULL && lstat(dir, &st) == 0)
        nftw(dir, remove_one, 32, FTW_DEPTH | FTW_PHYS);
}

/* Owners recorded by the last extract: {"owners": {"rel/path": [uid, gid], ...}} (root ".").
 * Returns NULL when there is none or it cannot be read (owners then default to 0:0). */
static json_t *load_meta(const char *host)
{
    char path[4200];
    if (snprintf(path, sizeof(path), "%s/%s", host, STOW_MOUNTS_META) >= (int)sizeof(path))
        return NULL;
    struct stat st;
    if (stat(path, &st) != 0 || st.st_size > (off_t)MAX_META)
        return NULL;
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (j == NULL)
        stow_warn("%s: %s (line %d); owners inside the mount default to 0:0", path, je.text, je.line);
    return j;
}

static void owner_of(json_t *owners, const char *rel, long *uid, long *gid)
{
    json_t *o = owners ? json_object_get(owners, rel) : NULL;
    if (json_is_array(o) && json_array_size(o) == 2 && json_is_integer(json_array_get(o, 0)) &&
        json_is_integer(json_array_get(o, 1))) {
        json_int_t u = json_integer_value(json_array_get(o, 0)), g = json_integer_value(json_array_get(o, 1));
        if (u >= 0 && u <= 0x7fffffff && g >= 0 && g <= 0x7fffffff) {
            *uid = (long)u;
            *gid = (long)g;
        }
    }
}

/* Packs host (a directory) into a tar at tarpath: numeric owners from the recorded metadata
 * (else 0:0, and the root as the mount declares), no names, xattrs or ACLs. */
static int pack_dir(uint64_t *files, const stow_mount *m, const char *tarpath, stow_error *err)
{
    struct archive *rd = archive_read_disk_new(), *wr = archive_write_new();
    struct archive_entry *e = archive_entry_new();
    json_t *meta = load_meta(m->host);
    json_t *owners = meta ? json_object_get(meta, "owners") : NULL;
    int rc = STOW_OK;
    char buf[65536];
    size_t hl = strlen(m->host);
    if (rd == NULL || wr == NULL || e == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    archive_read_disk_set_symlink_physical(rd);
    archive_read_disk_set_behavior(rd, ARCHIVE_READDISK_NO_XATTR | ARCHIVE_READDISK_NO_ACL | ARCHIVE_READDISK_NO_FFLAGS |
                                           ARCHIVE_READDISK_NO_TRAVERSE_MOUNTS);
    archive_write_set_format_gnutar(wr);
    archive_write_add_filter_none(wr);
    archive_write_set_bytes_in_last_block(wr, 1);
    if (archive_write_open_filename(wr, tarpath) != ARCHIVE_OK) {
        rc = stow_error_set(err, STOW_ERR, "%s: %s", tarpath, archive_error_string(wr));
        goto done;
    }
    if (archive_read_disk_open(rd, m->host) != ARCHIVE_OK) {
        rc = stow_error_set(err, STOW_ERR, "%s: %s", m->host, archive_error_string(rd));
        goto done;
    }
    for (;;) {
        archive_entry_clear(e);
        int r = archive_read_next_header2(rd, e);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            rc = stow_error_set(err, STOW_ERR, "%s: %s", m->host, archive_error_string(rd));
            goto done;
        }
        const char *path = archive_entry_pathname(e);
        const char *rel = strncmp(path, m->host, hl) == 0 ? path + hl : "";
        while (*rel == '/')
            rel++;
        mode_t type = archive_entry_filetype(e);
        if (type == AE_IFDIR)
            archive_read_disk_descend(rd);
        if (strcmp(rel, STOW_MOUNTS_META) == 0)
            continue;
        if (type != AE_IFDIR && type != AE_IFREG && type != AE_IFLNK) {
            stow_debug("%s/%s: not a file, directory or link; skipped", m->host, rel);
            continue;
        }
        char name[4200];
        if (snprintf(name, sizeof(name), "./%s", rel) >= (int)sizeof(name)) {
            rc = stow_error_set(err, STOW_ERR, "%s/%s: path too long", m->host, rel);
            goto done;
        }
        long uid = 0, gid = 0;
        if (rel[0] == '\0') {
            uid = m->uid > 0 ? m->uid : 0;
            gid = m->gid > 0 ? m->gid : 0;
        }
        owner_of(owners, rel[0] ? rel : ".", &uid, &gid);
        archive_entry_set_pathname(e, name);
        archive_entry_set_uid(e, uid);
        archive_entry_set_gid(e, gid);
        archive_entry_set_uname(e, NULL);
        archive_entry_set_gname(e, NULL);
        if (archive_write_header(wr, e) != ARCHIVE_OK) {
            rc = stow_error_set(err, STOW_ERR, "%s: %s", name, archive_error_string(wr));
            goto done;
        }
        if (type == AE_IFREG && archive_entry_size(e) > 0) {
            ssize_t n;
            while ((n = archive_read_data(rd, buf, sizeof(buf))) > 0) {
                if (archive_write_data(wr, buf, (size_t)n) != n) {
                    rc = stow_error_set(err, STOW_ERR, "%s: %s", tarpath, archive_error_string(wr));
                    goto done;
                }
            }
            if (n < 0) {
                rc = stow_error_set(err, STOW_ERR, "%s/%s: %s", m->host, rel, archive_error_string(rd));
                goto done;
            }
        }
        (*files)++;
    }
    if (archive_write_close(wr) != ARCHIVE_OK)
        rc = stow_error_set(err, STOW_ERR, "%s: %s", tarpath, archive_error_string(wr));
done:
    json_decref(meta);
    archive_entry_free(e);
    if (rd)
        archive_read_free(rd);
    if (wr)
        archive_write_free(wr);
    return rc;
}

/* "./a/b" -> "a/b" in tmp; "." and "./" -> "" (the mount's root). NULL when unsafe. */
static const char *tar_rel(char *tmp, size_t tmpsz, const char *p)
{
    while (p[0] == '.' && p[1] == '/')
        p += 2;
    if (p[0] == '/')
        return NULL;
    if (strcmp(p, ".") == 0 || p[0] == '\0')
        return "";
    size_t n = strlen(p);
    if (n >= tmpsz)
        return NULL;
    memcpy(tmp, p, n + 1);
    while (n > 0 && tmp[n - 1] == '/')
        tmp[--n] = '\0';
    return stow_path_rel_ok(tmp) ? tmp : NULL;
}

/* Writes the owners file into dir; keeps the mtime of an identical previous one (old may be
 * NULL) so that an unchanged mount leaves nothing for save to upload. */
static int write_meta(const char *dir, const char *old_dir, const stow_mount *m, json_t *owners, stow_error *err)
{
    char path[4200], old[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, STOW_MOUNTS_META);
    json_t *j = json_pack("{s:i, s:s, s:s, s:O}", "version", 1, "id", m->id, "target", m->target ? m->target : "",
                          "owners", owners);
    if (j == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int r = json_dump_file(j, path, JSON_SORT_KEYS | JSON_INDENT(1));
    json_decref(j);
    if (r != 0)
        return stow_error_set(err, STOW_ERR, "%s: cannot write", path);
    if (old_dir == NULL || snprintf(old, sizeof(old), "%s/%s", old_dir, STOW_MOUNTS_META) >= (int)sizeof(old))
        return STOW_OK;
    stow_buf a = {0}, b = {0};
    struct stat st;
    if (stat(old, &st) == 0 && read_file(&a, path, MAX_META, NULL) == STOW_OK &&
        read_file(&b, old, MAX_META, NULL) == STOW_OK && a.len == b.len && memcmp(stow_buf_str(&a), stow_buf_str(&b), a.len) == 0) {
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
    }
    stow_buf_free(&a);
    stow_buf_free(&b);
    return STOW_OK;
}

/* 1 when dir holds nothing but the owners file (or cannot be read). */
static int dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 1;
    struct dirent *de;
    int empty = 1;
    while (empty && (de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 && strcmp(de->d_name, STOW_MOUNTS_META) != 0)
            empty = 0;
    closedir(d);
    return empty;
}

/* Unpacks tarpath into a new directory beside m->host, then swaps it in place of m->host. */
static int unpack_dir(uint64_t *files, const stow_mount *m, const char *tarpath, stow_error *err)
{
    struct archive *rd = archive_read_new(), *wr = archive_write_disk_new();
    json_t *owners = json_object();
    char *stage = NULL, *old = NULL, *parent = NULL;
    int rc = STOW_OK, swapped = 0;
    uint64_t count = 0;
    size_t n = strlen(m->host) + 40;
    stage = malloc(n);
    old = malloc(n);
    parent = strdup(m->host);
    if (rd == NULL || wr == NULL || owners == NULL || stage == NULL || old == NULL || parent == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    snprintf(stage, n, "%s.stowage-new-%ld", m->host, (long)getpid());
    snprintf(old, n, "%s.stowage-old-%ld", m->host, (long)getpid());
    char *slash = strrchr(parent, '/');
    if (slash != NULL && slash != parent) {
        *slash = '\0';
        if ((rc = stow_path_mkdirs(parent, 0755, err)) != STOW_OK)
            goto done;
    }
    remove_tree(stage);
    if (mkdir(stage, 0755) != 0) {
        rc = stow_error_set(err, STOW_ERR, "mkdir %s: %s", stage, strerror(errno));
        goto done;
    }
    archive_read_support_format_tar(rd);
    archive_read_support_format_gnutar(rd);
    archive_write_disk_set_options(wr, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                           ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_UNLINK);
    if (archive_read_open_filename(rd, tarpath, 65536) != ARCHIVE_OK) {
        rc = stow_error_set(err, STOW_ERR, "%s: %s", tarpath, archive_error_string(rd));
        goto done;
    }
    struct archive_entry *e;
    char full[8400], hlpath[8400], relbuf[4200], hlbuf[4200], prev[8400];
    struct stat st;
    int had = lstat(m->host, &st) == 0;
    uint64_t reused = 0;
    struct timespec root_times[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    for (;;) {
        int r = archive_read_next_header(rd, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            rc = stow_error_set(err, STOW_ECORRUPT, "%s: %s", tarpath, archive_error_string(rd));
            goto done;
        }
        const char *rel = tar_rel(relbuf, sizeof(relbuf), archive_entry_pathname(e));
        if (rel == NULL) {
            rc = stow_error_set(err, STOW_ECORRUPT, "%s: unsafe path \"%s\"", tarpath, archive_entry_pathname(e));
            goto done;
        }
        mode_t type = archive_entry_filetype(e);
        if (type != AE_IFDIR && type != AE_IFREG && type != AE_IFLNK) {
            stow_debug("%s: %s is not a file, directory or link; skipped", m->id, rel);
            continue;
        }
        if (strcmp(rel, STOW_MOUNTS_META) == 0)
            continue;
        if (rel[0] == '\0' && archive_entry_mtime_is_set(e)) {
            root_times[0].tv_nsec = UTIME_NOW;
            root_times[1].tv_sec = archive_entry_mtime(e);
            root_times[1].tv_nsec = archive_entry_mtime_nsec(e);
        }
        la_int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
        if (uid != 0 || gid != 0) {
            json_t *pair = json_pack("[I, I]", (json_int_t)uid, (json_int_t)gid);
            if (pair == NULL || json_object_set_new(owners, rel[0] ? rel : ".", pair) != 0) {
                rc = stow_error_set(err, STOW_ERR, "out of memory");
                goto done;
            }
        }
        snprintf(full, sizeof(full), rel[0] ? "%s/%s" : "%s%s", stage, rel);
        const char *hl = archive_entry_hardlink(e);
        /* A file the host directory already has with the same size, mtime and mode (what save
         * compares too) is linked into the new tree instead of written again: an unchanged
         * mount costs no host writes. */
        if (had && type == AE_IFREG && hl == NULL && rel[0] &&
            snprintf(prev, sizeof(prev), "%s/%s", m->host, rel) < (int)sizeof(prev) && lstat(prev, &st) == 0 &&
            S_ISREG(st.st_mode) && st.st_size == archive_entry_size(e) && st.st_mtim.tv_sec == archive_entry_mtime(e) &&
            st.st_mtim.tv_nsec == archive_entry_mtime_nsec(e) && (st.st_mode & 07777) == (archive_entry_perm(e) & 07777) &&
            link(prev, full) == 0) {
            count++;
            reused++;
            continue;
        }
        archive_entry_set_pathname(e, full);
        if (hl != NULL) {
            const char *hrel = tar_rel(hlbuf, sizeof(hlbuf), hl);
            if (hrel == NULL || hrel[0] == '\0') {
                rc = stow_error_set(err, STOW_ECORRUPT, "%s: unsafe hard link \"%s\"", tarpath, hl);
                goto done;
            }
            snprintf(hlpath, sizeof(hlpath), "%s/%s", stage, hrel);
            archive_entry_set_hardlink(e, hlpath);
        }
        if (archive_write_header(wr, e) != ARCHIVE_OK) {
            rc = stow_error_set(err, STOW_ERR, "%s: %s", full, archive_error_string(wr));
            goto done;
        }
        if (type == AE_IFREG && archive_entry_size(e) > 0) {
            const void *blk;
            size_t sz;
            la_int64_t off;
            while ((r = archive_read_data_block(rd, &blk, &sz, &off)) == ARCHIVE_OK) {
                if (archive_write_data_block(wr, blk, sz, off) != ARCHIVE_OK) {
                    rc = stow_error_set(err, STOW_ERR, "%s: %s", full, archive_error_string(wr));
                    goto done;
                }
            }
            if (r != ARCHIVE_EOF) {
                rc = stow_error_set(err, STOW_ECORRUPT, "%s: %s", tarpath, archive_error_string(rd));
                goto done;
            }
        }
        if (archive_write_finish_entry(wr) != ARCHIVE_OK) {
            rc = stow_error_set(err, STOW_ERR, "%s: %s", full, archive_error_string(wr));
            goto done;
        }
        count++;
    }
    if (archive_write_close(wr) != ARCHIVE_OK) {
        rc = stow_error_set(err, STOW_ERR, "%s: %s", stage, archive_error_string(wr));
        goto done;
    }
    if ((rc = write_meta(stage, had ? m->host : NULL, m, owners, err)) != STOW_OK)
        goto done;
    /* The root's own time last: writing the owners file changed it. */
    utimensat(AT_FDCWD, stage, root_times, 0);
    *files += count;
    if (reused)
        stow_debug("%s: %llu unchanged files linked from the previous tree", m->host, (unsigned long long)reused);
    if (count <= 1 && had && !dir_empty(m->host)) {
        /* An empty mount (a builder that never ran the step, or lost the injected data)
         * never replaces a cache that has content: a save would delete it from the store. */
        stow_warn("cache mount %s is empty; %s keeps its contents", m->id, m->host);
        goto done;
    }
    remove_tree(old);
    if (had && rename(m->host, old) != 0) {
        rc = stow_error_set(err, STOW_ERR, "rename %s: %s", m->host, strerror(errno));
        goto done;
    }
    if (rename(stage, m->host) != 0) {
        rc = stow_error_set(err, STOW_ERR, "rename %s to %s: %s", stage, m->host, strerror(errno));
        if (had)
            rename(old, m->host);
        goto done;
    }
    swapped = 1;
    if (had)
        remove_tree(old);
done:
    if (!swapped && stage != NULL)
        remove_tree(stage);
    json_decref(owners);
    if (rd)
        archive_read_free(rd);
    if (wr)
        archive_write_free(wr);
    free(stage);
    free(old);
    free(parent);
    return rc;
}

/* ---- the throwaway builds ---- */

static int add_mount_flag(stow_buf *df, const stow_mount *m, size_t i, stow_error *err)
{
    int rc = stow_buf_addf(df, err, " \\\n    --mount=type=cache,id=%s,target=/stowage-m%zu", m->id, i);
    if (rc == STOW_OK && m->sharing)
        rc = stow_buf_addf(df, err, ",sharing=%s", m->sharing);
    if (rc == STOW_OK && m->uid >= 0)
        rc = stow_buf_addf(df, err, ",uid=%ld", m->uid);
    if (rc == STOW_OK && m->gid >= 0)
        rc = stow_buf_addf(df, err, ",gid=%ld", m->gid);
    if (rc == STOW_OK && m->mode >= 0)
        rc = stow_buf_addf(df, err, ",mode=0%lo", (unsigned long)m->mode);
    return rc;
}

static int image_ok(const char *s)
{
    if (s == NULL || s[0] == '\0' || s[0] == '-' || strlen(s) > 255)
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == 0x7f || *p == '\\' || *p == '"' || *p == '\'' || *p == '$')
            return 0;
    return 1;
}

static int write_text(const char *path, const char *text, stow_error *err)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return stow_error_set(err, STOW_ERR, "%s: %s", path, strerror(errno));
    size_t n = strlen(text);
    int bad = fwrite(text, 1, n, f) != n;
    if (fclose(f) != 0 || bad)
        return stow_error_set(err, STOW_ERR, "%s: write failed", path);
    return STOW_OK;
}

/* Builds dockerfile with context ctx, exporting the last stage into out. */
static int build(const stow_mounts_opts *o, const char *dockerfile, const char *ctx, const char *out, const char *what,
                 stow_error *err)
{
    char dest[4200];
    snprintf(dest, sizeof(dest), "type=local,dest=%s", out);
    char *argv[20];
    int a = 0;
    argv[a++] = (char *)docker_bin(o);
    if (o && o->builder && o->builder[0]) {
        argv[a++] = "buildx";
        argv[a++] = "build";
        argv[a++] = "--builder";
        argv[a++] = (char *)o->builder;
    } else {
        argv[a++] = "build";
    }
    argv[a++] = "--network";
    argv[a++] = "none";
    argv[a++] = "--progress";
    argv[a++] = "plain";
    argv[a++] = "-f";
    argv[a++] = (char *)dockerfile;
    argv[a++] = "-o";
    argv[a++] = dest;
    argv[a++] = (char *)ctx;
    argv[a] = NULL;
    proc pr;
    char t[700];
    int rc = run_proc(&pr, argv, 0, err);
    if (rc == STOW_OK && pr.status != 0)
        rc = stow_error_set(err, STOW_ERR, "%s build failed (exit %d): %s", what, pr.status, tail_str(&pr, t, sizeof(t)));
    stow_buf_free(&pr.out);
    return rc;
}

static int make_tmp(char **out, const stow_mounts_opts *o, stow_error *err)
{
    const char *base = o && o->tmp_dir ? o->tmp_dir : getenv("TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    size_t n = strlen(base) + 32;
    char *t = malloc(n);
    if (t == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    snprintf(t, n, "%s/stowage-mounts.XXXXXX", base);
    if (mkdtemp(t) == NULL) {
        int e = errno;
        free(t);
        return stow_error_set(err, STOW_ERR, "mkdtemp in %s: %s", base, strerror(e));
    }
    *out = t;
    return STOW_OK;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static int transfer(stow_mounts_result *res, const stow_mount_list *l, const stow_mounts_opts *o, int extract,
                    stow_error *err)
{
    const char *what = extract ? "extract" : "inject";
    const char *helper = o && o->helper_image && o->helper_image[0] ? o->helper_image : "busybox";
    char *tmp = NULL, *use = NULL;
    stow_buf df, cmd;
    stow_buf_init(&df, MAX_GENERATED);
    stow_buf_init(&cmd, MAX_GENERATED);
    char p1[4200], p2[4200], p3[4200];
    int rc = STOW_OK;
    int64_t t0 = stow_now_ms();
    memset(res, 0, sizeof(*res));
    if (l->n == 0)
        goto done;
    if (!image_ok(helper)) {
        rc = stow_error_set(err, STOW_EUSAGE, "[buildkit] helper_image \"%s\" is not an image name", helper);
        goto done;
    }
    if ((use = calloc(l->n, 1)) == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    if ((rc = make_tmp(&tmp, o, err)) != STOW_OK)
        goto done;
    snprintf(p1, sizeof(p1), "%s/ctx", tmp);
    snprintf(p2, sizeof(p2), "%s/out", tmp);
    if (mkdir(p1, 0700) != 0) {
        rc = stow_error_set(err, STOW_ERR, "mkdir %s: %s", p1, strerror(errno));
        goto done;
    }
    size_t used = 0;
    for (size_t i = 0; i < l->n; i++) {
        const stow_mount *m = &l->v[i];
        if (extract) {
            use[i] = 1;
            used++;
            continue;
        }
        struct stat st;
        if (stat(m->host, &st) != 0 || !S_ISDIR(st.st_mode)) {
            stow_info("mounts inject: %s is empty or missing; cache mount %s starts empty", m->host, m->id);
            continue;
        }
        uint64_t files = 0;
        int64_t tp = stow_now_ms();
        snprintf(p3, sizeof(p3), "%s/m%zu.tar", p1, i);
        if ((rc = pack_dir(&files, m, p3, err)) != STOW_OK)
            goto done;
        stow_debug("mounts inject: packed %s in %.2f s", m->host, (double)(stow_now_ms() - tp) / 1000.0);
        if (files <= 1) { /* only the directory itself */
            stow_info("mounts inject: %s is empty; cache mount %s starts empty", m->host, m->id);
            unlink(p3);
            continue;
        }
        use[i] = 1;
        used++;
        res->files += files;
        res->bytes += file_size(p3);
    }
    if (used == 0)
        goto done;
    rc = stow_buf_addf(&df, err, "# generated by stowage mounts %s\nFROM %s AS stowage\nRUN", what, helper);
    if (rc == STOW_OK && !extract)
        rc = stow_buf_adds(&df, " \\\n    --mount=type=bind,target=/stowage-src", err);
    /* The time makes every transfer a new step, never one BuildKit answers from its cache. */
    if (rc == STOW_OK)
        rc = stow_buf_addf(&cmd, err, "set -e; : %lld.%ld; mkdir -p /stowage-out", (long long)stow_unix_time(),
                           (long)getpid());
    for (size_t i = 0; i < l->n && rc == STOW_OK; i++) {
        if (!use[i])
            continue;
        rc = add_mount_flag(&df, &l->v[i], i, err);
        if (rc == STOW_OK && extract)
            rc = stow_buf_addf(&cmd, err, "; tar -cf /stowage-out/m%zu.tar -C /stowage-m%zu .", i, i);
        else if (rc == STOW_OK)
            rc = stow_buf_addf(&cmd, err, "; tar -xf /stowage-src/m%zu.tar --numeric-owner -C /stowage-m%zu", i, i);
    }
    /* Extract exports the helper's own root (a few MB) with the tars in /stowage-out: one
     * copy of the mount less than a scratch stage with COPY --from would make. */
    if (rc == STOW_OK)
        rc = stow_buf_addf(&df, err, " \\\n    %s; echo ok > /stowage-out/done\n%s", stow_buf_str(&cmd),
                           extract ? "" : "FROM scratch\nCOPY --from=stowage /stowage-out/ /\n");
    if (rc != STOW_OK)
        goto done;
    snprintf(p3, sizeof(p3), "%s/Dockerfile", tmp);
    if ((rc = write_text(p3, stow_buf_str(&df), err)) != STOW_OK)
        goto done;
    stow_debug("mounts %s Dockerfile:\n%s", what, stow_buf_str(&df));
    int64_t tb = stow_now_ms();
    if ((rc = build(o, p3, p1, p2, what, err)) != STOW_OK)
        goto done;
    res->build_seconds = (double)(stow_now_ms() - tb) / 1000.0;
    if (extract)
        stow_strlcpy(p2 + strlen(p2), "/stowage-out", sizeof(p2) - strlen(p2));
    snprintf(p3, sizeof(p3), "%s/done", p2);
    if (access(p3, F_OK) != 0) {
        rc = stow_error_set(err, STOW_ERR, "%s build exported nothing (%s missing)", what, p3);
        goto done;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (!use[i])
            continue;
        res->mounts++;
        if (!extract)
            continue;
        snprintf(p3, sizeof(p3), "%s/m%zu.tar", p2, i);
        res->bytes += file_size(p3);
        int64_t tu = stow_now_ms();
        if ((rc = unpack_dir(&res->files, &l->v[i], p3, err)) != STOW_OK) {
            stow_error_wrap(err, "cache mount %s -> %s", l->v[i].id, l->v[i].host);
            goto done;
        }
        stow_debug("mounts extract: unpacked into %s in %.2f s", l->v[i].host, (double)(stow_now_ms() - tu) / 1000.0);
        unlink(p3);
    }
done:
    res->seconds = (double)(stow_now_ms() - t0) / 1000.0;
    if (tmp != NULL) {
        remove_tree(tmp);
        free(tmp);
    }
    free(use);
    stow_buf_free(&df);
    stow_buf_free(&cmd);
    return rc;
}

int stow_mounts_inject(stow_mounts_result *res, const stow_mount_list *l, const stow_mounts_opts *o,
                       stow_error *err)
{
    return transfer(res, l, o, 0, err);
}

int stow_mounts_extract(stow_mounts_result *res, const stow_mount_list *l, const stow_mounts_opts *o,
                        stow_error *err)
{
    return transfer(res, l, o, 1, err);
}

int stow_mounts_configured(const stow_config *cfg)
{
    return cfg->mounts.n > 0 || (cfg->dockerfile != NULL && cfg->dockerfile[0] != '\0');
}

/* 1 when dir is root or inside it. */
static int inside(const char *dir, const char *root)
{
    size_t n = strlen(root);
    return strncmp(dir, root, n) == 0 && (dir[n] == '\0' || dir[n] == '/' || (n == 1 && root[0] == '/'));
}

int stow_mounts_run(const stow_config *cfg, int extract, stow_error *err)
{
    const char *what = extract ? "extract" : "inject";
    stow_mount_list l = {0};
    stow_mounts_result res;
    int rc = stow_mounts_resolve(&l, &cfg->mounts, cfg->dockerfile, cfg->mounts_dir, err);
    if (rc != STOW_OK)
        goto done;
    if (l.n == 0) {
        stow_info("mounts %s: no BuildKit cache mounts configured", what);
        goto done;
    }
    for (size_t i = 0; extract && i < l.n && cfg->paths.n > 0; i++) {
        int kept = 0;
        for (size_t j = 0; j < cfg->paths.n && !kept; j++) {
            char *p = NULL;
            if (stow_path_expand(&p, cfg->paths.v[j], NULL) == STOW_OK)
                kept = inside(l.v[i].host, p);
            free(p);
        }
        if (!kept)
            stow_warn("cache mount %s goes to %s, which is not under [cache] paths: save will not keep it", l.v[i].id,
                      l.v[i].host);
    }
    stow_mounts_opts o = {.docker = cfg->docker, .builder = cfg->builder, .helper_image = cfg->helper_image};
    if ((rc = stow_mounts_check_docker(&o, err)) != STOW_OK) {
        stow_error_wrap(err, "BuildKit cache mounts not %s", extract ? "extracted" : "injected");
        goto done;
    }
    rc = extract ? stow_mounts_extract(&res, &l, &o, err) : stow_mounts_inject(&res, &l, &o, err);
    if (rc != STOW_OK) {
        stow_error_wrap(err, "mounts %s", what);
        goto done;
    }
    char b[32];
    stow_format_bytes(b, sizeof(b), res.bytes);
    if (res.mounts == 0)
        stow_info("mounts %s: nothing to move", what);
    else
        stow_info("mounts %s: %zu cache mount%s, %llu entries, %s in %.2f s (build %.2f s)", what, res.mounts,
                  res.mounts == 1 ? "" : "s", (unsigned long long)res.files, b, res.seconds, res.build_seconds);
    for (size_t i = 0; i < l.n; i++)
        stow_debug("cache mount id=%s target=%s <-> %s", l.v[i].id, l.v[i].target ? l.v[i].target : "", l.v[i].host);
done:
    stow_mount_list_free(&l);
    return rc;
}
