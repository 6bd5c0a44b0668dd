/* metrics.h - the Prometheus node_exporter textfile (metrics.textfile).
 *
 * Every command that changes the spool writes the file at its end (`serve`
 * at most once a second while it works): a temp file in the textfile's
 * directory, fsync, chmod 0644, rename, so that node_exporter's textfile
 * collector never reads half a file. The series (names start with
 * planetscale_deprovision_, base units, counters end in _total):
 *
 *   spool_entries{state}                  gauge: pending, held, dead, unresolved
 *   spool_oldest_pending_age_seconds      gauge: since the oldest pending entry was recorded
 *   removals_total{outcome}               counter: one per audit line, by its outcome word
 *   last_retry_timestamp_seconds          gauge: when a `retry` run last ended
 *   last_complete_retry_timestamp_seconds gauge: when a `retry` run last went through
 *                                         everything it had to send without stopping early
 *   reconcile_candidates                  gauge: memberships the last `reconcile` found whose
 *                                         account is gone
 *   reconcile_cap_tripped                 gauge: 1 when that run found more than its cap
 *   last_reconcile_timestamp_seconds      gauge: when `reconcile` last reported
 *
 * The counters and the times must survive the process that counted them,
 * and stay monotonic when several processes count at once: they live in
 * the spool, in PS_METRICS_STATE (0600, written atomically under the lock
 * PS_METRICS_LOCK), and each process adds what it counted. The gauges of
 * the spool are read from the spool itself at each write.
 *
 * Nothing here may make a removal fail or wait long: the lock is waited for
 * at most PS_METRICS_LOCK_WAIT seconds, and every error is logged (warning)
 * and otherwise ignored. */
#ifndef PS_METRICS_H
#define PS_METRICS_H

#include <stddef.h>
#include "config.h"
#include "log.h"

#define PS_METRICS_STATE     ".metrics.json" /* in the spool directory */
#define PS_METRICS_LOCK      ".metrics.lock" /* in the spool directory */
#define PS_METRICS_LOCK_WAIT 1.0             /* seconds */
#define PS_METRICS_PREFIX    "planetscale_deprovision_"

typedef struct ps_metrics ps_metrics_t;

/* A process's counts, empty. NULL when out of memory (then count nothing). */
ps_metrics_t *ps_metrics_new(void);
void ps_metrics_free(ps_metrics_t *m);

/* Counts every audit line written through lg from now on (lg->on_audit). */
void ps_metrics_attach(ps_metrics_t *m, ps_log_t *lg);

/* Counts one outcome word (ps_audit's); safe from any thread. Words that
 * are not a removal's outcome (dry-run) are not counted. */
void ps_metrics_count(void *m, const char *outcome);

/* A `retry` run ended; `complete`: it went through every entry it had to
 * send without stopping early (deadline, outage, credential). */
void ps_metrics_retry(ps_metrics_t *m, int complete);

/* What a `reconcile` run found: `candidates` memberships whose account is
 * gone, and whether that exceeded its cap (it then acted on none). */
void ps_metrics_reconcile(ps_metrics_t *m, size_t candidates, int cap_tripped);

/* Adds what m counted since its last write to the counters kept in the
 * spool of cfg, and writes cfg's metrics.textfile. Does nothing when
 * metrics.textfile is not set. 0 written or off, -1 when something failed
 * (logged as a warning through lg; what m counted is kept for the next
 * call). Never blocks longer than PS_METRICS_LOCK_WAIT on the lock. */
int ps_metrics_write(ps_metrics_t *m, const ps_config_t *cfg, const ps_log_t *lg);

/* The outcome words that removals_total counts, in the file's order. */
size_t ps_metrics_outcomes(const char *const **words);

#endif
