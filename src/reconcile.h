/* reconcile.h - memberships that outlived their accounts.
 *
 * Hooks miss events: accounts removed from a directory (SSSD, LDAP, ...)
 * never run userdel, a host was down, the package came later. `reconcile`
 * compares the mapped logins and the organizations' member lists with the
 * local account database (NSS) and removes the memberships whose account
 * is definitively gone. Its danger is the opposite mistake, an NSS outage
 * that makes every account look deleted, hence these rules:
 *
 *  - a lookup error is never "not found": getpwnam_r returning anything but
 *    0 (ENOENT and EIO when a directory is down, ERANGE past our buffer
 *    limit, ...) stops the whole run before any request, acting on no one;
 *  - an account counts as gone only after `confirm_runs` runs with --apply
 *    in a row found it missing, at least `confirm_interval` seconds apart
 *    (state in QUEUE_DIR/reconcile/state.json); a login seen again starts
 *    over;
 *  - more candidates than `max_removals`, or than `max_fraction` of the
 *    mapped logins (when at least 10 are mapped), is an outage until shown
 *    otherwise: act on none, LOG_ALERT, exit 77, say how to proceed
 *    (--apply --allow N);
 *  - without --apply: the plan only; no file is written, no request is made
 *    but the member-list pages.
 *
 * Requests: the member-list pages of each organization, then the removal
 * of each confirmed login through ps_remove_login (write-ahead, look then
 * delete, outcome table, audit line with trigger=reconcile), nothing per
 * login otherwise. */
#ifndef PS_RECONCILE_H
#define PS_RECONCILE_H

#include <stddef.h>
#include "remove.h"

#define PS_RC_DIR        "reconcile"  /* below the queue directory, 0700 */
#define PS_RC_STATE      "state.json" /* 0600, written atomically */
#define PS_RC_LOCK       ".lock"      /* flock: one --apply run at a time */
#define PS_RC_STATE_MAX  (64L * 1024 * 1024)
#define PS_NSS_BUF_MAX   (1024 * 1024) /* getpwnam_r buffer limit (ERANGE above) */
#define PS_RC_MIN_MAPPED 10            /* max_fraction applies from this many */

/* One getpwnam_r(login). 1 found, 0 not found (a return of 0 with a NULL
 * result: the only "not found" glibc has), -1 anything else, with err
 * ("Input/output error", ...). ERANGE grows the buffer up to
 * PS_NSS_BUF_MAX, then is an error too. */
int ps_nss_lookup(const char *login, char *err, size_t errlen);

/* ---- the state kept between runs ---- */

typedef struct ps_rc_entry {
    char login[PS_LOGIN_MAX + 1];
    char organization[PS_ID_MAX + 1];
    char id[PS_ID_MAX + 1];
    int runs;                /* runs in a row that found the account missing */
    long long first_missing; /* unix time of the first of them */
    long long last_counted;  /* unix time of the last run that counted */
} ps_rc_entry_t;

typedef struct ps_rc_state {
    ps_rc_entry_t *v; /* malloc'd */
    size_t n;
    long long last_run; /* unix time of the last --apply run, 0 = none */
} ps_rc_state_t;

void ps_rc_state_free(ps_rc_state_t *st);

/* Strict parse of a state file's bytes: one JSON object, known fields
 * only, right types, valid logins and ids, runs >= 1, times > 0 with
 * first_missing <= last_counted, no login twice. 0, or -1 with err. */
int ps_rc_state_parse(const char *buf, size_t len, ps_rc_state_t *st, char *err, size_t errlen);

/* The state as JSON (malloc'd), entries in the order given. */
char *ps_rc_state_format(const ps_rc_state_t *st);

/* ---- the decision, without any I/O (unit-tested) ---- */

enum ps_rc_action {
    PS_RC_PRESENT = 0, /* the account exists: nothing to do (a count, if any, starts over) */
    PS_RC_NOT_MEMBER,  /* missing, but the id is not a member: nothing to remove (stale map) */
    PS_RC_SHARED,      /* missing, but another mapped login with the same id exists */
    PS_RC_QUEUED,      /* missing, and a removal for it is already in the spool */
    PS_RC_WAIT,        /* missing: counted, not yet confirm_runs runs */
    PS_RC_REMOVE       /* missing in confirm_runs runs in a row: remove */
};

typedef struct ps_rc_login {
    /* input */
    const char *login, *organization, *id; /* id "" for an email no member has */
    const char *email;                     /* the user entry's email, or NULL */
    const char *email_problem;             /* why the email gave no id, or NULL */
    int missing;                           /* NSS answered "not found" */
    int member;                            /* id is in the organization's member list */
    int queued;                            /* an entry for login/organization/id is in the spool */
    int directory_managed;                 /* the member is managed by Directory Sync */
    /* output */
    enum ps_rc_action action;
    int runs;                /* runs in a row found it missing, this one included when it counts */
    int counts;              /* this run counts toward confirm_runs */
    int reset;               /* it was being counted and is present again */
    long long first_missing; /* 0 unless counted */
    long long last_counted;
    long long next_count; /* the earliest time the next run counts */
} ps_rc_login_t;

typedef struct ps_rc_plan {
    size_t mapped;     /* logins in the map */
    size_t candidates; /* WAIT + REMOVE: mapped, missing, a member, not queued */
    size_t remove;     /* REMOVE */
    long limit;        /* the cap in force: at most this many candidates */
    int tripped;       /* candidates > limit: act on none */
} ps_rc_plan_t;

/* Decides every login's action at time `now` from its input and the old
 * state, fills plan, and builds the state to keep (*next, malloc'd: the
 * counted candidates only). allow < 0: the configuration's cap; else
 * --allow N: at most N candidates. -1 when out of memory. */
int ps_rc_decide(const ps_config_t *cfg, ps_rc_login_t *l, size_t n, const ps_rc_state_t *old,
                 long long now, long allow, ps_rc_plan_t *plan, ps_rc_state_t *next);

/* ---- the command ---- */

typedef struct ps_rc_opts {
    int apply;       /* --apply */
    long allow;      /* --allow N, -1 when not given */
    int json;        /* --json */
    double deadline; /* ps_now() value, 0 = none */
    /* When not NULL: the run's plan, and *decided = 1, once the run got as
     * far as deciding (the metrics report its candidates and cap) */
    ps_rc_plan_t *plan_out;
    int *decided;
} ps_rc_opts_t;

/* `planetscale-deprovision reconcile`: prints the plan (or what was done)
 * on stdout, messages through lg. Returns the exit status: 0 done, 75 an
 * NSS lookup failed, a member list could not be read for now, another run
 * holds the lock, or a removal was queued; 77 the cap tripped, the API
 * refused to list the members, or a removal was held; 78 configuration;
 * 1 anything else (the state could not be kept). */
int ps_reconcile(const ps_config_t *cfg, const ps_log_t *lg, const ps_rc_opts_t *o);

#endif
