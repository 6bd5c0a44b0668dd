/* sender_client.c - the hand-off to a running sender and `check`'s probe;
 * see sender_client.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "remove.h"
#include "sender_client.h"
#include "sender_wire.h"

#define HELLO_WAIT    10.0 /* seconds for the sender to say READY */
#define ANSWER_MARGIN 0.3  /* how long past the deadline a DONE is still awaited */

static void client_debug(const ps_ctx_t *ctx, const char *what)
{
    char esc[600];

    ps_logf(ctx->log, LOG_DEBUG, "sender %s: %s; sending directly", ctx->cfg->sender_socket,
            ps_escape(what, esc, sizeof(esc)));
}

static int connect_sender(const ps_ctx_t *ctx)
{
    struct sockaddr_un sa;
    char why[300];
    uid_t uid = 0;
    int fd;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if(strlen(ctx->cfg->sender_socket) >= sizeof(sa.sun_path))
        return -1;
    memcpy(sa.sun_path, ctx->cfg->sender_socket, strlen(ctx->cfg->sender_socket) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if(fd < 0)
        return -1;
    if(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        snprintf(why, sizeof(why), "not listening (%s)", strerror(errno));
        client_debug(ctx, why);
        close(fd);
        return -1;
    }
    if(!ps_wire_peer_trusted(fd, &uid)) {
        ps_logf(ctx->log, LOG_WARNING,
                "sender socket %s belongs to uid %u, neither root "
                "nor us: not used",
                ctx->cfg->sender_socket, (unsigned)uid);
        close(fd);
        return -1;
    }
    return fd;
}

static void handed_but_silent(ps_ctx_t *ctx, ps_report_t *rep, const char *what)
{
    rep->status = PS_ST_QUEUED;
    snprintf(rep->message, sizeof(rep->message),
             "handed to the sender (%s), %s; the entry "
             "stays in the queue until it is confirmed",
             ctx->cfg->sender_socket, what);
    ps_audit(ctx->log, LOG_WARNING, "queued", ctx->trigger, rep->map.login, rep->map.organization,
             rep->map.id, rep->map.delete_passwords, rep->map.delete_service_tokens, 0,
             rep->message);
}

int ps_sender_handoff(ps_ctx_t *ctx, int lock_fd, const ps_qentry_t *e, ps_report_t *rep)
{
    const ps_config_t *cfg = ctx->cfg;
    char line[PS_SENDER_LINE_MAX + 1];
    ps_wire_t c;
    double now = ps_now(), hello_by, done_by;
    long ms = 0;
    int fd, rv = 1;

    if(!cfg->sender_socket[0] || lock_fd < 0 || !e->name[0])
        return 1;
    if(ctx->deadline > 0) {
        if(ctx->deadline - now < 0.5)
            return 1; /* too late to hand over: send it ourselves */
        ms = (long)((ctx->deadline - now) * 1000);
        done_by = ctx->deadline + ANSWER_MARGIN;
    } else {
        /* what the direct path could take at most: every attempt's
         * timeouts plus its backoff */
        done_by = now + cfg->retries * (cfg->timeout + cfg->connect_timeout) + 120;
    }
    hello_by = now + HELLO_WAIT < done_by ? now + HELLO_WAIT : done_by;
    if(snprintf(line, sizeof(line), "HELLO " PS_SENDER_PROTO " %s %s\n", cfg->api_url,
                cfg->queue_dir) >= (int)sizeof(line) ||
       strchr(cfg->api_url, ' '))
        return 1;
    fd = connect_sender(ctx);
    if(fd < 0)
        return 1;
    ps_wire_init(&c, fd);

    if(ps_wire_write_line(fd, line, -1, hello_by) != 0 ||
       ps_wire_read_line(&c, line, sizeof(line), hello_by)) {
        client_debug(ctx, "no READY");
        goto out;
    }
    if(strcmp(line, "READY") != 0) {
        client_debug(ctx, line);
        goto out;
    }

    if(ctx->deadline > 0) {
        /* what is left now: the READY may have come late (a busy sender) */
        now = ps_now();
        if(ctx->deadline - now < 0.5) {
            client_debug(ctx, "READY too close to the deadline");
            goto out;
        }
        ms = (long)((ctx->deadline - now) * 1000);
    }

    /* From here on the sender may hold the lock: never send it ourselves. */
    snprintf(line, sizeof(line), "SEND %s %ld\n", e->name, ms);
    if(ps_wire_write_line(fd, line, lock_fd, hello_by) != 0) {
        /* sendmsg failed: the descriptor did not go */
        client_debug(ctx, "the request could not be written");
        goto out;
    }
    if(ps_wire_read_line(&c, line, sizeof(line), done_by) != 0) {
        handed_but_silent(ctx, rep, "which closed the connection or did not answer");
        rv = 0;
        goto out;
    }
    if(strncmp(line, "REFUSE", 6) == 0) {
        /* it closed its copy without touching the entry */
        client_debug(ctx, line);
        goto out;
    }
    rv = 0;
    if(strcmp(line, "ACCEPT") != 0) {
        handed_but_silent(ctx, rep, "which gave an answer that is not ACCEPT");
        goto out;
    }
    if(ps_wire_read_line(&c, line, sizeof(line), done_by) != 0) {
        handed_but_silent(ctx, rep, "which gave no result before the deadline");
        goto out;
    }
    if(ps_sender_parse_done(line, rep) != 0) {
        handed_but_silent(ctx, rep, "which gave a result that cannot be read");
        goto out;
    }
    ps_logf(ctx->log, LOG_DEBUG, "sender %s: %s", cfg->sender_socket, ps_status_word(rep->status));
out:
    ps_wire_close_fds(&c);
    close(fd);
    return rv;
}

int ps_sender_probe(const ps_config_t *cfg, char *msg, size_t msglen)
{
    static const ps_log_t quiet = { .to_stderr = 0 };
    char line[PS_SENDER_LINE_MAX + 1];
    ps_ctx_t ctx;
    ps_wire_t c;
    double by = ps_now() + 5.0;
    int fd, rv = 1;

    if(!cfg->sender_socket[0]) {
        snprintf(msg, msglen, "disabled (sender.socket is \"\")");
        return -1;
    }
    memset(&ctx, 0, sizeof(ctx));
    ctx.cfg = cfg;
    ctx.log = &quiet;
    fd = connect_sender(&ctx);
    if(fd < 0) {
        snprintf(msg, msglen, "not running or not ours: removals are sent directly");
        return 1;
    }
    ps_wire_init(&c, fd);
    snprintf(line, sizeof(line), "HELLO " PS_SENDER_PROTO " %s %s\n", cfg->api_url, cfg->queue_dir);
    if(ps_wire_write_line(fd, line, -1, by) != 0 ||
       ps_wire_read_line(&c, line, sizeof(line), by) != 0) {
        snprintf(msg, msglen, "did not answer: removals are sent directly");
    } else if(strcmp(line, "READY") == 0) {
        snprintf(msg, msglen, "running: removals are handed to it");
        rv = 0;
    } else {
        char esc[300];

        snprintf(msg, msglen, "declines this configuration (%s): removals are sent directly",
                 ps_escape(strncmp(line, "REFUSE ", 7) == 0 ? line + 7 : line, esc, sizeof(esc)));
    }
    ps_wire_close_fds(&c);
    close(fd);
    return rv;
}
