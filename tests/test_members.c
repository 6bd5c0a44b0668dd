/* test_members.c - unit tests of src/members.c (cmocka): the organizations
 * of a configuration, the login index, the words of `check --online`, the
 * cache of resolved emails and the resolver's use of it. The resolver's
 * requests are tested against the simulator (test_members_cli.py). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "config.h"
#include "members.h"
#include "util.h"

struct fx {
    char dir[64];
    char path[256];
    char err[1024];
    ps_config_t *cfg;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fx *t = calloc(1, sizeof(*t));

    if(!t)
        return -1;
    snprintf(t->dir, sizeof(t->dir), "/tmp/test_members.XXXXXX");
    if(!mkdtemp(t->dir))
        return -1;
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct fx *t = *state;

    ps_config_free(t->cfg);
    nftw(t->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(t);
    return 0;
}

/* Loads a configuration made of `text` (no credential needed). */
static ps_config_t *load(struct fx *t, const char *text)
{
    size_t len = strlen(text);
    int fd;

    snprintf(t->path, sizeof(t->path), "%s/main.conf", t->dir);
    fd = open(t->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    ps_config_free(t->cfg);
    t->cfg = NULL;
    if(ps_config_load(&t->cfg, t->path, 0, t->err, sizeof(t->err)) != 0)
        fail_msg("config: %s", t->err);
    return t->cfg;
}

/* ------------------------------------------------------------ organizations */

static void test_organizations(void **state)
{
    struct fx *t = *state;
    const char **orgs;
    size_t n;

    load(t, "organization = \"acme\";\n"
            "users = ( { login = \"a\"; id = \"u1\"; },\n"
            "          { login = \"b\"; id = \"u2\"; organization = \"zeta\"; },\n"
            "          { login = \"c\"; id = \"u3\"; organization = \"acme\"; },\n"
            "          { login = \"d\"; id = \"u4\"; organization = \"beta\"; },\n"
            "          { login = \"e\"; id = \"u5\"; organization = \"zeta\"; } );\n");
    assert_int_equal(ps_config_organizations(t->cfg, &orgs, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(orgs[0], "acme");
    assert_string_equal(orgs[1], "beta");
    assert_string_equal(orgs[2], "zeta");
    free(orgs);
    /* no default organization and no user: none */
    load(t, "users = ();\n");
    assert_int_equal(ps_config_organizations(t->cfg, &orgs, &n), 0);
    assert_int_equal(n, 0);
    free(orgs);
    /* only the default */
    load(t, "organization = \"solo\";\n");
    assert_int_equal(ps_config_organizations(t->cfg, &orgs, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(orgs[0], "solo");
    free(orgs);
}

/* ------------------------------------------------------------ login index */

static ps_member_t member(const char *uid, const char *email)
{
    ps_member_t m;

    memset(&m, 0, sizeof(m));
    snprintf(m.user_id, sizeof(m.user_id), "%s", uid);
    snprintf(m.email, sizeof(m.email), "%s", email);
    m.directory_managed = -1;
    return m;
}

static void test_login_index(void **state)
{
    struct fx *t = *state;
    ps_login_index_t *ix;
    const char *logins[4];
    ps_member_t m;

    load(t, "organization = \"acme\";\n"
            "users = ( { login = \"zoe\"; id = \"u1\"; },\n"
            "          { login = \"amy\"; id = \"u1\"; },\n"
            "          { login = \"bob\"; id = \"u2\"; organization = \"other\"; },\n"
            "          { login = \"cat\"; id = \"u3\"; organization = \"acme\"; },\n"
            "          { login = \"dan\"; id = \"u1\"; },\n"
            "          { login = \"eve\"; id = \"u1\"; },\n"
            "          { login = \"fay\"; id = \"u1\"; } );\n");
    ix = ps_login_index_new(t->cfg, "acme");
    assert_non_null(ix);
    m = member("u1", "x@example.com");
    assert_int_equal(ps_login_index_find(ix, &m, logins, 4), 5);
    assert_string_equal(logins[0], "amy");
    assert_string_equal(logins[1], "dan");
    assert_string_equal(logins[2], "eve");
    assert_string_equal(logins[3], "fay");
    m = member("u3", "");
    assert_int_equal(ps_login_index_find(ix, &m, logins, 4), 1);
    assert_string_equal(logins[0], "cat");
    /* bob is mapped in another organization */
    m = member("u2", "");
    assert_int_equal(ps_login_index_find(ix, &m, logins, 4), 0);
    m = member("u0", "");
    assert_int_equal(ps_login_index_find(ix, &m, logins, 4), 0);
    m = member("u10", "");
    assert_int_equal(ps_login_index_find(ix, &m, logins, 4), 0);
    assert_int_equal(ps_login_index_find(NULL, &m, logins, 4), 0);
    ps_login_index_free(ix);
    ix = ps_login_index_new(t->cfg, "other");
    assert_non_null(ix);
    m = member("u2", "");
    assert_int_equal(ps_login_index_find(ix, &m, logins, 4), 1);
    assert_string_equal(logins[0], "bob");
    ps_login_index_free(ix);
    ps_login_index_free(NULL);
}

/* ------------------------------------------------------------ check --online */

static void explain(ps_outcome_t o, long status, const char *msg, char *out, size_t len)
{
    ps_result_t r;

    memset(&r, 0, sizeof(r));
    r.http_status = status;
    snprintf(r.message, sizeof(r.message), "%s", msg);
    ps_online_explain("acme", o, &r, out, len);
}

static void test_online_explain(void **state)
{
    char out[1024];

    (void)state;
    explain(PS_OUT_OK, 200, "", out, sizeof(out));
    assert_string_equal(out, "the token can read the member list of acme (read_organization)");
    explain(PS_OUT_REFUSED, 401, "Unauthorized", out, sizeof(out));
    assert_true(!strncmp(out, "the token is invalid", 20));
    explain(PS_OUT_ABSENT, 404, "Not Found", out, sizeof(out));
    assert_true(!strncmp(out,
                         "the token cannot see organization acme or lacks read_organization "
                         "(HTTP 404)",
                         strlen("the token cannot see organization acme or lacks "
                                "read_organization (HTTP 404)")));
    explain(PS_OUT_REFUSED, 403, "Forbidden", out, sizeof(out));
    assert_non_null(strstr(out, "lacks read_organization (HTTP 403)"));
    explain(PS_OUT_REFUSED, 422, "bad \"x\"\n", out, sizeof(out));
    assert_non_null(strstr(out, "(HTTP 422): bad \\x22x\\x22\\x0a"));
    explain(PS_OUT_TRANSIENT, 0, "Connection refused", out, sizeof(out));
    assert_string_equal(out, "the API is unreachable: Connection refused");
    explain(PS_OUT_TRANSIENT, 503, "maintenance", out, sizeof(out));
    assert_string_equal(out, "the API is unavailable (HTTP 503): maintenance");
    explain(PS_OUT_CONFIG, 0, "certificate", out, sizeof(out));
    assert_string_equal(out, "certificate");
    explain(PS_OUT_OK, 200, "", out, 10);
    assert_string_equal(out, "the token");
}

/* ------------------------------------------------------------ email cache */

static void test_cache_name(void **state)
{
    char a[32], b[32], c[32];

    (void)state;
    ps_email_cache_name("acme", "Alice@Example.com", a);
    ps_email_cache_name("acme", "alice@example.COM", b);
    ps_email_cache_name("other", "alice@example.com", c);
    assert_string_equal(a, b); /* one file whatever the case */
    assert_string_not_equal(a, c);
    assert_int_equal(strlen(a), 7 + 16);
    assert_true(!strncmp(a, ".email-", 7));
}

static void test_cache_parse(void **state)
{
    static const struct {
        const char *body;
        const char *why;
    } bad[] = {
        { "", "not one JSON object" },
        { "[]", "not one JSON object" },
        { "{\"version\":1,\"organization\":\"acme\",\"email\":\"a@x.io\",\"id\":\"u1\","
          "\"resolved\":5} x",
          "not one JSON object" },
        { "{\"version\":2,\"organization\":\"acme\",\"email\":\"a@x.io\",\"id\":\"u1\","
          "\"resolved\":5}",
          "version" },
        { "{\"version\":\"1\",\"organization\":\"acme\",\"email\":\"a@x.io\",\"id\":\"u1\","
          "\"resolved\":5}",
          "version" },
        { "{\"version\":1,\"organization\":\"..\",\"email\":\"a@x.io\",\"id\":\"u1\","
          "\"resolved\":5}",
          "organization" },
        { "{\"version\":1,\"organization\":\"acme\",\"email\":\"nope\",\"id\":\"u1\","
          "\"resolved\":5}",
          "email" },
        { "{\"version\":1,\"organization\":\"acme\",\"email\":\"a@x.io\",\"id\":\"u/1\","
          "\"resolved\":5}",
          "id is not" },
        { "{\"version\":1,\"organization\":\"acme\",\"email\":\"a@x.io\",\"id\":\"u\\u00001\","
          "\"resolved\":5}",
          "id is not" },
        { "{\"version\":1,\"organization\":\"acme\",\"email\":\"a@x.io\",\"id\":\"u1\","
          "\"resolved\":\"5\"}",
          "resolved" },
        { "{\"version\":1,\"organization\":\"acme\",\"email\":\"a@x.io\",\"id\":\"u1\"}",
          "missing" },
        { "{\"version\":1,\"organization\":\"acme\",\"email\":\"a@x.io\",\"id\":\"u1\","
          "\"resolved\":5,\"token\":\"x\"}",
          "unknown field" },
    };
    ps_email_cache_entry_t e, back;
    char err[256], *txt;
    size_t i;

    (void)state;
    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if(ps_email_cache_parse(bad[i].body, strlen(bad[i].body), &e, err, sizeof(err)) != -1)
            fail_msg("accepted %s", bad[i].body);
        if(!strstr(err, bad[i].why))
            fail_msg("%s: \"%s\" does not say \"%s\"", bad[i].body, err, bad[i].why);
        assert_string_equal(e.id, "");
    }
    memset(&e, 0, sizeof(e));
    snprintf(e.organization, sizeof(e.organization), "acme");
    snprintf(e.email, sizeof(e.email), "Alice+x@Example.com");
    snprintf(e.id, sizeof(e.id), "d4xkq1abc");
    e.resolved = 1700000000;
    txt = ps_email_cache_format(&e);
    assert_non_null(txt);
    assert_int_equal(ps_email_cache_parse(txt, strlen(txt), &back, err, sizeof(err)), 0);
    assert_string_equal(back.organization, "acme");
    assert_string_equal(back.email, "Alice+x@Example.com");
    assert_string_equal(back.id, "d4xkq1abc");
    assert_true(back.resolved == 1700000000);
    free(txt);
}

static void test_cache_get_put(void **state)
{
    struct fx *t = *state;
    char q[128], id[PS_ID_MAX + 1], err[512], name[32], path[256], target[128];
    struct stat st;

    snprintf(q, sizeof(q), "%s/queue", t->dir);
    /* no queue directory yet: not cached */
    assert_int_equal(ps_email_cache_get(q, "acme", "a@x.io", id, err, sizeof(err)), 1);
    assert_int_equal(ps_email_cache_put(q, "acme", "A@X.io", "u1", err, sizeof(err)), 0);
    assert_int_equal(stat(q, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    ps_email_cache_name("acme", "a@x.io", name);
    snprintf(path, sizeof(path), "%s/%s", q, name);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(ps_email_cache_get(q, "acme", "a@x.io", id, err, sizeof(err)), 0);
    assert_string_equal(id, "u1");
    assert_int_equal(ps_email_cache_get(q, "acme", "b@x.io", id, err, sizeof(err)), 1);
    assert_int_equal(ps_email_cache_get(q, "other", "a@x.io", id, err, sizeof(err)), 1);
    /* a new resolution replaces the old one */
    assert_int_equal(ps_email_cache_put(q, "acme", "a@x.io", "u2", err, sizeof(err)), 0);
    assert_int_equal(ps_email_cache_get(q, "acme", "A@x.IO", id, err, sizeof(err)), 0);
    assert_string_equal(id, "u2");
    assert_int_equal(ps_email_cache_put(q, "acme", "nope", "u2", err, sizeof(err)), -1);
    assert_int_equal(ps_email_cache_put(q, "acme", "a@x.io", "..", err, sizeof(err)), -1);
    /* a file that others could have written is not trusted */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(ps_email_cache_get(q, "acme", "a@x.io", id, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "chmod 600"));
    assert_int_equal(chmod(path, 0600), 0);
    /* nor a symlink */
    snprintf(target, sizeof(target), "%s/target", t->dir);
    assert_int_equal(rename(path, target), 0);
    assert_int_equal(symlink(target, path), 0);
    assert_int_equal(ps_email_cache_get(q, "acme", "a@x.io", id, err, sizeof(err)), -1);
    unlink(path);
    unlink(target);
    /* nor garbage */
    assert_int_equal(ps_email_cache_put(q, "acme", "a@x.io", "u3", err, sizeof(err)), 0);
    {
        int fd = open(path, O_WRONLY | O_TRUNC);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, "{\"id\":\"evil\"}", 14), 14);
        close(fd);
    }
    assert_int_equal(ps_email_cache_get(q, "acme", "a@x.io", id, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a valid email cache file"));
    assert_string_equal(id, "");
    /* nor a directory others may write into */
    assert_int_equal(chmod(q, 0755), 0);
    assert_int_equal(ps_email_cache_get(q, "acme", "a@x.io", id, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "chmod 700"));
    assert_int_equal(chmod(q, 0700), 0);
}

static void test_resolve_from_cache(void **state)
{
    struct fx *t = *state;
    char q[128], id[PS_ID_MAX + 1], err[512];
    ps_result_t r;
    int from_cache = -1;

    snprintf(q, sizeof(q), "%s/queue", t->dir);
    /* no client and not cached: needs a request */
    assert_int_equal(ps_resolve_email(NULL, q, "acme", "a@x.io", 0, 0, id, &from_cache, &r),
                     PS_OUT_TRANSIENT);
    assert_int_equal(from_cache, 0);
    assert_int_equal(r.attempts, 0);
    assert_non_null(strstr(r.message, "needs a request"));
    assert_int_equal(ps_email_cache_put(q, "acme", "a@x.io", "u1", err, sizeof(err)), 0);
    assert_int_equal(ps_resolve_email(NULL, q, "acme", "A@X.IO", 0, 0, id, &from_cache, &r),
                     PS_OUT_OK);
    assert_int_equal(from_cache, 1);
    assert_string_equal(id, "u1");
    assert_int_equal(r.attempts, 0);
    /* a refresh ignores the cache */
    assert_int_equal(
        ps_resolve_email(NULL, q, "acme", "a@x.io", 0, PS_RESOLVE_REFRESH, id, &from_cache, &r),
        PS_OUT_TRANSIENT);
    assert_string_equal(id, "");
    assert_int_equal(ps_resolve_email(NULL, q, "acme", "not an email", 0, 0, id, NULL, &r),
                     PS_OUT_CONFIG);
    assert_int_equal(ps_resolve_email(NULL, q, "../acme", "a@x.io", 0, 0, id, NULL, &r),
                     PS_OUT_CONFIG);
    /* an untrusted cache is a configuration problem, not a miss */
    assert_int_equal(chmod(q, 0750), 0);
    assert_int_equal(ps_resolve_email(NULL, q, "acme", "a@x.io", 0, 0, id, NULL, &r),
                     PS_OUT_CONFIG);
    assert_non_null(strstr(r.message, "may not be trusted"));
    assert_int_equal(chmod(q, 0700), 0);
}

static void test_login_index_email(void **state)
{
    struct fx *t = *state;
    ps_login_index_t *ix;
    const char *logins[4];
    ps_member_t m;

    load(t, "organization = \"acme\";\n"
            "users = ( { login = \"ann\"; email = \"Ann@Example.co\"; },\n"
            "          { login = \"ann2\"; id = \"a1\"; },\n"
            "          { login = \"bea\"; email = \"ann@example.com\"; },\n"
            "          { login = \"cy\"; email = \"ann@example.co\"; organization = \"o\"; } );\n");
    ix = ps_login_index_new(t->cfg, "acme");
    assert_non_null(ix);
    /* by email, ignoring case, and by id */
    m = member("a1", "ANN@example.CO");
    assert_int_equal(ps_login_index_find(ix, &m, logins, 4), 2);
    assert_string_equal(logins[0], "ann");
    assert_string_equal(logins[1], "ann2");
    /* a prefix is not a match */
    m = member("b1", "ann@example.com");
    assert_int_equal(ps_login_index_find(ix, &m, logins, 4), 1);
    assert_string_equal(logins[0], "bea");
    m = member("c1", "ann@example.c");
    assert_int_equal(ps_login_index_find(ix, &m, logins, 4), 0);
    m = member("c1", "");
    assert_int_equal(ps_login_index_find(ix, &m, logins, 4), 0);
    ps_login_index_free(ix);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_organizations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_index, setup, teardown),
        cmocka_unit_test(test_online_explain),
        cmocka_unit_test(test_cache_name),
        cmocka_unit_test(test_cache_parse),
        cmocka_unit_test_setup_teardown(test_cache_get_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_from_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_index_email, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
