/* remove.c - one removal, end to end.
 *
 * The request is recorded in the spool BEFORE anything is sent
 * (write-ahead), and the entry is deleted only when the API confirmed that
 * the member is gone, so that a crash, a kill or a power cut at any point
 * leaves the request waiting, never lost. What happens to the entry after
 * an answer is decided by the outcome table (outcome.h) and applied in one
 * place, settle(). The per-key lock makes sure that two processes never
 * send the same entry at the same time.
 *
 * The removal protocol ("look, then delete"):
 *   1. GET .../members/{id}.
 *        200: the member is there, and this credential can read the
 *             organization: go to 2.
 *        404: ambiguous - PlanetScale answers 404 both for "not a member"
 *             and for "you cannot see this organization". It means "not a
 *             member" only once this credential is shown to read the
 *             organization's member list (a probe, remembered for
 *             PS_PROBE_TTL seconds per organization): then ABSENT, and no
 *             DELETE is sent. When the credential cannot read the list
 *             (a token with write_organization only), go to 2 anyway.
 *        401: REFUSED (the credential is not valid). 403: the credential
 *             cannot read; go to 2. Transient and configuration answers
 *             end the protocol.
 *   2. DELETE with the cleanup flags.
 *        2xx: REMOVED.
 *        404: another host removed the member meanwhile, or this
 *             credential lacks write_organization. GET again: a member
 *             still listed means the credential cannot remove it (REFUSED,
 *             with that reason); a 404 is ABSENT when step 1 or a probe
 *             proved the credential reads the organization, REFUSED
 *             ("could not be confirmed") otherwise.
 *        anything else: its class (outcome.h).
 * Why look first: most removals in a fleet find the member already gone (the
 * first host removed it); a GET that answers 404 under a proven read
 * settles them with one request and never sends a DELETE whose 404 would
 * need two more to confirm. A removal that finds the member costs one GET
 * more than a bare DELETE (bench/RESULTS.md has the figures).
 *
 * A user entry that gives an email instead of an id is recorded with that
 * email (and keyed by it, queue.h); before step 1 the email is resolved to
 * the member's user id (members.h: the cache of resolved emails, else the
 * member list, every page), and the id goes into the entry. No member with
 * that email holds the entry (the person may have left already; a person
 * decides), a list that cannot be read now leaves it pending: never
 * dropped. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "fingerprint.h"
#include "helper.h"
#include "hooknote.h"
#include "members.h"
#include "remove.h"

ps_client_t *ps_ctx_client(ps_ctx_t *ctx, char *err, size_t errlen)
{
    if(!ctx->client) {
        ctx->client = ps_client_new(ctx->cfg, err, errlen);
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
    memset(ctx->readable, 0, sizeof(ctx->readable));
}

static void audit_map(const ps_ctx_t *ctx, const char *trigger, ps_status_t st,
                      const ps_mapping_t *m, long http, const char *detail)
{
    const ps_outcome_row_t *row = ps_outcome(st);

    ps_audit(ctx->log, row->priority, row->audit, trigger && trigger[0] ? trigger : ctx->trigger,
             m->login, m->organization, m->id, m->delete_passwords, m->delete_service_tokens, http,
             detail);
}

void ps_entry_from_map(ps_qentry_t *e, const ps_mapping_t *m, const char *trigger)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->login, sizeof(e->login), "%s", m->login);
    snprintf(e->organization, sizeof(e->organization), "%s", m->organization);
    snprintf(e->id, sizeof(e->id), "%s", m->id ? m->id : "");
    snprintf(e->email, sizeof(e->email), "%s", m->email ? m->email : "");
    e->delete_passwords = m->delete_passwords;
    e->delete_service_tokens = m->delete_service_tokens;
    e->recorded = (long long)time(NULL);
    snprintf(e->trigger, sizeof(e->trigger), "%s", trigger ? trigger : "");
    ps_queue_entry_name(e, e->name);
}

static void map_from_entry(ps_mapping_t *m, const ps_qentry_t *e)
{
    m->login = e->login;
    m->organization = e->organization;
    m->id = e->id;
    m->email = e->email[0] ? e->email : NULL;
    m->delete_passwords = e->delete_passwords;
    m->delete_service_tokens = e->delete_service_tokens;
}

/* The answer in words; the API's message is escaped here, once, since the
 * server controls it (messages stay printable wherever they go). */
static void describe_result(const char *what, const ps_result_t *r, char *out, size_t outlen)
{
    char msg[sizeof(r->message)];

    ps_escape(r->message, msg, sizeof(msg));
    if(r->http_status > 0 && msg[0])
        snprintf(out, outlen, "%s: HTTP %ld: %.400s", what, r->http_status, msg);
    else if(r->http_status > 0)
        snprintf(out, outlen, "%s: HTTP %ld", what, r->http_status);
    else
        snprintf(out, outlen, "%s: %.440s", what, msg[0] ? msg : "no answer");
}

/* ------------------------------------------------------------ protocol */

typedef struct proto {
    ps_ctx_t *ctx;
    ps_client_t *client;
    const ps_mapping_t *m;
    int once;       /* one request per step: the drain paces and handles 429s */
    int requests;   /* requests made */
    ps_result_t *r; /* the decisive answer */
    char why[512];  /* the reason, for the report and a held entry */
} proto_t;

static int readable_known(const ps_ctx_t *ctx, const char *org)
{
    size_t i;

    for(i = 0; i < PS_PROBE_SLOTS; i++)
        if(ctx->readable[i].at > 0 && strcmp(ctx->readable[i].organization, org) == 0 &&
           ps_now() - ctx->readable[i].at < PS_PROBE_TTL)
            return 1;
    return 0;
}

/* Remembers that this credential read ORG (a probe, or a GET that returned
 * a member of it), replacing the oldest slot. */
static void readable_seen(ps_ctx_t *ctx, const char *org)
{
    size_t i, slot = 0;

    for(i = 0; i < PS_PROBE_SLOTS; i++) {
        if(strcmp(ctx->readable[i].organization, org) == 0) {
            slot = i;
            break;
        }
        if(ctx->readable[i].at < ctx->readable[slot].at)
            slot = i;
    }
    snprintf(ctx->readable[slot].organization, sizeof(ctx->readable[slot].organization), "%s", org);
    ctx->readable[slot].at = ps_now();
}

/* Counts the requests an answer took (a call with retries may make several). */
static void count(proto_t *p, const ps_result_t *r)
{
    p->requests += r->attempts > 0 ? r->attempts : 1;
}

static ps_outcome_t get_member(proto_t *p)
{
    ps_member_t mem;
    ps_outcome_t o;

    o = p->once ? ps_client_get_member_once(p->client, p->m->organization, p->m->id,
                                            p->ctx->deadline, &mem, p->r)
                : ps_client_get_member(p->client, p->m->organization, p->m->id, p->ctx->deadline,
                                       &mem, p->r);
    count(p, p->r);
    return o;
}

/* Can this credential read the organization's member list? 1 yes, 0 no
 * (why says so), -1 the answer was transient or a configuration problem
 * (*v set). */
static int can_read(proto_t *p, ps_verdict_t *v)
{
    ps_result_t pr;
    ps_outcome_t o;
    char what[128];

    if(readable_known(p->ctx, p->m->organization))
        return 1;
    memset(&pr, 0, sizeof(pr));
    p->requests++;
    o = p->once ? ps_client_probe_members_once(p->client, p->m->organization, p->ctx->deadline, &pr)
                : ps_client_probe_members(p->client, p->m->organization, p->ctx->deadline, &pr);
    if(o == PS_OUT_OK) {
        readable_seen(p->ctx, p->m->organization);
        return 1;
    }
    snprintf(what, sizeof(what), "reading the member list of %s", p->m->organization);
    describe_result(what, &pr, p->why, sizeof(p->why));
    if(o == PS_OUT_TRANSIENT || o == PS_OUT_CONFIG) {
        *p->r = pr;
        *v = o == PS_OUT_TRANSIENT ? PS_V_TRANSIENT : PS_V_CONFIG;
        return -1;
    }
    return 0;
}

static ps_verdict_t unconfirmed(proto_t *p, const char *cause)
{
    char cannot[512];

    snprintf(cannot, sizeof(cannot), "%s", p->why);
    snprintf(p->why, sizeof(p->why),
             "%s answered 404, which could not be confirmed: the credential cannot read the "
             "member list of %s (%.300s); give the token read_organization",
             cause, p->m->organization, cannot);
    return PS_V_REFUSED;
}

static ps_verdict_t delete_member(proto_t *p, int read_proven)
{
    ps_outcome_t o;
    ps_verdict_t v;
    int rc;

    o = p->once ? ps_client_delete_once(p->client, p->m, p->r)
                : ps_client_remove(p->client, p->m, p->ctx->deadline, p->r);
    count(p, p->r);
    if(o != PS_OUT_ABSENT) {
        v = ps_verdict_of_answer(o);
        if(v != PS_V_REMOVED)
            describe_result("DELETE", p->r, p->why, sizeof(p->why));
        return v;
    }
    /* 404 to the DELETE: gone meanwhile, or no write_organization */
    o = get_member(p);
    if(o == PS_OUT_OK) {
        readable_seen(p->ctx, p->m->organization);
        snprintf(p->why, sizeof(p->why),
                 "DELETE answered 404 but the member is still listed: the credential lacks "
                 "write_organization on %s",
                 p->m->organization);
        return PS_V_REFUSED;
    }
    if(o != PS_OUT_ABSENT) {
        describe_result("GET after a DELETE 404", p->r, p->why, sizeof(p->why));
        return ps_verdict_of_answer(o);
    }
    if(read_proven)
        return PS_V_ABSENT;
    rc = can_read(p, &v);
    if(rc < 0)
        return v;
    return rc ? PS_V_ABSENT : unconfirmed(p, "DELETE");
}

/* The protocol of the header comment. Returns the verdict; p->r holds the
 * decisive answer, p->why the reason of anything but REMOVED/ABSENT. */
static ps_verdict_t run_protocol(proto_t *p)
{
    ps_outcome_t o;
    ps_verdict_t v;
    int rc;

    o = get_member(p);
    switch(o) {
    case PS_OUT_OK: readable_seen(p->ctx, p->m->organization); return delete_member(p, 1);
    case PS_OUT_ABSENT:
        rc = can_read(p, &v);
        if(rc < 0)
            return v;
        if(rc)
            return PS_V_ABSENT;
        return delete_member(p, 0);
    case PS_OUT_REFUSED:
        if(p->r->http_status == 401)
            break;
        return delete_member(p, 0); /* 403: cannot read; the DELETE may still work */
    default: break;
    }
    describe_result("GET", p->r, p->why, sizeof(p->why));
    return ps_verdict_of_answer(o);
}

/* ------------------------------------------------------------ email */

ps_outcome_t ps_ctx_resolve_email(ps_ctx_t *ctx, const char *org, const char *email, int once,
                                  char id_out[PS_ID_MAX + 1], int *from_cache, ps_result_t *r)
{
    char err[512];
    ps_client_t *c;
    ps_outcome_t out;

    out = ps_resolve_email(NULL, ctx->cfg->queue_dir, org, email, ctx->deadline, 0, id_out,
                           from_cache, r);
    if(out != PS_OUT_TRANSIENT || r->attempts)
        return out;
    /* not cached: now the client */
    c = ps_ctx_client(ctx, err, sizeof(err));
    if(!c) {
        memset(r, 0, sizeof(*r));
        r->retry_after = -1;
        snprintf(r->message, sizeof(r->message), "%.500s", err);
        return r->outcome = PS_OUT_CONFIG;
    }
    return ps_resolve_email(c, ctx->cfg->queue_dir, org, email, ctx->deadline,
                            once ? 0 : PS_RESOLVE_RETRY, id_out, from_cache, r);
}

/* An entry whose email is not resolved yet: its user id, into e->id (and
 * so into the spool with the entry's next update). 0 when e->id is set;
 * -1 with the verdict in *v and the reason in p->why. */
static int resolve_entry_email(proto_t *p, ps_qentry_t *e, ps_verdict_t *v)
{
    char id[PS_ID_MAX + 1], what[PS_EMAIL_MAX + 64];
    ps_outcome_t o;

    o = ps_ctx_resolve_email(p->ctx, e->organization, e->email, p->once, id, NULL, p->r);
    p->requests += p->r->attempts;
    if(o == PS_OUT_OK) {
        memcpy(e->id, id, sizeof(id));
        return 0;
    }
    snprintf(what, sizeof(what), "resolving the email %s", e->email);
    describe_result(what, p->r, p->why, sizeof(p->why));
    switch(o) {
    case PS_OUT_ABSENT:
        snprintf(p->why, sizeof(p->why),
                 "no member of %s has the email %s (its whole member list was read): the "
                 "person may have left already; otherwise fix the map, then `retry --held`",
                 e->organization, e->email);
        *v = PS_V_REFUSED;
        break;
    case PS_OUT_TRANSIENT: *v = PS_V_TRANSIENT; break;
    case PS_OUT_CONFIG: *v = PS_V_CONFIG; break;
    default: *v = PS_V_REFUSED; break; /* the list is not readable, or two members share it */
    }
    return -1;
}

/* ------------------------------------------------------------ settle */

/* Applies the outcome table's spool action for status st to entry e (when
 * it is in the spool: e->name set), writes the one audit line, and fills
 * rep. Returns st. */
static ps_status_t settle(ps_ctx_t *ctx, ps_qentry_t *e, ps_status_t st, long http, const char *why,
                          ps_report_t *rep)
{
    const ps_outcome_row_t *row = ps_outcome(st);
    ps_mapping_t m;
    char err[512];
    ps_queue_t *q = ctx->queue;
    int recorded = q && e->name[0];

    map_from_entry(&m, e);
    rep->status = st;
    rep->http_status = http;
    if(why && why[0])
        snprintf(rep->message, sizeof(rep->message), "%s", why);
    if(row->spool == PS_SPOOL_SETTLE) {
        /* the audit line first: whoever sees the entry gone finds the line */
        audit_map(ctx, e->trigger, st, &m, http, NULL);
        if(recorded && ps_queue_done(q, e->name, err, sizeof(err)) != 0)
            ps_logf(ctx->log, LOG_ERR,
                    "%s (the member is removed; the entry stays until a retry "
                    "confirms it again)",
                    err);
    } else if(recorded && (row->spool == PS_SPOOL_PENDING || row->spool == PS_SPOOL_HOLD)) {
        snprintf(e->last_error, sizeof(e->last_error), "%.255s", rep->message);
        if(row->spool == PS_SPOOL_HOLD) {
            e->state = PS_Q_HELD;
            e->held_at = (long long)time(NULL);
            ps_config_fingerprint(ctx->cfg, e->held_config);
        } else {
            e->state = PS_Q_PENDING;
            e->held_at = 0;
            e->held_config[0] = '\0';
        }
        if(ps_queue_put(q, e, err, sizeof(err)) != 0)
            ps_logf(ctx->log, LOG_ERR,
                    "could not update the spool entry: %s (the previous version of the "
                    "entry is kept)",
                    err);
    }
    if(row->spool != PS_SPOOL_SETTLE)
        audit_map(ctx, e->trigger, st, &m, http, rep->message);
    return st;
}

ps_status_t ps_send_entry(ps_ctx_t *ctx, ps_qentry_t *e, int once, ps_report_t *rep,
                          ps_result_t *res)
{
    char err[512];
    ps_mapping_t m;
    ps_result_t localres;
    proto_t p;
    ps_verdict_t v;
    int recorded = ctx->queue && e->name[0];

    map_from_entry(&m, e);
    if(!rep->mapped) {
        /* points into *e: valid as long as the caller's entry is */
        rep->map = m;
        rep->mapped = 1;
    }
    memset(&p, 0, sizeof(p));
    p.ctx = ctx;
    p.m = &m;
    p.once = once;
    p.r = res ? res : &localres;
    memset(p.r, 0, sizeof(*p.r));

    if(!ctx->cfg->auth_header) {
        snprintf(p.why, sizeof(p.why),
                 "no API credential configured: set api.token_id and api.token, "
                 "api.token_file or api.oauth_token");
        return settle(ctx, e, ps_outcome_status(PS_V_CONFIG, recorded), 0, p.why, rep);
    }
    if(!e->id[0] && resolve_entry_email(&p, e, &v) != 0) {
        rep->attempts = p.requests;
        if(p.requests > 0) {
            e->attempts += p.requests;
            e->last_attempt = (long long)time(NULL);
            if(!e->first_attempt)
                e->first_attempt = e->last_attempt;
        }
        return settle(ctx, e, ps_outcome_status(v, recorded), p.r->http_status, p.why, rep);
    }
    if(!rep->map.id) {
        /* the caller's mapping of an email: the id just resolved */
        snprintf(rep->id_buf, sizeof(rep->id_buf), "%s", e->id);
        rep->map.id = rep->id_buf;
    }
    p.client = ps_ctx_client(ctx, err, sizeof(err));
    if(!p.client)
        return settle(ctx, e, ps_outcome_status(PS_V_CONFIG, recorded), 0, err, rep);

    v = run_protocol(&p);

    rep->attempts = p.requests;
    e->attempts += p.requests;
    e->last_attempt = (long long)time(NULL);
    if(!e->first_attempt)
        e->first_attempt = e->last_attempt;
    return settle(ctx, e, ps_outcome_status(v, recorded), p.r->http_status, p.why, rep);
}

/* ------------------------------------------------------------ remove */

/* Write-ahead: record the request; returns 0 when it is in the spool. */
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

/* The spool could not keep the request (full disk, permissions): say so
 * loudly, then still try to send it now, since the API answering is the
 * only other way not to lose it. */
static ps_status_t send_unrecorded(ps_ctx_t *ctx, const char *login, ps_qentry_t *e,
                                   const char *qerr, ps_report_t *rep)
{
    char elogin[PS_LOGIN_MAX * 4 + 8];
    ps_status_t rc;

    ps_logf(ctx->log, LOG_ERR, "cannot record the removal of %s in the spool: %s",
            ps_escape(login, elogin, sizeof(elogin)), qerr);
    e->name[0] = '\0';
    rc = ps_send_entry(ctx, e, 0, rep, NULL);
    if(rc == PS_ST_REMOVED || rc == PS_ST_ABSENT) {
        snprintf(rep->message, sizeof(rep->message),
                 "sent although it could not be recorded in the spool (%.400s)", qerr);
        return rc;
    }
    snprintf(rep->message + strlen(rep->message), sizeof(rep->message) - strlen(rep->message),
             "; NOT recorded in the spool: %.200s", qerr);
    return rep->status = PS_ST_ERROR;
}

/* Takes over what an earlier request for the same key left: the history of
 * a live entry (a held one is sent again: asking again is the person's
 * answer), or a dead letter brought back. */
static void merge_history(ps_ctx_t *ctx, ps_qentry_t *e)
{
    ps_qentry_t old;
    char err[512];

    int revived = ps_queue_revive(ctx->queue, e->name, err, sizeof(err));

    if(revived < 0)
        ps_logf(ctx->log, LOG_ERR, "%s", err);
    else if(ps_queue_read(ctx->queue, e->name, &old, err, sizeof(err)) == 0) {
        e->recorded = old.recorded;
        e->attempts = old.attempts;
        e->last_attempt = old.last_attempt;
        snprintf(e->last_error, sizeof(e->last_error), "%s", old.last_error);
        /* a revived dead letter starts aging again from its next attempt */
        e->first_attempt = revived == 0 ? 0 : old.first_attempt;
    }
}

/* A hook while the API did not answer another hook a moment ago
 * (hooknote.h): the recorded entry stays pending, unsent, for the sender or
 * the retry timer. 1 when so (rep filled, audit line written). */
static int hook_leaves_pending(ps_ctx_t *ctx, ps_qentry_t *e, ps_report_t *rep)
{
    char reason[512], why[512];
    long long at = 0;
    const char *dir = ps_queue_dir(ctx->queue);

    if(!ctx->cfg->auth_header || !ps_hook_note_fresh(dir, ctx->cfg->api_url, PS_HOOK_NOTE_WINDOW,
                                                     &at, reason, sizeof(reason)))
        return 0;
    snprintf(why, sizeof(why),
             "not sent: the API did not answer another removal %lld s ago (%.300s); "
             "left pending for the retry timer",
             (long long)time(NULL) - at < 0 ? 0 : (long long)time(NULL) - at, reason);
    settle(ctx, e, PS_ST_QUEUED, 0, why, rep);
    return 1;
}

/* What a hook's removal tells the hooks after it: pending means the API did
 * not complete it within the hook's wait (note it), done means it answers
 * (forget the note). */
static void hook_note_outcome(ps_ctx_t *ctx, const ps_report_t *rep)
{
    if(rep->status == PS_ST_QUEUED)
        ps_hook_note_write(ps_queue_dir(ctx->queue), ctx->cfg->api_url, rep->message, ctx->log);
    else if(rep->status == PS_ST_REMOVED || rep->status == PS_ST_ABSENT)
        ps_hook_note_clear(ps_queue_dir(ctx->queue));
}

ps_status_t ps_map_login(const ps_config_t *cfg, const char *login, ps_report_t *rep)
{
    char elogin[PS_LOGIN_MAX * 4 + 8];
    int rc;

    memset(rep, 0, sizeof(*rep));
    if(!ps_login_valid(login)) {
        ps_escape(login, elogin, sizeof(elogin));
        snprintf(rep->message, sizeof(rep->message),
                 "invalid login name \"%.300s\": expected 1 to %d characters, no control "
                 "characters, spaces, '/', ':' or '\\', not starting with '-'",
                 elogin, PS_LOGIN_MAX);
        return rep->status = PS_ST_INVALID;
    }
    rc = ps_config_map(cfg, login, &rep->map);
    if(rc == 1) {
        int strict = cfg->unmapped == PS_UNMAPPED_ERROR;

        snprintf(rep->message, sizeof(rep->message), "not in the map%s",
                 strict ? " (unmapped = \"error\")" : ", ignored");
        return rep->status = strict ? PS_ST_UNKNOWN : PS_ST_UNMAPPED;
    }
    if(rc < 0) {
        snprintf(rep->message, sizeof(rep->message),
                 "no organization: set one for this user or a default organization");
        return rep->status = PS_ST_CONFIG;
    }
    rep->mapped = 1;
    return rep->status = PS_ST_DRYRUN;
}

ps_status_t ps_resolve_login(const ps_config_t *cfg, const ps_log_t *lg, const char *trigger,
                             const char *login, ps_report_t *rep)
{
    ps_status_t st = ps_map_login(cfg, login, rep);
    const ps_outcome_row_t *row = ps_outcome(st);

    if(st != PS_ST_DRYRUN)
        ps_audit(lg, row->priority, row->audit, trigger, login, NULL,
                 st == PS_ST_CONFIG ? rep->map.id : NULL, -1, -1, 0,
                 st == PS_ST_UNMAPPED ? NULL : rep->message);
    return st;
}

/* A uniform number of seconds in [0, spread), from getrandom (the middle
 * when no randomness is available yet: early boot). */
static long long spread_delay(double spread)
{
    uint64_t v;
    double u = 0.5;

    if(getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t)sizeof(v))
        u = (double)(v >> 11) * (1.0 / 9007199254740992.0); /* 2^-53 */
    return (long long)(u * spread);
}

/* api.spread: the entry is recorded (e->not_before set before the write),
 * nothing is sent; `retry` makes its first attempt at not_before. */
static ps_status_t scheduled(ps_ctx_t *ctx, const ps_qentry_t *e, ps_report_t *rep)
{
    char when[32];
    time_t t = (time_t)e->not_before;
    struct tm tm;

    if(!gmtime_r(&t, &tm) || !strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(when, sizeof(when), "%lld", e->not_before);
    snprintf(rep->message, sizeof(rep->message),
             "recorded; first attempt at %s (api.spread = %g s), sent by retry", when, ctx->spread);
    audit_map(ctx, ctx->trigger, PS_ST_SCHEDULED, &rep->map, 0, rep->message);
    return rep->status = PS_ST_SCHEDULED;
}

ps_status_t ps_remove_login(ps_ctx_t *ctx, const char *login, ps_report_t *rep)
{
    char err[512];
    ps_qentry_t e;
    ps_status_t st;
    int rc, fd = -1;

    st = ps_resolve_login(ctx->cfg, ctx->log, ctx->trigger, login, rep);
    if(st == PS_ST_DRYRUN && ctx->dry_run && !rep->map.id) {
        /* an email: its id when the cache has it (a dry run sends nothing) */
        ps_result_t r;

        if(ps_resolve_email(NULL, ctx->cfg->queue_dir, rep->map.organization, rep->map.email, 0, 0,
                            rep->id_buf, NULL, &r) == PS_OUT_OK)
            rep->map.id = rep->id_buf;
    }
    if(st != PS_ST_DRYRUN || ctx->dry_run)
        return st;

    ps_entry_from_map(&e, &rep->map, ctx->trigger);
    if(ctx->no_queue) {
        e.name[0] = '\0';
        return ps_send_entry(ctx, &e, 0, rep, NULL);
    }

    /* Hold the key's lock from before the entry is written until it is
     * settled: nobody else sends this request meanwhile. */
    rc = -1;
    if(ps_ctx_queue(ctx, err, sizeof(err)))
        rc = ps_queue_lock_key(ctx->queue, e.name, lock_wait(ctx), &fd, err, sizeof(err));
    if(rc == 1) {
        snprintf(rep->message, sizeof(rep->message),
                 "being sent by another process; kept in the spool");
        audit_map(ctx, ctx->trigger, PS_ST_QUEUED, &rep->map, 0, rep->message);
        return rep->status = PS_ST_QUEUED;
    }
    if(rc == 0) {
        merge_history(ctx, &e);
        if(ctx->spread > 0)
            e.not_before = (long long)time(NULL) + spread_delay(ctx->spread);
        rc = record(ctx, &e, err, sizeof(err));
    }
    if(rc != 0) {
        ps_queue_unlock(fd);
        return send_unrecorded(ctx, login, &e, err, rep);
    }
    if(e.not_before > 0) {
        ps_queue_unlock(fd);
        return scheduled(ctx, &e, rep);
    }
    if(ctx->hook && hook_leaves_pending(ctx, &e, rep)) {
        ps_queue_unlock(fd);
        return rep->status;
    }
    /* A running sender has a warm connection: give it the recorded entry
     * and its lock. When there is none, or it declines, send it here. */
    if(!ctx->cfg->auth_header || !ctx->handoff || ctx->handoff(ctx, fd, &e, rep) != 0)
        ps_send_entry(ctx, &e, 0, rep, NULL);
    if(ctx->hook)
        hook_note_outcome(ctx, rep);
    ps_queue_unlock(fd);
    return rep->status;
}
