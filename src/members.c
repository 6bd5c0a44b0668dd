/* members.c - the organizations of a configuration, what a list probe says
 * about its credential, the logins mapped to members, and emails resolved to
 * user ids with their cache in the spool. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "jsonstrict.h"
#include "members.h"
#include "queue.h"
#include "util.h"

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int ps_config_organizations(const ps_config_t *cfg, const char ***orgs, size_t *n)
{
    const char **v;
    size_t i, k = 0, out = 0;

    *orgs = NULL;
    *n = 0;
    v = malloc((cfg->nusers + 1) * sizeof(*v));
    if(!v)
        return -1;
    if(cfg->organization)
        v[k++] = cfg->organization;
    for(i = 0; i < cfg->nusers; i++) {
        if(cfg->users[i].organization)
            v[k++] = cfg->users[i].organization;
    }
    if(k) {
        qsort(v, k, sizeof(*v), str_ptr_cmp);
        for(i = 0; i < k; i++) {
            if(!out || strcmp(v[out - 1], v[i]) != 0)
                v[out++] = v[i];
        }
    }
    *orgs = v;
    *n = out;
    return 0;
}

void ps_online_explain(const char *org, ps_outcome_t o, const ps_result_t *r, char *out,
                       size_t outlen)
{
    char eorg[PS_ID_MAX * 4 + 8], emsg[sizeof(r->message) * 4];

    ps_escape(org, eorg, sizeof(eorg));
    ps_escape(r->message, emsg, sizeof(emsg));
    switch(o) {
    case PS_OUT_OK:
        snprintf(out, outlen, "the token can read the member list of %s (read_organization)", eorg);
        return;
    case PS_OUT_ABSENT:
        snprintf(out, outlen,
                 "the token cannot see organization %s or lacks read_organization (HTTP 404): "
                 "check the organization's name and the token's access",
                 eorg);
        return;
    case PS_OUT_REFUSED:
        if(r->http_status == 401)
            snprintf(out, outlen,
                     "the token is invalid: the API does not accept it (HTTP 401); check "
                     "api.token_id and api.token (or api.token_file, api.oauth_token)");
        else if(r->http_status == 403)
            snprintf(out, outlen,
                     "the token may not read the member list of %s: it lacks read_organization "
                     "(HTTP 403)",
                     eorg);
        else
            snprintf(out, outlen, "the API refused to list the members of %s (HTTP %ld): %.300s",
                     eorg, r->http_status, emsg);
        return;
    case PS_OUT_TRANSIENT:
        if(r->http_status > 0)
            snprintf(out, outlen, "the API is unavailable (HTTP %ld): %.300s", r->http_status,
                     emsg);
        else
            snprintf(out, outlen, "the API is unreachable: %.300s", emsg);
        return;
    case PS_OUT_CONFIG:
    case PS_OUT_REMOVED: break;
    }
    snprintf(out, outlen, "%.400s", emsg);
}

/* ------------------------------------------------------------ login index */

struct ps_login_index {
    const ps_user_t **by_id; /* users of the organization given by id, sorted by id */
    size_t nid;
    const ps_user_t **by_email; /* given by email, sorted by email ignoring ASCII case */
    size_t nemail;
};

static int ascii_casecmp(const char *a, const char *b)
{
    const unsigned char *x = (const unsigned char *)a;
    const unsigned char *y = (const unsigned char *)b;

    for(;; x++, y++) {
        int cx = *x >= 'A' && *x <= 'Z' ? *x - 'A' + 'a' : *x;
        int cy = *y >= 'A' && *y <= 'Z' ? *y - 'A' + 'a' : *y;

        if(cx != cy || !cx)
            return cx - cy;
    }
}

static const char *user_email(const ps_user_t *u)
{
    return u->email;
}

static int by_id_cmp(const void *a, const void *b)
{
    return strcmp((*(const ps_user_t *const *)a)->id, (*(const ps_user_t *const *)b)->id);
}

static int by_email_cmp(const void *a, const void *b)
{
    return ascii_casecmp(user_email(*(const ps_user_t *const *)a),
                         user_email(*(const ps_user_t *const *)b));
}

ps_login_index_t *ps_login_index_new(const ps_config_t *cfg, const char *org)
{
    ps_login_index_t *ix = calloc(1, sizeof(*ix));
    size_t i;

    if(!ix)
        return NULL;
    ix->by_id = malloc((cfg->nusers + 1) * sizeof(*ix->by_id));
    ix->by_email = malloc((cfg->nusers + 1) * sizeof(*ix->by_email));
    if(!ix->by_id || !ix->by_email) {
        ps_login_index_free(ix);
        return NULL;
    }
    for(i = 0; i < cfg->nusers; i++) {
        const ps_user_t *u = &cfg->users[i];
        const char *uorg = u->organization ? u->organization : cfg->organization;

        if(!uorg || strcmp(uorg, org) != 0)
            continue;
        if(u->id)
            ix->by_id[ix->nid++] = u;
        else if(user_email(u))
            ix->by_email[ix->nemail++] = u;
    }
    qsort(ix->by_id, ix->nid, sizeof(*ix->by_id), by_id_cmp);
    qsort(ix->by_email, ix->nemail, sizeof(*ix->by_email), by_email_cmp);
    return ix;
}

void ps_login_index_free(ps_login_index_t *ix)
{
    if(!ix)
        return;
    free(ix->by_id);
    free(ix->by_email);
    free(ix);
}

/* The first index in v[0..n) whose key is not below `key`. */
static size_t lower_bound(const ps_user_t **v, size_t n, const char *key, int email)
{
    size_t lo = 0, hi = n;

    while(lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = email ? ascii_casecmp(user_email(v[mid]), key) : strcmp(v[mid]->id, key);

        if(c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

size_t ps_login_index_find(const ps_login_index_t *ix, const ps_member_t *m, const char **logins,
                           size_t max)
{
    size_t i, n = 0;

    if(!ix || !m)
        return 0;
    for(i = lower_bound(ix->by_id, ix->nid, m->user_id, 0);
        i < ix->nid && !strcmp(ix->by_id[i]->id, m->user_id); i++) {
        if(n < max)
            logins[n] = ix->by_id[i]->login;
        n++;
    }
    if(m->email[0]) {
        for(i = lower_bound(ix->by_email, ix->nemail, m->email, 1);
            i < ix->nemail && !ascii_casecmp(user_email(ix->by_email[i]), m->email); i++) {
            if(n < max)
                logins[n] = ix->by_email[i]->login;
            n++;
        }
    }
    qsort(logins, n < max ? n : max, sizeof(*logins), str_cmp);
    return n;
}

/* ------------------------------------------------------------ email cache */

#define CACHE_PREFIX  ".email-"
#define CACHE_VERSION 1

void ps_email_cache_name(const char *org, const char *email, char out[32])
{
    char lower[PS_EMAIL_MAX + 1], key[17];
    size_t i;

    for(i = 0; email && email[i] && i < PS_EMAIL_MAX; i++)
        lower[i] = (char)(email[i] >= 'A' && email[i] <= 'Z' ? email[i] - 'A' + 'a' : email[i]);
    lower[i] = '\0';
    ps_key_hex(org ? org : "", lower, "email", key);
    snprintf(out, 32, "%s%s", CACHE_PREFIX, key);
}

/* The JSON object buf is, exactly (strict, nothing but whitespace after
 * it), or NULL. */
static json_object *parse_object(const char *buf, size_t len)
{
    if(!buf || !len || len > PS_EMAIL_CACHE_MAX)
        return NULL;
    return ps_json_object(buf, len, 8, NULL, 0);
}

/* A string field without NUL of at most max bytes, copied into dst. */
static int cache_str(json_object *v, char *dst, size_t max)
{
    const char *s;
    int len;

    if(!json_object_is_type(v, json_type_string))
        return -1;
    s = json_object_get_string(v);
    len = json_object_get_string_len(v);
    if(!s || len < 0 || (size_t)len != strlen(s) || (size_t)len > max)
        return -1;
    memcpy(dst, s, (size_t)len + 1);
    return 0;
}

int ps_email_cache_parse(const char *buf, size_t len, ps_email_cache_entry_t *e, char *err,
                         size_t errlen)
{
    json_object *obj = parse_object(buf, len);
    int seen = 0, rv = -1;

    memset(e, 0, sizeof(*e));
    if(!obj) {
        snprintf(err, errlen, "not one JSON object of at most %d bytes", PS_EMAIL_CACHE_MAX);
        return -1;
    }
    json_object_object_foreach(obj, key, v)
    {
        if(!strcmp(key, "version")) {
            if(!json_object_is_type(v, json_type_int) ||
               json_object_get_int64(v) != CACHE_VERSION) {
                snprintf(err, errlen, "version is not %d", CACHE_VERSION);
                goto out;
            }
            seen |= 1;
        } else if(!strcmp(key, "organization")) {
            if(cache_str(v, e->organization, PS_ID_MAX) || !ps_id_valid(e->organization)) {
                snprintf(err, errlen, "organization is not a valid organization name");
                goto out;
            }
            seen |= 2;
        } else if(!strcmp(key, "email")) {
            if(cache_str(v, e->email, PS_EMAIL_MAX) || !ps_email_valid(e->email)) {
                snprintf(err, errlen, "email is not a valid email address");
                goto out;
            }
            seen |= 4;
        } else if(!strcmp(key, "id")) {
            if(cache_str(v, e->id, PS_ID_MAX) || !ps_id_valid(e->id)) {
                snprintf(err, errlen, "id is not a valid user id");
                goto out;
            }
            seen |= 8;
        } else if(!strcmp(key, "resolved")) {
            if(!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0) {
                snprintf(err, errlen, "resolved is not a time");
                goto out;
            }
            e->resolved = (long long)json_object_get_int64(v);
            seen |= 16;
        } else {
            snprintf(err, errlen, "unknown field");
            goto out;
        }
    }
    if(seen != 31) {
        snprintf(err, errlen, "a field is missing");
        goto out;
    }
    rv = 0;
out:
    json_object_put(obj);
    if(rv)
        memset(e, 0, sizeof(*e));
    return rv;
}

char *ps_email_cache_format(const ps_email_cache_entry_t *e)
{
    json_object *j = json_object_new_object();
    char *out = NULL;

    if(!j)
        return NULL;
    json_object_object_add(j, "version", json_object_new_int(CACHE_VERSION));
    json_object_object_add(j, "organization", json_object_new_string(e->organization));
    json_object_object_add(j, "email", json_object_new_string(e->email));
    json_object_object_add(j, "id", json_object_new_string(e->id));
    json_object_object_add(j, "resolved", json_object_new_int64((int64_t)e->resolved));
    out = strdup(
        json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(j);
    if(out) {
        size_t n = strlen(out);
        char *nl = realloc(out, n + 2);

        if(!nl) {
            free(out);
            return NULL;
        }
        nl[n] = '\n';
        nl[n + 1] = '\0';
        out = nl;
    }
    return out;
}

/* The queue directory, opened and checked like the queue checks it: a real
 * directory (no symlink), owned by root or the caller, no access for group
 * or others. -2 when it does not exist, -1 with err when it may not be
 * trusted. */
static int open_queue_dir(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

    if(dfd < 0) {
        if(errno == ENOENT)
            return -2;
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if(fstat(dfd, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: not a directory", dir);
        close(dfd);
        return -1;
    }
    if(st.st_uid != 0 && st.st_uid != geteuid()) {
        snprintf(err, errlen, "%s: owned by uid %u, not by root: chown root %s", dir,
                 (unsigned)st.st_uid, dir);
        close(dfd);
        return -1;
    }
    if(st.st_mode & 077) {
        snprintf(err, errlen, "%s: mode %03o lets others in: chmod 700 %s", dir,
                 (unsigned)(st.st_mode & 0777), dir);
        close(dfd);
        return -1;
    }
    return dfd;
}

int ps_email_cache_get(const char *queue_dir, const char *org, const char *email,
                       char id_out[PS_ID_MAX + 1], char *err, size_t errlen)
{
    char name[32], path[PATH_MAX], buf[PS_EMAIL_CACHE_MAX + 1], why[256];
    ps_email_cache_entry_t e;
    ssize_t n;
    size_t len = 0;
    int dfd, fd, rv = -1;

    id_out[0] = '\0';
    dfd = open_queue_dir(queue_dir, err, errlen);
    if(dfd == -2)
        return 1;
    if(dfd < 0)
        return -1;
    ps_email_cache_name(org, email, name);
    snprintf(path, sizeof(path), "%s/%s", queue_dir, name);
    fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if(fd < 0) {
        if(errno == ENOENT) {
            close(dfd);
            return 1;
        }
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        close(dfd);
        return -1;
    }
    if(ps_check_fd_perms(fd, path, 1, err, errlen) != 0)
        goto out;
    while(len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) != 0) {
        if(n < 0) {
            if(errno == EINTR)
                continue;
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            goto out;
        }
        len += (size_t)n;
    }
    if(ps_email_cache_parse(buf, len, &e, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s: not a valid email cache file: %s", path, why);
        goto out;
    }
    if(strcmp(e.organization, org) != 0 || !ps_email_equal(e.email, email)) {
        rv = 1; /* another email with the same key: not this one */
        goto out;
    }
    memcpy(id_out, e.id, sizeof(e.id));
    rv = 0;
out:
    close(fd);
    close(dfd);
    return rv;
}

int ps_email_cache_put(const char *queue_dir, const char *org, const char *email, const char *id,
                       char *err, size_t errlen)
{
    ps_email_cache_entry_t e;
    ps_queue_t *q = NULL;
    char name[32], *data;
    int dfd, rv;

    memset(&e, 0, sizeof(e));
    if(!ps_id_valid(org) || !ps_email_valid(email) || !ps_id_valid(id)) {
        snprintf(err, errlen, "invalid organization, email or id");
        return -1;
    }
    snprintf(e.organization, sizeof(e.organization), "%s", org);
    snprintf(e.email, sizeof(e.email), "%s", email);
    snprintf(e.id, sizeof(e.id), "%s", id);
    e.resolved = (long long)time(NULL);
    /* creates the directory as the queue wants it, and checks it */
    if(ps_queue_open(&q, queue_dir, err, errlen) != 0)
        return -1;
    ps_queue_close(q);
    dfd = open_queue_dir(queue_dir, err, errlen);
    if(dfd < 0) {
        if(dfd == -2)
            snprintf(err, errlen, "%s: %s", queue_dir, strerror(ENOENT));
        return -1;
    }
    data = ps_email_cache_format(&e);
    if(!data) {
        snprintf(err, errlen, "out of memory");
        close(dfd);
        return -1;
    }
    ps_email_cache_name(org, email, name);
    rv = ps_write_file_atomic(dfd, queue_dir, name, data, err, errlen);
    free(data);
    close(dfd);
    return rv;
}

/* ------------------------------------------------------------ resolution */

struct match {
    const char *email;
    char id[PS_ID_MAX + 1];
    size_t found; /* members with this email and another id than the first */
};

static int match_cb(void *arg, const ps_member_t *m)
{
    struct match *k = arg;

    if(!ps_email_equal(m->email, k->email))
        return 0;
    if(!k->id[0])
        snprintf(k->id, sizeof(k->id), "%s", m->user_id);
    else if(strcmp(k->id, m->user_id) != 0)
        k->found++;
    return 0; /* every page: never the first hit */
}

static void set_message(ps_result_t *r, const char *fmt, ...) PS_PRINTF(2, 3);

static void set_message(ps_result_t *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->message, sizeof(r->message), fmt, ap);
    va_end(ap);
}

ps_outcome_t ps_resolve_email(ps_client_t *c, const char *queue_dir, const char *org,
                              const char *email, double deadline, int flags,
                              char id_out[PS_ID_MAX + 1], int *from_cache, ps_result_t *r)
{
    char err[512], api[sizeof(r->message)];
    struct match k;
    ps_list_opts_t o;
    ps_outcome_t out;
    int rc;

    memset(r, 0, sizeof(*r));
    r->retry_after = -1;
    id_out[0] = '\0';
    if(from_cache)
        *from_cache = 0;
    if(!ps_id_valid(org) || !ps_email_valid(email)) {
        set_message(r, "invalid organization or email");
        return r->outcome = PS_OUT_CONFIG;
    }
    if(!(flags & PS_RESOLVE_REFRESH)) {
        rc = ps_email_cache_get(queue_dir, org, email, id_out, err, sizeof(err));
        if(rc == 0) {
            if(from_cache)
                *from_cache = 1;
            set_message(r, "user id from the cache");
            return r->outcome = PS_OUT_OK;
        }
        if(rc < 0) {
            set_message(r, "the email cache may not be trusted: %.400s", err);
            return r->outcome = PS_OUT_CONFIG;
        }
    }
    if(!c) {
        set_message(r, "not in the cache: resolving the email needs a request");
        return r->outcome = PS_OUT_TRANSIENT;
    }
    memset(&k, 0, sizeof(k));
    k.email = email;
    memset(&o, 0, sizeof(o));
    o.q = email;
    o.per_page = PS_PER_PAGE_MAX;
    o.retry = (flags & PS_RESOLVE_RETRY) != 0;
    o.deadline = deadline;
    out = ps_client_list_members(c, org, &o, match_cb, &k, r);
    if(out == PS_OUT_ABSENT) {
        /* the list itself is not there for this credential: that says
         * nothing about the member */
        snprintf(api, sizeof(api), "%s", r->message);
        set_message(r, "cannot read the member list: %.450s", api);
        return r->outcome = PS_OUT_REFUSED;
    }
    if(out != PS_OUT_OK)
        return out;
    if(!k.id[0]) {
        set_message(r, "no member of %s has this email (%ld page%s read)", org, r->pages,
                    r->pages == 1 ? "" : "s");
        return r->outcome = PS_OUT_ABSENT;
    }
    if(k.found) {
        set_message(r, "%zu members of %s have this email: resolve it by hand (give id)",
                    k.found + 1, org);
        return r->outcome = PS_OUT_REFUSED;
    }
    memcpy(id_out, k.id, sizeof(k.id));
    if(ps_email_cache_put(queue_dir, org, email, k.id, err, sizeof(err)) != 0)
        set_message(r, "resolved, but not cached: %.400s", err);
    else
        set_message(r, "resolved through the member list and cached");
    return r->outcome = PS_OUT_OK;
}
