/* outcome.h - the one table from what happened to a removal to what follows:
 * the spool action, the exit code, the audit word, the syslog priority and
 * the PAM helper's word. `remove`, the PAM helper, the sender and `retry` all
 * decide through it; nothing else reads an HTTP status to decide what
 * happens to a spool entry.
 *
 *   status        spool      exit  audit        priority  helper word
 *   REMOVED       settle       0   removed      info      removed
 *   ABSENT        settle       0   absent       info      absent
 *   QUEUED        pending     75   queued       warning   queued
 *   SCHEDULED     pending     75   scheduled    notice    scheduled
 *   HELD          held        77   held         err       held
 *   HELD_CONFIG   held        78   held         err       held-config
 *   NOT_QUEUED    -           75   not-queued   err       not-queued
 *   REFUSED       -           77   refused      err       refused
 *   CONFIG        -           78   failed       err       config
 *   RECORDED      unresolved  78   recorded     err       recorded
 *   UNMAPPED      -            0   unmapped     debug     unmapped
 *   UNKNOWN       -            1   unmapped     err       unknown
 *   DRYRUN        -            0   dry-run      info      dry-run
 *   INVALID       -           64   invalid      err       invalid
 *   ERROR         -            1   failed       err       error
 *
 * Every helper word names one status, so that a word read back (the
 * sender's answer) gives the status it was written for.
 *
 * REMOVED and ABSENT are the only outcomes that settle (delete) a spool
 * entry: ABSENT only once the absence is confirmed (remove.c). HELD and
 * HELD_CONFIG keep the entry, with its reason, until a person or a changed
 * configuration deals with it. SCHEDULED is a pending entry that was never
 * sent: api.spread put its first attempt at a random moment within that
 * many seconds, and `retry` sends it then. NOT_QUEUED, REFUSED and CONFIG are the same
 * answers for a request that is not in the spool (--no-queue). */
#ifndef PS_OUTCOME_H
#define PS_OUTCOME_H

#include "api.h"

typedef enum ps_status {
    PS_ST_REMOVED = 0, /* DELETE answered 2xx */
    PS_ST_ABSENT,      /* the member is not there, confirmed */
    PS_ST_UNMAPPED,    /* not in the map, unmapped = "ignore" */
    PS_ST_UNKNOWN,     /* not in the map, unmapped = "error" */
    PS_ST_DRYRUN,      /* --dry-run: nothing sent */
    PS_ST_QUEUED,      /* transient: pending in the spool */
    PS_ST_HELD,        /* refused by the API, or not confirmed: held */
    PS_ST_HELD_CONFIG, /* a configuration problem after the request was recorded: held */
    PS_ST_NOT_QUEUED,  /* transient, and not in the spool */
    PS_ST_REFUSED,     /* refused or not confirmed, and not in the spool */
    PS_ST_CONFIG,      /* configuration problem, and not in the spool */
    PS_ST_RECORDED,    /* the configuration did not load: recorded as unresolved */
    PS_ST_INVALID,     /* the login itself is not acceptable */
    PS_ST_ERROR,       /* anything else, e.g. could not be recorded */
    PS_ST_SCHEDULED    /* recorded, not sent: api.spread puts its first attempt later (retry) */
} ps_status_t;

typedef enum ps_spool_action {
    PS_SPOOL_NONE = 0,   /* nothing in the spool changes */
    PS_SPOOL_SETTLE,     /* confirmed: the entry is deleted */
    PS_SPOOL_PENDING,    /* kept, sent again by `retry` with backoff */
    PS_SPOOL_HOLD,       /* kept, held with its reason */
    PS_SPOOL_UNRESOLVED, /* kept in unresolved/ */
} ps_spool_action_t;

typedef struct ps_outcome_row {
    ps_status_t status;
    ps_spool_action_t spool;
    int exit_code;
    const char *audit;  /* the word after outcome= in the audit line */
    int priority;       /* syslog priority of the audit line */
    const char *helper; /* the word pam-helper prints (helper.h) */
    int rank;           /* which of several outcomes decides an exit code */
} ps_outcome_row_t;

/* The row of a status (never NULL: an unknown value gets ERROR's row). */
const ps_outcome_row_t *ps_outcome(ps_status_t st);

/* What the removal protocol found, before the spool is considered. */
typedef enum ps_verdict {
    PS_V_REMOVED = 0, /* DELETE answered 2xx */
    PS_V_ABSENT,      /* not a member, and the credential can read the list */
    PS_V_TRANSIENT,   /* 429, 5xx, timeout, connection or TLS handshake failure */
    PS_V_REFUSED,     /* 400, 401, 403, 422 and other 4xx; a 404 not confirmed */
    PS_V_CONFIG       /* certificate, redirect, URL, no credential, no client */
} ps_verdict_t;

/* The status of a verdict for a request that is (recorded = 1) or is not in
 * the spool. */
ps_status_t ps_outcome_status(ps_verdict_t v, int recorded);

/* The verdict of one API answer class (api.h) to a DELETE. A 404
 * (PS_OUT_ABSENT) is never a verdict by itself: it is ambiguous until
 * confirmed, so it maps to PS_V_REFUSED here and remove.c confirms it. */
ps_verdict_t ps_verdict_of_answer(ps_outcome_t o);

const char *ps_status_word(ps_status_t st); /* the helper word */
int ps_status_exit(ps_status_t st);
int ps_status_worse(ps_status_t a, ps_status_t b); /* 1 when a outranks b */

/* Parses a helper word back (the sender's DONE line): 0 and *st, or -1. */
int ps_status_from_word(const char *word, ps_status_t *st);

#endif
