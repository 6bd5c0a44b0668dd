/* remove.c - one removal, end to end.
 *
 * The request is recorded in the queue BEFORE it is sent (write-ahead), and
 * the entry is deleted only when the API answered 204 or 404, so that a
 * crash, a kill or a power cut at any point leaves the request waiting, never
 * lost. The per-entry lock makes sure that two processes never send the same
 * entry at the same time. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "helper.h"
#include "remove.h"

ps_client_t *ps_ctx_client(ps_ctx_t *ctx, char *err, size_t errlen)
{
    if(!ctx->client) {
        ctx->client = ps_client_new(ctx->cfg, err, errlen);
        if(ctx->client && ctx->backoff_base > 0)
            ps_client_set_backoff(ctx->client, ctx->backoff_base, 60.0);
    }
    return ctx->client;
}

ps_queue_t *ps_ctx_queue(ps_ctx_t *ctx, char *err, size_t errlen)
{
    if(!ctx->queue && ps_queue_open(&ctx->queue, ctx->cfg->queue_dir, err, errlen) != 0)
        ctx->queue = NULL;
    return ctx->queue;
}

void ps_ctx_release(ps_ctx_t *ctx)
{
    if(ctx->client)
        ps_client_free(ctx->client);
    if(ctx->queue)
        ps_queue_close(ctx->queue);
    ctx->client = NULL;
    ctx->queue = NULL;
}

const char *ps_status_word(ps_status_t st)
{
    switch(st) {
    case PS_ST_REMOVED: return PS_HELPER_REMOVED;
    case PS_ST_ABSENT: return PS_HELPER_ABSENT;
    case PS_ST_UNMAPPED: return PS_HELPER_UNMAPPED;
    case PS_ST_UNKNOWN: return PS_HELPER_UNKNOWN;
    case PS_ST_DRYRUN: return "dry-run";
    case PS_ST_QUEUED: return PS_HELPER_QUEUED;
    case PS_ST_REFUSED: return PS_HELPER_REFUSED;
    case PS_ST_CONFIG: return PS_HELPER_CONFIG;
    case PS_ST_NOT_QUEUED: return "not-queued";
    case PS_ST_INVALID: return "invalid";
    case PS_ST_ERROR: break;
    }
    return PS_HELPER_ERROR;
}

int ps_status_exit(ps_status_t st)
{
    switch(st) {
    case PS_ST_REMOVED:
    case PS_ST_ABSENT:
    case PS_ST_UNMAPPED:
    case PS_ST_DRYRUN: return 0;
    case PS_ST_QUEUED:
    case PS_ST_NOT_QUEUED: return 75; /* EX_TEMPFAIL */
    case PS_ST_REFUSED: return 77;    /* EX_NOPERM */
    case PS_ST_CONFIG: return 78;     /* EX_CONFIG */
    case PS_ST_INVALID: return 64;    /* EX_USAGE */
    case PS_ST_UNKNOWN:
    case PS_ST_ERROR: break;
    }
    return 1;
}

/* Which of several logins' outcomes decides the exit status: the one that
 * needs the administrator most. */
static int status_rank(ps_status_t st)
{
    switch(st) {
    case PS_ST_ERROR: return 9;
    case PS_ST_CONFIG: return 8;
    case PS_ST_REFUSED: return 7;
    case PS_ST_UNKNOWN: return 6;
    case PS_ST_INVALID: return 5;
    case PS_ST_NOT_QUEUED: return 4;
    case PS_ST_QUEUED: return 3;
    default: return 0;
    }
}

int ps_status_worse(ps_status_t a, ps_status_t b)
{
    return status_rank(a) > status_rank(b);
}

static void audit_map(const ps_ctx_t *ctx, int prio, const char *outcome, const ps_mapping_t *m,
                      long http, const char *detail)
{
    ps_audit(ctx->log, prio, outcome, m->login, m->organization, m->id, m->delete_passwords,
             m->delete_service_tokens, http, detail);
}

static void entry_from_map(ps_qentry_t *e, const ps_mapping_t *m)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->login, sizeof(e->login), "%s", m->login);
    snprintf(e->organization, sizeof(e->organization), "%s", m->organization);
    snprintf(e->id, sizeof(e->id), "%s", m->id);
    e->delete_passwords = m->delete_passwords;
    e->delete_service_tokens = m->delete_service_tokens;
    e->first_attempt = (long long)time(NULL);
    ps_queue_name(e->login, e->organization, e->id, e->name);
}

static void map_from_entry(ps_mapping_t *m, const ps_qentry_t *e)
{
    m->login = e->login;
    m->organization = e->organization;
    m->id = e->id;
    m->delete_passwords = e->delete_passwords;
    m->delete_service_tokens = e->delete_service_tokens;
}

/* The answer in words; the API's message is escaped here, once, since the
 * server controls it (messages stay printable wherever they go). */
static void describe_result(const ps_result_t *r, char *out, size_t outlen)
{
    char msg[sizeof(r->message)];

    ps_escape(r->message, msg, sizeof(msg));
    if(r->http_status > 0 && msg[0])
        snprintf(out, outlen, "HTTP %ld: %.400s", r->http_status, msg);
    else if(r->http_status > 0)
        snprintf(out, outlen, "HTTP %ld", r->http_status);
    else
        snprintf(out, outlen, "%.480s", msg[0] ? msg : "no answer");
}

ps_status_t ps_send_entry(ps_ctx_t *ctx, ps_qentry_t *e, int once, ps_report_t *rep,
                          ps_result_t *res)
{
    char err[512];
    ps_mapping_t m;
    ps_client_t *client;
    ps_queue_t *q = ctx->queue;
    ps_outcome_t out;
    ps_result_t localres;
    ps_result_t *r = res ? res : &localres;

    map_from_entry(&m, e);
    if(!rep->mapped) {
        /* points into *e: valid as long as the caller's entry is */
        rep->map = m;
        rep->mapped = 1;
    }
    memset(r, 0, sizeof(*r));

    client = ps_ctx_client(ctx, err, sizeof(err));
    if(!client) {
        snprintf(rep->message, sizeof(rep->message), "%s", err);
        audit_map(ctx, LOG_ERR, "failed", &m, 0, rep->message);
        return rep->status = PS_ST_CONFIG;
    }
    out = once ? ps_client_delete_once(client, &m, r)
               : ps_client_remove(client, &m, ctx->deadline, r);
    rep->http_status = r->http_status;
    rep->attempts = r->attempts;
    describe_result(r, rep->message, sizeof(rep->message));

    e->attempts += r->attempts > 0 ? r->attempts : 1;
    e->last_attempt = (long long)time(NULL);

    switch(out) {
    case PS_OUT_REMOVED:
    case PS_OUT_ABSENT:
        rep->status = out == PS_OUT_REMOVED ? PS_ST_REMOVED : PS_ST_ABSENT;
        audit_map(ctx, LOG_INFO, out == PS_OUT_REMOVED ? "removed" : "absent", &m, r->http_status,
                  NULL);
        if(q && e->name[0] && ps_queue_done(q, e->name, err, sizeof(err)) != 0)
            ps_logf(ctx->log, LOG_ERR,
                    "%s (the member is removed; the stale entry will be "
                    "confirmed by the next retry)",
                    err);
        return rep->status;
    case PS_OUT_TRANSIENT:
        snprintf(e->last_error, sizeof(e->last_error), "%.255s", rep->message);
        if(q && e->name[0]) {
            if(ps_queue_put(q, e, err, sizeof(err)) != 0)
                ps_logf(ctx->log, LOG_ERR,
                        "could not update the queue entry: %s "
                        "(the previous version of the entry is kept)",
                        err);
            audit_map(ctx, LOG_WARNING, "queued", &m, r->http_status, rep->message);
            return rep->status = PS_ST_QUEUED;
        }
        audit_map(ctx, LOG_ERR, "not-queued", &m, r->http_status, rep->message);
        return rep->status = PS_ST_NOT_QUEUED;
    case PS_OUT_REFUSED:
    case PS_OUT_CONFIG:
        rep->status = out == PS_OUT_REFUSED ? PS_ST_REFUSED : PS_ST_CONFIG;
        audit_map(ctx, LOG_ERR, out == PS_OUT_REFUSED ? "refused" : "failed", &m, r->http_status,
                  rep->message);
        if(!q || !e->name[0])
            return rep->status;
        if(!once) {
            /* remove: a permanent answer is final, not queued (the design:
             * a 401/403 after a token fix is re-run by hand). */
            if(ps_queue_done(q, e->name, err, sizeof(err)) != 0)
                ps_logf(ctx->log, LOG_ERR, "%s", err);
        } else if(out == PS_OUT_REFUSED && r->http_status != 401 && r->http_status != 403) {
            /* retry: this entry itself is refused; keep it visible. */
            snprintf(e->last_error, sizeof(e->last_error), "%.255s", rep->message);
            if(ps_queue_put(q, e, err, sizeof(err)) != 0 ||
               ps_queue_dead_letter(q, e->name, err, sizeof(err)) != 0)
                ps_logf(ctx->log, LOG_ERR, "%s", err);
            else
                audit_map(ctx, LOG_ERR, "dead-letter", &m, r->http_status, rep->message);
        } else {
            /* retry: credentials or TLS configuration; every entry would
             * fail alike, so they stay pending until it is fixed. */
            snprintf(e->last_error, sizeof(e->last_error), "%.255s", rep->message);
            if(ps_queue_put(q, e, err, sizeof(err)) != 0)
                ps_logf(ctx->log, LOG_ERR, "%s", err);
        }
        return rep->status;
    case PS_OUT_OK: break; /* a read's answer: a DELETE never gives it */
    }
    return rep->status = PS_ST_ERROR;
}

/* Write-ahead: record the request; returns 0 when it is in the queue. */
static int record(ps_ctx_t *ctx, ps_qentry_t *e, char *err, size_t errlen)
{
    ps_queue_t *q = ps_ctx_queue(ctx, err, errlen);

    if(!q)
        return -1;
    return ps_queue_put(q, e, err, errlen);
}

static double lock_wait(const ps_ctx_t *ctx)
{
    double left = 30.0;

    if(ctx->deadline > 0) {
        left = ctx->deadline - ps_now();
        if(left > 30.0)
            left = 30.0;
        if(left < 0)
            left = 0;
    }
    return left;
}

static ps_status_t no_credential(ps_ctx_t *ctx, ps_report_t *rep, int queued)
{
    snprintf(rep->message, sizeof(rep->message), "no API credential configured%s",
             queued ? "; the request is kept in the queue until one is" : "");
    audit_map(ctx, LOG_ERR, queued ? "queued" : "failed", &rep->map, 0, rep->message);
    return rep->status = PS_ST_CONFIG;
}

/* The queue could not keep the request (full disk, permissions): say so
 * loudly, then still try to send it now, since the API answering is the
 * only other way not to lose it. */
static ps_status_t send_unrecorded(ps_ctx_t *ctx, const char *login, ps_qentry_t *e,
                                   const char *qerr, ps_report_t *rep)
{
    char elogin[PS_LOGIN_MAX * 4 + 8];
    ps_status_t rc;

    ps_logf(ctx->log, LOG_ERR, "cannot record the removal of %s in the queue: %s",
            ps_escape(login, elogin, sizeof(elogin)), qerr);
    if(!ctx->cfg->auth_header) {
        snprintf(rep->message, sizeof(rep->message),
                 "no API credential configured, "
                 "and the request could not be queued: %.400s",
                 qerr);
        audit_map(ctx, LOG_ERR, "failed", &rep->map, 0, rep->message);
        return rep->status = PS_ST_ERROR;
    }
    e->name[0] = '\0';
    rc = ps_send_entry(ctx, e, 0, rep, NULL);
    if(rc == PS_ST_NOT_QUEUED) {
        snprintf(rep->message, sizeof(rep->message), "NOT queued (%.200s) after: %.250s", qerr,
                 e->last_error);
        return rep->status = PS_ST_ERROR;
    }
    if(rc == PS_ST_REMOVED || rc == PS_ST_ABSENT)
        snprintf(rep->message, sizeof(rep->message),
                 "sent although it could not be recorded in the queue (%.400s)", qerr);
    return rep->status;
}

ps_status_t ps_remove_login(ps_ctx_t *ctx, const char *login, ps_report_t *rep)
{
    char elogin[PS_LOGIN_MAX * 4 + 8];
    char err[512];
    ps_qentry_t e, old;
    int rc, fd = -1;
    const ps_config_t *cfg = ctx->cfg;

    memset(rep, 0, sizeof(*rep));
    if(!ps_login_valid(login)) {
        ps_escape(login, elogin, sizeof(elogin));
        snprintf(rep->message, sizeof(rep->message),
                 "invalid login name \"%.300s\": expected 1 to %d characters, no control "
                 "characters, spaces, '/', ':' or '\\', not starting with '-'",
                 elogin, PS_LOGIN_MAX);
        ps_audit(ctx->log, LOG_ERR, "invalid", login, NULL, NULL, -1, -1, 0, NULL);
        return rep->status = PS_ST_INVALID;
    }

    rc = ps_config_map(cfg, login, &rep->map);
    if(rc == 1) {
        int strict = cfg->unmapped == PS_UNMAPPED_ERROR;

        snprintf(rep->message, sizeof(rep->message), "not in the map%s",
                 strict ? " (unmapped = \"error\")" : ", ignored");
        ps_audit(ctx->log, strict ? LOG_ERR : LOG_INFO, "unmapped", login, NULL, NULL, -1, -1, 0,
                 strict ? "unmapped = error" : NULL);
        return rep->status = strict ? PS_ST_UNKNOWN : PS_ST_UNMAPPED;
    }
    if(rc < 0) {
        snprintf(rep->message, sizeof(rep->message),
                 "no organization: set one for this user or a default organization");
        ps_audit(ctx->log, LOG_ERR, "failed", login, NULL, rep->map.id, -1, -1, 0, rep->message);
        return rep->status = PS_ST_CONFIG;
    }
    rep->mapped = 1;
    if(ctx->dry_run)
        return rep->status = PS_ST_DRYRUN;

    entry_from_map(&e, &rep->map);
    if(ctx->no_queue) {
        e.name[0] = '\0';
        if(!cfg->auth_header)
            return no_credential(ctx, rep, 0);
        return ps_send_entry(ctx, &e, 0, rep, NULL);
    }

    /* Hold the key's lock from before the entry is written until it is
     * settled: nobody else sends this request meanwhile. */
    rc = -1;
    if(ps_ctx_queue(ctx, err, sizeof(err)))
        rc = ps_queue_lock_key(ctx->queue, e.name, lock_wait(ctx), &fd, err, sizeof(err));
    if(rc == 1) {
        snprintf(rep->message, sizeof(rep->message),
                 "being sent by another process; kept in the queue");
        audit_map(ctx, LOG_NOTICE, "queued", &rep->map, 0, rep->message);
        return rep->status = PS_ST_QUEUED;
    }
    if(rc == 0) {
        /* keep the history of an entry already waiting */
        if(ps_queue_read(ctx->queue, e.name, &old, err, sizeof(err)) == 0) {
            e.first_attempt = old.first_attempt;
            e.attempts = old.attempts;
            snprintf(e.last_error, sizeof(e.last_error), "%s", old.last_error);
        }
        rc = record(ctx, &e, err, sizeof(err));
    }
    if(rc != 0) {
        ps_queue_unlock(fd);
        return send_unrecorded(ctx, login, &e, err, rep);
    }
    if(!cfg->auth_header) {
        ps_queue_unlock(fd);
        return no_credential(ctx, rep, 1);
    }
    /* A running sender has a warm connection: give it the recorded entry
     * and its lock. When there is none, or it declines, send it here. */
    if(!ctx->handoff || ctx->handoff(ctx, fd, &e, rep) != 0)
        ps_send_entry(ctx, &e, 0, rep, NULL);
    ps_queue_unlock(fd);
    return rep->status;
}
