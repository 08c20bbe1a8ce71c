/* agent/mounts.c: configured mount specs, the Dockerfile's RUN --mount=type=cache flags, and
 * how the two merge into host directories. (The transfers run against a real dockerd in
 * tests/integration/test_buildkit_mounts.sh.) */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mounts.h"
#include "test.h"

static const stow_mount *by_id(const stow_mount_list *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].id, id) == 0)
            return &l->v[i];
    return NULL;
}

static void test_spec(void)
{
    stow_mount_list l = {0};
    stow_error err = {0};
    CHECK_INT(stow_mounts_parse_spec(&l, "pip:/root/.cache/pip", &err), STOW_OK);
    CHECK_INT(stow_mounts_parse_spec(
                  &l, "apt:/var/cache/apt  id=apt-cache sharing=locked uid=1000 gid=100 mode=0700",
                  &err),
              STOW_OK);
    CHECK_INT(l.n, 2);
    CHECK_STR(l.v[0].name, "pip");
    CHECK_STR(l.v[0].target, "/root/.cache/pip");
    CHECK_STR(l.v[0].id, "/root/.cache/pip"); /* BuildKit's default id is the target */
    CHECK_INT(l.v[0].uid, -1);
    CHECK(l.v[0].sharing == NULL);
    CHECK_STR(l.v[1].id, "apt-cache");
    CHECK_STR(l.v[1].sharing, "locked");
    CHECK_INT(l.v[1].uid, 1000);
    CHECK_INT(l.v[1].gid, 100);
    CHECK_INT(l.v[1].mode, 0700);
    static const char *const bad[] = {"pip",
                                      ":/x",
                                      "pip:",
                                      "pip:/x sharing=weird",
                                      "pip:/x uid=-1",
                                      "pip:/x mode=9",
                                      "pip:/x colour=red",
                                      "pip:/x id",
                                      "pip:/x id=a,b",
                                      "pip:/x target=/y",
                                      "pip:/x id=$HOME"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        stow_error e = {0};
        int rc = stow_mounts_parse_spec(&l, bad[i], &e);
        if (rc != STOW_EUSAGE)
            fprintf(stderr, "spec \"%s\" accepted\n", bad[i]);
        CHECK_INT(rc, STOW_EUSAGE);
        CHECK(e.msg[0] != '\0');
    }
    stow_mount_list_free(&l);
}

static void test_dockerfile(void)
{
    const char *df =
        "# escape=\\\n"
        "FROM python:3.11-slim AS base\n"
        "RUN --mount=type=cache,target=/var/cache/apt,sharing=locked,id=apt-system-cache \\\n"
        "    # a comment inside the continuation\n"
        "    --mount=type=cache,target=/var/lib/apt,sharing=locked,id=apt-lib-cache \\\n"
        "    apt-get update && apt-get install -y libgomp1\n"
        "run --network=none --mount=type=cache,target=/root/.cache/pip pip install -r r.txt\n"
        "RUN --mount=type=bind,target=/src --mount=target=/x,type=tmpfs make\n"
        "RUN --mount=\"type=cache\",\"target=/home/u/.cache\",uid=1000,gid=1000,mode=0700 true\n"
        "RUN --mount=type=cache,target=/stage,from=base true\n"
        "RUN --mount=type=cache,target=/var/cache/$ARG true\n"
        "RUN echo --mount=type=cache,target=/not-a-flag\n"
        "RUN --mount=type=cache,target=/root/.cache/pip,uid=5 pip install again\n"
        "RUN --mount=type=cache,target=/last,id=last";
    stow_mount_list l = {0};
    stow_error err = {0};
    CHECK_INT(stow_mounts_parse_dockerfile(&l, df, strlen(df), "Dockerfile", &err), STOW_OK);
    CHECK_INT(l.n, 5);
    const stow_mount *m = by_id(&l, "apt-system-cache");
    CHECK(m != NULL && strcmp(m->target, "/var/cache/apt") == 0 &&
          strcmp(m->sharing, "locked") == 0);
    CHECK(by_id(&l, "apt-lib-cache") != NULL);
    m = by_id(&l, "/root/.cache/pip");
    CHECK(m != NULL && m->uid == -1); /* the first declaration wins */
    m = by_id(&l, "/home/u/.cache");
    CHECK(m != NULL && m->uid == 1000 && m->gid == 1000 && m->mode == 0700);
    CHECK(by_id(&l, "last") != NULL); /* no newline at the end */
    CHECK(by_id(&l, "/stage") == NULL);
    CHECK(by_id(&l, "/not-a-flag") == NULL);
    stow_mount_list_free(&l);

    /* A backtick escape character. */
    const char *win =
        "# escape=`\nFROM x\nRUN --mount=type=cache,id=a,target=/a `\n    --mount=type=cache,id=b,target=/b `\n  true\n";
    CHECK_INT(stow_mounts_parse_dockerfile(&l, win, strlen(win), "Dockerfile", &err), STOW_OK);
    CHECK_INT(l.n, 2);
    stow_mount_list_free(&l);

    const char *bad = "FROM x\nRUN --mount=type=cache,id=a,sharing=sometimes,target=/a true\n";
    stow_error e = {0};
    CHECK_INT(stow_mounts_parse_dockerfile(&l, bad, strlen(bad), "Dockerfile", &e), STOW_EUSAGE);
    CHECK(strstr(e.msg, "Dockerfile:2") != NULL);
    stow_mount_list_free(&l);
}

static void test_resolve(void)
{
    char dir[] = "/tmp/stowage-test-mounts.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof(path), "%s/Dockerfile", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    fputs("FROM x\nRUN --mount=type=cache,target=/root/.cache/pip,uid=1000 \\\n"
          "  --mount=type=cache,id=apt-cache,target=/var/cache/apt true\n",
          f);
    fclose(f);
    stow_strlist specs = {0};
    stow_error err = {0};
    stow_strlist_add(&specs, "pip:/root/.cache/pip", &err);
    stow_strlist_add(&specs, "/abs/elsewhere:/opt id=other", &err);
    stow_mount_list l = {0};
    CHECK_INT(stow_mounts_resolve(&l, &specs, path, "/base", &err), STOW_OK);
    CHECK_INT(l.n, 3);
    if (l.n == 3) {
        CHECK_STR(l.v[0].host, "/base/pip");
        CHECK_INT(l.v[0].uid, 1000); /* from the Dockerfile */
        CHECK_STR(l.v[1].host, "/abs/elsewhere");
        CHECK_STR(l.v[2].id, "apt-cache");
        CHECK_STR(l.v[2].host, "/base/apt-cache");
    }
    stow_mount_list_free(&l);

    stow_strlist_free(&specs);
    stow_strlist_add(&specs, "a:/a", &err);
    stow_strlist_add(&specs, "a:/b", &err);
    stow_error e = {0};
    CHECK_INT(stow_mounts_resolve(&l, &specs, NULL, "/base", &e), STOW_EUSAGE);
    CHECK(strstr(e.msg, "/base/a") != NULL);
    CHECK_INT(l.n, 0);
    stow_error e2 = {0};
    CHECK_INT(stow_mounts_resolve(&l, NULL, "/nonexistent/Dockerfile", "/base", &e2), STOW_EUSAGE);
    stow_strlist_free(&specs);
    remove(path);
    rmdir(dir);
}

/* `docker buildx inspect` output of buildx 0.12 for a docker-container builder. */
static void test_buildx_driver(void)
{
    char d[32];
    const char *inspect = "Name:          stowage\n"
                          "Driver:        docker-container\n"
                          "Last Activity: 2026-11-27 19:00:00 +0000 UTC\n\n"
                          "Nodes:\n"
                          "Name:      stowage0\n"
                          "Endpoint:  unix:///var/run/docker.sock\n"
                          "Driver Options: image=\"moby/buildkit:buildx-stable-1\"\n"
                          "Status:    running\n";
    CHECK_INT(stow_mounts_buildx_driver(d, sizeof(d), inspect), STOW_OK);
    CHECK_STR(d, "docker-container");
    CHECK_INT(stow_mounts_buildx_driver(d, sizeof(d), "Name: default\r\nDriver: docker\r\n"),
              STOW_OK);
    CHECK_STR(d, "docker");
    CHECK_INT(stow_mounts_buildx_driver(d, sizeof(d), "Name: x\nDriver Options: a=b\n"),
              STOW_ENOTFOUND);
    CHECK_INT(stow_mounts_buildx_driver(d, sizeof(d), "Driver:   \n"), STOW_ENOTFOUND);
    CHECK_INT(stow_mounts_buildx_driver(d, 4, "Driver: docker-container\n"), STOW_ENOTFOUND);
    CHECK_INT(stow_mounts_buildx_driver(d, sizeof(d), ""), STOW_ENOTFOUND);
}

int main(void)
{
    test_spec();
    test_dockerfile();
    test_resolve();
    test_buildx_driver();
    TEST_DONE();
}
