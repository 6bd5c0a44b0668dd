/* sender.h - `serve`: a long-running sender that keeps one warm API
 * connection, and the hand-off that `remove` and `pam-helper` use to give it
 * a removal they have already recorded in the queue.
 *
 * Why: one removal done in-process pays for loading libcurl's dependency
 * tree, OpenSSL's start-up and a full TLS handshake (bench/RESULTS.md:
 * about 86% of its CPU). The sender pays them once; every removal handed
 * to it costs a request on an open connection, and concurrent hooks (a mass
 * offboarding) share one connection paced below api.rate_limit instead of
 * each opening its own and racing into 429s.
 *
 * Nothing is lost on the way: the client records the entry (write-ahead)
 * and takes its lock first, and then passes the lock's open file itself
 * (SCM_RIGHTS), so the lock never leaves the two processes. Whatever
 * happens after that (sender killed, client killed, deadline), the entry is
 * in the queue and the retry timer sends it.
 *
 * Protocol (one exchange per connection, lines of at most PS_SENDER_LINE_MAX
 * bytes, no control characters inside a line):
 *   C: HELLO 1 API_URL QUEUE_DIR
 *   S: READY                      (same API URL and same queue directory)
 *    | REFUSE REASON              (the client sends the removal itself)
 *   C: SEND NAME DEADLINE_MS      + SCM_RIGHTS: the entry's locked lock file
 *   S: ACCEPT | REFUSE REASON
 *   S: DONE WORD HTTP ATTEMPTS MESSAGE   (WORD: ps_status_word)
 * Both sides check the peer's credentials (SO_PEERCRED): root, or the same
 * effective uid. The token never crosses the socket. */
#ifndef PS_SENDER_H
#define PS_SENDER_H

#include "ctx.h"

#define PS_SENDER_LINE_MAX 4096
#define PS_SENDER_PROTO    "1"

/* Client side. Hands entry `e`, recorded in the queue and locked through
 * lock_fd by the caller, to the sender at ctx->cfg->sender_socket.
 * Returns 0 when the sender took it: rep is filled from its answer, or
 * says QUEUED when no answer came before the deadline (the entry is in the
 * queue, the lock with the sender). Returns 1 when it was not handed over
 * (no sender, another configuration, refused): the caller still holds the
 * lock and sends it itself. */
int ps_sender_handoff(ps_ctx_t *ctx, int lock_fd, const ps_qentry_t *e, ps_report_t *rep);

/* For `check`: asks the sender whether it would take this configuration's
 * removals. 0 yes, 1 no (not running, not ours, declines), -1 disabled;
 * msg says which in words. */
int ps_sender_probe(const ps_config_t *cfg, char *msg, size_t msglen);

/* Server side: `planetscale-deprovision serve`. Listens on the socket that
 * systemd passed (LISTEN_FDS), else binds `socket_path` (NULL: the config's
 * sender.socket) with mode 0600. Serves until sender.idle_timeout seconds
 * pass with no client (0: forever). Reloads the configuration when the file
 * or its token_file changes. *cfgp may be replaced by a reloaded one (the
 * caller frees *cfgp). Returns the exit code. */
int ps_sender_serve(ps_config_t **cfgp, const char *socket_path, const ps_log_t *lg);

/* Parsing, exposed for the unit tests and the fuzzer. */
typedef struct ps_sender_hello {
    char url[PS_SENDER_LINE_MAX];
    char queue_dir[PS_SENDER_LINE_MAX];
} ps_sender_hello_t;
int ps_sender_parse_hello(const char *line, ps_sender_hello_t *h);
int ps_sender_parse_send(const char *line, char name[32], long *deadline_ms);
int ps_sender_parse_done(const char *line, ps_report_t *rep);

#endif
