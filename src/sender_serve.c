/* sender_serve.c - `serve`: the listening socket, signals, reloads and one
 * poll loop over every client; the API is the worker's (sender_worker.c).
 * See sender_serve.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "remove.h"
#include "sender_serve.h"
#include "sender_wire.h"
#include "sender_worker.h"

#define READ_WAIT     5.0 /* seconds a client has for its next line */
#define WRITE_WAIT    2.0 /* seconds a client has to take what we write */
#define ANSWER_MARGIN 0.3 /* we answer this long before the client's deadline */
#define STOP_GRACE    5.0 /* seconds the request in flight gets after SIGTERM */
#define ACCEPT_BURST  16  /* connections accepted per turn of the loop */
#define OUT_MAX       2048

enum client_state {
    C_HELLO,  /* waiting for HELLO */
    C_SEND,   /* READY said, waiting for SEND */
    C_WAIT,   /* ACCEPT said, its job with the worker */
    C_CLOSING /* last words written, then closed */
};

typedef struct client {
    ps_wire_t w;
    enum client_state state;
    double deadline; /* for the line it owes or the output to drain; 0: none */
    char out[OUT_MAX];
    size_t outlen;
    ps_shared_cfg_t *cfg; /* the configuration its HELLO was checked against */
    ps_job_t *job;        /* C_WAIT */
    int gone;             /* it hung up, or cannot be written to: close it */
    double t0;            /* accepted (ps_now) */
    double cpu;           /* this thread's CPU seconds spent on it */
} client_t;

typedef struct server {
    const ps_log_t *log;
    ps_shared_cfg_t *cfg; /* the current configuration */
    ps_ctx_t ctx;         /* this thread's: the queue, for adopting entries */
    struct stat cfg_st, tok_st;
    int have_tok;
    int broken; /* the configuration changed and does not load */
    char broken_why[600];
    ps_worker_t *worker;
    client_t *clients[PS_SERVE_MAX_CLIENTS];
    int nclients;
    ps_job_t *jobs[PS_SERVE_MAX_JOBS]; /* accepted, not yet answered */
    int njobs;
    int lfd, sfd;
    int bound; /* we created the socket file: remove it when we stop */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 32];
    struct stat sock_st;
    double idle_since;
    double accept_paused_until;
    int stopping; /* the signal that stops us */
    double stop_by;
    ps_metrics_t *metrics; /* may be NULL */
    double metrics_due;    /* when the textfile is next written (0: nothing new) */
    double metrics_last;   /* when it was last written */
} server_t;

static double thread_cpu(void)
{
    struct timespec ts;

    if(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const ps_config_t *cur_cfg(const server_t *s)
{
    return ps_shared_cfg_get(s->cfg);
}

/* ------------------------------------------------------------ reload */

static int same_file_state(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static void remember_files(server_t *s)
{
    const ps_config_t *cfg = cur_cfg(s);

    if(stat(cfg->path, &s->cfg_st) != 0)
        memset(&s->cfg_st, 0, sizeof(s->cfg_st));
    s->have_tok = cfg->token_file && stat(cfg->token_file, &s->tok_st) == 0;
}

/* Reloads the configuration when its file or its token file changed. Jobs
 * already accepted keep the configuration they were accepted under. */
static void maybe_reload(server_t *s)
{
    const ps_config_t *cfg = cur_cfg(s);
    ps_config_t *ncfg = NULL;
    ps_shared_cfg_t *shared;
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
    shared = ps_shared_cfg_new(ncfg);
    if(!shared) {
        ps_config_free(ncfg);
        return; /* out of memory: keep the old one, try again next time */
    }
    ps_ctx_release(&s->ctx);
    ps_shared_cfg_unref(s->cfg);
    s->cfg = shared;
    s->ctx.cfg = ncfg;
    s->broken = 0;
    remember_files(s);
    ps_logf(s->log, LOG_INFO, "sender: configuration %s reloaded", ncfg->path);
}

static int same_dir(const char *a, const ps_queue_t *q)
{
    struct stat sa, sb;

    return stat(a, &sa) == 0 && stat(ps_queue_dir(q), &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* ------------------------------------------------------------ clients */

static void client_close(server_t *s, int i)
{
    client_t *c = s->clients[i];

    if(c->job) {
        ps_logf(s->log, LOG_DEBUG, "sender: the client of %s left; sending anyway",
                c->job->entry.name);
        c->job->owner = NULL; /* it is sent all the same */
    }
    ps_wire_close_fds(&c->w);
    close(c->w.fd);
    ps_shared_cfg_unref(c->cfg);
    free(c);
    s->clients[i] = s->clients[--s->nclients];
    s->clients[s->nclients] = NULL;
    s->idle_since = ps_now();
}

/* Writes what the socket takes of the output now. */
static void flush_out(client_t *c)
{
    ssize_t w;

    if(!c->outlen || c->gone)
        return;
    w = ps_wire_send(c->w.fd, c->out, c->outlen, -1);
    if(w < 0) {
        c->gone = 1;
        return;
    }
    memmove(c->out, c->out + w, c->outlen - (size_t)w);
    c->outlen -= (size_t)w;
}

/* Queues a line for the client and writes what it takes now. */
static void say(client_t *c, const char *line)
{
    size_t n = strlen(line);

    if(n > sizeof(c->out) - c->outlen) {
        c->gone = 1; /* it does not read: never happens to a client that follows the protocol */
        return;
    }
    memcpy(c->out + c->outlen, line, n);
    c->outlen += n;
    flush_out(c);
}

/* The last words to a client: REFUSE, then close once they are written. */
static void refuse(client_t *c, const char *why)
{
    char line[700], esc[600];

    ps_wire_one_line(why, esc, sizeof(esc));
    snprintf(line, sizeof(line), "REFUSE %s\n", esc);
    ps_wire_close_fds(&c->w);
    c->state = C_CLOSING;
    c->deadline = ps_now() + WRITE_WAIT;
    say(c, line);
}

static void on_hello(server_t *s, client_t *c, const char *line)
{
    ps_sender_hello_t *h = malloc(sizeof(*h));
    char err[512];

    if(!h || ps_sender_parse_hello(line, h) != 0) {
        refuse(c, "bad request");
        goto out;
    }
    if(s->stopping) {
        refuse(c, "the sender is stopping");
        goto out;
    }
    maybe_reload(s);
    if(s->broken) {
        refuse(c, s->broken_why);
        goto out;
    }
    if(strcmp(h->url, cur_cfg(s)->api_url) != 0) {
        refuse(c, "another API URL");
        goto out;
    }
    if(!ps_ctx_queue(&s->ctx, err, sizeof(err))) {
        ps_logf(s->log, LOG_ERR, "sender: %s", err);
        refuse(c, "the sender cannot open its queue");
        goto out;
    }
    if(!same_dir(h->queue_dir, s->ctx.queue)) {
        refuse(c, "another queue directory");
        goto out;
    }
    c->cfg = ps_shared_cfg_ref(s->cfg);
    c->state = C_SEND;
    c->deadline = ps_now() + READ_WAIT;
    say(c, "READY\n");
out:
    free(h);
}

/* What the sender answers by: a little before the client's deadline. */
static double job_deadline(long ms)
{
    double left;

    if(ms <= 0)
        return 0;
    left = (double)ms / 1000.0 - ANSWER_MARGIN;
    return ps_now() + (left > 0.2 ? left : 0.2);
}

static void on_send(server_t *s, client_t *c, const char *line)
{
    char err[512], name[32];
    ps_qentry_t e;
    ps_job_t *job;
    long ms = 0;
    int lock_fd;

    if(ps_sender_parse_send(line, name, &ms) != 0 || c->w.nfds != 1 || c->w.extra_fds) {
        refuse(c, "bad request");
        return;
    }
    if(s->stopping) {
        refuse(c, "the sender is stopping");
        return;
    }
    if(c->cfg != s->cfg || !ps_ctx_queue(&s->ctx, err, sizeof(err))) {
        /* reloaded since its HELLO: what it was told READY for is gone */
        refuse(c, "the configuration changed");
        return;
    }
    if(s->njobs >= PS_SERVE_MAX_JOBS) {
        ps_logf(s->log, LOG_WARNING, "sender: %d removals waiting already; one more refused",
                s->njobs);
        refuse(c, "busy: too many removals waiting");
        return;
    }
    lock_fd = c->w.fds[0];
    if(ps_queue_adopt_lock(s->ctx.queue, name, lock_fd, err, sizeof(err)) != 0) {
        ps_logf(s->log, LOG_WARNING, "sender: %s", err);
        refuse(c, "not this entry's lock");
        return;
    }
    switch(ps_queue_read(s->ctx.queue, name, &e, err, sizeof(err))) {
    case 0: break;
    case 2: refuse(c, "no such entry"); return;
    default:
        ps_logf(s->log, LOG_ERR, "sender: %s", err);
        refuse(c, "the entry cannot be read");
        return;
    }
    c->w.nfds = 0; /* the lock is the job's now */
    job = ps_job_new(&e, lock_fd, job_deadline(ms), s->cfg);
    if(!job) {
        refuse(c, "out of memory");
        return;
    }
    job->owner = c;
    job->accepted = c->t0;
    c->job = job;
    c->state = C_WAIT;
    c->deadline = 0;
    s->jobs[s->njobs++] = job;
    ps_worker_submit(s->worker, job);
    say(c, "ACCEPT\n");
}

/* Reads what the client sent and acts on every whole line. */
static void on_input(server_t *s, client_t *c)
{
    char line[PS_SENDER_LINE_MAX + 1];
    int rc = ps_wire_fill(&c->w);

    if(c->state == C_WAIT) {
        /* nothing more is expected: the end of file says it left */
        c->w.len = 0;
        ps_wire_close_fds(&c->w);
        if(rc < 0)
            c->gone = 1;
        return;
    }
    while(!c->gone && (c->state == C_HELLO || c->state == C_SEND)) {
        int got = ps_wire_take_line(c->w.buf, &c->w.len, line, sizeof(line));

        if(got < 0 || (got == 0 && rc < 0)) {
            refuse(c, "bad request");
            return;
        }
        if(got == 0)
            return;
        if(c->state == C_HELLO)
            on_hello(s, c, line);
        else
            on_send(s, c, line);
    }
}

/* A connection refused before it is a client: the line fits in the new
 * socket's empty buffer. */
static void refuse_at_once(int fd, const char *line)
{
    ps_wire_send(fd, line, strlen(line), -1);
    close(fd);
}

static void accept_clients(server_t *s)
{
    int n;

    for(n = 0; n < ACCEPT_BURST; n++) {
        client_t *c;
        uid_t uid = 0;
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

        if(fd < 0) {
            if(errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS) {
                ps_logf(s->log, LOG_WARNING, "sender: accept: %s", strerror(errno));
                s->accept_paused_until = ps_now() + 0.1;
            }
            return;
        }
        if(!ps_wire_peer_trusted(fd, &uid)) {
            ps_logf(s->log, LOG_WARNING, "sender: refused a client running as uid %u",
                    (unsigned)uid);
            refuse_at_once(fd, "REFUSE permission denied\n");
            continue;
        }
        c = s->nclients < PS_SERVE_MAX_CLIENTS ? calloc(1, sizeof(*c)) : NULL;
        if(!c) {
            ps_logf(s->log, LOG_WARNING, "sender: %d clients connected already; one more refused",
                    s->nclients);
            refuse_at_once(fd, "REFUSE busy: too many clients\n");
            continue;
        }
        ps_wire_init(&c->w, fd);
        c->state = C_HELLO;
        c->t0 = ps_now();
        c->deadline = c->t0 + READ_WAIT;
        s->clients[s->nclients++] = c;
    }
}

/* ------------------------------------------------------------ jobs */

static void forget_job(server_t *s, ps_job_t *job)
{
    int i;

    for(i = 0; i < s->njobs; i++) {
        if(s->jobs[i] == job) {
            s->jobs[i] = s->jobs[--s->njobs];
            break;
        }
    }
}

/* A job is over (sent, or taken back): its client hears the outcome. */
/* The metrics textfile, at most once a second while removals complete. */
#define METRICS_EVERY 1.0

static void metrics_changed(server_t *s)
{
    if(s->metrics && !s->metrics_due)
        s->metrics_due = s->metrics_last + METRICS_EVERY;
}

static void metrics_write(server_t *s, double now)
{
    if(!s->metrics_due || now < s->metrics_due)
        return;
    ps_metrics_write(s->metrics, cur_cfg(s), s->log);
    s->metrics_due = 0;
    s->metrics_last = ps_now();
}

static void finish_job(server_t *s, ps_job_t *job)
{
    client_t *c = job->owner;
    char line[PS_SENDER_LINE_MAX + 1];

    forget_job(s, job);
    metrics_changed(s);
    if(c) {
        ps_logf(s->log, LOG_DEBUG, "sender: %s %s in %.3f ms, %.3f ms CPU", job->entry.name,
                ps_status_word(job->rep.status), (ps_now() - c->t0) * 1000,
                (c->cpu + job->cpu) * 1000);
        c->job = NULL;
        c->state = C_CLOSING;
        c->deadline = ps_now() + WRITE_WAIT;
        say(c, ps_sender_format_done(&job->rep, line, sizeof(line)));
    } else {
        ps_logf(s->log, LOG_DEBUG, "sender: %s %s (its client left) in %.3f ms, %.3f ms CPU",
                job->entry.name, ps_status_word(job->rep.status), (ps_now() - job->accepted) * 1000,
                job->cpu * 1000);
    }
    ps_job_free(job); /* the lock: the outcome is in the queue */
    s->idle_since = ps_now();
}

static void collect_jobs(server_t *s)
{
    ps_job_t *job = ps_worker_collect(s->worker);

    while(job) {
        ps_job_t *next = job->next;

        job->next = NULL;
        finish_job(s, job);
        job = next;
    }
}

/* Takes back what the worker has not begun when its deadline comes (or
 * when we stop), so that its client hears "queued" in time and the entry's
 * lock is free for retry. */
static void expire_jobs(server_t *s, double now)
{
    int i;

    for(i = 0; i < s->njobs;) {
        ps_job_t *job = s->jobs[i];
        int due = s->stopping || (job->deadline > 0 && now >= job->deadline && !job->late);

        if(due && ps_worker_cancel(s->worker, job,
                                   s->stopping ? "the sender is stopping; kept in the queue "
                                                 "for retry"
                                               : "waited behind other removals until its "
                                                 "deadline; kept in the queue for retry")) {
            finish_job(s, job); /* moves another job to jobs[i] */
            continue;
        }
        if(due)
            job->late = 1; /* being sent: the worker answers by its deadline */
        i++;
    }
}

/* ------------------------------------------------------------ sockets */

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

/* Stops listening; removes the socket file when we made it and it is still
 * the one we made (not a file someone put there since). */
static void stop_listening(server_t *s)
{
    struct stat st;

    if(s->lfd < 0)
        return;
    close(s->lfd);
    s->lfd = -1;
    if(s->bound && lstat(s->path, &st) == 0 && st.st_dev == s->sock_st.st_dev &&
       st.st_ino == s->sock_st.st_ino)
        unlink(s->path);
    s->bound = 0;
}

/* ------------------------------------------------------------ signals */

/* Ends the process by `sig` (its default action), as if it had not been
 * blocked: for a stop that cannot wait for the request in flight. */
static void die_by(int sig)
{
    sigset_t set;

    signal(sig, SIG_DFL);
    sigemptyset(&set);
    sigaddset(&set, sig);
    raise(sig); /* pending: blocked in every thread */
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    _exit(128 + sig); /* not reached */
}

static const char *signame(int sig)
{
    return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "a signal";
}

static void on_signal(server_t *s)
{
    struct signalfd_siginfo si;
    int i;

    while(read(s->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        int sig = (int)si.ssi_signo;

        if(s->stopping) {
            ps_logf(s->log, LOG_NOTICE, "sender: %s again, stopping now", signame(sig));
            if(s->njobs > 0)
                die_by(sig);
            s->stop_by = 0;
            continue;
        }
        ps_logf(s->log, LOG_INFO, "sender: %s, stopping", signame(sig));
        s->stopping = sig;
        s->stop_by = ps_now() + STOP_GRACE;
        stop_listening(s);
        for(i = 0; i < s->nclients; i++)
            if(s->clients[i]->state == C_HELLO || s->clients[i]->state == C_SEND)
                refuse(s->clients[i], "the sender is stopping");
        expire_jobs(s, ps_now());
    }
}

/* Blocks SIGTERM and SIGINT (in every thread started after) and returns a
 * signalfd that reads them, or -1 with the mask as it was. */
static int block_signals(sigset_t *old)
{
    sigset_t set;
    int fd;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if(pthread_sigmask(SIG_BLOCK, &set, old) != 0)
        return -1;
    fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if(fd < 0)
        pthread_sigmask(SIG_SETMASK, old, NULL);
    return fd;
}

/* ------------------------------------------------------------ the loop */

static double earliest(double a, double b)
{
    return a <= 0 ? b : b <= 0 ? a : a < b ? a : b;
}

/* When the loop must wake up at the latest (0: only for events). */
static double next_timer(const server_t *s)
{
    int idle = cur_cfg(s)->sender_idle, i;
    double t = 0;

    for(i = 0; i < s->nclients; i++)
        t = earliest(t, s->clients[i]->deadline);
    for(i = 0; i < s->njobs; i++)
        if(!s->jobs[i]->late)
            t = earliest(t, s->jobs[i]->deadline);
    if(s->accept_paused_until > 0)
        t = earliest(t, s->accept_paused_until);
    if(s->metrics_due > 0)
        t = earliest(t, s->metrics_due);
    if(s->stopping)
        t = earliest(t, s->stop_by > 0 ? s->stop_by : ps_now());
    else if(idle > 0 && !s->nclients && !s->njobs)
        t = earliest(t, s->idle_since + idle);
    return t;
}

static int poll_ms(double t)
{
    double left;

    if(t <= 0)
        return -1;
    left = t - ps_now();
    if(left <= 0)
        return 0;
    return left > 3600 ? 3600 * 1000 : (int)(left * 1000) + 1;
}

/* Client deadlines: a line or an output not taken in time ends it. */
static void expire_clients(server_t *s, double now)
{
    int i;

    for(i = 0; i < s->nclients;) {
        client_t *c = s->clients[i];

        if(c->deadline > 0 && now >= c->deadline) {
            if(c->state == C_CLOSING || c->outlen)
                c->gone = 1; /* it does not take what we write */
            else
                refuse(c, "bad request"); /* too slow to say its line */
        }
        if(c->gone || (c->state == C_CLOSING && !c->outlen)) {
            client_close(s, i);
            continue;
        }
        i++;
    }
}

/* One client's events (it is closed later, by expire_clients). */
static void client_events(server_t *s, client_t *c, short revents)
{
    double c0 = thread_cpu();

    if((revents & (POLLIN | POLLHUP | POLLERR)) && c->state != C_CLOSING)
        on_input(s, c);
    flush_out(c);
    if((revents & (POLLHUP | POLLERR)) && c->state == C_CLOSING)
        c->gone = 1; /* nobody left to read it */
    c->cpu += thread_cpu() - c0;
}

/* 1 when the loop should end. */
static int loop_once(server_t *s)
{
    struct pollfd p[3 + PS_SERVE_MAX_CLIENTS];
    int n = 0, base, nc = s->nclients, i, idle = cur_cfg(s)->sender_idle, rc;
    double now;

    p[n++] = (struct pollfd){ s->sfd, POLLIN, 0 };
    p[n++] = (struct pollfd){ ps_worker_wake_fd(s->worker), POLLIN, 0 };
    p[n++] = (struct pollfd){ s->lfd, POLLIN, 0 }; /* -1 when not listening: ignored */
    if(s->accept_paused_until > ps_now())
        p[2].fd = -1;
    base = n;
    for(i = 0; i < nc; i++) {
        client_t *c = s->clients[i];
        short ev = c->state == C_CLOSING ? 0 : POLLIN;

        if(c->outlen)
            ev |= POLLOUT;
        p[n++] = (struct pollfd){ c->w.fd, ev, 0 };
    }
    rc = poll(p, (nfds_t)n, poll_ms(next_timer(s)));
    if(rc < 0 && errno != EINTR) {
        ps_logf(s->log, LOG_ERR, "sender: poll: %s", strerror(errno));
        return 1;
    }
    if(rc > 0) {
        if(p[0].revents)
            on_signal(s);
        if(p[1].revents)
            collect_jobs(s);
        /* clients before accepting: the indexes still match p[] (nothing
         * is closed before expire_clients) */
        for(i = 0; i < nc; i++)
            if(p[base + i].revents)
                client_events(s, s->clients[i], p[base + i].revents);
    }
    now = ps_now();
    if(s->accept_paused_until > 0 && now >= s->accept_paused_until)
        s->accept_paused_until = 0;
    expire_jobs(s, now);
    expire_clients(s, now); /* and closes those that are done: room for new ones */
    metrics_write(s, now);
    if(rc > 0 && s->lfd >= 0 && p[2].fd >= 0 && p[2].revents)
        accept_clients(s);

    if(s->stopping) {
        if(!s->njobs && !s->nclients)
            return 1;
        if(s->stop_by > 0 && now < s->stop_by)
            return 0;
        if(s->njobs > 0) {
            ps_logf(s->log, LOG_NOTICE,
                    "sender: stopping with a request in flight; its entry stays in the queue");
            die_by(s->stopping);
        }
        return 1; /* only clients that do not take their last words */
    }
    if(idle > 0 && !s->nclients && !s->njobs && now - s->idle_since >= idle) {
        ps_logf(s->log, LOG_INFO, "sender: idle for %d s, exiting", idle);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ serve */

static int open_listener(server_t *s, const char *socket_path, const ps_config_t *cfg)
{
    /* a copy: a reload frees the configuration that sender_socket is in */
    snprintf(s->path, sizeof(s->path), "%s", socket_path ? socket_path : cfg->sender_socket);
    s->lfd = systemd_socket(s->log);
    if(s->lfd == -2)
        return 78;
    if(s->lfd >= 0) {
        snprintf(s->path, sizeof(s->path), "the socket from systemd");
    } else {
        if(!s->path[0]) {
            ps_logf(s->log, LOG_ERR,
                    "serve: sender.socket is \"\" in %s and no socket came from "
                    "systemd: nothing to listen on",
                    cfg->path);
            return 78;
        }
        s->lfd = bind_socket(s->path, s->log);
        if(s->lfd < 0)
            return 1;
        s->bound = lstat(s->path, &s->sock_st) == 0;
    }
    fcntl(s->lfd, F_SETFL, fcntl(s->lfd, F_GETFL) | O_NONBLOCK);
    return 0;
}

int ps_sender_serve(ps_config_t **cfgp, const char *socket_path, const ps_log_t *lg,
                    ps_metrics_t *metrics)
{
    server_t *s = calloc(1, sizeof(*s));
    sigset_t oldmask;
    char err[512];
    int rv;

    if(!s)
        return 1;
    s->log = lg;
    s->metrics = metrics;
    s->sfd = -1;
    rv = open_listener(s, socket_path, *cfgp);
    if(rv != 0) {
        free(s);
        return rv;
    }
    s->cfg = ps_shared_cfg_new(*cfgp);
    if(s->cfg) {
        *cfgp = NULL; /* shared now; given back at the end */
        s->sfd = block_signals(&oldmask);
    }
    if(s->sfd < 0 || !(s->worker = ps_worker_start(lg, err, sizeof(err)))) {
        ps_logf(lg, LOG_ERR, "sender: cannot start: %s", s->sfd < 0 ? strerror(errno) : err);
        rv = 1;
        goto out;
    }
    s->ctx.cfg = cur_cfg(s);
    s->ctx.log = lg;
    s->idle_since = ps_now();
    remember_files(s);
    ps_logf(lg, LOG_INFO, "sender: serving removals on %s (idle timeout %d s, at most %d clients)",
            s->path, cur_cfg(s)->sender_idle, PS_SERVE_MAX_CLIENTS);

    while(!loop_once(s))
        ;
out:
    stop_listening(s);
    while(s->nclients)
        client_close(s, 0);
    if(s->worker) {
        /* nothing is left at an idle exit or a stop; this is for errors */
        s->stopping = s->stopping ? s->stopping : SIGTERM;
        expire_jobs(s, ps_now());
        ps_worker_stop(s->worker); /* after the job in hand, if any */
        collect_jobs(s);
        ps_worker_free(s->worker);
    }
    if(s->metrics_due > 0 && s->cfg) {
        s->metrics_due = ps_now();
        metrics_write(s, s->metrics_due);
    }
    ps_ctx_release(&s->ctx);
    if(s->sfd >= 0) {
        close(s->sfd);
        pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
    }
    if(s->cfg)
        *cfgp = ps_shared_cfg_take(s->cfg);
    free(s);
    return rv;
}
