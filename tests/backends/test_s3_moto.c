/* Tests for backends/s3.c against moto_server with authentication on (signatures verified),
 * started through tests/integration/with_s3.sh: conditional puts (If-None-Match: * on
 * PutObject and CompleteMultipartUpload), empty objects (416 InvalidRange), listings that
 * moto forces onto the unencoded-prefix fallback, across pages, and authentication errors
 * from every operation, never reported as misses. Exit 77 (skipped) when moto_server is not
 * installed. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "log.h"
#include "s3_fixture.h"
#include "test.h"

#define MIB (1024u * 1024u)

static stow_backend *open_store(const char *prefix, stow_error *err)
{
    char url[512];
    snprintf(url, sizeof(url), "s3://%s/%s", getenv("S3_BUCKET"), prefix);
    stow_backend_opts o = {0};
    o.url = url;
    o.endpoint = getenv("S3_ENDPOINT");
    o.path_style = -1;
    o.verify_tls = 1;
    o.max_retries = 1;
    stow_backend *b = NULL;
    if (stow_backend_open(&b, &o, err) != STOW_OK)
        fprintf(stderr, "open %s: %s\n", url, err->msg);
    return b;
}

static int put_stream(stow_backend *b, const char *name, uint64_t seed, size_t len, unsigned flags,
                      stow_error *err)
{
    stow_put *p = NULL;
    int rc = b->ops->put_begin(&p, b, name, -1, flags, err);
    if (rc != STOW_OK)
        return rc;
    unsigned char *buf = malloc(MIB);
    if (buf == NULL) {
        b->ops->put_abort(p);
        return STOW_ERR;
    }
    for (size_t off = 0; off < len; off += MIB) {
        size_t n = len - off < MIB ? len - off : MIB;
        s3fx_fill(buf, n, seed, off);
        if ((rc = b->ops->put_write(p, buf, n, err)) != STOW_OK) {
            free(buf);
            b->ops->put_abort(p);
            return rc;
        }
    }
    free(buf);
    return b->ops->put_commit(p, err);
}

static int get_check(stow_backend *b, const char *name, uint64_t seed, uint64_t expect,
                     stow_error *err)
{
    s3fx_check c = {seed, 0, 0, 0};
    int rc = b->ops->get(b, name, 0, 0, s3fx_check_sink, &c, err);
    if (rc == STOW_OK && (c.bad || c.got != expect))
        return STOW_ECORRUPT;
    return rc;
}

static void test_conditional_and_empty(void)
{
    stow_error err;
    stow_backend *b = open_store("cond", &err);
    CHECK(b != NULL);
    if (b == NULL)
        return;
    char *buf = NULL;
    size_t len = 0;

    CHECK_INT(stow_backend_put_buffer(b, "refs/x", "first", 5, STOW_PUT_IF_ABSENT, &err), STOW_OK);
    CHECK_INT(stow_backend_put_buffer(b, "refs/x", "second", 6, STOW_PUT_IF_ABSENT, &err),
              STOW_EEXIST);
    CHECK(strstr(err.msg, "PreconditionFailed") != NULL);
    CHECK_INT(stow_backend_get_buffer(&buf, &len, b, "refs/x", 100, &err), STOW_OK);
    CHECK(buf && len == 5 && memcmp(buf, "first", 5) == 0);
    free(buf);
    CHECK_INT(stow_backend_put_buffer(b, "refs/x", "third", 5, 0, &err), STOW_OK);

    /* the multipart form: the condition is checked at CompleteMultipartUpload */
    CHECK_INT(put_stream(b, "layers/m", 5, 18 * MIB, STOW_PUT_IF_ABSENT, &err), STOW_OK);
    CHECK_INT(put_stream(b, "layers/m", 6, 18 * MIB, STOW_PUT_IF_ABSENT, &err), STOW_EEXIST);
    CHECK_INT(get_check(b, "layers/m", 5, 18 * MIB, &err), STOW_OK);

    /* empty objects: the first part of a GET is a range, which S3 answers 416 InvalidRange */
    CHECK_INT(stow_backend_put_buffer(b, "empty", "", 0, 0, &err), STOW_OK);
    CHECK_INT(stow_backend_get_buffer(&buf, &len, b, "empty", 100, &err), STOW_OK);
    CHECK(buf && len == 0);
    free(buf);
    stow_object_info info;
    CHECK_INT(stow_backend_head(b, "empty", &info, &err), STOW_OK);
    CHECK_INT(info.size, 0);
    /* a range past the end of a non-empty object stays an error */
    s3fx_check c = {0, 0, 0, 0};
    CHECK(b->ops->get(b, "refs/x", 100, 0, s3fx_check_sink, &c, &err) != STOW_OK);
    stow_backend_free(b);
}

typedef struct names {
    int n;
    int outside; /* names that do not start with the listed prefix */
    const char *prefix;
} names;

static int collect(void *ud, const char *name, const stow_object_info *info)
{
    names *l = ud;
    (void)info;
    if (strncmp(name, l->prefix, strlen(l->prefix)) != 0)
        l->outside++;
    l->n++;
    return 0;
}

static void test_list_fallback(void)
{
    stow_error err;
    /* keys around the store's prefix that the fallback ("list", unencoded) also sees */
    stow_backend *other = open_store("list", &err);
    stow_backend *b = open_store("list%20dir", &err);
    CHECK(b != NULL && other != NULL);
    if (b == NULL || other == NULL) {
        stow_backend_free(b);
        stow_backend_free(other);
        return;
    }
    CHECK_INT(stow_backend_put_buffer(other, "aaa", "x", 1, 0, &err), STOW_OK);
    CHECK_INT(stow_backend_put_buffer(other, "zzz", "x", 1, 0, &err), STOW_OK);
    const int n = 1003; /* more than one page of 1000 */
    int failed = 0;
    for (int i = 0; i < n && !failed; i++) {
        char name[64];
        snprintf(name, sizeof(name), "manifests/default/k%04d.json", i);
        failed = stow_backend_put_buffer(b, name, "{}", 2, 0, &err) != STOW_OK;
        if (failed)
            fprintf(stderr, "put %s: %s\n", name, err.msg);
    }
    CHECK(!failed);
    CHECK_INT(stow_backend_put_buffer(b, "refs/default/r", "x", 1, 0, &err), STOW_OK);

    names l = {0, 0, "manifests/"};
    CHECK_INT(stow_backend_list(b, "manifests/", collect, &l, &err), STOW_OK);
    CHECK_INT(l.n, n);
    CHECK_INT(l.outside, 0);
    names r = {0, 0, "refs/"};
    CHECK_INT(stow_backend_list(b, "refs/", collect, &r, &err), STOW_OK);
    CHECK_INT(r.n, 1);
    CHECK_INT(r.outside, 0);
    names all = {0, 0, ""};
    CHECK_INT(stow_backend_list(b, "", collect, &all, &err), STOW_OK);
    CHECK_INT(all.n, n + 1);
    stow_backend_free(b);
    stow_backend_free(other);
}

static void test_wrong_secret(void)
{
    stow_error err;
    char *saved = strdup(getenv("AWS_SECRET_ACCESS_KEY"));
    setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret", 1);
    stow_backend *b = open_store("cond", &err);
    setenv("AWS_SECRET_ACCESS_KEY", saved, 1);
    free(saved);
    CHECK(b != NULL);
    if (b == NULL)
        return;
    char *buf = NULL;
    stow_object_info info;
    names l = {0, 0, ""};

    CHECK_INT(stow_backend_get_buffer(&buf, NULL, b, "refs/x", 100, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "SignatureDoesNotMatch") != NULL);
    /* a missing object is not a miss either when the credentials are refused */
    CHECK_INT(stow_backend_get_buffer(&buf, NULL, b, "refs/none", 100, &err), STOW_EAUTH);
    /* HEAD answers have no body: the code comes from a 1-byte GET */
    CHECK_INT(stow_backend_head(b, "refs/x", &info, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "SignatureDoesNotMatch") != NULL);
    CHECK_INT(stow_backend_head(b, "refs/none", &info, &err), STOW_EAUTH);
    CHECK_INT(stow_backend_put_buffer(b, "refs/y", "x", 1, 0, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "SignatureDoesNotMatch") != NULL);
    CHECK_INT(put_stream(b, "layers/y", 1, 9 * MIB, 0, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "CreateMultipartUpload") != NULL);
    CHECK_INT(stow_backend_del(b, "refs/x", &err), STOW_EAUTH);
    CHECK_INT(stow_backend_list(b, "refs/", collect, &l, &err), STOW_EAUTH);
    CHECK(strstr(err.msg, "SignatureDoesNotMatch") != NULL);
    CHECK(strstr(err.msg, "wrong-secret") == NULL);
    stow_backend_free(b);
}

int main(int argc, char **argv)
{
    if (getenv("STOW_TEST_DEBUG"))
        stow_log_set_level(STOW_LOG_DEBUG);
    s3fx_require_server(argc, argv, "moto");
    test_conditional_and_empty();
    test_wrong_secret();
    test_list_fallback();
    TEST_DONE();
}
