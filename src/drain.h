/* drain.h - `retry`: send what waits in the spool, oldest first, paced below
 * the rate limit, over one connection. */
#ifndef PS_DRAIN_H
#define PS_DRAIN_H

#include <stddef.h>
#include "remove.h"

typedef struct ps_drain_stats {
    size_t total;   /* entries this run looked at */
    size_t sent;    /* entries sent */
    size_t removed; /* confirmed by this run: removed */
    size_t absent;  /* confirmed by this run: not a member */
    size_t aged;    /* moved to dead/ by this run */
    size_t busy;    /* being sent by another process */
    size_t invalid; /* moved to invalid/ */
    /* what the spool holds at the end (read back from it, not counted) */
    size_t pending, held, dead;
    size_t waiting;     /* pending, first attempt not due before the deadline (api.spread) */
    long long next_due; /* the earliest of those (unix time), 0 = none */
    long http_429;      /* 429 answers seen */
    long connects;      /* TCP/TLS connections opened */
    double elapsed;     /* seconds */
    int stopped;        /* 1 when the drain stopped early */
    char reason[1024];  /* why it stopped */
} ps_drain_stats_t;

/* Drains the spool of ctx->cfg: pending entries that are due (those pending longer than
 * max_age_days since their first real attempt become dead letters, with a
 * LOG_ALERT line), then held entries whose configuration fingerprint
 * changed since they were held (every held entry and every dead letter with
 * ctx->retry_held), then the pending entries whose first attempt api.spread
 * put later (their "not_before", never later than recorded + api.spread),
 * each at its time, waiting for those due before ctx->deadline (all of
 * them without a deadline); the others stay pending. Stops early at ctx->deadline, when the API is
 * unavailable (3 connection-level failures in a row), or when the
 * credential or the TLS configuration fails (every entry would fail alike;
 * the entries not sent keep their state). `progress` writes a live
 * done/total, rate and ETA line to stderr.
 * Returns the status that decides the exit code: REMOVED when the spool is
 * empty at the end, else the worst of QUEUED (pending left), HELD (held or
 * dead entries: they need a person), HELD_CONFIG (stopped by a
 * configuration problem) and ERROR (the spool could not be read). */
ps_status_t ps_drain(ps_ctx_t *ctx, int progress, ps_drain_stats_t *st);

/* Counts the spool's entries by state (invalid files are moved aside and
 * counted in *invalid, which may be NULL). 0, or -1 with err. */
int ps_spool_count(ps_queue_t *q, size_t *pending, size_t *held, size_t *dead, size_t *invalid,
                   char *err, size_t errlen);

#endif
