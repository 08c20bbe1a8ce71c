/* Cache-mount transfers through a generated throwaway build on the current builder, and the
 * step `stowage mounts` / `stowage run` take (see mounts.h). docker runs through posix_spawn. */
#include "mounts.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "mounts_tar.h"
#include "paths.h"
#include "progress.h"
#include "util.h"

extern char **environ;

#define MAX_GENERATED (256u << 10) /* bytes of a generated Dockerfile */
#define MAX_CAPTURE (64u << 10)    /* bytes of docker stdout kept */
#define ERR_TAIL 2048              /* bytes of docker stderr quoted in a message */

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
        rc = stow_error_set(err, e == ENOENT ? STOW_ENOTFOUND : STOW_ERR, "cannot run %s: %s%s",
                            argv[0], strerror(e),
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

int stow_mounts_buildx_driver(char *out, size_t outsz, const char *text)
{
    static const char key[] = "Driver:";
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        if (n > sizeof(key) - 1 && strncmp(line, key, sizeof(key) - 1) == 0) {
            const char *v = line + sizeof(key) - 1;
            size_t vn = n - (sizeof(key) - 1);
            while (vn > 0 && (*v == ' ' || *v == '\t'))
                v++, vn--;
            while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t' || v[vn - 1] == '\r'))
                vn--;
            if (vn > 0 && vn < outsz) {
                memcpy(out, v, vn);
                out[vn] = '\0';
                return STOW_OK;
            }
        }
        line = end ? end + 1 : NULL;
    }
    return STOW_ENOTFOUND;
}

/* The builder exists (buildx plugin present), and what its driver means for the transfer. */
static int check_builder(const stow_mounts_opts *o, stow_error *err)
{
    char *argv[] = {(char *)docker_bin(o), "buildx", "inspect", (char *)o->builder, NULL};
    proc pr;
    char t[600], driver[64];
    int rc = run_proc(&pr, argv, 1, err);
    if (rc == STOW_OK && pr.status != 0)
        rc = stow_error_set(err, STOW_ERR,
                            "builder %s: `%s buildx inspect %s` exited with %d (%s); the builder "
                            "needs the buildx plugin and `docker buildx create --name %s`",
                            o->builder, argv[0], o->builder, pr.status, tail_str(&pr, t, sizeof(t)),
                            o->builder);
    if (rc == STOW_OK &&
        stow_mounts_buildx_driver(driver, sizeof(driver), stow_buf_str(&pr.out)) != STOW_OK)
        stow_strlcpy(driver, "", sizeof(driver));
    stow_buf_free(&pr.out);
    if (rc != STOW_OK)
        return rc;
    const char *helper = o->helper_image ? o->helper_image : "busybox";
    if (strcmp(driver, "docker") == 0)
        stow_info("mounts: builder %s has the docker driver: the engine's BuildKit and its local "
                  "images (helper image %s)",
                  o->builder, helper);
    else if (strcmp(driver, "docker-container") == 0 || strcmp(driver, "kubernetes") == 0 ||
             strcmp(driver, "remote") == 0)
        stow_info("mounts: builder %s has the %s driver: its own BuildKit state, which is where "
                  "the cache mounts live; it pulls the helper image %s from its registry (it "
                  "does not see the engine's images)",
                  o->builder, driver, helper);
    else
        stow_warn("mounts: builder %s: driver %s not recognised; transferring with docker "
                  "buildx build --builder %s as for docker-container",
                  o->builder, driver[0] ? driver : "(none in buildx inspect)", o->builder);
    return STOW_OK;
}

int stow_mounts_check_docker(const stow_mounts_opts *o, stow_error *err)
{
    char *argv[] = {(char *)docker_bin(o), "version", "--format", "{{.Server.Version}}", NULL};
    proc pr;
    char t[600];
    int rc = run_proc(&pr, argv, 1, err);
    if (rc == STOW_OK && pr.status != 0)
        rc = stow_error_set(err, STOW_ERR,
                            "the Docker daemon is unreachable (%s version exited with %d: %s)",
                            argv[0], pr.status, tail_str(&pr, t, sizeof(t)));
    if (rc == STOW_OK)
        stow_debug("docker daemon %.*s", (int)strcspn(stow_buf_str(&pr.out), "\n"),
                   stow_buf_str(&pr.out));
    stow_buf_free(&pr.out);
    if (rc == STOW_OK && o && o->builder && o->builder[0])
        rc = check_builder(o, err);
    return rc;
}

/* ---- the throwaway builds ---- */

static int add_mount_flag(stow_buf *df, const stow_mount *m, size_t i, stow_error *err)
{
    int rc = stow_buf_addf(df, err, " \\\n    --mount=type=cache,id=%s,target=/stowage-m%zu", m->id,
                           i);
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
static int build(const stow_mounts_opts *o, const char *dockerfile, const char *ctx,
                 const char *out, const char *what, stow_error *err)
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
        rc = stow_error_set(err, STOW_ERR, "%s build failed (exit %d): %s", what, pr.status,
                            tail_str(&pr, t, sizeof(t)));
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

static int transfer(stow_mounts_result *res, const stow_mount_list *l, const stow_mounts_opts *o,
                    int extract, stow_error *err)
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
        rc = stow_error_set(err, STOW_EUSAGE, "[buildkit] helper_image \"%s\" is not an image name",
                            helper);
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
            stow_info("mounts inject: %s is empty or missing; cache mount %s starts empty", m->host,
                      m->id);
            continue;
        }
        uint64_t files = 0;
        int64_t tp = stow_now_ms();
        snprintf(p3, sizeof(p3), "%s/m%zu.tar", p1, i);
        if ((rc = stow_mounts_pack(&files, m, p3, err)) != STOW_OK)
            goto done;
        stow_debug("mounts inject: packed %s in %.2f s", m->host,
                   (double)(stow_now_ms() - tp) / 1000.0);
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
    rc = stow_buf_addf(&df, err, "# generated by stowage mounts %s\nFROM %s AS stowage\nRUN", what,
                       helper);
    if (rc == STOW_OK && !extract)
        rc = stow_buf_adds(&df, " \\\n    --mount=type=bind,target=/stowage-src", err);
    /* The time makes every transfer a new step, never one BuildKit answers from its cache. */
    if (rc == STOW_OK)
        rc = stow_buf_addf(&cmd, err, "set -e; : %lld.%ld; mkdir -p /stowage-out",
                           (long long)stow_unix_time(), (long)getpid());
    for (size_t i = 0; i < l->n && rc == STOW_OK; i++) {
        if (!use[i])
            continue;
        rc = add_mount_flag(&df, &l->v[i], i, err);
        if (rc == STOW_OK && extract)
            rc = stow_buf_addf(&cmd, err, "; tar -cf /stowage-out/m%zu.tar -C /stowage-m%zu .", i,
                               i);
        else if (rc == STOW_OK)
            rc = stow_buf_addf(&cmd, err,
                               "; tar -xf /stowage-src/m%zu.tar --numeric-owner -C /stowage-m%zu",
                               i, i);
    }
    /* Extract exports the helper's own root (a few MB) with the tars in /stowage-out: one
     * copy of the mount less than a scratch stage with COPY --from would make. */
    if (rc == STOW_OK)
        rc = stow_buf_addf(&df, err, " \\\n    %s; echo ok > /stowage-out/done\n%s",
                           stow_buf_str(&cmd),
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
        if ((rc = stow_mounts_unpack(&res->files, &l->v[i], p3, err)) != STOW_OK) {
            stow_error_wrap(err, "cache mount %s -> %s", l->v[i].id, l->v[i].host);
            goto done;
        }
        stow_debug("mounts extract: unpacked into %s in %.2f s", l->v[i].host,
                   (double)(stow_now_ms() - tu) / 1000.0);
        unlink(p3);
    }
done:
    res->seconds = (double)(stow_now_ms() - t0) / 1000.0;
    if (tmp != NULL) {
        stow_mounts_remove_tree(tmp);
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

int stow_mounts_extract(stow_mounts_result *res, const stow_mount_list *l,
                        const stow_mounts_opts *o, stow_error *err)
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
    return strncmp(dir, root, n) == 0 &&
           (dir[n] == '\0' || dir[n] == '/' || (n == 1 && root[0] == '/'));
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
            stow_warn(
                "cache mount %s goes to %s, which is not under [cache] paths: save will not keep it",
                l.v[i].id, l.v[i].host);
    }
    stow_mounts_opts o = {.docker = cfg->docker,
                          .builder = cfg->builder,
                          .helper_image = cfg->helper_image};
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
        stow_info("mounts %s: %zu cache mount%s, %llu entries, %s in %.2f s (build %.2f s)", what,
                  res.mounts, res.mounts == 1 ? "" : "s", (unsigned long long)res.files, b,
                  res.seconds, res.build_seconds);
    for (size_t i = 0; i < l.n; i++)
        stow_debug("cache mount id=%s target=%s <-> %s", l.v[i].id,
                   l.v[i].target ? l.v[i].target : "", l.v[i].host);
done:
    stow_mount_list_free(&l);
    return rc;
}
