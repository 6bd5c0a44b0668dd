/* queue.c - the durable spool of removals (layout and rules in queue.h).
 *
 * The files are records of a record directory (recdir.h): every operation
 * after ps_queue_open() goes through a descriptor opened once (O_NOFOLLOW):
 * the spool directory, dead/ and invalid/, so a directory swapped for a
 * symlink later cannot redirect a write. This file knows what an entry is:
 * its JSON form, its name, its lock and its states. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* renameat2, RENAME_NOREPLACE */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "jsonstrict.h"
#include "queue.h"
#include "recdir.h"

#define QDIR_DEAD    "dead"
#define QDIR_INVALID "invalid"
#define QSUFFIX      ".json"
#define QJSON_DEPTH  4 /* an entry is one flat object */

struct ps_queue {
    char *dir;      /* path, for messages only */
    int dfd;        /* the queue directory */
    int dead_fd;    /* dead/ */
    int invalid_fd; /* invalid/ */
};

/* ------------------------------------------------------------ helpers */

#define seterr ps_seterr

static int has_suffix(const char *s, const char *suffix)
{
    size_t ls = strlen(s);
    size_t lx = strlen(suffix);

    return ls >= lx && !strcmp(s + ls - lx, suffix);
}

/* A name we accept from a caller: "KEY.json" shaped, a single component,
 * never a dot-file. Keeps ps_queue_lock/done/dead_letter inside the dir. */
static int entry_name_ok(const char *name)
{
    size_t len;

    if(!name || !name[0] || name[0] == '.')
        return 0;
    len = strnlen(name, 32);
    if(len >= 32 || !has_suffix(name, QSUFFIX) || len == strlen(QSUFFIX))
        return 0;
    return strchr(name, '/') == NULL;
}

/* 1 when the NUL-terminated string fits in an array of `size` bytes. */
static int fits(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

/* ------------------------------------------------------------ open/close */

/* Strips trailing slashes ("/var/spool/q/" -> "/var/spool/q"), as the
 * directory is opened. */
static char *clean_dir(const char *dir)
{
    char *d = strdup(dir);
    size_t len;

    if(!d)
        return NULL;
    len = strlen(d);
    while(len > 1 && d[len - 1] == '/')
        d[--len] = '\0';
    return d;
}

int ps_queue_open(ps_queue_t **qp, const char *dir, char *err, size_t errlen)
{
    ps_queue_t *q = NULL;
    int rv = -1;

    *qp = NULL;
    if(!dir || !dir[0]) {
        seterr(err, errlen, "queue directory: empty path");
        return -1;
    }
    q = calloc(1, sizeof(*q));
    if(!q) {
        seterr(err, errlen, "queue: out of memory");
        return -1;
    }
    q->dfd = q->dead_fd = q->invalid_fd = -1;
    q->dir = clean_dir(dir);
    if(!q->dir) {
        seterr(err, errlen, "queue: out of memory");
        goto out;
    }
    /* only the last component: the parent must exist */
    q->dfd = ps_recdir_open(q->dir, 1, err, errlen);
    if(q->dfd < 0)
        goto out;
    q->dead_fd = ps_recdir_open_sub(q->dfd, q->dir, QDIR_DEAD, err, errlen);
    if(q->dead_fd < 0)
        goto out;
    q->invalid_fd = ps_recdir_open_sub(q->dfd, q->dir, QDIR_INVALID, err, errlen);
    if(q->invalid_fd < 0)
        goto out;

    *qp = q;
    q = NULL;
    rv = 0;
out:
    ps_queue_close(q);
    return rv;
}

void ps_queue_close(ps_queue_t *q)
{
    if(!q)
        return;
    if(q->dfd >= 0)
        close(q->dfd);
    if(q->dead_fd >= 0)
        close(q->dead_fd);
    if(q->invalid_fd >= 0)
        close(q->invalid_fd);
    free(q->dir);
    free(q);
}

const char *ps_queue_dir(const ps_queue_t *q)
{
    return q ? q->dir : NULL;
}

void ps_queue_name(const char *login, const char *organization, const char *id, char out[32])
{
    char key[17];

    ps_key_hex(login, organization, id, key);
    snprintf(out, 32, "%s" QSUFFIX, key);
}

void ps_queue_entry_name(const ps_qentry_t *e, char out[32])
{
    ps_queue_name(e->login, e->organization, e->email[0] ? e->email : e->id, out);
}

/* The entry's id is valid, or "" next to a valid email. */
static int id_email_ok(const ps_qentry_t *e)
{
    if(e->email[0] && (!fits(e->email, sizeof(e->email)) || !ps_email_valid(e->email)))
        return 0;
    if(!fits(e->id, sizeof(e->id)))
        return 0;
    return ps_id_valid(e->id) || (!e->id[0] && e->email[0]);
}

/* ------------------------------------------------------------ format/parse */

char *ps_queue_format(const ps_qentry_t *e)
{
    json_object *o = NULL;
    const char *s;
    char *out = NULL;
    size_t len;
    int bad = 0;

    if(!e || !fits(e->login, sizeof(e->login)) || !fits(e->organization, sizeof(e->organization)) ||
       !fits(e->id, sizeof(e->id)) || !fits(e->email, sizeof(e->email)) ||
       !fits(e->held_config, sizeof(e->held_config)) || !fits(e->trigger, sizeof(e->trigger)) ||
       (e->state != PS_Q_PENDING && e->state != PS_Q_HELD))
        return NULL;
    o = json_object_new_object();
    if(!o)
        return NULL;

#define ADD(k, v) bad |= json_object_object_add(o, k, v)
    ADD("version", json_object_new_int(2));
    ADD("login", json_object_new_string(e->login));
    ADD("organization", json_object_new_string(e->organization));
    ADD("id", json_object_new_string(e->id));
    if(e->email[0])
        ADD("email", json_object_new_string(e->email));
    ADD("delete_passwords", json_object_new_boolean(!!e->delete_passwords));
    ADD("delete_service_tokens", json_object_new_boolean(!!e->delete_service_tokens));
    ADD("recorded", json_object_new_int64(e->recorded));
    ADD("first_attempt", json_object_new_int64(e->first_attempt));
    ADD("last_attempt", json_object_new_int64(e->last_attempt));
    ADD("attempts", json_object_new_int(e->attempts));
    ADD("last_error", json_object_new_string_len(
                          e->last_error, (int)strnlen(e->last_error, sizeof(e->last_error) - 1)));
    ADD("state", json_object_new_string(ps_qstate_name(e->state)));
    ADD("held_at", json_object_new_int64(e->held_at));
    ADD("held_config", json_object_new_string(e->held_config));
    ADD("trigger", json_object_new_string(e->trigger));
    if(e->not_before > 0)
        ADD("not_before", json_object_new_int64(e->not_before));
#undef ADD
    if(bad)
        goto out;

    s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if(!s)
        goto out;
    len = strlen(s);
    out = malloc(len + 2);
    if(!out)
        goto out;
    memcpy(out, s, len);
    out[len] = '\n';
    out[len + 1] = '\0';
out:
    json_object_put(o);
    return out;
}

static int get_time(json_object *v, const char *key, long long *dst, char *err, size_t errlen)
{
    int64_t t;

    if(!json_object_is_type(v, json_type_int)) {
        seterr(err, errlen, "\"%s\" is not an integer", key);
        return -1;
    }
    t = json_object_get_int64(v);
    if(t < 0 || t == INT64_MAX) {
        seterr(err, errlen, "\"%s\" is out of range", key);
        return -1;
    }
    *dst = (long long)t;
    return 0;
}

/* last_error: any string, cut to fit without splitting a UTF-8 sequence. */
static int get_last_error(json_object *v, char *dst, size_t dstsz, char *err, size_t errlen)
{
    const char *s;
    size_t len;

    if(!json_object_is_type(v, json_type_string)) {
        seterr(err, errlen, "\"last_error\" is not a string");
        return -1;
    }
    s = json_object_get_string(v);
    len = s ? strlen(s) : 0;
    if(len >= dstsz) {
        len = dstsz - 1;
        while(len && ((unsigned char)s[len] & 0xc0) == 0x80)
            len--;
    }
    if(len)
        memcpy(dst, s, len);
    dst[len] = '\0';
    return 0;
}

enum {
    F_VERSION = 1 << 0,
    F_LOGIN = 1 << 1,
    F_ORG = 1 << 2,
    F_ID = 1 << 3,
    F_DELPW = 1 << 4,
    F_DELTOK = 1 << 5,
    F_FIRST = 1 << 6,
    F_LAST = 1 << 7,
    F_ATTEMPTS = 1 << 8,
    F_LASTERR = 1 << 9,
    F_RECORDED = 1 << 10,
    F_STATE = 1 << 11,
    F_HELDAT = 1 << 12,
    F_HELDCFG = 1 << 13,
    F_TRIGGER = 1 << 14,
    F_ALL_V1 = (1 << 10) - 1,
    F_ALL_V2 = (1 << 15) - 1,
    F_EMAIL = 1 << 15,    /* optional, version 2 */
    F_NOTBEFORE = 1 << 16 /* optional (version 2): only a spread entry has it */
};

const char *ps_qstate_name(int state)
{
    return state == PS_Q_HELD ? "held" : "pending";
}

/* A short word of lowercase letters and '-' (a trigger), or "". */
static int word_ok(const char *s)
{
    for(; *s; s++)
        if(!((*s >= 'a' && *s <= 'z') || *s == '-'))
            return 0;
    return 1;
}

/* "" or up to 16 lowercase hex digits (a fingerprint). */
static int hex_ok(const char *s)
{
    for(; *s; s++)
        if(!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return 0;
    return 1;
}

static int get_bool(json_object *v, const char *key, int *dst, char *err, size_t errlen)
{
    if(!json_object_is_type(v, json_type_boolean)) {
        seterr(err, errlen, "\"%s\" is not a boolean", key);
        return -1;
    }
    *dst = json_object_get_boolean(v) ? 1 : 0;
    return 0;
}

/* Copies a JSON string that may be empty, checked by ok(). */
static int get_word(json_object *v, const char *key, char *dst, size_t dstsz,
                    int (*ok)(const char *), char *err, size_t errlen)
{
    const char *s;

    if(!json_object_is_type(v, json_type_string)) {
        seterr(err, errlen, "\"%s\" is not a string", key);
        return -1;
    }
    s = json_object_get_string(v);
    if(!s || strlen(s) != (size_t)json_object_get_string_len(v) || strlen(s) >= dstsz || !ok(s)) {
        seterr(err, errlen, "\"%s\" is not valid", key);
        return -1;
    }
    memcpy(dst, s, strlen(s) + 1);
    return 0;
}

/* Applies one key/value; returns its F_ bit, 0 for an unknown key, or -1.
 * *version is set by the "version" field. */
static int parse_field(const char *key, json_object *v, ps_qentry_t *e, int *version, char *err,
                       size_t errlen)
{
    int64_t n;

    if(!strcmp(key, "version")) {
        n = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : 0;
        if(n != 1 && n != 2) {
            seterr(err, errlen, "unsupported \"version\" (expected 1 or 2)");
            return -1;
        }
        *version = (int)n;
        return F_VERSION;
    }
    if(!strcmp(key, "recorded"))
        return get_time(v, key, &e->recorded, err, errlen) ? -1 : F_RECORDED;
    if(!strcmp(key, "held_at"))
        return get_time(v, key, &e->held_at, err, errlen) ? -1 : F_HELDAT;
    if(!strcmp(key, "not_before"))
        return get_time(v, key, &e->not_before, err, errlen) ? -1 : F_NOTBEFORE;
    if(!strcmp(key, "held_config"))
        return get_word(v, key, e->held_config, sizeof(e->held_config), hex_ok, err, errlen)
                   ? -1
                   : F_HELDCFG;
    if(!strcmp(key, "trigger"))
        return get_word(v, key, e->trigger, sizeof(e->trigger), word_ok, err, errlen) ? -1
                                                                                      : F_TRIGGER;
    if(!strcmp(key, "state")) {
        const char *st = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";

        if(!strcmp(st, "pending")) {
            e->state = PS_Q_PENDING;
        } else if(!strcmp(st, "held")) {
            e->state = PS_Q_HELD;
        } else {
            seterr(err, errlen, "\"state\" is not \"pending\" or \"held\"");
            return -1;
        }
        return F_STATE;
    }
    if(!strcmp(key, "login")) {
        if(ps_json_str(v, key, e->login, sizeof(e->login), err, errlen))
            return -1;
        if(!ps_login_valid(e->login)) {
            seterr(err, errlen, "\"login\" is not a valid login");
            return -1;
        }
        return F_LOGIN;
    }
    if(!strcmp(key, "organization") || !strcmp(key, "id")) {
        int is_id = key[0] == 'i';
        char *dst = is_id ? e->id : e->organization;
        size_t sz = is_id ? sizeof(e->id) : sizeof(e->organization);
        if(ps_json_str(v, key, dst, sz, err, errlen))
            return -1;
        if(is_id && !dst[0])
            return F_ID; /* allowed next to an email (checked once every field is read) */
        if(!ps_id_valid(dst)) {
            seterr(err, errlen, "\"%s\" is not a valid %s", key,
                   is_id ? "user id" : "organization");
            return -1;
        }
        return is_id ? F_ID : F_ORG;
    }
    if(!strcmp(key, "email")) {
        if(ps_json_str(v, key, e->email, sizeof(e->email), err, errlen))
            return -1;
        if(!ps_email_valid(e->email)) {
            seterr(err, errlen, "\"email\" is not a valid email address");
            return -1;
        }
        return F_EMAIL;
    }
    if(!strcmp(key, "delete_passwords"))
        return get_bool(v, key, &e->delete_passwords, err, errlen) ? -1 : F_DELPW;
    if(!strcmp(key, "delete_service_tokens"))
        return get_bool(v, key, &e->delete_service_tokens, err, errlen) ? -1 : F_DELTOK;
    if(!strcmp(key, "first_attempt"))
        return get_time(v, key, &e->first_attempt, err, errlen) ? -1 : F_FIRST;
    if(!strcmp(key, "last_attempt"))
        return get_time(v, key, &e->last_attempt, err, errlen) ? -1 : F_LAST;
    if(!strcmp(key, "attempts")) {
        if(!json_object_is_type(v, json_type_int)) {
            seterr(err, errlen, "\"attempts\" is not an integer");
            return -1;
        }
        n = json_object_get_int64(v);
        if(n < 0 || n > INT_MAX) {
            seterr(err, errlen, "\"attempts\" is out of range");
            return -1;
        }
        e->attempts = (int)n;
        return F_ATTEMPTS;
    }
    if(!strcmp(key, "last_error"))
        return get_last_error(v, e->last_error, sizeof(e->last_error), err, errlen) ? -1
                                                                                    : F_LASTERR;
    return 0;
}

int ps_queue_parse(const char *buf, size_t len, ps_qentry_t *out, char *err, size_t errlen)
{
    json_object *root = NULL;
    ps_qentry_t e;
    int seen = 0;
    int version = 0;
    int want;
    int rv = -1;

    memset(&e, 0, sizeof(e));
    if(!buf || !out) {
        seterr(err, errlen, "no data");
        return -1;
    }
    if(len > PS_QENTRY_MAX) {
        seterr(err, errlen, "larger than %d bytes", PS_QENTRY_MAX);
        return -1;
    }
    root = ps_json_object(buf, len, QJSON_DEPTH, err, errlen);
    if(!root)
        goto out;
    {
        json_object_object_foreach(root, key, val)
        {
            int bit = parse_field(key, val, &e, &version, err, errlen);
            if(bit < 0)
                goto out;
            if(bit == 0) {
                char esc[64];
                seterr(err, errlen, "unknown field \"%s\"", ps_escape(key, esc, sizeof(esc)));
                goto out;
            }
            seen |= bit;
        }
    }
    want = version == 1 ? F_ALL_V1 : F_ALL_V2;
    if(version == 1 && (seen & ~F_ALL_V1)) {
        seterr(err, errlen, "a version 1 entry with version 2 fields");
        goto out;
    }
    if((seen & want) != want) {
        static const char *const names[] = { "version",          "login",
                                             "organization",     "id",
                                             "delete_passwords", "delete_service_tokens",
                                             "first_attempt",    "last_attempt",
                                             "attempts",         "last_error",
                                             "recorded",         "state",
                                             "held_at",          "held_config",
                                             "trigger" };
        size_t i;
        for(i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            if((want & (1 << i)) && !(seen & (1 << i))) {
                seterr(err, errlen, "missing field \"%s\"", names[i]);
                break;
            }
        }
        goto out;
    }
    if(version == 1) {
        /* version 1 kept the record's time in first_attempt */
        e.recorded = e.first_attempt;
        if(e.attempts == 0 && e.last_attempt == 0)
            e.first_attempt = 0;
    }
    if(e.state == PS_Q_HELD && e.held_at == 0) {
        seterr(err, errlen, "a held entry without \"held_at\"");
        goto out;
    }
    if(!e.id[0] && !e.email[0]) {
        seterr(err, errlen, "\"id\" is empty and there is no \"email\"");
        goto out;
    }
    ps_queue_entry_name(&e, e.name);
    *out = e;
    rv = 0;
out:
    json_object_put(root);
    return rv;
}

/* ------------------------------------------------------------ put */

/* A spool entry's bytes, parsed strictly, with a name that matches its
 * content (recdir's parse callback). */
static int entry_cb(void *arg, const char *name, const char *buf, size_t len, void *out, char *why,
                    size_t whylen)
{
    ps_qentry_t *e = out;
    char want[32];

    (void)arg;
    if(ps_queue_parse(buf, len, e, why, whylen) != 0)
        return -1;
    ps_queue_entry_name(e, want);
    if(strcmp(want, name) != 0) {
        seterr(why, whylen, "name does not match its content (expected %s)", want);
        return -1;
    }
    return 0;
}

/* The same, keeping only what `retry` sorts and selects by (ps_qref_t). */
static int ref_cb(void *arg, const char *name, const char *buf, size_t len, void *out, char *why,
                  size_t whylen)
{
    ps_qref_t *ref = out;
    ps_qentry_t e;

    if(entry_cb(arg, name, buf, len, &e, why, whylen) != 0)
        return -1;
    memcpy(ref->name, e.name, sizeof(ref->name));
    ref->recorded = e.recorded;
    ref->first_attempt = e.first_attempt;
    ref->not_before = e.not_before;
    ref->state = e.state;
    memcpy(ref->held_config, e.held_config, sizeof(ref->held_config));
    return 0;
}

/* Reads the current entry `name`, if any and valid, into old.
 * Returns 1 when found, 0 when absent or unreadable/invalid. */
static int read_existing(int dfd, const char *name, ps_qentry_t *old)
{
    char why[256];

    return ps_recdir_read(dfd, name, PS_QENTRY_MAX, entry_cb, NULL, old, why, sizeof(why)) == 0;
}

int ps_queue_put(ps_queue_t *q, ps_qentry_t *e, char *err, size_t errlen)
{
    ps_qentry_t old;
    char *data;
    int rv;

    if(!q || !e) {
        seterr(err, errlen, "queue: invalid argument");
        return -1;
    }
    if(!fits(e->login, sizeof(e->login)) || !ps_login_valid(e->login) ||
       !fits(e->organization, sizeof(e->organization)) || !ps_id_valid(e->organization) ||
       !id_email_ok(e)) {
        seterr(err, errlen,
               "%s: refusing to queue an entry with an invalid "
               "login, organization or id",
               q->dir);
        return -1;
    }
    if(e->first_attempt < 0 || e->last_attempt < 0 || e->attempts < 0 || e->recorded < 0 ||
       e->held_at < 0 || e->not_before < 0 || e->first_attempt == LLONG_MAX ||
       e->last_attempt == LLONG_MAX || e->recorded == LLONG_MAX || e->held_at == LLONG_MAX ||
       e->not_before == LLONG_MAX) {
        seterr(err, errlen,
               "%s: refusing to queue an entry with an "
               "out-of-range time or attempt count",
               q->dir);
        return -1;
    }
    if(e->recorded == 0)
        e->recorded = (long long)time(NULL);
    ps_queue_entry_name(e, e->name);

    if(read_existing(q->dfd, e->name, &old)) {
        /* an email entry keeps its key while its id gets resolved */
        if(strcmp(old.login, e->login) || strcmp(old.organization, e->organization) ||
           strcmp(old.email, e->email) || (!old.email[0] && strcmp(old.id, e->id))) {
            seterr(err, errlen,
                   "%s/%s: holds another request with the same "
                   "key; not overwritten",
                   q->dir, e->name);
            return -1;
        }
        if(old.recorded < e->recorded)
            e->recorded = old.recorded;
    }

    data = ps_queue_format(e);
    if(!data) {
        seterr(err, errlen, "%s/%s: out of memory", q->dir, e->name);
        return -1;
    }
    rv = ps_write_file_atomic(q->dfd, q->dir, e->name, data, err, errlen);
    free(data);
    return rv;
}

/* ------------------------------------------------------------ list */

static int cmp_entry(const void *a, const void *b)
{
    const ps_qentry_t *x = a;
    const ps_qentry_t *y = b;

    if(x->recorded != y->recorded)
        return x->recorded < y->recorded ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_ref(const void *a, const void *b)
{
    const ps_qref_t *x = a;
    const ps_qref_t *y = b;

    if(x->recorded != y->recorded)
        return x->recorded < y->recorded ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Lists and validates; `compact` keeps only what ps_qref_t holds, so that a
 * long queue costs little memory. */
static int list_core(ps_queue_t *q, int dead, int compact, void **entries, size_t *n,
                     ps_queue_invalid_cb on_invalid, void *arg, char *err, size_t errlen)
{
    char where[PATH_MAX];
    ps_recdir_list_opts_t o;

    snprintf(where, sizeof(where), "%s%s", q->dir, dead ? "/" QDIR_DEAD : "");
    memset(&o, 0, sizeof(o));
    o.suffix = QSUFFIX;
    o.name_max = 32;
    o.max = PS_QENTRY_MAX;
    o.size = compact ? sizeof(ps_qref_t) : sizeof(ps_qentry_t);
    o.parse = compact ? ref_cb : entry_cb;
    o.cmp = compact ? cmp_ref : cmp_entry;
    o.invalid_fd = q->invalid_fd;
    o.on_invalid = on_invalid;
    o.invalid_arg = arg;
    return ps_recdir_list(dead ? q->dead_fd : q->dfd, where, &o, entries, n, err, errlen);
}

int ps_queue_list(ps_queue_t *q, int dead, ps_qentry_t **entries, size_t *n,
                  ps_queue_invalid_cb on_invalid, void *arg, char *err, size_t errlen)
{
    void *list = NULL;
    int rv = list_core(q, dead, 0, &list, n, on_invalid, arg, err, errlen);

    *entries = list;
    return rv;
}

int ps_queue_list_refs(ps_queue_t *q, int dead, ps_qref_t **refs, size_t *n,
                       ps_queue_invalid_cb on_invalid, void *arg, char *err, size_t errlen)
{
    void *list = NULL;
    int rv = list_core(q, dead, 1, &list, n, on_invalid, arg, err, errlen);

    *refs = list;
    return rv;
}

/* ------------------------------------------------------------ lock */

/* Opens `name` and takes its flock, polling until `deadline`. Returns 0
 * with *fdp, 1 when busy, 2 when there is no such entry, -1 (err). */
/* Each key has a lock file ".NAME.lock" beside its entry. The entry itself
 * is replaced by rename on every rewrite, so a lock on it would not survive
 * a rewrite; the lock file is never renamed, only unlinked by the holder
 * once the entry is gone, and a waiter that then wins the lock on the
 * unlinked file notices and starts over. Dot-files are never entries. */
static void lock_file_name(const char *name, char out[48])
{
    snprintf(out, 48, ".%s.lock", name);
}

static int lock_key(ps_queue_t *q, const char *name, double deadline, int *fdp, char *err,
                    size_t errlen)
{
    char lname[48];
    int tries, r;

    *fdp = -1;
    lock_file_name(name, lname);
    for(tries = 0;; tries++) {
        struct stat st, cur;
        int fd = openat(q->dfd, lname,
                        O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0600);

        if(fd < 0) {
            seterr(err, errlen, "%s/%s: %s", q->dir, lname, strerror(errno));
            return -1;
        }
        r = ps_recdir_flock(fd, deadline);
        if(r < 0) {
            seterr(err, errlen, "%s/%s: lock: %s", q->dir, lname, strerror(errno));
            close(fd);
            return -1;
        }
        if(r == 1) {
            close(fd);
            return 1;
        }
        if(fstat(fd, &st) == 0 && fstatat(q->dfd, lname, &cur, AT_SYMLINK_NOFOLLOW) == 0 &&
           st.st_dev == cur.st_dev && st.st_ino == cur.st_ino) {
            *fdp = fd;
            return 0;
        }
        /* the previous holder unlinked it: lock the current one */
        close(fd);
        if(tries >= 100)
            return 1;
    }
}

int ps_queue_lock_key(ps_queue_t *q, const char *name, double wait, int *fdp, char *err,
                      size_t errlen)
{
    *fdp = -1;
    if(!q || !entry_name_ok(name)) {
        seterr(err, errlen, "queue: invalid entry name");
        return -1;
    }
    return lock_key(q, name, ps_now() + (wait > 0 ? wait : 0), fdp, err, errlen);
}

int ps_queue_adopt_lock(ps_queue_t *q, const char *name, int fd, char *err, size_t errlen)
{
    char lname[48];
    struct stat st, cur;

    if(!q || !entry_name_ok(name)) {
        seterr(err, errlen, "queue: invalid entry name");
        return -1;
    }
    lock_file_name(name, lname);
    if(fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
       fstatat(q->dfd, lname, &cur, AT_SYMLINK_NOFOLLOW) != 0 || st.st_dev != cur.st_dev ||
       st.st_ino != cur.st_ino) {
        seterr(err, errlen, "%s/%s: the descriptor is not this entry's lock file", q->dir, lname);
        return 1;
    }
    while(flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if(errno == EINTR)
            continue;
        if(errno == EWOULDBLOCK) {
            seterr(err, errlen, "%s/%s: locked by another process", q->dir, lname);
            return 1;
        }
        seterr(err, errlen, "%s/%s: lock: %s", q->dir, lname, strerror(errno));
        return -1;
    }
    return 0;
}

int ps_queue_read(ps_queue_t *q, const char *name, ps_qentry_t *e, char *err, size_t errlen)
{
    char why[512];
    int r;

    if(!q || !e || !entry_name_ok(name)) {
        seterr(err, errlen, "queue: invalid entry name");
        return -1;
    }
    r = ps_recdir_read(q->dfd, name, PS_QENTRY_MAX, entry_cb, NULL, e, why, sizeof(why));
    if(r == 2)
        return 2;
    if(r != 0) {
        seterr(err, errlen, "%s/%s: %s", q->dir, name, why);
        return -1;
    }
    return 0;
}

/* The holder of a key whose entry is gone drops the lock file. */
static void unlink_lock_file(ps_queue_t *q, const char *name)
{
    char lname[48];

    lock_file_name(name, lname);
    (void)unlinkat(q->dfd, lname, 0);
}

int ps_queue_lock(ps_queue_t *q, const char *name, double wait, int *fdp, ps_qentry_t *e, char *err,
                  size_t errlen)
{
    int fd = -1;
    int rv;

    *fdp = -1;
    if(!q || !e || !entry_name_ok(name)) {
        seterr(err, errlen, "queue: invalid entry name");
        return -1;
    }
    rv = lock_key(q, name, ps_now() + (wait > 0 ? wait : 0), &fd, err, errlen);
    if(rv != 0)
        return rv;
    rv = ps_queue_read(q, name, e, err, errlen);
    if(rv == 2)
        unlink_lock_file(q, name); /* completed (or moved aside) meanwhile */
    if(rv != 0) {
        close(fd);
        return rv;
    }
    *fdp = fd;
    return 0;
}

void ps_queue_unlock(int fd)
{
    if(fd >= 0)
        close(fd);
}

/* ------------------------------------------------------------ done/dead */

int ps_queue_done(ps_queue_t *q, const char *name, char *err, size_t errlen)
{
    if(!q || !entry_name_ok(name)) {
        seterr(err, errlen, "queue: invalid entry name");
        return -1;
    }
    if(unlinkat(q->dfd, name, 0) != 0 && errno != ENOENT) {
        seterr(err, errlen, "%s/%s: remove: %s", q->dir, name, strerror(errno));
        return -1;
    }
    unlink_lock_file(q, name);
    if(ps_recdir_sync(q->dfd) != 0) {
        seterr(err, errlen, "%s: fsync: %s", q->dir, strerror(errno));
        return -1;
    }
    return 0;
}

int ps_queue_dead_letter(ps_queue_t *q, const char *name, char *err, size_t errlen)
{
    if(!q || !entry_name_ok(name)) {
        seterr(err, errlen, "queue: invalid entry name");
        return -1;
    }
    if(renameat(q->dfd, name, q->dead_fd, name) != 0) {
        seterr(err, errlen, "%s/%s: move to %s/: %s", q->dir, name, QDIR_DEAD, strerror(errno));
        return -1;
    }
    unlink_lock_file(q, name);
    if(ps_recdir_sync(q->dead_fd) != 0 || ps_recdir_sync(q->dfd) != 0) {
        seterr(err, errlen, "%s: fsync: %s", q->dir, strerror(errno));
        return -1;
    }
    return 0;
}

int ps_queue_drop(ps_queue_t *q, const char *name, double wait, ps_qentry_t *e, char *err,
                  size_t errlen)
{
    int fd = -1;
    int rv;

    if(!q || !e || !entry_name_ok(name)) {
        seterr(err, errlen, "queue: not an entry name: expected KEY.json as `queue` shows it");
        return -1;
    }
    rv = ps_queue_lock(q, name, wait, &fd, e, err, errlen);
    if(rv == 1) {
        seterr(err, errlen, "%s/%s: being sent by another process; try again", q->dir, name);
        return 1;
    }
    if(rv == 0) {
        rv = ps_queue_done(q, name, err, errlen);
        ps_queue_unlock(fd);
        return rv;
    }
    if(rv != 2)
        return rv;
    /* not live: a dead letter? */
    rv = ps_recdir_read(q->dead_fd, name, PS_QENTRY_MAX, entry_cb, NULL, e, err, errlen);
    if(rv == 2) {
        seterr(err, errlen, "%s: no entry %s (see `queue`)", q->dir, name);
        return 2;
    }
    if(rv < 0)
        return -1;
    if(rv == 1) {
        /* not a valid entry, but the administrator asked for this file */
        memset(e, 0, sizeof(*e));
        snprintf(e->name, sizeof(e->name), "%s", name);
    }
    if(unlinkat(q->dead_fd, name, 0) != 0) {
        seterr(err, errlen, "%s/" QDIR_DEAD "/%s: remove: %s", q->dir, name, strerror(errno));
        return -1;
    }
    if(ps_recdir_sync(q->dead_fd) != 0) {
        seterr(err, errlen, "%s/" QDIR_DEAD ": fsync: %s", q->dir, strerror(errno));
        return -1;
    }
    return 0;
}

int ps_queue_revive(ps_queue_t *q, const char *name, char *err, size_t errlen)
{
    struct stat st;
    ps_qentry_t e;

    if(!q || !entry_name_ok(name)) {
        seterr(err, errlen, "queue: invalid entry name");
        return -1;
    }
    if(fstatat(q->dead_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return 2;
    /* never over a live entry: the live one is the newer request */
    if(renameat2(q->dead_fd, name, q->dfd, name, RENAME_NOREPLACE) != 0) {
        if(errno == EEXIST)
            return 2;
        if(errno != EINVAL && errno != ENOSYS) {
            seterr(err, errlen, "%s/" QDIR_DEAD "/%s: move back: %s", q->dir, name,
                   strerror(errno));
            return -1;
        }
        if(fstatat(q->dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
            return 2;
        if(renameat(q->dead_fd, name, q->dfd, name) != 0) {
            seterr(err, errlen, "%s/" QDIR_DEAD "/%s: move back: %s", q->dir, name,
                   strerror(errno));
            return -1;
        }
    }
    if(ps_recdir_sync(q->dfd) != 0 || ps_recdir_sync(q->dead_fd) != 0) {
        seterr(err, errlen, "%s: fsync: %s", q->dir, strerror(errno));
        return -1;
    }
    /* brought back to be sent again: it ages from its next attempt */
    if(ps_queue_read(q, name, &e, err, errlen) == 0 && e.first_attempt != 0) {
        e.first_attempt = 0;
        if(ps_queue_put(q, &e, err, errlen) != 0)
            return -1;
    }
    return 0;
}
