/* Unit tests for backends/s3_xml.c: the S3 answer parsers on good, namespaced, truncated,
 * hostile and over-cap input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3_xml.h"
#include "test.h"

typedef struct keys {
    char names[8][64];
    uint64_t sizes[8];
    int64_t mtimes[8];
    int n;
    int stop_after;
} keys;

static int on_key(void *ud, const char *key, uint64_t size, int64_t mtime)
{
    keys *k = ud;
    if (k->n < 8) {
        snprintf(k->names[k->n], sizeof(k->names[0]), "%s", key);
        k->sizes[k->n] = size;
        k->mtimes[k->n] = mtime;
    }
    k->n++;
    return k->stop_after && k->n >= k->stop_after;
}

static int list(const char *xml, keys *k, int *trunc, char *tok, size_t tokcap, stow_error *e)
{
    memset(k, 0, sizeof(*k) - sizeof(k->stop_after));
    return stow_s3_xml_list(xml, strlen(xml), on_key, k, trunc, tok, tokcap, e);
}

static void test_error(void)
{
    stow_s3_error_info e;
    const char *body = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The "
                       "bucket\nis gone</Message><BucketName>b1</BucketName></Error>";
    CHECK_INT(stow_s3_xml_error(&e, body, strlen(body)), 0);
    CHECK_STR(e.root, "Error");
    CHECK_STR(e.code, "NoSuchBucket");
    CHECK_STR(e.message, "The bucket is gone"); /* control characters become spaces */
    CHECK_STR(e.bucket, "b1");
    CHECK_STR(e.region, "");
    /* namespaced root, complete answer */
    const char *ok = "<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/"
                     "2006-03-01/\"><ETag>x</ETag></CompleteMultipartUploadResult>";
    CHECK_INT(stow_s3_xml_error(&e, ok, strlen(ok)), 0);
    CHECK_STR(e.root, "CompleteMultipartUploadResult");
    CHECK_STR(e.code, "");
    /* not XML, empty, truncated */
    CHECK_INT(stow_s3_xml_error(&e, "<html>oops", 10), -1);
    CHECK_INT(stow_s3_xml_error(&e, "", 0), -1);
    CHECK_STR(e.code, "");
    CHECK_INT(stow_s3_xml_error(&e, "\0\0\0", 3), -1);
    /* a long message is truncated, not refused */
    char big[2000];
    int n = snprintf(big, sizeof(big), "<Error><Code>C</Code><Message>");
    memset(big + n, 'm', 1000);
    snprintf(big + n + 1000, sizeof(big) - (size_t)n - 1000, "</Message></Error>");
    CHECK_INT(stow_s3_xml_error(&e, big, strlen(big)), 0);
    CHECK_INT(strlen(e.message), sizeof(e.message) - 1);
}

static void test_upload_id(void)
{
    char id[STOW_S3_UPLOAD_ID_MAX + 1];
    const char *ok = "<InitiateMultipartUploadResult xmlns=\"x\"><Bucket>b</Bucket><Key>k</Key>"
                     "<UploadId>abc-123</UploadId></InitiateMultipartUploadResult>";
    CHECK_INT(stow_s3_xml_upload_id(id, ok, strlen(ok)), 0);
    CHECK_STR(id, "abc-123");
    const char *none = "<InitiateMultipartUploadResult></InitiateMultipartUploadResult>";
    CHECK_INT(stow_s3_xml_upload_id(id, none, strlen(none)), -1);
    CHECK_STR(id, "");
    const char *empty = "<R><UploadId></UploadId></R>";
    CHECK_INT(stow_s3_xml_upload_id(id, empty, strlen(empty)), -1);
    const char *deep = "<R><X><UploadId>nested</UploadId></X></R>"; /* not a child of the root */
    CHECK_INT(stow_s3_xml_upload_id(id, deep, strlen(deep)), -1);
    size_t cap = STOW_S3_UPLOAD_ID_MAX + 64;
    char *longer = malloc(cap + 64);
    int n = snprintf(longer, cap, "<R><UploadId>");
    memset(longer + n, 'a', STOW_S3_UPLOAD_ID_MAX + 1);
    snprintf(longer + n + STOW_S3_UPLOAD_ID_MAX + 1, 32, "</UploadId></R>");
    CHECK_INT(stow_s3_xml_upload_id(id, longer, strlen(longer)), -1);
    CHECK_STR(id, "");
    free(longer);
    CHECK_INT(stow_s3_xml_upload_id(id, "<R><UploadId>a", 14), -1); /* truncated */
}

static void test_list(void)
{
    keys k = {0};
    stow_error e;
    int trunc = -1;
    char tok[64];
    const char *page = "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                       "<Name>b</Name><IsTruncated>true</IsTruncated>"
                       "<Contents><Key>p/a</Key><Size>12</Size>"
                       "<LastModified>2024-01-02T03:04:05.000Z</LastModified></Contents>"
                       "<Contents><Key>p/b</Key><Size>0</Size></Contents>"
                       "<NextContinuationToken>tok+1/=</NextContinuationToken>"
                       "</ListBucketResult>";
    CHECK_INT(list(page, &k, &trunc, tok, sizeof(tok), &e), 0);
    CHECK_INT(k.n, 2);
    CHECK_STR(k.names[0], "p/a");
    CHECK_INT(k.sizes[0], 12);
    CHECK_INT(k.mtimes[0], 1704164645);
    CHECK_STR(k.names[1], "p/b");
    CHECK_INT(k.mtimes[1], 0);
    CHECK_INT(trunc, 1);
    CHECK_STR(tok, "tok+1/=");

    k.stop_after = 1;
    CHECK_INT(list(page, &k, &trunc, tok, sizeof(tok), &e), 1);
    CHECK_INT(k.n, 1);
    k.stop_after = 0;

    const char *bad[] = {
        "<Error><Code>AccessDenied</Code></Error>",
        "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a</Key><Size>-1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a</Key><Size>1x</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a</Key>",
        "",
        "not xml at all",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        stow_error_clear(&e);
        CHECK_INT(list(bad[i], &k, &trunc, tok, sizeof(tok), &e), -1);
        CHECK_INT(e.code, STOW_ECORRUPT);
        CHECK(e.msg[0] != '\0');
    }
    /* nesting past the cap */
    char deep[2048] = "<ListBucketResult>";
    for (int i = 0; i < STOW_S3_XML_DEPTH_MAX + 2; i++)
        strcat(deep, "<a>");
    CHECK_INT(list(deep, &k, &trunc, tok, sizeof(tok), &e), -1);

    /* fed in one-byte pieces: the same answer */
    stow_s3_list_parser *p = NULL;
    memset(&k, 0, sizeof(k));
    CHECK_INT(stow_s3_list_parser_new(&p, on_key, &k), STOW_OK);
    int rc = 0;
    for (size_t i = 0; page[i] && rc == 0; i++)
        rc = stow_s3_list_parser_feed(p, page + i, 1, 0);
    CHECK_INT(rc, 0);
    CHECK_INT(stow_s3_list_parser_feed(p, "", 0, 1), 0);
    CHECK_INT(k.n, 2);
    CHECK_INT(stow_s3_list_parser_truncated(p), 1);
    CHECK_STR(stow_s3_list_parser_token(p), "tok+1/=");
    CHECK_STR(stow_s3_list_parser_error(p), "");
    stow_s3_list_parser_free(p);
    stow_s3_list_parser_free(NULL);
}

int main(void)
{
    test_error();
    test_upload_id();
    test_list();
    TEST_DONE();
}
