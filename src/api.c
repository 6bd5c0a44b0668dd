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

#define PS_TEST_HOOKS /* defines them */
#include "api.h"
#include "jsonstrict.h"
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
#define PS_BODY_MAX                (64 * 1024)  /* a DELETE's or GET member's answer, at most */
#define PS_RETRY_AFTER_LEN         64           /* longest Retry-After value kept */
#define PS_RETRY_AFTER_MAX         2147483647.0 /* clamp of delta-seconds */
#define PS_JSON_DEPTH              16
#define PS_DEFAULT_TIMEOUT         10.0
#define PS_DEFAULT_CONNECT_TIMEOUT 5.0
#define PS_DEFAULT_BACKOFF_BASE    1.0
#define PS_DEFAULT_BACKOFF_CAP     60.0
#define PS_MIN_REQUEST_TIME        0.001 /* below this a request is not tried */
#define PS_PACE_MARGIN             0.98  /* every request stays below api.rate_limit */
#define PS_PACE_FLOOR              0.1   /* a 429 storm never slows it below this */
#define PS_PACE_RING               1000  /* api.rate_limit's maximum */
#define PS_PACE_MAX_PAUSE          60.0  /* the longest Retry-After honoured */
#define PS_PAGE_MAX_MEMBERS        1000  /* a page with more entries is not a page */
#define PS_NEXT_PAGE_MAX           100000000L

struct ps_client {
    CURL *curl;
    const ps_config_t *cfg;
    double backoff_base;
    double backoff_cap;
    long connects;
    double last_start;         /* ps_now() when the previous request left, 0 = none */
    double sent[PS_PACE_RING]; /* when the last requests left, a ring (sent_head oldest) */
    size_t sent_head, sent_n;
    double pace_target; /* the configured rate: api.rate_limit * PS_PACE_MARGIN */
    double pace_rate;   /* now (lowered by 429s), requests per second; 0 = unpaced */
    double not_before;  /* ps_client_pause: no request before this ps_now() time */
    /* per transfer */
    size_t body_len;
    size_t body_limit; /* the answer's body may hold this many bytes */
    size_t body_alloc; /* bytes allocated at body (limit + 1 at most) */
    int body_overflow;
    int body_oom;
    char retry_after[PS_RETRY_AFTER_LEN];
    char errbuf[CURL_ERROR_SIZE];
    char *body; /* NUL-terminated; grown up to body_limit + 1 */
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

#define set_msg ps_seterr

const char *ps_outcome_name(ps_outcome_t o)
{
    switch(o) {
    case PS_OUT_REMOVED: return "removed";
    case PS_OUT_ABSENT: return "absent";
    case PS_OUT_REFUSED: return "refused";
    case PS_OUT_TRANSIENT: return "transient";
    case PS_OUT_CONFIG: return "config";
    case PS_OUT_OK: return "ok";
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

/* Bytes of the %XX-escaped form of any string (a query value). */
static size_t escaped_len(const char *s)
{
    const unsigned char *p;
    size_t n = 0;

    for(p = (const unsigned char *)s; *p; p++)
        n += unreserved(*p) ? 1 : 3;
    return n;
}

/* BASE/organizations/ORG/members[/ID][?[q=Q&]TAIL], the path segments
 * escaped (segment_len refuses "." and ".."), Q escaped as a query value.
 * NULL when the base carries a query or a fragment (it cannot take a path),
 * a segment is unusable, or memory runs out. */
static char *member_url(const char *base, const char *organization, const char *id, const char *q,
                        const char *tail)
{
    static const char orgs[] = "/organizations/";
    static const char members[] = "/members";
    size_t blen, olen, ilen = 0, qlen = 0, tlen = tail ? strlen(tail) : 0, total;
    char *url, *p;

    if(!base)
        return NULL;
    blen = strlen(base);
    while(blen && base[blen - 1] == '/')
        blen--;
    if(!blen || memchr(base, '?', blen) || memchr(base, '#', blen))
        return NULL;
    olen = segment_len(organization);
    if(!olen)
        return NULL;
    if(id && !(ilen = segment_len(id)))
        return NULL;
    if(q && *q)
        qlen = 2 + escaped_len(q) + (tlen ? 1 : 0); /* "q=" ... ["&"] */
    total = blen + sizeof(orgs) - 1 + olen + sizeof(members) - 1 + (id ? 1 + ilen : 0) +
            (qlen + tlen ? 1 : 0) + qlen + tlen + 1;
    url = malloc(total);
    if(!url)
        return NULL;
    p = url;
    memcpy(p, base, blen);
    p += blen;
    memcpy(p, orgs, sizeof(orgs) - 1);
    p = append_segment(p + sizeof(orgs) - 1, organization);
    memcpy(p, members, sizeof(members) - 1);
    p += sizeof(members) - 1;
    if(id) {
        *p++ = '/';
        p = append_segment(p, id);
    }
    if(qlen + tlen)
        *p++ = '?';
    if(qlen) {
        *p++ = 'q';
        *p++ = '=';
        p = append_segment(p, q);
        if(tlen)
            *p++ = '&';
    }
    memcpy(p, tail ? tail : "", tlen);
    p[tlen] = '\0';
    return url;
}

char *ps_build_url(const char *base, const char *organization, const char *id, int flags_mode,
                   int delete_passwords, int delete_service_tokens)
{
    char query[96];

    if(!id)
        return NULL;
    if(flags_mode == PS_FLAGS_BODY)
        return member_url(base, organization, id, NULL, NULL);
    /* query mode, the default */
    snprintf(query, sizeof(query), "delete_passwords=%s&delete_service_tokens=%s",
             delete_passwords ? "true" : "false", delete_service_tokens ? "true" : "false");
    return member_url(base, organization, id, NULL, query);
}

char *ps_build_body(int delete_passwords, int delete_service_tokens)
{
    char *body = NULL;

    if(asprintf(&body, "{\"delete_passwords\":%s,\"delete_service_tokens\":%s}",
                delete_passwords ? "true" : "false", delete_service_tokens ? "true" : "false") < 0)
        return NULL;
    return body;
}

char *ps_build_list_url(const char *base, const char *organization, const char *q, long page,
                        int per_page)
{
    char tail[64];

    if(page < 1 || per_page < 1 || per_page > PS_PER_PAGE_MAX)
        return NULL;
    snprintf(tail, sizeof(tail), "page=%ld&per_page=%d", page, per_page);
    return member_url(base, organization, NULL, q, tail);
}

/* ------------------------------------------------------------------ HTTP */

/* The JSON object that `body` is, exactly (jsonstrict.h), or NULL. */
static json_object *parse_object(const char *body, size_t len)
{
    return ps_json_object(body, len, PS_JSON_DEPTH, NULL, 0);
}

/* Copies the top-level string "message" of a body that is exactly one JSON
 * object (optionally surrounded by whitespace). Returns 0 when found. */
static int json_message(const char *body, size_t len, char *msg, size_t msglen)
{
    json_object *obj = parse_object(body, len);
    json_object *jm;
    int rv = -1;

    if(!obj)
        return -1;
    if(json_object_object_get_ex(obj, "message", &jm) &&
       json_object_is_type(jm, json_type_string)) {
        /* an embedded NUL ends the message */
        copy_str(msg, msglen, json_object_get_string(jm), strlen(json_object_get_string(jm)));
        rv = 0;
    }
    json_object_put(obj);
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

/* ------------------------------------------------------------------ read answers */

enum { F_ABSENT = 0, F_NULL, F_OK, F_BADTYPE };

/* obj[key]: absent, null, of type `want` (*v set), or of another type. */
static int field(json_object *obj, const char *key, json_type want, json_object **v)
{
    json_object *x = NULL;

    *v = NULL;
    if(!json_object_object_get_ex(obj, key, &x))
        return F_ABSENT;
    if(!x)
        return F_NULL;
    if(!json_object_is_type(x, want))
        return F_BADTYPE;
    *v = x;
    return F_OK;
}

/* A required string of minlen..maxlen bytes without NUL, copied to dst
 * (dst holds maxlen + 1). 0, or -1 with "WHERE NAME ..." in err. */
static int str_field(json_object *obj, const char *key, size_t minlen, size_t maxlen, char *dst,
                     const char *where, const char *name, char *err, size_t errlen)
{
    json_object *v;
    const char *s;
    int len;

    switch(field(obj, key, json_type_string, &v)) {
    case F_OK: break;
    case F_BADTYPE: set_msg(err, errlen, "%s%s is not a string", where, name); return -1;
    default: set_msg(err, errlen, "%s%s is missing", where, name); return -1;
    }
    s = json_object_get_string(v);
    len = json_object_get_string_len(v);
    if(!s || len < 0 || (size_t)len != strlen(s)) {
        set_msg(err, errlen, "%s%s holds a NUL byte", where, name);
        return -1;
    }
    if((size_t)len < minlen || (size_t)len > maxlen) {
        set_msg(err, errlen, "%s%s has %d bytes (expected %zu to %zu)", where, name, len, minlen,
                maxlen);
        return -1;
    }
    memcpy(dst, s, (size_t)len);
    dst[len] = '\0';
    return 0;
}

/* Copies at most dstlen - 1 bytes of src, never cutting a UTF-8 sequence. */
static void copy_utf8(char *dst, size_t dstlen, const char *src)
{
    size_t n = strlen(src);

    if(n >= dstlen) {
        n = dstlen - 1;
        while(n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* One membership object (of an answer, or data[i] of a page). */
static int member_from_json(json_object *obj, const char *where, ps_member_t *m, char *err,
                            size_t errlen)
{
    json_object *user, *v;

    memset(m, 0, sizeof(*m));
    m->directory_managed = -1;
    if(!json_object_is_type(obj, json_type_object)) {
        set_msg(err, errlen, "%snot an object", where);
        return -1;
    }
    if(str_field(obj, "id", 1, PS_MEMBER_ID_MAX, m->id, where, "id", err, errlen) ||
       str_field(obj, "role", 1, PS_ROLE_MAX, m->role, where, "role", err, errlen))
        return -1;
    if(field(obj, "user", json_type_object, &user) != F_OK) {
        set_msg(err, errlen, "%suser is missing or not an object", where);
        return -1;
    }
    if(str_field(user, "id", 1, PS_ID_MAX, m->user_id, where, "user.id", err, errlen) ||
       str_field(user, "email", 0, PS_EMAIL_MAX, m->email, where, "user.email", err, errlen))
        return -1;
    if(!ps_id_valid(m->user_id)) {
        set_msg(err, errlen, "%suser.id is not a valid id", where);
        return -1;
    }
    switch(field(user, "name", json_type_string, &v)) {
    case F_OK: break;
    case F_BADTYPE: set_msg(err, errlen, "%suser.name is not a string", where); return -1;
    default:
        /* no name: the display name, when there is one */
        if(field(user, "display_name", json_type_string, &v) == F_BADTYPE) {
            set_msg(err, errlen, "%suser.display_name is not a string", where);
            return -1;
        }
    }
    if(v)
        copy_utf8(m->name, sizeof(m->name), json_object_get_string(v));
    switch(field(user, "directory_managed", json_type_boolean, &v)) {
    case F_OK: m->directory_managed = json_object_get_boolean(v) ? 1 : 0; break;
    case F_BADTYPE:
        set_msg(err, errlen, "%suser.directory_managed is not a boolean", where);
        return -1;
    default: break; /* null or absent: the API did not say */
    }
    return 0;
}

int ps_parse_member(const char *body, size_t len, ps_member_t *m, char *err, size_t errlen)
{
    json_object *obj = parse_object(body, len);
    int rv;

    if(!obj) {
        memset(m, 0, sizeof(*m));
        set_msg(err, errlen, "not one JSON object");
        return -1;
    }
    rv = member_from_json(obj, "", m, err, errlen);
    json_object_put(obj);
    if(rv)
        memset(m, 0, sizeof(*m));
    return rv;
}

void ps_member_page_free(ps_member_page_t *pg)
{
    if(!pg)
        return;
    free(pg->members);
    memset(pg, 0, sizeof(*pg));
}

/* An integer field in lo..hi: F_OK (*out), F_NULL, F_ABSENT, or -1 with err. */
static int int_field(json_object *obj, const char *key, int64_t lo, int64_t hi, long *out,
                     char *err, size_t errlen)
{
    json_object *v;
    int64_t x;
    int f = field(obj, key, json_type_int, &v);

    if(f == F_BADTYPE) {
        set_msg(err, errlen, "%s is not an integer", key);
        return -1;
    }
    if(f != F_OK)
        return f;
    x = json_object_get_int64(v); /* only now: it reads a string as 0 */
    if(x < lo || x > hi) {
        set_msg(err, errlen, "%s is out of range", key);
        return -1;
    }
    *out = (long)x;
    return F_OK;
}

int ps_parse_member_page(const char *body, size_t len, long expect_page, ps_member_page_t *pg,
                         char *err, size_t errlen)
{
    json_object *obj = parse_object(body, len);
    json_object *data;
    size_t n, i;
    int f;

    memset(pg, 0, sizeof(*pg));
    if(!obj) {
        set_msg(err, errlen, "not one JSON object");
        return -1;
    }
    f = int_field(obj, "current_page", 1, PS_NEXT_PAGE_MAX, &pg->current_page, err, errlen);
    if(f < 0)
        goto bad;
    if(f != F_OK) {
        set_msg(err, errlen, "current_page is missing");
        goto bad;
    }
    if(expect_page > 0 && pg->current_page != expect_page) {
        set_msg(err, errlen, "current_page is %ld, page %ld was asked for", pg->current_page,
                expect_page);
        goto bad;
    }
    f = int_field(obj, "next_page", 1, PS_NEXT_PAGE_MAX, &pg->next_page, err, errlen);
    if(f < 0)
        goto bad;
    if(f == F_ABSENT) {
        /* without it the end of the list cannot be told from a cut */
        set_msg(err, errlen, "next_page is missing");
        goto bad;
    }
    if(f == F_NULL)
        pg->next_page = 0;
    else if(pg->next_page <= pg->current_page) {
        set_msg(err, errlen, "next_page (%ld) does not follow current_page (%ld)", pg->next_page,
                pg->current_page);
        goto bad;
    }
    pg->total_count = -1;
    if(int_field(obj, "total_count", 0, LONG_MAX, &pg->total_count, err, errlen) < 0)
        goto bad;
    if(field(obj, "data", json_type_array, &data) != F_OK) {
        set_msg(err, errlen, "data is missing or not an array");
        goto bad;
    }
    n = json_object_array_length(data);
    if(n > PS_PAGE_MAX_MEMBERS) {
        set_msg(err, errlen, "data has %zu entries (at most %d expected)", n, PS_PAGE_MAX_MEMBERS);
        goto bad;
    }
    pg->members = calloc(n ? n : 1, sizeof(*pg->members));
    if(!pg->members) {
        set_msg(err, errlen, "out of memory");
        goto bad;
    }
    for(i = 0; i < n; i++) {
        char where[48];

        snprintf(where, sizeof(where), "data[%zu]: ", i);
        if(member_from_json(json_object_array_get_idx(data, i), where, &pg->members[i], err,
                            errlen))
            goto bad;
    }
    pg->n = n;
    json_object_put(obj);
    return 0;
bad:
    json_object_put(obj);
    ps_member_page_free(pg);
    return -1;
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

    if(n > c->body_limit - c->body_len) {
        c->body_overflow = 1;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    if(c->body_len + n >= c->body_alloc) {
        size_t want = c->body_alloc * 2;
        char *nb;

        if(want < c->body_len + n + 1)
            want = c->body_len + n + 1;
        if(want > c->body_limit + 1)
            want = c->body_limit + 1;
        nb = realloc(c->body, want);
        if(!nb) {
            c->body_oom = 1;
            return 0;
        }
        c->body = nb;
        c->body_alloc = want;
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
        /* the configured file is the whole trust store: no default bundle,
         * no CA directory; its content as read and checked when the
         * configuration was loaded (libcurl 7.77 and later), so that the
         * file is never opened again by path */
        rc = curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
        if(!rc)
            rc = curl_easy_setopt(h, CURLOPT_CAINFO, NULL);
        if(!rc && cfg->ca_pem) {
            struct curl_blob blob;

            blob.data = cfg->ca_pem;
            blob.len = cfg->ca_pem_len;
            blob.flags = CURL_BLOB_COPY;
            rc = curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
            /* an older libcurl, or a TLS backend without it: by path */
            if(rc == CURLE_UNKNOWN_OPTION || rc == CURLE_NOT_BUILT_IN)
                rc = curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_file);
        } else if(!rc) {
            rc = curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_file);
        }
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
    c->body_alloc = PS_BODY_MAX + 1; /* a DELETE never allocates */
    c->body = malloc(c->body_alloc);
    if(!c->body) {
        set_msg(err, errlen, "API client: out of memory");
        goto fail;
    }
    c->body[0] = '\0';
    c->body_limit = PS_BODY_MAX;
    c->backoff_base = PS_DEFAULT_BACKOFF_BASE;
    c->backoff_cap = PS_DEFAULT_BACKOFF_CAP;
    /* every request of every client below api.rate_limit */
    ps_client_set_pace(c, cfg->rate_limit * PS_PACE_MARGIN);
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
        free(c->body);
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
    free(c->body);
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

/* Method, URL, headers and body of this request. The method is reset to a
 * body-less GET first (POSTFIELDS sets POST), then renamed when it is not a
 * GET (method NULL). */
static CURLcode set_request(ps_client_t *c, const char *method, const char *url,
                            struct curl_slist *hdrs, const char *body)
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
    if(!rc && method)
        rc = curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
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

    if(c->body_oom) {
        set_msg(r->message, sizeof(r->message), "out of memory while reading the answer");
        return PS_OUT_TRANSIENT;
    }
    if(res != CURLE_OK && !(res == CURLE_WRITE_ERROR && c->body_overflow)) {
        double pretransfer = 0;

        /* A protocol the client refuses is a configuration problem (an
         * http:// URL to a host that is not loopback) only before anything
         * was sent: once the request went out over a verified connection,
         * an answer that is not HTTP (curl: "Received HTTP/0.9") is the
         * API's failure, to be tried again, not a reason to check api.url. */
        if(res == CURLE_UNSUPPORTED_PROTOCOL &&
           !curl_easy_getinfo(c->curl, CURLINFO_PRETRANSFER_TIME, &pretransfer) &&
           pretransfer > 0) {
            set_msg(r->message, sizeof(r->message),
                    "the answer was not HTTP (%.300s): the API or something in front of it "
                    "failed; tried again later",
                    c->errbuf[0] ? c->errbuf : curl_easy_strerror(res));
            return PS_OUT_TRANSIENT;
        }
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

/* The end of every public call: no message ever carries the credential. */
static ps_outcome_t finish(const ps_client_t *c, ps_result_t *r, ps_outcome_t rv)
{
    if(contains_secret(c->cfg->auth_header, r->message))
        set_msg(r->message, sizeof(r->message),
                "message withheld: it contained the API credential");
    r->outcome = rv;
    return rv;
}

/* The pacer's window: at most n requests in any `w` seconds. At a rate of
 * one or more a second, floor(rate) requests in any one second: a removal's
 * GET and DELETE go back to back, a drain sends up to the rate and then
 * waits for the window, and no second ever holds more than the rate (what
 * an API that counts per second or per minute accepts). Below one a second
 * (after 429s), one request every 1/rate seconds. */
static void pace_window(double rate, size_t *n, double *w)
{
    if(rate >= 1) {
        *n = rate >= PS_PACE_RING ? PS_PACE_RING : (size_t)rate;
        *w = 1.0;
    } else {
        *n = 1;
        *w = 1.0 / rate;
    }
}

/* Waits for this request's turn: the window above, and a 429's pause.
 * -1 when the turn comes too late for the deadline. */
static int wait_turn(const ps_client_t *c, double deadline)
{
    double next = c->not_before, now = ps_now(), w;
    size_t n;

    if(c->pace_rate > 0) {
        pace_window(c->pace_rate, &n, &w);
        if(c->sent_n >= n) {
            /* the n-th most recent request must have left w seconds ago */
            double t = c->sent[(c->sent_head + c->sent_n - n) % PS_PACE_RING] + w;

            if(t > next)
                next = t;
        }
    }
    if(next <= now)
        return 0;
    if(deadline > 0 && next + PS_MIN_REQUEST_TIME >= deadline)
        return -1;
    ps_sleep_until(next);
    return 0;
}

/* Remembers when a request left. */
static void pace_sent(ps_client_t *c, double t)
{
    if(c->sent_n < PS_PACE_RING) {
        c->sent[(c->sent_head + c->sent_n) % PS_PACE_RING] = t;
        c->sent_n++;
    } else {
        c->sent[c->sent_head] = t;
        c->sent_head = (c->sent_head + 1) % PS_PACE_RING;
    }
}

void ps_client_set_pace(ps_client_t *c, double rate)
{
    c->pace_target = c->pace_rate = rate > 0 ? rate : 0;
}

double ps_client_pace(const ps_client_t *c)
{
    return c->pace_rate;
}

void ps_client_pace_answer(ps_client_t *c, const ps_result_t *r, int settled)
{
    if(c->pace_target <= 0)
        return;
    if(r->http_status == 429) {
        double wait;

        c->pace_rate = c->pace_rate / 2 > PS_PACE_FLOOR ? c->pace_rate / 2 : PS_PACE_FLOOR;
        wait = r->retry_after >= 0 ? r->retry_after : 1.0 / c->pace_rate;
        if(wait > PS_PACE_MAX_PAUSE)
            wait = PS_PACE_MAX_PAUSE;
        if(ps_now() + wait > c->not_before)
            c->not_before = ps_now() + wait;
    } else if(settled && c->pace_rate < c->pace_target) {
        c->pace_rate = c->pace_rate * 1.1 < c->pace_target ? c->pace_rate * 1.1 : c->pace_target;
    }
}

/* One request over the client's handle: METHOD (NULL: GET) URL with the
 * credential, BODY (JSON) when not NULL, an answer of at most `limit` bytes
 * kept in c->body. Returns 0 when the transfer ran (*res, r->http_status and
 * r->retry_after set), else -1 with r->outcome and r->message set. */
static int transfer(ps_client_t *c, const char *method, const char *url, const char *body,
                    double deadline, size_t limit, CURLcode *res, ps_result_t *r)
{
    struct curl_slist *hdrs;
    long status = 0;
    long nconn = 0;
    double pretransfer = 0;
    int rv = -1;

    if(wait_turn(c, deadline) != 0) {
        set_msg(r->message, sizeof(r->message), "deadline reached before the request");
        r->outcome = PS_OUT_TRANSIENT;
        return -1;
    }
    hdrs = build_headers(c->cfg->auth_header, body != NULL);
    if(!hdrs) {
        set_msg(r->message, sizeof(r->message), "out of memory");
        r->outcome = PS_OUT_TRANSIENT;
        return -1;
    }
    if(set_timeouts(c, deadline)) {
        set_msg(r->message, sizeof(r->message), "deadline reached before the request");
        r->outcome = PS_OUT_TRANSIENT;
        goto out;
    }
    if(set_request(c, method, url, hdrs, body)) {
        set_msg(r->message, sizeof(r->message), "libcurl setup failed");
        r->outcome = PS_OUT_TRANSIENT;
        goto out;
    }
    c->body_len = 0;
    c->body[0] = '\0';
    c->body_limit = limit;
    c->body_overflow = 0;
    c->body_oom = 0;
    c->retry_after[0] = '\0';
    c->errbuf[0] = '\0';
    c->last_start = ps_now();

    *res = curl_easy_perform(c->curl);

    if(curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status))
        status = 0;
    if(!curl_easy_getinfo(c->curl, CURLINFO_NUM_CONNECTS, &nconn) && nconn > 0)
        c->connects += nconn;
    /* The pacer counts from when the request left, after the connection
     * and the TLS handshake: a request that waited for a handshake reaches
     * the API that much later, and counting from its start would crowd it
     * and the next ones into a shorter window at the API. */
    if(!curl_easy_getinfo(c->curl, CURLINFO_PRETRANSFER_TIME, &pretransfer) && pretransfer > 0)
        c->last_start += pretransfer;
    pace_sent(c, c->last_start);
    r->http_status = status;
    if(c->retry_after[0])
        r->retry_after = ps_parse_retry_after(c->retry_after, time(NULL));
    rv = 0;
out:
    reset_request(c);
    slist_free_wiped(hdrs);
    return rv;
}

static ps_outcome_t delete_once(ps_client_t *c, const ps_mapping_t *m, double deadline,
                                ps_result_t *r)
{
    const ps_config_t *cfg = c->cfg;
    char *url = NULL;
    char *body = NULL;
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
    if(transfer(c, "DELETE", url, body, deadline, PS_BODY_MAX, &res, r))
        rv = r->outcome;
    else
        rv = classify_transfer(c, res, r->http_status, r);
out:
    free(url);
    free(body);
    return finish(c, r, rv);
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

/* One attempt of a request; fills r (r->outcome) and returns it. */
typedef ps_outcome_t (*attempt_fn)(ps_client_t *c, void *arg, double deadline, ps_result_t *r);

/* Up to cfg->retries attempts while the outcome is transient: exponential
 * backoff with full jitter, Retry-After honoured (capped), never past the
 * deadline. r->attempts counts them. */
static ps_outcome_t with_retries(ps_client_t *c, attempt_fn fn, void *arg, double deadline,
                                 ps_result_t *r)
{
    int max = c->cfg->retries > 0 ? c->cfg->retries : 1;
    int attempt;

    for(attempt = 1;; attempt++) {
        double wait;

        fn(c, arg, deadline, r);
        r->attempts = attempt;
        if(r->outcome != PS_OUT_TRANSIENT || attempt >= max)
            break;
        wait = next_wait(c, r, attempt);
        if(deadline > 0 && ps_now() + wait + PS_MIN_REQUEST_TIME >= deadline)
            break;
        ps_sleep_until(ps_now() + wait);
    }
    return r->outcome;
}

static ps_outcome_t delete_attempt(ps_client_t *c, void *arg, double deadline, ps_result_t *r)
{
    return delete_once(c, arg, deadline, r);
}

ps_outcome_t ps_client_remove(ps_client_t *c, const ps_mapping_t *m, double deadline,
                              ps_result_t *r)
{
    /* the mapping is only read: the cast feeds the generic attempt */
    return with_retries(c, delete_attempt, (void *)(uintptr_t)m, deadline, r);
}

/* ------------------------------------------------------------------ reads */

/* A GET of URL. PS_OUT_OK means a 200 whose body (c->body, c->body_len)
 * arrived whole: the caller parses it and decides. Any other 2xx is
 * TRANSIENT: a read that does not answer 200 has not answered. */
static ps_outcome_t get_once(ps_client_t *c, const char *url, double deadline, size_t limit,
                             ps_result_t *r)
{
    CURLcode res;
    ps_outcome_t o;

    if(!c->cfg->auth_header) {
        set_msg(r->message, sizeof(r->message), "no API credential configured");
        return PS_OUT_CONFIG;
    }
    if(transfer(c, NULL, url, NULL, deadline, limit, &res, r))
        return r->outcome;
    if(!c->body_oom && (res == CURLE_OK || (res == CURLE_WRITE_ERROR && c->body_overflow)) &&
       r->http_status == 200) {
        if(c->body_overflow) {
            set_msg(r->message, sizeof(r->message), "answer larger than %zu bytes (HTTP 200)",
                    limit);
            return PS_OUT_TRANSIENT;
        }
        return PS_OUT_OK;
    }
    o = classify_transfer(c, res, r->http_status, r);
    if(o == PS_OUT_REMOVED) {
        set_msg(r->message, sizeof(r->message), "unexpected HTTP status %ld for a read",
                r->http_status);
        o = PS_OUT_TRANSIENT;
    }
    return o;
}

struct get_member_req {
    const char *org;
    const char *user_id;
    ps_member_t *m;
};

static ps_outcome_t get_member_attempt(ps_client_t *c, void *arg, double deadline, ps_result_t *r)
{
    struct get_member_req *q = arg;
    char why[256];
    char *url;
    ps_outcome_t o;

    result_init(r);
    r->attempts = 1;
    memset(q->m, 0, sizeof(*q->m));
    url = ps_build_url(c->cfg->api_url, q->org, q->user_id, PS_FLAGS_BODY, 0, 0);
    if(!url) {
        set_msg(r->message, sizeof(r->message),
                "cannot build the request URL: invalid api.url, organization or id");
        return finish(c, r, PS_OUT_CONFIG);
    }
    o = get_once(c, url, deadline, PS_BODY_MAX, r);
    free(url);
    if(o == PS_OUT_OK) {
        if(ps_parse_member(c->body, c->body_len, q->m, why, sizeof(why)) != 0) {
            set_msg(r->message, sizeof(r->message),
                    "the answer (HTTP 200) is not a well-formed membership: %s", why);
            o = PS_OUT_TRANSIENT;
        } else if(strcmp(q->m->user_id, q->user_id) != 0) {
            set_msg(r->message, sizeof(r->message),
                    "the answer (HTTP 200) is the membership of another user");
            o = PS_OUT_TRANSIENT;
        } else {
            set_msg(r->message, sizeof(r->message), "a member (HTTP 200)");
        }
        if(o != PS_OUT_OK)
            memset(q->m, 0, sizeof(*q->m));
    }
    return finish(c, r, o);
}

ps_outcome_t ps_client_get_member(ps_client_t *c, const char *org, const char *user_id,
                                  double deadline, ps_member_t *m, ps_result_t *r)
{
    struct get_member_req q = { org, user_id, m };

    return with_retries(c, get_member_attempt, &q, deadline, r);
}

ps_outcome_t ps_client_get_member_once(ps_client_t *c, const char *org, const char *user_id,
                                       double deadline, ps_member_t *m, ps_result_t *r)
{
    struct get_member_req q = { org, user_id, m };

    return get_member_attempt(c, &q, deadline, r);
}

/* What a refusal of the member list means for the credential. */
static void explain_list(const char *org, ps_outcome_t o, ps_result_t *r)
{
    char api[200];

    copy_str(api, sizeof(api), r->message, strlen(r->message));
    if(o == PS_OUT_ABSENT)
        set_msg(r->message, sizeof(r->message),
                "%s: organization %s does not exist, or this credential cannot see it or lacks "
                "read_organization",
                api, org);
    else if(o == PS_OUT_REFUSED && r->http_status == 401)
        set_msg(r->message, sizeof(r->message), "%s: the credential is not valid", api);
    else if(o == PS_OUT_REFUSED && r->http_status == 403)
        set_msg(r->message, sizeof(r->message),
                "%s: the credential may not read the member list of %s (read_organization)", api,
                org);
}

static void normalize_opts(const ps_list_opts_t *in, ps_list_opts_t *out)
{
    memset(out, 0, sizeof(*out));
    if(in)
        *out = *in;
    if(out->per_page <= 0 || out->per_page > PS_PER_PAGE_MAX)
        out->per_page = PS_PER_PAGE_MAX;
    if(out->max_pages <= 0)
        out->max_pages = PS_LIST_MAX_PAGES;
    if(!out->max_bytes)
        out->max_bytes = (size_t)PS_LIST_MAX_BYTES;
    if(out->q && !out->q[0])
        out->q = NULL;
}

struct page_req {
    const char *org;
    const ps_list_opts_t *o; /* normalized */
    long page;
    size_t limit;
    ps_member_page_t *pg;
};

static ps_outcome_t page_attempt(ps_client_t *c, void *arg, double deadline, ps_result_t *r)
{
    struct page_req *q = arg;
    char why[256];
    char *url;
    ps_outcome_t o;

    result_init(r);
    r->attempts = 1;
    ps_member_page_free(q->pg);
    url = ps_build_list_url(c->cfg->api_url, q->org, q->o->q, q->page, q->o->per_page);
    if(!url) {
        set_msg(r->message, sizeof(r->message),
                "cannot build the member list URL: invalid api.url or organization");
        return finish(c, r, PS_OUT_CONFIG);
    }
    o = get_once(c, url, deadline, q->limit, r);
    free(url);
    if(o == PS_OUT_OK) {
        if(ps_parse_member_page(c->body, c->body_len, q->page, q->pg, why, sizeof(why)) != 0) {
            set_msg(r->message, sizeof(r->message),
                    "member list page %ld (HTTP 200) is not well-formed: %s", q->page, why);
            o = PS_OUT_TRANSIENT;
        } else {
            set_msg(r->message, sizeof(r->message), "member list page %ld: %zu member%s", q->page,
                    q->pg->n, q->pg->n == 1 ? "" : "s");
        }
    } else {
        explain_list(q->org, o, r);
    }
    return finish(c, r, o);
}

static ps_outcome_t list_page(ps_client_t *c, const char *org, const ps_list_opts_t *o, long page,
                              size_t limit, ps_member_page_t *pg, ps_result_t *r)
{
    struct page_req q = { org, o, page, limit, pg };

    memset(pg, 0, sizeof(*pg));
    if(o->retry)
        return with_retries(c, page_attempt, &q, o->deadline, r);
    return page_attempt(c, &q, o->deadline, r);
}

ps_outcome_t ps_client_list_page(ps_client_t *c, const char *org, const ps_list_opts_t *o,
                                 long page, ps_member_page_t *pg, ps_result_t *r)
{
    ps_list_opts_t n;

    normalize_opts(o, &n);
    if(page < 1 || page > PS_NEXT_PAGE_MAX) {
        memset(pg, 0, sizeof(*pg));
        result_init(r);
        set_msg(r->message, sizeof(r->message), "invalid page number %ld", page);
        return finish(c, r, PS_OUT_CONFIG);
    }
    return list_page(c, org, &n, page, (size_t)PS_PAGE_MAX_BYTES, pg, r);
}

ps_outcome_t ps_client_list_members(ps_client_t *c, const char *org, const ps_list_opts_t *o,
                                    ps_member_cb cb, void *arg, ps_result_t *r)
{
    ps_list_opts_t n;
    ps_member_page_t pg;
    size_t bytes = 0, members = 0, i;
    long page = 1, pages = 0;
    int requests = 0;
    ps_outcome_t out;

    normalize_opts(o, &n);
    for(;;) {
        size_t limit = (size_t)PS_PAGE_MAX_BYTES;

        if(pages >= n.max_pages) {
            result_init(r);
            set_msg(r->message, sizeof(r->message),
                    "the member list has more than %ld pages of %d: stopped there", n.max_pages,
                    n.per_page);
            out = PS_OUT_TRANSIENT;
            break;
        }
        if(n.max_bytes - bytes < limit)
            limit = n.max_bytes - bytes;
        out = list_page(c, org, &n, page, limit, &pg, r);
        requests += r->attempts;
        if(out != PS_OUT_OK) {
            if(c->body_overflow && limit < (size_t)PS_PAGE_MAX_BYTES)
                set_msg(r->message, sizeof(r->message),
                        "the member list is larger than %zu bytes: stopped at page %ld",
                        n.max_bytes, page);
            break;
        }
        bytes += c->body_len;
        for(i = 0; i < pg.n; i++) {
            if(cb && cb(arg, &pg.members[i]) != 0)
                break;
        }
        members += i;
        if(i < pg.n) {
            ps_member_page_free(&pg);
            result_init(r);
            set_msg(r->message, sizeof(r->message),
                    "stopped by the caller after %zu member%s (page %ld)", members,
                    members == 1 ? "" : "s", page);
            out = PS_OUT_TRANSIENT;
            break;
        }
        pages++;
        page = pg.next_page;
        ps_member_page_free(&pg);
        if(!page) {
            set_msg(r->message, sizeof(r->message), "%zu member%s in %ld page%s", members,
                    members == 1 ? "" : "s", pages, pages == 1 ? "" : "s");
            break;
        }
    }
    r->attempts = requests;
    r->pages = pages;
    return finish(c, r, out);
}

struct collect {
    ps_member_t *v;
    size_t n, cap;
    int oom;
};

static int collect_cb(void *arg, const ps_member_t *m)
{
    struct collect *k = arg;

    if(k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 128;
        ps_member_t *v = realloc(k->v, cap * sizeof(*v));

        if(!v) {
            k->oom = 1;
            return 1;
        }
        k->v = v;
        k->cap = cap;
    }
    k->v[k->n++] = *m;
    return 0;
}

ps_outcome_t ps_client_list_members_all(ps_client_t *c, const char *org, const ps_list_opts_t *o,
                                        ps_member_t **out, size_t *n, ps_result_t *r)
{
    struct collect k = { NULL, 0, 0, 0 };
    ps_outcome_t rv = ps_client_list_members(c, org, o, collect_cb, &k, r);

    if(rv != PS_OUT_OK) {
        if(k.oom)
            set_msg(r->message, sizeof(r->message), "out of memory after %zu member%s", k.n,
                    k.n == 1 ? "" : "s");
        free(k.v);
        k.v = NULL;
        k.n = 0;
    }
    *out = k.v;
    *n = k.n;
    return rv;
}

static ps_outcome_t probe(ps_client_t *c, const char *org, double deadline, int retry,
                          ps_result_t *r)
{
    ps_list_opts_t o;
    ps_member_page_t pg;
    ps_outcome_t rv;

    memset(&o, 0, sizeof(o));
    o.per_page = 1;
    o.retry = retry;
    o.deadline = deadline;
    rv = ps_client_list_page(c, org, &o, 1, &pg, r);
    ps_member_page_free(&pg);
    if(rv == PS_OUT_OK)
        set_msg(r->message, sizeof(r->message), "the credential can read the member list of %s",
                org);
    return finish(c, r, rv);
}

ps_outcome_t ps_client_probe_members(ps_client_t *c, const char *org, double deadline,
                                     ps_result_t *r)
{
    return probe(c, org, deadline, 1, r);
}

ps_outcome_t ps_client_probe_members_once(ps_client_t *c, const char *org, double deadline,
                                          ps_result_t *r)
{
    return probe(c, org, deadline, 0, r);
}
