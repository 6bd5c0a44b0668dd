/* test_config.c - unit tests for src/config.c (cmocka).
 * Every test writes its files into a fresh mkdtemp() directory. */
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "util.h"

struct fx {
    char dir[64];
    char path[256]; /* last file written */
    char main[256]; /* main.conf */
    char err[1024];
    ps_config_t *cfg;
};

#define SECRET "s3cr3t-TOKEN-value-0123456789"

/* ------------------------------------------------------------ clock */

/* This test is linked with -Wl,--wrap=ps_now: config.c's calls to ps_now()
 * come here. With fake_step > 0 every call advances a fake clock by that
 * much, so that a deadline passes at an exact point of the load; else it is
 * the real clock. */
double __real_ps_now(void);
double __wrap_ps_now(void);
static double fake_step;
static double fake_clock;

double __wrap_ps_now(void)
{
    if(fake_step <= 0)
        return __real_ps_now();
    fake_clock += fake_step;
    return fake_clock;
}

/* ------------------------------------------------------------ helpers */

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
    snprintf(t->dir, sizeof(t->dir), "/tmp/test_config.XXXXXX");
    if(!mkdtemp(t->dir))
        return -1;
    snprintf(t->main, sizeof(t->main), "%s/main.conf", t->dir);
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

/* Writes dir/name with the given mode; returns its path (in t->path). */
static const char *put(struct fx *t, const char *name, mode_t mode, const char *text)
{
    int fd;
    size_t len = strlen(text);

    snprintf(t->path, sizeof(t->path), "%s/%s", t->dir, name);
    unlink(t->path);
    fd = open(t->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
    return t->path;
}

static void put_main(struct fx *t, const char *text)
{
    put(t, "main.conf", 0600, text);
}

static int load(struct fx *t, int require_auth)
{
    ps_config_free(t->cfg);
    t->cfg = NULL;
    t->err[0] = '\0';
    return ps_config_load(&t->cfg, t->main, require_auth, t->err, sizeof(t->err));
}

static void assert_contains(const char *hay, const char *needle)
{
    if(!strstr(hay, needle)) {
        print_error("\"%s\" does not contain \"%s\"\n", hay, needle);
        fail();
    }
}

static void assert_lacks(const char *hay, const char *needle)
{
    if(strstr(hay, needle)) {
        print_error("\"%s\" contains \"%s\"\n", hay, needle);
        fail();
    }
}

/* Loads t->main, expects failure with "FILE:LINE:" and a fragment. */
static void expect_error_at(struct fx *t, const char *file, int line, const char *fragment)
{
    char where[320];

    if(load(t, 0) == 0) {
        print_error("load succeeded, expected \"%s\"\n", fragment);
        fail();
    }
    assert_null(t->cfg);
    snprintf(where, sizeof(where), "%s:%d: ", file ? file : t->main, line);
    assert_contains(t->err, where);
    if(fragment)
        assert_contains(t->err, fragment);
}

static void expect_ok(struct fx *t, int require_auth)
{
    if(load(t, require_auth) != 0) {
        print_error("load failed: %s\n", t->err);
        fail();
    }
    assert_non_null(t->cfg);
}

/* A main file: credential + default organization, then `rest`. */
static void put_main_with(struct fx *t, const char *rest)
{
    char text[8192];

    snprintf(text, sizeof(text),
             "organization = \"acme\";\n"
             "api = { token_id = \"tid\"; token = \"" SECRET "\"; };\n"
             "%s",
             rest);
    put_main(t, text);
}

/* ------------------------------------------------------------ valid */

static void test_full_config(void **state)
{
    struct fx *t = *state;
    ps_mapping_t m;

    put_main(t, "# every key\n"
                "organization = \"acme\";\n"
                "api = {\n"
                "  url = \"https://api.example.com/v1//\";\n"
                "  token_id = \"abc123\";\n"
                "  token = \"pscale_tkn_XYZ\";\n"
                "  cleanup_flags = \"body\";\n"
                "  timeout = 12.5;\n"
                "  connect_timeout = 3;\n"
                "  retries = 7;\n"
                "  rate_limit = 2.5;\n"
                "  ca_file = \"/etc/ssl/certs/ca-certificates.crt\";\n"
                "  proxy = \"http://proxy.internal:3128\";\n"
                "};\n"
                "defaults = { delete_passwords = false; delete_service_tokens = true; };\n"
                "unmapped = \"error\";\n"
                "users = (\n"
                "  { login = \"alice\"; id = \"d4xkq1abc\"; },\n"
                "  { login = \"bob\"; id = \"x9z8\"; organization = \"acme-eu\";\n"
                "    delete_passwords = true; delete_service_tokens = false; }\n"
                ");\n"
                "queue = { dir = \"/var/spool/ps-test\"; max_age_days = 7; };\n"
                "pam_services = [ \"planetscale-deprovision\", \"sshd-offboard\" ];\n"
                "expired_grace_days = 14;\n"
                "reconcile = { confirm_runs = 3; confirm_interval = 7200; max_removals = 25;\n"
                "  max_fraction = 0.5; };\n");
    expect_ok(t, 1);
    assert_int_equal(t->cfg->expired_grace_days, 14);
    assert_int_equal(t->cfg->reconcile.confirm_runs, 3);
    assert_int_equal(t->cfg->reconcile.confirm_interval, 7200);
    assert_int_equal(t->cfg->reconcile.max_removals, 25);
    assert_true(t->cfg->reconcile.max_fraction == 0.5);

    assert_string_equal(t->cfg->path, t->main);
    assert_string_equal(t->cfg->organization, "acme");
    assert_string_equal(t->cfg->api_url, "https://api.example.com/v1");
    assert_string_equal(t->cfg->auth_header, "Authorization: abc123:pscale_tkn_XYZ");
    assert_int_equal(t->cfg->auth_is_oauth, 0);
    assert_int_equal(t->cfg->flags_mode, PS_FLAGS_BODY);
    assert_true(t->cfg->timeout == 12.5);
    assert_true(t->cfg->connect_timeout == 3.0);
    assert_int_equal(t->cfg->retries, 7);
    assert_true(t->cfg->rate_limit == 2.5);
    assert_string_equal(t->cfg->ca_file, "/etc/ssl/certs/ca-certificates.crt");
    assert_string_equal(t->cfg->proxy, "http://proxy.internal:3128");
    assert_int_equal(t->cfg->def_delete_passwords, 0);
    assert_int_equal(t->cfg->def_delete_service_tokens, 1);
    assert_int_equal(t->cfg->unmapped, PS_UNMAPPED_ERROR);
    assert_null(t->cfg->include_dir);
    assert_string_equal(t->cfg->queue_dir, "/var/spool/ps-test");
    assert_int_equal(t->cfg->max_age_days, 7);
    assert_int_equal(t->cfg->npam_services, 2);
    assert_true(ps_config_pam_service_allowed(t->cfg, "sshd-offboard"));
    assert_true(ps_config_pam_service_allowed(t->cfg, "planetscale-deprovision"));
    assert_false(ps_config_pam_service_allowed(t->cfg, "sshd"));
    assert_false(ps_config_pam_service_allowed(t->cfg, NULL));

    assert_int_equal(t->cfg->nusers, 2);
    assert_string_equal(t->cfg->users[0].login, "alice");
    assert_string_equal(t->cfg->users[0].file, t->main);
    assert_int_equal(t->cfg->users[0].line, 18);
    assert_int_equal(t->cfg->users[1].line, 19);

    assert_int_equal(ps_config_map(t->cfg, "alice", &m), 0);
    assert_string_equal(m.login, "alice");
    assert_string_equal(m.id, "d4xkq1abc");
    assert_string_equal(m.organization, "acme");
    assert_int_equal(m.delete_passwords, 0);      /* default */
    assert_int_equal(m.delete_service_tokens, 1); /* default */

    assert_int_equal(ps_config_map(t->cfg, "bob", &m), 0);
    assert_string_equal(m.id, "x9z8");
    assert_string_equal(m.organization, "acme-eu");
    assert_int_equal(m.delete_passwords, 1);
    assert_int_equal(m.delete_service_tokens, 0);

    assert_int_equal(ps_config_map(t->cfg, "carol", &m), 1);
    assert_int_equal(ps_config_map(t->cfg, "", &m), 1);
}

static void test_defaults(void **state)
{
    struct fx *t = *state;

    put_main(t, "");
    expect_ok(t, 0);
    assert_null(t->cfg->organization);
    assert_null(t->cfg->auth_header);
    assert_string_equal(t->cfg->api_url, PS_DEFAULT_API_URL);
    assert_int_equal(t->cfg->flags_mode, PS_FLAGS_QUERY);
    assert_true(t->cfg->timeout == 10);
    assert_true(t->cfg->connect_timeout == 5);
    assert_int_equal(t->cfg->retries, 3);
    assert_true(t->cfg->rate_limit == 10);
    assert_int_equal(t->cfg->def_delete_passwords, 1);
    assert_int_equal(t->cfg->def_delete_service_tokens, 1);
    assert_int_equal(t->cfg->unmapped, PS_UNMAPPED_IGNORE);
    assert_string_equal(t->cfg->queue_dir, PS_DEFAULT_QUEUE_DIR);
    assert_int_equal(t->cfg->max_age_days, 30);
    assert_int_equal(t->cfg->expired_grace_days, PS_DEFAULT_EXPIRED_GRACE_DAYS);
    assert_int_equal(PS_DEFAULT_EXPIRED_GRACE_DAYS, 7);
    assert_true(t->cfg->hook_deadline == 5.0);
    assert_int_equal(t->cfg->reconcile.confirm_runs, 2);
    assert_int_equal(t->cfg->reconcile.confirm_interval, 3600);
    assert_int_equal(t->cfg->reconcile.max_removals, 10);
    assert_true(t->cfg->reconcile.max_fraction == 0.2);
    assert_int_equal(t->cfg->npam_services, 1);
    assert_string_equal(t->cfg->pam_services[0], "planetscale-deprovision");
    assert_int_equal(t->cfg->nusers, 0);
    assert_null(t->cfg->ca_file);
    assert_null(t->cfg->proxy);
}

static void test_require_auth(void **state)
{
    struct fx *t = *state;

    put_main(t, "organization = \"acme\";\nusers = ( { login = \"a\"; id = \"b\"; } );\n");
    expect_ok(t, 0);
    assert_null(t->cfg->auth_header);
    assert_int_equal(load(t, 1), -1);
    assert_contains(t->err, t->main);
    assert_contains(t->err, "no API credential: set api.token_id and api.token, "
                            "api.token_file or api.oauth_token");
}

static void test_missing_file(void **state)
{
    struct fx *t = *state;

    assert_int_equal(load(t, 0), -1);
    assert_contains(t->err, t->main);
    assert_contains(t->err, "No such file");
}

static void test_oauth(void **state)
{
    struct fx *t = *state;

    put_main(t, "api = { oauth_token = \"pscale_oauth_abc\"; };\n");
    expect_ok(t, 1);
    assert_string_equal(t->cfg->auth_header, "Authorization: Bearer pscale_oauth_abc");
    assert_int_equal(t->cfg->auth_is_oauth, 1);
}

/* ------------------------------------------------------------ include_dir */

static void test_include_dir(void **state)
{
    struct fx *t = *state;
    char text[512];
    ps_mapping_t m;
    char d[128];

    snprintf(d, sizeof(d), "%s/users.d", t->dir);
    assert_int_equal(mkdir(d, 0755), 0);
    put(t, "users.d/20-eu.conf", 0644,
        "users = ( { login = \"carol\"; id = \"c1\"; organization = \"acme-eu\"; } );\n");
    put(t, "users.d/10-base.conf", 0644,
        "# base\nusers = (\n  { login = \"bob\"; id = \"b1\"; },\n"
        "  { login = \"dave\"; id = \"d1\"; delete_passwords = false; }\n);\n");
    put(t, "users.d/README", 0644, "not a config at all {{{\n");
    put(t, "users.d/.hidden.conf", 0644, "garbage {{{\n");
    put(t, "users.d/old.conf.bak", 0644, "garbage {{{\n");
    snprintf(text, sizeof(text),
             "users = ( { login = \"alice\"; id = \"a1\"; } );\n"
             "include_dir = \"%s\";\n",
             d);
    put_main_with(t, text);
    expect_ok(t, 1);
    assert_string_equal(t->cfg->include_dir, d);
    assert_int_equal(t->cfg->nusers, 4);
    assert_int_equal(ps_config_map(t->cfg, "carol", &m), 0);
    assert_string_equal(m.organization, "acme-eu");
    assert_int_equal(ps_config_map(t->cfg, "dave", &m), 0);
    assert_string_equal(m.organization, "acme");
    assert_int_equal(m.delete_passwords, 0);
    assert_int_equal(ps_config_map(t->cfg, "alice", &m), 0);
    assert_string_equal(m.id, "a1");
    /* sorted, with their origin */
    assert_string_equal(t->cfg->users[1].login, "bob");
    assert_contains(t->cfg->users[1].file, "users.d/10-base.conf");
    assert_int_equal(t->cfg->users[1].line, 3);

    /* relative include_dir: relative to the main file */
    put_main_with(t, "include_dir = \"users.d\";\n");
    expect_ok(t, 1);
    assert_int_equal(t->cfg->nusers, 3);

    /* an include file may hold only users */
    put(t, "users.d/30-bad.conf", 0644, "users = ();\norganization = \"evil\";\n");
    put_main_with(t, "include_dir = \"users.d\";\n");
    snprintf(text, sizeof(text), "%s/users.d/30-bad.conf", t->dir);
    expect_error_at(t, text, 2, "organization");
    assert_contains(t->err, "only users");

    /* an include file writable by others is refused */
    put(t, "users.d/30-bad.conf", 0666, "users = ();\n");
    assert_int_equal(chmod(t->path, 0666), 0);
    assert_int_equal(load(t, 0), -1);
    assert_contains(t->err, "30-bad.conf");
    assert_contains(t->err, "chmod go-w");

    /* syntax error inside an include file names it */
    put(t, "users.d/30-bad.conf", 0644, "users = (\n  { login = ; id = \"y\"; }\n);\n");
    expect_error_at(t, text, 2, NULL);

    /* missing directory */
    put_main_with(t, "include_dir = \"/nonexistent/users.d\";\n");
    expect_error_at(t, NULL, 3, "include_dir");
}

static void test_include_dir_writable(void **state)
{
    struct fx *t = *state;
    char d[128];

    snprintf(d, sizeof(d), "%s/users.d", t->dir);
    assert_int_equal(mkdir(d, 0755), 0);
    assert_int_equal(chmod(d, 0777), 0);
    put_main_with(t, "include_dir = \"users.d\";\n");
    expect_error_at(t, NULL, 3, "chmod go-w");
}

/* ------------------------------------------------------------ errors */

static void test_syntax_error(void **state)
{
    struct fx *t = *state;

    put_main(t, "organization = \"acme\";\n\napi = { url = \"https://x\";\n"
                "  retries = = 3; };\n");
    expect_error_at(t, NULL, 4, "syntax error");
}

static void test_trailing_comma(void **state)
{
    struct fx *t = *state;

    put_main(t, "organization = \"acme\";\n"
                "users = (\n"
                "  { login = \"alice\"; id = \"a\"; },\n"
                ");\n");
    expect_error_at(t, NULL, 4, "syntax error");
}

static void test_unknown_keys(void **state)
{
    struct fx *t = *state;

    put_main_with(t, "\ncolour = \"blue\";\n");
    expect_error_at(t, NULL, 4, "colour: unknown key");

    put_main(t, "organization = \"acme\";\n"
                "api = {\n  token_id = \"a\";\n  token = \"b\";\n  tokn = \"" SECRET "\";\n};\n");
    expect_error_at(t, NULL, 5, "api.tokn: unknown key");
    assert_lacks(t->err, SECRET);

    put_main_with(t, "users = (\n  { login = \"a\"; id = \"b\"; },\n"
                     "  { login = \"c\"; id = \"d\"; org = \"x\"; }\n);\n");
    expect_error_at(t, NULL, 5, "users[1].org: unknown key");

    put_main_with(t, "defaults = { delete_password = true; };\n");
    expect_error_at(t, NULL, 3, "defaults.delete_password: unknown key");

    put_main(t, "reconcile = {\n  confirm_runs = 2;\n  max_removal = 3;\n};\n");
    expect_error_at(t, NULL, 3, "reconcile.max_removal: unknown key");

    put_main_with(t, "queue = { directory = \"/x\"; };\n");
    expect_error_at(t, NULL, 3, "queue.directory: unknown key");
}

static void test_wrong_types(void **state)
{
    struct fx *t = *state;

    put_main_with(t, "queue = { max_age_days = \"30\"; };\n");
    expect_error_at(t, NULL, 3, "queue.max_age_days: expected an integer, got a string");

    put_main(t, "api = {\n  timeout = \"10\";\n};\n");
    expect_error_at(t, NULL, 2, "api.timeout: expected a number");

    put_main(t, "api = \"https://x\";\n");
    expect_error_at(t, NULL, 1, "api: expected a group");

    put_main(t, "users = { login = \"a\"; id = \"b\"; };\n");
    expect_error_at(t, NULL, 1, "users: expected a list");

    put_main(t, "organization = \"acme\";\nusers = (\n"
                "  { login = \"a\"; id = \"b\"; delete_passwords = 1; }\n);\n");
    expect_error_at(t, NULL, 3, "users[0].delete_passwords: expected a boolean");

    put_main(t, "users = ( \"alice\" );\n");
    expect_error_at(t, NULL, 1, "users[0]: expected a group");

    put_main(t, "organization = \"acme\";\nusers = ( { login = \"a\"; id = 42; } );\n");
    expect_error_at(t, NULL, 2, "users[0].id: expected a string");

    put_main(t, "pam_services = \"sshd\";\n");
    expect_error_at(t, NULL, 1, "pam_services: expected an array");

    put_main(t, "api = { retries = 2.5; };\n");
    expect_error_at(t, NULL, 1, "api.retries: expected an integer");

    put_main(t, "unmapped = \"maybe\";\n");
    expect_error_at(t, NULL, 1, "unmapped: must be");

    put_main(t, "api = { cleanup_flags = \"json\"; };\n");
    expect_error_at(t, NULL, 1, "api.cleanup_flags: must be");

    put_main(t, "\nexpired_grace_days = 7.0;\n");
    expect_error_at(t, NULL, 2, "expired_grace_days: expected an integer");
    put_main(t, "expired_grace_days = \"7\";\n");
    expect_error_at(t, NULL, 1, "expired_grace_days: expected an integer");

    put_main(t, "reconcile = 2;\n");
    expect_error_at(t, NULL, 1, "reconcile: expected a group");
    put_main(t, "reconcile = {\n  confirm_runs = 2.0;\n};\n");
    expect_error_at(t, NULL, 2, "reconcile.confirm_runs: expected an integer");
    put_main(t, "reconcile = { confirm_interval = \"1h\"; };\n");
    expect_error_at(t, NULL, 1, "reconcile.confirm_interval: expected an integer");
    put_main(t, "reconcile = { max_removals = true; };\n");
    expect_error_at(t, NULL, 1, "reconcile.max_removals: expected an integer");
    put_main(t, "reconcile = { max_fraction = \"20%\"; };\n");
    expect_error_at(t, NULL, 1, "reconcile.max_fraction: expected a number");
}

static void test_ranges(void **state)
{
    struct fx *t = *state;
    static const struct {
        const char *text;
        const char *frag;
    } bad[] = {
        { "api = { timeout = 0; };\n", "api.timeout" },
        { "api = { timeout = 301; };\n", "api.timeout" },
        { "api = { timeout = -1.5; };\n", "api.timeout" },
        { "api = { connect_timeout = 0.0; };\n", "api.connect_timeout" },
        { "api = { timeout = 4; connect_timeout = 5; };\n", "must not exceed" },
        { "api = { retries = 0; };\n", "api.retries" },
        { "api = { retries = 21; };\n", "api.retries" },
        { "api = { rate_limit = 0; };\n", "api.rate_limit" },
        { "api = { rate_limit = 1000.5; };\n", "api.rate_limit" },
        { "queue = { max_age_days = 0; };\n", "queue.max_age_days" },
        { "queue = { max_age_days = 3651; };\n", "queue.max_age_days" },
        { "queue = { dir = \"spool\"; };\n", "absolute" },
        { "expired_grace_days = -1;\n", "expired_grace_days" },
        { "expired_grace_days = 3651;\n", "expired_grace_days" },
        { "hook_deadline = 0;\n", "hook_deadline: 0 is out of range" },
        { "hook_deadline = 300.5;\n", "hook_deadline" },
        { "hook_deadline = \"5\";\n", "hook_deadline: expected a number" },
        { "reconcile = { confirm_runs = 0; };\n", "reconcile.confirm_runs" },
        { "reconcile = { confirm_runs = 101; };\n", "reconcile.confirm_runs" },
        { "reconcile = { confirm_interval = -1; };\n", "reconcile.confirm_interval" },
        { "reconcile = { confirm_interval = 2592001; };\n", "reconcile.confirm_interval" },
        { "reconcile = { max_removals = -1; };\n", "reconcile.max_removals" },
        { "reconcile = { max_removals = 1000001; };\n", "reconcile.max_removals" },
        { "reconcile = { max_fraction = -0.1; };\n", "reconcile.max_fraction" },
        { "reconcile = { max_fraction = 1.5; };\n", "reconcile.max_fraction" },
        { "reconcile = { max_fraction = 2; };\n", "reconcile.max_fraction" },
    };
    size_t i;

    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put_main(t, bad[i].text);
        expect_error_at(t, NULL, 1, bad[i].frag);
    }

    put_main(t, "api = { timeout = 300; connect_timeout = 300; retries = 20; "
                "rate_limit = 1000; };\nqueue = { max_age_days = 3650; };\n"
                "expired_grace_days = 3650;\nhook_deadline = 300;\n"
                "reconcile = { confirm_runs = 100; confirm_interval = 2592000; "
                "max_removals = 1000000; max_fraction = 1; };\n");
    expect_ok(t, 0);
    assert_int_equal(t->cfg->expired_grace_days, 3650);
    assert_true(t->cfg->hook_deadline == 300.0);
    assert_true(t->cfg->reconcile.max_fraction == 1.0);
    put_main(t, "api = { timeout = 1; connect_timeout = 0.5; retries = 1; "
                "rate_limit = 0.1; };\nqueue = { max_age_days = 1; };\n"
                "expired_grace_days = 0;\nhook_deadline = 0.5;\n"
                "reconcile = { confirm_runs = 1; confirm_interval = 0; max_removals = 0; "
                "max_fraction = 0; };\n");
    expect_ok(t, 0);
    assert_true(t->cfg->hook_deadline == 0.5);
    assert_int_equal(t->cfg->expired_grace_days, 0);
    assert_int_equal(t->cfg->reconcile.confirm_interval, 0);
    assert_true(t->cfg->reconcile.max_fraction == 0.0);
    assert_true(t->cfg->connect_timeout == 0.5);
}

static void test_rate_limit_int_and_float(void **state)
{
    struct fx *t = *state;

    put_main(t, "api = { rate_limit = 10; timeout = 30; connect_timeout = 2; };\n");
    expect_ok(t, 0);
    assert_true(t->cfg->rate_limit == 10.0);
    assert_true(t->cfg->timeout == 30.0);
    put_main(t, "api = { rate_limit = 7.5; };\n");
    expect_ok(t, 0);
    assert_true(t->cfg->rate_limit == 7.5);
    put_main(t, "api = { rate_limit = 5L; };\n");
    expect_ok(t, 0);
    assert_true(t->cfg->rate_limit == 5.0);
}

/* api.spread: seconds, 0 (the default) to a day, integer or float. */
static void test_spread(void **state)
{
    struct fx *t = *state;
    static const struct {
        const char *text;
        int line;
        const char *frag;
    } bad[] = {
        { "api = {\n  spread = -1; };\n", 2, "api.spread: -1 is out of range (0 to 86400" },
        { "api = { spread = 86401; };\n", 1, "api.spread: 86401 is out of range" },
        { "api = { spread = \"60\"; };\n", 1, "api.spread: expected a number of seconds" },
        { "api = { spread = true; };\n", 1, "api.spread: expected a number" },
    };
    size_t i;

    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put_main(t, bad[i].text);
        expect_error_at(t, NULL, bad[i].line, bad[i].frag);
    }
    put_main(t, "organization = \"acme\";\n");
    expect_ok(t, 0);
    assert_true(t->cfg->spread == 0);
    put_main(t, "api = { spread = 300; };\n");
    expect_ok(t, 0);
    assert_true(t->cfg->spread == 300.0);
    put_main(t, "api = { spread = 7.5; };\n");
    expect_ok(t, 0);
    assert_true(t->cfg->spread == 7.5);
    put_main(t, "api = { spread = 0; };\n");
    expect_ok(t, 0);
    assert_true(t->cfg->spread == 0);
}

/* metrics = { textfile = "..."; }: an absolute *.prom path; off without it. */
static void test_metrics(void **state)
{
    struct fx *t = *state;
    static const struct {
        const char *text;
        int line;
        const char *frag;
    } bad[] = {
        { "metrics = {\n  textfile = \"ps.prom\"; };\n", 2,
          "metrics.textfile: must be an absolute path" },
        { "metrics = { textfile = \"/var/lib/ps.txt\"; };\n", 1,
          "metrics.textfile: must end in \".prom\"" },
        { "metrics = { textfile = \"/var/lib/.ps.prom\"; };\n", 1,
          "metrics.textfile: the file name must not start with '.'" },
        { "metrics = { textfile = \"\"; };\n", 1, "metrics.textfile: must not be empty" },
        { "metrics = { textfile = 1; };\n", 1, "metrics.textfile: expected a string" },
        { "metrics = { text_file = \"/a.prom\"; };\n", 1,
          "metrics.text_file: unknown key (known here: textfile)" },
        { "metrics = \"/a.prom\";\n", 1, "metrics: expected a group" },
        { "metrics = { textfile = \"/a\\tb.prom\"; };\n", 1, "control character" },
    };
    size_t i;

    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put_main(t, bad[i].text);
        expect_error_at(t, NULL, bad[i].line, bad[i].frag);
    }
    put_main(t, "organization = \"acme\";\n");
    expect_ok(t, 0);
    assert_null(t->cfg->metrics_textfile);
    put_main(t, "metrics = { };\n");
    expect_ok(t, 0);
    assert_null(t->cfg->metrics_textfile);
    put_main(t, "metrics = { textfile = "
                "\"/var/lib/prometheus/node-exporter/planetscale-deprovision.prom\"; };\n");
    expect_ok(t, 0);
    assert_string_equal(t->cfg->metrics_textfile,
                        "/var/lib/prometheus/node-exporter/planetscale-deprovision.prom");
}

static void test_duplicate_login_inline(void **state)
{
    struct fx *t = *state;
    char both[300];

    put_main_with(t, "users = (\n"
                     "  { login = \"alice\"; id = \"a1\"; },\n"
                     "  { login = \"bob\"; id = \"b1\"; },\n"
                     "  { login = \"alice\"; id = \"a2\"; }\n);\n");
    expect_error_at(t, NULL, 6, "duplicate login \"alice\"");
    snprintf(both, sizeof(both), "%s:4", t->main);
    assert_contains(t->err, both);
}

static void test_duplicate_login_across_include(void **state)
{
    struct fx *t = *state;
    char inc[256];
    char both[300];
    char d[128];

    snprintf(d, sizeof(d), "%s/users.d", t->dir);
    assert_int_equal(mkdir(d, 0755), 0);
    put(t, "users.d/a.conf", 0644, "users = (\n  { login = \"zed\"; id = \"z\"; }\n);\n");
    put(t, "users.d/b.conf", 0644, "users = (\n\n  { login = \"bob\"; id = \"b2\"; }\n);\n");
    snprintf(inc, sizeof(inc), "%s/users.d/b.conf", t->dir);
    put_main_with(t, "users = (\n  { login = \"bob\"; id = \"b1\"; }\n);\n"
                     "include_dir = \"users.d\";\n");
    expect_error_at(t, inc, 3, "duplicate login \"bob\"");
    snprintf(both, sizeof(both), "%s:4", t->main);
    assert_contains(t->err, both);

    /* between two include files */
    put(t, "users.d/b.conf", 0644, "users = (\n\n  { login = \"zed\"; id = \"z2\"; }\n);\n");
    expect_error_at(t, inc, 3, "duplicate login \"zed\"");
    snprintf(both, sizeof(both), "%s/users.d/a.conf:2", t->dir);
    assert_contains(t->err, both);
}

static void test_bad_ids(void **state)
{
    struct fx *t = *state;
    static const char *const bad[] = {
        "a/b", "a?b", "..", ".", "a%2fb", "a b", "a\\nb", "a\\x01b", "-x", "a#b", "x\\tb",
    };
    char text[512];
    size_t i;

    put_main_with(t, "users = (\n  { login = \"alice\"; id = \"\"; }\n);\n");
    expect_error_at(t, NULL, 4, "users[0].id: empty id");

    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text),
                 "users = (\n  { login = \"alice\"; id = \"ok\"; },\n"
                 "  { login = \"bob\";\n    id = \"%s\"; }\n);\n",
                 bad[i]);
        put_main_with(t, text);
        expect_error_at(t, NULL, 6, "users[1].id: invalid id");
        assert_lacks(t->err, "\n");

        snprintf(text, sizeof(text),
                 "users = (\n  { login = \"alice\"; id = \"ok\";\n"
                 "    organization = \"%s\"; }\n);\n",
                 bad[i]);
        put_main_with(t, text);
        expect_error_at(t, NULL, 5, "users[0].organization: invalid organization");

        snprintf(text, sizeof(text), "organization = \"%s\";\n", bad[i]);
        put_main(t, text);
        expect_error_at(t, NULL, 1, "organization: invalid organization");
    }

    put_main(t, "organization = \"\";\n");
    expect_error_at(t, NULL, 1, "empty organization");
}

static void test_bad_logins(void **state)
{
    struct fx *t = *state;
    static const char *const bad[] = { "-rf", "a/b", "a b", "a\\nb", "a:b", "" };
    char text[512];
    size_t i;

    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "users = (\n  { login = \"%s\"; id = \"ok\"; }\n);\n", bad[i]);
        put_main_with(t, text);
        expect_error_at(t, NULL, 4, "users[0].login:");
    }
    put_main_with(t, "users = (\n  { id = \"ok\"; }\n);\n");
    expect_error_at(t, NULL, 4, "users[0]: missing login");
    put_main_with(t, "users = (\n  { login = \"x\"; }\n);\n");
    expect_error_at(t, NULL, 4, "users[0]: missing id");
}

static void test_email_users(void **state)
{
    struct fx *t = *state;
    ps_mapping_t m;

    put_main_with(t, "users = (\n"
                     "  { login = \"alice\"; email = \"Alice.Smith+ops@Example.com\"; },\n"
                     "  { login = \"bob\"; id = \"x9z8\"; },\n"
                     "  { login = \"carol\"; email = \"carol@example.com\"; organization = "
                     "\"eu\"; delete_passwords = false; }\n"
                     ");\n");
    expect_ok(t, 0);
    assert_int_equal(ps_config_map(t->cfg, "alice", &m), 0);
    assert_null(m.id);
    assert_string_equal(m.email, "Alice.Smith+ops@Example.com");
    assert_string_equal(m.organization, "acme");
    assert_int_equal(ps_config_map(t->cfg, "bob", &m), 0);
    assert_string_equal(m.id, "x9z8");
    assert_null(m.email);
    assert_int_equal(ps_config_map(t->cfg, "carol", &m), 0);
    assert_null(m.id);
    assert_string_equal(m.email, "carol@example.com");
    assert_string_equal(m.organization, "eu");
    assert_int_equal(m.delete_passwords, 0);
}

static void test_email_errors(void **state)
{
    struct fx *t = *state;
    static const char *const bad[] = { "alice",       "@example.com",   "alice@",
                                       "a b@x.io",    "a@b@c",          "\\\"q\\\"@x.io",
                                       "alice@x..io", "al\\u00e9@x.io", "a@[1.2.3.4]" };
    char text[512];
    size_t i;

    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "users = (\n  { login = \"a\"; email = \"%s\"; }\n);\n",
                 bad[i]);
        put_main_with(t, text);
        expect_error_at(t, NULL, 4, "users[0].email: invalid email");
    }
    put_main_with(t, "users = (\n  { login = \"a\"; email = \"\"; }\n);\n");
    expect_error_at(t, NULL, 4, "users[0].email: empty email");
    put_main_with(t, "users = (\n  { login = \"a\"; email = 42; }\n);\n");
    expect_error_at(t, NULL, 4, "users[0].email:");
    put_main_with(t, "users = (\n  { login = \"a\";\n    id = \"x1\"; email = \"a@x.io\"; }\n);\n");
    expect_error_at(t, NULL, 4, "users[0]: both id and email: give exactly one of them");
    put_main_with(t, "users = (\n  { login = \"a\"; organization = \"o\"; }\n);\n");
    expect_error_at(t, NULL, 4, "users[0]: missing id (the PlanetScale user id, or email");
    /* an email over 254 bytes */
    memset(text, 'a', sizeof(text));
    snprintf(text, sizeof(text), "users = (\n  { login = \"a\"; email = \"a@%0250d.io\"; }\n);\n",
             0);
    put_main_with(t, text);
    expect_error_at(t, NULL, 4, "users[0].email: invalid email");
}

static void test_no_organization(void **state)
{
    struct fx *t = *state;

    put_main(t, "users = (\n  { login = \"a\"; id = \"b\"; organization = \"o\"; },\n"
                "  { login = \"c\"; id = \"d\"; }\n);\n");
    expect_error_at(t, NULL, 3, "no organization");
}

/* ------------------------------------------------------------ secrets */

static void test_secret_in_readable_file(void **state)
{
    struct fx *t = *state;

    put_main_with(t, "");
    assert_int_equal(chmod(t->main, 0644), 0);
    assert_int_equal(load(t, 1), -1);
    assert_contains(t->err, "chmod 600");
    assert_contains(t->err, t->main);
    assert_lacks(t->err, SECRET);

    /* even when the file also has other errors */
    put_main_with(t, "bogus = 1;\n");
    assert_int_equal(chmod(t->main, 0640), 0);
    assert_int_equal(load(t, 0), -1);
    assert_contains(t->err, "chmod 600");

    /* an oauth token too */
    put(t, "main.conf", 0604, "api = { oauth_token = \"" SECRET "\"; };\n");
    assert_int_equal(load(t, 0), -1);
    assert_contains(t->err, "chmod 600");
    assert_lacks(t->err, SECRET);

    /* without a secret, 0644 is fine, 0664 is not */
    put(t, "main.conf", 0644, "organization = \"acme\";\n");
    expect_ok(t, 0);
    put(t, "main.conf", 0664, "organization = \"acme\";\n");
    assert_int_equal(load(t, 0), -1);
    assert_contains(t->err, "chmod go-w");
}

static void test_bad_token_chars(void **state)
{
    struct fx *t = *state;

    put_main(t, "api = {\n token_id = \"id\";\n token = \"" SECRET "\\r\\nX-Evil: 1\";\n};\n");
    expect_error_at(t, NULL, 3, "api.token: contains");
    assert_lacks(t->err, SECRET);

    put_main(t, "api = {\n token_id = \"id\";\n token = \"" SECRET " x\";\n};\n");
    expect_error_at(t, NULL, 3, "api.token:");
    assert_lacks(t->err, SECRET);

    put_main(t, "api = {\n oauth_token = \"" SECRET "\\n\";\n};\n");
    expect_error_at(t, NULL, 2, "api.oauth_token:");
    assert_lacks(t->err, SECRET);

    put_main(t, "api = {\n token_id = \"a:b\";\n token = \"" SECRET "\";\n};\n");
    expect_error_at(t, NULL, 2, "api.token_id:");
    assert_lacks(t->err, SECRET);

    put_main(t, "api = {\n token_id = \"a\";\n token = \"\";\n};\n");
    expect_error_at(t, NULL, 3, "api.token: must not be empty");
}

static void test_credential_forms(void **state)
{
    struct fx *t = *state;

    put_main(t, "api = {\n token_id = \"a\"; token = \"b\";\n oauth_token = \"c\";\n};\n");
    expect_error_at(t, NULL, 1, "more than one credential");

    put(t, "tok", 0600, "id:tok\n");
    put_main(t, "api = {\n token_file = \"tok\";\n oauth_token = \"c\";\n};\n");
    expect_error_at(t, NULL, 1, "more than one credential");

    put_main(t, "api = {\n token_id = \"a\";\n};\n");
    expect_error_at(t, NULL, 2, "token_id and token go together");
    put_main(t, "api = {\n token = \"" SECRET "\";\n};\n");
    expect_error_at(t, NULL, 2, "token_id and token go together");
    assert_lacks(t->err, SECRET);
}

static void test_token_file(void **state)
{
    struct fx *t = *state;
    char text[512];
    char tok[256];
    char link[300];

    put(t, "token", 0600, "tid123:" SECRET "\n");
    snprintf(tok, sizeof(tok), "%s", t->path);
    snprintf(text, sizeof(text), "api = {\n  token_file = \"%s\";\n};\n", tok);
    put(t, "main.conf", 0644, text); /* no secret in the main file */
    expect_ok(t, 1);
    assert_string_equal(t->cfg->auth_header, "Authorization: tid123:" SECRET);
    assert_int_equal(t->cfg->auth_is_oauth, 0);

    /* CRLF and no newline are both fine */
    put(t, "token", 0600, "tid123:" SECRET "\r\n");
    expect_ok(t, 1);
    assert_string_equal(t->cfg->auth_header, "Authorization: tid123:" SECRET);
    put(t, "token", 0400, "tid123:" SECRET);
    expect_ok(t, 1);
    assert_string_equal(t->cfg->auth_header, "Authorization: tid123:" SECRET);

    /* readable by others: refused, says how to fix, never shows the token */
    put(t, "token", 0644, "tid123:" SECRET "\n");
    expect_error_at(t, NULL, 2, "chmod 600");
    assert_contains(t->err, tok);
    assert_lacks(t->err, SECRET);
    put(t, "token", 0640, "tid123:" SECRET "\n");
    expect_error_at(t, NULL, 2, "chmod 600");

    /* malformed content */
    put(t, "token", 0600, SECRET "\n");
    expect_error_at(t, NULL, 2, "TOKEN_ID:TOKEN");
    assert_lacks(t->err, SECRET);
    put(t, "token", 0600, "tid123:" SECRET "\nsecond:line\n");
    expect_error_at(t, NULL, 2, "token_file");
    assert_lacks(t->err, SECRET);
    put(t, "token", 0600, "tid123:" SECRET " trailing\n");
    expect_error_at(t, NULL, 2, "token_file");
    assert_lacks(t->err, SECRET);
    put(t, "token", 0600, "");
    expect_error_at(t, NULL, 2, "token_file");
    put(t, "token", 0600, ":" SECRET "\n");
    expect_error_at(t, NULL, 2, "token_file");

    /* missing */
    unlink(tok);
    expect_error_at(t, NULL, 2, "No such file");

    /* a symlink to a good token file is refused */
    put(t, "token.real", 0600, "tid123:" SECRET "\n");
    snprintf(link, sizeof(link), "%s.real", tok);
    assert_int_equal(symlink(link, tok), 0);
    expect_error_at(t, NULL, 2, "symbolic link");
}

static void test_main_symlink(void **state)
{
    struct fx *t = *state;
    char real[256];

    /* secret-less config behind a link: accepted */
    put(t, "real.conf", 0644, "organization = \"acme\";\n");
    snprintf(real, sizeof(real), "%s", t->path);
    assert_int_equal(symlink(real, t->main), 0);
    expect_ok(t, 0);
    assert_string_equal(t->cfg->organization, "acme");

    /* with a secret: refused, even at 0600 */
    put(t, "real.conf", 0600, "api = { token_id = \"a\"; token = \"" SECRET "\"; };\n");
    assert_int_equal(load(t, 1), -1);
    assert_contains(t->err, "symbolic link");
    assert_lacks(t->err, SECRET);
}

static void test_at_include_refused(void **state)
{
    struct fx *t = *state;
    char text[512];

    put(t, "other.cfg", 0644, "unmapped = \"error\";\n");
    snprintf(text, sizeof(text), "organization = \"acme\";\n@include \"%s/other.cfg\"\n", t->dir);
    put_main(t, text);
    assert_int_equal(load(t, 0), -1);
    assert_contains(t->err, "@include");
    assert_contains(t->err, "include_dir");
}

/* ------------------------------------------------------------ file types */

/* A non-regular file at dir/name: "fifo", "dir", "socket", or a symlink to
 * /dev/zero ("chardev"). Returns the words the error must hold. */
static const char *make_kind(struct fx *t, const char *name, const char *kind)
{
    snprintf(t->path, sizeof(t->path), "%s/%s", t->dir, name);
    if(!strcmp(kind, "fifo")) {
        assert_int_equal(mkfifo(t->path, 0600), 0);
        return "not a regular file (a FIFO)";
    }
    if(!strcmp(kind, "dir")) {
        assert_int_equal(mkdir(t->path, 0700), 0);
        return "not a regular file (a directory)";
    }
    if(!strcmp(kind, "socket")) {
        struct sockaddr_un sa;
        int s = socket(AF_UNIX, SOCK_STREAM, 0);

        assert_true(s >= 0);
        memset(&sa, 0, sizeof(sa));
        sa.sun_family = AF_UNIX;
        assert_true(strlen(t->path) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, t->path, strlen(t->path) + 1);
        assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(s); /* the socket file stays */
        return "not a regular file (a socket)";
    }
    assert_int_equal(symlink("/dev/zero", t->path), 0);
    return "not a regular file (a character device)";
}

static void test_file_types(void **state)
{
    static const char *const kinds[] = { "fifo", "dir", "socket", "chardev" };
    struct fx *t = *state;
    char text[1024], d[128], where[400], bad[256];
    const char *words;
    size_t i;

    snprintf(d, sizeof(d), "%s/users.d", t->dir);
    assert_int_equal(mkdir(d, 0755), 0);
    put(t, "users.d/10-ok.conf", 0644, "users = ( { login = \"bob\"; id = \"b1\"; } );\n");
    for(i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        char name[64];

        /* an include file (a link is allowed there: its target counts) */
        snprintf(name, sizeof(name), "users.d/20-%s.conf", kinds[i]);
        words = make_kind(t, name, kinds[i]);
        snprintf(bad, sizeof(bad), "%s", t->path);
        snprintf(where, sizeof(where), "%s: %s", bad, words);
        snprintf(text, sizeof(text), "include_dir = \"%s\";\n", d);
        put_main_with(t, text);
        assert_int_equal(load(t, 0), -1);
        assert_contains(t->err, where);
        assert_contains(t->err, "make it a regular file");
        if(unlink(bad) != 0)
            assert_int_equal(rmdir(bad), 0);

        /* token_file, at its line (a link is refused there anyway: the
         * character device is named directly) */
        snprintf(name, sizeof(name), "token-%s", kinds[i]);
        words = make_kind(t, name, kinds[i]);
        if(!strcmp(kinds[i], "chardev"))
            snprintf(t->path, sizeof(t->path), "/dev/zero");
        snprintf(where, sizeof(where), "%s: %s", t->path, words);
        snprintf(text, sizeof(text),
                 "organization = \"acme\";\napi = {\n  token_file = \"%s\";\n};\n", t->path);
        put(t, "main.conf", 0644, text);
        expect_error_at(t, NULL, 3, where);
        assert_contains(t->err, "api.token_file");

        /* ca_file, at its line */
        snprintf(name, sizeof(name), "ca-%s", kinds[i]);
        words = make_kind(t, name, kinds[i]);
        snprintf(where, sizeof(where), "%s: %s", t->path, words);
        snprintf(text, sizeof(text), "organization = \"acme\";\napi = {\n  ca_file = \"%s\";\n};\n",
                 t->path);
        put(t, "main.conf", 0644, text);
        expect_error_at(t, NULL, 3, where);
        assert_contains(t->err, "api.ca_file");
    }

    /* the main file itself */
    unlink(t->main);
    assert_int_equal(mkfifo(t->main, 0600), 0);
    assert_int_equal(load(t, 0), -1);
    snprintf(where, sizeof(where), "%s: not a regular file (a FIFO)", t->main);
    assert_contains(t->err, where);
}

/* ------------------------------------------------------------ ca_file */

static void test_ca_file(void **state)
{
    static const char pem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    struct fx *t = *state;
    char text[512], ca[256], link[300];

    put(t, "ca.pem", 0644, pem);
    snprintf(ca, sizeof(ca), "%s", t->path);
    snprintf(text, sizeof(text), "organization = \"acme\";\napi = {\n  ca_file = \"%s\";\n};\n",
             ca);
    put(t, "main.conf", 0644, text);
    expect_ok(t, 0);
    assert_string_equal(t->cfg->ca_file, ca);
    /* read when loaded, through the descriptor that was checked */
    assert_non_null(t->cfg->ca_pem);
    assert_int_equal(t->cfg->ca_pem_len, strlen(pem));
    assert_string_equal(t->cfg->ca_pem, pem);

    /* relative: to the main file's directory */
    put(t, "main.conf", 0644, "api = { ca_file = \"ca.pem\"; };\n");
    expect_ok(t, 0);
    assert_string_equal(t->cfg->ca_file, ca);

    /* writable by group or others: refused, says how to fix it */
    assert_int_equal(chmod(ca, 0666), 0);
    put(t, "main.conf", 0644, text);
    expect_error_at(t, NULL, 3, "writable by group or others");
    assert_contains(t->err, "chmod go-w ");
    assert_contains(t->err, ca);
    assert_contains(t->err, "trust store");
    assert_int_equal(chmod(ca, 0664), 0);
    expect_error_at(t, NULL, 3, "chmod go-w");

    /* a link, like an include file: allowed, the target is checked */
    assert_int_equal(chmod(ca, 0644), 0);
    snprintf(link, sizeof(link), "%s/ca-link.pem", t->dir);
    assert_int_equal(symlink(ca, link), 0);
    snprintf(text, sizeof(text), "api = {\n  ca_file = \"%s\";\n};\n", link);
    put(t, "main.conf", 0644, text);
    expect_ok(t, 0);
    assert_string_equal(t->cfg->ca_pem, pem);
    assert_int_equal(chmod(ca, 0646), 0);
    expect_error_at(t, NULL, 2, "chmod go-w");
    assert_int_equal(chmod(ca, 0644), 0);

    /* owned by somebody else (needs root to set up) */
    if(geteuid() == 0) {
        assert_int_equal(chown(ca, 65534, 65534), 0);
        expect_error_at(t, NULL, 2, "owned by uid 65534");
        assert_contains(t->err, "chown root ");
        assert_int_equal(chown(ca, 0, 0), 0);
    }

    /* empty, missing */
    put(t, "ca.pem", 0644, "");
    put(t, "main.conf", 0644, text);
    expect_error_at(t, NULL, 2, "empty");
    unlink(ca);
    expect_error_at(t, NULL, 2, "No such file");
}

/* ------------------------------------------------------------ deadline */

static int load_until(struct fx *t, double deadline)
{
    ps_config_free(t->cfg);
    t->cfg = NULL;
    t->err[0] = '\0';
    return ps_config_load_until(&t->cfg, t->main, 0, deadline, t->err, sizeof(t->err));
}

static void test_deadline(void **state)
{
    struct fx *t = *state;
    char text[512], d[128], name[64];
    int i, rc;

    snprintf(d, sizeof(d), "%s/users.d", t->dir);
    assert_int_equal(mkdir(d, 0755), 0);
    for(i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "users.d/u%03d.conf", i);
        snprintf(text, sizeof(text), "users = ( { login = \"u%03d\"; id = \"i%03d\"; } );\n", i, i);
        put(t, name, 0644, text);
    }
    put(t, "token", 0600, "tid:" SECRET "\n");
    put(t, "ca.pem", 0644, "-----BEGIN CERTIFICATE-----\n");
    snprintf(text, sizeof(text),
             "organization = \"acme\";\napi = {\n  token_file = \"token\";\n"
             "  ca_file = \"ca.pem\";\n};\ninclude_dir = \"%s\";\n",
             d);
    put(t, "main.conf", 0644, text);

    /* no deadline, or a far one: all loaded */
    assert_int_equal(load_until(t, 0), 0);
    assert_int_equal(t->cfg->nusers, 100);
    fake_clock = 0;
    fake_step = 1;
    assert_int_equal(load_until(t, 1e6), 0);
    assert_int_equal(t->cfg->nusers, 100);

    /* One tick per check: before the main file (1), before token_file (2),
     * before ca_file (3), before include_dir (4), one per directory entry
     * while listing it (5..106: 100 files, "." and ".."), one per include
     * file (107..206). */
    fake_clock = 0;
    assert_int_equal(load_until(t, 0.5), -1);
    assert_contains(t->err, t->main);
    assert_contains(t->err, "not read: the deadline passed before the configuration was loaded");

    fake_clock = 0;
    assert_int_equal(load_until(t, 1.5), -1);
    assert_contains(t->err, ":3: api.token_file: ");
    assert_contains(t->err, "token: not read: the deadline passed");
    assert_lacks(t->err, SECRET);

    fake_clock = 0;
    assert_int_equal(load_until(t, 2.5), -1);
    assert_contains(t->err, ":4: api.ca_file: ");
    assert_contains(t->err, "ca.pem: not read: the deadline passed");

    fake_clock = 0;
    assert_int_equal(load_until(t, 3.5), -1);
    assert_contains(t->err, ":6: include_dir: ");
    assert_contains(t->err, "users.d: not read: the deadline passed");

    fake_clock = 0;
    assert_int_equal(load_until(t, 50.5), -1);
    assert_contains(t->err, ":6: include_dir: ");
    assert_contains(t->err, "the deadline passed while listing the directory, after");

    fake_clock = 0;
    assert_int_equal(load_until(t, 156.5), -1);
    assert_contains(t->err, ":6: include_dir: ");
    assert_contains(t->err, "users.d: the deadline passed while loading the configuration, "
                            "after 50 of 100 include files");
    assert_null(t->cfg);

    fake_clock = 0;
    rc = load_until(t, 206.5);
    fake_step = 0;
    assert_int_equal(rc, 0);
    assert_int_equal(t->cfg->nusers, 100);
}

/* ------------------------------------------------------------ URL */

static void test_url(void **state)
{
    struct fx *t = *state;
    static const char *const ok[] = {
        "http://127.0.0.1:8080/v1",
        "http://127.1.2.3/",
        "http://[::1]:9/v1",
        "http://localhost:8443",
        "https://LOCALHOST/v1",
        "HTTPS://api.planetscale.com/v1",
        "https://api.planetscale.com:443/v1/",
    };
    static const char *const bad[] = {
        "http://api.planetscale.com/v1",
        "http://10.0.0.1/v1",
        "http://128.0.0.1/",
        "http://localhost.evil.com/",
        "http://127.0.0.1.evil.com/",
        "http://[::2]/",
        "ftp://127.0.0.1/",
        "api.planetscale.com/v1",
        "https://user:pw@api.planetscale.com/v1",
        "https://api.planetscale.com/v1?x=1",
        "https://api.planetscale.com/v1#frag",
        "https:///v1",
        "https://host:99999/",
        "https://host:/",
        "https://ho st/",
        "https://[::1/",
    };
    char text[512];
    size_t i;

    for(i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(text, sizeof(text), "api = {\n  url = \"%s\";\n};\n", ok[i]);
        put_main(t, text);
        expect_ok(t, 0);
        assert_int_not_equal(t->cfg->api_url[strlen(t->cfg->api_url) - 1], '/');
    }
    put_main(t, "api = { url = \"http://127.0.0.1:8080/v1/\"; };\n");
    expect_ok(t, 0);
    assert_string_equal(t->cfg->api_url, "http://127.0.0.1:8080/v1");

    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "api = {\n  url = \"%s\";\n};\n", bad[i]);
        put_main(t, text);
        expect_error_at(t, NULL, 2, "api.url");
    }
    put_main(t, "api = { url = \"http://example.com/\"; };\n");
    expect_error_at(t, NULL, 1, "loopback");
    put_main(t, "api = { url = \"https://me:" SECRET "@example.com/\"; };\n");
    expect_error_at(t, NULL, 1, "user information");
    assert_lacks(t->err, SECRET);

    assert_true(ps_url_is_loopback_http("http://127.0.0.1:1/"));
    assert_true(ps_url_is_loopback_http("http://[::1]/"));
    assert_true(ps_url_is_loopback_http("http://localhost"));
    assert_false(ps_url_is_loopback_http("http://example.com/"));
    assert_false(ps_url_is_loopback_http("http://127.0.0.1@example.com/"));
    assert_false(ps_url_is_loopback_http(NULL));
}

/* ------------------------------------------------------------ scale */

static void test_many_users(void **state)
{
    struct fx *t = *state;
    const size_t n = 100000;
    FILE *fp;
    size_t i;
    double t0;
    double dt;
    ps_mapping_t m;

    fp = fopen(t->main, "w");
    assert_non_null(fp);
    fprintf(fp, "organization = \"acme\";\nusers = (\n");
    /* written in reverse so that the loader really has to sort */
    for(i = n; i > 0; i--)
        fprintf(fp, "  { login = \"user%06zu\"; id = \"id%zu\"; }%s\n", i, i, i > 1 ? "," : "");
    fprintf(fp, ");\n");
    fclose(fp);

    t0 = ps_now();
    expect_ok(t, 0);
    dt = ps_now() - t0;
    assert_int_equal(t->cfg->nusers, n);
    assert_int_equal(ps_config_map(t->cfg, "user100000", &m), 0);
    assert_string_equal(m.id, "id100000");
    assert_int_equal(ps_config_map(t->cfg, "user000001", &m), 0);
    assert_string_equal(m.id, "id1");
    assert_int_equal(ps_config_map(t->cfg, "user100001", &m), 1);
    /* about 0.2 s natively; generous for valgrind and slow builders */
    if(dt > 60.0) {
        print_error("100,000 users took %.2f s\n", dt);
        fail();
    }
}

/* ------------------------------------------------------------ log.c */

/* Runs fn with stderr redirected to a file; returns what was written. */
static void capture_stderr(struct fx *t, void (*fn)(void), char *out, size_t outsz)
{
    char path[256];
    int saved;
    int fd;
    ssize_t n;

    snprintf(path, sizeof(path), "%s/stderr", t->dir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    saved = dup(2);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    fn();
    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    n = pread(fd, out, outsz - 1, 0);
    assert_true(n >= 0);
    out[n] = '\0';
    close(fd);
}

static void log_quiet(void)
{
    ps_log_t lg = { .to_stderr = 1 };

    ps_logf(&lg, LOG_ERR, "cannot open %s: %s", "/x", "denied");
    ps_logf(&lg, LOG_INFO, "info %d", 1);
    ps_logf(&lg, LOG_DEBUG, "debug %d", 2);
    ps_audit(&lg, LOG_INFO, "removed", "remove", "alice", "acme", "d4", 1, 1, 204, NULL);
}

static void log_verbose(void)
{
    ps_log_t lg = { .to_stderr = 1, .verbose = 1 };

    ps_logf(&lg, LOG_DEBUG, "debug %s", "on");
    ps_audit(&lg, LOG_NOTICE, "refused", "pam trigger=x", "bob\nx outcome=removed", "acme", "x9z8",
             1, 0, 403, "Cannot remove the \"last\" admin\n");
    ps_audit(&lg, LOG_INFO, "unmapped", NULL, "carol", NULL, NULL, -1, -1, 0, NULL);
}

static void test_log(void **state)
{
    struct fx *t = *state;
    char out[4096];

    capture_stderr(t, log_quiet, out, sizeof(out));
    assert_string_equal(out, "planetscale-deprovision: cannot open /x: denied\n");

    capture_stderr(t, log_verbose, out, sizeof(out));
    assert_string_equal(
        out, "planetscale-deprovision: debug on\n"
             "planetscale-deprovision: outcome=refused trigger=\"pam trigger=x\" "
             "login=\"bob\\x0ax outcome=removed\" "
             "organization=acme id=x9z8 delete_passwords=true delete_service_tokens=false "
             "http_status=403 detail=\"Cannot remove the \\x22last\\x22 admin\\x0a\"\n"
             "planetscale-deprovision: outcome=unmapped trigger=- login=carol organization=- id=- "
             "delete_passwords=- delete_service_tokens=- http_status=0 detail=\"\"\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_full_config),
        T(test_defaults),
        T(test_require_auth),
        T(test_missing_file),
        T(test_oauth),
        T(test_include_dir),
        T(test_include_dir_writable),
        T(test_syntax_error),
        T(test_trailing_comma),
        T(test_unknown_keys),
        T(test_wrong_types),
        T(test_ranges),
        T(test_rate_limit_int_and_float),
        T(test_spread),
        T(test_metrics),
        T(test_duplicate_login_inline),
        T(test_duplicate_login_across_include),
        T(test_bad_ids),
        T(test_bad_logins),
        T(test_no_organization),
        T(test_email_users),
        T(test_email_errors),
        T(test_secret_in_readable_file),
        T(test_bad_token_chars),
        T(test_credential_forms),
        T(test_token_file),
        T(test_main_symlink),
        T(test_at_include_refused),
        T(test_file_types),
        T(test_ca_file),
        T(test_deadline),
        T(test_url),
        T(test_many_users),
        T(test_log),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
