/* remove.h - one removal, end to end: map, record, send, confirm, audit.
 * Shared by `remove`, `pam-helper` and `retry`; knows nothing of argv or PAM. */
#ifndef PS_REMOVE_H
#define PS_REMOVE_H

#include "ctx.h"

/* Removes one login. Never exits, never prints to stdout. */
ps_status_t ps_remove_login(ps_ctx_t *ctx, const char *login, ps_report_t *rep);

/* Sends one queued entry that the caller holds locked (lock_fd) and settles
 * it: done (204/404), rewritten with attempts+1 (transient), dead-lettered
 * (400/422-class refusal). 401/403 and configuration errors leave it
 * pending. Fills rep (status REMOVED/ABSENT/QUEUED/REFUSED/CONFIG/ERROR);
 * rep must be zeroed or hold the caller's mapping (rep->mapped), which is
 * kept: a mapping taken from e would point into e. */
ps_status_t ps_send_entry(ps_ctx_t *ctx, ps_qentry_t *e, int once, ps_report_t *rep,
                          ps_result_t *res);

/* Get (creating) the client and the queue. */
ps_client_t *ps_ctx_client(ps_ctx_t *ctx, char *err, size_t errlen);
ps_queue_t *ps_ctx_queue(ps_ctx_t *ctx, char *err, size_t errlen);
void ps_ctx_release(ps_ctx_t *ctx);

const char *ps_status_word(ps_status_t st);        /* helper.h words */
int ps_status_exit(ps_status_t st);                /* the design's exit codes */
int ps_status_worse(ps_status_t a, ps_status_t b); /* 1 when a outranks b for the exit code */

#endif
