/* S3's XML answers with expat, namespace-agnostic: elements are matched by local name and
 * depth. See s3_xml.h for the contracts. */
#include "s3_xml.h"

#include <errno.h>
#include <expat.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "s3_creds.h"
#include "util.h"

typedef struct xml_walk xml_walk;
/* Called at the end of every element; depth 1 is the root. */
typedef void (*xml_end_fn)(xml_walk *w, const char *name, const char *text, size_t len);

struct xml_walk {
    XML_Parser parser;
    int depth;
    char stack[STOW_S3_XML_DEPTH_MAX][STOW_S3_XML_NAME_MAX];
    char text[STOW_S3_XML_TEXT_MAX + 1];
    size_t text_len;
    int too_big;
    xml_end_fn on_end;
    void *ud;
};

static const char *local_name(const char *name)
{
    const char *sep = strrchr(name, '|');
    return sep ? sep + 1 : name;
}

static void xml_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    (void)atts;
    xml_walk *w = ud;
    if (w->depth >= STOW_S3_XML_DEPTH_MAX) {
        w->too_big = 1;
        XML_StopParser(w->parser, XML_FALSE);
        return;
    }
    const char *ln = local_name(name);
    size_t n = strlen(ln);
    if (n >= STOW_S3_XML_NAME_MAX)
        n = STOW_S3_XML_NAME_MAX - 1;
    memcpy(w->stack[w->depth], ln, n);
    w->stack[w->depth][n] = '\0';
    w->depth++;
    w->text_len = 0;
}

static void xml_chars(void *ud, const XML_Char *s, int len)
{
    xml_walk *w = ud;
    if (len <= 0)
        return;
    if ((size_t)len > STOW_S3_XML_TEXT_MAX - w->text_len) {
        w->too_big = 1;
        XML_StopParser(w->parser, XML_FALSE);
        return;
    }
    memcpy(w->text + w->text_len, s, (size_t)len);
    w->text_len += (size_t)len;
}

static void xml_end(void *ud, const XML_Char *name)
{
    xml_walk *w = ud;
    (void)name;
    if (w->depth <= 0)
        return;
    w->text[w->text_len] = '\0';
    if (w->on_end)
        w->on_end(w, w->stack[w->depth - 1], w->text, w->text_len);
    w->depth--;
    w->text_len = 0;
}

/* The local name of the element at depth d (1 = root) while it is open, or "". */
static const char *xml_at(const xml_walk *w, int d)
{
    return d >= 1 && d <= w->depth ? w->stack[d - 1] : "";
}

static int xml_begin(xml_walk *w, xml_end_fn fn, void *ud)
{
    memset(w, 0, offsetof(xml_walk, stack));
    w->text_len = 0;
    w->too_big = 0;
    w->on_end = fn;
    w->ud = ud;
    w->parser = XML_ParserCreateNS(NULL, '|');
    if (w->parser == NULL)
        return -1;
    XML_SetUserData(w->parser, w);
    XML_SetElementHandler(w->parser, xml_start, xml_end);
    XML_SetCharacterDataHandler(w->parser, xml_chars);
    return 0;
}

/* 0 ok, -1 malformed or over a cap. */
static int xml_feed(xml_walk *w, const char *buf, size_t len, int final)
{
    while (len > 0 || final) {
        int n = len > (1 << 20) ? (1 << 20) : (int)len;
        int last = final && (size_t)n == len;
        if (XML_Parse(w->parser, buf, n, last) != XML_STATUS_OK || w->too_big)
            return -1;
        buf += n;
        len -= (size_t)n;
        if (last)
            break;
    }
    return 0;
}

static const char *xml_error(const xml_walk *w)
{
    if (w->too_big)
        return "an element is nested too deep or its text is too long";
    return XML_ErrorString(XML_GetErrorCode(w->parser));
}

static void xml_done(xml_walk *w)
{
    if (w->parser)
        XML_ParserFree(w->parser);
    w->parser = NULL;
}

static void copy_trunc(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
    for (size_t i = 0; i < len; i++) /* messages stay on one printable line */
        if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
            dst[i] = ' ';
}

static void error_end(xml_walk *w, const char *name, const char *text, size_t len)
{
    stow_s3_error_info *e = w->ud;
    if (w->depth == 1) {
        copy_trunc(e->root, sizeof(e->root), name, strlen(name));
        return;
    }
    if (w->depth != 2 || strcmp(xml_at(w, 1), "Error") != 0)
        return;
    if (strcmp(name, "Code") == 0)
        copy_trunc(e->code, sizeof(e->code), text, len);
    else if (strcmp(name, "Message") == 0)
        copy_trunc(e->message, sizeof(e->message), text, len);
    else if (strcmp(name, "BucketName") == 0)
        copy_trunc(e->bucket, sizeof(e->bucket), text, len);
    else if (strcmp(name, "Region") == 0)
        copy_trunc(e->region, sizeof(e->region), text, len);
    else if (strcmp(name, "Endpoint") == 0)
        copy_trunc(e->endpoint, sizeof(e->endpoint), text, len);
    else if (strcmp(name, "ActualObjectSize") == 0)
        copy_trunc(e->actual_size, sizeof(e->actual_size), text, len);
}

int stow_s3_xml_error(stow_s3_error_info *out, const char *body, size_t len)
{
    memset(out, 0, sizeof(*out));
    if (len == 0)
        return -1;
    xml_walk *w = malloc(sizeof(*w));
    if (w == NULL)
        return -1;
    int rc = -1;
    if (xml_begin(w, error_end, out) == 0)
        rc = xml_feed(w, body, len, 1);
    xml_done(w);
    free(w);
    return rc;
}

typedef struct create_ctx {
    char *upload_id;
    int bad;
} create_ctx;

static void create_end(xml_walk *w, const char *name, const char *text, size_t len)
{
    create_ctx *cc = w->ud;
    if (w->depth == 2 && strcmp(name, "UploadId") == 0) {
        if (len == 0 || len > STOW_S3_UPLOAD_ID_MAX || memchr(text, '\0', len) != NULL)
            cc->bad = 1;
        else
            memcpy(cc->upload_id, text, len + 1);
    }
}

int stow_s3_xml_upload_id(char out[STOW_S3_UPLOAD_ID_MAX + 1], const char *body, size_t len)
{
    create_ctx cc = {out, 0};
    out[0] = '\0';
    xml_walk *w = malloc(sizeof(*w));
    if (w == NULL)
        return -1;
    int rc = -1;
    if (xml_begin(w, create_end, &cc) == 0)
        rc = xml_feed(w, body, len, 1);
    xml_done(w);
    free(w);
    if (rc != 0 || cc.bad || out[0] == '\0') {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- ListObjectsV2 */

struct stow_s3_list_parser {
    xml_walk w;
    stow_s3_list_key_fn fn;
    void *ud;
    char key[STOW_S3_KEY_MAX + 1];
    int have_key, key_bad;
    uint64_t size;
    int64_t mtime;
    int truncated;
    char token[STOW_S3_LIST_TOKEN_MAX + 1];
    int token_bad;
    uint64_t page_bytes;
    unsigned long page_keys;
    int stopped; /* fn asked to stop */
    int bad;
    char bad_msg[256];
};

static void list_bad(stow_s3_list_parser *l, const char *fmt, ...) STOW_PRINTF(2, 3);
static void list_bad(stow_s3_list_parser *l, const char *fmt, ...)
{
    if (!l->bad) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->bad_msg, sizeof(l->bad_msg), fmt, ap);
        va_end(ap);
        l->bad = 1;
    }
    XML_StopParser(l->w.parser, XML_FALSE);
}

static void list_emit(stow_s3_list_parser *l)
{
    if (l->page_keys++ >= STOW_S3_LIST_PAGE_KEYS_MAX) {
        list_bad(l, "more keys in one page than allowed");
        return;
    }
    if (!l->have_key || l->key_bad) {
        list_bad(l, "a <Contents> entry without a usable <Key>");
        return;
    }
    if (l->fn(l->ud, l->key, l->size, l->mtime) != 0) {
        l->stopped = 1;
        XML_StopParser(l->w.parser, XML_FALSE);
    }
}

static void list_end(xml_walk *w, const char *name, const char *text, size_t len)
{
    stow_s3_list_parser *l = w->ud;
    if (l->stopped || l->bad)
        return;
    if (w->depth == 1) {
        if (strcmp(name, "ListBucketResult") != 0)
            list_bad(l, "the answer is <%s>, not a ListObjectsV2 result", name);
        return;
    }
    if (strcmp(xml_at(w, 1), "ListBucketResult") != 0) {
        list_bad(l, "the answer is <%s>, not a ListObjectsV2 result", xml_at(w, 1));
        return;
    }
    if (w->depth == 3 && strcmp(xml_at(w, 2), "Contents") == 0) {
        if (strcmp(name, "Key") == 0) {
            l->key_bad = len > STOW_S3_KEY_MAX || memchr(text, '\0', len) != NULL;
            if (!l->key_bad)
                memcpy(l->key, text, len + 1);
            l->have_key = 1;
        } else if (strcmp(name, "Size") == 0) {
            char *end = NULL;
            errno = 0;
            unsigned long long v = strtoull(text, &end, 10);
            if (errno != 0 || end == text || *end != '\0' || text[0] == '-')
                list_bad(l, "bad <Size> \"%.40s\"", text);
            l->size = v;
        } else if (strcmp(name, "LastModified") == 0) {
            time_t t = 0;
            stow_error e;
            if (stow_s3_creds_parse_time(&t, text, &e) == STOW_OK)
                l->mtime = (int64_t)t;
        }
        return;
    }
    if (w->depth != 2)
        return;
    if (strcmp(name, "Contents") == 0) {
        list_emit(l);
        l->have_key = 0;
        l->key_bad = 0;
        l->size = 0;
        l->mtime = 0;
    } else if (strcmp(name, "IsTruncated") == 0) {
        l->truncated = strcmp(text, "true") == 0;
    } else if (strcmp(name, "NextContinuationToken") == 0) {
        l->token_bad = len == 0 || len > STOW_S3_LIST_TOKEN_MAX || memchr(text, '\0', len) != NULL;
        if (!l->token_bad)
            memcpy(l->token, text, len + 1);
    }
}

int stow_s3_list_parser_new(stow_s3_list_parser **out, stow_s3_list_key_fn fn, void *ud)
{
    stow_s3_list_parser *l = calloc(1, sizeof(*l));
    *out = NULL;
    if (l == NULL)
        return STOW_ERR;
    l->fn = fn;
    l->ud = ud;
    if (xml_begin(&l->w, list_end, l) != 0) {
        free(l);
        return STOW_ERR;
    }
    *out = l;
    return STOW_OK;
}

int stow_s3_list_parser_feed(stow_s3_list_parser *l, const char *buf, size_t len, int final)
{
    if (l->bad)
        return -1;
    if (l->stopped)
        return 1;
    if (len > STOW_S3_LIST_PAGE_BYTES_MAX - l->page_bytes) {
        stow_strlcpy(l->bad_msg, "one page is larger than the limit", sizeof(l->bad_msg));
        l->bad = 1;
        return -1;
    }
    l->page_bytes += len;
    if (xml_feed(&l->w, buf, len, final) != 0 && !l->stopped && !l->bad) {
        l->bad = 1;
        snprintf(l->bad_msg, sizeof(l->bad_msg), "malformed XML: %s", xml_error(&l->w));
    }
    if (l->stopped)
        return 1;
    return l->bad ? -1 : 0;
}

const char *stow_s3_list_parser_error(const stow_s3_list_parser *l)
{
    return l->bad ? l->bad_msg : "";
}

int stow_s3_list_parser_truncated(const stow_s3_list_parser *l) { return l->truncated; }

const char *stow_s3_list_parser_token(const stow_s3_list_parser *l)
{
    return l->token_bad ? NULL : l->token;
}

void stow_s3_list_parser_free(stow_s3_list_parser *l)
{
    if (l == NULL)
        return;
    xml_done(&l->w);
    free(l);
}

int stow_s3_xml_list(const char *body, size_t len, stow_s3_list_key_fn fn, void *ud, int *truncated,
                     char *token, size_t token_cap, stow_error *err)
{
    stow_s3_list_parser *l = NULL;
    if (truncated)
        *truncated = 0;
    if (token && token_cap)
        token[0] = '\0';
    if (stow_s3_list_parser_new(&l, fn, ud) != STOW_OK) {
        stow_error_set(err, STOW_ERR, "out of memory");
        return -1;
    }
    int rc = stow_s3_list_parser_feed(l, body, len, 1);
    if (rc < 0) {
        stow_error_set(err, STOW_ECORRUPT, "%s", stow_s3_list_parser_error(l));
    } else if (rc == 0) {
        if (truncated)
            *truncated = l->truncated;
        const char *t = stow_s3_list_parser_token(l);
        if (token && token_cap && t)
            stow_strlcpy(token, t, token_cap);
    }
    stow_s3_list_parser_free(l);
    return rc;
}
