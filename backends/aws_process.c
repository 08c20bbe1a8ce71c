/* credential_process: an external command that prints credentials as JSON. Run with
 * posix_spawnp, never through a shell. See aws_config.h. */
#include "aws_config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "util.h"

#define PROC_ARGS_MAX 64
#define PROC_ERR_MAX 4096
#define PROC_TIMEOUT_MS 60000

extern char **environ;

/* Splits line into argv on blanks; "double quotes" group words (no escapes). buf holds the
 * words. 0, or -1 on an unbalanced quote, too many words or none. */
static int split_cmd(char **argv, size_t max, char *buf, const char *line)
{
    size_t n = 0;
    const char *s = line;
    char *d = buf;
    for (;;) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '\0')
            break;
        if (n + 1 >= max)
            return -1;
        argv[n++] = d;
        int quoted = 0;
        while (*s != '\0' && (quoted || (*s != ' ' && *s != '\t'))) {
            if (*s == '"')
                quoted = !quoted;
            else
                *d++ = *s;
            s++;
        }
        if (quoted)
            return -1;
        *d++ = '\0';
    }
    argv[n] = NULL;
    return n > 0 ? 0 : -1;
}

static int64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs argv, collecting stdout into out (capped) and stderr into errb (excess dropped).
 * *status is the wait status. */
static int run(int *status, stow_buf *out, stow_buf *errb, char **argv, int *overflow,
               stow_error *err)
{
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    pid_t pid = -1;
    int rc = STOW_ERR, fa_init = 0;

    *overflow = 0;
    if (pipe(po) != 0 || pipe(pe) != 0 || fcntl(po[0], F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(po[1], F_SETFD, FD_CLOEXEC) != 0 || fcntl(pe[0], F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(pe[1], F_SETFD, FD_CLOEXEC) != 0) {
        rc = stow_error_set(err, STOW_ERR, "credential_process: pipe: %s", strerror(errno));
        goto done;
    }
    if (posix_spawn_file_actions_init(&fa) != 0) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    fa_init = 1;
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    int e = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    if (e != 0) {
        pid = -1;
        rc = stow_error_set(err, STOW_EAUTH, "credential_process \"%.200s\": cannot run: %s",
                            argv[0], strerror(e));
        goto done;
    }
    close(po[1]);
    close(pe[1]);
    po[1] = pe[1] = -1;

    int64_t deadline = ms_now() + PROC_TIMEOUT_MS;
    int open_fds = 2;
    char chunk[4096];
    while (open_fds > 0) {
        struct pollfd p[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
        int64_t left = deadline - ms_now();
        if (left <= 0) {
            kill(pid, SIGKILL);
            rc = stow_error_set(err, STOW_EAUTH, "credential_process \"%.200s\": no answer in %d s",
                                argv[0], PROC_TIMEOUT_MS / 1000);
            goto done;
        }
        int r = poll(p, 2, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = stow_error_set(err, STOW_ERR, "credential_process: poll: %s", strerror(errno));
            goto done;
        }
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || p[i].revents == 0)
                continue;
            ssize_t n = read(p[i].fd, chunk, sizeof(chunk));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                close(i == 0 ? po[0] : pe[0]);
                (i == 0 ? po : pe)[0] = -1;
                open_fds--;
                continue;
            }
            if (i == 0 && stow_buf_add(out, chunk, (size_t)n, NULL) != STOW_OK) {
                *overflow = 1;
                kill(pid, SIGKILL);
                rc = stow_error_set(err, STOW_EAUTH,
                                    "credential_process \"%.200s\": output longer than %d bytes",
                                    argv[0], STOW_AWS_PROCESS_OUT_MAX);
                goto done;
            }
            if (i == 1 && errb->len < errb->max)
                stow_buf_add(errb, chunk,
                             (size_t)n < errb->max - errb->len ? (size_t)n : errb->max - errb->len,
                             NULL);
        }
    }
    rc = STOW_OK;
done:
    if (pid > 0) {
        if (rc != STOW_OK)
            kill(pid, SIGKILL);
        while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
        }
    }
    OPENSSL_cleanse(chunk, sizeof(chunk));
    for (int i = 0; i < 2; i++) {
        if (po[i] >= 0)
            close(po[i]);
        if (pe[i] >= 0)
            close(pe[i]);
    }
    if (fa_init)
        posix_spawn_file_actions_destroy(&fa);
    return rc;
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int parse_output(stow_s3_creds *out, const stow_buf *b, const char *cmd, stow_error *err)
{
    json_error_t je;
    int rc = STOW_EAUTH;
    json_t *root = json_loadb(stow_buf_str(b), b->len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL || !json_is_object(root)) {
        rc = stow_error_set(err, STOW_EAUTH,
                            "credential_process \"%.200s\": output is not a JSON object (%s)", cmd,
                            root ? "another JSON value" : je.text);
        goto done;
    }
    json_t *ver = json_object_get(root, "Version");
    if (!json_is_integer(ver) || json_integer_value(ver) != 1) {
        rc = stow_error_set(err, STOW_EAUTH, "credential_process \"%.200s\": \"Version\" must be 1",
                            cmd);
        goto done;
    }
    const char *ak = jstr(root, "AccessKeyId"), *sk = jstr(root, "SecretAccessKey");
    const char *tok = jstr(root, "SessionToken"), *exp = jstr(root, "Expiration");
    if (ak == NULL || sk == NULL || ak[0] == '\0' || sk[0] == '\0') {
        rc = stow_error_set(err, STOW_EAUTH,
                            "credential_process \"%.200s\": AccessKeyId or SecretAccessKey missing",
                            cmd);
        goto done;
    }
    if (stow_strlcpy(out->access_key, ak, sizeof(out->access_key)) ||
        stow_strlcpy(out->secret_key, sk, sizeof(out->secret_key)) ||
        (tok && stow_strlcpy(out->session_token, tok, sizeof(out->session_token)))) {
        rc = stow_error_set(err, STOW_EAUTH, "credential_process \"%.200s\": credentials too long",
                            cmd);
        goto done;
    }
    if (exp != NULL && stow_s3_creds_parse_time(&out->expiry, exp, err) != STOW_OK) {
        rc = stow_error_wrap(err, "credential_process \"%.200s\": Expiration", cmd);
        if (err != NULL)
            err->code = STOW_EAUTH;
        rc = STOW_EAUTH;
        goto done;
    }
    if (out->expiry != 0 && out->expiry <= (time_t)stow_unix_time()) {
        rc = stow_error_set(err, STOW_EAUTH,
                            "credential_process \"%.200s\": the credentials expired at %.40s", cmd,
                            exp);
        goto done;
    }
    rc = STOW_OK;
done:
    json_decref(root);
    return rc;
}

int stow_aws_process_creds(stow_s3_creds *out, const char *cmdline, stow_error *err)
{
    char *argv[PROC_ARGS_MAX];
    size_t len = strlen(cmdline);
    char *words = malloc(len + 1);
    stow_buf o, e;
    int status = 0, overflow = 0, rc;

    memset(out, 0, sizeof(*out));
    stow_buf_init(&o, STOW_AWS_PROCESS_OUT_MAX);
    stow_buf_init(&e, PROC_ERR_MAX);
    if (words == NULL) {
        rc = stow_error_set(err, STOW_ERR, "out of memory");
        goto done;
    }
    if (split_cmd(argv, PROC_ARGS_MAX, words, cmdline) != 0) {
        rc = stow_error_set(err, STOW_EUSAGE,
                            "credential_process \"%.200s\": empty, unbalanced quote or more than "
                            "%d words",
                            cmdline, PROC_ARGS_MAX - 1);
        goto done;
    }
    if ((rc = run(&status, &o, &e, argv, &overflow, err)) != STOW_OK)
        goto done;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        const char *es = stow_buf_str(&e);
        size_t first = strcspn(es, "\r\n");
        char line[512];
        snprintf(line, sizeof(line), "%.*s", (int)(first < 400 ? first : 400), es);
        for (char *c = line; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                *c = ' ';
        if (WIFEXITED(status))
            rc = stow_error_set(err, STOW_EAUTH, "credential_process \"%.200s\" exited with %d%s%s",
                                argv[0], WEXITSTATUS(status), line[0] ? ": " : "", line);
        else
            rc = stow_error_set(err, STOW_EAUTH,
                                "credential_process \"%.200s\" was killed by "
                                "signal %d",
                                argv[0], WTERMSIG(status));
        goto done;
    }
    if ((rc = parse_output(out, &o, argv[0], err)) != STOW_OK)
        goto done;
    stow_debug("credential_process %s: credentials%s", argv[0],
               out->expiry ? " with an expiry" : "");
done:
    if (rc != STOW_OK)
        stow_s3_creds_clear(out);
    if (o.ptr != NULL)
        OPENSSL_cleanse(o.ptr, o.cap);
    stow_buf_free(&o);
    stow_buf_free(&e);
    free(words);
    return rc;
}
