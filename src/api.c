/* api.c - the PlanetScale API client (libcurl + json-c).
 *
 * One client owns one easy handle, reused for every request so that a whole
 * queue drain runs over one connection. The static options (TLS, proxy,
 * protocols, User-Agent, callbacks) are set once in ps_client_new; the
 * per-request ones (URL, headers, method, body, timeouts) are set before each
 * transfer and reset after it, so nothing leaks from one request into the
 * next and no pointer into freed memory stays in the handle.
 *
 * The credential lives only in the header list of one request, which is wiped
 * before it is freed. CURLOPT_VERBOSE is never set: it would print it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* explicit_bzero, strptime_l, timegm */
#endif

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/random.h>

#include <dlfcn.h>
#include <curl/curl.h>
#include <json-c/json.h>

#include "api.h"
#include "config.h"
#include "util.h"

/* libcurl is opened on first use, not linked: loading it pulls in its whole
 * dependency tree (OpenSSL, GnuTLS through librtmp, Kerberos, LDAP, ...),
 * about a third of a one-shot removal's CPU (bench/RESULTS.md). A command
 * that never sends (lookup, check, queue, or a removal handed to the warm
 * sender) never pays for it. The package declares Depends: libcurl4 itself
 * since no DT_NEEDED entry tells dpkg-shlibdeps. The pointers are set once
 * and never change; the library stays loaded for the life of the process. */
#define PS_LIBCURL_SONAME "libcurl.so.4"

static struct ps_curl_api {
    CURLcode (*global_init)(long);
    void (*global_cleanup)(void);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    CURLcode (*easy_perform)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
    int loaded;
} ps_curl;

#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_global_init    ps_curl.global_init
#define curl_global_cleanup ps_curl.global_cleanup
#define curl_easy_init      ps_curl.easy_init
#define curl_easy_cleanup   ps_curl.easy_cleanup
#define curl_easy_setopt    ps_curl.easy_setopt
#define curl_easy_getinfo   ps_curl.easy_getinfo
#define curl_easy_perform   ps_curl.easy_perform
#define curl_easy_strerror  ps_curl.easy_strerror
#define curl_slist_append   ps_curl.slist_append
#define curl_slist_free_all ps_curl.slist_free_all

/* 0, or -1 with a message that says what to install. */
static int load_libcurl(char *err, size_t errlen)
{
    static const char *const names[] = { "curl_global_init",  "curl_global_cleanup",
                                         "curl_easy_init",    "curl_easy_cleanup",
                                         "curl_easy_setopt",  "curl_easy_getinfo",
                                         "curl_easy_perform", "curl_easy_strerror",
                                         "curl_slist_append", "curl_slist_free_all" };
    void *sym[sizeof(names) / sizeof(names[0])];
    void *h;
    size_t i;

    if(ps_curl.loaded)
        return 0;
    h = dlopen(PS_LIBCURL_SONAME, RTLD_NOW | RTLD_LOCAL);
    if(!h) {
        const char *why = dlerror();

        if(err && errlen)
            snprintf(err, errlen, "cannot load %s (%s): install the libcurl4 package",
                     PS_LIBCURL_SONAME, why ? why : "unknown error");
        return -1;
    }
    for(i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        sym[i] = dlsym(h, names[i]);
        if(!sym[i]) {
            if(err && errlen)
                snprintf(err, errlen, "%s has no %s", PS_LIBCURL_SONAME, names[i]);
            dlclose(h);
            return -1;
        }
    }
    /* object pointer to function pointer: as POSIX dlsym(3) allows */
    memcpy(&ps_curl.global_init, &sym[0], sizeof(void *));
    memcpy(&ps_curl.global_cleanup, &sym[1], sizeof(void *));
    memcpy(&ps_curl.easy_init, &sym[2], sizeof(void *));
    memcpy(&ps_curl.easy_cleanup, &sym[3], sizeof(void *));
    memcpy(&ps_curl.easy_setopt, &sym[4], sizeof(void *));
    memcpy(&ps_curl.easy_getinfo, &sym[5], sizeof(void *));
    memcpy(&ps_curl.easy_perform, &sym[6], sizeof(void *));
    memcpy(&ps_curl.easy_strerror, &sym[7], sizeof(void *));
    memcpy(&ps_curl.slist_append, &sym[8], sizeof(void *));
    memcpy(&ps_curl.slist_free_all, &sym[9], sizeof(void *));
    ps_curl.loaded = 1;
    return 0;
}

#ifndef PS_VERSION
#define PS_VERSION "0.0.0"
#endif

#define PS_USER_AGENT              "pam-planetscale/" PS_VERSION
#define PS_BODY_MAX                (64 * 1024)  /* response bodies beyond this abort */
#define PS_RETRY_AFTER_LEN         64           /* longest Retry-After value kept */
#define PS_RETRY_AFTER_MAX         2147483647.0 /* clamp of delta-seconds */
#define PS_JSON_DEPTH              16
#define PS_DEFAULT_TIMEOUT         10.0
#define PS_DEFAULT_CONNECT_TIMEOUT 5.0
#define PS_DEFAULT_BACKOFF_BASE    1.0
#define PS_DEFAULT_BACKOFF_CAP     60.0
#define PS_MIN_REQUEST_TIME        0.001 /* below this a request is not tried */

struct ps_client {
    CURL *curl;
    const ps_config_t *cfg;
    double backoff_base;
    double backoff_cap;
    long connects;
    /* per transfer */
    size_t body_len;
    int body_overflow;
    char retry_after[PS_RETRY_AFTER_LEN];
    char errbuf[CURL_ERROR_SIZE];
    char body[PS_BODY_MAX + 1];
};

/* ------------------------------------------------------------------ helpers */

static void copy_str(char *dst, size_t dstlen, const char *src, size_t srclen)
{
    size_t n;

    if(!dst || !dstlen)
        return;
    n = srclen < dstlen - 1 ? srclen : dstlen - 1;
    if(n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

static void set_msg(char *msg, size_t msglen, const char *fmt, ...) PS_PRINTF(3, 4);

static void set_msg(char *msg, size_t msglen, const char *fmt, ...)
{
    va_list ap;

    if(!msg || !msglen)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
}

const char *ps_outcome_name(ps_outcome_t o)
{
    switch(o) {
    case PS_OUT_REMOVED: return "removed";
    case PS_OUT_ABSENT: return "absent";
    case PS_OUT_REFUSED: return "refused";
    case PS_OUT_TRANSIENT: return "transient";
    case PS_OUT_CONFIG: return "config";
    }
    return "unknown";
}

/* ------------------------------------------------------------------ URL */

static int unreserved(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == '~' || ch == '-';
}

/* Bytes the escaped form of a valid segment takes, 0 when invalid. */
static size_t segment_len(const char *seg)
{
    const unsigned char *p;
    size_t n = 0;

    if(!seg || !*seg || !strcmp(seg, ".") || !strcmp(seg, ".."))
        return 0;
    for(p = (const unsigned char *)seg; *p; p++)
        n += unreserved(*p) ? 1 : 3;
    return n;
}

static char *append_segment(char *out, const char *seg)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p;

    for(p = (const unsigned char *)seg; *p; p++) {
        if(unreserved(*p))
            *out++ = (char)*p;
        else {
            *out++ = '%';
            *out++ = hex[*p >> 4];
            *out++ = hex[*p & 0x0f];
        }
    }
    return out;
}

char *ps_build_url(const char *base, const char *organization, const char *id, int flags_mode,
                   int delete_passwords, int delete_service_tokens)
{
    static const char orgs[] = "/organizations/";
    static const char members[] = "/members/";
    char query[96];
    size_t blen, olen, ilen, qlen = 0, total;
    char *url, *p;

    if(!base)
        return NULL;
    blen = strlen(base);
    while(blen && base[blen - 1] == '/')
        blen--;
    /* a base that carries a query or a fragment cannot take a path */
    if(!blen || memchr(base, '?', blen) || memchr(base, '#', blen))
        return NULL;
    olen = segment_len(organization);
    ilen = segment_len(id);
    if(!olen || !ilen)
        return NULL;
    if(flags_mode != PS_FLAGS_BODY) { /* query mode, the default */
        int n =
            snprintf(query, sizeof(query), "?delete_passwords=%s&delete_service_tokens=%s",
                     delete_passwords ? "true" : "false", delete_service_tokens ? "true" : "false");
        if(n < 0 || (size_t)n >= sizeof(query))
            return NULL;
        qlen = (size_t)n;
    }
    total = blen + sizeof(orgs) - 1 + olen + sizeof(members) - 1 + ilen + qlen + 1;
    url = malloc(total);
    if(!url)
        return NULL;
    p = url;
    memcpy(p, base, blen);
    p += blen;
    memcpy(p, orgs, sizeof(orgs) - 1);
    p = append_segment(p + sizeof(orgs) - 1, organization);
    memcpy(p, members, sizeof(members) - 1);
    p = append_segment(p + sizeof(members) - 1, id);
    if(qlen) {
        memcpy(p, query, qlen);
        p += qlen;
    }
    *p = '\0';
    return url;
}

char *ps_build_body(int delete_passwords, int delete_service_tokens)
{
    char *body = NULL;

    if(asprintf(&body, "{\"delete_passwords\":%s,\"delete_service_tokens\":%s}",
                delete_passwords ? "true" : "false", delete_service_tokens ? "true" : "false") < 0)
        return NULL;
    return body;
}

/* ------------------------------------------------------------------ HTTP */

static int json_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* Copies the top-level string "message" of a body that is exactly one JSON
 * object (optionally surrounded by whitespace). Returns 0 when found. */
static int json_message(const char *body, size_t len, char *msg, size_t msglen)
{
    json_tokener *tok = NULL;
    json_object *obj = NULL;
    json_object *jm;
    size_t end;
    int rv = -1;

    if(!body || !len || len > INT_MAX)
        goto out;
    tok = json_tokener_new_ex(PS_JSON_DEPTH);
    if(!tok)
        goto out;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    obj = json_tokener_parse_ex(tok, body, (int)len);
    if(!obj || json_tokener_get_error(tok) != json_tokener_success)
        goto out;
    /* json_tokener_parse would accept trailing garbage: we do not */
    for(end = json_tokener_get_parse_end(tok); end < len; end++) {
        if(!json_ws(body[end]))
            goto out;
    }
    if(!json_object_is_type(obj, json_type_object) ||
       !json_object_object_get_ex(obj, "message", &jm) ||
       !json_object_is_type(jm, json_type_string))
        goto out;
    /* an embedded NUL ends the message */
    copy_str(msg, msglen, json_object_get_string(jm), strlen(json_object_get_string(jm)));
    rv = 0;
out:
    json_object_put(obj);
    if(tok)
        json_tokener_free(tok);
    return rv;
}

static const char *reason_phrase(long status)
{
    switch(status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 422: return "Unprocessable Entity";
    case 425: return "Too Early";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    }
    return NULL;
}

static ps_outcome_t status_outcome(long status)
{
    if(status >= 200 && status <= 299)
        return PS_OUT_REMOVED;
    if(status == 404)
        return PS_OUT_ABSENT;
    if(status >= 300 && status <= 399)
        return PS_OUT_CONFIG;
    if(status == 408 || status == 425 || status == 429)
        return PS_OUT_TRANSIENT;
    if(status >= 400 && status <= 499)
        return PS_OUT_REFUSED;
    /* 5xx, 1xx, 0 and nonsense */
    return PS_OUT_TRANSIENT;
}

ps_outcome_t ps_classify_http(long status, const char *body, size_t len, char *msg, size_t msglen)
{
    ps_outcome_t o = status_outcome(status);
    const char *reason;

    if(o == PS_OUT_CONFIG) {
        set_msg(msg, msglen, "redirect (HTTP %ld) refused: check api.url", status);
        return o;
    }
    if(o == PS_OUT_REMOVED) {
        set_msg(msg, msglen, "removed (HTTP %ld)", status);
        return o;
    }
    if(!json_message(body, len, msg, msglen))
        return o;
    reason = reason_phrase(status);
    if(status < 100 || status > 599)
        set_msg(msg, msglen, "unexpected HTTP status %ld", status);
    else if(reason)
        set_msg(msg, msglen, "%s (HTTP %ld)", reason, status);
    else
        set_msg(msg, msglen, "HTTP %ld", status);
    return o;
}

/* ------------------------------------------------------------------ Retry-After */

static int http_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static double parse_http_date(const char *s, time_t now)
{
    static const char *const fmts[] = {
        "%a, %d %b %Y %H:%M:%S GMT", /* IMF-fixdate */
        "%A, %d-%b-%y %H:%M:%S GMT", /* RFC 850 */
        "%a %b %e %H:%M:%S %Y",      /* asctime */
    };
    locale_t loc;
    double rv = -1;
    size_t i;

    /* day and month names are English whatever the caller's locale */
    loc = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if(!loc)
        return -1;
    for(i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
        struct tm tm;
        const char *end;
        time_t t;

        memset(&tm, 0, sizeof(tm));
        end = strptime_l(s, fmts[i], &tm, loc);
        if(!end || *end)
            continue;
        tm.tm_isdst = 0;
        t = timegm(&tm);
        if(t == (time_t)-1)
            continue;
        rv = difftime(t, now);
        if(rv < 0)
            rv = 0;
        if(rv > PS_RETRY_AFTER_MAX)
            rv = PS_RETRY_AFTER_MAX;
        break;
    }
    freelocale(loc);
    return rv;
}

double ps_parse_retry_after(const char *value, time_t now)
{
    char buf[PS_RETRY_AFTER_LEN];
    size_t len, i;
    double secs = 0;

    if(!value)
        return -1;
    while(http_ws(*value))
        value++;
    len = strlen(value);
    while(len && http_ws(value[len - 1]))
        len--;
    if(!len)
        return -1;
    for(i = 0; i < len && value[i] >= '0' && value[i] <= '9'; i++) {
        secs = secs * 10 + (value[i] - '0');
        if(secs > PS_RETRY_AFTER_MAX)
            secs = PS_RETRY_AFTER_MAX;
    }
    if(i == len)
        return secs; /* delta-seconds, however many digits */
    if(i || len >= sizeof(buf))
        return -1; /* "12abc", or too long to be a date */
    memcpy(buf, value, len);
    buf[len] = '\0';
    return parse_http_date(buf, now);
}

/* ------------------------------------------------------------------ callbacks */

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userp)
{
    ps_client_t *c = userp;
    size_t n = size * nmemb;

    if(n > PS_BODY_MAX - c->body_len) {
        c->body_overflow = 1;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    memcpy(c->body + c->body_len, ptr, n);
    c->body_len += n;
    c->body[c->body_len] = '\0';
    return n;
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *userp)
{
    static const char name[] = "retry-after:";
    const size_t nlen = sizeof(name) - 1;
    ps_client_t *c = userp;
    size_t len = size * nitems;
    const char *v;
    size_t vlen;

    /* a new response (interim 1xx, proxy CONNECT): forget the previous one */
    if(len >= 5 && !memcmp(buf, "HTTP/", 5)) {
        c->retry_after[0] = '\0';
        return len;
    }
    if(len <= nlen || strncasecmp(buf, name, nlen))
        return len;
    v = buf + nlen;
    vlen = len - nlen;
    while(vlen && http_ws(*v)) {
        v++;
        vlen--;
    }
    while(vlen && http_ws(v[vlen - 1]))
        vlen--;
    if(!vlen || vlen >= sizeof(c->retry_after) || memchr(v, '\0', vlen))
        c->retry_after[0] = '\0'; /* absent or not a value we accept */
    else
        copy_str(c->retry_after, sizeof(c->retry_after), v, vlen);
    return len;
}

/* ------------------------------------------------------------------ client */

static CURLcode set_static_options(ps_client_t *c)
{
    const ps_config_t *cfg = c->cfg;
    const char *protocols = "https";
    CURL *h = c->curl;
    CURLcode rc = CURLE_OK;

    if(ps_url_is_loopback_http(cfg->api_url))
        protocols = "http,https";

    if(!rc)
        rc = curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if(!rc)
        rc = curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0 */
    if(!rc)
        rc = curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, protocols);
    if(!rc)
        rc = curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, protocols);
#else
    {
        long mask = CURLPROTO_HTTPS;
        if(!strcmp(protocols, "http,https"))
            mask |= CURLPROTO_HTTP;
        if(!rc)
            rc = curl_easy_setopt(h, CURLOPT_PROTOCOLS, mask);
        if(!rc)
            rc = curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS, mask);
    }
#endif
    /* "" disables the proxy, environment included; with a proxy set, an
     * empty no-proxy list keeps the environment's no_proxy from bypassing
     * it: proxies come from the configuration only */
    if(!rc)
        rc = curl_easy_setopt(h, CURLOPT_PROXY, cfg->proxy ? cfg->proxy : "");
    if(!rc)
        rc = curl_easy_setopt(h, CURLOPT_NOPROXY, "");
    if(!rc)
        rc = curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    if(!rc)
        rc = curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if(!rc)
        rc = curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if(!rc && cfg->ca_file) {
        /* the configured file is the whole trust store */
        rc = curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_file);
        if(!rc)
            rc = curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
    }
    if(!rc)
        rc = curl_easy_setopt(h, CURLOPT_USERAGENT, PS_USER_AGENT);
    if(!rc)
        rc = curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    if(!rc)
        rc = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    if(!rc)
        rc = curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    if(!rc)
        rc = curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
    if(!rc)
        rc = curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    return rc;
}

ps_client_t *ps_client_new(const ps_config_t *cfg, char *err, size_t errlen)
{
    ps_client_t *c = NULL;
    CURLcode rc;

    if(!cfg || !cfg->api_url) {
        set_msg(err, errlen, "API client: no api.url configured");
        return NULL;
    }
    if(load_libcurl(err, errlen) != 0)
        return NULL;
    rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if(rc) {
        set_msg(err, errlen, "curl_global_init: %s", curl_easy_strerror(rc));
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if(!c) {
        set_msg(err, errlen, "API client: out of memory");
        goto fail;
    }
    c->cfg = cfg;
    c->backoff_base = PS_DEFAULT_BACKOFF_BASE;
    c->backoff_cap = PS_DEFAULT_BACKOFF_CAP;
    c->curl = curl_easy_init();
    if(!c->curl) {
        set_msg(err, errlen, "curl_easy_init failed");
        goto fail;
    }
    rc = set_static_options(c);
    if(rc) {
        set_msg(err, errlen, "libcurl setup: %s", curl_easy_strerror(rc));
        goto fail;
    }
    return c;
fail:
    if(c) {
        if(c->curl)
            curl_easy_cleanup(c->curl);
        free(c);
    }
    curl_global_cleanup();
    return NULL;
}

void ps_client_free(ps_client_t *c)
{
    if(!c)
        return;
    curl_easy_cleanup(c->curl);
    free(c);
    curl_global_cleanup();
}

void ps_client_set_backoff(ps_client_t *c, double base, double cap)
{
    if(!c)
        return;
    c->backoff_base = base > 0 ? base : 0;
    c->backoff_cap = cap > 0 ? cap : 0;
}

long ps_client_connects(const ps_client_t *c)
{
    return c ? c->connects : 0;
}

/* ------------------------------------------------------------------ one request */

static void slist_free_wiped(struct curl_slist *l)
{
    struct curl_slist *i;

    for(i = l; i; i = i->next) {
        if(i->data)
            explicit_bzero(i->data, strlen(i->data));
    }
    curl_slist_free_all(l);
}

static struct curl_slist *build_headers(const char *auth, int with_body)
{
    struct curl_slist *l = NULL;
    struct curl_slist *n;
    const char *lines[3];
    size_t i, count = 0;

    lines[count++] = auth;
    lines[count++] = "Accept: application/json";
    if(with_body)
        lines[count++] = "Content-Type: application/json";
    for(i = 0; i < count; i++) {
        n = curl_slist_append(l, lines[i]);
        if(!n) {
            slist_free_wiped(l);
            return NULL;
        }
        l = n;
    }
    return l;
}

static long to_ms(double secs)
{
    double ms = secs * 1000.0 + 0.999;

    if(ms < 1)
        return 1; /* 0 would mean "no timeout" to libcurl */
    if(ms > 86400000.0)
        return 86400000L;
    return (long)ms;
}

/* Timeouts of this request: the configured ones, never past the deadline.
 * Returns -1 when there is no time left. */
static int set_timeouts(ps_client_t *c, double deadline)
{
    double total = c->cfg->timeout > 0 ? c->cfg->timeout : PS_DEFAULT_TIMEOUT;
    double conn =
        c->cfg->connect_timeout > 0 ? c->cfg->connect_timeout : PS_DEFAULT_CONNECT_TIMEOUT;
    CURLcode rc;

    if(deadline > 0) {
        double left = deadline - ps_now();
        if(left < PS_MIN_REQUEST_TIME)
            return -1;
        if(total > left)
            total = left;
    }
    if(conn > total)
        conn = total;
    rc = curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, to_ms(total));
    if(!rc)
        rc = curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, to_ms(conn));
    return rc ? -1 : 0;
}

/* Method, URL, headers and body of this request. In query mode the method is
 * reset to a body-less GET first (POSTFIELDS sets POST), then renamed. */
static CURLcode set_request(ps_client_t *c, const char *url, struct curl_slist *hdrs,
                            const char *body)
{
    CURL *h = c->curl;
    CURLcode rc;

    rc = curl_easy_setopt(h, CURLOPT_URL, url);
    if(!rc)
        rc = curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if(!rc && body) {
        rc = curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        if(!rc)
            rc = curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    } else if(!rc) {
        rc = curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    if(!rc)
        rc = curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    return rc;
}

/* Drops every pointer of the request from the handle; it stays reusable. */
static void reset_request(ps_client_t *c)
{
    CURL *h = c->curl;

    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, -1L);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
}

static ps_outcome_t curl_outcome(CURLcode res)
{
    switch(res) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT: return PS_OUT_CONFIG;
    default:
        /* resolve/connect/timeout/TLS handshake/send/recv/HTTP2 errors and
         * anything unexpected: try again later rather than lose it */
        return PS_OUT_TRANSIENT;
    }
}

static const char *curl_hint(CURLcode res)
{
    switch(res) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
        return " (TLS certificate verification failed: check api.url and api.ca_file)";
    case CURLE_UNSUPPORTED_PROTOCOL:
        return " (only https is allowed, http only to a loopback address: check api.url)";
    case CURLE_URL_MALFORMAT: return " (check api.url)";
    default: return "";
    }
}

static void curl_message(ps_client_t *c, CURLcode res, char *msg, size_t msglen)
{
    const char *e = c->errbuf[0] ? c->errbuf : curl_easy_strerror(res);
    size_t len = strlen(e);

    while(len && (e[len - 1] == '\n' || e[len - 1] == '\r'))
        len--;
    set_msg(msg, msglen, "%.*s%s", (int)len, e, curl_hint(res));
}

/* The credential part of "Authorization: VALUE" (and of "ID:TOKEN"). */
static int contains_secret(const char *auth, const char *msg)
{
    const char *v, *colon;

    if(!auth || !msg)
        return 0;
    v = strchr(auth, ':');
    if(!v)
        return 0;
    v++;
    while(*v == ' ' || *v == '\t')
        v++;
    if(!strncasecmp(v, "Bearer ", 7))
        v += 7;
    if(strlen(v) >= 4 && strstr(msg, v))
        return 1;
    colon = strrchr(v, ':');
    if(colon && strlen(colon + 1) >= 4 && strstr(msg, colon + 1))
        return 1;
    return 0;
}

static ps_outcome_t classify_transfer(ps_client_t *c, CURLcode res, long status, ps_result_t *r)
{
    char *location = NULL;
    ps_outcome_t o;

    if(res != CURLE_OK && !(res == CURLE_WRITE_ERROR && c->body_overflow)) {
        curl_message(c, res, r->message, sizeof(r->message));
        return curl_outcome(res);
    }
    o = ps_classify_http(status, c->body, c->body_len, r->message, sizeof(r->message));
    if(o == PS_OUT_CONFIG) {
        if(curl_easy_getinfo(c->curl, CURLINFO_REDIRECT_URL, &location) || !location)
            location = NULL;
        set_msg(r->message, sizeof(r->message), "redirect to %.300s refused: check api.url",
                location ? location : "an unnamed location");
    } else if(c->body_overflow) {
        set_msg(r->message, sizeof(r->message), "response body too large (HTTP %ld)", status);
    }
    return o;
}

static void result_init(ps_result_t *r)
{
    memset(r, 0, sizeof(*r));
    r->outcome = PS_OUT_TRANSIENT;
    r->retry_after = -1;
}

static ps_outcome_t delete_once(ps_client_t *c, const ps_mapping_t *m, double deadline,
                                ps_result_t *r)
{
    const ps_config_t *cfg = c->cfg;
    struct curl_slist *hdrs = NULL;
    char *url = NULL;
    char *body = NULL;
    long status = 0;
    long nconn = 0;
    CURLcode res;
    ps_outcome_t rv;

    result_init(r);
    r->attempts = 1;
    if(!cfg->auth_header) {
        set_msg(r->message, sizeof(r->message), "no API credential configured");
        rv = PS_OUT_CONFIG;
        goto out;
    }
    url = ps_build_url(cfg->api_url, m->organization, m->id, cfg->flags_mode, m->delete_passwords,
                       m->delete_service_tokens);
    if(!url) {
        set_msg(r->message, sizeof(r->message),
                "cannot build the request URL: invalid api.url, organization or id");
        rv = PS_OUT_CONFIG;
        goto out;
    }
    if(cfg->flags_mode == PS_FLAGS_BODY) {
        body = ps_build_body(m->delete_passwords, m->delete_service_tokens);
        if(!body) {
            set_msg(r->message, sizeof(r->message), "out of memory");
            rv = PS_OUT_TRANSIENT;
            goto out;
        }
    }
    hdrs = build_headers(cfg->auth_header, body != NULL);
    if(!hdrs) {
        set_msg(r->message, sizeof(r->message), "out of memory");
        rv = PS_OUT_TRANSIENT;
        goto out;
    }
    if(set_timeouts(c, deadline)) {
        set_msg(r->message, sizeof(r->message), "deadline reached before the request");
        rv = PS_OUT_TRANSIENT;
        goto out;
    }
    if(set_request(c, url, hdrs, body)) {
        set_msg(r->message, sizeof(r->message), "libcurl setup failed");
        rv = PS_OUT_TRANSIENT;
        goto out;
    }
    c->body_len = 0;
    c->body[0] = '\0';
    c->body_overflow = 0;
    c->retry_after[0] = '\0';
    c->errbuf[0] = '\0';

    res = curl_easy_perform(c->curl);

    if(curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status))
        status = 0;
    if(!curl_easy_getinfo(c->curl, CURLINFO_NUM_CONNECTS, &nconn) && nconn > 0)
        c->connects += nconn;
    r->http_status = status;
    if(c->retry_after[0])
        r->retry_after = ps_parse_retry_after(c->retry_after, time(NULL));
    rv = classify_transfer(c, res, status, r);
out:
    reset_request(c);
    slist_free_wiped(hdrs);
    free(url);
    free(body);
    if(contains_secret(cfg->auth_header, r->message))
        set_msg(r->message, sizeof(r->message),
                "message withheld: it contained the API credential");
    r->outcome = rv;
    return rv;
}

ps_outcome_t ps_client_delete_once(ps_client_t *c, const ps_mapping_t *m, ps_result_t *r)
{
    return delete_once(c, m, 0, r);
}

/* ------------------------------------------------------------------ retries */

/* A uniform number in [0, 1), from getrandom; 0.5 if it is not available. */
static double random01(void)
{
    uint64_t v;

    if(getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
        return 0.5;
    return (double)(v >> 11) * (1.0 / 9007199254740992.0); /* 2^-53 */
}

static double next_wait(const ps_client_t *c, const ps_result_t *r, int attempt)
{
    double wait;

    if(r->retry_after >= 0) {
        wait = r->retry_after;
    } else {
        double max = c->backoff_base;
        int i;

        for(i = 1; i < attempt && max < c->backoff_cap; i++)
            max *= 2;
        if(max > c->backoff_cap)
            max = c->backoff_cap;
        wait = random01() * max; /* full jitter */
    }
    return wait > c->backoff_cap ? c->backoff_cap : wait;
}

static void sleep_seconds(double secs)
{
    struct timespec ts, rem;

    if(secs <= 0)
        return;
    ts.tv_sec = (time_t)secs;
    ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
    if(ts.tv_nsec >= 1000000000L)
        ts.tv_nsec = 999999999L;
    while(nanosleep(&ts, &rem) == -1 && errno == EINTR)
        ts = rem;
}

ps_outcome_t ps_client_remove(ps_client_t *c, const ps_mapping_t *m, double deadline,
                              ps_result_t *r)
{
    int max = c->cfg->retries > 0 ? c->cfg->retries : 1;
    int attempt;

    for(attempt = 1;; attempt++) {
        double wait;

        delete_once(c, m, deadline, r);
        r->attempts = attempt;
        if(r->outcome != PS_OUT_TRANSIENT || attempt >= max)
            break;
        wait = next_wait(c, r, attempt);
        if(deadline > 0 && ps_now() + wait + PS_MIN_REQUEST_TIME >= deadline)
            break;
        sleep_seconds(wait);
    }
    return r->outcome;
}
