/* sender_client.h - the hand-off to a running sender, and `check`'s probe
 * of it (the protocol is in sender_wire.h).
 *
 * Why a sender: one removal done in-process pays for loading libcurl's
 * dependency tree, the TLS library's start-up and a full TLS handshake
 * (bench/RESULTS.md: most of its CPU). `planetscale-deprovision serve`
 * (sender_serve.h) pays for them once; every removal handed to it costs a
 * request on an open connection, and concurrent hooks (a mass offboarding)
 * share that connection, paced below api.rate_limit.
 *
 * Nothing is lost on the way: the client records the entry (write-ahead)
 * and takes its lock first, then passes the lock's open file itself
 * (SCM_RIGHTS), so the lock never leaves the two processes. Whatever
 * happens after that (sender killed, client killed, deadline), the entry is
 * in the queue and the retry timer sends it. */
#ifndef PS_SENDER_CLIENT_H
#define PS_SENDER_CLIENT_H

#include "ctx.h"

/* Hands entry `e`, recorded in the queue and locked through lock_fd by the
 * caller, to the sender at ctx->cfg->sender_socket (a ps_handoff_fn).
 * Returns 0 when the sender took it: rep is filled from its answer, or
 * says QUEUED when no answer came before the deadline (the entry is in the
 * queue, the lock with the sender). Returns 1 when it was not handed over
 * (no sender, another configuration, refused, busy): the caller still
 * holds the lock and sends it itself. */
int ps_sender_handoff(ps_ctx_t *ctx, int lock_fd, const ps_qentry_t *e, ps_report_t *rep);

/* For `check`: asks the sender whether it would take this configuration's
 * removals. 0 yes, 1 no (not running, not ours, declines), -1 disabled;
 * msg says which in words. */
int ps_sender_probe(const ps_config_t *cfg, char *msg, size_t msglen);

#endif
