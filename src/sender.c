/* sender.c - the warm sender (`serve`) and the hand-off to it; see sender.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "remove.h"
#include "sender.h"

#define HELLO_WAIT        10.0 /* client: seconds for the sender to say READY */
#define SERVER_READ_WAIT  5.0  /* sender: seconds for a client's next line */
#define SERVER_WRITE_WAIT 2.0
#define ANSWER_MARGIN     0.3 /* the sender answers this long before the client's deadline */
#define PACE_MARGIN       0.98
#define MAX_FDS           4

/* ------------------------------------------------------------ lines */

typedef struct conn {
    int fd;
    char buf[PS_SENDER_LINE_MAX + 1];
    size_t len;
    int fds[MAX_FDS]; /* descriptors received (SCM_RIGHTS) */
    int nfds;
    int extra_fds; /* more arrived than fit: refused */
} conn_t;

static void conn_init(conn_t *c, int fd)
{
    memset(c, 0, sizeof(*c));
    c->fd = fd;
}

static void conn_close_fds(conn_t *c)
{
    int i;

    for(i = 0; i < c->nfds; i++)
        close(c->fds[i]);
    c->nfds = 0;
}

static int wait_fd(int fd, short events, double deadline)
{
    for(;;) {
        struct pollfd p = { fd, events, 0 };
        double left = deadline - ps_now();
        int ms, rc;

        if(left <= 0)
            return 0;
        ms = left > 3600 ? 3600 * 1000 : (int)(left * 1000) + 1;
        rc = poll(&p, 1, ms);
        if(rc > 0)
            return 1;
        if(rc < 0 && errno != EINTR)
            return -1;
    }
}

/* Keeps every descriptor that arrives (closing what does not fit). */
static void take_fds(conn_t *c, struct msghdr *mh)
{
    struct cmsghdr *cm;

    for(cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        size_t i, n;
        int fd;

        if(cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for(i = 0; i < n; i++) {
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if(c->nfds < MAX_FDS) {
                c->fds[c->nfds++] = fd;
            } else {
                close(fd);
                c->extra_fds = 1;
            }
        }
    }
}

/* Reads the next line (without its '\n') into out. 0 ok; -1 EOF, error,
 * timeout, too long or a control character inside the line. */
static int read_line(conn_t *c, char *out, size_t outlen, double deadline)
{
    for(;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        union {
            char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
            struct cmsghdr align;
        } cbuf;
        struct iovec iov;
        struct msghdr mh;
        ssize_t r;

        if(nl) {
            size_t n = (size_t)(nl - c->buf), i;

            if(n >= outlen)
                return -1;
            for(i = 0; i < n; i++)
                if((unsigned char)c->buf[i] < 0x20 || c->buf[i] == 0x7f)
                    return -1;
            memcpy(out, c->buf, n);
            out[n] = '\0';
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            return 0;
        }
        if(c->len >= PS_SENDER_LINE_MAX)
            return -1;
        if(wait_fd(c->fd, POLLIN, deadline) != 1)
            return -1;
        iov.iov_base = c->buf + c->len;
        iov.iov_len = PS_SENDER_LINE_MAX - c->len;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cbuf.buf;
        mh.msg_controllen = sizeof(cbuf.buf);
        r = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if(r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if(r <= 0)
            return -1;
        take_fds(c, &mh);
        if(mh.msg_flags & MSG_CTRUNC)
            c->extra_fds = 1;
        c->len += (size_t)r;
    }
}

/* Writes a whole line; the descriptor `pass` (or -1) rides with its first
 * byte. 0 ok, -1 failed (nothing about the peer's state is then known). */
static int write_line(int fd, const char *line, int pass, double deadline)
{
    char copy[PS_SENDER_LINE_MAX + 1];
    size_t len = strlen(line), off = 0;

    if(len > PS_SENDER_LINE_MAX)
        return -1;
    memcpy(copy, line, len + 1); /* iov_base is not const */
    while(off < len) {
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } cbuf;
        struct iovec iov;
        struct msghdr mh;
        ssize_t w;

        iov.iov_base = copy + off;
        iov.iov_len = len - off;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        if(pass >= 0 && off == 0) {
            struct cmsghdr *cm;

            memset(&cbuf, 0, sizeof(cbuf));
            mh.msg_control = cbuf.buf;
            mh.msg_controllen = sizeof(cbuf.buf);
            cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(cm), &pass, sizeof(int));
        }
        w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if(w < 0 && errno == EINTR)
            continue;
        if(w < 0 && errno == EAGAIN) {
            if(wait_fd(fd, POLLOUT, deadline) != 1)
                return -1;
            continue;
        }
        if(w <= 0)
            return -1;
        off += (size_t)w;
    }
    return 0;
}

/* The peer is root or runs as we do (SO_PEERCRED: for a socket systemd
 * listens on, that is systemd itself). */
static int peer_trusted(int fd, uid_t *uid)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);

    if(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0 || len != sizeof(cr))
        return 0;
    *uid = cr.uid;
    return cr.uid == 0 || cr.uid == geteuid();
}

/* Replaces anything that could split or forge a line. */
static void one_line(const char *in, char *out, size_t outlen)
{
    size_t i;

    snprintf(out, outlen, "%s", in);
    for(i = 0; out[i]; i++)
        if((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
            out[i] = '?';
}

/* ------------------------------------------------------------ parsing */

int ps_sender_parse_hello(const char *line, ps_sender_hello_t *h)
{
    const char *p, *sp;
    size_t n;

    if(strncmp(line, "HELLO " PS_SENDER_PROTO " ", 8) != 0)
        return -1;
    p = line + 8;
    sp = strchr(p, ' ');
    if(!sp || sp == p)
        return -1;
    n = (size_t)(sp - p);
    if(n >= sizeof(h->url) || strlen(sp + 1) >= sizeof(h->queue_dir) || sp[1] != '/')
        return -1;
    memcpy(h->url, p, n);
    h->url[n] = '\0';
    snprintf(h->queue_dir, sizeof(h->queue_dir), "%s", sp + 1);
    return 0;
}

static int name_ok(const char *name)
{
    size_t i;

    /* ps_queue_name(): 16 lowercase hex digits + ".json" */
    if(strlen(name) != 21 || strcmp(name + 16, ".json") != 0)
        return 0;
    for(i = 0; i < 16; i++)
        if(!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return 0;
    return 1;
}

int ps_sender_parse_send(const char *line, char name[32], long *deadline_ms)
{
    char nm[32];
    char *end;
    long ms;

    if(strncmp(line, "SEND ", 5) != 0 || strlen(line + 5) < 23)
        return -1;
    memcpy(nm, line + 5, 21);
    nm[21] = '\0';
    if(!name_ok(nm) || line[26] != ' ' || line[27] < '0' || line[27] > '9')
        return -1;
    errno = 0;
    ms = strtol(line + 27, &end, 10);
    if(errno || *end || ms < 0 || ms > 7L * 86400 * 1000)
        return -1;
    memcpy(name, nm, 22);
    *deadline_ms = ms;
    return 0;
}

static const ps_status_t done_statuses[] = { PS_ST_REMOVED, PS_ST_ABSENT, PS_ST_QUEUED,
                                             PS_ST_REFUSED, PS_ST_CONFIG, PS_ST_ERROR };

int ps_sender_parse_done(const char *line, ps_report_t *rep)
{
    char word[32];
    const char *p;
    char *end;
    long http, att;
    size_t i, n;

    if(strncmp(line, "DONE ", 5) != 0)
        return -1;
    p = line + 5;
    n = strcspn(p, " ");
    if(n == 0 || n >= sizeof(word) || p[n] != ' ')
        return -1;
    memcpy(word, p, n);
    word[n] = '\0';
    p += n + 1;
    errno = 0;
    http = strtol(p, &end, 10);
    if(errno || end == p || *end != ' ' || http < 0 || http > 999)
        return -1;
    p = end + 1;
    att = strtol(p, &end, 10);
    if(errno || end == p || (*end != ' ' && *end) || att < 0 || att > 1000)
        return -1;
    for(i = 0; i < sizeof(done_statuses) / sizeof(done_statuses[0]); i++) {
        if(strcmp(word, ps_status_word(done_statuses[i])) == 0) {
            rep->status = done_statuses[i];
            rep->http_status = http;
            rep->attempts = (int)att;
            snprintf(rep->message, sizeof(rep->message), "%s", *end ? end + 1 : "");
            return 0;
        }
    }
    return -1;
}

/* ------------------------------------------------------------ client */

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
    if(!peer_trusted(fd, &uid)) {
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
    ps_audit(ctx->log, LOG_WARNING, "queued", rep->map.login, rep->map.organization, rep->map.id,
             rep->map.delete_passwords, rep->map.delete_service_tokens, 0, rep->message);
}

int ps_sender_handoff(ps_ctx_t *ctx, int lock_fd, const ps_qentry_t *e, ps_report_t *rep)
{
    const ps_config_t *cfg = ctx->cfg;
    char line[PS_SENDER_LINE_MAX + 1];
    conn_t c;
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
    conn_init(&c, fd);

    if(write_line(fd, line, -1, hello_by) != 0 || read_line(&c, line, sizeof(line), hello_by)) {
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
    if(write_line(fd, line, lock_fd, hello_by) != 0) {
        /* sendmsg failed: the descriptor did not go */
        client_debug(ctx, "the request could not be written");
        goto out;
    }
    if(read_line(&c, line, sizeof(line), done_by) != 0) {
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
    if(read_line(&c, line, sizeof(line), done_by) != 0) {
        handed_but_silent(ctx, rep, "which gave no result before the deadline");
        goto out;
    }
    if(ps_sender_parse_done(line, rep) != 0) {
        handed_but_silent(ctx, rep, "which gave a result that cannot be read");
        goto out;
    }
    ps_logf(ctx->log, LOG_DEBUG, "sender %s: %s", cfg->sender_socket, ps_status_word(rep->status));
out:
    conn_close_fds(&c);
    close(fd);
    return rv;
}

int ps_sender_probe(const ps_config_t *cfg, char *msg, size_t msglen)
{
    static const ps_log_t quiet = { 0, 0, 0, 0 };
    char line[PS_SENDER_LINE_MAX + 1];
    ps_ctx_t ctx;
    conn_t c;
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
    conn_init(&c, fd);
    snprintf(line, sizeof(line), "HELLO " PS_SENDER_PROTO " %s %s\n", cfg->api_url, cfg->queue_dir);
    if(write_line(fd, line, -1, by) != 0 || read_line(&c, line, sizeof(line), by) != 0) {
        snprintf(msg, msglen, "did not answer: removals are sent directly");
    } else if(strcmp(line, "READY") == 0) {
        snprintf(msg, msglen, "running: removals are handed to it");
        rv = 0;
    } else {
        char esc[300];

        snprintf(msg, msglen, "declines this configuration (%s): removals are sent directly",
                 ps_escape(strncmp(line, "REFUSE ", 7) == 0 ? line + 7 : line, esc, sizeof(esc)));
    }
    conn_close_fds(&c);
    close(fd);
    return rv;
}

/* ------------------------------------------------------------ server */

typedef struct server {
    ps_config_t **cfgp;
    const ps_log_t *log;
    ps_ctx_t ctx;
    struct stat cfg_st, tok_st;
    int have_tok;
    int broken; /* the configuration changed and does not load */
    char broken_why[600];
    double tokens; /* pacing: token bucket */
    double last_fill;
    double rate;
} server_t;

static int same_file_state(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static void remember_files(server_t *s)
{
    const ps_config_t *cfg = *s->cfgp;

    if(stat(cfg->path, &s->cfg_st) != 0)
        memset(&s->cfg_st, 0, sizeof(s->cfg_st));
    s->have_tok = cfg->token_file && stat(cfg->token_file, &s->tok_st) == 0;
}

/* Reloads the configuration when its file or its token file changed. */
static void maybe_reload(server_t *s)
{
    ps_config_t *cfg = *s->cfgp, *ncfg = NULL;
    struct stat st;
    char err[1024];
    int changed;

    changed = stat(cfg->path, &st) != 0 || !same_file_state(&st, &s->cfg_st);
    if(!changed && cfg->token_file)
        changed =
            stat(cfg->token_file, &st) != 0 || !s->have_tok || !same_file_state(&st, &s->tok_st);
    if(!changed)
        return;
    if(ps_config_load(&ncfg, cfg->path, 0, err, sizeof(err)) != 0) {
        if(!s->broken)
            ps_logf(s->log, LOG_ERR,
                    "sender: the changed configuration does not load, "
                    "removals are sent by their own processes until it does: %s",
                    err);
        s->broken = 1;
        snprintf(s->broken_why, sizeof(s->broken_why), "configuration error: %.560s", err);
        return;
    }
    ps_ctx_release(&s->ctx);
    ps_config_free(cfg);
    *s->cfgp = ncfg;
    s->ctx.cfg = ncfg;
    s->broken = 0;
    s->rate = ncfg->rate_limit * PACE_MARGIN;
    remember_files(s);
    ps_logf(s->log, LOG_INFO, "sender: configuration %s reloaded", ncfg->path);
}

static int refuse(int fd, const char *why)
{
    char line[700], esc[600];

    one_line(why, esc, sizeof(esc));
    snprintf(line, sizeof(line), "REFUSE %s\n", esc);
    return write_line(fd, line, -1, ps_now() + SERVER_WRITE_WAIT);
}

static int same_dir(const char *a, const ps_queue_t *q)
{
    struct stat sa, sb;

    return stat(a, &sa) == 0 && stat(ps_queue_dir(q), &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

static void sleep_until(double t)
{
    for(;;) {
        double left = t - ps_now();
        struct timespec ts;

        if(left <= 0)
            return;
        ts.tv_sec = (time_t)left;
        ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
        if(nanosleep(&ts, NULL) == 0 || errno != EINTR)
            return;
    }
}

/* Sends the adopted entry. Pacing is a token bucket that holds one token:
 * a lone removal goes at once, a burst of hooks (a mass offboarding) is
 * spread below the limit on the one connection. (A bucket of one second's
 * worth would let a burst send twice api.rate_limit within one second.)
 * The bucket refills from the end of the previous request, so requests
 * are at least 1/rate apart as the API sees them. */
static void send_adopted(server_t *s, ps_qentry_t *e, ps_report_t *rep)
{
    ps_result_t res;
    double now = ps_now(), burst = 1, wait;
    double target = s->ctx.cfg->rate_limit * PACE_MARGIN;

    s->tokens += (now - s->last_fill) * s->rate;
    s->last_fill = now;
    if(s->tokens > burst)
        s->tokens = burst;
    wait = s->tokens >= 1 ? 0 : (1 - s->tokens) / s->rate;
    if(s->ctx.deadline > 0 && now + wait >= s->ctx.deadline) {
        rep->status = PS_ST_QUEUED;
        snprintf(rep->message, sizeof(rep->message),
                 "the rate limit leaves no slot before "
                 "the deadline; kept in the queue for retry");
        ps_audit(s->log, LOG_NOTICE, "queued", e->login, e->organization, e->id,
                 e->delete_passwords, e->delete_service_tokens, 0, rep->message);
        return;
    }
    sleep_until(now + wait);
    s->tokens += wait * s->rate - 1;
    s->last_fill = now + wait;
    if(!s->ctx.cfg->auth_header) {
        rep->status = PS_ST_CONFIG;
        snprintf(rep->message, sizeof(rep->message),
                 "no API credential configured; the "
                 "request is kept in the queue until one is");
        ps_audit(s->log, LOG_ERR, "queued", e->login, e->organization, e->id, e->delete_passwords,
                 e->delete_service_tokens, 0, rep->message);
        return;
    }
    ps_send_entry(&s->ctx, e, 0, rep, &res);
    /* The next slot counts from the answer, not from the start: the API
     * may have seen this request as late as its answer came (the first on
     * a connection waits for the TLS handshake), and a slot counted from
     * the start would put two requests closer than 1/rate at the API. */
    s->last_fill = ps_now();
    if(res.http_status == 429) {
        s->rate = s->rate / 2 > 0.1 ? s->rate / 2 : 0.1; /* slow down, no burst */
        s->tokens = 0;
        s->last_fill = ps_now();
    } else if(rep->status == PS_ST_REMOVED || rep->status == PS_ST_ABSENT) {
        s->rate = s->rate * 1.1 < target ? s->rate * 1.1 : target;
    }
}

static double cpu_now(void)
{
    struct timespec ts;

    if(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void serve_one(server_t *s, int fd)
{
    char line[PS_SENDER_LINE_MAX + 1], err[512], name[32], msg[600];
    ps_sender_hello_t *h = NULL;
    ps_qentry_t e;
    ps_report_t rep;
    conn_t c;
    uid_t uid = 0;
    long ms = 0;
    int lock_fd;
    double t0 = ps_now(), c0 = cpu_now();

    conn_init(&c, fd);
    if(!peer_trusted(fd, &uid)) {
        ps_logf(s->log, LOG_WARNING, "sender: refused a client running as uid %u", (unsigned)uid);
        refuse(fd, "permission denied");
        goto out;
    }
    h = malloc(sizeof(*h));
    if(!h)
        goto out;
    if(read_line(&c, line, sizeof(line), ps_now() + SERVER_READ_WAIT) != 0 ||
       ps_sender_parse_hello(line, h) != 0) {
        refuse(fd, "bad request");
        goto out;
    }
    maybe_reload(s);
    if(s->broken) {
        refuse(fd, s->broken_why);
        goto out;
    }
    if(strcmp(h->url, s->ctx.cfg->api_url) != 0) {
        refuse(fd, "another API URL");
        goto out;
    }
    if(!ps_ctx_queue(&s->ctx, err, sizeof(err))) {
        ps_logf(s->log, LOG_ERR, "sender: %s", err);
        refuse(fd, "the sender cannot open its queue");
        goto out;
    }
    if(!same_dir(h->queue_dir, s->ctx.queue)) {
        refuse(fd, "another queue directory");
        goto out;
    }
    if(write_line(fd, "READY\n", -1, ps_now() + SERVER_WRITE_WAIT) != 0)
        goto out;

    if(read_line(&c, line, sizeof(line), ps_now() + SERVER_READ_WAIT) != 0 ||
       ps_sender_parse_send(line, name, &ms) != 0 || c.nfds != 1 || c.extra_fds) {
        refuse(fd, "bad request");
        goto out;
    }
    lock_fd = c.fds[0];
    if(ps_queue_adopt_lock(s->ctx.queue, name, lock_fd, err, sizeof(err)) != 0) {
        ps_logf(s->log, LOG_WARNING, "sender: %s", err);
        refuse(fd, "not this entry's lock");
        goto out;
    }
    switch(ps_queue_read(s->ctx.queue, name, &e, err, sizeof(err))) {
    case 0: break;
    case 2: refuse(fd, "no such entry"); goto out;
    default:
        ps_logf(s->log, LOG_ERR, "sender: %s", err);
        refuse(fd, "the entry cannot be read");
        goto out;
    }
    if(write_line(fd, "ACCEPT\n", -1, ps_now() + SERVER_WRITE_WAIT) != 0)
        ps_logf(s->log, LOG_DEBUG, "sender: the client of %s left; sending anyway", name);

    s->ctx.deadline = 0;
    if(ms > 0) {
        double left = (double)ms / 1000.0 - ANSWER_MARGIN;

        s->ctx.deadline = ps_now() + (left > 0.2 ? left : 0.2);
    }
    memset(&rep, 0, sizeof(rep));
    send_adopted(s, &e, &rep);
    one_line(rep.message, msg, sizeof(msg));
    snprintf(line, sizeof(line), "DONE %s %ld %d %s\n", ps_status_word(rep.status),
             rep.http_status > 0 && rep.http_status < 1000 ? rep.http_status : 0L, rep.attempts,
             msg);
    write_line(fd, line, -1, ps_now() + SERVER_WRITE_WAIT);
    ps_logf(s->log, LOG_DEBUG, "sender: %s %s in %.3f ms, %.3f ms CPU", name,
            ps_status_word(rep.status), (ps_now() - t0) * 1000, (cpu_now() - c0) * 1000);
out:
    free(h);
    conn_close_fds(&c); /* our copy of the lock: the entry is settled */
}

/* The socket systemd passed (sd_listen_fds(3) protocol, one socket). */
static int systemd_socket(const ps_log_t *lg)
{
    const char *pid = getenv("LISTEN_PID"), *n = getenv("LISTEN_FDS");
    struct stat st;
    int acc = 0;
    socklen_t len = sizeof(acc);

    if(!pid || !n || strtol(pid, NULL, 10) != (long)getpid())
        return -1;
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if(strcmp(n, "1") != 0) {
        ps_logf(lg, LOG_ERR, "serve: expected one socket from systemd, got LISTEN_FDS=%.20s", n);
        return -2;
    }
    if(fstat(3, &st) != 0 || !S_ISSOCK(st.st_mode) ||
       getsockopt(3, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) != 0 || !acc) {
        ps_logf(lg, LOG_ERR, "serve: descriptor 3 from systemd is not a listening socket");
        return -2;
    }
    fcntl(3, F_SETFD, FD_CLOEXEC);
    return 3;
}

static int bind_socket(const char *path, const ps_log_t *lg)
{
    struct sockaddr_un sa;
    struct stat st;
    char dir[sizeof(sa.sun_path)], *slash;
    mode_t old;
    int fd, rc;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if(path[0] != '/' || strlen(path) >= sizeof(sa.sun_path)) {
        ps_logf(lg, LOG_ERR, "serve: socket path %s: must be absolute and at most %zu bytes", path,
                sizeof(sa.sun_path) - 1);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if(slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    if(stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
       ((st.st_mode & 022) && !(st.st_mode & S_ISVTX))) {
        ps_logf(lg, LOG_ERR,
                "serve: %s must be a directory owned by root that only root "
                "can write to (or sticky, like /tmp)",
                dir);
        return -1;
    }
    if(lstat(path, &st) == 0) {
        if(!S_ISSOCK(st.st_mode)) {
            ps_logf(lg, LOG_ERR, "serve: %s exists and is not a socket", path);
            return -1;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            close(fd);
            ps_logf(lg, LOG_ERR, "serve: another sender is listening on %s", path);
            return -1;
        }
        if(fd >= 0)
            close(fd);
        unlink(path); /* left behind by a sender that died */
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if(fd < 0) {
        ps_logf(lg, LOG_ERR, "serve: socket: %s", strerror(errno));
        return -1;
    }
    old = umask(0177);
    rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if(rc != 0 || listen(fd, 128) != 0) {
        ps_logf(lg, LOG_ERR, "serve: %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int ps_sender_serve(ps_config_t **cfgp, const char *socket_path, const ps_log_t *lg)
{
    server_t s;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 32];
    int lfd, bound = 0;

    /* a copy: a reload frees the configuration that sender_socket is in */
    snprintf(path, sizeof(path), "%s", socket_path ? socket_path : (*cfgp)->sender_socket);
    lfd = systemd_socket(lg);
    if(lfd == -2)
        return 78;
    if(lfd < 0) {
        if(!path[0]) {
            ps_logf(lg, LOG_ERR,
                    "serve: sender.socket is \"\" in %s and no socket came from "
                    "systemd: nothing to listen on",
                    (*cfgp)->path);
            return 78;
        }
        lfd = bind_socket(path, lg);
        if(lfd < 0)
            return 1;
        bound = 1;
    } else {
        snprintf(path, sizeof(path), "the socket from systemd");
    }
    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);

    memset(&s, 0, sizeof(s));
    s.cfgp = cfgp;
    s.log = lg;
    s.ctx.cfg = *cfgp;
    s.ctx.log = lg;
    s.rate = (*cfgp)->rate_limit * PACE_MARGIN;
    s.tokens = 1;
    s.last_fill = ps_now();
    remember_files(&s);
    ps_logf(lg, LOG_INFO, "sender: serving removals on %s (idle timeout %d s)", path,
            (*cfgp)->sender_idle);

    for(;;) {
        struct pollfd p = { lfd, POLLIN, 0 };
        int idle = (*cfgp)->sender_idle;
        int rc = poll(&p, 1, idle > 0 ? idle * 1000 : -1);
        int cfd;

        if(rc == 0) {
            ps_logf(lg, LOG_INFO, "sender: idle for %d s, exiting", idle);
            break;
        }
        if(rc < 0) {
            if(errno == EINTR)
                continue;
            ps_logf(lg, LOG_ERR, "sender: poll: %s", strerror(errno));
            break;
        }
        cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if(cfd < 0) {
            if(errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)
                sleep_until(ps_now() + 0.1);
            continue;
        }
        serve_one(&s, cfd);
        close(cfd);
    }
    ps_ctx_release(&s.ctx);
    if(bound)
        unlink(path);
    close(lfd);
    return 0;
}
