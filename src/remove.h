/* remove.h - one removal, end to end: map, record, send, confirm, audit.
 * Shared by `remove`, `pam-helper`, the sender and `retry`; knows nothing of
 * argv or PAM. What each outcome does to the spool is outcome.h's table. */
#ifndef PS_REMOVE_H
#define PS_REMOVE_H

#include "ctx.h"

/* Checks and maps one login: the one place that decides invalid, unmapped
 * (UNMAPPED or, with unmapped = "error", UNKNOWN) and "no organization"
 * (CONFIG), with rep->message. Returns DRYRUN with rep->map filled when it
 * is mapped (nothing is sent: the caller decides). No side effect. */
ps_status_t ps_map_login(const ps_config_t *cfg, const char *login, ps_report_t *rep);

/* ps_map_login, writing the audit line of a login that goes no further. */
ps_status_t ps_resolve_login(const ps_config_t *cfg, const ps_log_t *lg, const char *trigger,
                             const char *login, ps_report_t *rep);

/* Removes one login: resolve, record in the spool (write-ahead), send (or
 * hand to ctx->handoff), settle. Never exits, never prints to stdout. */
ps_status_t ps_remove_login(ps_ctx_t *ctx, const char *login, ps_report_t *rep);

/* Sends one entry that the caller holds locked (or one not in the spool:
 * e->name = "") through the removal protocol (remove.c) and applies the
 * outcome table: a confirmed removal deletes the entry; a transient failure
 * rewrites it pending with attempts and last_error; a refusal, an
 * unconfirmed 404 or a configuration problem holds it with the reason and
 * the configuration's fingerprint. Writes the one audit line. `once`: one
 * request per step, no retries (the drain paces itself). Fills rep (rep
 * must be zeroed or hold the caller's mapping, which is kept) and *res (may
 * be NULL) with the decisive answer. */
ps_status_t ps_send_entry(ps_ctx_t *ctx, ps_qentry_t *e, int once, ps_report_t *rep,
                          ps_result_t *res);

/* A new spool entry for a mapping (recorded now, never sent). */
void ps_entry_from_map(ps_qentry_t *e, const ps_mapping_t *m, const char *trigger);

/* A user entry that gives an email instead of an id: its user id, through
 * ps_resolve_email (members.h) with this context: the cache of
 * ctx->cfg->queue_dir first, then ctx's client (created only on a cache
 * miss, so that a cached email loads no libcurl), ctx->deadline, with
 * retries unless `once` (the queue drain, which handles 429s itself).
 * PS_OUT_OK (id_out), ABSENT (no member has the email: the credential read
 * the whole list), TRANSIENT, REFUSED (the credential cannot read the
 * list, or two members share the email) or CONFIG; r says why.
 * ps_send_entry calls it for an entry whose id is not resolved yet. */
ps_outcome_t ps_ctx_resolve_email(ps_ctx_t *ctx, const char *org, const char *email, int once,
                                  char id_out[PS_ID_MAX + 1], int *from_cache, ps_result_t *r);

/* Get (creating) the client and the queue; release both. */
ps_client_t *ps_ctx_client(ps_ctx_t *ctx, char *err, size_t errlen);
ps_queue_t *ps_ctx_queue(ps_ctx_t *ctx, char *err, size_t errlen);
void ps_ctx_release(ps_ctx_t *ctx);

#endif
