/* unresolved.c - removals asked for while the configuration could not be
 * loaded; see unresolved.h. The records are a record directory (recdir.h),
 * like the spool: every file operation after the directory is opened goes
 * through its descriptor (O_NOFOLLOW). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* renameat2 */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <shadow.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "helper.h"
#include "jsonstrict.h"
#include "recdir.h"
#include "unresolved.h"

#define U_MAX           4096 /* a record larger than this is invalid */
#define U_SUFFIX        ".json"
#define U_SOURCE_REMOVE "remove"
#define U_SOURCE_PAM    "pam"
#define U_LOCK_WAIT     5.0 /* seconds a second `retry` waits for the first */

#define seterr ps_seterr

const char *ps_unresolved_dir(void)
{
    const char *d = getenv(PS_UNRESOLVED_ENV);

    return d && d[0] == '/' && strlen(d) < PS_UNRESOLVED_PATH_MAX - 64 ? d : PS_UNRESOLVED_DIR;
}

void ps_unresolved_config_key(const char *path, char *out)
{
    char *rp;

    if(!path)
        path = PS_DEFAULT_CONFIG;
    rp = realpath(path, NULL);
    snprintf(out, PS_UNRESOLVED_PATH_MAX, "%s",
             rp && strlen(rp) < PS_UNRESOLVED_PATH_MAX ? rp : path);
    free(rp);
}

/* A config path we keep: absolute, printable ASCII, fits. */
static int config_ok(const char *p)
{
    const unsigned char *c;

    if(p[0] != '/' || strlen(p) >= PS_UNRESOLVED_PATH_MAX)
        return 0;
    for(c = (const unsigned char *)p; *c; c++)
        if(*c < 0x20 || *c >= 0x7f)
            return 0;
    return 1;
}

/* A PAM service name we keep: empty (the command) or like a login. */
static int service_ok(const char *s)
{
    return !s[0] || ps_login_valid(s);
}

static int mode_ok(const char *m)
{
    return !strcmp(m, PS_MODE_SERVICE) || !strcmp(m, PS_MODE_EXPIRED) || !strcmp(m, PS_MODE_CLOSE);
}

#define U_MAX_SLOTS 100 /* KEY.json, KEY-1.json ... KEY-99.json */

/* The name of slot n (0: "KEY.json", n: "KEY-n.json") for u's content. */
static void record_name_n(const ps_unresolved_t *u, int n, char out[32])
{
    char key[17], src[PS_LOGIN_MAX + 32];

    snprintf(src, sizeof(src), "%s:%s", u->mode, u->service);
    ps_key_hex(u->login, u->config, src, key);
    if(n == 0)
        snprintf(out, 32, "%s" U_SUFFIX, key);
    else
        snprintf(out, 32, "%s-%d" U_SUFFIX, key, n);
}

static void record_name(const ps_unresolved_t *u, char out[32])
{
    record_name_n(u, 0, out);
}

/* 1 when `name` is one of the names u's content may have. */
static int name_fits(const ps_unresolved_t *u, const char *name)
{
    char want[32];
    char *end;
    long n = 0;
    size_t klen = 16;

    record_name(u, want);
    if(strcmp(name, want) == 0)
        return 1;
    if(strncmp(name, want, klen) != 0 || name[klen] != '-')
        return 0;
    n = strtol(name + klen + 1, &end, 10);
    return n >= 1 && n < U_MAX_SLOTS && end != name + klen + 1 && name[klen + 1] != '0' &&
           strcmp(end, U_SUFFIX) == 0;
}

/* Same request: what identifies a record, whatever its name. */
static int same_request(const ps_unresolved_t *a, const ps_unresolved_t *b)
{
    return !strcmp(a->login, b->login) && !strcmp(a->config, b->config) &&
           !strcmp(a->service, b->service) && !strcmp(a->mode, b->mode);
}

int ps_account_state(const char *login, long long *uid)
{
    struct passwd pw, *res = NULL;
    char buf[16384];
    int rc;

    *uid = -1;
    rc = getpwnam_r(login, &pw, buf, sizeof(buf), &res);
    if(rc != 0)
        return -1; /* ENOENT, EIO, ...: a lookup error, never "absent" */
    if(!res)
        return PS_ACCOUNT_ABSENT;
    *uid = (long long)res->pw_uid;
    return PS_ACCOUNT_PRESENT;
}

long long ps_account_expire(const char *login)
{
    struct spwd *sp;

    /* getspnam, not getspnam_r: the command is single-threaded, and the
     * tests' nss_wrapper answers getspnam only */
    errno = 0;
    sp = getspnam(login);
    if(!sp)
        return errno == 0 || errno == ENOENT ? -1 : -2;
    return sp->sp_expire;
}

/* Opens dir (creating it and its parent 0700 when `create`), checked like
 * the spool directory. Returns the descriptor, -2 when it does not exist
 * and !create, or -1 with err. */
static int open_dir(const char *dir, int create, char *err, size_t errlen)
{
    return ps_recdir_open(dir, create ? 2 : 0, err, errlen);
}

static int record_cb(void *arg, const char *name, const char *buf, size_t len, void *out, char *why,
                     size_t whylen);

/* Reads and checks one record; 0, 1 invalid (why), 2 vanished, -1 this
 * process could not read it (why). */
static int read_record(int dfd, const char *name, ps_unresolved_t *u, char *why, size_t whylen)
{
    return ps_recdir_read(dfd, name, U_MAX, record_cb, NULL, u, why, whylen);
}

static char *format_record(const ps_unresolved_t *u)
{
    json_object *o = json_object_new_object();
    const char *s;
    char *out = NULL;

    if(!o)
        return NULL;
    json_object_object_add(o, "version", json_object_new_int(2));
    json_object_object_add(o, "login", json_object_new_string(u->login));
    json_object_object_add(o, "config", json_object_new_string(u->config));
    json_object_object_add(o, "source",
                           json_object_new_string(u->mode[0] ? U_SOURCE_PAM : U_SOURCE_REMOVE));
    if(u->mode[0]) {
        json_object_object_add(o, "service", json_object_new_string(u->service));
        json_object_object_add(o, "mode", json_object_new_string(u->mode));
    }
    json_object_object_add(o, "recorded", json_object_new_int64(u->recorded));
    json_object_object_add(o, "account",
                           json_object_new_string(u->account == PS_ACCOUNT_PRESENT  ? "present"
                                                  : u->account == PS_ACCOUNT_ABSENT ? "absent"
                                                                                    : "unknown"));
    json_object_object_add(o, "uid", json_object_new_int64(u->uid));
    json_object_object_add(o, "expire", json_object_new_int64(u->expire));
    json_object_object_add(o, "held_at", json_object_new_int64(u->held_at));
    json_object_object_add(o, "held_reason", json_object_new_string(u->held_reason));
    s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if(s && asprintf(&out, "%s\n", s) < 0)
        out = NULL;
    json_object_put(o);
    return out;
}

int ps_unresolved_parse(const char *buf, size_t len, ps_unresolved_t *out, char *err, size_t errlen)
{
    json_object *root = NULL;
    ps_unresolved_t u;
    char source[16] = "", account[16] = "";
    int seen_version = 0, seen_recorded = 0, seen_v2 = 0, rv = -1;

    memset(&u, 0, sizeof(u));
    u.uid = -1;
    u.expire = -1;
    if(!buf || len > U_MAX || memchr(buf, '\0', len)) {
        seterr(err, errlen, "empty, larger than %d bytes or holds a NUL byte", U_MAX);
        return -1;
    }
    root = ps_json_object(buf, len, 4, err, errlen);
    if(!root)
        goto out;
    {
        json_object_object_foreach(root, key, val)
        {
            if(!strcmp(key, "version")) {
                int64_t v =
                    json_object_is_type(val, json_type_int) ? json_object_get_int64(val) : 0;

                if(v != 1 && v != 2) {
                    seterr(err, errlen, "unsupported \"version\" (expected 1 or 2)");
                    goto out;
                }
                seen_version = (int)v;
            } else if(!strcmp(key, "account")) {
                if(ps_json_str(val, key, account, sizeof(account), err, errlen))
                    goto out;
                seen_v2 |= 1;
            } else if(!strcmp(key, "uid") || !strcmp(key, "expire") || !strcmp(key, "held_at")) {
                int64_t t = json_object_get_int64(val);
                long long *dst = key[0] == 'u' ? &u.uid : key[0] == 'e' ? &u.expire : &u.held_at;

                if(!json_object_is_type(val, json_type_int) || t < (key[0] == 'h' ? 0 : -1) ||
                   t == INT64_MAX) {
                    seterr(err, errlen, "\"%s\" is not an integer in range", key);
                    goto out;
                }
                *dst = (long long)t;
                seen_v2 |= key[0] == 'u' ? 2 : key[0] == 'e' ? 4 : 8;
            } else if(!strcmp(key, "held_reason")) {
                if(ps_json_str(val, key, u.held_reason, sizeof(u.held_reason), err, errlen))
                    goto out;
                seen_v2 |= 16;
            } else if(!strcmp(key, "login")) {
                if(ps_json_str(val, key, u.login, sizeof(u.login), err, errlen))
                    goto out;
            } else if(!strcmp(key, "config")) {
                if(ps_json_str(val, key, u.config, sizeof(u.config), err, errlen))
                    goto out;
            } else if(!strcmp(key, "source")) {
                if(ps_json_str(val, key, source, sizeof(source), err, errlen))
                    goto out;
            } else if(!strcmp(key, "service")) {
                if(ps_json_str(val, key, u.service, sizeof(u.service), err, errlen))
                    goto out;
            } else if(!strcmp(key, "mode")) {
                if(ps_json_str(val, key, u.mode, sizeof(u.mode), err, errlen))
                    goto out;
            } else if(!strcmp(key, "recorded")) {
                int64_t t = json_object_get_int64(val);

                if(!json_object_is_type(val, json_type_int) || t <= 0 || t == INT64_MAX) {
                    seterr(err, errlen, "\"recorded\" is not a positive integer");
                    goto out;
                }
                u.recorded = (long long)t;
                seen_recorded = 1;
            } else {
                char esc[64];

                seterr(err, errlen, "unknown field \"%s\"", ps_escape(key, esc, sizeof(esc)));
                goto out;
            }
        }
    }
    if(!seen_version || !seen_recorded || !u.login[0] || !u.config[0] || !source[0]) {
        seterr(err, errlen,
               "missing field (version, login, config, source and recorded "
               "are required)");
        goto out;
    }
    if(!ps_login_valid(u.login)) {
        seterr(err, errlen, "\"login\" is not a valid login");
        goto out;
    }
    if((seen_version == 1 && seen_v2) || (seen_version == 2 && seen_v2 != 31)) {
        seterr(err, errlen,
               seen_version == 1 ? "a version 1 record with version 2 fields"
                                 : "missing field (account, uid, expire, held_at and held_reason "
                                   "are required in version 2)");
        goto out;
    }
    if(seen_version == 2) {
        if(!strcmp(account, "present"))
            u.account = PS_ACCOUNT_PRESENT;
        else if(!strcmp(account, "absent"))
            u.account = PS_ACCOUNT_ABSENT;
        else if(!strcmp(account, "unknown"))
            u.account = PS_ACCOUNT_UNKNOWN;
        else {
            seterr(err, errlen, "\"account\" is not present, absent or unknown");
            goto out;
        }
        if((u.account == PS_ACCOUNT_PRESENT) != (u.uid >= 0) ||
           (u.held_at > 0) != (u.held_reason[0] != '\0')) {
            seterr(err, errlen, "inconsistent account/uid or held_at/held_reason");
            goto out;
        }
    }
    if(!config_ok(u.config)) {
        seterr(err, errlen, "\"config\" is not an absolute printable path");
        goto out;
    }
    if(!strcmp(source, U_SOURCE_PAM)) {
        if(!mode_ok(u.mode) || !u.service[0] || !service_ok(u.service)) {
            seterr(err, errlen, "a \"pam\" record needs a valid \"service\" and \"mode\"");
            goto out;
        }
    } else if(!strcmp(source, U_SOURCE_REMOVE)) {
        if(u.mode[0] || u.service[0]) {
            seterr(err, errlen, "a \"remove\" record has no \"service\" or \"mode\"");
            goto out;
        }
    } else {
        seterr(err, errlen, "unknown \"source\" (expected remove or pam)");
        goto out;
    }
    record_name(&u, u.name);
    *out = u;
    rv = 0;
out:
    json_object_put(root);
    return rv;
}

int ps_unresolved_record(const char *dir, ps_unresolved_t *u, char *err, size_t errlen)
{
    ps_unresolved_t old;
    char why[384];
    char *data = NULL;
    int dfd, rv = -1, slot, r, a;

    if(!ps_login_valid(u->login) || !config_ok(u->config) || !service_ok(u->service) ||
       (u->mode[0] && !mode_ok(u->mode)) || (!u->mode[0] && u->service[0])) {
        seterr(err, errlen, "%s: refusing to record an invalid login, path or service", dir);
        return -1;
    }
    if(u->recorded <= 0)
        u->recorded = (long long)time(NULL);
    /* the account as it is now: what resolution compares with */
    a = ps_account_state(u->login, &u->uid);
    u->account = a < 0 ? PS_ACCOUNT_UNKNOWN : a;
    u->expire = !strcmp(u->mode, PS_MODE_EXPIRED) ? ps_account_expire(u->login) : -1;
    if(u->expire < -1)
        u->expire = -1;
    u->held_at = 0;
    u->held_reason[0] = '\0';
    if((dfd = open_dir(dir, 1, err, errlen)) < 0)
        return -1;
    for(slot = 0;; slot++) {
        if(slot == U_MAX_SLOTS) {
            seterr(err, errlen, "%s: %d records share the name of this one; not recorded", dir,
                   U_MAX_SLOTS);
            goto out;
        }
        record_name_n(u, slot, u->name);
        r = read_record(dfd, u->name, &old, why, sizeof(why));
        if(r == 2)
            break; /* a free name */
        if(r < 0) {
            seterr(err, errlen, "%s/%s", dir, why);
            goto out;
        }
        if(r == 0 && same_request(&old, u)) {
            rv = 0; /* recorded before: keep the older time */
            goto out;
        }
        /* another request, or an unreadable file, under this name: the
         * next name; never overwrite what may be someone's removal */
    }
    if(!(data = format_record(u))) {
        seterr(err, errlen, "%s: out of memory", dir);
        goto out;
    }
    rv = ps_write_file_atomic(dfd, dir, u->name, data, err, errlen);
out:
    free(data);
    close(dfd);
    return rv;
}

/* A record's bytes, parsed strictly, under one of the names its content may
 * have (recdir's parse callback): its identity is its content. */
static int record_cb(void *arg, const char *name, const char *buf, size_t len, void *out, char *why,
                     size_t whylen)
{
    ps_unresolved_t *u = out;

    (void)arg;
    if(ps_unresolved_parse(buf, len, u, why, whylen) != 0)
        return -1;
    if(!name_fits(u, name)) {
        seterr(why, whylen, "name does not match its content (expected %s)", u->name);
        return -1;
    }
    snprintf(u->name, sizeof(u->name), "%s", name);
    return 0;
}

static int cmp_record(const void *a, const void *b)
{
    const ps_unresolved_t *x = a, *y = b;

    if(x->recorded != y->recorded)
        return x->recorded < y->recorded ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void count_invalid(void *arg, const char *name, const char *why)
{
    size_t *invalid = arg;

    (void)name;
    (void)why;
    if(invalid)
        (*invalid)++;
}

static int list_fd(int dfd, const char *dir, ps_unresolved_t **out, size_t *n, size_t *invalid,
                   char *err, size_t errlen)
{
    ps_recdir_list_opts_t o;
    void *list = NULL;
    int rv;

    memset(&o, 0, sizeof(o));
    o.suffix = U_SUFFIX;
    o.name_max = 32;
    o.max = U_MAX;
    o.size = sizeof(ps_unresolved_t);
    o.parse = record_cb;
    o.cmp = cmp_record;
    o.invalid_fd = -1; /* dir/invalid/ */
    o.on_invalid = count_invalid;
    o.invalid_arg = invalid;
    rv = ps_recdir_list(dfd, dir, &o, &list, n, err, errlen);
    *out = list;
    return rv;
}

int ps_unresolved_list(const char *dir, ps_unresolved_t **out, size_t *n, size_t *invalid,
                       char *err, size_t errlen)
{
    int dfd = open_dir(dir, 0, err, errlen), rv;

    *out = NULL;
    *n = 0;
    if(dfd == -2)
        return 0;
    if(dfd < 0)
        return -1;
    rv = list_fd(dfd, dir, out, n, invalid, err, errlen);
    close(dfd);
    return rv;
}

/* Takes the directory's lock (flock on the directory itself), waiting up
 * to U_LOCK_WAIT seconds. 0 locked, 1 busy or failed. */
static int lock_dir(int dfd)
{
    return ps_recdir_flock(dfd, ps_now() + U_LOCK_WAIT) == 0 ? 0 : 1;
}

static void drop_record(int dfd, const char *name)
{
    unlinkat(dfd, name, 0);
    ps_recdir_sync(dfd);
}

/* Rewrites the record as held with `why` (it stays, visible, never sent). */
static void hold_record(ps_ctx_t *ctx, int dfd, const char *dir, const ps_unresolved_t *u,
                        const char *why, ps_resolve_stats_t *st)
{
    ps_unresolved_t h = *u;
    char err[512], elogin[PS_LOGIN_MAX * 4 + 8];
    char *data;

    h.held_at = (long long)time(NULL);
    snprintf(h.held_reason, sizeof(h.held_reason), "%.255s", why);
    data = format_record(&h);
    if(!data || ps_write_file_atomic(dfd, dir, u->name, data, err, sizeof(err)) != 0)
        ps_logf(ctx->log, LOG_ERR, "%s: could not mark the record held: %s",
                ps_escape(u->login, elogin, sizeof(elogin)), data ? err : "out of memory");
    free(data);
    ps_audit(ctx->log, LOG_ERR, "held", u->mode[0] ? "pam" : "remove", u->login, NULL, NULL, -1, -1,
             0, why);
    st->held++;
}

/* Is the account in the state it was in when the login was recorded?
 * 0 yes; 1 no (held, why); -1 cannot tell now (NSS error: left for later);
 * 2 an only_expired record whose account is no longer expired; 3 one whose
 * expiry is not yet `grace` days past (the configuration's
 * expired_grace_days, which the helper could not read when it recorded the
 * login): left for a later retry, why says until when. */
static int account_unchanged(const ps_unresolved_t *u, long grace, char *why, size_t whylen)
{
    long long uid, expire;
    int now = ps_account_state(u->login, &uid);

    if(now < 0)
        return -1;
    if(now == PS_ACCOUNT_PRESENT && u->account != PS_ACCOUNT_PRESENT) {
        snprintf(why, whylen,
                 "the login exists again (uid %lld) although it was %s when the removal was "
                 "recorded: a reused name? Not sent; check who it is now, then `queue drop %s`",
                 uid, u->account == PS_ACCOUNT_ABSENT ? "absent" : "not known", u->name);
        return 1;
    }
    if(now == PS_ACCOUNT_PRESENT && uid != u->uid) {
        snprintf(why, whylen,
                 "the login now has uid %lld, not uid %lld as when the removal was recorded: "
                 "another account? Not sent; check who it is now, then `queue drop %s`",
                 uid, u->uid, u->name);
        return 1;
    }
    if(strcmp(u->mode, PS_MODE_EXPIRED) == 0 && now == PS_ACCOUNT_PRESENT) {
        expire = ps_account_expire(u->login);
        if(expire < -1)
            return -1;
        if(!ps_shadow_expired((long)expire, time(NULL)))
            return 2;
        if(!ps_shadow_due((long)expire, grace, time(NULL))) {
            snprintf(why, whylen,
                     "expired on day %lld (days since 1970), sent once expired_grace_days = %ld "
                     "days are past, from day %lld",
                     expire, grace, expire + grace);
            return 3;
        }
    }
    return 0;
}

/* One record for this configuration: 0 settled (queued, dropped or held),
 * 1 left for the next run. */
static int resolve_one(ps_ctx_t *ctx, int dfd, const char *dir, const ps_unresolved_t *u,
                       ps_resolve_stats_t *st)
{
    char elogin[PS_LOGIN_MAX * 4 + 8], esvc[PS_LOGIN_MAX * 4 + 8], err[1024], eerr[1200];
    char when[32], why[512];
    const char *trigger = u->mode[0] ? "pam" : "remove";
    ps_report_t rep;
    ps_qentry_t e, old;
    ps_queue_t *q;
    struct tm tm;
    time_t t = (time_t)u->recorded;
    int lfd, rc;

    if(u->held_at > 0) {
        st->held++;
        return 0;
    }
    ps_escape(u->login, elogin, sizeof(elogin));
    ps_escape(u->service, esvc, sizeof(esvc));
    if(!gmtime_r(&t, &tm) || !strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(when, sizeof(when), "%lld", u->recorded);
    if(!strcmp(u->mode, PS_MODE_SERVICE) && !ps_config_pam_service_allowed(ctx->cfg, u->service)) {
        ps_logf(ctx->log, LOG_NOTICE,
                "%s: recorded at %s by PAM service \"%s\" while the "
                "configuration could not be loaded; that service is not in pam_services: "
                "dropped",
                elogin, when, esvc);
        st->dropped++;
        drop_record(dfd, u->name);
        return 0;
    }
    rc = account_unchanged(u, ctx->cfg->expired_grace_days, why, sizeof(why));
    if(rc < 0) {
        ps_logf(ctx->log, LOG_ERR,
                "%s: recorded at %s; the account database does not answer now: left for the "
                "next retry",
                elogin, when);
        st->left++;
        return 1;
    }
    if(rc == 1) {
        hold_record(ctx, dfd, dir, u, why, st);
        return 0;
    }
    if(rc == 3) {
        ps_logf(ctx->log, LOG_INFO,
                "%s: recorded by only_expired at %s; %s: left for a later retry", elogin, when,
                why);
        st->left++;
        return 1;
    }
    if(rc == 2) {
        ps_audit(ctx->log, LOG_NOTICE, "cancelled", trigger, u->login, NULL, NULL, -1, -1, 0,
                 "recorded by only_expired while the configuration could not be loaded; the "
                 "account is no longer expired: dropped");
        st->dropped++;
        drop_record(dfd, u->name);
        return 0;
    }
    rc = ps_resolve_login(ctx->cfg, ctx->log, trigger, u->login, &rep);
    if(rc == PS_ST_UNMAPPED || rc == PS_ST_UNKNOWN) {
        st->dropped++;
        drop_record(dfd, u->name);
        return 0;
    }
    if(rc != PS_ST_DRYRUN) {
        ps_logf(ctx->log, LOG_ERR,
                "%s: recorded at %s while the configuration could not be "
                "loaded; still not resolvable (%s): left for the next retry",
                elogin, when, rep.message);
        st->left++;
        return 1;
    }
    if(!(q = ps_ctx_queue(ctx, err, sizeof(err)))) {
        ps_logf(ctx->log, LOG_ERR, "%s: NOT queued, left for the next retry: %s", elogin,
                ps_escape(err, eerr, sizeof(eerr)));
        st->left++;
        return 1;
    }
    ps_entry_from_map(&e, &rep.map, trigger);
    e.recorded = u->recorded; /* never sent yet: first_attempt stays 0 */
    snprintf(e.last_error, sizeof(e.last_error),
             "recorded while the configuration could not be loaded");
    rc = ps_queue_lock_key(q, e.name, 1.0, &lfd, err, sizeof(err));
    if(rc == 1) {
        /* another process is removing this very login now */
        st->left++;
        return 1;
    }
    if(rc == 0 && ps_queue_read(q, e.name, &old, err, sizeof(err)) == 0) {
        /* already waiting (asked for again since): keep its history */
        e = old;
    }
    if(rc != 0 || ps_queue_put(q, &e, err, sizeof(err)) != 0) {
        ps_logf(ctx->log, LOG_ERR, "%s: NOT queued, left for the next retry: %s", elogin,
                ps_escape(err, eerr, sizeof(eerr)));
        if(rc == 0)
            ps_queue_unlock(lfd);
        st->left++;
        return 1;
    }
    ps_queue_unlock(lfd);
    ps_audit(ctx->log, LOG_WARNING, "queued", trigger, e.login, e.organization, e.id,
             e.delete_passwords, e.delete_service_tokens, 0,
             "recorded while the configuration could not be loaded");
    st->queued++;
    drop_record(dfd, u->name);
    return 0;
}

int ps_unresolved_resolve(ps_ctx_t *ctx, const char *dir, ps_resolve_stats_t *st, char *err,
                          size_t errlen)
{
    ps_unresolved_t *list = NULL;
    char mine[PS_UNRESOLVED_PATH_MAX];
    size_t n = 0, i;
    int dfd, rv = -1;

    memset(st, 0, sizeof(*st));
    dfd = open_dir(dir, 0, err, errlen);
    if(dfd == -2)
        return 0;
    if(dfd < 0)
        return -1;
    if(lock_dir(dfd) != 0) {
        close(dfd);
        return 1;
    }
    if(list_fd(dfd, dir, &list, &n, &st->invalid, err, errlen) != 0)
        goto out;
    ps_unresolved_config_key(ctx->cfg->path, mine);
    for(i = 0; i < n; i++) {
        char theirs[PS_UNRESOLVED_PATH_MAX];

        ps_unresolved_config_key(list[i].config, theirs);
        if(strcmp(theirs, mine) != 0)
            st->other++;
        else
            resolve_one(ctx, dfd, dir, &list[i], st);
    }
    rv = 0;
out:
    free(list);
    close(dfd); /* releases the lock */
    return rv;
}

int ps_unresolved_drop(const char *dir, const char *name, ps_unresolved_t *u, char *err,
                       size_t errlen)
{
    char why[384];
    int dfd, rc;

    if(!name || name[0] == '.' || strchr(name, '/') || strlen(name) >= 32) {
        seterr(err, errlen, "not a record name: expected KEY.json as `queue` shows it");
        return -1;
    }
    dfd = open_dir(dir, 0, err, errlen);
    if(dfd == -2)
        return 2;
    if(dfd < 0)
        return -1;
    if(lock_dir(dfd) != 0) {
        seterr(err, errlen, "%s: a retry is resolving the records; try again", dir);
        close(dfd);
        return -1;
    }
    rc = read_record(dfd, name, u, why, sizeof(why));
    if(rc == 0) {
        if(unlinkat(dfd, name, 0) != 0) {
            seterr(err, errlen, "%s/%s: remove: %s", dir, name, strerror(errno));
            rc = -1;
        } else {
            ps_recdir_sync(dfd);
        }
    } else if(rc == 1) {
        seterr(err, errlen, "%s/%s: %s", dir, name, why);
        rc = -1;
    }
    close(dfd);
    return rc;
}
