/* test_api.c - unit tests of src/api.c: the pure helpers, and the client
 * against a tiny plain-HTTP server forked on 127.0.0.1 (http to a loopback
 * address is what the client allows besides https). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <setjmp.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "api.h"
#include "config.h"
#include "util.h"

#ifndef PS_VERSION
#define PS_VERSION "0.0.0"
#endif

#define TOKEN_SECRET "s3cr3t-T0ken-value"
#define AUTH_LINE    "Authorization: svcid123:" TOKEN_SECRET

/* ================================================================ helpers */

static void check_url(const char *base, const char *org, const char *id, int mode, int dp, int dst,
                      const char *want)
{
    char *url = ps_build_url(base, org, id, mode, dp, dst);

    if(!want) {
        assert_null(url);
        return;
    }
    assert_non_null(url);
    assert_string_equal(url, want);
    free(url);
}

/* ================================================================ ps_build_url */

static void test_url_query_mode(void **state)
{
    (void)state;
    check_url("https://api.planetscale.com/v1", "acme", "d4xkq1abc", PS_FLAGS_QUERY, 1, 0,
              "https://api.planetscale.com/v1/organizations/acme/members/d4xkq1abc"
              "?delete_passwords=true&delete_service_tokens=false");
    check_url("https://api.planetscale.com/v1", "acme", "x9z8", PS_FLAGS_QUERY, 0, 1,
              "https://api.planetscale.com/v1/organizations/acme/members/x9z8"
              "?delete_passwords=false&delete_service_tokens=true");
    check_url("https://api.planetscale.com/v1", "acme", "x9z8", PS_FLAGS_QUERY, 1, 1,
              "https://api.planetscale.com/v1/organizations/acme/members/x9z8"
              "?delete_passwords=true&delete_service_tokens=true");
}

static void test_url_body_mode(void **state)
{
    (void)state;
    check_url("https://api.planetscale.com/v1", "acme-eu", "x9z8", PS_FLAGS_BODY, 1, 1,
              "https://api.planetscale.com/v1/organizations/acme-eu/members/x9z8");
    check_url("https://api.planetscale.com/v1", "acme", "x9z8", PS_FLAGS_BODY, 0, 0,
              "https://api.planetscale.com/v1/organizations/acme/members/x9z8");
}

static void test_url_escaping(void **state)
{
    (void)state;
    check_url("https://h/v1", "a/b", "c?d", PS_FLAGS_BODY, 1, 1,
              "https://h/v1/organizations/a%2Fb/members/c%3Fd");
    check_url("https://h/v1", "100%", "a b", PS_FLAGS_BODY, 1, 1,
              "https://h/v1/organizations/100%25/members/a%20b");
    check_url("https://h/v1", "x\r\ny", "\x01\x1f\x7f\xff", PS_FLAGS_BODY, 1, 1,
              "https://h/v1/organizations/x%0D%0Ay/members/%01%1F%7F%FF");
    check_url("https://h/v1", "a#b&c=d", "e+f;g:h@i", PS_FLAGS_BODY, 1, 1,
              "https://h/v1/organizations/a%23b%26c%3Dd/members/e%2Bf%3Bg%3Ah%40i");
    /* unreserved characters stay as they are, "..." is no dot segment */
    check_url("https://h/v1", "A-z_0.9~", "...", PS_FLAGS_BODY, 1, 1,
              "https://h/v1/organizations/A-z_0.9~/members/...");
    /* a query-looking id cannot inject parameters */
    check_url("https://h/v1", "acme", "x?delete_passwords=false", PS_FLAGS_QUERY, 1, 1,
              "https://h/v1/organizations/acme/members/x%3Fdelete_passwords%3Dfalse"
              "?delete_passwords=true&delete_service_tokens=true");
}

static void test_url_rejects(void **state)
{
    (void)state;
    check_url("https://h/v1", "acme", "..", PS_FLAGS_QUERY, 1, 1, NULL);
    check_url("https://h/v1", "acme", ".", PS_FLAGS_QUERY, 1, 1, NULL);
    check_url("https://h/v1", "..", "x", PS_FLAGS_QUERY, 1, 1, NULL);
    check_url("https://h/v1", ".", "x", PS_FLAGS_BODY, 1, 1, NULL);
    check_url("https://h/v1", "", "x", PS_FLAGS_QUERY, 1, 1, NULL);
    check_url("https://h/v1", "acme", "", PS_FLAGS_QUERY, 1, 1, NULL);
    check_url("https://h/v1", NULL, "x", PS_FLAGS_QUERY, 1, 1, NULL);
    check_url("https://h/v1", "acme", NULL, PS_FLAGS_QUERY, 1, 1, NULL);
    check_url(NULL, "acme", "x", PS_FLAGS_QUERY, 1, 1, NULL);
    check_url("", "acme", "x", PS_FLAGS_QUERY, 1, 1, NULL);
    check_url("/", "acme", "x", PS_FLAGS_QUERY, 1, 1, NULL);
    check_url("https://h/v1?x=1", "acme", "x", PS_FLAGS_QUERY, 1, 1, NULL);
    check_url("https://h/v1#f", "acme", "x", PS_FLAGS_QUERY, 1, 1, NULL);
}

static void test_url_base_with_path(void **state)
{
    (void)state;
    check_url("http://127.0.0.1:8080/api/planetscale/v1", "acme", "u1", PS_FLAGS_QUERY, 1, 0,
              "http://127.0.0.1:8080/api/planetscale/v1/organizations/acme/members/u1"
              "?delete_passwords=true&delete_service_tokens=false");
    check_url("https://h/v1/", "acme", "u1", PS_FLAGS_BODY, 1, 0,
              "https://h/v1/organizations/acme/members/u1");
    check_url("https://h", "acme", "u1", PS_FLAGS_BODY, 1, 0,
              "https://h/organizations/acme/members/u1");
}

/* ================================================================ ps_build_body */

static void check_body(int dp, int dst, const char *want)
{
    char *body = ps_build_body(dp, dst);
    json_object *obj, *v;

    assert_non_null(body);
    assert_string_equal(body, want);
    obj = json_tokener_parse(body);
    assert_non_null(obj);
    assert_true(json_object_is_type(obj, json_type_object));
    assert_int_equal(json_object_object_length(obj), 2);
    assert_true(json_object_object_get_ex(obj, "delete_passwords", &v));
    assert_true(json_object_is_type(v, json_type_boolean));
    assert_int_equal(json_object_get_boolean(v), !!dp);
    assert_true(json_object_object_get_ex(obj, "delete_service_tokens", &v));
    assert_true(json_object_is_type(v, json_type_boolean));
    assert_int_equal(json_object_get_boolean(v), !!dst);
    json_object_put(obj);
    free(body);
}

static void test_body(void **state)
{
    (void)state;
    check_body(1, 0, "{\"delete_passwords\":true,\"delete_service_tokens\":false}");
    check_body(0, 1, "{\"delete_passwords\":false,\"delete_service_tokens\":true}");
    check_body(1, 1, "{\"delete_passwords\":true,\"delete_service_tokens\":true}");
    check_body(0, 0, "{\"delete_passwords\":false,\"delete_service_tokens\":false}");
}

/* ================================================================ ps_classify_http */

static ps_outcome_t classify(long status, const char *body, char *msg, size_t msglen)
{
    return ps_classify_http(status, body, body ? strlen(body) : 0, msg, msglen);
}

static void test_classify_classes(void **state)
{
    static const long removed[] = { 200, 202, 204 };
    static const long config[] = { 300, 301, 302, 303, 304, 307, 308 };
    static const long transient[] = { 408, 425, 429, 500, 501, 502, 503, 504,
                                      599, 100, 101, 0,   -1,  600, 999 };
    static const long refused[] = { 400, 401, 403, 405, 409, 410, 418, 422, 451, 499 };
    char msg[512];
    size_t i;

    (void)state;
    for(i = 0; i < sizeof(removed) / sizeof(removed[0]); i++)
        assert_int_equal(classify(removed[i], NULL, msg, sizeof(msg)), PS_OUT_REMOVED);
    assert_int_equal(classify(404, NULL, msg, sizeof(msg)), PS_OUT_ABSENT);
    assert_non_null(strstr(msg, "404"));
    for(i = 0; i < sizeof(config) / sizeof(config[0]); i++) {
        assert_int_equal(classify(config[i], NULL, msg, sizeof(msg)), PS_OUT_CONFIG);
        assert_non_null(strstr(msg, "check api.url"));
    }
    for(i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
        assert_int_equal(classify(transient[i], "", msg, sizeof(msg)), PS_OUT_TRANSIENT);
    for(i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        assert_int_equal(classify(refused[i], "", msg, sizeof(msg)), PS_OUT_REFUSED);
    classify(403, NULL, msg, sizeof(msg));
    assert_string_equal(msg, "Forbidden (HTTP 403)");
    classify(499, NULL, msg, sizeof(msg));
    assert_string_equal(msg, "HTTP 499");
    classify(0, NULL, msg, sizeof(msg));
    assert_string_equal(msg, "unexpected HTTP status 0");
}

static void test_classify_message(void **state)
{
    char msg[512];

    (void)state;
    assert_int_equal(classify(403,
                              "{\"code\":\"forbidden\",\"message\":"
                              "\"Cannot remove the last admin\"}",
                              msg, sizeof(msg)),
                     PS_OUT_REFUSED);
    assert_string_equal(msg, "Cannot remove the last admin");
    /* surrounding whitespace is still exactly one JSON object */
    classify(422, " \r\n{\"message\" : \"bad \\\"flag\\\" \\u00e9\"}\r\n\t", msg, sizeof(msg));
    assert_string_equal(msg, "bad \"flag\" \xc3\xa9");
    assert_int_equal(
        classify(404, "{\"code\":\"not_found\",\"message\":\"Not Found\"}", msg, sizeof(msg)),
        PS_OUT_ABSENT);
    assert_string_equal(msg, "Not Found");
    assert_int_equal(classify(503, "{\"message\":\"maintenance\"}", msg, sizeof(msg)),
                     PS_OUT_TRANSIENT);
    assert_string_equal(msg, "maintenance");
    /* truncated into a small buffer, always terminated */
    classify(403, "{\"message\":\"Cannot remove\"}", msg, 4);
    assert_string_equal(msg, "Can");
    /* no buffer at all */
    assert_int_equal(ps_classify_http(403, "{\"message\":\"x\"}", 15, NULL, 0), PS_OUT_REFUSED);
}

static void test_classify_not_json(void **state)
{
    static const char *const bodies[] = {
        "{\"message\":\"x\"} trailing",           /* trailing garbage */
        "{\"message\":\"x\"}{\"message\":\"y\"}", /* two documents */
        "{\"message\":\"x\"",                     /* truncated */
        "{'message':'x'}",                        /* not strict JSON */
        "{\"message\":\"x\",}",                   /* trailing comma */
        "<html><body>Forbidden</body></html>",
        "Forbidden",
        "[{\"message\":\"x\"}]", /* not an object */
        "\"message\"",
        "42",
        "null",
        "{\"message\":42}", /* not a string */
        "{\"message\":null}",
        "{\"message\":true}",
        "{\"message\":[\"x\"]}",
        "{\"message\":{\"message\":\"x\"}}",
        "{\"error\":{\"message\":\"inner\"}}", /* nested: not the top level */
        "{\"Message\":\"x\"}",
        "",
    };
    char msg[512];
    size_t i;

    (void)state;
    for(i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        assert_int_equal(classify(403, bodies[i], msg, sizeof(msg)), PS_OUT_REFUSED);
        assert_string_equal(msg, "Forbidden (HTTP 403)");
    }
    assert_int_equal(ps_classify_http(401, NULL, 0, msg, sizeof(msg)), PS_OUT_REFUSED);
    assert_string_equal(msg, "Unauthorized (HTTP 401)");
    /* a length of zero ignores whatever the pointer holds */
    assert_int_equal(ps_classify_http(401, "{\"message\":\"x\"}", 0, msg, sizeof(msg)),
                     PS_OUT_REFUSED);
    assert_string_equal(msg, "Unauthorized (HTTP 401)");
}

static void test_classify_binary(void **state)
{
    static const char nul_after[] = "{\"message\":\"x\"}\0garbage";
    static const char nul_inside[] = "{\"message\":\"a\0b\"}";
    static const char nul_first[] = "\0{\"message\":\"x\"}";
    unsigned char bin[256];
    char msg[512];
    size_t i;

    (void)state;
    assert_int_equal(ps_classify_http(403, nul_after, sizeof(nul_after) - 1, msg, sizeof(msg)),
                     PS_OUT_REFUSED);
    assert_string_equal(msg, "Forbidden (HTTP 403)");
    assert_int_equal(ps_classify_http(403, nul_first, sizeof(nul_first) - 1, msg, sizeof(msg)),
                     PS_OUT_REFUSED);
    assert_string_equal(msg, "Forbidden (HTTP 403)");
    /* either refused as JSON or cut at the NUL: never past it */
    assert_int_equal(ps_classify_http(403, nul_inside, sizeof(nul_inside) - 1, msg, sizeof(msg)),
                     PS_OUT_REFUSED);
    assert_true(!strcmp(msg, "a") || !strcmp(msg, "Forbidden (HTTP 403)"));
    for(i = 0; i < sizeof(bin); i++)
        bin[i] = (unsigned char)(255 - i);
    assert_int_equal(ps_classify_http(500, (const char *)bin, sizeof(bin), msg, sizeof(msg)),
                     PS_OUT_TRANSIENT);
    assert_string_equal(msg, "Internal Server Error (HTTP 500)");
}

static void test_classify_huge(void **state)
{
    const size_t n = 1024 * 1024;
    char *body = malloc(n + 32);
    char msg[512];
    size_t i, len;

    (void)state;
    assert_non_null(body);
    /* a huge message is truncated to the buffer */
    len = (size_t)snprintf(body, n + 32, "{\"message\":\"");
    memset(body + len, 'A', n);
    len += n;
    len += (size_t)snprintf(body + len, n + 32 - len, "\"}");
    assert_int_equal(ps_classify_http(403, body, len, msg, sizeof(msg)), PS_OUT_REFUSED);
    assert_int_equal(strlen(msg), sizeof(msg) - 1);
    for(i = 0; i < sizeof(msg) - 1; i++)
        assert_int_equal(msg[i], 'A');
    /* deep nesting is refused by the parser's depth limit, not the stack */
    memset(body, '[', n);
    assert_int_equal(ps_classify_http(400, body, n, msg, sizeof(msg)), PS_OUT_REFUSED);
    assert_string_equal(msg, "Bad Request (HTTP 400)");
    for(i = 0; i < n; i++)
        body[i] = (i % 2) ? '{' : '"';
    assert_int_equal(ps_classify_http(400, body, n, msg, sizeof(msg)), PS_OUT_REFUSED);
    assert_string_equal(msg, "Bad Request (HTTP 400)");
    free(body);
}

/* ================================================================ Retry-After */

static time_t date_2015(void)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = 2015 - 1900;
    tm.tm_mon = 9;
    tm.tm_mday = 21;
    tm.tm_hour = 7;
    tm.tm_min = 28;
    tm.tm_sec = 0;
    return timegm(&tm); /* Wed, 21 Oct 2015 07:28:00 GMT */
}

static void test_retry_after_seconds(void **state)
{
    (void)state;
    assert_true(ps_parse_retry_after("120", 0) == 120.0);
    assert_true(ps_parse_retry_after("0", 0) == 0.0);
    assert_true(ps_parse_retry_after(" 7 ", 0) == 7.0);
    assert_true(ps_parse_retry_after("\t7\r\n", 0) == 7.0);
    assert_true(ps_parse_retry_after("007", 0) == 7.0);
}

static void test_retry_after_date(void **state)
{
    time_t now = date_2015();

    (void)state;
    assert_true(ps_parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now) == 30.0);
    assert_true(ps_parse_retry_after("Wednesday, 21-Oct-15 07:28:30 GMT", now) == 30.0);
    assert_true(ps_parse_retry_after("Wed Oct 21 07:28:30 2015", now) == 30.0);
    assert_true(ps_parse_retry_after("Wed Oct  1 07:28:00 2015", now - 20 * 86400) == 0.0);
    assert_true(ps_parse_retry_after("Thu, 22 Oct 2015 07:28:00 GMT", now) == 86400.0);
    /* a date in the past means "now" */
    assert_true(ps_parse_retry_after("Tue, 20 Oct 2015 07:28:00 GMT", now) == 0.0);
}

static void test_retry_after_garbage(void **state)
{
    static const char *const bad[] = {
        "",
        "   ",
        "soon",
        "-5",
        "-0",
        "+5",
        "1.5",
        "1e3",
        "12abc",
        "0x10",
        "5 5",
        "Wed, 21 Oct 2015 07:28:30 GMT extra",
        "Wed, 32 Oct 2015 07:28:30 GMT",
        "Wed, 21 Foo 2015 07:28:30 GMT",
        "Wed, 21 Oct 2015 25:28:30 GMT",
        "Wed, 21 Oct 2015 07:28:30 PST",
        "Wed, 21 Oct 2015",
        "\x01\x02\xff",
    };
    size_t i;

    (void)state;
    assert_true(ps_parse_retry_after(NULL, 0) == -1.0);
    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if(ps_parse_retry_after(bad[i], date_2015()) != -1.0)
            fail_msg("accepted Retry-After \"%s\"", bad[i]);
    }
}

static void test_retry_after_huge(void **state)
{
    char digits[201];
    double v;

    (void)state;
    v = ps_parse_retry_after("99999999999999999999999999", 0);
    assert_true(v > 0 && v <= 2147483647.0);
    memset(digits, '9', sizeof(digits) - 1);
    digits[sizeof(digits) - 1] = '\0';
    v = ps_parse_retry_after(digits, 0);
    assert_true(v > 0 && v <= 2147483647.0);
    v = ps_parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", date_2015());
    assert_true(v > 0 && v <= 2147483647.0);
}

/* ================================================================ ps_outcome_name */

static void test_outcome_name(void **state)
{
    (void)state;
    assert_string_equal(ps_outcome_name(PS_OUT_REMOVED), "removed");
    assert_string_equal(ps_outcome_name(PS_OUT_ABSENT), "absent");
    assert_string_equal(ps_outcome_name(PS_OUT_REFUSED), "refused");
    assert_string_equal(ps_outcome_name(PS_OUT_TRANSIENT), "transient");
    assert_string_equal(ps_outcome_name(PS_OUT_CONFIG), "config");
    assert_string_equal(ps_outcome_name(PS_OUT_OK), "ok");
    assert_string_equal(ps_outcome_name((ps_outcome_t)42), "unknown");
}

/* ================================================================ reads: pure helpers */

static void check_list_url(const char *base, const char *org, const char *q, long page, int pp,
                           const char *want)
{
    char *url = ps_build_list_url(base, org, q, page, pp);

    if(!want) {
        if(url)
            fail_msg("accepted: %s", url);
        return;
    }
    assert_non_null(url);
    assert_string_equal(url, want);
    free(url);
}

static void test_list_url(void **state)
{
    (void)state;
    check_list_url("https://api.planetscale.com/v1/", "acme", NULL, 1, 100,
                   "https://api.planetscale.com/v1/organizations/acme/members?page=1&per_page=100");
    check_list_url("https://h/v1", "acme", "", 7, 1,
                   "https://h/v1/organizations/acme/members?page=7&per_page=1");
    /* "+" would be a space and "@", "&", "=", "#" would change the query */
    check_list_url("https://h/v1", "acme", "Al.ice+x@example.com", 2, 100,
                   "https://h/v1/organizations/acme/members?q=Al.ice%2Bx%40example.com"
                   "&page=2&per_page=100");
    check_list_url("https://h/v1", "a/b", "a b&page=9#x=y", 1, 25,
                   "https://h/v1/organizations/a%2Fb/members?q=a%20b%26page%3D9%23x%3Dy"
                   "&page=1&per_page=25");
    check_list_url("https://h/v1", "acme", "\xc3\xa9\n", 1, 25,
                   "https://h/v1/organizations/acme/members?q=%C3%A9%0A&page=1&per_page=25");
    check_list_url("https://h/v1", "acme", NULL, 0, 100, NULL);
    check_list_url("https://h/v1", "acme", NULL, -1, 100, NULL);
    check_list_url("https://h/v1", "acme", NULL, 1, 0, NULL);
    check_list_url("https://h/v1", "acme", NULL, 1, 101, NULL);
    check_list_url("https://h/v1", "..", NULL, 1, 100, NULL);
    check_list_url("https://h/v1", "", NULL, 1, 100, NULL);
    check_list_url("https://h/v1", NULL, NULL, 1, 100, NULL);
    check_list_url(NULL, "acme", NULL, 1, 100, NULL);
    check_list_url("https://h/v1?x=1", "acme", NULL, 1, 100, NULL);
}

/* A membership as the API documents it; dm is the JSON of
 * user.directory_managed, or NULL to leave it out. malloc'd. */
static char *member_json(const char *uid, const char *email, const char *dm)
{
    char *s = NULL;

    if(asprintf(&s,
                "{\"id\":\"mbr_%s\",\"user\":{\"id\":\"%s\",\"display_name\":\"Display %s\","
                "\"name\":\"Name %s\",\"email\":\"%s\",\"avatar_url\":\"https://a.example/x\","
                "\"created_at\":\"2024-01-02T03:04:05.000Z\",\"updated_at\":\"2024-01-02\","
                "\"two_factor_auth_configured\":false,\"default_organization\":null,"
                "\"sso\":false,\"managed\":null%s%s,\"email_verified\":true},"
                "\"role\":\"member\",\"created_at\":\"2024\",\"updated_at\":\"2024\"}",
                uid, uid, uid, uid, email, dm ? ",\"directory_managed\":" : "", dm ? dm : "") < 0)
        s = NULL;
    assert_non_null(s);
    return s;
}

static int parse_member_str(const char *body, ps_member_t *m, char *err, size_t errlen)
{
    return ps_parse_member(body, strlen(body), m, err, errlen);
}

static void test_parse_member_good(void **state)
{
    char *j = member_json("d4xkq1abc", "Alice@Example.com", "true");
    char err[256] = "";
    ps_member_t m;

    (void)state;
    assert_int_equal(parse_member_str(j, &m, err, sizeof(err)), 0);
    assert_string_equal(m.id, "mbr_d4xkq1abc");
    assert_string_equal(m.user_id, "d4xkq1abc");
    assert_string_equal(m.email, "Alice@Example.com");
    assert_string_equal(m.name, "Name d4xkq1abc");
    assert_string_equal(m.role, "member");
    assert_int_equal(m.directory_managed, 1);
    free(j);
    j = member_json("x9z8", "bob@example.com", "false");
    assert_int_equal(parse_member_str(j, &m, err, sizeof(err)), 0);
    assert_int_equal(m.directory_managed, 0);
    free(j);
    j = member_json("x9z8", "bob@example.com", "null");
    assert_int_equal(parse_member_str(j, &m, err, sizeof(err)), 0);
    assert_int_equal(m.directory_managed, -1);
    free(j);
    j = member_json("x9z8", "", NULL);
    assert_int_equal(parse_member_str(j, &m, err, sizeof(err)), 0);
    assert_int_equal(m.directory_managed, -1);
    assert_string_equal(m.email, "");
    free(j);
    /* the least we need; no name: the display name; no display name: "" */
    assert_int_equal(parse_member_str(" {\"id\":\"m\",\"role\":\"admin\",\"user\":{\"id\":\"u\","
                                      "\"email\":\"e\",\"display_name\":\"D\"}}\n",
                                      &m, err, sizeof(err)),
                     0);
    assert_string_equal(m.name, "D");
    assert_string_equal(m.role, "admin");
    assert_int_equal(parse_member_str("{\"id\":\"m\",\"role\":\"admin\",\"user\":{\"id\":\"u\","
                                      "\"email\":\"e\",\"name\":null}}",
                                      &m, err, sizeof(err)),
                     0);
    assert_string_equal(m.name, "");
}

static void test_parse_member_long_name(void **state)
{
    char body[1200], err[128];
    ps_member_t m;
    size_t i, len;

    (void)state;
    /* 300 two-byte characters: cut at a character boundary */
    len = (size_t)snprintf(body, sizeof(body),
                           "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"id\":\"u\","
                           "\"email\":\"e\",\"name\":\"");
    for(i = 0; i < 300; i++) {
        body[len++] = '\xc3';
        body[len++] = '\xa9';
    }
    len += (size_t)snprintf(body + len, sizeof(body) - len, "\"}}");
    assert_int_equal(ps_parse_member(body, len, &m, err, sizeof(err)), 0);
    assert_int_equal(strlen(m.name), 254);
    assert_true((unsigned char)m.name[253] == 0xa9);
}

static void test_parse_member_bad(void **state)
{
    static const struct {
        const char *body;
        const char *why;
    } bad[] = {
        { "", "not one JSON object" },
        { "[]", "not one JSON object" },
        { "null", "not one JSON object" },
        { "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"id\":\"u\",\"email\":\"e\"}} x",
          "not one JSON object" },
        { "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"id\":\"u\",\"email\":\"e\"}}{}",
          "not one JSON object" },
        { "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"id\":\"u\",\"email\":\"e\",}}",
          "not one JSON object" },
        { "{\"role\":\"member\",\"user\":{\"id\":\"u\",\"email\":\"e\"}}", "id is missing" },
        { "{\"id\":1,\"role\":\"member\",\"user\":{\"id\":\"u\",\"email\":\"e\"}}",
          "id is not a string" },
        { "{\"id\":\"\",\"role\":\"member\",\"user\":{\"id\":\"u\",\"email\":\"e\"}}", "id has 0" },
        { "{\"id\":\"m\",\"user\":{\"id\":\"u\",\"email\":\"e\"}}", "role is missing" },
        { "{\"id\":\"m\",\"role\":null,\"user\":{\"id\":\"u\",\"email\":\"e\"}}",
          "role is missing" },
        { "{\"id\":\"m\",\"role\":\"member\"}", "user is missing" },
        { "{\"id\":\"m\",\"role\":\"member\",\"user\":\"u\"}", "user is missing" },
        { "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"email\":\"e\"}}", "user.id is missing" },
        { "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"id\":42,\"email\":\"e\"}}",
          "user.id is not a string" },
        { "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"id\":\"..\",\"email\":\"e\"}}",
          "user.id is not a valid id" },
        { "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"id\":\"a/b\",\"email\":\"e\"}}",
          "user.id is not a valid id" },
        { "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"id\":\"a\\u0000b\",\"email\":\"e\"}}",
          "user.id holds a NUL" },
        { "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"id\":\"u\"}}", "user.email is missing" },
        { "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"id\":\"u\",\"email\":[]}}",
          "user.email is not a string" },
        { "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"id\":\"u\",\"email\":\"e\","
          "\"name\":7}}",
          "user.name is not a string" },
        { "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"id\":\"u\",\"email\":\"e\","
          "\"display_name\":{}}}",
          "user.display_name is not a string" },
        { "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"id\":\"u\",\"email\":\"e\","
          "\"directory_managed\":\"true\"}}",
          "user.directory_managed is not a boolean" },
        { "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"id\":\"u\",\"email\":\"e\","
          "\"directory_managed\":1}}",
          "user.directory_managed is not a boolean" },
    };
    char err[256];
    ps_member_t m;
    size_t i;

    (void)state;
    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&m, 'x', sizeof(m));
        err[0] = '\0';
        if(parse_member_str(bad[i].body, &m, err, sizeof(err)) != -1)
            fail_msg("accepted: %s", bad[i].body);
        if(!strstr(err, bad[i].why))
            fail_msg("%s: \"%s\" does not say \"%s\"", bad[i].body, err, bad[i].why);
        assert_string_equal(m.user_id, ""); /* nothing half-filled */
    }
}

static void test_parse_member_email_len(void **state)
{
    char body[800], email[300], err[256];
    ps_member_t m;

    (void)state;
    memset(email, 'a', 254);
    email[254] = '\0';
    snprintf(body, sizeof(body),
             "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"id\":\"u\",\"email\":\"%s\"}}", email);
    assert_int_equal(parse_member_str(body, &m, err, sizeof(err)), 0);
    assert_int_equal(strlen(m.email), 254);
    email[254] = 'a';
    email[255] = '\0';
    snprintf(body, sizeof(body),
             "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"id\":\"u\",\"email\":\"%s\"}}", email);
    assert_int_equal(parse_member_str(body, &m, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "user.email has 255 bytes"));
}

/* A page: the members' JSON joined by commas. malloc'd. */
static char *page_json(long cur, const char *next, const char *total, const char *data)
{
    char *s = NULL;

    if(asprintf(&s,
                "{\"type\":\"list\",\"current_page\":%ld,\"per_page\":2,\"next_page\":%s,"
                "\"next_page_url\":null,\"prev_page\":null,\"prev_page_url\":null,"
                "\"total_count\":%s,\"total_pages\":3,\"data\":[%s]}",
                cur, next, total, data) < 0)
        s = NULL;
    assert_non_null(s);
    return s;
}

static int parse_page_str(const char *body, long expect, ps_member_page_t *pg, char *err,
                          size_t errlen)
{
    return ps_parse_member_page(body, strlen(body), expect, pg, err, errlen);
}

static void test_parse_page_good(void **state)
{
    char *a = member_json("u1", "a@example.com", "false");
    char *b = member_json("u2", "b@example.com", "true");
    char data[4096], err[256] = "";
    char *p;
    ps_member_page_t pg;

    (void)state;
    snprintf(data, sizeof(data), "%s,%s", a, b);
    p = page_json(2, "3", "6", data);
    assert_int_equal(parse_page_str(p, 2, &pg, err, sizeof(err)), 0);
    assert_int_equal(pg.n, 2);
    assert_int_equal(pg.current_page, 2);
    assert_int_equal(pg.next_page, 3);
    assert_int_equal(pg.total_count, 6);
    assert_string_equal(pg.members[0].user_id, "u1");
    assert_string_equal(pg.members[1].email, "b@example.com");
    assert_int_equal(pg.members[1].directory_managed, 1);
    ps_member_page_free(&pg);
    assert_null(pg.members);
    assert_int_equal(pg.n, 0);
    free(p);
    /* the last page; no expectation; total_count null */
    p = page_json(3, "null", "null", a);
    assert_int_equal(parse_page_str(p, 0, &pg, err, sizeof(err)), 0);
    assert_int_equal(pg.n, 1);
    assert_int_equal(pg.next_page, 0);
    assert_int_equal(pg.total_count, -1);
    ps_member_page_free(&pg);
    free(p);
    /* empty */
    p = page_json(1, "null", "0", "");
    assert_int_equal(parse_page_str(p, 1, &pg, err, sizeof(err)), 0);
    assert_int_equal(pg.n, 0);
    ps_member_page_free(&pg);
    ps_member_page_free(NULL);
    free(p);
    free(a);
    free(b);
}

static void test_parse_page_bad(void **state)
{
    static const struct {
        const char *body;
        const char *why;
    } bad[] = {
        { "", "not one JSON object" },
        { "[]", "not one JSON object" },
        { "{\"current_page\":1,\"next_page\":null,\"data\":[]} trailing", "not one JSON object" },
        { "{\"next_page\":null,\"data\":[]}", "current_page is missing" },
        { "{\"current_page\":null,\"next_page\":null,\"data\":[]}", "current_page is missing" },
        { "{\"current_page\":\"1\",\"next_page\":null,\"data\":[]}",
          "current_page is not an integer" },
        { "{\"current_page\":1.0,\"next_page\":null,\"data\":[]}",
          "current_page is not an integer" },
        { "{\"current_page\":0,\"next_page\":null,\"data\":[]}", "current_page is out of range" },
        { "{\"current_page\":2,\"next_page\":null,\"data\":[]}", "current_page is 2, page 1" },
        { "{\"current_page\":1,\"data\":[]}", "next_page is missing" },
        /* json-c reads the string "2" as 0 with get_int64: types first */
        { "{\"current_page\":1,\"next_page\":\"2\",\"data\":[]}", "next_page is not an integer" },
        { "{\"current_page\":1,\"next_page\":true,\"data\":[]}", "next_page is not an integer" },
        { "{\"current_page\":1,\"next_page\":1,\"data\":[]}", "does not follow" },
        { "{\"current_page\":1,\"next_page\":0,\"data\":[]}", "next_page is out of range" },
        { "{\"current_page\":1,\"next_page\":-3,\"data\":[]}", "next_page is out of range" },
        { "{\"current_page\":1,\"next_page\":99999999999999999999,\"data\":[]}", "next_page" },
        { "{\"current_page\":1,\"next_page\":null,\"total_count\":\"5\",\"data\":[]}",
          "total_count is not an integer" },
        { "{\"current_page\":1,\"next_page\":null,\"total_count\":-1,\"data\":[]}",
          "total_count is out of range" },
        { "{\"current_page\":1,\"next_page\":null}", "data is missing" },
        { "{\"current_page\":1,\"next_page\":null,\"data\":null}", "data is missing" },
        { "{\"current_page\":1,\"next_page\":null,\"data\":{}}", "data is missing" },
        { "{\"current_page\":1,\"next_page\":null,\"data\":[1]}", "data[0]: not an object" },
        { "{\"current_page\":1,\"next_page\":null,\"data\":[{\"id\":\"m\",\"role\":\"member\","
          "\"user\":{\"id\":\"u\",\"email\":\"e\"}},{\"id\":\"m\",\"role\":\"member\","
          "\"user\":{\"id\":\"u\"}}]}",
          "data[1]: user.email is missing" },
    };
    char err[256];
    ps_member_page_t pg;
    size_t i;

    (void)state;
    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if(parse_page_str(bad[i].body, 1, &pg, err, sizeof(err)) != -1)
            fail_msg("accepted: %s", bad[i].body);
        if(!strstr(err, bad[i].why))
            fail_msg("%s: \"%s\" does not say \"%s\"", bad[i].body, err, bad[i].why);
        assert_null(pg.members);
        assert_int_equal(pg.n, 0);
    }
}

static void test_parse_page_too_many(void **state)
{
    static const char one[] = "{\"id\":\"m\",\"role\":\"member\",\"user\":{\"id\":\"u\","
                              "\"email\":\"e\"}}";
    size_t cap = 1001 * sizeof(one) + 128, len, i;
    char *body = malloc(cap);
    char err[256];
    ps_member_page_t pg;

    (void)state;
    assert_non_null(body);
    len = (size_t)snprintf(body, cap, "{\"current_page\":1,\"next_page\":null,\"data\":[");
    for(i = 0; i < 1001; i++)
        len += (size_t)snprintf(body + len, cap - len, "%s%s", i ? "," : "", one);
    len += (size_t)snprintf(body + len, cap - len, "]}");
    assert_int_equal(ps_parse_member_page(body, len, 1, &pg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "data has 1001 entries"));
    /* 1000 is still a page */
    len = (size_t)snprintf(body, cap, "{\"current_page\":1,\"next_page\":null,\"data\":[");
    for(i = 0; i < 1000; i++)
        len += (size_t)snprintf(body + len, cap - len, "%s%s", i ? "," : "", one);
    len += (size_t)snprintf(body + len, cap - len, "]}");
    assert_int_equal(ps_parse_member_page(body, len, 1, &pg, err, sizeof(err)), 0);
    assert_int_equal(pg.n, 1000);
    ps_member_page_free(&pg);
    free(body);
}

/* ================================================================ test server */

enum step_action {
    ACT_SEND,       /* send resp, keep the connection */
    ACT_SEND_CLOSE, /* send resp, close the connection */
    ACT_HANG,       /* read the request, never answer */
    ACT_HUGE,       /* resp as headers, then a 200000-byte body */
};

struct step {
    enum step_action action;
    const char *resp;
};

#define MAX_CAPTURES 16

struct capture {
    int conn;   /* 1-based index of the accepted connection */
    char *data; /* the request, NUL-terminated */
    size_t len;
};

struct server {
    pid_t pid;
    int port;
    int capfd; /* read end: what the server received */
    struct capture cap[MAX_CAPTURES];
    size_t ncap;
};

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while(len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if(n < 0 && errno == ENOTSOCK)
            n = write(fd, p, len);
        if(n < 0 && errno == EINTR)
            continue;
        if(n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static size_t content_length(const char *req)
{
    const char *p = strcasestr(req, "\r\ncontent-length:");

    return p ? strtoul(p + 17, NULL, 10) : 0;
}

/* Reads one request (headers and Content-Length body). Returns its length,
 * 0 on end of file before any byte, -1 on error. */
static ssize_t read_request(int fd, char *buf, size_t bufsz)
{
    size_t len = 0, need = 0;
    char *end;

    for(;;) {
        ssize_t n;

        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if(end && !need)
            need = (size_t)(end + 4 - buf) + content_length(buf);
        if(need && len >= need)
            return (ssize_t)len;
        if(len + 1 >= bufsz)
            return -1;
        n = read(fd, buf + len, bufsz - 1 - len);
        if(n < 0 && errno == EINTR)
            continue;
        if(n <= 0)
            return len ? -1 : 0;
        len += (size_t)n;
    }
}

static void serve(int lfd, int capfd, const struct step *steps, size_t nsteps)
{
    static char buf[65536];
    int conn = -1, nconn = 0;
    size_t i;

    /* never outlive the test, even when an assertion longjmps past
     * server_stop */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(60);
    signal(SIGPIPE, SIG_IGN);
    for(i = 0; i < nsteps; i++) {
        char hdr[64];
        ssize_t len;

        for(;;) {
            if(conn < 0) {
                conn = accept(lfd, NULL, NULL);
                if(conn < 0)
                    _exit(2);
                nconn++;
            }
            len = read_request(conn, buf, sizeof(buf));
            if(len > 0)
                break;
            close(conn); /* the client closed an idle connection */
            conn = -1;
        }
        snprintf(hdr, sizeof(hdr), "%d %zd\n", nconn, len);
        if(write_all(capfd, hdr, strlen(hdr)) || write_all(capfd, buf, (size_t)len))
            _exit(3);
        switch(steps[i].action) {
        case ACT_HANG:
            for(;;)
                pause();
        case ACT_HUGE: {
            static char junk[200000];
            memset(junk, 'x', sizeof(junk));
            (void)write_all(conn, steps[i].resp, strlen(steps[i].resp));
            (void)write_all(conn, junk, sizeof(junk));
            break;
        }
        case ACT_SEND:
        case ACT_SEND_CLOSE: (void)write_all(conn, steps[i].resp, strlen(steps[i].resp)); break;
        }
        if(steps[i].action != ACT_SEND) {
            close(conn);
            conn = -1;
        }
    }
    for(;;)
        pause(); /* until the test kills us */
}

static void server_start(struct server *s, const struct step *steps, size_t nsteps)
{
    struct sockaddr_in sa;
    socklen_t salen = sizeof(sa);
    pid_t parent = getpid();
    int lfd, p[2], one = 1;

    memset(s, 0, sizeof(*s));
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    assert_int_equal(setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 16), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &salen), 0);
    s->port = ntohs(sa.sin_port);
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if(s->pid == 0) {
        if(getppid() != parent)
            _exit(0);
        close(p[0]);
        serve(lfd, p[1], steps, nsteps);
        _exit(0);
    }
    close(lfd);
    close(p[1]);
    s->capfd = p[0];
}

/* A port where nothing listens. */
static int closed_port(void)
{
    struct sockaddr_in sa;
    socklen_t salen = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port;

    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* Collects what the server captured so far: every request the client sent
 * was captured before it was answered, so it is all in the pipe. */
static void server_collect(struct server *s)
{
    static char buf[1 << 18];
    size_t len = 0;
    char *p;
    ssize_t n;

    assert_int_equal(fcntl(s->capfd, F_SETFL, O_NONBLOCK), 0);
    while(len < sizeof(buf) && (n = read(s->capfd, buf + len, sizeof(buf) - len)) > 0)
        len += (size_t)n;
    p = buf;
    while(p < buf + len && s->ncap < MAX_CAPTURES) {
        struct capture *c = &s->cap[s->ncap];
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        size_t rlen;

        assert_non_null(nl);
        assert_int_equal(sscanf(p, "%d %zu", &c->conn, &rlen), 2);
        p = nl + 1;
        assert_true(rlen <= (size_t)(buf + len - p));
        c->data = malloc(rlen + 1);
        assert_non_null(c->data);
        memcpy(c->data, p, rlen);
        c->data[rlen] = '\0';
        c->len = rlen;
        p += rlen;
        s->ncap++;
    }
}

static void server_stop(struct server *s)
{
    size_t i;

    if(s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    if(s->capfd > 0)
        close(s->capfd);
    s->capfd = -1;
    for(i = 0; i < s->ncap; i++)
        free(s->cap[i].data);
    s->ncap = 0;
}

/* ================================================================ client fixture */

struct fixture {
    void **state; /* cmocka state: the teardown frees what is left */
    ps_client_t *client;
    ps_config_t cfg;
    struct server srv;
    char url[128];
    char proxy[128];
    char auth[128];
    ps_mapping_t m;
};

static struct fixture *fixture_new(void **state, const struct step *steps, size_t nsteps, int mode)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->state = state;
    *state = f;
    f->srv.capfd = -1;
    if(steps)
        server_start(&f->srv, steps, nsteps);
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/v1", f->srv.port);
    snprintf(f->auth, sizeof(f->auth), "%s", AUTH_LINE);
    f->cfg.api_url = f->url;
    f->cfg.auth_header = f->auth;
    f->cfg.flags_mode = mode;
    f->cfg.timeout = 5;
    f->cfg.connect_timeout = 2;
    f->cfg.retries = 3;
    f->cfg.rate_limit = 10;
    f->cfg.def_delete_passwords = 1;
    f->cfg.def_delete_service_tokens = 1;
    f->m.login = "alice";
    f->m.organization = "acme";
    f->m.id = "d4x/q";
    f->m.delete_passwords = 1;
    f->m.delete_service_tokens = 0;
    return f;
}

static void client_free(struct fixture *f)
{
    ps_client_free(f->client);
    f->client = NULL;
}

static void fixture_free(struct fixture *f)
{
    if(!f)
        return;
    client_free(f);
    server_stop(&f->srv);
    *f->state = NULL;
    free(f);
}

static int fixture_teardown(void **state)
{
    fixture_free(*state);
    return 0;
}

static ps_client_t *client_new(struct fixture *f, double base, double cap)
{
    char err[256] = "";
    ps_client_t *c = ps_client_new(&f->cfg, err, sizeof(err));

    if(!c)
        fail_msg("ps_client_new: %s", err);
    ps_client_set_backoff(c, base, cap);
    assert_null(f->client);
    f->client = c;
    return c;
}

/* 1 when the request holds the header line exactly. */
static int has_line(const char *req, const char *line)
{
    const char *end = strstr(req, "\r\n\r\n");
    char want[256];
    const char *p;

    snprintf(want, sizeof(want), "\r\n%s\r\n", line);
    p = strstr(req, want);
    return p && end && p < end + 2;
}

/* 1 when the request has a header of that name (case-insensitive). */
static int has_header(const char *req, const char *name)
{
    const char *end = strstr(req, "\r\n\r\n");
    char want[128];
    const char *p;

    snprintf(want, sizeof(want), "\r\n%s:", name);
    p = strcasestr(req, want);
    return p && end && p < end;
}

static const char *req_body(const struct capture *c)
{
    const char *end = strstr(c->data, "\r\n\r\n");

    assert_non_null(end);
    return end + 4;
}

#define R204 "HTTP/1.1 204 No Content\r\n\r\n"
#define R503 "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"

/* ================================================================ client tests */

static void test_client_query_request(void **state)
{
    static const struct step steps[] = { { ACT_SEND, R204 } };
    struct fixture *f = fixture_new(state, steps, 1, PS_FLAGS_QUERY);
    ps_client_t *c = client_new(f, 0.01, 1);
    const struct capture *cap;
    ps_result_t r;

    assert_int_equal(ps_client_delete_once(c, &f->m, &r), PS_OUT_REMOVED);
    assert_int_equal(r.outcome, PS_OUT_REMOVED);
    assert_int_equal(r.http_status, 204);
    assert_int_equal(r.attempts, 1);
    assert_true(r.retry_after == -1.0);
    assert_int_equal(ps_client_connects(c), 1);
    server_collect(&f->srv);
    assert_int_equal(f->srv.ncap, 1);
    cap = &f->srv.cap[0];
    assert_true(!strncmp(cap->data,
                         "DELETE /v1/organizations/acme/members/d4x%2Fq"
                         "?delete_passwords=true&delete_service_tokens=false HTTP/1.1\r\n",
                         strlen("DELETE /v1/organizations/acme/members/d4x%2Fq"
                                "?delete_passwords=true&delete_service_tokens=false"
                                " HTTP/1.1\r\n")));
    assert_true(has_line(cap->data, AUTH_LINE));
    assert_true(has_line(cap->data, "User-Agent: pam-planetscale/" PS_VERSION));
    assert_true(has_line(cap->data, "Accept: application/json"));
    assert_false(has_header(cap->data, "Content-Type"));
    assert_false(has_header(cap->data, "Content-Length"));
    assert_false(has_header(cap->data, "Transfer-Encoding"));
    assert_false(has_header(cap->data, "Expect"));
    assert_false(has_header(cap->data, "Accept-Encoding"));
    assert_string_equal(req_body(cap), "");
    /* the message never carries the credential */
    assert_null(strstr(r.message, TOKEN_SECRET));
    client_free(f);
    fixture_free(f);
}

static void check_body_request(const struct capture *cap)
{
    static const char want[] = "{\"delete_passwords\":true,\"delete_service_tokens\":false}";
    char line[64];

    assert_true(!strncmp(cap->data, "DELETE /v1/organizations/acme/members/d4x%2Fq HTTP/1.1\r\n",
                         strlen("DELETE /v1/organizations/acme/members/d4x%2Fq"
                                " HTTP/1.1\r\n")));
    assert_true(has_line(cap->data, AUTH_LINE));
    assert_true(has_line(cap->data, "Content-Type: application/json"));
    assert_true(has_line(cap->data, "Accept: application/json"));
    snprintf(line, sizeof(line), "Content-Length: %zu", strlen(want));
    assert_true(has_line(cap->data, line));
    assert_string_equal(req_body(cap), want);
}

/* 503 then 204, body mode: retried over the same connection */
static void test_client_body_retry_reuse(void **state)
{
    static const struct step steps[] = { { ACT_SEND, R503 }, { ACT_SEND, R204 } };
    struct fixture *f = fixture_new(state, steps, 2, PS_FLAGS_BODY);
    ps_client_t *c = client_new(f, 0.01, 1);
    ps_result_t r;

    assert_int_equal(ps_client_remove(c, &f->m, 0, &r), PS_OUT_REMOVED);
    assert_int_equal(r.http_status, 204);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(ps_client_connects(c), 1);
    server_collect(&f->srv);
    assert_int_equal(f->srv.ncap, 2);
    assert_int_equal(f->srv.cap[0].conn, 1);
    assert_int_equal(f->srv.cap[1].conn, 1);
    check_body_request(&f->srv.cap[0]);
    check_body_request(&f->srv.cap[1]);
    client_free(f);
    fixture_free(f);
}

/* three requests on one client in query mode: nothing leaks between them */
static void test_client_reuse_many(void **state)
{
    static const struct step steps[] = {
        { ACT_SEND, "HTTP/1.1 404 Not Found\r\nContent-Length: 42\r\n\r\n"
                    "{\"code\":\"not_found\",\"message\":\"Not Found\"}" },
        { ACT_SEND, R503 },
        { ACT_SEND, R204 },
    };
    struct fixture *f = fixture_new(state, steps, 3, PS_FLAGS_QUERY);
    ps_client_t *c = client_new(f, 0.01, 1);
    ps_result_t r;
    size_t i;

    assert_int_equal(ps_client_delete_once(c, &f->m, &r), PS_OUT_ABSENT);
    assert_string_equal(r.message, "Not Found");
    assert_int_equal(ps_client_delete_once(c, &f->m, &r), PS_OUT_TRANSIENT);
    assert_int_equal(r.http_status, 503);
    assert_int_equal(ps_client_delete_once(c, &f->m, &r), PS_OUT_REMOVED);
    assert_int_equal(ps_client_connects(c), 1);
    server_collect(&f->srv);
    assert_int_equal(f->srv.ncap, 3);
    for(i = 0; i < 3; i++) {
        assert_int_equal(f->srv.cap[i].conn, 1);
        assert_false(has_header(f->srv.cap[i].data, "Content-Length"));
        assert_string_equal(req_body(&f->srv.cap[i]), "");
    }
    client_free(f);
    fixture_free(f);
}

/* a body-mode request then a query-mode one on the same handle: the body,
 * its length and its Content-Type do not leak into the second request */
static void test_client_mode_switch_no_leak(void **state)
{
    static const struct step steps[] = { { ACT_SEND, R503 }, { ACT_SEND, R204 } };
    struct fixture *f = fixture_new(state, steps, 2, PS_FLAGS_BODY);
    ps_client_t *c = client_new(f, 0.01, 1);
    const struct capture *cap;
    ps_result_t r;

    assert_int_equal(ps_client_delete_once(c, &f->m, &r), PS_OUT_TRANSIENT);
    f->cfg.flags_mode = PS_FLAGS_QUERY;
    assert_int_equal(ps_client_delete_once(c, &f->m, &r), PS_OUT_REMOVED);
    assert_int_equal(ps_client_connects(c), 1);
    server_collect(&f->srv);
    assert_int_equal(f->srv.ncap, 2);
    check_body_request(&f->srv.cap[0]);
    cap = &f->srv.cap[1];
    assert_int_equal(cap->conn, 1);
    assert_true(!strncmp(cap->data, "DELETE /v1/organizations/acme/members/d4x%2Fq?",
                         strlen("DELETE /v1/organizations/acme/members/d4x%2Fq?")));
    assert_true(has_line(cap->data, AUTH_LINE));
    assert_false(has_header(cap->data, "Content-Type"));
    assert_false(has_header(cap->data, "Content-Length"));
    assert_string_equal(req_body(cap), "");
}

static void test_client_retry_after(void **state)
{
    static const struct step steps[] = {
        { ACT_SEND, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\n"
                    "Content-Length: 0\r\n\r\n" },
        { ACT_SEND, R204 },
    };
    struct fixture *f = fixture_new(state, steps, 2, PS_FLAGS_QUERY);
    ps_client_t *c = client_new(f, 0.0, 5); /* without Retry-After: no wait */
    ps_result_t r;
    double t0 = ps_now(), dt;

    assert_int_equal(ps_client_remove(c, &f->m, 0, &r), PS_OUT_REMOVED);
    dt = ps_now() - t0;
    assert_int_equal(r.attempts, 2);
    if(dt < 0.95 || dt > 4)
        fail_msg("Retry-After: 1 waited %.3f s", dt);
    client_free(f);
    fixture_free(f);
}

static void test_client_retry_after_capped(void **state)
{
    static const struct step steps[] = {
        { ACT_SEND, "HTTP/1.1 503 Service Unavailable\r\nretry-after: 100\r\n"
                    "Content-Length: 0\r\n\r\n" },
        { ACT_SEND, R204 },
    };
    struct fixture *f = fixture_new(state, steps, 2, PS_FLAGS_QUERY);
    ps_client_t *c = client_new(f, 0.0, 0.2);
    ps_result_t r;
    double t0 = ps_now(), dt;

    assert_int_equal(ps_client_remove(c, &f->m, 0, &r), PS_OUT_REMOVED);
    dt = ps_now() - t0;
    assert_int_equal(r.attempts, 2);
    if(dt < 0.15 || dt > 3)
        fail_msg("capped Retry-After waited %.3f s", dt);
    client_free(f);
    fixture_free(f);
}

/* a wait that would cross the deadline is not started */
static void test_client_deadline_stops_retry(void **state)
{
    static const struct step steps[] = {
        { ACT_SEND, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\n"
                    "Content-Type: application/json\r\nContent-Length: 25\r\n\r\n"
                    "{\"message\":\"maintenance\"}" },
        { ACT_SEND, R204 },
    };
    struct fixture *f = fixture_new(state, steps, 2, PS_FLAGS_QUERY);
    ps_client_t *c = client_new(f, 0.01, 60);
    ps_result_t r;
    double t0 = ps_now(), dt;

    assert_int_equal(ps_client_remove(c, &f->m, t0 + 3, &r), PS_OUT_TRANSIENT);
    dt = ps_now() - t0;
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.http_status, 503);
    assert_true(r.retry_after == 30.0);
    assert_string_equal(r.message, "maintenance");
    if(dt > 2)
        fail_msg("gave up after %.3f s", dt);
    client_free(f);
    fixture_free(f);
}

/* a server that never answers: bounded by timeout x retries */
static void test_client_timeout_bounded(void **state)
{
    static const struct step steps[] = { { ACT_HANG, NULL } };
    struct fixture *f = fixture_new(state, steps, 1, PS_FLAGS_QUERY);
    ps_client_t *c;
    ps_result_t r;
    double t0, dt;

    f->cfg.timeout = 0.5;
    f->cfg.connect_timeout = 0.5;
    f->cfg.retries = 2;
    c = client_new(f, 0.01, 0.05);
    t0 = ps_now();
    assert_int_equal(ps_client_remove(c, &f->m, 0, &r), PS_OUT_TRANSIENT);
    dt = ps_now() - t0;
    assert_int_equal(r.attempts, 2);
    assert_int_equal(r.http_status, 0);
    assert_non_null(strcasestr(r.message, "timed out"));
    if(dt < 0.9 || dt > 0.5 * 2 + 1.5)
        fail_msg("2 attempts of 0.5 s took %.3f s", dt);
    /* the deadline wins over timeout x retries */
    f->cfg.timeout = 5;
    f->cfg.retries = 5;
    t0 = ps_now();
    assert_int_equal(ps_client_remove(c, &f->m, t0 + 0.6, &r), PS_OUT_TRANSIENT);
    dt = ps_now() - t0;
    if(dt > 0.6 + 1.0)
        fail_msg("deadline of 0.6 s took %.3f s", dt);
    client_free(f);
    fixture_free(f);
}

static void test_client_connect_refused(void **state)
{
    struct fixture *f = fixture_new(state, NULL, 0, PS_FLAGS_QUERY);
    ps_client_t *c;
    ps_result_t r;

    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/v1", closed_port());
    f->cfg.retries = 2;
    c = client_new(f, 0.01, 0.05);
    assert_int_equal(ps_client_remove(c, &f->m, 0, &r), PS_OUT_TRANSIENT);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(r.http_status, 0);
    assert_true(strlen(r.message) > 0);
    client_free(f);
    fixture_free(f);
}

static void test_client_redirect_refused(void **state)
{
    static const struct step steps[] = {
        { ACT_SEND, "HTTP/1.1 301 Moved Permanently\r\n"
                    "Location: http://127.0.0.1:1/elsewhere\r\nContent-Length: 0\r\n\r\n" },
        { ACT_SEND, R204 },
    };
    struct fixture *f = fixture_new(state, steps, 2, PS_FLAGS_QUERY);
    ps_client_t *c = client_new(f, 0.01, 0.05);
    ps_result_t r;

    assert_int_equal(ps_client_remove(c, &f->m, 0, &r), PS_OUT_CONFIG);
    assert_int_equal(r.http_status, 301);
    assert_int_equal(r.attempts, 1);
    assert_string_equal(r.message,
                        "redirect to http://127.0.0.1:1/elsewhere refused: check api.url");
    server_collect(&f->srv);
    assert_int_equal(f->srv.ncap, 1);
    client_free(f);
    fixture_free(f);
}

static void test_client_huge_body(void **state)
{
    static const struct step steps[] = {
        { ACT_HUGE, "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
                    "Content-Length: 200000\r\n\r\n" },
        { ACT_HUGE, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 200000\r\n\r\n" },
        { ACT_SEND, R204 },
    };
    struct fixture *f = fixture_new(state, steps, 3, PS_FLAGS_QUERY);
    ps_client_t *c = client_new(f, 0.01, 0.05);
    ps_result_t r;

    assert_int_equal(ps_client_remove(c, &f->m, 0, &r), PS_OUT_REFUSED);
    assert_int_equal(r.http_status, 403);
    assert_int_equal(r.attempts, 1);
    assert_non_null(strstr(r.message, "response body too large"));
    /* a transient one is still retried */
    assert_int_equal(ps_client_remove(c, &f->m, 0, &r), PS_OUT_REMOVED);
    assert_int_equal(r.attempts, 2);
    client_free(f);
    fixture_free(f);
}

static void test_client_refused_not_retried(void **state)
{
    static const struct step steps[] = {
        { ACT_SEND, "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
                    "Content-Length: 61\r\n\r\n"
                    "{\"code\":\"forbidden\",\"message\":\"Cannot remove the last admin\"}" },
        { ACT_SEND, R204 },
    };
    struct fixture *f = fixture_new(state, steps, 2, PS_FLAGS_QUERY);
    ps_client_t *c = client_new(f, 0.01, 0.05);
    ps_result_t r;

    assert_int_equal(ps_client_remove(c, &f->m, 0, &r), PS_OUT_REFUSED);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.http_status, 403);
    assert_string_equal(r.message, "Cannot remove the last admin");
    client_free(f);
    fixture_free(f);
}

/* an API that echoes the credential does not get it into our messages */
static void test_client_secret_not_echoed(void **state)
{
    static const struct step steps[] = {
        { ACT_SEND, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 44\r\n\r\n"
                    "{\"message\":\"bad token " TOKEN_SECRET "\"}  " },
    };
    struct fixture *f = fixture_new(state, steps, 1, PS_FLAGS_QUERY);
    ps_client_t *c = client_new(f, 0.01, 0.05);
    ps_result_t r;

    assert_int_equal(ps_client_delete_once(c, &f->m, &r), PS_OUT_REFUSED);
    assert_int_equal(r.http_status, 401);
    assert_null(strstr(r.message, TOKEN_SECRET));
    assert_true(strlen(r.message) > 0);
    client_free(f);
    fixture_free(f);
}

static void set_proxy_env(const char *value)
{
    static const char *const names[] = {
        "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
    };
    size_t i;

    for(i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if(value)
            setenv(names[i], value, 1);
        else
            unsetenv(names[i]);
    }
}

/* proxies in the environment are ignored */
static void test_client_env_proxy_ignored(void **state)
{
    static const struct step steps[] = { { ACT_SEND, R204 } };
    struct fixture *f = fixture_new(state, steps, 1, PS_FLAGS_QUERY);
    ps_client_t *c;
    ps_result_t r;
    char bogus[64];

    snprintf(bogus, sizeof(bogus), "http://127.0.0.1:%d", closed_port());
    set_proxy_env(bogus);
    c = client_new(f, 0.01, 0.05);
    assert_int_equal(ps_client_delete_once(c, &f->m, &r), PS_OUT_REMOVED);
    client_free(f);
    set_proxy_env(NULL);
    server_collect(&f->srv);
    assert_int_equal(f->srv.ncap, 1);
    assert_true(!strncmp(f->srv.cap[0].data, "DELETE /v1/", 11));
    fixture_free(f);
}

/* the configured proxy is used, whatever no_proxy says */
static void test_client_config_proxy(void **state)
{
    static const struct step steps[] = { { ACT_SEND, R204 } };
    struct fixture *f = fixture_new(state, steps, 1, PS_FLAGS_QUERY);
    ps_client_t *c;
    ps_result_t r;
    char want[128];
    int port = closed_port();

    snprintf(f->proxy, sizeof(f->proxy), "http://127.0.0.1:%d", f->srv.port);
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/v1", port);
    f->cfg.proxy = f->proxy;
    setenv("no_proxy", "*", 1);
    setenv("NO_PROXY", "*", 1);
    c = client_new(f, 0.01, 0.05);
    assert_int_equal(ps_client_delete_once(c, &f->m, &r), PS_OUT_REMOVED);
    client_free(f);
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");
    server_collect(&f->srv);
    assert_int_equal(f->srv.ncap, 1);
    snprintf(want, sizeof(want), "DELETE http://127.0.0.1:%d/v1/organizations/acme/", port);
    assert_true(!strncmp(f->srv.cap[0].data, want, strlen(want)));
    fixture_free(f);
}

/* plain http to anything but loopback is refused before any network use */
static void test_client_https_only(void **state)
{
    struct fixture *f = fixture_new(state, NULL, 0, PS_FLAGS_QUERY);
    ps_client_t *c;
    ps_result_t r;

    snprintf(f->url, sizeof(f->url), "http://api.example.invalid/v1");
    c = client_new(f, 0.01, 0.05);
    assert_int_equal(ps_client_remove(c, &f->m, 0, &r), PS_OUT_CONFIG);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.http_status, 0);
    assert_non_null(strstr(r.message, "https"));
    assert_int_equal(ps_client_connects(c), 0);
    client_free(f);
    fixture_free(f);
}

static void test_client_dot_id(void **state)
{
    struct fixture *f = fixture_new(state, NULL, 0, PS_FLAGS_QUERY);
    ps_client_t *c = client_new(f, 0.01, 0.05);
    ps_result_t r;

    f->m.id = "..";
    assert_int_equal(ps_client_remove(c, &f->m, 0, &r), PS_OUT_CONFIG);
    assert_int_equal(r.attempts, 1);
    f->m.id = "x";
    f->m.organization = NULL;
    assert_int_equal(ps_client_remove(c, &f->m, 0, &r), PS_OUT_CONFIG);
    f->m.organization = "acme";
    f->cfg.auth_header = NULL;
    assert_int_equal(ps_client_remove(c, &f->m, 0, &r), PS_OUT_CONFIG);
    assert_int_equal(ps_client_connects(c), 0);
    client_free(f);
    fixture_free(f);
}

/* a second client after the first is freed works (no global state) */
static void test_client_twice(void **state)
{
    static const struct step steps[] = {
        { ACT_SEND_CLOSE, R204 },
        { ACT_SEND, R204 },
    };
    struct fixture *f = fixture_new(state, steps, 2, PS_FLAGS_BODY);
    ps_client_t *c;
    ps_result_t r;
    char err[128];

    assert_null(ps_client_new(NULL, err, sizeof(err)));
    assert_true(strlen(err) > 0);
    c = client_new(f, 0.01, 0.05);
    assert_int_equal(ps_client_delete_once(c, &f->m, &r), PS_OUT_REMOVED);
    client_free(f);
    c = client_new(f, 0.01, 0.05);
    assert_int_equal(ps_client_delete_once(c, &f->m, &r), PS_OUT_REMOVED);
    assert_int_equal(ps_client_connects(c), 1);
    client_free(f);
    ps_client_free(NULL);
    server_collect(&f->srv);
    assert_int_equal(f->srv.ncap, 2);
    check_body_request(&f->srv.cap[1]);
    fixture_free(f);
}

/* ================================================================ reads: client */

/* "HTTP/1.1 STATUS\r\n...\r\n\r\nBODY" with its Content-Length. malloc'd. */
static char *http_json(const char *status, const char *body)
{
    char *s = NULL;

    if(asprintf(&s,
                "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                status, strlen(body), body) < 0)
        s = NULL;
    assert_non_null(s);
    return s;
}

/* 1 when the request line is "GET TARGET HTTP/1.1". */
static int is_get(const struct capture *cap, const char *target)
{
    char want[512];

    snprintf(want, sizeof(want), "GET %s HTTP/1.1\r\n", target);
    return !strncmp(cap->data, want, strlen(want));
}

static void test_client_get_member(void **state)
{
    char *j = member_json("d4xkq1abc", "alice@example.com", "true");
    char *other = member_json("x9z8", "bob@example.com", "false");
    char *r200 = http_json("200 OK", j);
    char *r200other = http_json("200 OK", other);
    char *r200bad = http_json("200 OK", "{\"id\":\"m\",\"role\":\"member\",\"user\":{}}");
    char *r404 = http_json("404 Not Found", "{\"code\":\"not_found\",\"message\":\"Not Found\"}");
    struct step steps[] = {
        { ACT_SEND, r200 },
        { ACT_SEND, r200bad },
        { ACT_SEND, r200other },
        { ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!" },
        { ACT_SEND, R204 },
        { ACT_SEND, r404 },
        { ACT_SEND, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n" },
    };
    struct fixture *f = fixture_new(state, steps, sizeof(steps) / sizeof(steps[0]), PS_FLAGS_QUERY);
    ps_client_t *c = client_new(f, 0.01, 0.05);
    ps_member_t m;
    ps_result_t r;
    size_t i;

    assert_int_equal(ps_client_get_member_once(c, "acme", "d4xkq1abc", 0, &m, &r), PS_OUT_OK);
    assert_int_equal(r.outcome, PS_OUT_OK);
    assert_int_equal(r.http_status, 200);
    assert_int_equal(r.attempts, 1);
    assert_string_equal(m.user_id, "d4xkq1abc");
    assert_string_equal(m.email, "alice@example.com");
    assert_string_equal(m.id, "mbr_d4xkq1abc");
    assert_int_equal(m.directory_managed, 1);
    /* a 200 that is not a membership, or not this one, is never success */
    assert_int_equal(ps_client_get_member_once(c, "acme", "d4xkq1abc", 0, &m, &r),
                     PS_OUT_TRANSIENT);
    assert_int_equal(r.http_status, 200);
    assert_non_null(strstr(r.message, "not a well-formed membership: user.id is missing"));
    assert_string_equal(m.user_id, "");
    assert_int_equal(ps_client_get_member_once(c, "acme", "d4xkq1abc", 0, &m, &r),
                     PS_OUT_TRANSIENT);
    assert_non_null(strstr(r.message, "another user"));
    assert_string_equal(m.user_id, "");
    assert_int_equal(ps_client_get_member_once(c, "acme", "d4xkq1abc", 0, &m, &r),
                     PS_OUT_TRANSIENT);
    assert_non_null(strstr(r.message, "not one JSON object"));
    assert_int_equal(ps_client_get_member_once(c, "acme", "d4xkq1abc", 0, &m, &r),
                     PS_OUT_TRANSIENT);
    assert_int_equal(r.http_status, 204);
    assert_non_null(strstr(r.message, "unexpected HTTP status 204"));
    assert_int_equal(ps_client_get_member_once(c, "acme", "d4xkq1abc", 0, &m, &r), PS_OUT_ABSENT);
    assert_string_equal(r.message, "Not Found");
    assert_int_equal(ps_client_get_member_once(c, "acme", "d4xkq1abc", 0, &m, &r), PS_OUT_REFUSED);
    assert_int_equal(r.http_status, 401);
    assert_int_equal(ps_client_connects(c), 1);
    server_collect(&f->srv);
    assert_int_equal(f->srv.ncap, 7);
    for(i = 0; i < f->srv.ncap; i++) {
        assert_true(is_get(&f->srv.cap[i], "/v1/organizations/acme/members/d4xkq1abc"));
        assert_true(has_line(f->srv.cap[i].data, AUTH_LINE));
        assert_false(has_header(f->srv.cap[i].data, "Content-Length"));
        assert_false(has_header(f->srv.cap[i].data, "Content-Type"));
        assert_string_equal(req_body(&f->srv.cap[i]), "");
    }
    client_free(f);
    fixture_free(f);
    free(j);
    free(other);
    free(r200);
    free(r200other);
    free(r200bad);
    free(r404);
}

/* with retries: a malformed 200 and a 503 are retried, a 429 without
 * retries is handed back with its Retry-After */
static void test_client_get_member_retries(void **state)
{
    char *j = member_json("u1", "a@example.com", NULL);
    char *r200 = http_json("200 OK", j);
    struct step steps[] = {
        { ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}" },
        { ACT_SEND, R503 },
        { ACT_SEND, r200 },
        { ACT_SEND, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n"
                    "Content-Length: 0\r\n\r\n" },
        { ACT_SEND, R204 },
    };
    struct fixture *f = fixture_new(state, steps, sizeof(steps) / sizeof(steps[0]), PS_FLAGS_QUERY);
    ps_client_t *c = client_new(f, 0.01, 0.05);
    ps_member_t m;
    ps_result_t r;

    assert_int_equal(ps_client_get_member(c, "acme", "u1", 0, &m, &r), PS_OUT_OK);
    assert_int_equal(r.attempts, 3);
    assert_string_equal(m.email, "a@example.com");
    assert_int_equal(m.directory_managed, -1);
    assert_int_equal(ps_client_get_member_once(c, "acme", "u1", 0, &m, &r), PS_OUT_TRANSIENT);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.http_status, 429);
    assert_true(r.retry_after == 7.0);
    server_collect(&f->srv);
    assert_int_equal(f->srv.ncap, 4);
    client_free(f);
    fixture_free(f);
    free(j);
    free(r200);
}

/* an oversized 200 is not an answer; a bad id is not a request */
static void test_client_get_member_huge(void **state)
{
    static const struct step steps[] = {
        { ACT_HUGE, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    "Content-Length: 200000\r\n\r\n" },
    };
    struct fixture *f = fixture_new(state, steps, 1, PS_FLAGS_QUERY);
    ps_client_t *c = client_new(f, 0.01, 0.05);
    ps_member_t m;
    ps_result_t r;

    assert_int_equal(ps_client_get_member_once(c, "acme", "u1", 0, &m, &r), PS_OUT_TRANSIENT);
    assert_int_equal(r.http_status, 200);
    assert_non_null(strstr(r.message, "larger than"));
    assert_int_equal(ps_client_get_member(c, "acme", "..", 0, &m, &r), PS_OUT_CONFIG);
    assert_int_equal(r.attempts, 1);
    f->cfg.auth_header = NULL;
    assert_int_equal(ps_client_get_member(c, "acme", "u1", 0, &m, &r), PS_OUT_CONFIG);
    assert_int_equal(ps_client_probe_members(c, "acme", 0, &r), PS_OUT_CONFIG);
    assert_int_equal(ps_client_connects(c), 1);
    client_free(f);
    fixture_free(f);
}

struct seen {
    char ids[16][PS_ID_MAX + 1];
    size_t n;
    size_t stop_after; /* 0: never */
};

static int seen_cb(void *arg, const ps_member_t *m)
{
    struct seen *s = arg;

    if(s->n < 16)
        snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", m->user_id);
    s->n++;
    return s->stop_after && s->n >= s->stop_after;
}

/* Three pages of two members: next_page followed, one connection, paced. */
static void test_client_list_pages(void **state)
{
    char *m[5], *pg[3], *resp[3], data[4096];
    struct step steps[3];
    struct fixture *f;
    ps_client_t *c;
    ps_list_opts_t o;
    ps_result_t r;
    struct seen s;
    double t0, dt;
    size_t i;

    for(i = 0; i < 5; i++) {
        char uid[8], email[32];

        snprintf(uid, sizeof(uid), "u%zu", i + 1);
        snprintf(email, sizeof(email), "a+%zu@example.com", i + 1);
        m[i] = member_json(uid, email, i == 4 ? "true" : "false");
    }
    snprintf(data, sizeof(data), "%s,%s", m[0], m[1]);
    pg[0] = page_json(1, "2", "5", data);
    snprintf(data, sizeof(data), "%s,%s", m[2], m[3]);
    pg[1] = page_json(2, "3", "5", data);
    pg[2] = page_json(3, "null", "5", m[4]);
    for(i = 0; i < 3; i++) {
        resp[i] = http_json("200 OK", pg[i]);
        steps[i].action = ACT_SEND;
        steps[i].resp = resp[i];
    }
    f = fixture_new(state, steps, 3, PS_FLAGS_QUERY);
    f->cfg.rate_limit = 2.5; /* 2.45/s: at most 2 pages in any second */
    c = client_new(f, 0.01, 0.05);
    memset(&o, 0, sizeof(o));
    memset(&s, 0, sizeof(s));
    o.q = "a+";
    o.per_page = 2;
    t0 = ps_now();
    assert_int_equal(ps_client_list_members(c, "acme", &o, seen_cb, &s, &r), PS_OUT_OK);
    dt = ps_now() - t0;
    assert_int_equal(r.pages, 3);
    assert_int_equal(r.attempts, 3);
    assert_int_equal(s.n, 5);
    for(i = 0; i < 5; i++) {
        char uid[8];

        snprintf(uid, sizeof(uid), "u%zu", i + 1);
        assert_string_equal(s.ids[i], uid);
    }
    /* the third page waits until a second after the first */
    if(dt < 0.99)
        fail_msg("3 pages at 2.5/s took %.3f s", dt);
    assert_int_equal(ps_client_connects(c), 1);
    server_collect(&f->srv);
    assert_int_equal(f->srv.ncap, 3);
    assert_true(is_get(&f->srv.cap[0], "/v1/organizations/acme/members?q=a%2B&page=1&per_page=2"));
    assert_true(is_get(&f->srv.cap[1], "/v1/organizations/acme/members?q=a%2B&page=2&per_page=2"));
    assert_true(is_get(&f->srv.cap[2], "/v1/organizations/acme/members?q=a%2B&page=3&per_page=2"));
    client_free(f);
    fixture_free(f);
    for(i = 0; i < 5; i++)
        free(m[i]);
    for(i = 0; i < 3; i++) {
        free(pg[i]);
        free(resp[i]);
    }
}

/* A list that fails part-way is never handed out as the list. */
static void test_client_list_incomplete(void **state)
{
    char *m1 = member_json("u1", "a@example.com", "false");
    char *p1 = page_json(1, "2", "3", m1);
    char *p1again = page_json(1, "2", "3", m1);
    char *p2stuck = page_json(2, "2", "3", m1); /* next_page does not move */
    char *r1 = http_json("200 OK", p1), *r1b = http_json("200 OK", p1again);
    char *r2stuck = http_json("200 OK", p2stuck);
    char *r404 = http_json("404 Not Found", "{\"code\":\"not_found\",\"message\":\"Not Found\"}");
    struct step steps[] = {
        { ACT_SEND, r1 }, { ACT_SEND, r404 }, { ACT_SEND, r1b },  { ACT_SEND, r2stuck },
        { ACT_SEND, r1 }, { ACT_SEND, r1 },   { ACT_SEND, R503 },
    };
    struct fixture *f = fixture_new(state, steps, sizeof(steps) / sizeof(steps[0]), PS_FLAGS_QUERY);
    ps_client_t *c;
    ps_list_opts_t o;
    ps_member_t *all = (ps_member_t *)1;
    size_t n = 99;
    ps_result_t r;
    struct seen s;

    f->cfg.rate_limit = 1000;
    c = client_new(f, 0.01, 0.05);
    memset(&o, 0, sizeof(o));
    assert_int_equal(ps_client_list_members_all(c, "acme", &o, &all, &n, &r), PS_OUT_ABSENT);
    assert_null(all);
    assert_int_equal(n, 0);
    assert_int_equal(r.pages, 1);
    assert_int_equal(r.attempts, 2);
    assert_non_null(strstr(r.message, "organization acme does not exist"));
    assert_non_null(strstr(r.message, "read_organization"));
    assert_int_equal(ps_client_list_members_all(c, "acme", &o, &all, &n, &r), PS_OUT_TRANSIENT);
    assert_null(all);
    assert_non_null(strstr(r.message, "does not follow"));
    /* the caller stops it */
    memset(&s, 0, sizeof(s));
    s.stop_after = 1;
    assert_int_equal(ps_client_list_members(c, "acme", &o, seen_cb, &s, &r), PS_OUT_TRANSIENT);
    assert_non_null(strstr(r.message, "stopped by the caller"));
    /* the page bound */
    o.max_pages = 1;
    assert_int_equal(ps_client_list_members(c, "acme", &o, NULL, NULL, &r), PS_OUT_TRANSIENT);
    assert_non_null(strstr(r.message, "more than 1 pages"));
    assert_int_equal(r.pages, 1);
    /* no retries: a 503 ends it at once */
    o.max_pages = 0;
    assert_int_equal(ps_client_list_members(c, "acme", &o, NULL, NULL, &r), PS_OUT_TRANSIENT);
    assert_int_equal(r.http_status, 503);
    assert_int_equal(r.attempts, 1);
    server_collect(&f->srv);
    assert_int_equal(f->srv.ncap, 7);
    assert_true(is_get(&f->srv.cap[0], "/v1/organizations/acme/members?page=1&per_page=100"));
    assert_true(is_get(&f->srv.cap[1], "/v1/organizations/acme/members?page=2&per_page=100"));
    client_free(f);
    fixture_free(f);
    free(m1);
    free(p1);
    free(p1again);
    free(p2stuck);
    free(r1);
    free(r1b);
    free(r2stuck);
    free(r404);
}

/* with retries each page is retried; the byte bound stops a long list */
static void test_client_list_retry_and_bytes(void **state)
{
    char *m1 = member_json("u1", "a@example.com", "false");
    char *m2 = member_json("u2", "b@example.com", "false");
    char *p1 = page_json(1, "2", "2", m1);
    char *p2 = page_json(2, "null", "2", m2);
    char *r1 = http_json("200 OK", p1), *r2 = http_json("200 OK", p2);
    struct step steps[] = {
        { ACT_SEND, R503 },
        { ACT_SEND, r1 },
        { ACT_SEND, "HTTP/1.1 200 OK\r\n"
                    "Content-Length: 3\r\n\r\n{}x" },
        { ACT_SEND, r2 },
        { ACT_SEND, r1 },
        { ACT_SEND, r2 },
    };
    struct fixture *f = fixture_new(state, steps, sizeof(steps) / sizeof(steps[0]), PS_FLAGS_QUERY);
    ps_client_t *c;
    ps_list_opts_t o;
    ps_member_t *all = NULL;
    size_t n = 0;
    ps_result_t r;

    f->cfg.rate_limit = 1000;
    c = client_new(f, 0.01, 0.05);
    memset(&o, 0, sizeof(o));
    o.retry = 1;
    assert_int_equal(ps_client_list_members_all(c, "acme", &o, &all, &n, &r), PS_OUT_OK);
    assert_int_equal(n, 2);
    assert_string_equal(all[0].user_id, "u1");
    assert_string_equal(all[1].user_id, "u2");
    assert_int_equal(r.attempts, 4);
    assert_int_equal(r.pages, 2);
    free(all);
    /* room for the first page only */
    o.retry = 0;
    o.max_bytes = strlen(p1) + 10;
    assert_int_equal(ps_client_list_members_all(c, "acme", &o, &all, &n, &r), PS_OUT_TRANSIENT);
    assert_null(all);
    assert_non_null(strstr(r.message, "larger than"));
    client_free(f);
    fixture_free(f);
    free(m1);
    free(m2);
    free(p1);
    free(p2);
    free(r1);
    free(r2);
}

static void test_client_probe(void **state)
{
    char *p = page_json(1, "2", "40", "");
    char *r200 = http_json("200 OK", p);
    char *r404 = http_json("404 Not Found", "{\"code\":\"not_found\",\"message\":\"Not Found\"}");
    struct step steps[] = {
        { ACT_SEND, r200 },
        { ACT_SEND, r404 },
        { ACT_SEND, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n" },
        { ACT_SEND, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n" },
        { ACT_SEND, R503 },
        { ACT_SEND, r200 },
        { ACT_SEND, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]" },
    };
    struct fixture *f = fixture_new(state, steps, sizeof(steps) / sizeof(steps[0]), PS_FLAGS_QUERY);
    ps_client_t *c;
    ps_result_t r;

    f->cfg.rate_limit = 1000;
    c = client_new(f, 0.01, 0.05);
    assert_int_equal(ps_client_probe_members_once(c, "acme", 0, &r), PS_OUT_OK);
    assert_int_equal(r.http_status, 200);
    assert_int_equal(ps_client_probe_members_once(c, "acme", 0, &r), PS_OUT_ABSENT);
    assert_non_null(strstr(r.message, "cannot see it or lacks read_organization"));
    assert_int_equal(ps_client_probe_members_once(c, "acme", 0, &r), PS_OUT_REFUSED);
    assert_non_null(strstr(r.message, "the credential is not valid"));
    assert_int_equal(ps_client_probe_members_once(c, "acme", 0, &r), PS_OUT_REFUSED);
    assert_non_null(strstr(r.message, "may not read the member list of acme"));
    assert_int_equal(ps_client_probe_members(c, "acme", 0, &r), PS_OUT_OK);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(ps_client_probe_members_once(c, "acme", 0, &r), PS_OUT_TRANSIENT);
    assert_non_null(strstr(r.message, "not well-formed"));
    server_collect(&f->srv);
    assert_int_equal(f->srv.ncap, 7);
    assert_true(is_get(&f->srv.cap[0], "/v1/organizations/acme/members?page=1&per_page=1"));
    client_free(f);
    fixture_free(f);
    free(p);
    free(r200);
    free(r404);
}

/* the deadline bounds a list, pacing included */
static void test_client_list_deadline(void **state)
{
    char *p1 = page_json(1, "2", "9", "");
    char *r1 = http_json("200 OK", p1);
    struct step steps[] = { { ACT_SEND, r1 }, { ACT_SEND, r1 } };
    struct fixture *f = fixture_new(state, steps, 2, PS_FLAGS_QUERY);
    ps_client_t *c;
    ps_list_opts_t o;
    ps_result_t r;
    double t0;

    f->cfg.rate_limit = 0.5; /* 2 s between pages */
    c = client_new(f, 0.01, 0.05);
    memset(&o, 0, sizeof(o));
    t0 = ps_now();
    o.deadline = t0 + 1;
    assert_int_equal(ps_client_list_members(c, "acme", &o, NULL, NULL, &r), PS_OUT_TRANSIENT);
    assert_non_null(strstr(r.message, "deadline"));
    assert_int_equal(r.pages, 1);
    if(ps_now() - t0 > 0.9)
        fail_msg("waited %.3f s for a slot past the deadline", ps_now() - t0);
    client_free(f);
    fixture_free(f);
    free(p1);
    free(r1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_query_mode),
        cmocka_unit_test(test_url_body_mode),
        cmocka_unit_test(test_url_escaping),
        cmocka_unit_test(test_url_rejects),
        cmocka_unit_test(test_url_base_with_path),
        cmocka_unit_test(test_body),
        cmocka_unit_test(test_classify_classes),
        cmocka_unit_test(test_classify_message),
        cmocka_unit_test(test_classify_not_json),
        cmocka_unit_test(test_classify_binary),
        cmocka_unit_test(test_classify_huge),
        cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_retry_after_date),
        cmocka_unit_test(test_retry_after_garbage),
        cmocka_unit_test(test_retry_after_huge),
        cmocka_unit_test(test_outcome_name),
        cmocka_unit_test(test_list_url),
        cmocka_unit_test(test_parse_member_good),
        cmocka_unit_test(test_parse_member_long_name),
        cmocka_unit_test(test_parse_member_bad),
        cmocka_unit_test(test_parse_member_email_len),
        cmocka_unit_test(test_parse_page_good),
        cmocka_unit_test(test_parse_page_bad),
        cmocka_unit_test(test_parse_page_too_many),
        cmocka_unit_test_teardown(test_client_query_request, fixture_teardown),
        cmocka_unit_test_teardown(test_client_body_retry_reuse, fixture_teardown),
        cmocka_unit_test_teardown(test_client_reuse_many, fixture_teardown),
        cmocka_unit_test_teardown(test_client_mode_switch_no_leak, fixture_teardown),
        cmocka_unit_test_teardown(test_client_retry_after, fixture_teardown),
        cmocka_unit_test_teardown(test_client_retry_after_capped, fixture_teardown),
        cmocka_unit_test_teardown(test_client_deadline_stops_retry, fixture_teardown),
        cmocka_unit_test_teardown(test_client_timeout_bounded, fixture_teardown),
        cmocka_unit_test_teardown(test_client_connect_refused, fixture_teardown),
        cmocka_unit_test_teardown(test_client_redirect_refused, fixture_teardown),
        cmocka_unit_test_teardown(test_client_huge_body, fixture_teardown),
        cmocka_unit_test_teardown(test_client_refused_not_retried, fixture_teardown),
        cmocka_unit_test_teardown(test_client_secret_not_echoed, fixture_teardown),
        cmocka_unit_test_teardown(test_client_env_proxy_ignored, fixture_teardown),
        cmocka_unit_test_teardown(test_client_config_proxy, fixture_teardown),
        cmocka_unit_test_teardown(test_client_https_only, fixture_teardown),
        cmocka_unit_test_teardown(test_client_dot_id, fixture_teardown),
        cmocka_unit_test_teardown(test_client_twice, fixture_teardown),
        cmocka_unit_test_teardown(test_client_get_member, fixture_teardown),
        cmocka_unit_test_teardown(test_client_get_member_retries, fixture_teardown),
        cmocka_unit_test_teardown(test_client_get_member_huge, fixture_teardown),
        cmocka_unit_test_teardown(test_client_list_pages, fixture_teardown),
        cmocka_unit_test_teardown(test_client_list_incomplete, fixture_teardown),
        cmocka_unit_test_teardown(test_client_list_retry_and_bytes, fixture_teardown),
        cmocka_unit_test_teardown(test_client_probe, fixture_teardown),
        cmocka_unit_test_teardown(test_client_list_deadline, fixture_teardown),
    };

    /* the client must not depend on the caller's proxy environment */
    set_proxy_env(NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
