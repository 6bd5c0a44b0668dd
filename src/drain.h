/* drain.h - `retry`: drain the durable queue, oldest first, paced below the
 * rate limit, one connection for the whole drain. */
#ifndef PS_DRAIN_H
#define PS_DRAIN_H

#include <stddef.h>
#include "remove.h"

typedef struct ps_drain_stats {
    size_t total; /* pending entries found */
    size_t removed, absent, requeued, dead, refused, busy, invalid, aged, left;
    long http_429;     /* 429 answers seen */
    long connects;     /* TCP/TLS connections opened */
    double elapsed;    /* seconds */
    int stopped;       /* 1 when the drain stopped early (deadline, outage, credentials) */
    char reason[1024]; /* why it stopped */
} ps_drain_stats_t;

/* Drains the queue of ctx->cfg until it is empty, ctx->deadline passes, the
 * API is unavailable (3 connection-level failures in a row) or a credential
 * or TLS problem makes every entry fail alike. `progress` writes a live
 * done/total, rate and ETA line to stderr. Returns the status that decides
 * the exit code: REMOVED (nothing left), QUEUED (entries left), REFUSED,
 * CONFIG or ERROR. */
ps_status_t ps_drain(ps_ctx_t *ctx, int progress, ps_drain_stats_t *st);

#endif
