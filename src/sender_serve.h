/* sender_serve.h - `planetscale-deprovision serve`: the long-running sender
 * that keeps one warm API connection and sends the removals handed to it
 * (the hand-off is sender_client.h, the protocol sender_wire.h).
 *
 * Clients are served concurrently: one thread polls the listening socket
 * and every client (non-blocking, a deadline per client and per step, at
 * most PS_SERVE_MAX_CLIENTS at once, the rest refused at once), so that
 * HELLO/READY and SEND/ACCEPT never wait behind a request to the API, and a
 * slow, idle or hostile client delays nobody else. The worker thread
 * (sender_worker.h) sends the accepted removals one at a time on its one
 * connection, paced, in the order accepted; each client gets its DONE when
 * its removal is complete, or "queued" when its deadline comes first. */
#ifndef PS_SENDER_SERVE_H
#define PS_SENDER_SERVE_H

#include "config.h"
#include "log.h"
#include "metrics.h"

#define PS_SERVE_MAX_CLIENTS 128 /* connections served at once */
#define PS_SERVE_MAX_JOBS    512 /* accepted removals not yet answered */

/* Listens on the socket that systemd passed (LISTEN_FDS), else binds
 * `socket_path` (NULL: the config's sender.socket) with mode 0600. Serves
 * until sender.idle_timeout seconds pass with no client and nothing to
 * send (0: forever), or until SIGTERM or SIGINT: it then stops listening
 * (removing the socket file it bound itself, never systemd's), answers
 * "queued" for what it has not begun, and gives the request in flight a
 * few seconds (a second signal, or a request still running then, ends the
 * process by that signal; the entry stays in the queue). Reloads the
 * configuration when the file or its token_file changes. *cfgp may be
 * replaced by a reloaded one (the caller frees *cfgp). Writes the metrics
 * textfile through `metrics` (may be NULL: none, else attached to lg) at
 * most once a second while removals complete, and at the end. Returns the
 * exit code. */
int ps_sender_serve(ps_config_t **cfgp, const char *socket_path, const ps_log_t *lg,
                    ps_metrics_t *metrics);

#endif
