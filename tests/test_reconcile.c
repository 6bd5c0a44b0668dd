/* test_reconcile.c - the decision of `reconcile` (confirmation runs, the
 * cap, what is never removed), its state file's reader and writer, and the
 * NSS lookup, without network. Output: TAP (CMOCKA_MESSAGE_OUTPUT=TAP). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile.h"

#define T0   1800000000LL /* a fixed "now" */
#define HOUR 3600

static ps_config_t *config(int runs, long interval, long max_removals, double max_fraction)
{
    static ps_config_t cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.reconcile.confirm_runs = runs;
    cfg.reconcile.confirm_interval = interval;
    cfg.reconcile.max_removals = max_removals;
    cfg.reconcile.max_fraction = max_fraction;
    return &cfg;
}

static ps_rc_login_t login(const char *name, const char *id, int missing, int member)
{
    ps_rc_login_t l;

    memset(&l, 0, sizeof(l));
    l.login = name;
    l.organization = "acme";
    l.id = id;
    l.missing = missing;
    l.member = member;
    return l;
}

static ps_rc_entry_t entry(const char *name, const char *id, int runs, long long first,
                           long long last)
{
    ps_rc_entry_t e;

    memset(&e, 0, sizeof(e));
    snprintf(e.login, sizeof(e.login), "%s", name);
    snprintf(e.organization, sizeof(e.organization), "acme");
    snprintf(e.id, sizeof(e.id), "%s", id);
    e.runs = runs;
    e.first_missing = first;
    e.last_counted = last;
    return e;
}

/* ------------------------------------------------------------ decide */

static void test_first_sighting_waits(void **state)
{
    ps_rc_login_t l[] = { login("alice", "a1", 1, 1), login("bob", "b1", 0, 1) };
    ps_rc_state_t old = { NULL, 0, 0 }, next;
    ps_rc_plan_t plan;

    (void)state;
    assert_int_equal(ps_rc_decide(config(2, HOUR, 10, 0.2), l, 2, &old, T0, -1, &plan, &next), 0);
    assert_int_equal(l[0].action, PS_RC_WAIT);
    assert_int_equal(l[0].runs, 1);
    assert_true(l[0].counts);
    assert_int_equal(l[0].first_missing, T0);
    assert_int_equal(l[0].next_count, T0 + HOUR);
    assert_int_equal(l[1].action, PS_RC_PRESENT);
    assert_false(l[1].reset);
    assert_int_equal(plan.candidates, 1);
    assert_int_equal(plan.remove, 0);
    assert_false(plan.tripped);
    assert_int_equal(next.n, 1);
    assert_string_equal(next.v[0].login, "alice");
    assert_int_equal(next.v[0].runs, 1);
    assert_int_equal(next.last_run, T0);
    ps_rc_state_free(&next);
}

static void test_runs_count_only_interval_apart(void **state)
{
    ps_rc_entry_t e = entry("alice", "a1", 1, T0 - HOUR, T0 - HOUR);
    ps_rc_state_t old = { &e, 1, T0 - HOUR }, next;
    ps_rc_login_t l[] = { login("alice", "a1", 1, 1) };
    ps_rc_plan_t plan;
    ps_config_t *cfg = config(2, HOUR, 10, 0.2);

    (void)state;
    /* one second short of the interval: does not count */
    assert_int_equal(ps_rc_decide(cfg, l, 1, &old, T0 - 1, -1, &plan, &next), 0);
    assert_int_equal(l[0].action, PS_RC_WAIT);
    assert_int_equal(l[0].runs, 1);
    assert_false(l[0].counts);
    assert_int_equal(next.v[0].last_counted, T0 - HOUR);
    assert_int_equal(l[0].next_count, T0);
    ps_rc_state_free(&next);
    /* exactly the interval: counts, and 2 of 2 is a removal */
    assert_int_equal(ps_rc_decide(cfg, l, 1, &old, T0, -1, &plan, &next), 0);
    assert_int_equal(l[0].action, PS_RC_REMOVE);
    assert_int_equal(l[0].runs, 2);
    assert_true(l[0].counts);
    assert_int_equal(l[0].first_missing, T0 - HOUR);
    assert_int_equal(plan.remove, 1);
    assert_int_equal(next.v[0].runs, 2);
    assert_int_equal(next.v[0].last_counted, T0);
    ps_rc_state_free(&next);
    /* confirm_runs 3: still waiting */
    assert_int_equal(ps_rc_decide(config(3, HOUR, 10, 0.2), l, 1, &old, T0, -1, &plan, &next), 0);
    assert_int_equal(l[0].action, PS_RC_WAIT);
    ps_rc_state_free(&next);
    /* confirm_runs 1: the first sighting removes */
    old.n = 0;
    assert_int_equal(ps_rc_decide(config(1, HOUR, 10, 0.2), l, 1, &old, T0, -1, &plan, &next), 0);
    assert_int_equal(l[0].action, PS_RC_REMOVE);
    ps_rc_state_free(&next);
}

static void test_seen_again_resets(void **state)
{
    ps_rc_entry_t e = entry("alice", "a1", 5, T0 - 9 * HOUR, T0 - HOUR);
    ps_rc_state_t old = { &e, 1, 0 }, next;
    ps_rc_login_t l[] = { login("alice", "a1", 0, 1) };
    ps_rc_plan_t plan;

    (void)state;
    assert_int_equal(ps_rc_decide(config(2, HOUR, 10, 0.2), l, 1, &old, T0, -1, &plan, &next), 0);
    assert_int_equal(l[0].action, PS_RC_PRESENT);
    assert_true(l[0].reset);
    assert_int_equal(next.n, 0);
    ps_rc_state_free(&next);
}

static void test_count_restarts_on_new_id_or_clock_going_back(void **state)
{
    ps_rc_entry_t e = entry("alice", "old1", 1, T0 - HOUR, T0 - HOUR);
    ps_rc_state_t old = { &e, 1, 0 }, next;
    ps_rc_login_t l[] = { login("alice", "a1", 1, 1) };
    ps_rc_plan_t plan;
    ps_config_t *cfg = config(2, HOUR, 10, 0.2);

    (void)state;
    /* the map now names another id: that is another membership */
    assert_int_equal(ps_rc_decide(cfg, l, 1, &old, T0, -1, &plan, &next), 0);
    assert_int_equal(l[0].runs, 1);
    assert_int_equal(l[0].action, PS_RC_WAIT);
    ps_rc_state_free(&next);
    /* a recorded time in the future: start over */
    e = entry("alice", "a1", 1, T0 + HOUR, T0 + 2 * HOUR);
    assert_int_equal(ps_rc_decide(cfg, l, 1, &old, T0, -1, &plan, &next), 0);
    assert_int_equal(l[0].runs, 1);
    assert_int_equal(next.v[0].last_counted, T0);
    ps_rc_state_free(&next);
}

static void test_never_removed(void **state)
{
    ps_rc_entry_t e = entry("carol", "c1", 9, T0 - 9 * HOUR, T0 - HOUR);
    ps_rc_state_t old = { &e, 1, 0 }, next;
    ps_rc_login_t l[] = {
        login("alice", "a1", 1, 0), /* not a member */
        login("bob", "b1", 0, 1),   /* present */
        login("bob2", "b1", 1, 1),  /* bob's id, bob is present */
        login("carol", "c1", 1, 1), /* already in the spool */
        login("dan", "d1", 1, 1),   /* two missing logins for one id: both counted */
        login("dan2", "d1", 1, 1),
    };
    ps_rc_plan_t plan;

    (void)state;
    l[3].queued = 1;
    assert_int_equal(ps_rc_decide(config(1, HOUR, 10, 0.2), l, 6, &old, T0, -1, &plan, &next), 0);
    assert_int_equal(l[0].action, PS_RC_NOT_MEMBER);
    assert_int_equal(l[1].action, PS_RC_PRESENT);
    assert_int_equal(l[2].action, PS_RC_SHARED);
    assert_int_equal(l[3].action, PS_RC_QUEUED);
    assert_int_equal(l[4].action, PS_RC_REMOVE);
    assert_int_equal(l[5].action, PS_RC_REMOVE);
    assert_int_equal(plan.candidates, 2);
    assert_int_equal(next.n, 2); /* carol's count is the spool's business now */
    ps_rc_state_free(&next);
}

static void test_cap(void **state)
{
    ps_rc_login_t l[20];
    ps_rc_state_t old = { NULL, 0, 0 }, next;
    ps_rc_plan_t plan;
    char names[20][8];
    int i;

    (void)state;
    for(i = 0; i < 20; i++) {
        snprintf(names[i], sizeof(names[i]), "u%02d", i);
        l[i] = login(names[i], names[i], i < 5, 1);
    }
    /* max_removals */
    assert_int_equal(ps_rc_decide(config(1, 0, 4, 1.0), l, 20, &old, T0, -1, &plan, &next), 0);
    assert_int_equal(plan.limit, 4);
    assert_true(plan.tripped);
    ps_rc_state_free(&next);
    assert_int_equal(ps_rc_decide(config(1, 0, 5, 1.0), l, 20, &old, T0, -1, &plan, &next), 0);
    assert_false(plan.tripped);
    ps_rc_state_free(&next);
    /* max_fraction of 20 mapped: 0.2 -> 4 (5 > 4: tripped); 0.25 -> 5 */
    assert_int_equal(ps_rc_decide(config(1, 0, 100, 0.2), l, 20, &old, T0, -1, &plan, &next), 0);
    assert_int_equal(plan.limit, 4);
    assert_true(plan.tripped);
    assert_int_equal(plan.remove, 5); /* decided, but the caller acts on none */
    assert_int_equal(next.n, 5);      /* and the counts are kept */
    ps_rc_state_free(&next);
    assert_int_equal(ps_rc_decide(config(1, 0, 100, 0.25), l, 20, &old, T0, -1, &plan, &next), 0);
    assert_int_equal(plan.limit, 5);
    assert_false(plan.tripped);
    ps_rc_state_free(&next);
    /* the fraction counts from 10 mapped logins: 9 mapped, 5 missing */
    assert_int_equal(ps_rc_decide(config(1, 0, 10, 0.1), l, 9, &old, T0, -1, &plan, &next), 0);
    assert_int_equal(plan.limit, 10);
    assert_false(plan.tripped);
    ps_rc_state_free(&next);
    /* 10 mapped, 0.1: at most 1 */
    assert_int_equal(ps_rc_decide(config(1, 0, 10, 0.1), l, 10, &old, T0, -1, &plan, &next), 0);
    assert_int_equal(plan.limit, 1);
    assert_true(plan.tripped);
    ps_rc_state_free(&next);
    /* --allow replaces both */
    assert_int_equal(ps_rc_decide(config(1, 0, 0, 0.0), l, 20, &old, T0, 5, &plan, &next), 0);
    assert_int_equal(plan.limit, 5);
    assert_false(plan.tripped);
    ps_rc_state_free(&next);
    assert_int_equal(ps_rc_decide(config(1, 0, 100, 1.0), l, 20, &old, T0, 4, &plan, &next), 0);
    assert_true(plan.tripped);
    ps_rc_state_free(&next);
    /* everyone gone */
    for(i = 0; i < 20; i++)
        l[i].missing = 1;
    assert_int_equal(ps_rc_decide(config(2, HOUR, 10, 0.2), l, 20, &old, T0, -1, &plan, &next), 0);
    assert_int_equal(plan.candidates, 20);
    assert_int_equal(plan.remove, 0);
    assert_true(plan.tripped);
    ps_rc_state_free(&next);
}

/* ------------------------------------------------------------ state */

static void test_state_roundtrip(void **state)
{
    ps_rc_entry_t e[3] = { entry("alice", "a1", 1, T0, T0), entry("bob.x", "b-1", 3, T0 - 5, T0),
                           entry("q\"u\xc3\xa9", "c1", 100, 1, T0) };
    ps_rc_state_t st = { e, 3, T0 }, back;
    char err[256];
    char *text = ps_rc_state_format(&st);

    (void)state;
    assert_non_null(text);
    assert_int_equal(ps_rc_state_parse(text, strlen(text), &back, err, sizeof(err)), 0);
    assert_int_equal(back.n, 3);
    assert_int_equal(back.last_run, T0);
    assert_memory_equal(back.v, e, sizeof(e));
    ps_rc_state_free(&back);
    free(text);

    st.n = 0;
    st.last_run = 0;
    text = ps_rc_state_format(&st);
    assert_int_equal(ps_rc_state_parse(text, strlen(text), &back, err, sizeof(err)), 0);
    assert_int_equal(back.n, 0);
    ps_rc_state_free(&back);
    free(text);
}

static void test_state_rejects(void **state)
{
#define E(x) "{\"version\":1,\"logins\":[" x "]}"
#define OK                                                                     \
    "{\"login\":\"alice\",\"organization\":\"acme\",\"id\":\"a1\",\"runs\":1," \
    "\"first_missing\":1800000000,\"last_counted\":1800000000"
    static const struct {
        const char *text, *why;
    } bad[] = {
        { "", "not JSON" },
        { "[]", "not a JSON object" },
        { "{\"version\":1}", "missing" },
        { "{\"logins\":[]}", "missing" },
        { "{\"version\":2,\"logins\":[]}", "version" },
        { "{\"version\":1,\"logins\":[]} x", "not JSON" },
        { "{\"version\":1,\"logins\":[],\"extra\":1}", "unknown field" },
        { "{\"version\":1,\"logins\":{}}", "not an array" },
        { "{\"version\":1,\"last_run\":0,\"logins\":[]}", "not a time" },
        { E("1"), "not an object" },
        { E(OK "}"), NULL },
        { E(OK ",\"x\":1}"), "unknown field" },
        { E("{\"login\":\"alice\"}"), "missing" },
        { E(OK "}," OK "}"), "twice" },
        { E("{\"login\":\"al ice\",\"organization\":\"acme\",\"id\":\"a1\",\"runs\":1,"
            "\"first_missing\":1,\"last_counted\":1}"),
          "invalid" },
        { E("{\"login\":\"alice\",\"organization\":\"acme\",\"id\":\"..\",\"runs\":1,"
            "\"first_missing\":1,\"last_counted\":1}"),
          "invalid" },
        { E("{\"login\":\"alice\",\"organization\":\"acme\",\"id\":\"a1\",\"runs\":0,"
            "\"first_missing\":1,\"last_counted\":1}"),
          "runs" },
        { E("{\"login\":\"alice\",\"organization\":\"acme\",\"id\":\"a1\",\"runs\":\"1\","
            "\"first_missing\":1,\"last_counted\":1}"),
          "runs" },
        { E("{\"login\":\"alice\",\"organization\":\"acme\",\"id\":\"a1\",\"runs\":1,"
            "\"first_missing\":2,\"last_counted\":1}"),
          "after" },
        { E("{\"login\":\"alice\",\"organization\":\"acme\",\"id\":\"a1\",\"runs\":1,"
            "\"first_missing\":-5,\"last_counted\":1}"),
          "not a time" },
        { E("{\"login\":\"al\\u0000ce\",\"organization\":\"acme\",\"id\":\"a1\",\"runs\":1,"
            "\"first_missing\":1,\"last_counted\":1}"),
          "not text" },
    };
    ps_rc_state_t st;
    char err[256];
    size_t i;

    (void)state;
    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = ps_rc_state_parse(bad[i].text, strlen(bad[i].text), &st, err, sizeof(err));

        if(!bad[i].why) {
            assert_int_equal(rc, 0);
            ps_rc_state_free(&st);
            continue;
        }
        if(rc == 0 || !strstr(err, bad[i].why))
            fail_msg("case %zu: rc %d, error \"%s\", want \"%s\"", i, rc, rc ? err : "",
                     bad[i].why);
        assert_null(st.v);
    }
#undef E
#undef OK
}

/* ------------------------------------------------------------ NSS */

static void test_nss_lookup(void **state)
{
    char err[128];

    (void)state;
    assert_int_equal(ps_nss_lookup("root", err, sizeof(err)), 1);
    assert_int_equal(ps_nss_lookup("no-such-login-ps-test", err, sizeof(err)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_sighting_waits),
        cmocka_unit_test(test_runs_count_only_interval_apart),
        cmocka_unit_test(test_seen_again_resets),
        cmocka_unit_test(test_count_restarts_on_new_id_or_clock_going_back),
        cmocka_unit_test(test_never_removed),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_state_roundtrip),
        cmocka_unit_test(test_state_rejects),
        cmocka_unit_test(test_nss_lookup),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
