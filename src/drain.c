/* drain.c - `retry`: send what waits in the spool (see drain.h).
 *
 * Every request goes through the one client, whose pacer keeps them below
 * api.rate_limit (api.c): a removal takes one to three requests (remove.c),
 * so pacing per entry would not bound the request rate. After each entry
 * the drain tells the pacer what the answer was (a 429 slows it down). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "drain.h"
#include "fingerprint.h"

#define PS_MAX_429_PER_ENTRY 8
#define PS_OUTAGE_FAILURES   3

typedef enum next {
    NEXT_ENTRY, /* go on with the next entry */
    NEXT_AGAIN, /* send the same entry again (after a 429) */
    NEXT_STOP   /* stop the drain (st->reason says why) */
} next_t;

typedef struct drain {
    ps_ctx_t *ctx;
    ps_drain_stats_t *st;
    char fingerprint[17]; /* of the configuration in use */
    int outage;           /* connection-level failures in a row */
    int tries429;         /* 429s for the current entry */
    ps_status_t stop;     /* the status a stop adds to the exit code */
    int progress;
    size_t done;
    double t0;
} drain_t;

/* A uniform number in [0, 1), from getrandom (0.5 when there is none). */
static double random01(void)
{
    uint64_t v;

    if(getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
        return 0.5;
    return (double)(v >> 11) * (1.0 / 9007199254740992.0); /* 2^-53 */
}

typedef struct invalid_arg {
    const ps_ctx_t *ctx;
    ps_drain_stats_t *st;
} invalid_arg_t;

static void on_invalid(void *arg, const char *name, const char *reason)
{
    invalid_arg_t *ia = arg;
    char ename[128], ereason[512];

    if(ia->st)
        ia->st->invalid++;
    ps_logf(ia->ctx->log, LOG_ERR,
            "spool entry %s is not valid (%s): moved to invalid/, "
            "not sent",
            ps_escape(name, ename, sizeof(ename)), ps_escape(reason, ereason, sizeof(ereason)));
}

int ps_spool_count(ps_queue_t *q, size_t *pending, size_t *held, size_t *dead, size_t *invalid,
                   char *err, size_t errlen)
{
    ps_qref_t *refs = NULL;
    size_t n = 0, i, bad = 0;

    *pending = *held = *dead = 0;
    if(ps_queue_list_refs(q, 0, &refs, &n, NULL, NULL, err, errlen) != 0)
        return -1;
    for(i = 0; i < n; i++) {
        if(refs[i].state == PS_Q_HELD)
            (*held)++;
        else
            (*pending)++;
    }
    free(refs);
    if(ps_queue_list_refs(q, 1, &refs, dead, NULL, NULL, err, errlen) != 0)
        return -1;
    free(refs);
    if(invalid)
        *invalid += bad;
    return 0;
}

static void progress_line(const drain_t *d)
{
    double el = ps_now() - d->t0;
    double rate = el > 0 ? (double)d->done / el : 0;
    double eta = rate > 0 ? (double)(d->st->total - d->done) / rate : 0;

    fprintf(stderr, "\rretry: %zu/%zu done, %.1f entries/s, ETA %.0f s   ", d->done, d->st->total,
            rate, eta);
    fflush(stderr);
}

static int deadline_passed(const drain_t *d)
{
    return d->ctx->deadline > 0 && ps_now() >= d->ctx->deadline;
}

static next_t stop(drain_t *d, ps_status_t st, const char *what, const char *detail)
{
    d->st->stopped = 1;
    snprintf(d->st->reason, sizeof(d->st->reason), "%s%s%s%s", what, detail ? " (" : "",
             detail ? detail : "", detail ? ")" : "");
    if(ps_status_worse(st, d->stop))
        d->stop = st;
    return NEXT_STOP;
}

/* A pending entry whose first real attempt is more than max_age_days ago
 * becomes a dead letter (locked, e read under the lock). */
static int too_old(const drain_t *d, const ps_qentry_t *e)
{
    long long maxage = (long long)d->ctx->cfg->max_age_days * 86400;

    return e->state == PS_Q_PENDING && e->first_attempt > 0 &&
           (long long)time(NULL) - e->first_attempt > maxage;
}

static void dead_letter(drain_t *d, const ps_qentry_t *e)
{
    char err[512], detail[600];

    if(ps_queue_dead_letter(d->ctx->queue, e->name, err, sizeof(err)) != 0) {
        ps_logf(d->ctx->log, LOG_ERR, "%s", err);
        return;
    }
    d->st->aged++;
    snprintf(detail, sizeof(detail),
             "pending for more than %d day%s since its first attempt, %d attempt%s, last "
             "error: %.255s; sent no more until `retry --held`, or dropped with `queue drop %s`",
             d->ctx->cfg->max_age_days, d->ctx->cfg->max_age_days == 1 ? "" : "s", e->attempts,
             e->attempts == 1 ? "" : "s", e->last_error, e->name);
    ps_audit(d->ctx->log, LOG_ALERT, "dead-letter", e->trigger, e->login, e->organization, e->id,
             e->delete_passwords, e->delete_service_tokens, 0, detail);
}

/* When a pending entry may be sent: its api.spread time (not_before), made
 * no later than `recorded + api.spread` of the configuration in use, so
 * that a smaller spread (or 0) brings waiting entries forward. 0 = now. */
static long long due_at(const drain_t *d, long long recorded, long long not_before)
{
    long long cap = recorded + (long long)d->ctx->cfg->spread;

    if(not_before <= 0)
        return 0;
    return not_before < cap ? not_before : cap;
}

static int not_due(const drain_t *d, long long recorded, long long not_before)
{
    return due_at(d, recorded, not_before) > (long long)time(NULL);
}

/* Whether this run sends a live entry: every pending one; a held one when
 * asked (--held) or when the configuration changed since it was held. */
static int wanted(const drain_t *d, const ps_qentry_t *e)
{
    if(e->state != PS_Q_HELD)
        return 1;
    return d->ctx->retry_held || strcmp(e->held_config, d->fingerprint) != 0;
}

/* What the answer to one entry means for the rest of the drain. */
static next_t after_send(drain_t *d, ps_status_t st, const ps_report_t *rep, const ps_result_t *res)
{
    switch(st) {
    case PS_ST_REMOVED:
    case PS_ST_ABSENT:
        if(st == PS_ST_REMOVED)
            d->st->removed++;
        else
            d->st->absent++;
        d->outage = 0;
        ps_client_pace_answer(d->ctx->client, res, 1);
        return NEXT_ENTRY;
    case PS_ST_QUEUED:
        ps_client_pace_answer(d->ctx->client, res, 0);
        if(res->http_status == 429) {
            d->st->http_429++;
            return ++d->tries429 <= PS_MAX_429_PER_ENTRY ? NEXT_AGAIN : NEXT_ENTRY;
        }
        if((res->http_status == 0 || res->http_status >= 500) && ++d->outage >= PS_OUTAGE_FAILURES)
            return stop(d, PS_ST_QUEUED, "the API is unavailable", rep->message);
        return NEXT_ENTRY;
    case PS_ST_HELD:
        /* an invalid credential fails every entry alike */
        if(res->http_status == 401)
            return stop(d, PS_ST_HELD, "the API refused the credential", rep->message);
        return NEXT_ENTRY;
    case PS_ST_HELD_CONFIG:
        return stop(d, PS_ST_HELD_CONFIG, "a configuration problem", rep->message);
    default: return stop(d, PS_ST_ERROR, "an unexpected error", rep->message);
    }
}

/* One entry of the listing: lock it, read it again, age it, send it. */
static next_t drain_one(drain_t *d, const char *name)
{
    char err[512];
    ps_qentry_t cur;
    ps_report_t rep;
    ps_result_t res;
    ps_status_t st;
    int fd = -1, rc;

    if(deadline_passed(d))
        return stop(d, PS_ST_QUEUED, "deadline reached", NULL);
    rc = ps_queue_lock(d->ctx->queue, name, 0, &fd, &cur, err, sizeof(err));
    if(rc == 1) {
        d->st->busy++;
        return NEXT_ENTRY;
    }
    if(rc == 2)
        return NEXT_ENTRY; /* settled meanwhile by another process */
    if(rc != 0) {
        ps_logf(d->ctx->log, LOG_ERR, "%s", err);
        return NEXT_ENTRY;
    }
    if(too_old(d, &cur)) {
        dead_letter(d, &cur);
        ps_queue_unlock(fd);
        return NEXT_ENTRY;
    }
    if(!wanted(d, &cur) ||
       (cur.state == PS_Q_PENDING && not_due(d, cur.recorded, cur.not_before))) {
        ps_queue_unlock(fd);
        return NEXT_ENTRY;
    }
    memset(&rep, 0, sizeof(rep));
    if(d->tries429 == 0)
        d->st->sent++; /* an entry sent again after a 429 is still one entry */
    st = ps_send_entry(d->ctx, &cur, 1, &rep, &res);
    ps_queue_unlock(fd);
    return after_send(d, st, &rep, &res);
}

/* Sends one entry of the listing (again after a 429). */
static next_t drain_ref(drain_t *d, const ps_qref_t *ref)
{
    next_t next;

    d->tries429 = 0;
    while((next = drain_one(d, ref->name)) == NEXT_AGAIN)
        ;
    d->done++;
    if(d->progress)
        progress_line(d);
    return next;
}

/* Sleeps until the wall clock reaches t + frac (frac in [0, 1)) and
 * time(NULL) reaches t. time() reads a coarse clock that may lag
 * CLOCK_REALTIME by a few milliseconds: it, not the fine clock, decides
 * when an entry is due (not_due), so it must agree before we go on. */
static void sleep_until_wall(long long t, double frac)
{
    for(;;) {
        struct timespec now, ts;
        double left;

        clock_gettime(CLOCK_REALTIME, &now);
        left = (double)(t - (long long)now.tv_sec) + frac - (double)now.tv_nsec / 1e9;
        if(left <= 0 && (long long)time(NULL) >= t)
            return;
        if(left < 0.002)
            left = 0.002;
        ts.tv_sec = (time_t)left;
        ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
        if(nanosleep(&ts, NULL) != 0 && errno != EINTR)
            return;
    }
}

typedef struct spread_ref {
    const ps_qref_t *ref;
    long long due;
} spread_ref_t;

static int cmp_due(const void *a, const void *b)
{
    const spread_ref_t *x = a, *y = b;

    return x->due < y->due ? -1 : x->due > y->due;
}

/* The pending entries the first pass left because api.spread puts their
 * first attempt later: in the order of their time, each sent when it comes,
 * as long as that is before the deadline (without one, this run waits for
 * all of them: at most api.spread seconds). The rest stay pending, counted
 * in st->waiting, with st->next_due the earliest. `later` marks the entries
 * the first pass left because they were not due then: one of them may have
 * come due while others were sent, and must not fall between the two
 * passes (NULL, when it could not be allocated: those not due now). */
static void drain_spread(drain_t *d, const ps_qref_t *list, const unsigned char *later, size_t n)
{
    spread_ref_t *w;
    size_t nw = 0, i;

    w = calloc(n ? n : 1, sizeof(*w));
    if(!w) {
        ps_logf(d->ctx->log, LOG_ERR, "retry: out of memory");
        return;
    }
    for(i = 0; i < n; i++) {
        if(later ? later[i]
                 : list[i].state != PS_Q_HELD && not_due(d, list[i].recorded, list[i].not_before)) {
            w[nw].ref = &list[i];
            w[nw].due = due_at(d, list[i].recorded, list[i].not_before);
            nw++;
        }
    }
    qsort(w, nw, sizeof(*w), cmp_due);
    for(i = 0; i < nw; i++) {
        /* the deadline is on the monotonic clock, due times on the wall clock */
        double wait = (double)(w[i].due - (long long)time(NULL));

        if(d->ctx->deadline > 0 && ps_now() + wait >= d->ctx->deadline)
            break;
        /* not_before is in whole seconds, and the hosts of a fleet that
         * remove the same person (the same entry name everywhere) would all
         * go at the start of the same seconds: a random moment within it */
        sleep_until_wall(w[i].due, random01());
        if(drain_ref(d, w[i].ref) == NEXT_STOP) {
            i++;
            break;
        }
    }
    for(; i < nw; i++) {
        d->st->waiting++;
        if(!d->st->next_due || w[i].due < d->st->next_due)
            d->st->next_due = w[i].due;
    }
    free(w);
}

/* Brings every dead letter back as pending (retry --held). */
static void revive_dead(drain_t *d)
{
    ps_qref_t *refs = NULL;
    size_t n = 0, i;
    char err[512];

    if(ps_queue_list_refs(d->ctx->queue, 1, &refs, &n, NULL, NULL, err, sizeof(err)) != 0) {
        ps_logf(d->ctx->log, LOG_ERR, "%s", err);
        return;
    }
    for(i = 0; i < n; i++) {
        int fd = -1;

        if(ps_queue_lock_key(d->ctx->queue, refs[i].name, 0, &fd, err, sizeof(err)) != 0)
            continue;
        if(ps_queue_revive(d->ctx->queue, refs[i].name, err, sizeof(err)) < 0)
            ps_logf(d->ctx->log, LOG_ERR, "%s", err);
        ps_queue_unlock(fd);
    }
    free(refs);
}

static int start(drain_t *d)
{
    char err[512];

    if(!d->ctx->cfg->auth_header) {
        stop(d, PS_ST_HELD_CONFIG,
             "no API credential configured: set api.token_id and api.token, api.token_file or "
             "api.oauth_token",
             NULL);
        return -1;
    }
    if(!ps_ctx_client(d->ctx, err, sizeof(err))) {
        stop(d, PS_ST_HELD_CONFIG, err, NULL);
        return -1;
    }
    return 0;
}

ps_status_t ps_drain(ps_ctx_t *ctx, int progress, ps_drain_stats_t *st)
{
    char err[512];
    ps_qref_t *list = NULL;
    unsigned char *later = NULL;
    size_t n = 0, i, todo = 0;
    invalid_arg_t ia = { ctx, st };
    drain_t d;
    ps_status_t rv = PS_ST_REMOVED;

    memset(st, 0, sizeof(*st));
    memset(&d, 0, sizeof(d));
    d.ctx = ctx;
    d.st = st;
    d.progress = progress;
    d.t0 = ps_now();
    d.stop = PS_ST_REMOVED;
    ps_config_fingerprint(ctx->cfg, d.fingerprint);

    if(!ps_ctx_queue(ctx, err, sizeof(err))) {
        snprintf(st->reason, sizeof(st->reason), "%s", err);
        return PS_ST_ERROR;
    }
    if(ctx->retry_held)
        revive_dead(&d);
    if(ps_queue_list_refs(ctx->queue, 0, &list, &n, on_invalid, &ia, err, sizeof(err)) != 0) {
        snprintf(st->reason, sizeof(st->reason), "%s", err);
        return PS_ST_ERROR;
    }
    /* pending entries first (oldest record first), then held ones */
    for(i = 0; i < n; i++)
        if(list[i].state != PS_Q_HELD || ctx->retry_held ||
           strcmp(list[i].held_config, d.fingerprint) != 0)
            todo++;
    st->total = todo;
    if(todo > 0 && start(&d) == 0) {
        int pass;

        later = calloc(n, 1);
        /* pending entries that are due, then held ones */
        for(pass = 0; pass < 2; pass++) {
            for(i = 0; i < n; i++) {
                if((list[i].state == PS_Q_HELD) != (pass == 1))
                    continue;
                if(pass == 0 && not_due(&d, list[i].recorded, list[i].not_before)) {
                    if(later)
                        later[i] = 1;
                    continue;
                }
                if(drain_ref(&d, &list[i]) == NEXT_STOP)
                    break;
            }
            if(st->stopped)
                break;
        }
        /* then the first attempts that api.spread put later, at their time */
        if(!st->stopped)
            drain_spread(&d, list, later, n);
        if(progress) {
            progress_line(&d);
            fputc('\n', stderr);
        }
    }
    free(later);
    free(list);

    /* what the spool holds now decides the exit code */
    if(ps_spool_count(ctx->queue, &st->pending, &st->held, &st->dead, NULL, err, sizeof(err)) !=
       0) {
        snprintf(st->reason, sizeof(st->reason), "%s", err);
        rv = PS_ST_ERROR;
    }
    if(st->pending > 0 && ps_status_worse(PS_ST_QUEUED, rv))
        rv = PS_ST_QUEUED;
    if(st->held + st->dead > 0 && ps_status_worse(PS_ST_HELD, rv))
        rv = PS_ST_HELD;
    if(ps_status_worse(d.stop, rv))
        rv = d.stop;
    if(ctx->client)
        st->connects = ps_client_connects(ctx->client);
    st->elapsed = ps_now() - d.t0;
    return rv;
}
