/* drain.c - `retry`: drain the durable queue. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drain.h"

#define PS_PACE_MARGIN       0.98 /* stay below the configured rate */
#define PS_MAX_429_PER_ENTRY 8
#define PS_OUTAGE_FAILURES   3

static void sleep_until(double t)
{
    for(;;) {
        double left = t - ps_now();
        struct timespec ts;

        if(left <= 0)
            return;
        ts.tv_sec = (time_t)left;
        ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
        if(nanosleep(&ts, NULL) == 0)
            return;
        if(errno != EINTR)
            return;
    }
}

typedef struct invalid_arg {
    const ps_ctx_t *ctx;
    ps_drain_stats_t *st;
} invalid_arg_t;

static void on_invalid(void *arg, const char *name, const char *reason)
{
    invalid_arg_t *ia = arg;
    char ename[128], ereason[512];

    ia->st->invalid++;
    ps_logf(ia->ctx->log, LOG_ERR,
            "queue entry %s is not valid (%s): moved to invalid/, "
            "not sent",
            ps_escape(name, ename, sizeof(ename)), ps_escape(reason, ereason, sizeof(ereason)));
}

static void progress_line(const ps_drain_stats_t *st, size_t done, double t0)
{
    double el = ps_now() - t0;
    double rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 ? (double)(st->total - done) / rate : 0;

    fprintf(stderr, "\rretry: %zu/%zu done, %.1f req/s, ETA %.0f s   ", done, st->total, rate, eta);
    fflush(stderr);
}

/* Handles an entry that is older than max_age_days. */
static void dead_letter_aged(ps_ctx_t *ctx, const char *name, ps_drain_stats_t *st)
{
    char err[512], detail[400];
    ps_qentry_t cur;
    int fd = -1;

    if(ps_queue_lock(ctx->queue, name, 0, &fd, &cur, err, sizeof(err)) != 0)
        return;
    if(ps_queue_dead_letter(ctx->queue, cur.name, err, sizeof(err)) != 0) {
        ps_logf(ctx->log, LOG_ERR, "%s", err);
    } else {
        st->aged++;
        snprintf(detail, sizeof(detail), "older than %d days, %d attempts, last error: %s",
                 ctx->cfg->max_age_days, cur.attempts, cur.last_error);
        ps_audit(ctx->log, LOG_ERR, "dead-letter", cur.login, cur.organization, cur.id,
                 cur.delete_passwords, cur.delete_service_tokens, 0, detail);
    }
    ps_queue_unlock(fd);
}

ps_status_t ps_drain(ps_ctx_t *ctx, int progress, ps_drain_stats_t *st)
{
    char err[512];
    ps_qref_t *list = NULL;
    size_t n = 0, i, done = 0;
    invalid_arg_t ia = { ctx, st };
    ps_status_t rv = PS_ST_REMOVED;
    double target, rate, next, t0 = ps_now();
    int outage = 0;
    long long maxage;

    memset(st, 0, sizeof(*st));
    if(!ps_ctx_queue(ctx, err, sizeof(err))) {
        snprintf(st->reason, sizeof(st->reason), "%s", err);
        return PS_ST_ERROR;
    }
    if(ps_queue_list_refs(ctx->queue, 0, &list, &n, on_invalid, &ia, err, sizeof(err)) != 0) {
        snprintf(st->reason, sizeof(st->reason), "%s", err);
        return PS_ST_ERROR;
    }
    st->total = n;
    if(n == 0)
        goto out;
    if(!ctx->cfg->auth_header) {
        snprintf(st->reason, sizeof(st->reason),
                 "no API credential configured: set "
                 "api.token_id and api.token, api.token_file or api.oauth_token");
        st->stopped = 1;
        st->left = n;
        rv = PS_ST_CONFIG;
        goto out;
    }
    if(!ps_ctx_client(ctx, err, sizeof(err))) {
        snprintf(st->reason, sizeof(st->reason), "%s", err);
        st->stopped = 1;
        st->left = n;
        rv = PS_ST_CONFIG;
        goto out;
    }

    target = ctx->cfg->rate_limit * PS_PACE_MARGIN;
    rate = target;
    next = ps_now();
    maxage = (long long)ctx->cfg->max_age_days * 86400;

    for(i = 0; i < n; i++) {
        const ps_qref_t *e = &list[i];
        ps_qentry_t cur;
        ps_report_t rep;
        ps_result_t res;
        int fd = -1, tries429 = 0, rc;
        double now;

        if(ctx->deadline > 0 && ps_now() >= ctx->deadline) {
            st->stopped = 1;
            snprintf(st->reason, sizeof(st->reason), "deadline reached");
            break;
        }
        if((long long)time(NULL) - e->first_attempt > maxage) {
            dead_letter_aged(ctx, e->name, st);
            done++;
            continue;
        }
    again:
        /* Pace on a schedule so that slow answers do not lower the rate,
         * but never burst to catch up. */
        now = ps_now();
        if(next < now - 1.0 / rate)
            next = now;
        if(ctx->deadline > 0 && next >= ctx->deadline) {
            st->stopped = 1;
            snprintf(st->reason, sizeof(st->reason), "deadline reached");
            break;
        }
        sleep_until(next);
        next += 1.0 / rate;

        rc = ps_queue_lock(ctx->queue, e->name, 0, &fd, &cur, err, sizeof(err));
        if(rc == 1) {
            st->busy++;
            done++;
            continue;
        }
        if(rc == 2) {
            st->absent++; /* confirmed meanwhile by another process */
            done++;
            continue;
        }
        if(rc != 0) {
            ps_logf(ctx->log, LOG_ERR, "%s", err);
            done++;
            continue;
        }
        memset(&rep, 0, sizeof(rep));
        ps_send_entry(ctx, &cur, 1, &rep, &res);
        ps_queue_unlock(fd);

        switch(rep.status) {
        case PS_ST_REMOVED: st->removed++; break;
        case PS_ST_ABSENT: st->absent++; break;
        case PS_ST_QUEUED:
            if(res.http_status == 429) {
                double wait;

                st->http_429++;
                rate = rate / 2 > 0.1 ? rate / 2 : 0.1; /* slow down */
                wait = res.retry_after >= 0 ? res.retry_after : 1.0 / rate;
                if(wait > 60)
                    wait = 60;
                next = ps_now() + wait;
                if(++tries429 <= PS_MAX_429_PER_ENTRY)
                    goto again;
            } else if(res.http_status == 0 || res.http_status >= 500) {
                if(++outage >= PS_OUTAGE_FAILURES) {
                    st->requeued++;
                    done++;
                    st->stopped = 1;
                    snprintf(st->reason, sizeof(st->reason), "the API is unavailable (%s)",
                             rep.message);
                    i++;
                    goto stop;
                }
            }
            st->requeued++;
            break;
        case PS_ST_REFUSED:
            if(rep.http_status == 401 || rep.http_status == 403) {
                st->refused++;
                st->stopped = 1;
                snprintf(st->reason, sizeof(st->reason),
                         "the API refused the credential (%s): entries stay queued", rep.message);
                rv = PS_ST_REFUSED;
                done++;
                i++;
                goto stop;
            }
            st->dead++;
            break;
        default: /* CONFIG, ERROR: every entry would fail alike */
            st->stopped = 1;
            snprintf(st->reason, sizeof(st->reason), "%s", rep.message);
            rv = rep.status == PS_ST_CONFIG ? PS_ST_CONFIG : PS_ST_ERROR;
            done++;
            i++;
            goto stop;
        }
        if(rep.status == PS_ST_REMOVED || rep.status == PS_ST_ABSENT) {
            outage = 0;
            if(rate < target)
                rate = rate * 1.1 < target ? rate * 1.1 : target; /* recover */
        }
        done++;
        if(progress)
            progress_line(st, done, t0);
    }
stop:
    st->left = st->requeued + (n - i) + st->busy;
    if(progress) {
        progress_line(st, done, t0);
        fputc('\n', stderr);
    }
    if(rv == PS_ST_REMOVED && st->left > 0)
        rv = PS_ST_QUEUED;
out:
    if(ctx->client)
        st->connects = ps_client_connects(ctx->client);
    st->elapsed = ps_now() - t0;
    free(list);
    return rv;
}
