/* BuildKit cache mounts: the configured specs, the Dockerfile's RUN --mount=type=cache flags,
 * and the host directory of each (see mounts.h). The transfer is in mounts_build.c, the host
 * side tars in mounts_tar.c. */
#include "mounts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "log.h"
#include "mounts_tar.h"
#include "paths.h"

#define MAX_MOUNTS 64
#define MAX_DOCKERFILE (4u << 20) /* bytes of a Dockerfile read */

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
        if (*p <= ' ' || *p == ',' || *p == '"' || *p == '\'' || *p == '\\' || *p == '$' ||
            *p == '=' || *p == 0x7f)
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
static int set_mount_opt(stow_mount *m, const char *key, const char *val, const char *where,
                         stow_error *err)
{
    if (strcmp(key, "id") == 0)
        return set_str(&m->id, val, strlen(val), err);
    if (strcmp(key, "target") == 0 || strcmp(key, "dst") == 0 || strcmp(key, "destination") == 0)
        return set_str(&m->target, val, strlen(val), err);
    if (strcmp(key, "sharing") == 0) {
        if (strcmp(val, "shared") != 0 && strcmp(val, "private") != 0 && strcmp(val, "locked") != 0)
            return stow_error_set(err, STOW_EUSAGE,
                                  "%s: sharing must be shared, private or locked, not \"%s\"",
                                  where, val);
        return set_str(&m->sharing, val, strlen(val), err);
    }
    if (strcmp(key, "uid") == 0 || strcmp(key, "gid") == 0) {
        if (parse_num(key[0] == 'u' ? &m->uid : &m->gid, val, 10, 0x7fffffffL) != 0)
            return stow_error_set(err, STOW_EUSAGE, "%s: %s must be a number, not \"%s\"", where,
                                  key, val);
        return STOW_OK;
    }
    if (strcmp(key, "mode") == 0) {
        if (parse_num(&m->mode, val, 8, 07777) != 0)
            return stow_error_set(err, STOW_EUSAGE,
                                  "%s: mode must be octal (e.g. 0755), not \"%s\"", where, val);
        return STOW_OK;
    }
    return 1;
}

static int check_mount(const stow_mount *m, const char *where, stow_error *err)
{
    if (!value_ok(m->id))
        return stow_error_set(
            err, STOW_EUSAGE,
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
        return stow_error_set(
            err, STOW_EUSAGE,
            "%s: expected NAME:TARGET [id=ID] [sharing=S] [uid=N] [gid=N] [mode=0755]", where);
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
            return stow_error_set(err, STOW_EUSAGE,
                                  "%s: unknown option \"%s\" (id, sharing, uid, gid, mode)", where,
                                  opt);
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
            stow_warn(
                "%s: cache mount option %s=%s uses a build argument; that mount is not transferred",
                where, k, v);
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
        stow_warn("%s: cache mount %s is based on another stage (from=); it is not transferred",
                  where,
                  tmp.id       ? tmp.id
                  : tmp.target ? tmp.target
                               : "");
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
                    stow_warn(
                        "%s: cache id %s is declared twice with different uid/gid/mode (BuildKit keeps two "
                        "caches); the first declaration is transferred",
                        where, tmp.id);
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

static int handle_instruction(stow_mount_list *l, const char *ins, const char *where,
                              stow_error *err)
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

int stow_mounts_parse_dockerfile(stow_mount_list *l, const char *text, size_t len,
                                 const char *where, stow_error *err)
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
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-' || (c == '.' && j > 0);
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
        if ((rc = stow_mounts_read_file(&text, dockerfile, MAX_DOCKERFILE, err)) == STOW_OK)
            rc = stow_mounts_parse_dockerfile(&df, text.ptr ? text.ptr : "", text.len, dockerfile,
                                              err);
        if (rc == STOW_OK && df.n == 0)
            stow_warn("%s declares no RUN --mount=type=cache", dockerfile);
    }
    for (size_t i = 0; i < df.n && rc == STOW_OK; i++) {
        stow_mount *d = &df.v[i], *m = NULL;
        for (size_t j = 0; j < out->n && m == NULL; j++)
            if (strcmp(out->v[j].id, d->id) == 0)
                m = &out->v[j];
        if (m !=
            NULL) { /* the configured entry names the host directory; the Dockerfile the rest */
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
        rc = stow_path_expand(&base, mounts_dir && mounts_dir[0] ? mounts_dir : "~/.docker-cache",
                              err);
    for (size_t i = 0; i < out->n && rc == STOW_OK; i++) {
        stow_mount *m = &out->v[i];
        if (strchr(m->name, '/') != NULL || m->name[0] == '~' || m->name[0] == '$') {
            rc = stow_path_expand(&m->host, m->name, err);
        } else if (strcmp(m->name, ".") == 0 || strcmp(m->name, "..") == 0) {
            rc = stow_error_set(err, STOW_EUSAGE,
                                "[buildkit] mounts: \"%s\" is not a directory name", m->name);
        } else {
            size_t n = strlen(base) + strlen(m->name) + 2;
            if ((m->host = malloc(n)) == NULL)
                rc = stow_error_set(err, STOW_ERR, "out of memory");
            else
                snprintf(m->host, n, "%s/%s", base, m->name);
        }
        for (size_t j = 0; j < i && rc == STOW_OK; j++)
            if (strcmp(out->v[j].host, m->host) == 0)
                rc = stow_error_set(err, STOW_EUSAGE, "cache mounts %s and %s both use %s",
                                    out->v[j].id, m->id, m->host);
    }
    free(base);
    stow_buf_free(&text);
    stow_mount_list_free(&df);
    if (rc != STOW_OK)
        stow_mount_list_free(out);
    return rc;
}
