/* One attempt of a request on an easy handle: setup, the libcurl callbacks (body routing,
 * ranges and resumes, the stall clock) and the classification of the outcome. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cancel.h"
#include "httpc_int.h"
#include "log.h"
#include "util.h"

static int parse_u64(const char **p, uint64_t *out)
{
    const char *s = *p;
    if (*s < '0' || *s > '9')
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s)
        return -1;
    *out = (uint64_t)v;
    *p = end;
    return 0;
}

/* Content-Range: "bytes FIRST-LAST/TOTAL", "bytes FIRST-LAST/<star>" or
 * "bytes <star>/TOTAL" (the unsatisfied form).
 * first/last are UINT64_MAX for the unsatisfied form, total is -1 for "*". */
static int parse_content_range(const char *v, uint64_t *first, uint64_t *last, int64_t *total)
{
    while (*v == ' ' || *v == '\t')
        v++;
    if (strncmp(v, "bytes", 5) != 0)
        return -1;
    v += 5;
    if (*v != ' ' && *v != '\t')
        return -1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v == '*') {
        *first = *last = UINT64_MAX;
        v++;
    } else {
        if (parse_u64(&v, first) != 0 || *v != '-')
            return -1;
        v++;
        if (parse_u64(&v, last) != 0 || *last < *first)
            return -1;
    }
    if (*v != '/')
        return -1;
    v++;
    if (*v == '*') {
        *total = -1;
        v++;
    } else {
        uint64_t t;
        if (parse_u64(&v, &t) != 0 || t > (uint64_t)INT64_MAX)
            return -1;
        *total = (int64_t)t;
    }
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v != '\0')
        return -1;
    if (*total >= 0 && *first != UINT64_MAX && *last >= (uint64_t)*total)
        return -1;
    return 0;
}

int httpc_aborted(const xfer *x)
{
    /* A signal stops every transfer but the cleanup ones (DELETE), which must still run. */
    return (x->abort_flag && atomic_load(x->abort_flag)) ||
           (x->pipe && atomic_load(&x->pipe->abort)) ||
           (stow_cancel_requested() && strcmp(x->method, "DELETE") != 0);
}

const char *httpc_header_value(CURL *c, const char *name)
{
    struct curl_header *hh = NULL;
    if (curl_easy_header(c, name, 0, CURLH_HEADER, -1, &hh) != CURLHE_OK || hh == NULL)
        return NULL;
    return hh->value;
}

void httpc_copy_etag(char *out, const char *v)
{
    out[0] = '\0';
    if (v == NULL)
        return;
    size_t n = strlen(v);
    if (n < STOW_HTTPC_ETAG_MAX)
        memcpy(out, v, n + 1);
}

static int data_fail(xfer *x, int code, const char *fmt, ...) STOW_PRINTF(3, 4);
static int data_fail(xfer *x, int code, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    x->data_error = 1;
    stow_error_set(&x->derr, code, "%s %s: %s", x->method, x->url_red, msg);
    return -1;
}

/* Decides what the body of this attempt's answer is, once the status is known. */
static int decide(xfer *x)
{
    long status = 0;
    curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
    x->status = status;
    uint64_t pos = x->want_start + x->delivered; /* first byte this attempt asked for */
    if (status < 200 || status >= 300) {
        x->mode = MODE_ERRBODY;
        if (status == 416 && x->is_get) {
            /* An unsatisfiable range that starts exactly at the end of the object is not an
             * error: it is how an empty object answers a ranged request. */
            const char *cr = httpc_header_value(x->curl, "Content-Range");
            uint64_t f, l;
            int64_t t;
            if (cr && parse_content_range(cr, &f, &l, &t) == 0 && t >= 0 && (uint64_t)t == pos &&
                x->delivered == 0) {
                x->empty_ok = 1;
                x->total_size = t;
                x->mode = MODE_DISCARD;
            }
        }
        return 0;
    }
    x->mode = MODE_BODY;
    if (!x->is_get)
        return 0;

    int64_t total = -1;
    const char *etag = httpc_header_value(x->curl, "ETag");
    if (status == 206) {
        const char *cr = httpc_header_value(x->curl, "Content-Range");
        uint64_t first, last;
        if (cr == NULL || parse_content_range(cr, &first, &last, &total) != 0 ||
            first == UINT64_MAX)
            return data_fail(x, STOW_ECORRUPT, "partial answer with a bad Content-Range");
        if (first != pos)
            return data_fail(x, STOW_ECORRUPT,
                             "partial answer starts at byte %" PRIu64 ", asked for %" PRIu64, first,
                             pos);
        x->skip = 0; /* a longer answer than asked is cut at want_end by on_write */
    } else {
        /* A full answer (200, or another 2xx): the body starts at byte 0. */
        curl_off_t cl = -1;
        curl_easy_getinfo(x->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        total = cl >= 0 ? (int64_t)cl : -1;
        x->skip = pos;
        if (x->full_end != 0 && x->want_end != x->full_end)
            x->want_end = x->full_end; /* no ranges here: this answer carries everything */
    }
    if (total >= 0) {
        if (x->expect_total >= 0 && total != x->expect_total)
            return data_fail(x, STOW_ECORRUPT,
                             "object changed during the download (size %" PRIu64 ", was %" PRIu64
                             ")",
                             (uint64_t)total, (uint64_t)x->expect_total);
        x->expect_total = total;
        x->total_size = total;
        if (x->want_end == UINT64_MAX || x->want_end > (uint64_t)total)
            x->want_end = (uint64_t)total;
        if (pos > (uint64_t)total)
            return data_fail(x, STOW_ERR, "range starts at %" PRIu64 " beyond the end %" PRIu64,
                             pos, (uint64_t)total);
    }
    if (x->if_match[0] == '\0' && etag && strncmp(etag, "W/", 2) != 0)
        httpc_copy_etag(x->if_match, etag);
    if (x->on_total && !x->total_reported && status == 206 && total >= 0) {
        x->total_reported = 1;
        x->on_total(x->total_ud, (uint64_t)total, x->if_match);
    }
    if (x->want_end != UINT64_MAX && x->want_start + x->delivered >= x->want_end)
        x->got_all = 1;
    return 0;
}

/* Time spent waiting on the caller (sink, upload producer) is not the store's: it moves the
 * stall clock forward. */
static void caller_waited(xfer *x, int64_t since)
{
    int64_t waited = stow_now_ms() - since;
    if (waited > 0)
        x->t_progress += waited;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t len = size * nmemb;
    if (httpc_aborted(x))
        return 0;
    if (x->mode == MODE_UNDECIDED && decide(x) != 0)
        return 0;
    switch (x->mode) {
    case MODE_ERRBODY: {
        size_t room = STOW_HTTPC_ERROR_BODY_MAX - x->errbody_len;
        size_t n = len < room ? len : room;
        if (n < len)
            x->errbody_trunc = 1;
        if (n > 0) {
            if (x->errbody == NULL) {
                x->errbody = malloc(STOW_HTTPC_ERROR_BODY_MAX + 1);
                if (x->errbody == NULL)
                    return len; /* keep the status, lose the body */
            }
            memcpy(x->errbody + x->errbody_len, ptr, n);
            x->errbody_len += n;
        }
        return len;
    }
    case MODE_DISCARD: return len;
    default: break;
    }
    int64_t t_sink = stow_now_ms();
    if (!x->is_get) {
        if (x->sink && len > 0 && x->sink(x->sink_ud, ptr, len) != 0) {
            x->sink_failed = 1;
            return 0;
        }
        caller_waited(x, t_sink);
        x->delivered += len;
        return len;
    }
    const char *p = ptr;
    size_t left = len;
    if (x->skip > 0) {
        size_t s = x->skip < left ? (size_t)x->skip : left;
        x->skip -= s;
        p += s;
        left -= s;
    }
    if (left == 0)
        return len;
    uint64_t pos = x->want_start + x->delivered;
    if (x->want_end != UINT64_MAX) {
        uint64_t need = x->want_end > pos ? x->want_end - pos : 0;
        if (need == 0) {
            x->got_all = 1;
            return 0; /* everything wanted is here; stop the transfer */
        }
        if (left > need)
            left = (size_t)need;
    }
    if (x->sink && x->sink(x->sink_ud, p, left) != 0) {
        x->sink_failed = 1;
        return 0;
    }
    caller_waited(x, t_sink);
    x->delivered += left;
    if (x->want_end != UINT64_MAX && x->want_start + x->delivered >= x->want_end) {
        x->got_all = 1;
        if (p + left < ptr + len)
            return 0; /* the server sends more than wanted (a 200 to a range) */
    }
    return len;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud)
{
    xfer *x = ud;
    size_t len = size * nitems;
    if (x->pipe) {
        int64_t t_wait = stow_now_ms();
        size_t n = httpc_upipe_read(x->pipe, buf, len);
        caller_waited(x, t_wait);
        return n;
    }
    if (httpc_aborted(x))
        return CURL_READFUNC_ABORT;
    const stow_httpc_request *r = x->req;
    size_t left = r->body_len - x->body_pos;
    size_t n = left < len ? left : len;
    if (n > 0)
        memcpy(buf, (const char *)r->body + x->body_pos, n);
    x->body_pos += n;
    return n;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    xfer *x = ud;
    (void)dt;
    (void)ut;
    if (httpc_aborted(x))
        return 1;
    uint64_t moved = (uint64_t)(dn > 0 ? dn : 0) + (uint64_t)(un > 0 ? un : 0);
    int64_t now = stow_now_ms();
    if (moved >= x->mark_bytes + (uint64_t)x->h->cfg.low_speed_limit) {
        x->mark_bytes = moved;
        x->t_progress = now;
    }
    if (now - x->t_progress > x->h->cfg.deadline_ms) {
        x->deadline_hit = 1;
        return 1;
    }
    return 0;
}

static int append_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);
    if (n == NULL)
        return -1;
    *list = n;
    return 0;
}

/* Sets every option for one attempt and builds its header list. */
static int setup_attempt(xfer *x, struct curl_slist **hdrs, stow_error *err)
{
    stow_httpc *h = x->h;
    const stow_httpc_request *r = x->req;
    CURL *c = x->curl;
    curl_easy_reset(c);
    x->errbuf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_SHARE, h->share);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    if (h->cfg.no_proxy)
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, h->cfg.connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, h->cfg.low_speed_limit);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, h->cfg.low_speed_timeout_s);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, h->cfg.verify_tls ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, h->cfg.verify_tls ? 2L : 0L);
    if (h->cfg.ca_bundle)
        curl_easy_setopt(c, CURLOPT_CAINFO, h->cfg.ca_bundle);
    curl_easy_setopt(c, CURLOPT_USERAGENT, h->cfg.user_agent);
    if (h->cfg.userpwd) {
        curl_easy_setopt(c, CURLOPT_USERPWD, h->cfg.userpwd);
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    } else if (h->cfg.netrc) {
        curl_easy_setopt(c, CURLOPT_NETRC, (long)CURL_NETRC_OPTIONAL);
        const char *nf = getenv("NETRC");
        if (nf && *nf)
            curl_easy_setopt(c, CURLOPT_NETRC_FILE, nf);
    }
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, CURL_BUF_SIZE);
    curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, CURL_BUF_SIZE);
    curl_easy_setopt(c, CURLOPT_FILETIME, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);

    int has_body = x->pipe != NULL || r->body_type == STOW_HTTPC_BODY_BUFFER;
    curl_off_t body_size = x->pipe ? (curl_off_t)x->pipe->size : (curl_off_t)r->body_len;
    if (has_body) {
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, x);
    }
    if (strcmp(x->method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(x->method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(x->method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, has_body ? body_size : (curl_off_t)0);
        if (!has_body)
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    } else if (has_body || strcmp(x->method, "PUT") == 0) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, has_body ? body_size : (curl_off_t)0);
        if (strcmp(x->method, "PUT") != 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, x->method);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, x->method);
    }

    stow_httpc_attempt att = {r, x->method, r->url, x->attempt, 0, 0, 0};
    *hdrs = NULL;
    for (size_t i = 0; h->cfg.headers && h->cfg.headers[i]; i++)
        if (append_header(hdrs, h->cfg.headers[i]) != 0)
            goto oom;
    for (size_t i = 0; r->headers && r->headers[i]; i++)
        if (append_header(hdrs, r->headers[i]) != 0)
            goto oom;
    if (x->is_get) {
        uint64_t pos = x->want_start + x->delivered;
        if (pos > 0 || x->want_end != UINT64_MAX) {
            char line[96];
            att.has_range = 1;
            att.range_start = pos;
            att.range_end = x->want_end == UINT64_MAX ? UINT64_MAX : x->want_end - 1;
            if (x->want_end == UINT64_MAX)
                snprintf(line, sizeof(line), "Range: bytes=%" PRIu64 "-", pos);
            else
                snprintf(line, sizeof(line), "Range: bytes=%" PRIu64 "-%" PRIu64, pos,
                         x->want_end - 1);
            if (append_header(hdrs, line) != 0)
                goto oom;
        }
        if (x->if_match[0]) {
            char line[STOW_HTTPC_ETAG_MAX + 16];
            snprintf(line, sizeof(line), "If-Match: %s", x->if_match);
            if (append_header(hdrs, line) != 0)
                goto oom;
        }
    }
    if (r->prepare) {
        int rc = r->prepare(r->ud, &att, hdrs, err);
        if (rc != STOW_OK)
            return err && err->code != STOW_OK ? err->code : STOW_ERR;
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
    return STOW_OK;
oom:
    return stow_error_set(err, STOW_ERR, "out of memory");
}

int httpc_is_connect_error(CURLcode rc)
{
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
           rc == CURLE_COULDNT_RESOLVE_PROXY;
}

static int is_retryable_curl(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR: return 1;
    default: return 0;
    }
}

static int is_tls_verify_error(CURLcode rc)
{
    return rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
           rc == CURLE_SSL_ISSUER_ERROR || rc == CURLE_SSL_CERTPROBLEM;
}

/* Sets err for a transport failure. */
static int curl_failure(xfer *x, CURLcode rc, stow_error *err)
{
    const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    if (httpc_is_connect_error(rc))
        return stow_error_set(err, STOW_ERR, "%s %s: store unreachable: %s", x->method, x->url_red,
                              detail);
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return stow_error_set(err, STOW_ETIMEOUT, "%s %s: timed out: %s", x->method, x->url_red,
                              detail);
    if (is_tls_verify_error(rc))
        return stow_error_set(err, STOW_ERR,
                              "%s %s: TLS verification failed: %s (configure a CA bundle; only "
                              "an explicit opt-out disables verification)",
                              x->method, x->url_red, detail);
    return stow_error_set(err, STOW_ERR, "%s %s: %s", x->method, x->url_red, detail);
}

/* Runs one attempt and classifies it. On OUT_RETRY/OUT_FINAL err holds the cause;
 * *retry_after_ms is the server's Retry-After, or -1. */
outcome httpc_run_attempt(xfer *x, long *retry_after_ms, stow_error *err)
{
    struct curl_slist *hdrs = NULL;
    outcome out = OUT_FINAL;
    *retry_after_ms = -1;
    x->mode = MODE_UNDECIDED;
    x->status = 0;
    x->skip = 0;
    x->got_all = 0;
    x->empty_ok = 0;
    x->sink_failed = 0;
    x->data_error = 0;
    x->errbody_len = 0;
    x->errbody_trunc = 0;
    x->body_pos = 0;
    x->mark_bytes = 0;
    stow_error_clear(&x->derr);

    int rc0 = setup_attempt(x, &hdrs, err);
    if (rc0 != STOW_OK)
        goto done;
    CURLcode rc = curl_easy_perform(x->curl);
    if (x->mode == MODE_UNDECIDED && rc == CURLE_OK)
        decide(x); /* no body at all: HEAD, 204, empty objects */
    long status = 0;
    curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
    x->status = status;

    x->last_rc = rc;
    if (x->sink_failed) {
        if (x->user_err && x->user_err->code != STOW_OK)
            *err = *x->user_err;
        else
            stow_error_set(err, STOW_ERR, "%s %s: the receiver stopped the download", x->method,
                           x->url_red);
        goto done;
    }
    if (x->data_error) {
        if (err)
            *err = x->derr;
        goto done;
    }
    if (x->got_all) {
        /* every wanted byte was delivered: what curl says about the rest of the
         * connection (our own stop, a drop after the last byte) does not matter */
        out = OUT_OK;
        goto done;
    }
    if (httpc_aborted(x)) {
        stow_error_set(err, STOW_ERR, "%s %s: aborted", x->method, x->url_red);
        goto done;
    }
    if (x->deadline_hit) {
        stow_error_set(err, STOW_ETIMEOUT, "%s %s: timed out", x->method, x->url_red);
        goto done;
    }
    if (rc != CURLE_OK) {
        curl_failure(x, rc, err);
        out = is_retryable_curl(rc) ? OUT_RETRY : OUT_FINAL;
        goto done;
    }
    if (x->empty_ok) {
        out = OUT_OK;
        goto done;
    }
    int retry = 0;
    if (status == 412 && x->is_get && x->if_match[0]) {
        stow_error_set(err, STOW_ECORRUPT,
                       "%s %s: the object changed during the download (If-Match %s failed)",
                       x->method, x->url_red, x->if_match);
        goto done;
    }
    if (status < 200 || status >= 300) {
        stow_httpc_map_status(status, x->method, x->url_red, &retry, err);
        if (x->req->on_error) {
            const char *ct = NULL;
            curl_easy_getinfo(x->curl, CURLINFO_CONTENT_TYPE, &ct);
            if (x->errbody)
                x->errbody[x->errbody_len] = '\0';
            stow_httpc_response resp = {
                x->method,      x->url_red,       status, x->errbody ? x->errbody : "",
                x->errbody_len, x->errbody_trunc, ct,     x->attempt};
            int code = x->req->on_error(x->req->ud, &resp, &retry, err);
            if (code == STOW_OK) {
                /* the caller accepts this answer (e.g. a 404 to a DELETE) */
                stow_error_clear(err);
                out = OUT_OK;
                goto done;
            }
            err->code = code;
        }
        if (retry) {
            curl_off_t ra = -1;
            if (curl_easy_getinfo(x->curl, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0 &&
                ra < 3600)
                *retry_after_ms = (long)ra * 1000;
        }
        out = retry ? OUT_RETRY : OUT_FINAL;
        goto done;
    }
    if (x->is_get && x->want_end != UINT64_MAX && x->want_start + x->delivered < x->want_end) {
        stow_error_set(err, STOW_ERR,
                       "%s %s: the answer ended after %" PRIu64 " of %" PRIu64 " bytes", x->method,
                       x->url_red, x->delivered, x->want_end - x->want_start);
        out = OUT_RETRY;
        goto done;
    }
    out = OUT_OK;
done:
    curl_slist_free_all(hdrs);
    return out;
}
