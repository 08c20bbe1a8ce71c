/* libFuzzer harness: the S3 XML answer parsers (backends/s3_xml.h), which read what an S3
 * server (or anything pretending to be one) sends back. Checks their contracts beyond "no
 * crash": NUL-terminated outputs within their caps, no control characters in error fields,
 * keys within S3's limit, and the streaming list parser agreeing with the one-shot one
 * whatever the split of the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3_xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    size_t n;
    uint64_t bytes;
    uint64_t hash; /* order-sensitive digest of keys and sizes */
} list_tally;

static int on_key(void *ud, const char *key, uint64_t size, int64_t mtime)
{
    (void)mtime;
    list_tally *t = ud;
    size_t len = strlen(key);
    if (len > STOW_S3_KEY_MAX)
        abort();
    t->n++;
    t->bytes += size;
    for (size_t i = 0; i < len; i++)
        t->hash = (t->hash ^ (unsigned char)key[i]) * 1099511628211ull;
    t->hash = (t->hash ^ size) * 1099511628211ull;
    return 0;
}

static void check_field(const char *f, size_t cap)
{
    size_t n = strnlen(f, cap);
    if (n == cap)
        abort(); /* not NUL-terminated */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)f[i] < 0x20 || f[i] == 0x7f)
            abort(); /* error fields go into one-line messages */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;

    stow_s3_error_info e;
    stow_s3_xml_error(&e, body, size);
    check_field(e.root, sizeof(e.root));
    check_field(e.code, sizeof(e.code));
    check_field(e.message, sizeof(e.message));
    check_field(e.bucket, sizeof(e.bucket));
    check_field(e.region, sizeof(e.region));
    check_field(e.endpoint, sizeof(e.endpoint));
    check_field(e.actual_size, sizeof(e.actual_size));

    char id[STOW_S3_UPLOAD_ID_MAX + 1];
    int rc = stow_s3_xml_upload_id(id, body, size);
    if (strnlen(id, sizeof(id)) == sizeof(id) || (rc != 0 && id[0] != '\0') ||
        (rc == 0 && id[0] == '\0'))
        abort();

    /* One-shot list vs the streaming parser fed in two pieces split at a point taken from
     * the input itself. */
    list_tally one = {0, 0, 14695981039346656037ull}, two = {0, 0, 14695981039346656037ull};
    int truncated = 0;
    char token[STOW_S3_LIST_TOKEN_MAX + 1];
    stow_error err = {0};
    int r1 = stow_s3_xml_list(body, size, on_key, &one, &truncated, token, sizeof(token), &err);
    if (strnlen(token, sizeof(token)) == sizeof(token) || (r1 < 0 && err.msg[0] == '\0'))
        abort();

    stow_s3_list_parser *p = NULL;
    if (stow_s3_list_parser_new(&p, on_key, &two) != STOW_OK)
        return 0;
    size_t cut = size ? data[0] % (size + 1) : 0;
    int r2 = stow_s3_list_parser_feed(p, body, cut, 0);
    if (r2 == 0)
        r2 = stow_s3_list_parser_feed(p, body + cut, size - cut, 1);
    if (r2 < 0 && stow_s3_list_parser_error(p)[0] == '\0')
        abort(); /* a bad page says why */
    if (r1 != r2 || (r1 == 0 && (one.n != two.n || one.bytes != two.bytes || one.hash != two.hash ||
                                 truncated != stow_s3_list_parser_truncated(p))))
        abort(); /* the split changed the result */
    stow_s3_list_parser_free(p);
    return 0;
}
