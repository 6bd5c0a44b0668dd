/* reconcile.c - memberships that outlived their accounts (see reconcile.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "members.h"
#include "reconcile.h"

#define RC_VERSION 1

/* ------------------------------------------------------------ NSS */

int ps_nss_lookup(const char *login, char *err, size_t errlen)
{
    long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
    size_t size = hint > 0 && hint <= PS_NSS_BUF_MAX ? (size_t)hint : 4096;
    struct passwd pw, *res;
    char *buf = NULL;
    int rc;

    for(;;) {
        char *nb = realloc(buf, size);

        if(!nb) {
            free(buf);
            ps_seterr(err, errlen, "out of memory");
            return -1;
        }
        buf = nb;
        res = NULL;
        rc = getpwnam_r(login, &pw, buf, size, &res);
        if(rc != ERANGE || size >= PS_NSS_BUF_MAX)
            break;
        size *= 2;
    }
    free(buf);
    if(rc == 0)
        return res != NULL;
    /* ENOENT, ESRCH, EBADF, EPERM included: getpwnam(3) says they "may"
     * mean not found; here every one of them is an error */
    if(rc == ERANGE)
        ps_seterr(err, errlen, "%s (the answer does not fit in %d bytes)", strerror(rc),
                  PS_NSS_BUF_MAX);
    else
        ps_seterr(err, errlen, "%s", strerror(rc));
    return -1;
}

/* ------------------------------------------------------------ state */

void ps_rc_state_free(ps_rc_state_t *st)
{
    if(!st)
        return;
    free(st->v);
    st->v = NULL;
    st->n = 0;
}

static int get_time(json_object *o, const char *what, long long *out, char *err, size_t errlen)
{
    if(!json_object_is_type(o, json_type_int)) {
        ps_seterr(err, errlen, "%s: not an integer", what);
        return -1;
    }
    *out = (long long)json_object_get_int64(o);
    if(*out <= 0) {
        ps_seterr(err, errlen, "%s: not a time", what);
        return -1;
    }
    return 0;
}

static int get_string(json_object *o, const char *what, char *out, size_t outsz, char *err,
                      size_t errlen)
{
    const char *s;

    if(!json_object_is_type(o, json_type_string)) {
        ps_seterr(err, errlen, "%s: not a string", what);
        return -1;
    }
    s = json_object_get_string(o);
    if(strlen(s) >= outsz || (size_t)json_object_get_string_len(o) != strlen(s)) {
        ps_seterr(err, errlen, "%s: too long or not text", what);
        return -1;
    }
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

static int parse_entry(json_object *o, size_t i, ps_rc_entry_t *e, char *err, size_t errlen)
{
    char what[64];
    unsigned seen = 0;

    memset(e, 0, sizeof(*e));
    if(!json_object_is_type(o, json_type_object)) {
        ps_seterr(err, errlen, "logins[%zu]: not an object", i);
        return -1;
    }
    json_object_object_foreach(o, key, val)
    {
        snprintf(what, sizeof(what), "logins[%zu].%.20s", i, key);
        if(!strcmp(key, "login")) {
            if(get_string(val, what, e->login, sizeof(e->login), err, errlen))
                return -1;
            seen |= 1;
        } else if(!strcmp(key, "organization")) {
            if(get_string(val, what, e->organization, sizeof(e->organization), err, errlen))
                return -1;
            seen |= 2;
        } else if(!strcmp(key, "id")) {
            if(get_string(val, what, e->id, sizeof(e->id), err, errlen))
                return -1;
            seen |= 4;
        } else if(!strcmp(key, "runs")) {
            if(!json_object_is_type(val, json_type_int) || json_object_get_int64(val) < 1 ||
               json_object_get_int64(val) > 1000000) {
                ps_seterr(err, errlen, "%s: not a count of runs", what);
                return -1;
            }
            e->runs = (int)json_object_get_int64(val);
            seen |= 8;
        } else if(!strcmp(key, "first_missing")) {
            if(get_time(val, what, &e->first_missing, err, errlen))
                return -1;
            seen |= 16;
        } else if(!strcmp(key, "last_counted")) {
            if(get_time(val, what, &e->last_counted, err, errlen))
                return -1;
            seen |= 32;
        } else {
            char esc[64];

            ps_seterr(err, errlen, "logins[%zu]: unknown field \"%s\"", i,
                      ps_escape(key, esc, sizeof(esc)));
            return -1;
        }
    }
    if(seen != 63) {
        ps_seterr(err, errlen, "logins[%zu]: a field is missing", i);
        return -1;
    }
    if(!ps_login_valid(e->login) || !ps_id_valid(e->organization) || !ps_id_valid(e->id)) {
        ps_seterr(err, errlen, "logins[%zu]: invalid login, organization or id", i);
        return -1;
    }
    if(e->first_missing > e->last_counted) {
        ps_seterr(err, errlen, "logins[%zu]: first_missing is after last_counted", i);
        return -1;
    }
    return 0;
}

static int entry_login_cmp(const void *a, const void *b)
{
    return strcmp(((const ps_rc_entry_t *)a)->login, ((const ps_rc_entry_t *)b)->login);
}

int ps_rc_state_parse(const char *buf, size_t len, ps_rc_state_t *st, char *err, size_t errlen)
{
    json_tokener *tok = NULL;
    json_object *root = NULL, *logins = NULL;
    ps_rc_entry_t *sorted = NULL;
    int have_version = 0, rv = -1;
    size_t end, i, n;

    memset(st, 0, sizeof(*st));
    if(len > (size_t)PS_RC_STATE_MAX) {
        ps_seterr(err, errlen, "larger than %ld bytes", PS_RC_STATE_MAX);
        return -1;
    }
    tok = json_tokener_new();
    if(!tok) {
        ps_seterr(err, errlen, "out of memory");
        return -1;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    root = json_tokener_parse_ex(tok, buf, (int)len);
    if(!root) {
        ps_seterr(err, errlen, "not JSON: %s",
                  json_tokener_error_desc(json_tokener_get_error(tok)));
        goto out;
    }
    for(end = json_tokener_get_parse_end(tok); end < len; end++) {
        if(!strchr(" \t\r\n", buf[end])) {
            ps_seterr(err, errlen, "not JSON: trailing data at byte %zu", end);
            goto out;
        }
    }
    if(!json_object_is_type(root, json_type_object)) {
        ps_seterr(err, errlen, "not a JSON object");
        goto out;
    }
    {
        json_object_object_foreach(root, key, val)
        {
            if(!strcmp(key, "version")) {
                if(!json_object_is_type(val, json_type_int) ||
                   json_object_get_int64(val) != RC_VERSION) {
                    ps_seterr(err, errlen, "version: not %d", RC_VERSION);
                    goto out;
                }
                have_version = 1;
            } else if(!strcmp(key, "last_run")) {
                if(get_time(val, "last_run", &st->last_run, err, errlen))
                    goto out;
            } else if(!strcmp(key, "logins")) {
                if(!json_object_is_type(val, json_type_array)) {
                    ps_seterr(err, errlen, "logins: not an array");
                    goto out;
                }
                logins = val;
            } else {
                char esc[64];

                ps_seterr(err, errlen, "unknown field \"%s\"", ps_escape(key, esc, sizeof(esc)));
                goto out;
            }
        }
    }
    if(!have_version || !logins) {
        ps_seterr(err, errlen, "version or logins missing");
        goto out;
    }
    n = json_object_array_length(logins);
    st->v = calloc(n ? n : 1, sizeof(*st->v));
    if(!st->v) {
        ps_seterr(err, errlen, "out of memory");
        goto out;
    }
    for(i = 0; i < n; i++) {
        if(parse_entry(json_object_array_get_idx(logins, i), i, &st->v[i], err, errlen))
            goto out;
    }
    st->n = n;
    /* no login twice */
    sorted = malloc((n ? n : 1) * sizeof(*sorted));
    if(!sorted) {
        ps_seterr(err, errlen, "out of memory");
        goto out;
    }
    if(n) {
        memcpy(sorted, st->v, n * sizeof(*sorted));
        qsort(sorted, n, sizeof(*sorted), entry_login_cmp);
    }
    for(i = 1; i < n; i++) {
        if(!strcmp(sorted[i - 1].login, sorted[i].login)) {
            char esc[PS_LOGIN_MAX * 4 + 8];

            ps_seterr(err, errlen, "login \"%s\" appears twice",
                      ps_escape(sorted[i].login, esc, sizeof(esc)));
            goto out;
        }
    }
    rv = 0;
out:
    free(sorted);
    if(rv != 0)
        ps_rc_state_free(st);
    if(root)
        json_object_put(root);
    json_tokener_free(tok);
    return rv;
}

/* A growing buffer for the state's text: written by hand rather than
 * through json-c objects, whose overhead doubled the peak memory of a run
 * that keeps 10,000 counts. */
typedef struct rc_buf {
    char *p;
    size_t len, cap;
    int oom;
} rc_buf_t;

static void buf_add(rc_buf_t *b, const char *s, size_t n)
{
    if(b->oom)
        return;
    if(b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *np;

        while(b->len + n + 1 > cap)
            cap *= 2;
        np = realloc(b->p, cap);
        if(!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_printf(rc_buf_t *b, const char *fmt, ...) PS_PRINTF(2, 3);

static void buf_printf(rc_buf_t *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if(n < 0 || (size_t)n >= sizeof(tmp)) {
        b->oom = 1;
        return;
    }
    buf_add(b, tmp, (size_t)n);
}

static void buf_str(rc_buf_t *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* A JSON string: quote, backslash and control characters escaped, other
 * bytes as they are (as json-c writes them). */
static void buf_json_string(rc_buf_t *b, const char *s)
{
    const unsigned char *c;

    buf_str(b, "\"");
    for(c = (const unsigned char *)s; *c; c++) {
        if(*c == '"' || *c == '\\') {
            char esc[2] = { '\\', (char)*c };

            buf_add(b, esc, 2);
        } else if(*c < 0x20) {
            buf_printf(b, "\\u%04x", *c);
        } else {
            buf_add(b, (const char *)c, 1);
        }
    }
    buf_str(b, "\"");
}

char *ps_rc_state_format(const ps_rc_state_t *st)
{
    rc_buf_t b = { NULL, 0, 0, 0 };
    size_t i;

    buf_printf(&b, "{\n  \"version\": %d,\n", RC_VERSION);
    if(st->last_run > 0)
        buf_printf(&b, "  \"last_run\": %lld,\n", st->last_run);
    buf_str(&b, "  \"logins\": [");
    for(i = 0; i < st->n; i++) {
        const ps_rc_entry_t *e = &st->v[i];

        buf_str(&b, i ? ",\n    {\"login\": " : "\n    {\"login\": ");
        buf_json_string(&b, e->login);
        buf_str(&b, ", \"organization\": ");
        buf_json_string(&b, e->organization);
        buf_str(&b, ", \"id\": ");
        buf_json_string(&b, e->id);
        buf_printf(&b, ", \"runs\": %d, \"first_missing\": %lld, \"last_counted\": %lld}", e->runs,
                   e->first_missing, e->last_counted);
    }
    buf_str(&b, st->n ? "\n  ]\n}\n" : "]\n}\n");
    if(b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ------------------------------------------------------------ decision */

static int login_key_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const ps_rc_entry_t *)elem)->login);
}

static int org_id_cmp(const void *a, const void *b)
{
    const ps_rc_login_t *x = *(const ps_rc_login_t *const *)a;
    const ps_rc_login_t *y = *(const ps_rc_login_t *const *)b;
    int c = strcmp(x->organization, y->organization);

    return c ? c : strcmp(x->id, y->id);
}

int ps_rc_decide(const ps_config_t *cfg, ps_rc_login_t *l, size_t n, const ps_rc_state_t *old,
                 long long now, long allow, ps_rc_plan_t *plan, ps_rc_state_t *next)
{
    ps_rc_entry_t *byname = NULL;
    ps_rc_login_t **byid = NULL;
    int *shared = NULL;
    size_t i, j;
    long interval = cfg->reconcile.confirm_interval;
    int rv = -1;

    memset(plan, 0, sizeof(*plan));
    memset(next, 0, sizeof(*next));
    plan->mapped = n;
    byname = malloc((old->n ? old->n : 1) * sizeof(*byname));
    byid = malloc((n ? n : 1) * sizeof(*byid));
    shared = calloc(n ? n : 1, sizeof(*shared));
    next->v = calloc(n ? n : 1, sizeof(*next->v));
    if(!byname || !byid || !shared || !next->v)
        goto out;
    if(old->n) {
        memcpy(byname, old->v, old->n * sizeof(*byname));
        qsort(byname, old->n, sizeof(*byname), entry_login_cmp);
    }

    /* an id that a present login also maps to is not removed for another */
    for(i = 0; i < n; i++)
        byid[i] = &l[i];
    if(n)
        qsort(byid, n, sizeof(*byid), org_id_cmp);
    for(i = 0; i < n; i = j) {
        int any_present = 0;
        size_t k;

        for(j = i; j < n && org_id_cmp(&byid[i], &byid[j]) == 0; j++)
            any_present |= !byid[j]->missing;
        if(any_present && j - i > 1)
            for(k = i; k < j; k++)
                shared[byid[k] - l] = 1;
    }

    for(i = 0; i < n; i++) {
        ps_rc_login_t *x = &l[i];
        const ps_rc_entry_t *o =
            old->n ? bsearch(x->login, byname, old->n, sizeof(*byname), login_key_cmp) : NULL;

        /* a count is only continued for the same organization and id */
        if(o && (strcmp(o->organization, x->organization) || strcmp(o->id, x->id)))
            o = NULL;
        x->runs = 0;
        x->counts = 0;
        x->reset = 0;
        x->first_missing = x->last_counted = x->next_count = 0;
        if(!x->missing) {
            x->action = PS_RC_PRESENT;
            x->reset = o != NULL;
            continue;
        }
        if(!x->member) {
            x->action = PS_RC_NOT_MEMBER;
            continue;
        }
        if(shared[i]) {
            x->action = PS_RC_SHARED;
            continue;
        }
        if(x->queued) {
            x->action = PS_RC_QUEUED;
            continue;
        }
        if(!o || o->last_counted > now) {
            /* first sighting (or a clock that went back: start over) */
            x->runs = 1;
            x->first_missing = x->last_counted = now;
            x->counts = 1;
        } else if(now - o->last_counted >= interval) {
            x->runs = o->runs + 1;
            x->first_missing = o->first_missing;
            x->last_counted = now;
            x->counts = 1;
        } else {
            x->runs = o->runs;
            x->first_missing = o->first_missing;
            x->last_counted = o->last_counted;
        }
        x->next_count = x->last_counted + interval;
        x->action = x->runs >= cfg->reconcile.confirm_runs ? PS_RC_REMOVE : PS_RC_WAIT;
        plan->candidates++;
        plan->remove += x->action == PS_RC_REMOVE;

        {
            ps_rc_entry_t *e = &next->v[next->n++];

            snprintf(e->login, sizeof(e->login), "%s", x->login);
            snprintf(e->organization, sizeof(e->organization), "%s", x->organization);
            snprintf(e->id, sizeof(e->id), "%s", x->id);
            e->runs = x->runs;
            e->first_missing = x->first_missing;
            e->last_counted = x->last_counted;
        }
    }
    next->last_run = now;

    if(allow >= 0) {
        plan->limit = allow;
    } else {
        plan->limit = cfg->reconcile.max_removals;
        if(n >= PS_RC_MIN_MAPPED) {
            /* "more than max_fraction of the mapped logins" */
            long f = (long)(cfg->reconcile.max_fraction * (double)n + 1e-9); /* floor: >= 0 */

            if(f < plan->limit)
                plan->limit = f;
        }
    }
    plan->tripped = plan->candidates > (size_t)plan->limit;
    rv = 0;
out:
    free(byname);
    free(byid);
    free(shared);
    if(rv != 0)
        ps_rc_state_free(next);
    return rv;
}

/* ------------------------------------------------------------ files */

static const char *fmt_time(long long t, char *buf, size_t len)
{
    struct tm tm;
    time_t tt = (time_t)t;

    if(t <= 0 || !gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, len, "-");
    return buf;
}

/* The state directory QUEUE_DIR/reconcile. With create: made 0700 when
 * missing. Checked: a directory (not a symlink), owned by root or us, not
 * writable or readable by group or others. Returns an O_PATH-free fd, -2
 * when it does not exist (and create is 0), -1 on error (err). */
static int open_state_dir(const char *queue_dir, int create, char *err, size_t errlen)
{
    char path[4096];
    struct stat st;
    int fd;

    snprintf(path, sizeof(path), "%s/" PS_RC_DIR, queue_dir);
    if(create && mkdir(path, 0700) != 0 && errno != EEXIST) {
        ps_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if(fd < 0) {
        if(errno == ENOENT && !create)
            return -2;
        ps_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if(fstat(fd, &st) != 0) {
        ps_seterr(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if((st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & 077) != 0) {
        ps_seterr(err, errlen,
                  "%s: must be owned by root and not accessible by group or others "
                  "(chown root %s; chmod 700 %s)",
                  path, path, path);
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads the state. 0 (an empty state when there is none), 1 when the file
 * is not a valid state (err says why), -1 on an I/O error (err). */
static int load_state(int dfd, const char *dir, ps_rc_state_t *st, char *err, size_t errlen)
{
    char path[4096 + 64], perr[512];
    struct stat sb;
    char *buf = NULL;
    size_t got = 0;
    int fd, rv = -1;

    memset(st, 0, sizeof(*st));
    if(dfd < 0)
        return 0;
    snprintf(path, sizeof(path), "%s/" PS_RC_STATE, dir);
    fd = openat(dfd, PS_RC_STATE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if(fd < 0) {
        if(errno == ENOENT)
            return 0;
        ps_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return errno == ELOOP ? 1 : -1;
    }
    if(fstat(fd, &sb) != 0) {
        ps_seterr(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    if(!S_ISREG(sb.st_mode) || sb.st_size > PS_RC_STATE_MAX) {
        ps_seterr(err, errlen, "%s: not a regular file of at most %ld bytes", path,
                  PS_RC_STATE_MAX);
        rv = 1;
        goto out;
    }
    if(ps_check_fd_perms(fd, path, 1, perr, sizeof(perr)) != 0) {
        ps_seterr(err, errlen, "%s", perr);
        rv = 1;
        goto out;
    }
    buf = malloc((size_t)sb.st_size + 1);
    if(!buf) {
        ps_seterr(err, errlen, "%s: out of memory", path);
        goto out;
    }
    while(got < (size_t)sb.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)sb.st_size - got);

        if(r < 0 && errno == EINTR)
            continue;
        if(r < 0) {
            ps_seterr(err, errlen, "%s: %s", path, strerror(errno));
            goto out;
        }
        if(r == 0)
            break;
        got += (size_t)r;
    }
    if(ps_rc_state_parse(buf, got, st, perr, sizeof(perr)) != 0) {
        ps_seterr(err, errlen, "%s: %s", path, perr);
        rv = 1;
        goto out;
    }
    rv = 0;
out:
    free(buf);
    close(fd);
    return rv;
}

/* ------------------------------------------------------------ members */

typedef struct rc_member {
    char *user_id;
    char *email;
    char role[PS_ROLE_MAX + 1];
    int directory_managed;
    const char *login; /* the mapped login naming it, or NULL */
} rc_member_t;

typedef struct rc_org {
    const char *name;
    rc_member_t *m;         /* sorted by user_id once complete */
    rc_member_t **by_email; /* sorted by email (ASCII case ignored), built on first use */
    size_t n, cap;
    long pages;
    int oom;
} rc_org_t;

static int member_cb(void *arg, const ps_member_t *pm)
{
    rc_org_t *o = arg;
    rc_member_t *m;

    if(o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        rc_member_t *v = realloc(o->m, cap * sizeof(*v));

        if(!v) {
            o->oom = 1;
            return 1;
        }
        o->m = v;
        o->cap = cap;
    }
    m = &o->m[o->n];
    memset(m, 0, sizeof(*m));
    m->user_id = strdup(pm->user_id);
    m->email = strdup(pm->email);
    if(!m->user_id || !m->email) {
        free(m->user_id);
        free(m->email);
        o->oom = 1;
        return 1;
    }
    snprintf(m->role, sizeof(m->role), "%s", pm->role);
    m->directory_managed = pm->directory_managed == 1;
    o->n++;
    return 0;
}

static int member_cmp(const void *a, const void *b)
{
    return strcmp(((const rc_member_t *)a)->user_id, ((const rc_member_t *)b)->user_id);
}

static int member_key_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const rc_member_t *)elem)->user_id);
}

static rc_member_t *find_member(rc_org_t *o, const char *id)
{
    return o && o->n ? bsearch(id, o->m, o->n, sizeof(*o->m), member_key_cmp) : NULL;
}

static int email_cmp(const void *a, const void *b)
{
    return strcasecmp((*(rc_member_t *const *)a)->email, (*(rc_member_t *const *)b)->email);
}

static int email_key_cmp(const void *key, const void *elem)
{
    return strcasecmp(key, (*(rc_member_t *const *)elem)->email);
}

/* The member whose user.email equals `email` ignoring ASCII case, as
 * PlanetScale's CLI resolves an email (never a prefix, never one of two),
 * from the list at hand. NULL with *problem saying why. The index by email
 * is built on first use. */
static rc_member_t *find_email(rc_org_t *o, const char *email, const char **problem)
{
    rc_member_t **hit;
    size_t i, k;

    *problem = "no member has this email";
    if(!o || !o->n)
        return NULL;
    if(!o->by_email) {
        o->by_email = malloc(o->n * sizeof(*o->by_email));
        if(!o->by_email) {
            *problem = "out of memory";
            return NULL;
        }
        for(i = 0; i < o->n; i++)
            o->by_email[i] = &o->m[i];
        qsort(o->by_email, o->n, sizeof(*o->by_email), email_cmp);
    }
    hit = bsearch(email, o->by_email, o->n, sizeof(*o->by_email), email_key_cmp);
    if(!hit)
        return NULL;
    k = (size_t)(hit - o->by_email);
    if((k > 0 && strcasecmp(o->by_email[k - 1]->email, email) == 0) ||
       (k + 1 < o->n && strcasecmp(o->by_email[k + 1]->email, email) == 0)) {
        *problem = "two members have this email";
        return NULL;
    }
    if(!ps_id_valid((*hit)->user_id)) {
        *problem = "the member's user id is not valid";
        return NULL;
    }
    *problem = NULL;
    return *hit;
}

static void free_orgs(rc_org_t *orgs, size_t norgs)
{
    size_t i, j;

    for(i = 0; i < norgs; i++) {
        for(j = 0; j < orgs[i].n; j++) {
            free(orgs[i].m[j].user_id);
            free(orgs[i].m[j].email);
        }
        free(orgs[i].m);
        free(orgs[i].by_email);
    }
    free(orgs);
}

static rc_org_t *find_org(rc_org_t *orgs, size_t norgs, const char *name)
{
    size_t i;

    for(i = 0; i < norgs; i++)
        if(!strcmp(orgs[i].name, name))
            return &orgs[i];
    return NULL;
}

/* ------------------------------------------------------------ the run */

typedef struct rc_run {
    const ps_config_t *cfg;
    const ps_rc_opts_t *o;
    ps_log_t lg;           /* plan runs: stderr only */
    const ps_log_t *quiet; /* the same without stderr */
    ps_rc_login_t *l;
    size_t n;
    rc_org_t *orgs;
    size_t norgs;
    ps_rc_plan_t plan;
    long requests;
    json_object *out; /* --json */
    json_object *jlogins;
} rc_run_t;

static const char *action_word(enum ps_rc_action a)
{
    switch(a) {
    case PS_RC_PRESENT: return "present";
    case PS_RC_NOT_MEMBER: return "not-member";
    case PS_RC_SHARED: return "shared";
    case PS_RC_QUEUED: return "queued";
    case PS_RC_WAIT: return "wait";
    case PS_RC_REMOVE: return "remove";
    }
    return "?";
}

/* Exit status and message of a failed member list. */
static int list_failure_exit(ps_outcome_t out)
{
    switch(out) {
    case PS_OUT_TRANSIENT: return 75;
    case PS_OUT_CONFIG: return 78;
    default: return 77; /* 401, 403, 404: the credential cannot read it */
    }
}

static const char *list_failure_hint(const ps_result_t *r)
{
    switch(r->http_status) {
    case 401: return "the token is not valid (401)";
    case 403:
        return "the token may not read the organization's members (403: it needs "
               "read_organization)";
    case 404:
        return "the organization does not exist, or the token cannot see it or lacks "
               "read_organization (404)";
    default: return NULL;
    }
}

/* A stop before anything was decided: say it, as JSON too. */
static int stop(rc_run_t *run, int code, int prio, const char *fmt, ...) PS_PRINTF(4, 5);

static int stop(rc_run_t *run, int code, int prio, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ps_logf(&run->lg, prio, "reconcile: %s", msg);
    if(run->out) {
        json_object_object_add(run->out, "stopped", json_object_new_string(msg));
        json_object_object_add(run->out, "exit", json_object_new_int(code));
    }
    return code;
}

/* The mapped logins, in the map's order. -1 when out of memory. */
static int build_logins(rc_run_t *run)
{
    const ps_config_t *cfg = run->cfg;
    size_t i;

    run->l = calloc(cfg->nusers ? cfg->nusers : 1, sizeof(*run->l));
    if(!run->l)
        return -1;
    for(i = 0; i < cfg->nusers; i++) {
        ps_mapping_t m;

        if(ps_config_map(cfg, cfg->users[i].login, &m) != 0)
            continue; /* no organization: check reports it */
        run->l[run->n].login = m.login;
        run->l[run->n].organization = m.organization;
        run->l[run->n].id = m.id; /* NULL for an email: set from the member list */
        run->l[run->n].email = m.email;
        run->n++;
    }
    return 0;
}

/* Every mapped login through NSS, before any request. 0, or the exit
 * status of a stop. */
static int look_up_logins(rc_run_t *run)
{
    size_t i;

    for(i = 0; i < run->n; i++) {
        char err[512], elogin[PS_LOGIN_MAX * 4 + 8];
        int r = ps_nss_lookup(run->l[i].login, err, sizeof(err));

        if(r < 0)
            return stop(run, 75, LOG_ERR,
                        "looking up %s in the account database (NSS) failed: %s; acting on "
                        "no one (a lookup error is not \"not found\": is the directory "
                        "service, e.g. sssd or LDAP, reachable?)",
                        ps_escape(run->l[i].login, elogin, sizeof(elogin)), err);
        run->l[i].missing = r == 0;
    }
    return 0;
}

/* A complete member list was just read with ctx's credential: the proof
 * that a 404 for a member of that organization means "not a member"
 * (ctx.h), so that a removal needs no list probe of its own. */
static void list_was_read(ps_ctx_t *ctx, const char *org)
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

/* The member list of every organization the map names, and the default
 * one. 0, or the exit status of a stop. */
static int list_members(rc_run_t *run, ps_ctx_t *ctx)
{
    const ps_config_t *cfg = run->cfg;
    ps_client_t *client;
    char err[1024];
    size_t i;

    run->orgs = calloc(run->n + 1, sizeof(*run->orgs));
    if(!run->orgs)
        return stop(run, 1, LOG_ERR, "out of memory");
    if(cfg->organization)
        run->orgs[run->norgs++].name = cfg->organization;
    for(i = 0; i < run->n; i++)
        if(!find_org(run->orgs, run->norgs, run->l[i].organization))
            run->orgs[run->norgs++].name = run->l[i].organization;
    if(run->norgs == 0)
        return 0;
    client = ps_ctx_client(ctx, err, sizeof(err));
    if(!client)
        return stop(run, 78, LOG_ERR, "%s", err);
    for(i = 0; i < run->norgs; i++) {
        rc_org_t *org = &run->orgs[i];
        ps_list_opts_t lo;
        ps_result_t r;
        ps_outcome_t out;

        memset(&lo, 0, sizeof(lo));
        lo.per_page = PS_PER_PAGE_MAX;
        lo.retry = 1;
        lo.deadline = run->o->deadline;
        out = ps_client_list_members(client, org->name, &lo, member_cb, org, &r);
        run->requests += r.attempts;
        org->pages = r.pages;
        if(out != PS_OUT_OK) {
            char emsg[1024];
            const char *hint = list_failure_hint(&r);

            if(org->oom)
                return stop(run, 1, LOG_ERR, "out of memory reading the members of %s", org->name);
            return stop(run, list_failure_exit(out), LOG_ERR,
                        "could not read the member list of %s: %s; acting on no one", org->name,
                        hint ? hint : ps_escape(r.message, emsg, sizeof(emsg)));
        }
        if(org->n)
            qsort(org->m, org->n, sizeof(*org->m), member_cmp);
        list_was_read(ctx, org->name);
    }
    for(i = 0; i < run->n; i++) {
        ps_rc_login_t *x = &run->l[i];
        rc_org_t *org = find_org(run->orgs, run->norgs, x->organization);
        rc_member_t *m = NULL;

        if(x->email) {
            /* the list at hand gives the id: no request of its own */
            m = find_email(org, x->email, &x->email_problem);
            x->id = m ? m->user_id : "";
        } else {
            m = find_member(org, x->id);
        }
        x->member = m != NULL;
        if(m) {
            x->directory_managed = m->directory_managed;
            if(!m->login)
                m->login = x->login;
        }
    }
    return 0;
}

/* Marks the missing members whose removal is already in the spool
 * (pending, held or dead): the spool finishes those. Only looks. */
static void mark_queued(rc_run_t *run)
{
    int qfd = open(run->cfg->queue_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    size_t i;

    if(qfd < 0)
        return;
    for(i = 0; i < run->n; i++) {
        ps_rc_login_t *x = &run->l[i];
        char name[32], dead[64];
        struct stat st;

        if(!x->missing || !x->member)
            continue;
        /* an entry of an email user is keyed by the email (queue.h) */
        ps_queue_name(x->login, x->organization, x->email ? x->email : x->id, name);
        snprintf(dead, sizeof(dead), "dead/%s", name);
        x->queued = fstatat(qfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ||
                    fstatat(qfd, dead, &st, AT_SYMLINK_NOFOLLOW) == 0;
    }
    close(qfd);
}

/* ------------------------------------------------------------ output */

static void print_login(rc_run_t *run, const ps_rc_login_t *x, const char *outcome,
                        const ps_report_t *rep)
{
    char elogin[PS_LOGIN_MAX * 4 + 8], t1[32], t2[32];
    int need = run->cfg->reconcile.confirm_runs;

    if(run->out) {
        json_object *j = json_object_new_object();

        json_object_object_add(j, "login", json_object_new_string(x->login));
        json_object_object_add(j, "organization", json_object_new_string(x->organization));
        json_object_object_add(j, "id", json_object_new_string(x->id));
        if(x->email)
            json_object_object_add(j, "email", json_object_new_string(x->email));
        json_object_object_add(
            j, "action",
            json_object_new_string(x->action == PS_RC_PRESENT ? "reset" : action_word(x->action)));
        json_object_object_add(j, "directory_managed",
                               json_object_new_boolean(x->directory_managed));
        if(x->action == PS_RC_WAIT || x->action == PS_RC_REMOVE) {
            json_object_object_add(j, "runs", json_object_new_int(x->runs));
            json_object_object_add(j, "confirm_runs", json_object_new_int(need));
            json_object_object_add(j, "counted", json_object_new_boolean(x->counts));
            json_object_object_add(j, "first_missing",
                                   json_object_new_string(fmt_time(x->first_missing, t1, 32)));
            json_object_object_add(j, "next_count",
                                   json_object_new_string(fmt_time(x->next_count, t2, 32)));
        }
        if(outcome) {
            json_object_object_add(j, "outcome", json_object_new_string(outcome));
            if(rep && rep->message[0])
                json_object_object_add(j, "message", json_object_new_string(rep->message));
        }
        json_object_array_add(run->jlogins, j);
        return;
    }
    ps_escape(x->login, elogin, sizeof(elogin));
    printf("%-7s %-16s %-16s %-16s ", x->action == PS_RC_PRESENT ? "reset" : action_word(x->action),
           elogin, x->organization, x->id);
    switch(x->action) {
    case PS_RC_PRESENT: printf("present again: its count starts over\n"); break;
    case PS_RC_NOT_MEMBER:
        printf("missing, but not a member of %s: nothing to remove\n", x->organization);
        break;
    case PS_RC_SHARED:
        printf("missing, but another mapped login with this id exists: kept\n");
        break;
    case PS_RC_QUEUED: printf("missing; its removal is already in the queue\n"); break;
    case PS_RC_WAIT:
        if(!run->o->apply && x->counts)
            printf("missing: an --apply run now counts run %d of %d (missing since %s)\n", x->runs,
                   need, fmt_time(x->first_missing, t1, 32));
        else
            printf("missing in %d of %d runs since %s; the next run counts after %s\n", x->runs,
                   need, fmt_time(x->first_missing, t1, 32), fmt_time(x->next_count, t2, 32));
        break;
    case PS_RC_REMOVE:
        if(outcome)
            printf("missing in %d runs since %s: %s%s%s\n", x->runs,
                   fmt_time(x->first_missing, t1, 32), outcome, rep && rep->message[0] ? ": " : "",
                   rep && rep->message[0] ? rep->message : "");
        else
            printf("missing in %d runs since %s: %s\n", x->runs, fmt_time(x->first_missing, t1, 32),
                   run->plan.tripped ? "would be removed, but the cap is reached"
                   : run->o->apply   ? "not removed"
                                     : "would be removed by --apply");
        break;
    }
}

/* Unmapped members, stale map entries and directory-managed members. */
static void print_report(rc_run_t *run)
{
    json_object *unmapped = NULL, *stale = NULL, *dm = NULL;
    size_t i, j, nunmapped = 0, nstale = 0, ndm = 0;
    char e1[PS_EMAIL_MAX * 4 + 8], e2[PS_LOGIN_MAX * 4 + 8];

    if(run->out) {
        unmapped = json_object_new_array();
        stale = json_object_new_array();
        dm = json_object_new_array();
    }
    for(i = 0; i < run->norgs; i++) {
        for(j = 0; j < run->orgs[i].n; j++) {
            const rc_member_t *m = &run->orgs[i].m[j];

            if(!m->login) {
                nunmapped++;
                if(unmapped) {
                    json_object *o = json_object_new_object();

                    json_object_object_add(o, "organization",
                                           json_object_new_string(run->orgs[i].name));
                    json_object_object_add(o, "id", json_object_new_string(m->user_id));
                    json_object_object_add(o, "email", json_object_new_string(m->email));
                    json_object_object_add(o, "role", json_object_new_string(m->role));
                    json_object_object_add(o, "directory_managed",
                                           json_object_new_boolean(m->directory_managed));
                    json_object_array_add(unmapped, o);
                } else {
                    printf("unmapped member   %-16s %-16s %s (%s)%s\n", run->orgs[i].name,
                           m->user_id, ps_escape(m->email, e1, sizeof(e1)), m->role,
                           m->directory_managed ? ", directory-managed" : "");
                }
            }
            if(m->directory_managed) {
                ndm++;
                if(dm) {
                    json_object *o = json_object_new_object();

                    json_object_object_add(o, "organization",
                                           json_object_new_string(run->orgs[i].name));
                    json_object_object_add(o, "id", json_object_new_string(m->user_id));
                    json_object_object_add(o, "email", json_object_new_string(m->email));
                    json_object_object_add(o, "login",
                                           m->login ? json_object_new_string(m->login) : NULL);
                    json_object_array_add(dm, o);
                } else {
                    printf("directory-managed %-16s %-16s %s (login %s): PlanetScale Directory "
                           "Sync manages this membership\n",
                           run->orgs[i].name, m->user_id, ps_escape(m->email, e1, sizeof(e1)),
                           m->login ? ps_escape(m->login, e2, sizeof(e2)) : "none");
                }
            }
        }
    }
    for(i = 0; i < run->n; i++) {
        const ps_rc_login_t *x = &run->l[i];

        if(x->member)
            continue;
        nstale++;
        if(stale) {
            json_object *o = json_object_new_object();

            json_object_object_add(o, "login", json_object_new_string(x->login));
            json_object_object_add(o, "organization", json_object_new_string(x->organization));
            json_object_object_add(o, "id", json_object_new_string(x->id));
            if(x->email) {
                json_object_object_add(o, "email", json_object_new_string(x->email));
                json_object_object_add(
                    o, "problem", json_object_new_string(x->email_problem ? x->email_problem : ""));
            }
            json_object_object_add(o, "account",
                                   json_object_new_string(x->missing ? "missing" : "present"));
            json_object_array_add(stale, o);
        } else if(x->email) {
            printf("stale mapping     %-16s %-16s %s: %s (account %s)\n", x->organization,
                   ps_escape(x->email, e1, sizeof(e1)), ps_escape(x->login, e2, sizeof(e2)),
                   x->email_problem ? x->email_problem : "not a member",
                   x->missing ? "missing: the mapping can go" : "present");
        } else {
            printf("stale mapping     %-16s %-16s %s is not a member (account %s)\n",
                   x->organization, x->id, ps_escape(x->login, e2, sizeof(e2)),
                   x->missing ? "missing: the mapping can go" : "present");
        }
    }
    if(run->out) {
        json_object_object_add(run->out, "unmapped_members", unmapped);
        json_object_object_add(run->out, "stale", stale);
        json_object_object_add(run->out, "directory_managed", dm);
    } else if(nunmapped + nstale + ndm) {
        printf("(report only: %zu unmapped members, %zu stale mappings, %zu directory-managed "
               "members; reconcile does not act on these)\n",
               nunmapped, nstale, ndm);
    }
}

/* Listed before acting: everything but the present logins (a reset is
 * listed) and the stale map (reported apart); with --apply the confirmed
 * ones are listed when they are acted on. */
static int listed(const rc_run_t *run, const ps_rc_login_t *x)
{
    if(x->action == PS_RC_PRESENT)
        return x->reset;
    if(x->action == PS_RC_NOT_MEMBER)
        return 0;
    if(x->action == PS_RC_REMOVE)
        return run->plan.tripped || !run->o->apply;
    return 1;
}

/* ------------------------------------------------------------ acting */

/* Removes the confirmed logins through the spool; returns the worst
 * status, and drops from *next each login the spool now owns. */
static ps_status_t act(rc_run_t *run, ps_ctx_t *ctx, ps_rc_state_t *next)
{
    ps_status_t worst = PS_ST_REMOVED;
    size_t i;

    for(i = 0; i < run->n; i++) {
        ps_rc_login_t *x = &run->l[i];
        char elogin[PS_LOGIN_MAX * 4 + 8], t1[32];
        ps_report_t rep;
        ps_status_t st;
        size_t k;

        if(x->action != PS_RC_REMOVE)
            continue;
        ps_logf(run->quiet, LOG_NOTICE,
                "reconcile: %s (%s/%s) missing from the account database in %d runs since %s: "
                "removing",
                ps_escape(x->login, elogin, sizeof(elogin)), x->organization, x->id, x->runs,
                fmt_time(x->first_missing, t1, sizeof(t1)));
        if(x->email) {
            /* the id this run read from the whole list, for the removal's
             * own resolution: the cache answers it, with no request */
            char err[512];

            if(ps_email_cache_put(run->cfg->queue_dir, x->organization, x->email, x->id, err,
                                  sizeof(err)) != 0)
                ps_logf(&run->lg, LOG_WARNING,
                        "reconcile: %s: the email's id could not be cached (%s): the removal "
                        "resolves it itself",
                        elogin, err);
        }
        memset(&rep, 0, sizeof(rep));
        st = ps_remove_login(ctx, x->login, &rep);
        run->requests += rep.attempts;
        print_login(run, x, ps_status_word(st), &rep);
        if(ps_status_worse(st, worst))
            worst = st;
        if(ps_outcome(st)->spool == PS_SPOOL_NONE)
            continue; /* not in the spool: keep counting, the next run tries again */
        for(k = 0; k < next->n; k++) {
            if(!strcmp(next->v[k].login, x->login)) {
                next->v[k] = next->v[--next->n];
                break;
            }
        }
    }
    return worst;
}

static int save_state(rc_run_t *run, int dfd, const char *dir, const ps_rc_state_t *st)
{
    char err[1024];
    char *data = ps_rc_state_format(st);

    if(!data) {
        ps_logf(&run->lg, LOG_ERR, "reconcile: out of memory");
        return -1;
    }
    if(ps_write_file_atomic(dfd, dir, PS_RC_STATE, data, err, sizeof(err)) != 0) {
        ps_logf(&run->lg, LOG_ERR, "reconcile: the state could not be kept: %s", err);
        free(data);
        return -1;
    }
    free(data);
    return 0;
}

static void print_summary(rc_run_t *run, long long now, int code)
{
    size_t i, present = 0, missing = 0, wait = 0;
    char t[32];

    for(i = 0; i < run->n; i++) {
        present += !run->l[i].missing;
        missing += run->l[i].missing;
        wait += run->l[i].action == PS_RC_WAIT;
    }
    if(run->out) {
        json_object *cap = json_object_new_object(), *orgs = json_object_new_array();

        json_object_object_add(run->out, "time", json_object_new_string(fmt_time(now, t, 32)));
        json_object_object_add(run->out, "mapped", json_object_new_int64((int64_t)run->n));
        json_object_object_add(run->out, "present", json_object_new_int64((int64_t)present));
        json_object_object_add(run->out, "missing", json_object_new_int64((int64_t)missing));
        for(i = 0; i < run->norgs; i++) {
            json_object *o = json_object_new_object();

            json_object_object_add(o, "organization", json_object_new_string(run->orgs[i].name));
            json_object_object_add(o, "members", json_object_new_int64((int64_t)run->orgs[i].n));
            json_object_object_add(o, "pages", json_object_new_int64(run->orgs[i].pages));
            json_object_array_add(orgs, o);
        }
        json_object_object_add(run->out, "organizations", orgs);
        json_object_object_add(cap, "candidates",
                               json_object_new_int64((int64_t)run->plan.candidates));
        json_object_object_add(cap, "confirmed", json_object_new_int64((int64_t)run->plan.remove));
        json_object_object_add(cap, "limit", json_object_new_int64(run->plan.limit));
        json_object_object_add(cap, "max_removals",
                               json_object_new_int64(run->cfg->reconcile.max_removals));
        {
            char f[32];

            snprintf(f, sizeof(f), "%g", run->cfg->reconcile.max_fraction);
            json_object_object_add(cap, "max_fraction",
                                   json_object_new_double_s(run->cfg->reconcile.max_fraction, f));
        }
        json_object_object_add(cap, "allow",
                               run->o->allow >= 0 ? json_object_new_int64(run->o->allow) : NULL);
        json_object_object_add(cap, "tripped", json_object_new_boolean(run->plan.tripped));
        json_object_object_add(run->out, "cap", cap);
        json_object_object_add(run->out, "requests", json_object_new_int64(run->requests));
        json_object_object_add(run->out, "exit", json_object_new_int(code));
        return;
    }
    printf("reconcile: %zu mapped logins: %zu present, %zu missing (%zu to remove, %zu "
           "waiting for confirmation); cap %ld%s; %ld requests%s\n",
           run->n, present, missing, run->plan.remove, wait, run->plan.limit,
           run->plan.tripped ? " REACHED: acting on none" : "", run->requests,
           run->o->apply ? "" : "; plan only, nothing changed");
}

int ps_reconcile(const ps_config_t *cfg, const ps_log_t *lg, const ps_rc_opts_t *o)
{
    rc_run_t run;
    ps_log_t quiet; /* syslog only: what stdout says already */
    ps_ctx_t ctx;
    ps_rc_state_t old, next;
    char err[1024], dir[4096];
    long long now = (long long)time(NULL);
    int dfd = -1, lockfd = -1, code = 0, r;
    size_t i;

    memset(&run, 0, sizeof(run));
    memset(&ctx, 0, sizeof(ctx));
    memset(&old, 0, sizeof(old));
    memset(&next, 0, sizeof(next));
    run.cfg = cfg;
    run.o = o;
    run.lg = *lg;
    if(!o->apply)
        run.lg.to_syslog = 0; /* a plan changes nothing, the system log included */
    quiet = run.lg;
    quiet.to_stderr = 0;
    run.quiet = &quiet;
    ctx.cfg = cfg;
    ctx.log = &run.lg;
    ctx.deadline = o->deadline;
    ctx.trigger = "reconcile";
    if(o->json) {
        run.out = json_object_new_object();
        run.jlogins = json_object_new_array();
        json_object_object_add(run.out, "apply", json_object_new_boolean(o->apply));
        json_object_object_add(run.out, "logins", run.jlogins);
    }
    snprintf(dir, sizeof(dir), "%s/" PS_RC_DIR, cfg->queue_dir);

    if(build_logins(&run) != 0) {
        code = stop(&run, 1, LOG_ERR, "out of memory");
        goto out;
    }
    /* NSS first: an outage stops the run before any request or file */
    if((code = look_up_logins(&run)) != 0)
        goto out;

    /* the state, and with --apply the lock: one run at a time */
    if(o->apply) {
        if(!ps_ctx_queue(&ctx, err, sizeof(err))) {
            code = stop(&run, 78, LOG_ERR, "queue: %s", err);
            goto out;
        }
        dfd = open_state_dir(cfg->queue_dir, 1, err, sizeof(err));
        if(dfd < 0) {
            code = stop(&run, 1, LOG_ERR, "%s", err);
            goto out;
        }
        lockfd = openat(dfd, PS_RC_LOCK, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if(lockfd < 0) {
            code = stop(&run, 1, LOG_ERR, "%s/" PS_RC_LOCK ": %s", dir, strerror(errno));
            goto out;
        }
        if(flock(lockfd, LOCK_EX | LOCK_NB) != 0) {
            code = stop(&run, 75, LOG_NOTICE, "another reconcile --apply is running");
            goto out;
        }
    } else {
        dfd = open_state_dir(cfg->queue_dir, 0, err, sizeof(err));
        if(dfd == -1) {
            code = stop(&run, 1, LOG_ERR, "%s", err);
            goto out;
        }
    }
    r = load_state(dfd, dir, &old, err, sizeof(err));
    if(r < 0) {
        code = stop(&run, 1, LOG_ERR, "%s", err);
        goto out;
    }
    if(r == 1) {
        /* like an invalid queue entry: moved aside, never trusted; the
         * counts start over, which only delays a removal */
        if(o->apply) {
            char aside[64];

            snprintf(aside, sizeof(aside), PS_RC_STATE ".invalid");
            if(renameat(dfd, PS_RC_STATE, dfd, aside) != 0) {
                code = stop(&run, 1, LOG_ERR, "%s (and moving it aside failed: %s)", err,
                            strerror(errno));
                goto out;
            }
            ps_logf(&run.lg, LOG_ERR,
                    "reconcile: %s: moved to %s/%s; the confirmation counts start over", err, dir,
                    aside);
        } else {
            ps_logf(&run.lg, LOG_WARNING,
                    "reconcile: %s: ignored (an --apply run moves it aside); the counts start "
                    "over",
                    err);
        }
    }

    if((code = list_members(&run, &ctx)) != 0)
        goto out;
    mark_queued(&run);
    if(ps_rc_decide(cfg, run.l, run.n, &old, now, o->allow, &run.plan, &next) != 0) {
        code = stop(&run, 1, LOG_ERR, "out of memory");
        goto out;
    }
    if(o->plan_out && o->decided) {
        *o->plan_out = run.plan;
        *o->decided = 1;
    }

    for(i = 0; i < run.n && !o->json; i++) {
        if(listed(&run, &run.l[i]) || run.l[i].action == PS_RC_REMOVE) {
            printf("%-7s %-16s %-16s %-16s %s\n", "ACTION", "LOGIN", "ORGANIZATION", "ID", "STATE");
            break;
        }
    }
    if(run.plan.tripped) {
        code = 77;
        ps_logf(&run.lg, o->apply ? LOG_ALERT : LOG_ERR,
                "reconcile: %zu mapped accounts are missing from the account database, more "
                "than the cap of %ld (%s): acting on none. This looks like an outage of the "
                "directory or of an NSS module until shown otherwise: check with `getent passwd "
                "LOGIN`. When they are really gone: planetscale-deprovision reconcile --apply "
                "--allow %zu",
                run.plan.candidates, run.plan.limit,
                o->allow >= 0 ? "--allow"
                : run.n >= PS_RC_MIN_MAPPED
                    ? "reconcile.max_removals, or reconcile.max_fraction of the mapped logins"
                    : "reconcile.max_removals",
                run.plan.candidates);
    }
    for(i = 0; i < run.n; i++) {
        const ps_rc_login_t *x = &run.l[i];

        if(x->reset && o->apply) {
            char elogin[PS_LOGIN_MAX * 4 + 8];

            ps_logf(run.quiet, LOG_INFO, "reconcile: %s is present again: its count starts over",
                    ps_escape(x->login, elogin, sizeof(elogin)));
        }
        if(listed(&run, x))
            print_login(&run, x, NULL, NULL);
    }
    if(o->apply && !run.plan.tripped && run.plan.remove > 0) {
        ps_status_t worst = act(&run, &ctx, &next);

        code = ps_status_exit(worst);
    }
    if(o->apply && save_state(&run, dfd, dir, &next) != 0 && code == 0)
        code = 1;
    print_report(&run);
    print_summary(&run, now, code);
    if(o->apply)
        ps_logf(run.quiet, LOG_NOTICE,
                "reconcile: %zu mapped logins, %zu candidates (%zu confirmed), cap %ld%s, %ld "
                "requests",
                run.n, run.plan.candidates, run.plan.remove, run.plan.limit,
                run.plan.tripped ? " reached" : "", run.requests);
out:
    if(run.out) {
        if(!json_object_object_get_ex(run.out, "exit", NULL))
            json_object_object_add(run.out, "exit", json_object_new_int(code));
        puts(json_object_to_json_string_ext(run.out, JSON_C_TO_STRING_PRETTY |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(run.out);
    }
    ps_ctx_release(&ctx);
    ps_rc_state_free(&old);
    ps_rc_state_free(&next);
    free_orgs(run.orgs, run.norgs);
    free(run.l);
    if(lockfd >= 0)
        close(lockfd);
    if(dfd >= 0)
        close(dfd);
    return code;
}
