/* SigV4 signing: AWS's published S3 examples ("Examples: Signature Calculations in AWS
 * Signature Version 4", sig-v4-header-based-auth), encoding rules and input checks. */
#include "sigv4.h"

#include <stdlib.h>

#include "test.h"

#define AK "AKIAIOSFODNN7EXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define DATE "20130524T000000Z"
#define HOST "examplebucket.s3.amazonaws.com"

static stow_sigv4_request example(const char *method, const char *path, const char *query,
                                  const char *const *headers, const char *payload_hash)
{
    stow_sigv4_request r = {
        .method = method,
        .host = HOST,
        .path = path,
        .query = query,
        .headers = headers,
        .payload_hash = payload_hash,
        .amz_date = DATE,
        .region = "us-east-1",
        .service = "s3",
        .access_key = AK,
        .secret_key = SK,
        .session_token = NULL,
    };
    return r;
}

static void test_get_object(void)
{
    const char *headers[] = {"Range: bytes=0-9", NULL};
    stow_sigv4_request r = example("GET", "/test.txt", NULL, headers, STOW_SIGV4_EMPTY_SHA256);
    stow_sigv4_headers h;
    stow_error err = {0};
    char canon[2048], sts[512];

    CHECK_INT(stow_sigv4_canonical_request(canon, sizeof(canon), &r, &err), 0);
    CHECK_STR(canon, "GET\n"
                     "/test.txt\n"
                     "\n"
                     "host:examplebucket.s3.amazonaws.com\n"
                     "range:bytes=0-9\n"
                     "x-amz-content-sha256:"
                     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
                     "x-amz-date:20130524T000000Z\n"
                     "\n"
                     "host;range;x-amz-content-sha256;x-amz-date\n"
                     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK_INT(stow_sigv4_string_to_sign(sts, sizeof(sts), &r, &err), 0);
    CHECK_STR(sts, "AWS4-HMAC-SHA256\n"
                   "20130524T000000Z\n"
                   "20130524/us-east-1/s3/aws4_request\n"
                   "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), 0);
    CHECK_STR(h.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    CHECK_STR(h.authorization,
              "Authorization: AWS4-HMAC-SHA256 "
              "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
              "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
              "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    CHECK_STR(h.amz_date, "x-amz-date: 20130524T000000Z");
    CHECK_STR(h.content_sha256, "x-amz-content-sha256: "
                                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK_STR(h.security_token, "");
}

static void test_put_object(void)
{
    const char *body = "Welcome to Amazon S3.";
    char hash[STOW_SIGV4_HASH_HEX_SIZE];
    stow_sigv4_payload_hash(hash, body, strlen(body));
    CHECK_STR(hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");

    const char *headers[] = {"Date: Fri, 24 May 2013 00:00:00 GMT",
                             "x-amz-storage-class: REDUCED_REDUNDANCY", NULL};
    stow_sigv4_request r = example("PUT", "/test%24file.text", NULL, headers, hash);
    stow_sigv4_headers h;
    stow_error err = {0};
    char canon[2048];

    CHECK_INT(stow_sigv4_canonical_request(canon, sizeof(canon), &r, &err), 0);
    CHECK_STR(canon, "PUT\n"
                     "/test%24file.text\n"
                     "\n"
                     "date:Fri, 24 May 2013 00:00:00 GMT\n"
                     "host:examplebucket.s3.amazonaws.com\n"
                     "x-amz-content-sha256:"
                     "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\n"
                     "x-amz-date:20130524T000000Z\n"
                     "x-amz-storage-class:REDUCED_REDUNDANCY\n"
                     "\n"
                     "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
                     "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), 0);
    CHECK_STR(h.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    CHECK(strstr(h.authorization,
                 "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class") !=
          NULL);

    /* the same path built with the encoder */
    char path[64];
    CHECK_INT(stow_sigv4_uri_encode(path, sizeof(path), "/test$file.text", 0), 0);
    CHECK_STR(path, "/test%24file.text");
}

static void test_get_lifecycle(void)
{
    stow_sigv4_request r = example("GET", "/", "lifecycle", NULL, STOW_SIGV4_EMPTY_SHA256);
    stow_sigv4_headers h;
    stow_error err = {0};
    char canon[2048];

    CHECK_INT(stow_sigv4_canonical_request(canon, sizeof(canon), &r, &err), 0);
    CHECK(strncmp(canon, "GET\n/\nlifecycle=\nhost:", 22) == 0);
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), 0);
    CHECK_STR(h.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");

    /* "lifecycle=" as sent signs the same */
    r.query = "lifecycle=";
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), 0);
    CHECK_STR(h.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    /* an empty path means "/" */
    r.path = "";
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), 0);
    CHECK_STR(h.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

static void test_list_objects(void)
{
    stow_sigv4_request r = example("GET", "/", "max-keys=2&prefix=J", NULL,
                                   STOW_SIGV4_EMPTY_SHA256);
    stow_sigv4_headers h;
    stow_error err = {0};
    char canon[2048];

    CHECK_INT(stow_sigv4_canonical_request(canon, sizeof(canon), &r, &err), 0);
    CHECK(strncmp(canon, "GET\n/\nmax-keys=2&prefix=J\nhost:", 31) == 0);
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), 0);
    CHECK_STR(h.signature, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");

    /* parameter order as sent does not matter: they are sorted */
    r.query = "prefix=J&max-keys=2";
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), 0);
    CHECK_STR(h.signature, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    /* and a trailing '&' adds nothing */
    r.query = "prefix=J&max-keys=2&";
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), 0);
    CHECK_STR(h.signature, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

static void test_uri_encode(void)
{
    char out[128];
    CHECK_INT(stow_sigv4_uri_encode(out, sizeof(out), "a b", 1), 0);
    CHECK_STR(out, "a%20b");
    CHECK_INT(stow_sigv4_uri_encode(out, sizeof(out), "/dir/sub dir/f~x_y-z.txt", 0), 0);
    CHECK_STR(out, "/dir/sub%20dir/f~x_y-z.txt");
    CHECK_INT(stow_sigv4_uri_encode(out, sizeof(out), "a/b", 1), 0);
    CHECK_STR(out, "a%2Fb");
    CHECK_INT(stow_sigv4_uri_encode(out, sizeof(out), "+=&?#%*!'()", 1), 0);
    CHECK_STR(out, "%2B%3D%26%3F%23%25%2A%21%27%28%29");
    /* UTF-8: each byte of "é" (C3 A9) and "€" (E2 82 AC) */
    CHECK_INT(stow_sigv4_uri_encode(out, sizeof(out), "caf\xc3\xa9-\xe2\x82\xac", 0), 0);
    CHECK_STR(out, "caf%C3%A9-%E2%82%AC");
    CHECK_INT(stow_sigv4_uri_encode(out, sizeof(out), "", 0), 0);
    CHECK_STR(out, "");
    CHECK_INT(stow_sigv4_uri_encode(out, sizeof(out), "AZaz09-_.~", 1), 0);
    CHECK_STR(out, "AZaz09-_.~");

    /* overflow: "ab%20c" needs 7 bytes with the NUL; exactly fits, then one byte short */
    char tight[7];
    CHECK_INT(stow_sigv4_uri_encode(tight, sizeof(tight), "ab c", 1), 0);
    CHECK_STR(tight, "ab%20c");
    char shorter[6];
    CHECK_INT(stow_sigv4_uri_encode(shorter, sizeof(shorter), "ab c", 1), STOW_ERR);
    CHECK_STR(shorter, "");
}

static void test_query_encoding(void)
{
    stow_sigv4_request r = example("GET", "/", NULL, NULL, STOW_SIGV4_EMPTY_SHA256);
    stow_error err = {0};
    char canon[2048];

    /* keys and values are decoded and encoded again: lower-case escapes become upper-case,
     * characters S3 would escape are escaped, valueless keys get '=' */
    r.query = "prefix=a%2fb%20c&list-type=2&delimiter=%2F&uploads&x=$";
    CHECK_INT(stow_sigv4_canonical_request(canon, sizeof(canon), &r, &err), 0);
    CHECK(strncmp(canon, "GET\n/\ndelimiter=%2F&list-type=2&prefix=a%2Fb%20c&uploads=&x=%24\nhost:",
                  68) == 0);

    /* same key twice: sorted by value */
    r.query = "k=b&k=a";
    CHECK_INT(stow_sigv4_canonical_request(canon, sizeof(canon), &r, &err), 0);
    CHECK(strncmp(canon, "GET\n/\nk=a&k=b\n", 14) == 0);

    /* sort is on the encoded key, byte order: "A" < "a" < "a-b" < "a_b" */
    r.query = "a_b=1&a-b=2&a=3&A=4";
    CHECK_INT(stow_sigv4_canonical_request(canon, sizeof(canon), &r, &err), 0);
    CHECK(strncmp(canon, "GET\n/\nA=4&a=3&a-b=2&a_b=1\n", 26) == 0);

    /* UTF-8 in a value */
    r.query = "prefix=%C3%A9";
    CHECK_INT(stow_sigv4_canonical_request(canon, sizeof(canon), &r, &err), 0);
    CHECK(strncmp(canon, "GET\n/\nprefix=%C3%A9\n", 20) == 0);

    /* refused: literal '+', bad escapes, raw spaces, missing names */
    const char *bad[] = {"a=b+c", "a=%2", "a=%zz", "a=b c", "=x", "a=b=c", NULL};
    for (int i = 0; bad[i] != NULL; i++) {
        r.query = bad[i];
        stow_error_clear(&err);
        if (stow_sigv4_canonical_request(canon, sizeof(canon), &r, &err) != STOW_EUSAGE) {
            fprintf(stderr, "query \"%s\" was accepted\n", bad[i]);
            stow_test_failures++;
        }
        CHECK(strstr(err.msg, "query") != NULL);
    }
}

static void test_path_rules(void)
{
    stow_sigv4_request r = example("GET", NULL, NULL, NULL, STOW_SIGV4_EMPTY_SHA256);
    stow_error err = {0};
    char canon[2048];

    /* no normalisation: "//", "." and ".." segments are signed as sent */
    r.path = "/bucket//a/./b/../c%20d~";
    CHECK_INT(stow_sigv4_canonical_request(canon, sizeof(canon), &r, &err), 0);
    CHECK(strncmp(canon, "GET\n/bucket//a/./b/../c%20d~\n", 29) == 0);

    const char *bad[] = {"/a b", "/a%2f", "/a%2", "relative", "/caf\xc3\xa9", "/a+b", NULL};
    for (int i = 0; bad[i] != NULL; i++) {
        r.path = bad[i];
        stow_error_clear(&err);
        if (stow_sigv4_canonical_request(canon, sizeof(canon), &r, &err) != STOW_EUSAGE) {
            fprintf(stderr, "path \"%s\" was accepted\n", bad[i]);
            stow_test_failures++;
        }
        CHECK(strstr(err.msg, "path") != NULL);
    }
}

static void test_headers(void)
{
    const char *headers[] = {"X-Amz-Meta-Note:   two   words\t here  ", "Content-Type:text/plain",
                             NULL};
    stow_sigv4_request r = example("PUT", "/k", NULL, headers, STOW_SIGV4_UNSIGNED_PAYLOAD);
    stow_sigv4_headers h;
    stow_error err = {0};
    char canon[2048];

    CHECK_INT(stow_sigv4_canonical_request(canon, sizeof(canon), &r, &err), 0);
    CHECK_STR(canon, "PUT\n/k\n\n"
                     "content-type:text/plain\n"
                     "host:examplebucket.s3.amazonaws.com\n"
                     "x-amz-content-sha256:UNSIGNED-PAYLOAD\n"
                     "x-amz-date:20130524T000000Z\n"
                     "x-amz-meta-note:two words here\n"
                     "\n"
                     "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-note\n"
                     "UNSIGNED-PAYLOAD");
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), 0);
    CHECK_STR(h.content_sha256, "x-amz-content-sha256: UNSIGNED-PAYLOAD");

    /* a header the signer adds itself, given again */
    const char *dup[] = {"Host: other", NULL};
    r.headers = dup;
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "host given twice") != NULL);
    CHECK_STR(h.authorization, "");

    /* header injection */
    const char *crlf[] = {"X-A: b\r\nX-Evil: 1", NULL};
    r.headers = crlf;
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), STOW_EUSAGE);
    const char *noname[] = {": v", NULL};
    r.headers = noname;
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), STOW_EUSAGE);
    const char *nocolon[] = {"X-A v", NULL};
    r.headers = nocolon;
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), STOW_EUSAGE);
}

static void test_session_token(void)
{
    stow_sigv4_request r = example("GET", "/test.txt", NULL, NULL, STOW_SIGV4_EMPTY_SHA256);
    stow_sigv4_headers plain, tok;
    stow_error err = {0};
    char canon[2048];

    CHECK_INT(stow_sigv4_sign(&plain, &r, &err), 0);
    CHECK_STR(plain.security_token, "");
    CHECK(strstr(plain.authorization, "x-amz-security-token") == NULL);

    r.session_token = "";
    CHECK_INT(stow_sigv4_sign(&tok, &r, &err), 0);
    CHECK_STR(tok.signature, plain.signature);

    r.session_token = "FwoGZXIvYXdzEXAMPLE//token+with/slashes==";
    CHECK_INT(stow_sigv4_sign(&tok, &r, &err), 0);
    CHECK_STR(tok.security_token,
              "x-amz-security-token: FwoGZXIvYXdzEXAMPLE//token+with/slashes==");
    CHECK(strstr(tok.authorization,
                 "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,") !=
          NULL);
    CHECK(strcmp(tok.signature, plain.signature) != 0);
    CHECK_INT(stow_sigv4_canonical_request(canon, sizeof(canon), &r, &err), 0);
    CHECK(strstr(canon, "\nx-amz-security-token:FwoGZXIvYXdzEXAMPLE//token+with/slashes==\n") !=
          NULL);

    /* a long token (STS tokens are often 1-2 KB) fits */
    char *big = malloc(4001);
    memset(big, 'T', 4000);
    big[4000] = '\0';
    r.session_token = big;
    CHECK_INT(stow_sigv4_sign(&tok, &r, &err), 0);
    CHECK_INT(strlen(tok.security_token), strlen("x-amz-security-token: ") + 4000);
    free(big);

    r.session_token = "has space";
    CHECK_INT(stow_sigv4_sign(&tok, &r, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, "has space") == NULL); /* the token is never echoed */
}

static void test_bad_fields(void)
{
    stow_sigv4_request base = example("GET", "/", NULL, NULL, STOW_SIGV4_EMPTY_SHA256);
    stow_sigv4_request r;
    stow_sigv4_headers h;
    stow_error err = {0};

    r = base, r.amz_date = "2013-05-24T00:00:00Z";
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), STOW_EUSAGE);
    r = base, r.payload_hash = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), STOW_EUSAGE);
    r = base, r.region = NULL;
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), STOW_EUSAGE);
    r = base, r.region = "us/east";
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), STOW_EUSAGE);
    r = base, r.access_key = "AK/IA";
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), STOW_EUSAGE);
    r = base, r.secret_key = "";
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), STOW_EUSAGE);
    r = base, r.method = "get";
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), STOW_EUSAGE);
    r = base, r.host = "exa mple";
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), STOW_EUSAGE);

    /* the secret never appears in an error message */
    r = base;
    r.amz_date = "bad";
    CHECK_INT(stow_sigv4_sign(&h, &r, &err), STOW_EUSAGE);
    CHECK(strstr(err.msg, SK) == NULL);

    /* canonical request larger than the caller's buffer */
    char tiny[16];
    r = base;
    CHECK_INT(stow_sigv4_canonical_request(tiny, sizeof(tiny), &r, &err), STOW_EUSAGE);
}

static void test_amz_date(void)
{
    char d[STOW_SIGV4_AMZ_DATE_SIZE];
    CHECK_INT(stow_sigv4_amz_date(d, (time_t)1369353600), 0); /* 2013-05-24 00:00:00 UTC */
    CHECK_STR(d, "20130524T000000Z");
    CHECK_INT(stow_sigv4_amz_date(d, (time_t)0), 0);
    CHECK_STR(d, "19700101T000000Z");
}

int main(void)
{
    test_get_object();
    test_put_object();
    test_get_lifecycle();
    test_list_objects();
    test_uri_encode();
    test_query_encoding();
    test_path_rules();
    test_headers();
    test_session_token();
    test_bad_fields();
    test_amz_date();
    TEST_DONE();
}
