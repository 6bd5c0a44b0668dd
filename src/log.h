/* log.h - one logging function for the whole core.
 * In the command it writes human messages to stderr and audit lines to
 * syslog; under the PAM helper, syslog only. Facility is always authpriv.
 * No global state: a ps_log_t travels with the call. */
#ifndef PS_LOG_H
#define PS_LOG_H

#include <syslog.h>
#include "util.h"

typedef struct ps_log {
    int to_stderr; /* write messages to stderr (the command) */
    int to_syslog; /* write messages to syslog, LOG_AUTHPRIV */
    int verbose;   /* LOG_DEBUG/LOG_INFO go to stderr too */
    int json;      /* --json: stderr messages stay plain text, stdout is JSON */
    /* Told the outcome word of every audit line (the metrics count them,
     * metrics.h); NULL: nobody. Called from any thread that audits. */
    void (*on_audit)(void *arg, const char *outcome);
    void *on_audit_arg;
} ps_log_t;

/* A message. LOG_DEBUG goes out only when verbose. Callers escape any
 * user-controlled string with ps_escape() before formatting it in. */
void ps_logf(const ps_log_t *lg, int prio, const char *fmt, ...) PS_PRINTF(3, 4);

/* The audit line for one outcome: always to syslog (authpriv), and to stderr
 * when lg->to_stderr && lg->verbose. Every string is escaped here; no secret
 * is ever passed in. `outcome` is an audit word of the outcome table
 * (outcome.h: removed, absent, queued, held, not-queued, refused, failed,
 * recorded, unmapped, dry-run, invalid) or one of the spool's own: dead-letter
 * (pending too long), dropped (`queue drop`), cancelled (an unresolved
 * record whose account is no longer expired). `trigger` says what asked for
 * the removal (remove, pam, reconcile, retry, ...; NULL prints "-").
 * http_status 0 = no HTTP answer. */
void ps_audit(const ps_log_t *lg, int prio, const char *outcome, const char *trigger,
              const char *login, const char *organization, const char *id, int delete_passwords,
              int delete_service_tokens, long http_status, const char *detail);

#endif
