/* The AWS shared credentials and config files, read with inih. See aws_config.h. */
#include "aws_config.h"

#include <errno.h>
#include <ini.h>
#include <openssl/crypto.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "readfile.h"
#include "util.h"

#define INI_PHYS_LINE_MAX 65536   /* longest line accepted in a credentials file */
#define CREDS_FILE_MAX (1u << 20) /* largest credentials or config file read */

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return (v != NULL && v[0] != '\0') ? v : NULL;
}

/* ---- shared credentials file ----
 *
 * Debian's inih is built with a fixed 200-byte line buffer, and session tokens in
 * credentials files are often longer. The reader below hands inih each physical line; a
 * line too long for inih's buffer is handed over in pieces, the first as "name = start"
 * and the rest as continuation lines (leading blank), which inih reports with the same
 * name; the reader flags those pieces so the handler appends them. Pieces are cut only
 * between two characters that are neither blank nor a comment character, so inih's
 * trimming and comment rules see the same text as in the unsplit line. */

typedef struct line_reader {
    FILE *f;
    char *line;   /* current physical line: INI_PHYS_LINE_MAX + 2 bytes, allocated on first use */
    size_t len;   /* its length without the line break */
    size_t pos;   /* next byte of it to hand over */
    int pending;  /* pieces of the current line remain */
    int cont;     /* the text just handed over is a continuation piece */
    long phys;    /* physical line number of the current line */
    long logical; /* lines handed to inih */
    int num;      /* buffer size inih passes, kept to replay the same pieces */
    int too_long; /* stopped: a line longer than INI_PHYS_LINE_MAX or unsplittable */
    int io_error;
} line_reader;

static int blank(char c) { return c == ' ' || c == '\t'; }

/* Longest piece of at most max bytes starting at pos that may end there. */
static size_t piece_len(const line_reader *r, size_t max)
{
    size_t rest = r->len - r->pos;
    if (rest <= max)
        return rest;
    for (size_t k = max; k > 0; k--) {
        char last = r->line[r->pos + k - 1], next = r->line[r->pos + k];
        if (!blank(last) && !blank(next) && next != ';' && next != '#')
            return k;
    }
    return 0;
}

static char *read_line(char *str, int num, void *stream)
{
    line_reader *r = stream;
    if (num < 8)
        return NULL;
    r->num = num;
    size_t room = (size_t)num - 3; /* leading blank, '\n', NUL */
    if (!r->pending) {
        if (r->line == NULL && (r->line = malloc(INI_PHYS_LINE_MAX + 2)) == NULL) {
            r->io_error = ENOMEM;
            return NULL;
        }
        errno = 0;
        if (fgets(r->line, INI_PHYS_LINE_MAX + 2, r->f) == NULL) {
            r->io_error = ferror(r->f) ? (errno ? errno : EIO) : 0;
            return NULL;
        }
        r->phys++;
        size_t n = strlen(r->line);
        if (n > INI_PHYS_LINE_MAX && r->line[n - 1] != '\n') {
            r->too_long = 1;
            return NULL;
        }
        while (n > 0 && (r->line[n - 1] == '\n' || r->line[n - 1] == '\r'))
            n--;
        r->line[n] = '\0';
        r->len = n;
        r->pos = 0;
        r->pending = 1;
    }
    size_t k;
    int cont = r->pos > 0;
    size_t off = cont ? 1 : 0;
    k = piece_len(r, room);
    if (k == 0 && r->len > r->pos) {
        r->too_long = 1;
        return NULL;
    }
    if (cont)
        str[0] = ' ';
    memcpy(str + off, r->line + r->pos, k);
    str[off + k] = '\n';
    str[off + k + 1] = '\0';
    r->pos += k;
    r->pending = r->pos < r->len;
    r->cont = cont;
    r->logical++;
    return str;
}

/* The keys kept, with their fields. */
typedef struct ini_key {
    const char *name;
    size_t off, cap;
} ini_key;

#define KEY(n, f)                                                                                  \
    {                                                                                              \
        n, offsetof(stow_aws_profile, f), sizeof(((stow_aws_profile *)0)->f)                       \
    }
static const ini_key keys[] = {
    KEY("aws_access_key_id", access_key),
    KEY("aws_secret_access_key", secret_key),
    KEY("aws_session_token", session_token),
    KEY("aws_security_token", session_token),
    KEY("region", region),
    KEY("role_arn", role_arn),
    KEY("source_profile", source_profile),
    KEY("web_identity_token_file", web_identity_token_file),
    KEY("role_session_name", role_session_name),
    KEY("credential_process", credential_process),
    KEY("credential_source", credential_source),
    KEY("external_id", external_id),
    KEY("duration_seconds", duration_seconds),
};
#undef KEY

typedef struct section_parse {
    const char *section;
    line_reader *reader;
    int overflow; /* a value did not fit its field */
    char overflow_name[64];
    char last_name[64]; /* key last assigned in the section, for continuation pieces */
    stow_aws_profile *out;
} section_parse;

static int on_ini_value(void *user, const char *section, const char *name, const char *value)
{
    section_parse *sp = user;
    if (strcmp(section, sp->section) != 0)
        return 1;
    sp->out->found = 1;
    const ini_key *k = NULL;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcasecmp(name, keys[i].name) == 0)
            k = &keys[i];
    if (k == NULL)
        return 1; /* output, s3 settings...: not ours */
    char *dst = (char *)sp->out + k->off;
    int append = sp->reader->cont && strcasecmp(name, sp->last_name) == 0;
    size_t have = append ? strlen(dst) : 0;
    size_t n = strlen(value);
    if (n >= k->cap - have) {
        sp->overflow = 1;
        stow_strlcpy(sp->overflow_name, name, sizeof(sp->overflow_name));
        dst[0] = '\0';
        return 1;
    }
    memcpy(dst + have, value, n + 1);
    stow_strlcpy(sp->last_name, name, sizeof(sp->last_name));
    return 1;
}

/* Maps inih's line number (pieces counted) back to the file's line number. */
static long physical_line(const char *path, int num, long logical)
{
    char *buf = NULL;
    line_reader r = {0};
    if (num < 8 || (buf = malloc((size_t)num)) == NULL)
        return logical;
    int fd = -1;
    if (stow_open_file(&fd, path, CREDS_FILE_MAX, NULL) != STOW_OK ||
        (r.f = fdopen(fd, "r")) == NULL) {
        if (fd >= 0)
            close(fd);
        free(buf);
        return logical;
    }
    while (r.logical < logical && read_line(buf, num, &r) != NULL) {
    }
    OPENSSL_cleanse(buf, (size_t)num);
    free(buf);
    if (r.line != NULL)
        OPENSSL_cleanse(r.line, INI_PHYS_LINE_MAX + 2);
    long phys = r.phys;
    free(r.line);
    fclose(r.f);
    return phys;
}

int stow_aws_ini_read(stow_aws_profile *out, const char *path, const char *section, stow_error *err)
{
    int rc = STOW_ERR;
    line_reader r = {0};
    section_parse sp = {0};

    memset(out, 0, sizeof(*out));
    /* A regular file of bounded size: never a FIFO that hangs or /dev/zero that never ends. */
    int fd = -1;
    rc = stow_open_file(&fd, path, CREDS_FILE_MAX, err);
    if (rc == STOW_ENOTFOUND)
        return stow_error_set(err, STOW_ENOTFOUND, "%s: not found", path);
    if (rc != STOW_OK) { /* the message names the file and why */
        if (err != NULL)
            err->code = STOW_EAUTH;
        return STOW_EAUTH;
    }
    if ((r.f = fdopen(fd, "r")) == NULL) {
        close(fd);
        return stow_error_set(err, STOW_ERR, "%s: %s", path, strerror(errno));
    }
    rc = STOW_ERR;
    sp.section = section;
    sp.reader = &r;
    sp.out = out;
    int pr = ini_parse_stream(read_line, &r, on_ini_value, &sp);
    if (r.io_error) {
        rc = stow_error_set(err, r.io_error == ENOMEM ? STOW_ERR : STOW_EAUTH, "%s: %s", path,
                            strerror(r.io_error));
        goto done;
    }
    if (r.too_long) {
        rc = stow_error_set(err, STOW_EAUTH, "%s:%ld: line too long", path, r.phys);
        goto done;
    }
    if (pr < 0) {
        rc = stow_error_set(err, STOW_ERR, "%s: out of memory while parsing", path);
        goto done;
    }
    if (pr > 0) {
        rc = stow_error_set(err, STOW_EAUTH, "%s:%ld: not an INI line", path,
                            physical_line(path, r.num, pr));
        goto done;
    }
    if (sp.overflow) {
        rc = stow_error_set(err, STOW_EAUTH, "%s: value of %s in [%s] is too long", path,
                            sp.overflow_name, section);
        goto done;
    }
    out->has_key = out->access_key[0] != '\0';
    out->has_secret = out->secret_key[0] != '\0';
    rc = STOW_OK;
done:
    if (rc != STOW_OK)
        OPENSSL_cleanse(out, sizeof(*out));
    if (r.line != NULL) {
        OPENSSL_cleanse(r.line, INI_PHYS_LINE_MAX + 2);
        free(r.line);
    }
    fclose(r.f);
    return rc;
}

int stow_s3_creds_from_file(stow_s3_creds *out, const char *path, const char *profile,
                            stow_error *err)
{
    memset(out, 0, sizeof(*out));
    stow_aws_profile *p = malloc(sizeof(*p));
    if (p == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    int rc = stow_aws_ini_read(p, path, profile, err);
    if (rc != STOW_OK)
        goto done;
    if (!p->found)
        rc = stow_error_set(err, STOW_ENOTFOUND, "profile \"%s\" not found in %s", profile, path);
    else if (!p->has_key)
        rc = stow_error_set(err, STOW_ENOTFOUND, "profile \"%s\" in %s has no aws_access_key_id",
                            profile, path);
    else if (!p->has_secret)
        rc = stow_error_set(err, STOW_EAUTH,
                            "profile \"%s\" in %s has aws_access_key_id but no "
                            "aws_secret_access_key",
                            profile, path);
    if (rc != STOW_OK)
        goto done;
    memcpy(out->access_key, p->access_key, sizeof(out->access_key));
    memcpy(out->secret_key, p->secret_key, sizeof(out->secret_key));
    memcpy(out->session_token, p->session_token, sizeof(out->session_token));
    snprintf(out->source, sizeof(out->source), "shared credentials file %s, profile %s", path,
             profile);
done:
    OPENSSL_cleanse(p, sizeof(*p));
    free(p);
    return rc;
}

int stow_aws_file_path(char *out, size_t cap, int config, stow_error *err)
{
    const char *var = config ? "AWS_CONFIG_FILE" : "AWS_SHARED_CREDENTIALS_FILE";
    const char *def = config ? ".aws/config" : ".aws/credentials";
    const char *env = env_nonempty(var);
    const char *home = env_nonempty("HOME");
    struct passwd pw, *pwp = NULL;
    char pwbuf[1024];
    int n;

    if (home == NULL && getpwuid_r(getuid(), &pw, pwbuf, sizeof(pwbuf), &pwp) == 0 && pwp != NULL &&
        pwp->pw_dir != NULL && pwp->pw_dir[0] != '\0')
        home = pwp->pw_dir;
    if (env != NULL && strncmp(env, "~/", 2) != 0)
        n = stow_strlcpy(out, env, cap) == 0 ? 0 : -1;
    else if (home == NULL)
        return stow_error_set(err, STOW_ENOTFOUND, "no home directory to find ~/%s", def);
    else if (env != NULL)
        n = snprintf(out, cap, "%s/%s", home, env + 2);
    else
        n = snprintf(out, cap, "%s/%s", home, def);
    if (n < 0 || (size_t)n >= cap)
        return stow_error_set(err, STOW_EAUTH, "%s path too long", var);
    return STOW_OK;
}

const char *stow_aws_profile_name(int *named)
{
    const char *p = env_nonempty("AWS_PROFILE");
    if (p == NULL)
        p = env_nonempty("AWS_DEFAULT_PROFILE");
    *named = p != NULL;
    return p ? p : "default";
}

void stow_aws_profile_region(char *out, size_t cap)
{
    char where[8300];
    int named = 0;
    stow_aws_profile *p = malloc(sizeof(*p));
    out[0] = '\0';
    if (p == NULL)
        return;
    if (stow_aws_profile_load(p, stow_aws_profile_name(&named), where, sizeof(where), NULL) ==
            STOW_OK &&
        p->found)
        stow_strlcpy(out, p->region, cap);
    OPENSSL_cleanse(p, sizeof(*p));
    free(p);
}

/* Fills the empty fields of dst from src (credentials file first, config file second). */
static void merge(stow_aws_profile *dst, const stow_aws_profile *src)
{
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char *d = (char *)dst + keys[i].off;
        const char *s = (const char *)src + keys[i].off;
        if (d[0] == '\0')
            memcpy(d, s, keys[i].cap);
    }
    dst->found = dst->found || src->found;
    dst->has_key = dst->access_key[0] != '\0';
    dst->has_secret = dst->secret_key[0] != '\0';
}

int stow_aws_profile_load(stow_aws_profile *out, const char *name, char *where, size_t wcap,
                          stow_error *err)
{
    char cpath[4096], fpath[4096], section[STOW_AWS_PROFILE_MAX + 16];
    stow_aws_profile *conf = NULL;
    int rc, cfound = 0;

    memset(out, 0, sizeof(*out));
    where[0] = '\0';
    if (strlen(name) > STOW_AWS_PROFILE_MAX)
        return stow_error_set(err, STOW_EAUTH, "AWS profile name longer than %d bytes",
                              STOW_AWS_PROFILE_MAX);
    if ((rc = stow_aws_file_path(cpath, sizeof(cpath), 0, err)) != STOW_OK)
        return rc;
    if ((rc = stow_aws_file_path(fpath, sizeof(fpath), 1, err)) != STOW_OK)
        return rc;
    rc = stow_aws_ini_read(out, cpath, name, err);
    if (rc != STOW_OK && rc != STOW_ENOTFOUND)
        return rc;
    if ((conf = malloc(sizeof(*conf))) == NULL)
        return stow_error_set(err, STOW_ERR, "out of memory");
    /* the config file names profiles "[profile x]", the default one "[default]" */
    snprintf(section, sizeof(section), "%s%s", strcmp(name, "default") ? "profile " : "", name);
    rc = stow_aws_ini_read(conf, fpath, section, err);
    if (rc == STOW_OK && !conf->found && strcmp(name, "default") == 0)
        rc = stow_aws_ini_read(conf, fpath, "profile default", err);
    if (rc != STOW_OK && rc != STOW_ENOTFOUND)
        goto done;
    cfound = rc == STOW_OK && conf->found;
    if (out->found && cfound)
        snprintf(where, wcap, "%s and %s", cpath, fpath);
    else if (out->found || cfound)
        snprintf(where, wcap, "%s", out->found ? cpath : fpath);
    else
        snprintf(where, wcap, "%s or %s", cpath, fpath);
    if (rc == STOW_OK)
        merge(out, conf);
    rc = STOW_OK;
done:
    OPENSSL_cleanse(conf, sizeof(*conf));
    free(conf);
    if (rc != STOW_OK)
        OPENSSL_cleanse(out, sizeof(*out));
    return rc;
}
