/* test_members.c - unit tests of src/members.c (cmocka): the organizations
 * of a configuration, the login index, the words of `check --online`. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_organizations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_index, setup, teardown),
        cmocka_unit_test(test_online_explain),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
