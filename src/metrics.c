/* metrics.c - the node_exporter textfile (see metrics.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
#include "metrics.h"
#include "queue.h"
#include "unresolved.h"

#define STATE_MAX 65536 /* a state file larger than this is not ours */

/* The outcome words removals_total counts: every audit word of a removal
 * (outcome.h's table, and the spool's own: dead-letter, dropped,
 * cancelled). dry-run changes nothing and is not counted. */
static const char *const outcomes[] = { "removed",  "absent",   "scheduled",  "queued",
                                        "held",     "refused",  "not-queued", "failed",
                                        "recorded", "unmapped", "invalid",    "dead-letter",
                                        "dropped",  "cancelled" };

#define NOUT (sizeof(outcomes) / sizeof(outcomes[0]))

struct ps_metrics {
    long long delta[NOUT]; /* counted since the last write (atomics: any thread) */
    int retry_set;         /* a retry run ended (the command's thread only) */
    int retry_complete;
    long long retry_at;
    int reconcile_set;
    long long reconcile_at;
    long long reconcile_candidates;
    int reconcile_tripped;
};

/* What the spool keeps across processes (PS_METRICS_STATE). */
typedef struct state {
    long long removals[NOUT];
    long long last_retry;
    long long last_complete_retry;
    int have_reconcile;
    long long reconcile_at;
    long long reconcile_candidates;
    int reconcile_tripped;
} state_t;

/* What the spool holds now. */
typedef struct spool_figures {
    size_t pending, held, dead, unresolved;
    long long oldest_pending; /* recorded time, 0 = none pending */
} spool_figures_t;

size_t ps_metrics_outcomes(const char *const **words)
{
    *words = outcomes;
    return NOUT;
}

ps_metrics_t *ps_metrics_new(void)
{
    return calloc(1, sizeof(ps_metrics_t));
}

void ps_metrics_free(ps_metrics_t *m)
{
    free(m);
}

void ps_metrics_count(void *arg, const char *outcome)
{
    ps_metrics_t *m = arg;
    size_t i;

    if(!m || !outcome)
        return;
    for(i = 0; i < NOUT; i++) {
        if(strcmp(outcomes[i], outcome) == 0) {
            __atomic_fetch_add(&m->delta[i], 1, __ATOMIC_RELAXED);
            return;
        }
    }
}

void ps_metrics_attach(ps_metrics_t *m, ps_log_t *lg)
{
    if(!m)
        return;
    lg->on_audit = ps_metrics_count;
    lg->on_audit_arg = m;
}

void ps_metrics_retry(ps_metrics_t *m, int complete)
{
    if(!m)
        return;
    m->retry_set = 1;
    m->retry_complete = complete;
    m->retry_at = (long long)time(NULL);
}

void ps_metrics_reconcile(ps_metrics_t *m, size_t candidates, int cap_tripped)
{
    if(!m)
        return;
    m->reconcile_set = 1;
    m->reconcile_at = (long long)time(NULL);
    m->reconcile_candidates = (long long)candidates;
    m->reconcile_tripped = cap_tripped ? 1 : 0;
}

/* ------------------------------------------------------------ state */

static int get_count(json_object *o, const char *key, long long *out)
{
    json_object *v;

    if(!json_object_object_get_ex(o, key, &v))
        return 0;
    if(!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
        return -1;
    *out = json_object_get_int64(v);
    return 0;
}

/* Parses the state file's bytes; -1 with why when it is not one. Keys it
 * does not know are ignored (a newer version may add some). */
static int parse_state(const char *buf, size_t len, state_t *st, char *why, size_t whylen)
{
    json_object *root, *rem = NULL, *rec = NULL, *v;
    size_t i;
    int rv = -1;

    memset(st, 0, sizeof(*st));
    root = ps_json_object(buf, len, 4, why, whylen);
    if(!root)
        return -1;
    snprintf(why, whylen, "not a metrics state object");
    if(!json_object_object_get_ex(root, "version", &v) || !json_object_is_type(v, json_type_int) ||
       json_object_get_int64(v) != 1)
        goto out;
    snprintf(why, whylen, "a field has the wrong type");
    if(json_object_object_get_ex(root, "removals", &rem)) {
        if(!json_object_is_type(rem, json_type_object))
            goto out;
        for(i = 0; i < NOUT; i++)
            if(get_count(rem, outcomes[i], &st->removals[i]) != 0)
                goto out;
    }
    if(get_count(root, "last_retry", &st->last_retry) != 0 ||
       get_count(root, "last_complete_retry", &st->last_complete_retry) != 0)
        goto out;
    if(json_object_object_get_ex(root, "reconcile", &rec)) {
        if(!json_object_is_type(rec, json_type_object) ||
           get_count(rec, "at", &st->reconcile_at) != 0 ||
           get_count(rec, "candidates", &st->reconcile_candidates) != 0 ||
           !json_object_object_get_ex(rec, "cap_tripped", &v) ||
           !json_object_is_type(v, json_type_boolean))
            goto out;
        st->reconcile_tripped = json_object_get_boolean(v) ? 1 : 0;
        st->have_reconcile = 1;
    }
    rv = 0;
out:
    json_object_put(root);
    return rv;
}

static char *format_state(const state_t *st)
{
    json_object *root = json_object_new_object(), *rem = json_object_new_object();
    char *out = NULL;
    size_t i;

    if(!root || !rem) {
        json_object_put(root);
        json_object_put(rem);
        return NULL;
    }
    json_object_object_add(root, "version", json_object_new_int(1));
    for(i = 0; i < NOUT; i++)
        json_object_object_add(rem, outcomes[i], json_object_new_int64(st->removals[i]));
    json_object_object_add(root, "removals", rem);
    json_object_object_add(root, "last_retry", json_object_new_int64(st->last_retry));
    json_object_object_add(root, "last_complete_retry",
                           json_object_new_int64(st->last_complete_retry));
    if(st->have_reconcile) {
        json_object *rec = json_object_new_object();

        json_object_object_add(rec, "at", json_object_new_int64(st->reconcile_at));
        json_object_object_add(rec, "candidates", json_object_new_int64(st->reconcile_candidates));
        json_object_object_add(rec, "cap_tripped", json_object_new_boolean(st->reconcile_tripped));
        json_object_object_add(root, "reconcile", rec);
    }
    if(asprintf(&out, "%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN)) < 0)
        out = NULL;
    json_object_put(root);
    return out;
}

/* Reads the state; a missing file is a zero state. A file that is not
 * valid is logged and counted from zero again (Prometheus takes a counter
 * that goes down for a restart). */
static void read_state(int dfd, const char *dir, state_t *st, const ps_log_t *lg)
{
    char *buf, reason[256];
    const char *why = NULL;
    struct stat sb;
    ssize_t len = 0, r;
    int fd;

    memset(st, 0, sizeof(*st));
    fd = openat(dfd, PS_METRICS_STATE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if(fd < 0) {
        if(errno != ENOENT)
            ps_logf(lg, LOG_WARNING, "metrics: %s/%s: %s; the counters start again from zero", dir,
                    PS_METRICS_STATE, strerror(errno));
        return;
    }
    buf = malloc(STATE_MAX + 1);
    if(fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > STATE_MAX || !buf) {
        why = "not a regular file of at most 64 KiB";
    } else {
        while(len < STATE_MAX && (r = read(fd, buf + len, (size_t)(STATE_MAX - len))) != 0) {
            if(r < 0 && errno == EINTR)
                continue;
            if(r < 0) {
                why = strerror(errno);
                break;
            }
            len += r;
        }
        if(!why && parse_state(buf, (size_t)len, st, reason, sizeof(reason)) != 0)
            why = reason;
    }
    if(why)
        ps_logf(lg, LOG_WARNING,
                "metrics: %s/%s is not valid (%s); the counters start again from zero", dir,
                PS_METRICS_STATE, why);
    free(buf);
    close(fd);
}

/* ------------------------------------------------------------ the spool */

static int read_spool(const ps_config_t *cfg, spool_figures_t *sf, const ps_log_t *lg)
{
    char err[1024];
    ps_queue_t *q = NULL;
    ps_qref_t *refs = NULL;
    ps_unresolved_t *u = NULL;
    size_t n = 0, i;

    memset(sf, 0, sizeof(*sf));
    if(ps_queue_open(&q, cfg->queue_dir, err, sizeof(err)) != 0 ||
       ps_queue_list_refs(q, 0, &refs, &n, NULL, NULL, err, sizeof(err)) != 0) {
        ps_logf(lg, LOG_WARNING, "metrics: %s", err);
        ps_queue_close(q);
        return -1;
    }
    for(i = 0; i < n; i++) {
        if(refs[i].state == PS_Q_HELD) {
            sf->held++;
        } else {
            sf->pending++;
            if(!sf->oldest_pending || refs[i].recorded < sf->oldest_pending)
                sf->oldest_pending = refs[i].recorded;
        }
    }
    free(refs);
    refs = NULL;
    if(ps_queue_list_refs(q, 1, &refs, &sf->dead, NULL, NULL, err, sizeof(err)) != 0) {
        ps_logf(lg, LOG_WARNING, "metrics: %s", err);
        ps_queue_close(q);
        return -1;
    }
    free(refs);
    ps_queue_close(q);
    /* as `queue` counts them: a held record is held, the others unresolved */
    if(ps_unresolved_list(ps_unresolved_dir(), &u, &n, NULL, err, sizeof(err)) != 0) {
        ps_logf(lg, LOG_WARNING, "metrics: unresolved removals: %s", err);
        return -1;
    }
    for(i = 0; i < n; i++) {
        if(u[i].held_at > 0)
            sf->held++;
        else
            sf->unresolved++;
    }
    free(u);
    return 0;
}

/* ------------------------------------------------------------ the file */

static void series(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP " PS_METRICS_PREFIX "%s %s\n# TYPE " PS_METRICS_PREFIX "%s %s\n", name, help,
            name, type);
}

static char *format_textfile(const state_t *st, const spool_figures_t *sf, long long now)
{
    static const char *const states[] = { "pending", "held", "dead", "unresolved" };
    size_t counts[4];
    char *text = NULL;
    size_t len = 0, i;
    FILE *f = open_memstream(&text, &len);

    if(!f)
        return NULL;
    counts[0] = sf->pending;
    counts[1] = sf->held;
    counts[2] = sf->dead;
    counts[3] = sf->unresolved;
    series(f, "spool_entries", "gauge",
           "Removals waiting in the spool, by state: pending (retried by the timer), held and "
           "dead (wait for a person), unresolved (recorded while the configuration did not "
           "load).");
    for(i = 0; i < 4; i++)
        fprintf(f, PS_METRICS_PREFIX "spool_entries{state=\"%s\"} %zu\n", states[i], counts[i]);
    series(f, "spool_oldest_pending_age_seconds", "gauge",
           "Seconds since the oldest pending removal was recorded; 0 when none is pending.");
    fprintf(f, PS_METRICS_PREFIX "spool_oldest_pending_age_seconds %lld\n",
            sf->oldest_pending > 0 && now > sf->oldest_pending ? now - sf->oldest_pending : 0);
    series(f, "removals_total", "counter",
           "Removal outcomes, one per audit line, by outcome: removed and absent are confirmed; "
           "scheduled and queued are pending; held, dead-letter and the others need a person.");
    for(i = 0; i < NOUT; i++)
        fprintf(f, PS_METRICS_PREFIX "removals_total{outcome=\"%s\"} %lld\n", outcomes[i],
                st->removals[i]);
    series(f, "last_retry_timestamp_seconds", "gauge",
           "Unix time at which a retry run last ended; 0 when none has run.");
    fprintf(f, PS_METRICS_PREFIX "last_retry_timestamp_seconds %lld\n", st->last_retry);
    series(f, "last_complete_retry_timestamp_seconds", "gauge",
           "Unix time at which a retry run last went through everything it had to send without "
           "stopping early (deadline, API outage, credential); 0 when none has.");
    fprintf(f, PS_METRICS_PREFIX "last_complete_retry_timestamp_seconds %lld\n",
            st->last_complete_retry);
    if(st->have_reconcile) {
        series(f, "reconcile_candidates", "gauge",
               "Memberships whose local account is gone, found by the last reconcile run.");
        fprintf(f, PS_METRICS_PREFIX "reconcile_candidates %lld\n", st->reconcile_candidates);
        series(f, "reconcile_cap_tripped", "gauge",
               "1 when the last reconcile run found more candidates than its cap allows and "
               "acted on none; else 0.");
        fprintf(f, PS_METRICS_PREFIX "reconcile_cap_tripped %d\n", st->reconcile_tripped);
        series(f, "last_reconcile_timestamp_seconds", "gauge",
               "Unix time of the last reconcile run that reported its candidates.");
        fprintf(f, PS_METRICS_PREFIX "last_reconcile_timestamp_seconds %lld\n", st->reconcile_at);
    }
    if(fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static int write_all_fd(int fd, const char *p, size_t n)
{
    while(n > 0) {
        ssize_t w = write(fd, p, n);

        if(w < 0 && errno == EINTR)
            continue;
        if(w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* path's directory (opened) and its file name. -1 with err. */
static int open_parent(const char *path, const char **base, char *err, size_t errlen)
{
    char dir[PS_METRICS_PATH_MAX + 1];
    const char *slash = strrchr(path, '/');
    size_t dlen;
    int dfd;

    if(!slash || strlen(path) > PS_METRICS_PATH_MAX) {
        snprintf(err, errlen, "%s: not an absolute path", path);
        return -1;
    }
    dlen = slash == path ? 1 : (size_t)(slash - path);
    memcpy(dir, path, dlen);
    dir[dlen] = '\0';
    *base = slash + 1;
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if(dfd < 0)
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
    return dfd;
}

/* The textfile, atomically: ".NAME.XXXXXX" in its directory (a name the
 * collector never reads: it must end in .prom), 0644 whatever the umask
 * (node_exporter runs as another user; the file holds counts only),
 * fsync, rename, fsync of the directory. */
static int write_textfile(const char *path, const char *text, char *err, size_t errlen)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    char tmp[NAME_MAX + 1];
    const char *base;
    int dfd, fd = -1, tries, rv = -1;

    dfd = open_parent(path, &base, err, errlen);
    if(dfd < 0)
        return -1;
    for(tries = 0; tries < 100 && fd < 0; tries++) {
        unsigned char rnd[8];
        char sfx[sizeof(rnd) + 1];
        size_t i;

        if(getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
            unsigned long long v = (unsigned long long)getpid() ^
                                   ((unsigned long long)tries << 32) ^
                                   (unsigned long long)time(NULL);

            for(i = 0; i < sizeof(rnd); i++)
                rnd[i] = (unsigned char)(v >> (i * 8));
        }
        for(i = 0; i < sizeof(rnd); i++)
            sfx[i] = chars[rnd[i] % (sizeof(chars) - 1)];
        sfx[sizeof(rnd)] = '\0';
        if(snprintf(tmp, sizeof(tmp), ".%.200s.%s", base, sfx) >= (int)sizeof(tmp))
            break;
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if(fd < 0 && errno != EEXIST)
            break;
    }
    if(fd < 0) {
        snprintf(err, errlen, "%s: cannot create a temporary file beside it: %s", path,
                 strerror(errno));
        close(dfd);
        return -1;
    }
    if(write_all_fd(fd, text, strlen(text)) != 0 || fchmod(fd, 0644) != 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "%s: writing the temporary file: %s", path, strerror(errno));
        goto out;
    }
    if(close(fd) != 0) {
        fd = -1;
        snprintf(err, errlen, "%s: writing the temporary file: %s", path, strerror(errno));
        goto out;
    }
    fd = -1;
    if(renameat(dfd, tmp, dfd, base) != 0) {
        snprintf(err, errlen, "%s: rename: %s", path, strerror(errno));
        goto out;
    }
    tmp[0] = '\0';
    (void)fsync(dfd); /* the file is whole either way; this only makes it last */
    rv = 0;
out:
    if(fd >= 0)
        close(fd);
    if(tmp[0])
        unlinkat(dfd, tmp, 0);
    close(dfd);
    return rv;
}

/* ------------------------------------------------------------ write */

/* flock with a bounded wait: 0 locked, -1 not (errno EWOULDBLOCK: busy). */
static int lock_bounded(int fd, double wait)
{
    double until = ps_now() + wait;

    for(;;) {
        struct timespec ts = { 0, 10 * 1000 * 1000 };

        if(flock(fd, LOCK_EX | LOCK_NB) == 0)
            return 0;
        if(errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        if(ps_now() >= until) {
            errno = EWOULDBLOCK;
            return -1;
        }
        nanosleep(&ts, NULL);
    }
}

/* Moves what m counted into st (taking it out of m). */
static void take(ps_metrics_t *m, state_t *st, long long taken[NOUT])
{
    size_t i;

    for(i = 0; i < NOUT; i++) {
        taken[i] = __atomic_exchange_n(&m->delta[i], 0, __ATOMIC_RELAXED);
        st->removals[i] += taken[i];
    }
    if(m->retry_set) {
        st->last_retry = m->retry_at;
        if(m->retry_complete)
            st->last_complete_retry = m->retry_at;
    }
    if(m->reconcile_set) {
        st->have_reconcile = 1;
        st->reconcile_at = m->reconcile_at;
        st->reconcile_candidates = m->reconcile_candidates;
        st->reconcile_tripped = m->reconcile_tripped;
    }
}

/* The state could not be kept: m keeps what it counted. */
static void give_back(ps_metrics_t *m, const long long taken[NOUT])
{
    size_t i;

    for(i = 0; i < NOUT; i++)
        __atomic_fetch_add(&m->delta[i], taken[i], __ATOMIC_RELAXED);
}

int ps_metrics_write(ps_metrics_t *m, const ps_config_t *cfg, const ps_log_t *lg)
{
    char err[1200];
    long long taken[NOUT];
    spool_figures_t sf;
    state_t st;
    char *data = NULL, *text = NULL;
    ps_queue_t *q = NULL;
    int dfd = -1, lfd = -1, rv = -1;

    if(!m || !cfg || !cfg->metrics_textfile)
        return 0;
    memset(taken, 0, sizeof(taken));
    /* the spool is checked (owner, mode) before its files are used */
    if(ps_queue_open(&q, cfg->queue_dir, err, sizeof(err)) != 0) {
        ps_logf(lg, LOG_WARNING, "metrics: %s; %s not written", err, cfg->metrics_textfile);
        return -1;
    }
    ps_queue_close(q);
    dfd = open(cfg->queue_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if(dfd >= 0)
        lfd = openat(dfd, PS_METRICS_LOCK, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if(lfd < 0 || lock_bounded(lfd, PS_METRICS_LOCK_WAIT) != 0) {
        ps_logf(lg, LOG_WARNING, "metrics: %s/%s: %s; %s not written this time", cfg->queue_dir,
                PS_METRICS_LOCK,
                errno == EWOULDBLOCK ? "held by another process for too long" : strerror(errno),
                cfg->metrics_textfile);
        goto out;
    }
    read_state(dfd, cfg->queue_dir, &st, lg);
    take(m, &st, taken);
    data = format_state(&st);
    if(!data ||
       ps_write_file_atomic(dfd, cfg->queue_dir, PS_METRICS_STATE, data, err, sizeof(err)) != 0) {
        give_back(m, taken);
        ps_logf(lg, LOG_WARNING, "metrics: %s; %s not written", data ? err : "out of memory",
                cfg->metrics_textfile);
        goto out;
    }
    m->retry_set = m->reconcile_set = 0;
    /* the spool's gauges; the textfile is written under the lock, so the
     * last writer's figures are the newest */
    if(read_spool(cfg, &sf, lg) != 0)
        goto out;
    text = format_textfile(&st, &sf, (long long)time(NULL));
    if(!text) {
        ps_logf(lg, LOG_WARNING, "metrics: out of memory; %s not written", cfg->metrics_textfile);
        goto out;
    }
    if(write_textfile(cfg->metrics_textfile, text, err, sizeof(err)) != 0) {
        ps_logf(lg, LOG_WARNING, "metrics: %s", err);
        goto out;
    }
    rv = 0;
out:
    free(data);
    free(text);
    if(lfd >= 0)
        close(lfd); /* releases the lock */
    if(dfd >= 0)
        close(dfd);
    return rv;
}
