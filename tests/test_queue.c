/* test_queue.c - unit tests of the durable queue (src/queue.c).
 * Each test works in its own mkdtemp directory; nothing needs root (a few
 * checks only run as root: chown to another uid). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "hooknote.h"
#include "queue.h"
#include "unresolved.h"

struct fx {
    char base[64];  /* the mkdtemp directory */
    char qdir[128]; /* base/q */
    ps_queue_t *q;
};

struct seen {
    int n;
    char names[32][NAME_MAX + 1];
    char reasons[32][512];
};

/* ------------------------------------------------------------ helpers */

static void on_invalid(void *arg, const char *name, const char *reason)
{
    struct seen *s = arg;

    if(s->n < 32) {
        snprintf(s->names[s->n], sizeof(s->names[0]), "%s", name);
        snprintf(s->reasons[s->n], sizeof(s->reasons[0]), "%s", reason);
    }
    s->n++;
}

static int seen_has(const struct seen *s, const char *name)
{
    int i;

    for(i = 0; i < s->n && i < 32; i++) {
        if(!strcmp(s->names[i], name))
            return 1;
    }
    return 0;
}

static const char *seen_reason(const struct seen *s, const char *name)
{
    int i;

    for(i = 0; i < s->n && i < 32; i++) {
        if(!strcmp(s->names[i], name))
            return s->reasons[i];
    }
    return "";
}

static void rm_rf(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *de;
    char sub[PATH_MAX];

    if(lstat(path, &st) != 0)
        return;
    if(!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    d = opendir(path);
    if(d) {
        while((de = readdir(d))) {
            if(!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
            rm_rf(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    if(!f)
        return -1;
    snprintf(f->base, sizeof(f->base), "/tmp/test_queue.XXXXXX");
    if(!mkdtemp(f->base)) {
        free(f);
        return -1;
    }
    snprintf(f->qdir, sizeof(f->qdir), "%s/q", f->base);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    ps_queue_close(f->q);
    rm_rf(f->base);
    free(f);
    return 0;
}

static ps_queue_t *open_q(struct fx *f)
{
    char err[512] = "";
    int rv = ps_queue_open(&f->q, f->qdir, err, sizeof(err));

    if(rv != 0)
        print_error("ps_queue_open: %s\n", err);
    assert_int_equal(rv, 0);
    assert_non_null(f->q);
    return f->q;
}

static void mk_entry(ps_qentry_t *e, const char *login, const char *org, const char *id,
                     long long first)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->login, sizeof(e->login), "%s", login);
    snprintf(e->organization, sizeof(e->organization), "%s", org);
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->delete_passwords = 1;
    e->delete_service_tokens = 0;
    e->recorded = first;
    e->first_attempt = first;
    e->last_attempt = first;
    e->attempts = 1;
    snprintf(e->last_error, sizeof(e->last_error), "HTTP 503");
}

static void put_ok(ps_queue_t *q, ps_qentry_t *e)
{
    char err[512] = "";
    int rv = ps_queue_put(q, e, err, sizeof(err));

    if(rv != 0)
        print_error("ps_queue_put: %s\n", err);
    assert_int_equal(rv, 0);
}

static void write_file(const char *dir, const char *name, const char *data, size_t len, mode_t mode)
{
    char path[PATH_MAX];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

/* Writes a file holding a valid entry for (login, org, id) under `name`
 * (NULL: its proper name). */
static void write_entry_file(const char *dir, const char *name, const char *login, const char *org,
                             const char *id, mode_t mode)
{
    ps_qentry_t e;
    char proper[32];
    char *s;

    mk_entry(&e, login, org, id, 1000);
    s = ps_queue_format(&e);
    assert_non_null(s);
    ps_queue_name(login, org, id, proper);
    write_file(dir, name ? name : proper, s, strlen(s), mode);
    free(s);
}

static int path_exists(const char *dir, const char *name)
{
    char path[PATH_MAX + 64];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return lstat(path, &st) == 0;
}

/* Number of directory entries (not . and ..) whose name starts with
 * `prefix` ("" for all). */
static int count_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    if(!d)
        return -1;
    while((de = readdir(d))) {
        if(!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if(!strncmp(de->d_name, prefix, strlen(prefix)))
            n++;
    }
    closedir(d);
    return n;
}

static mode_t mode_of(const char *path)
{
    struct stat st;

    assert_int_equal(lstat(path, &st), 0);
    return st.st_mode & 07777;
}

/* ------------------------------------------------------------ open */

static void test_open_creates_0700(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX];

    umask(022);
    open_q(f);
    assert_int_equal(mode_of(f->qdir), 0700);
    snprintf(path, sizeof(path), "%s/dead", f->qdir);
    assert_int_equal(mode_of(path), 0700);
    snprintf(path, sizeof(path), "%s/invalid", f->qdir);
    assert_int_equal(mode_of(path), 0700);
    assert_string_equal(ps_queue_dir(f->q), f->qdir);

    /* opening again works and a trailing slash is accepted */
    ps_queue_close(f->q);
    f->q = NULL;
    snprintf(path, sizeof(path), "%s/", f->qdir);
    {
        char err[256];
        assert_int_equal(ps_queue_open(&f->q, path, err, sizeof(err)), 0);
        assert_string_equal(ps_queue_dir(f->q), f->qdir);
    }
}

static void test_open_refuses_0755(void **state)
{
    struct fx *f = *state;
    char err[512] = "";

    assert_int_equal(mkdir(f->qdir, 0755), 0);
    assert_int_equal(chmod(f->qdir, 0755), 0);
    assert_int_equal(ps_queue_open(&f->q, f->qdir, err, sizeof(err)), -1);
    assert_null(f->q);
    assert_non_null(strstr(err, "chmod 700"));
    assert_non_null(strstr(err, f->qdir));
}

static void test_open_refuses_symlink(void **state)
{
    struct fx *f = *state;
    char real[PATH_MAX];
    char err[512] = "";

    snprintf(real, sizeof(real), "%s/real", f->base);
    assert_int_equal(mkdir(real, 0700), 0);
    assert_int_equal(symlink(real, f->qdir), 0);
    assert_int_equal(ps_queue_open(&f->q, f->qdir, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "symbolic link"));
    /* not with a trailing slash either */
    {
        char slash[PATH_MAX];
        snprintf(slash, sizeof(slash), "%s/", f->qdir);
        assert_int_equal(ps_queue_open(&f->q, slash, err, sizeof(err)), -1);
    }
    assert_int_equal(count_files(real, ""), 0);
}

static void test_open_parent_must_exist(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX];
    char err[512] = "";

    snprintf(path, sizeof(path), "%s/missing/q", f->base);
    assert_int_equal(ps_queue_open(&f->q, path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "No such file or directory"));
}

static void test_open_refuses_bad_subdir(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX];
    char err[512] = "";

    assert_int_equal(mkdir(f->qdir, 0700), 0);
    snprintf(path, sizeof(path), "%s/dead", f->qdir);
    assert_int_equal(symlink("/tmp", path), 0);
    assert_int_equal(ps_queue_open(&f->q, f->qdir, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "dead"));
}

static void test_open_refuses_foreign_owner(void **state)
{
    struct fx *f = *state;
    char err[512] = "";

    if(geteuid() != 0)
        skip();
    assert_int_equal(mkdir(f->qdir, 0700), 0);
    assert_int_equal(chown(f->qdir, 12345, 12345), 0);
    assert_int_equal(ps_queue_open(&f->q, f->qdir, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "chown root"));
}

/* ------------------------------------------------------------ put/list */

static void test_roundtrip(void **state)
{
    struct fx *f = *state;
    ps_queue_t *q = open_q(f);
    ps_qentry_t e;
    ps_qentry_t *list = NULL;
    size_t n = 99;
    char err[256] = "";
    char path[PATH_MAX];
    char want[32];

    mk_entry(&e, "alice", "acme", "d4xkq1abc", 1700000000);
    e.attempts = 3;
    snprintf(e.last_error, sizeof(e.last_error), "503: \"busy\"\n\\ caf\xc3\xa9 /x");
    put_ok(q, &e);
    ps_queue_name("alice", "acme", "d4xkq1abc", want);
    assert_string_equal(e.name, want);

    snprintf(path, sizeof(path), "%s/%s", f->qdir, want);
    assert_int_equal(mode_of(path), 0600);
    assert_int_equal(count_files(f->qdir, ".tmp-"), 0);

    assert_int_equal(ps_queue_list(q, 0, &list, &n, NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].name, want);
    assert_string_equal(list[0].login, "alice");
    assert_string_equal(list[0].organization, "acme");
    assert_string_equal(list[0].id, "d4xkq1abc");
    assert_int_equal(list[0].delete_passwords, 1);
    assert_int_equal(list[0].delete_service_tokens, 0);
    assert_int_equal(list[0].first_attempt, 1700000000);
    assert_int_equal(list[0].last_attempt, 1700000000);
    assert_int_equal(list[0].attempts, 3);
    assert_string_equal(list[0].last_error, e.last_error);
    free(list);

    /* dead/ is empty */
    assert_int_equal(ps_queue_list(q, 1, &list, &n, NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    free(list);
}

/* An entry of a user given by email: keyed by the email, its id "" until
 * resolved, then written in under the same name. */
static void test_email_entry(void **state)
{
    struct fx *f = *state;
    ps_queue_t *q = open_q(f);
    ps_qentry_t e, r;
    ps_qentry_t *list = NULL;
    size_t n = 0;
    char err[256] = "", want[32], *txt;

    mk_entry(&e, "ann", "acme", "", 1700000000);
    snprintf(e.email, sizeof(e.email), "ann@example.co");
    put_ok(q, &e);
    ps_queue_name("ann", "acme", "ann@example.co", want);
    assert_string_equal(e.name, want);
    assert_int_equal(ps_queue_read(q, want, &r, err, sizeof(err)), 0);
    assert_string_equal(r.email, "ann@example.co");
    assert_string_equal(r.id, "");
    /* resolved: the same entry, now with its id */
    snprintf(e.id, sizeof(e.id), "ann1");
    put_ok(q, &e);
    assert_string_equal(e.name, want);
    assert_int_equal(ps_queue_list(q, 0, &list, &n, NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, "ann1");
    assert_string_equal(list[0].email, "ann@example.co");
    free(list);
    /* another email under the same login is another request */
    snprintf(e.email, sizeof(e.email), "ann@example.com");
    e.id[0] = '\0';
    put_ok(q, &e);
    assert_string_not_equal(e.name, want);
    /* an entry with neither, or with a bad email, is refused */
    mk_entry(&e, "ann", "acme", "", 1700000000);
    assert_int_equal(ps_queue_put(q, &e, err, sizeof(err)), -1);
    snprintf(e.email, sizeof(e.email), "not-an-email");
    assert_int_equal(ps_queue_put(q, &e, err, sizeof(err)), -1);
    /* the text: "email" only when there is one */
    mk_entry(&e, "bob", "acme", "x9z8", 1700000000);
    txt = ps_queue_format(&e);
    assert_non_null(txt);
    assert_null(strstr(txt, "email"));
    free(txt);
    snprintf(e.email, sizeof(e.email), "Bob@Example.com");
    txt = ps_queue_format(&e);
    assert_non_null(txt);
    assert_non_null(strstr(txt, "\"email\":\"Bob@Example.com\""));
    assert_int_equal(ps_queue_parse(txt, strlen(txt), &r, err, sizeof(err)), 0);
    assert_string_equal(r.email, "Bob@Example.com");
    ps_queue_name("bob", "acme", "Bob@Example.com", want);
    assert_string_equal(r.name, want);
    free(txt);
    /* version 2 text: id "" with an email parses, without one it does not */
    mk_entry(&e, "bob", "acme", "", 1700000000);
    snprintf(e.email, sizeof(e.email), "bob@example.com");
    txt = ps_queue_format(&e);
    assert_non_null(txt);
    assert_int_equal(ps_queue_parse(txt, strlen(txt), &r, err, sizeof(err)), 0);
    {
        char *at = strstr(txt, ",\"email\":\"bob@example.com\"");
        size_t cut = strlen(",\"email\":\"bob@example.com\"");

        assert_non_null(at);
        memmove(at, at + cut, strlen(at + cut) + 1);
        assert_int_equal(ps_queue_parse(txt, strlen(txt), &r, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "no \"email\""));
    }
    free(txt);
}

static void test_same_key_keeps_older(void **state)
{
    struct fx *f = *state;
    ps_queue_t *q = open_q(f);
    ps_qentry_t e;
    ps_qentry_t *list = NULL;
    size_t n = 0;
    char err[256];

    mk_entry(&e, "bob", "acme-eu", "x9z8", 1000);
    put_ok(q, &e);
    mk_entry(&e, "bob", "acme-eu", "x9z8", 2000);
    e.attempts = 5;
    e.last_attempt = 2000;
    put_ok(q, &e);
    assert_int_equal(e.recorded, 1000);
    assert_int_equal(e.first_attempt, 2000); /* taken from the caller */

    assert_int_equal(ps_queue_list(q, 0, &list, &n, NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].recorded, 1000);
    assert_int_equal(list[0].last_attempt, 2000);
    assert_int_equal(list[0].attempts, 5);
    free(list);

    /* an older request wins the other way round too */
    mk_entry(&e, "bob", "acme-eu", "x9z8", 500);
    put_ok(q, &e);
    assert_int_equal(ps_queue_list(q, 0, &list, &n, NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].recorded, 500);
    free(list);
    assert_int_equal(count_files(f->qdir, ""), 3); /* entry, dead, invalid */
}

/* The write-ahead time defaults to now; an entry never sent has no first
 * attempt (0), which is what keeps it from ever aging out. */
static void test_recorded_defaults_to_now(void **state)
{
    struct fx *f = *state;
    ps_queue_t *q = open_q(f);
    ps_qentry_t e, back;
    char err[256];
    time_t before = time(NULL);

    mk_entry(&e, "carol", "acme", "c1", 0);
    e.attempts = 0;
    put_ok(q, &e);
    assert_true(e.recorded >= (long long)before);
    assert_true(e.recorded <= (long long)time(NULL));
    assert_int_equal(ps_queue_read(q, e.name, &back, err, sizeof(err)), 0);
    assert_int_equal(back.first_attempt, 0);
    assert_int_equal(back.recorded, e.recorded);
    assert_int_equal(back.state, PS_Q_PENDING);
}

static void test_put_refuses_invalid(void **state)
{
    struct fx *f = *state;
    ps_queue_t *q = open_q(f);
    ps_qentry_t e;
    char err[256];

    mk_entry(&e, "evil\nlogin", "acme", "x", 1);
    assert_int_equal(ps_queue_put(q, &e, err, sizeof(err)), -1);
    mk_entry(&e, "alice", "acme", "..", 1);
    assert_int_equal(ps_queue_put(q, &e, err, sizeof(err)), -1);
    mk_entry(&e, "alice", "ac/me", "x", 1);
    assert_int_equal(ps_queue_put(q, &e, err, sizeof(err)), -1);
    mk_entry(&e, "alice", "acme", "x", 1);
    e.attempts = -1;
    assert_int_equal(ps_queue_put(q, &e, err, sizeof(err)), -1);
    assert_int_equal(count_files(f->qdir, ""), 2);
}

static void test_oldest_first(void **state)
{
    struct fx *f = *state;
    ps_queue_t *q = open_q(f);
    ps_qentry_t e;
    ps_qentry_t *list = NULL;
    size_t n = 0;
    char err[256];

    mk_entry(&e, "u300", "acme", "i300", 300);
    put_ok(q, &e);
    mk_entry(&e, "u100", "acme", "i100", 100);
    put_ok(q, &e);
    mk_entry(&e, "u200", "acme", "i200", 200);
    put_ok(q, &e);
    mk_entry(&e, "u200b", "acme", "i200b", 200);
    put_ok(q, &e);

    assert_int_equal(ps_queue_list(q, 0, &list, &n, NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(n, 4);
    assert_string_equal(list[0].login, "u100");
    assert_int_equal(list[1].first_attempt, 200);
    assert_int_equal(list[2].first_attempt, 200);
    assert_true(strcmp(list[1].name, list[2].name) < 0);
    assert_string_equal(list[3].login, "u300");
    free(list);
}

/* ------------------------------------------------------------ lock */

/* What reap() returns for a child that got the lock on an entry whose
 * attempts field is `a` (else 1 busy, 2 gone, 100 error). */
#define LOCKED(a) (10 + (a))

/* Starts a child that tries the lock; reap() gives its result. The child
 * first closes `held`, the parent's locked descriptor: a forked copy shares
 * the open file description, and with it the flock. */
static pid_t child_lock(ps_queue_t *q, const char *name, double wait, int held)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if(pid == 0) {
        ps_qentry_t e;
        char err[256];
        int fd = -1;
        int rv;

        ps_queue_unlock(held);
        rv = ps_queue_lock(q, name, wait, &fd, &e, err, sizeof(err));
        ps_queue_unlock(fd);
        ps_queue_close(q);
        if(rv == 0)
            _exit(LOCKED(e.attempts < 80 ? e.attempts : 80));
        _exit(rv < 0 ? 100 : rv);
    }
    return pid;
}

static int reap(pid_t pid)
{
    int status;

    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_lock_busy(void **state)
{
    struct fx *f = *state;
    ps_queue_t *q = open_q(f);
    ps_qentry_t e;
    ps_qentry_t got;
    char err[256] = "";
    int fd = -1;
    int fd2 = -1;
    double t0;

    mk_entry(&e, "alice", "acme", "a1", 100);
    put_ok(q, &e);

    assert_int_equal(ps_queue_lock(q, e.name, 0, &fd, &got, err, sizeof(err)), 0);
    assert_true(fd >= 0);
    assert_string_equal(got.login, "alice");
    assert_string_equal(got.name, e.name);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);

    /* a second open file description in this process conflicts */
    assert_int_equal(ps_queue_lock(q, e.name, 0, &fd2, &got, err, sizeof(err)), 1);
    assert_int_equal(fd2, -1);
    t0 = ps_now();
    assert_int_equal(ps_queue_lock(q, e.name, 0.2, &fd2, &got, err, sizeof(err)), 1);
    assert_true(ps_now() - t0 >= 0.19);

    /* and so does another process */
    assert_int_equal(reap(child_lock(q, e.name, 0, fd)), 1);

    ps_queue_unlock(fd);
    assert_int_equal(reap(child_lock(q, e.name, 0, -1)), LOCKED(1));
    assert_int_equal(ps_queue_lock(q, e.name, 0, &fd, &got, err, sizeof(err)), 0);
    ps_queue_unlock(fd);

    /* names outside the queue are refused */
    assert_int_equal(ps_queue_lock(q, "../x.json", 0, &fd, &got, err, sizeof(err)), -1);
    assert_int_equal(ps_queue_lock(q, ".lock", 0, &fd, &got, err, sizeof(err)), -1);
}

static void test_lock_waits(void **state)
{
    struct fx *f = *state;
    ps_queue_t *q = open_q(f);
    ps_qentry_t e;
    ps_qentry_t got;
    char err[256];
    pid_t pid;
    int fd = -1;

    mk_entry(&e, "alice", "acme", "a1", 100);
    put_ok(q, &e);
    assert_int_equal(ps_queue_lock(q, e.name, 0, &fd, &got, err, sizeof(err)), 0);
    pid = child_lock(q, e.name, 10, fd);
    usleep(100000);
    ps_queue_unlock(fd);
    /* the holder let go without completing: the waiter gets it */
    assert_int_equal(reap(pid), LOCKED(1));
}

static void test_lock_after_done_is_gone(void **state)
{
    struct fx *f = *state;
    ps_queue_t *q = open_q(f);
    ps_qentry_t e;
    ps_qentry_t got;
    char err[256] = "";
    pid_t pid;
    int fd = -1;

    mk_entry(&e, "alice", "acme", "a1", 100);
    put_ok(q, &e);

    /* a waiter that was blocked while the holder completed the entry */
    assert_int_equal(ps_queue_lock(q, e.name, 0, &fd, &got, err, sizeof(err)), 0);
    pid = child_lock(q, e.name, 10, fd);
    usleep(100000);
    assert_int_equal(ps_queue_done(q, e.name, err, sizeof(err)), 0);
    ps_queue_unlock(fd);
    assert_int_equal(reap(pid), 2);

    /* and anyone coming later */
    assert_int_equal(ps_queue_lock(q, e.name, 0, &fd, &got, err, sizeof(err)), 2);
    assert_int_equal(fd, -1);
    assert_false(path_exists(f->qdir, e.name));

    /* done on a missing entry is not an error */
    assert_int_equal(ps_queue_done(q, e.name, err, sizeof(err)), 0);
}

static void test_lock_follows_replace(void **state)
{
    struct fx *f = *state;
    ps_queue_t *q = open_q(f);
    ps_qentry_t e;
    ps_qentry_t got;
    char err[256] = "";
    pid_t pid;
    int fd = -1;

    mk_entry(&e, "alice", "acme", "a1", 100);
    put_ok(q, &e);
    assert_int_equal(ps_queue_lock(q, e.name, 0, &fd, &got, err, sizeof(err)), 0);
    pid = child_lock(q, e.name, 10, fd);
    usleep(100000);
    /* the holder records a failed attempt (a new file renamed over the
     * old one) and lets go: the waiter, blocked on the old inode, must lock
     * and read the new file, not report the entry as gone */
    e.attempts = 7;
    put_ok(q, &e);
    ps_queue_unlock(fd);
    assert_int_equal(reap(pid), LOCKED(7));

    assert_int_equal(ps_queue_lock(q, e.name, 0, &fd, &got, err, sizeof(err)), 0);
    assert_int_equal(got.attempts, 7);
    ps_queue_unlock(fd);
}

static void test_lock_after_dead_letter_is_gone(void **state)
{
    struct fx *f = *state;
    ps_queue_t *q = open_q(f);
    ps_qentry_t e;
    ps_qentry_t got;
    char err[256] = "";
    pid_t pid;
    int fd = -1;

    mk_entry(&e, "alice", "acme", "a1", 100);
    put_ok(q, &e);
    assert_int_equal(ps_queue_lock(q, e.name, 0, &fd, &got, err, sizeof(err)), 0);
    pid = child_lock(q, e.name, 10, fd);
    usleep(100000);
    assert_int_equal(ps_queue_dead_letter(q, e.name, err, sizeof(err)), 0);
    ps_queue_unlock(fd);
    assert_int_equal(reap(pid), 2);
}

/* ------------------------------------------------------------ done/dead */

static void test_done_removes(void **state)
{
    struct fx *f = *state;
    ps_queue_t *q = open_q(f);
    ps_qentry_t e;
    ps_qentry_t got;
    ps_qentry_t *list = NULL;
    size_t n = 0;
    char err[256];
    int fd = -1;

    mk_entry(&e, "alice", "acme", "a1", 100);
    put_ok(q, &e);
    assert_int_equal(ps_queue_lock(q, e.name, 0, &fd, &got, err, sizeof(err)), 0);
    assert_int_equal(ps_queue_done(q, e.name, err, sizeof(err)), 0);
    ps_queue_unlock(fd);
    assert_false(path_exists(f->qdir, e.name));
    assert_int_equal(ps_queue_list(q, 0, &list, &n, NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    assert_null(list);
    assert_int_equal(ps_queue_done(q, "../../etc/passwd", err, sizeof(err)), -1);
}

static void test_dead_letter(void **state)
{
    struct fx *f = *state;
    ps_queue_t *q = open_q(f);
    ps_qentry_t e;
    ps_qentry_t got;
    ps_qentry_t *list = NULL;
    size_t n = 0;
    char err[256];
    char dead[PATH_MAX];
    int fd = -1;

    mk_entry(&e, "alice", "acme", "a1", 100);
    put_ok(q, &e);
    mk_entry(&e, "bob", "acme", "b1", 200);
    put_ok(q, &e);
    assert_int_equal(ps_queue_lock(q, e.name, 0, &fd, &got, err, sizeof(err)), 0);
    assert_int_equal(ps_queue_dead_letter(q, e.name, err, sizeof(err)), 0);
    ps_queue_unlock(fd);

    snprintf(dead, sizeof(dead), "%s/dead", f->qdir);
    assert_true(path_exists(dead, e.name));
    assert_false(path_exists(f->qdir, e.name));

    assert_int_equal(ps_queue_list(q, 0, &list, &n, NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].login, "alice");
    free(list);
    assert_int_equal(ps_queue_list(q, 1, &list, &n, NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].login, "bob");
    assert_string_equal(list[0].name, e.name);
    free(list);
}

/* ------------------------------------------------------------ invalid */

static void test_invalid_entries(void **state)
{
    struct fx *f = *state;
    ps_queue_t *q;
    ps_qentry_t *list = NULL;
    size_t n = 0;
    struct seen s;
    char err[256] = "";
    char inval[256];
    char path[PATH_MAX];
    char big[PS_QENTRY_MAX + 100];
    char good[32];
    const char *valid_tail = "\"organization\":\"acme\",\"id\":\"x\","
                             "\"delete_passwords\":true,\"delete_service_tokens\":true,"
                             "\"first_attempt\":1,\"last_attempt\":0,\"attempts\":0,"
                             "\"last_error\":\"\"}";
    char buf[900];
    struct {
        const char *name;
        const char *data;
    } bad[] = {
        { "badjson.json", "{\"version\":1,\"login\":" },
        { "trailing.json", NULL }, /* filled below */
        { "unknown.json", NULL },
        { "wrongtype.json", NULL },
        { "slash.json", NULL },
        { "dotdot.json", NULL },
        { "newline.json", NULL },
        { "array.json", "[1,2,3]" },
        { "empty.json", "" },
    };
    char trailing[1024], unknown[1024], wrongtype[1024], slash[1024], dotdot[1024], newline[1024];
    char mode_name[32], link_name[32], fifo_name[32];
    char target[PATH_MAX];
    struct stat st;
    size_t i;

    memset(&s, 0, sizeof(s));
    q = open_q(f);
    snprintf(inval, sizeof(inval), "%s/invalid", f->qdir);

    snprintf(buf, sizeof(buf), "{\"version\":1,\"login\":\"alice\",%s", valid_tail);
    snprintf(trailing, sizeof(trailing), "%s garbage", buf);
    bad[1].data = trailing;
    snprintf(unknown, sizeof(unknown), "{\"token\":\"s3cret\",%s", buf + 1);
    bad[2].data = unknown;
    snprintf(wrongtype, sizeof(wrongtype),
             "{\"version\":1,\"login\":\"alice\",\"organization\":\"acme\","
             "\"id\":\"x\",\"delete_passwords\":true,"
             "\"delete_service_tokens\":true,\"first_attempt\":1,"
             "\"last_attempt\":0,\"attempts\":\"3\",\"last_error\":\"\"}");
    bad[3].data = wrongtype;
    snprintf(slash, sizeof(slash),
             "{\"version\":1,\"login\":\"alice\",\"organization\":\"acme\","
             "\"id\":\"a/b\",\"delete_passwords\":true,"
             "\"delete_service_tokens\":true,\"first_attempt\":1,"
             "\"last_attempt\":0,\"attempts\":0,\"last_error\":\"\"}");
    bad[4].data = slash;
    snprintf(dotdot, sizeof(dotdot),
             "{\"version\":1,\"login\":\"alice\",\"organization\":\"acme\","
             "\"id\":\"..\",\"delete_passwords\":true,"
             "\"delete_service_tokens\":true,\"first_attempt\":1,"
             "\"last_attempt\":0,\"attempts\":0,\"last_error\":\"\"}");
    bad[5].data = dotdot;
    snprintf(newline, sizeof(newline), "{\"version\":1,\"login\":\"al\\nice\",%s", valid_tail);
    bad[6].data = newline;

    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        write_file(f->qdir, bad[i].name, bad[i].data, strlen(bad[i].data), 0600);

    /* oversized: valid JSON padded with white space past the limit */
    memset(big, ' ', sizeof(big));
    memcpy(big, buf, strlen(buf));
    write_file(f->qdir, "big.json", big, sizeof(big), 0600);

    /* a 0644 entry, otherwise perfect */
    ps_queue_name("mode", "acme", "m1", mode_name);
    write_entry_file(f->qdir, NULL, "mode", "acme", "m1", 0644);

    /* a symlink to a valid entry outside the queue */
    ps_queue_name("link", "acme", "l1", link_name);
    write_entry_file(f->base, NULL, "link", "acme", "l1", 0600);
    snprintf(path, sizeof(path), "%s/%s", f->qdir, link_name);
    snprintf(target, sizeof(target), "%s/%s", f->base, link_name);
    assert_int_equal(symlink(target, path), 0);

    /* a fifo must neither block nor be read */
    ps_queue_name("fifo", "acme", "f1", fifo_name);
    snprintf(path, sizeof(path), "%s/%s", f->qdir, fifo_name);
    assert_int_equal(mkfifo(path, 0600), 0);

    /* a valid entry under another key's name */
    write_entry_file(f->qdir, "0123456789abcdef.json", "mismatch", "acme", "z1", 0600);
    /* a stray file, a temp file, a lock file */
    write_file(f->qdir, "README", "hi\n", 3, 0600);
    write_file(f->qdir, ".tmp-0123456789abcdef-abcdef", "{", 1, 0600);
    write_file(f->qdir, ".lock", "", 0, 0600);
    /* and one good entry */
    ps_queue_name("good", "acme", "g1", good);
    write_entry_file(f->qdir, NULL, "good", "acme", "g1", 0600);

    assert_int_equal(ps_queue_list(q, 0, &list, &n, on_invalid, &s, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].name, good);
    assert_string_equal(list[0].login, "good");
    free(list);

    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_true(seen_has(&s, bad[i].name));
        assert_true(path_exists(inval, bad[i].name));
        assert_false(path_exists(f->qdir, bad[i].name));
    }
    assert_non_null(strstr(seen_reason(&s, "trailing.json"), "not JSON"));
    assert_non_null(strstr(seen_reason(&s, "unknown.json"), "unknown field"));
    assert_null(strstr(seen_reason(&s, "unknown.json"), "s3cret"));
    assert_non_null(strstr(seen_reason(&s, "wrongtype.json"), "attempts"));
    assert_true(seen_has(&s, "big.json"));
    assert_non_null(strstr(seen_reason(&s, "big.json"), "larger"));
    assert_true(seen_has(&s, mode_name));
    assert_non_null(strstr(seen_reason(&s, mode_name), "0644"));
    assert_true(seen_has(&s, link_name));
    assert_non_null(strstr(seen_reason(&s, link_name), "symbolic link"));
    assert_true(seen_has(&s, fifo_name));
    assert_non_null(strstr(seen_reason(&s, fifo_name), "not a regular file"));
    assert_true(seen_has(&s, "0123456789abcdef.json"));
    assert_non_null(strstr(seen_reason(&s, "0123456789abcdef.json"), "does not match"));
    assert_true(seen_has(&s, "README"));
    assert_int_equal(s.n, (int)(sizeof(bad) / sizeof(bad[0])) + 6);

    /* moved, not followed: the symlink is in invalid/, its target stays */
    snprintf(path, sizeof(path), "%s/%s", inval, link_name);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_true(path_exists(f->base, link_name));
    assert_true(path_exists(inval, fifo_name));
    assert_true(path_exists(inval, mode_name));
    assert_true(path_exists(inval, "README"));

    /* dot-files stay where they are and are never reported */
    assert_true(path_exists(f->qdir, ".tmp-0123456789abcdef-abcdef"));
    assert_true(path_exists(f->qdir, ".lock"));
    assert_false(seen_has(&s, ".tmp-0123456789abcdef-abcdef"));
    assert_false(seen_has(&s, ".lock"));

    /* a second pass finds nothing more to move */
    memset(&s, 0, sizeof(s));
    assert_int_equal(ps_queue_list(q, 0, &list, &n, on_invalid, &s, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_int_equal(s.n, 0);
    free(list);

    /* the same bad name again: kept apart, not overwritten */
    write_file(f->qdir, "badjson.json", "nope", 4, 0600);
    assert_int_equal(ps_queue_list(q, 0, &list, &n, on_invalid, &s, err, sizeof(err)), 0);
    free(list);
    assert_int_equal(s.n, 1);
    assert_true(path_exists(inval, "badjson.json"));
    assert_true(path_exists(inval, "badjson.json.1"));
}

static void test_invalid_foreign_owner(void **state)
{
    struct fx *f = *state;
    ps_queue_t *q = open_q(f);
    ps_qentry_t *list = NULL;
    size_t n = 0;
    struct seen s;
    char err[256];
    char name[32];
    char path[PATH_MAX];

    if(geteuid() != 0)
        skip();
    memset(&s, 0, sizeof(s));
    ps_queue_name("own", "acme", "o1", name);
    write_entry_file(f->qdir, NULL, "own", "acme", "o1", 0600);
    snprintf(path, sizeof(path), "%s/%s", f->qdir, name);
    assert_int_equal(chown(path, 12345, 12345), 0);
    assert_int_equal(ps_queue_list(q, 0, &list, &n, on_invalid, &s, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    assert_int_equal(s.n, 1);
    assert_non_null(strstr(s.reasons[0], "owned by uid 12345"));
    free(list);
}

/* ------------------------------------------------------------ parse */

static int parse(const char *s)
{
    ps_qentry_t e;
    char err[256];

    return ps_queue_parse(s, strlen(s), &e, err, sizeof(err));
}

#define ENTRY(login, org, id, extra)                                         \
    "{\"version\":1,\"login\":" login ",\"organization\":" org ",\"id\":" id \
    ",\"delete_passwords\":true,\"delete_service_tokens\":false,"            \
    "\"first_attempt\":10,\"last_attempt\":20,\"attempts\":2" extra "}"
#define LE ",\"last_error\":\"x\""

static void test_parse_strict(void **state)
{
    ps_qentry_t e;
    char err[256];
    char buf[2048];
    char *s;
    int len;

    (void)state;
    assert_int_equal(parse(ENTRY("\"a\"", "\"o\"", "\"i\"", LE)), 0);
    assert_int_equal(parse(ENTRY("\"a\"", "\"o\"", "\"i\"", LE) "\n \t\r\n"), 0);
    assert_int_equal(parse(" " ENTRY("\"a\"", "\"o\"", "\"i\"", LE)), 0);

    /* trailing garbage, a second object, truncation, a trailing comma */
    assert_int_equal(parse(ENTRY("\"a\"", "\"o\"", "\"i\"", LE) "x"), -1);
    assert_int_equal(parse(ENTRY("\"a\"", "\"o\"", "\"i\"", LE) "{}"), -1);
    assert_int_equal(parse(ENTRY("\"a\"", "\"o\"", "\"i\"", LE ",")), -1);
    assert_int_equal(parse("{\"version\":1"), -1);
    assert_int_equal(parse(""), -1);
    assert_int_equal(parse("null"), -1);
    assert_int_equal(parse("\"str\""), -1);

    /* missing and unknown fields, duplicate-free strictness on types */
    assert_int_equal(parse(ENTRY("\"a\"", "\"o\"", "\"i\"", "")), -1);
    assert_int_equal(parse(ENTRY("\"a\"", "\"o\"", "\"i\"", LE ",\"x\":1")), -1);
    assert_int_equal(parse(ENTRY("1", "\"o\"", "\"i\"", LE)), -1);
    assert_int_equal(parse(ENTRY("\"a\"", "null", "\"i\"", LE)), -1);
    assert_int_equal(parse(ENTRY("\"a\"", "\"o\"", "5", LE)), -1);
    assert_int_equal(parse(ENTRY("\"a\"", "\"o\"", "\"i\"", ",\"last_error\":3")), -1);
    assert_int_equal(parse("{\"version\":2,\"login\":\"a\",\"organization\":"
                           "\"o\",\"id\":\"i\",\"delete_passwords\":true,\"delete_service_tokens\":"
                           "false,\"first_attempt\":10,\"last_attempt\":20,\"attempts\":2" LE "}"),
                     -1);

    /* validation of the key fields */
    assert_int_equal(parse(ENTRY("\"a\\nb\"", "\"o\"", "\"i\"", LE)), -1);
    assert_int_equal(parse(ENTRY("\"a b\"", "\"o\"", "\"i\"", LE)), -1);
    assert_int_equal(parse(ENTRY("\"-a\"", "\"o\"", "\"i\"", LE)), -1);
    assert_int_equal(parse(ENTRY("\"a\\u0000b\"", "\"o\"", "\"i\"", LE)), -1);
    assert_int_equal(parse(ENTRY("\"a\"", "\"..\"", "\"i\"", LE)), -1);
    assert_int_equal(parse(ENTRY("\"a\"", "\"o\"", "\"..\"", LE)), -1);
    assert_int_equal(parse(ENTRY("\"a\"", "\"o\"", "\".\"", LE)), -1);
    /* an empty id only next to a valid email (version 2) */
    assert_int_equal(parse(ENTRY("\"a\"", "\"o\"", "\"\"", LE)), -1);
    /* a version 1 entry never has an email */
    assert_int_equal(parse(ENTRY("\"a\"", "\"o\"", "\"i\"", LE ",\"email\":\"a@b.c\"")), -1);
    assert_int_equal(parse(ENTRY("\"a\"", "\"o\"", "\"a/b\"", LE)), -1);
    assert_int_equal(parse(ENTRY("\"a\"", "\"o\"", "\"\"", LE)), -1);
    assert_int_equal(
        parse(ENTRY("\"a\"", "\"o\"",
                    "\"01234567890123456789012345678901234567890123456789012345678901234\"", LE)),
        -1);

    /* types and ranges of the numbers */
    assert_int_equal(parse("{\"version\":1,\"login\":\"a\",\"organization\":"
                           "\"o\",\"id\":\"i\",\"delete_passwords\":1,\"delete_service_tokens\":"
                           "false,\"first_attempt\":10,\"last_attempt\":20,\"attempts\":2" LE "}"),
                     -1);
    assert_int_equal(parse("{\"version\":1,\"login\":\"a\",\"organization\":"
                           "\"o\",\"id\":\"i\",\"delete_passwords\":true,\"delete_service_tokens\":"
                           "false,\"first_attempt\":-1,\"last_attempt\":20,\"attempts\":2" LE "}"),
                     -1);
    assert_int_equal(parse("{\"version\":1,\"login\":\"a\",\"organization\":"
                           "\"o\",\"id\":\"i\",\"delete_passwords\":true,\"delete_service_tokens\":"
                           "false,\"first_attempt\":1.5,\"last_attempt\":20,\"attempts\":2" LE "}"),
                     -1);
    assert_int_equal(parse("{\"version\":1,\"login\":\"a\",\"organization\":"
                           "\"o\",\"id\":\"i\",\"delete_passwords\":true,\"delete_service_tokens\":"
                           "false,\"first_attempt\":1,\"last_attempt\":20,\"attempts\":-2" LE "}"),
                     -1);
    assert_int_equal(parse("{\"version\":1,\"login\":\"a\",\"organization\":"
                           "\"o\",\"id\":\"i\",\"delete_passwords\":true,\"delete_service_tokens\":"
                           "false,\"first_attempt\":1,\"last_attempt\":20,\"attempts\":"
                           "99999999999" LE "}"),
                     -1);
    assert_int_equal(parse("{\"version\":1,\"login\":\"a\",\"organization\":"
                           "\"o\",\"id\":\"i\",\"delete_passwords\":true,\"delete_service_tokens\":"
                           "false,\"first_attempt\":99999999999999999999,\"last_attempt\":20,"
                           "\"attempts\":1" LE "}"),
                     -1);
    assert_int_equal(parse("{\"version\":1,\"login\":\"a\",\"organization\":"
                           "\"o\",\"id\":\"i\",\"delete_passwords\":true,\"delete_service_tokens\":"
                           "false,\"first_attempt\":NaN,\"last_attempt\":20,\"attempts\":1" LE "}"),
                     -1);
    assert_int_equal(parse("{\"version\":\"1\"}"), -1);
    assert_int_equal(parse("{\"version\":1,\"login\":{\"a\":[[[[[[]]]]]]}}"), -1);

    /* a NUL byte anywhere */
    snprintf(buf, sizeof(buf), "%s", ENTRY("\"a\"", "\"o\"", "\"i\"", LE));
    len = (int)strlen(buf);
    buf[len] = '\0';
    memcpy(buf + len + 1, "xx", 2);
    assert_int_equal(ps_queue_parse(buf, (size_t)len + 3, &e, err, sizeof(err)), -1);

    /* a long last_error is cut, at a character boundary */
    memset(buf, 0, sizeof(buf));
    len = snprintf(buf, sizeof(buf), "%s", ENTRY("\"a\"", "\"o\"", "\"i\"", ",\"last_error\":\""));
    len--; /* drop the closing brace */
    memcpy(buf + len, "x", 1);
    len++;
    {
        int i;
        for(i = 0; i < 200; i++) {
            memcpy(buf + len, "\xc3\xa9", 2);
            len += 2;
        }
    }
    memcpy(buf + len, "\"}", 3);
    len += 2;
    assert_int_equal(ps_queue_parse(buf, (size_t)len, &e, err, sizeof(err)), 0);
    assert_int_equal(strlen(e.last_error), 255);
    assert_int_equal((unsigned char)e.last_error[254], 0xa9);

    /* oversized buffer */
    s = malloc(PS_QENTRY_MAX + 2);
    assert_non_null(s);
    memset(s, ' ', PS_QENTRY_MAX + 1);
    len = snprintf(s, PS_QENTRY_MAX, "%s", ENTRY("\"a\"", "\"o\"", "\"i\"", LE));
    s[len] = ' ';
    assert_int_equal(ps_queue_parse(s, PS_QENTRY_MAX, &e, err, sizeof(err)), 0);
    assert_int_equal(ps_queue_parse(s, PS_QENTRY_MAX + 1, &e, err, sizeof(err)), -1);
    free(s);

    /* the parsed entry carries its own name */
    assert_int_equal(ps_queue_parse(ENTRY("\"a\"", "\"o\"", "\"i\"", LE),
                                    strlen(ENTRY("\"a\"", "\"o\"", "\"i\"", LE)), &e, err,
                                    sizeof(err)),
                     0);
    {
        char want[32];
        ps_queue_name("a", "o", "i", want);
        assert_string_equal(e.name, want);
    }
    assert_int_equal(e.delete_passwords, 1);
    assert_int_equal(e.delete_service_tokens, 0);
    assert_int_equal(e.first_attempt, 10);
    assert_int_equal(e.last_attempt, 20);
    assert_int_equal(e.attempts, 2);
}

static void test_format_parse_roundtrip(void **state)
{
    ps_qentry_t e;
    ps_qentry_t back;
    char err[256];
    char *s;

    (void)state;
    mk_entry(&e, "us\xc3\xa9r.name@example.com", "acme-eu", "A_b-9.z", 42);
    snprintf(e.last_error, sizeof(e.last_error), "\x01\x1f\t\"\\/\x7f\xff");
    s = ps_queue_format(&e);
    assert_non_null(s);
    assert_int_equal(ps_queue_parse(s, strlen(s), &back, err, sizeof(err)), 0);
    assert_string_equal(back.login, e.login);
    assert_string_equal(back.last_error, e.last_error);
    assert_int_equal(back.first_attempt, 42);
    assert_null(strchr(s, '\t'));
    assert_int_equal(s[strlen(s) - 1], '\n');
    free(s);
}

/* not_before (api.spread) is written only when set, read back, and
 * refused in a version 1 entry. */
static void test_not_before(void **state)
{
    ps_qentry_t e, back;
    char err[256];
    char *s;
    static const char v1[] = "{\"version\":1,\"login\":\"a\",\"organization\":\"o\","
                             "\"id\":\"i\",\"delete_passwords\":true,"
                             "\"delete_service_tokens\":true,\"first_attempt\":1,"
                             "\"last_attempt\":0,\"attempts\":0,\"last_error\":\"\","
                             "\"not_before\":5}";

    (void)state;
    mk_entry(&e, "alice", "acme", "d4xkq1abc", 42);
    s = ps_queue_format(&e);
    assert_non_null(s);
    assert_null(strstr(s, "not_before"));
    assert_int_equal(ps_queue_parse(s, strlen(s), &back, err, sizeof(err)), 0);
    assert_int_equal(back.not_before, 0);
    free(s);

    e.not_before = 1800000123;
    s = ps_queue_format(&e);
    assert_non_null(s);
    assert_non_null(strstr(s, "\"not_before\":1800000123"));
    assert_int_equal(ps_queue_parse(s, strlen(s), &back, err, sizeof(err)), 0);
    assert_int_equal(back.not_before, 1800000123);
    free(s);

    assert_int_not_equal(ps_queue_parse(v1, strlen(v1), &back, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "version 1 entry with version 2 fields"));
}

/* ------------------------------------------------------------ full disk */

/* A file-size limit makes write() fail (EFBIG) half way through the temp
 * file, like a full disk would: nothing may be left behind. */
static void test_put_write_failure(void **state)
{
    struct fx *f = *state;
    ps_queue_t *q = open_q(f);
    pid_t pid;

    pid = fork();
    assert_true(pid >= 0);
    if(pid == 0) {
        struct rlimit rl = { 16, 16 };
        ps_qentry_t e;
        char err[512] = "";
        int code = 0;

        signal(SIGXFSZ, SIG_IGN);
        if(setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(10);
        mk_entry(&e, "alice", "acme", "a1", 100);
        if(ps_queue_put(q, &e, err, sizeof(err)) != -1)
            code = 11;
        else if(!err[0])
            code = 12;
        else if(!strstr(err, "File too large") || !strstr(err, f->qdir))
            code = 13;
        ps_queue_close(q);
        _exit(code);
    }
    assert_int_equal(reap(pid), 0);
    /* no entry and no temp file: only dead/ and invalid/ */
    assert_int_equal(count_files(f->qdir, ""), 2);
}

/* ------------------------------------------------------------ unresolved */

static int parse_u(const char *text, ps_unresolved_t *u, char *err, size_t errlen)
{
    return ps_unresolved_parse(text, strlen(text), u, err, errlen);
}

static void test_unresolved_parse_strict(void **state)
{
    static const struct {
        const char *text;
        const char *why; /* substring of the error */
    } bad[] = {
        { "", "JSON" },
        { "[]", "JSON object" },
        { "{\"version\":1,\"login\":\"alice\",\"config\":\"/c\",\"source\":\"remove\","
          "\"recorded\":5} x",
          "JSON" },
        { "{\"version\":2,\"login\":\"alice\",\"config\":\"/c\",\"source\":\"remove\","
          "\"recorded\":5}",
          "version" },
        { "{\"version\":1,\"login\":\"al ice\",\"config\":\"/c\",\"source\":\"remove\","
          "\"recorded\":5}",
          "login" },
        { "{\"version\":1,\"login\":\"-rf\",\"config\":\"/c\",\"source\":\"remove\","
          "\"recorded\":5}",
          "login" },
        { "{\"version\":1,\"login\":\"alice\",\"config\":\"c\",\"source\":\"remove\","
          "\"recorded\":5}",
          "config" },
        { "{\"version\":1,\"login\":\"alice\",\"config\":\"/c\\n\",\"source\":\"remove\","
          "\"recorded\":5}",
          "config" },
        { "{\"version\":1,\"login\":\"alice\",\"config\":\"/c\",\"source\":\"pam\","
          "\"recorded\":5}",
          "service" },
        { "{\"version\":1,\"login\":\"alice\",\"config\":\"/c\",\"source\":\"pam\","
          "\"service\":\"sshd\",\"mode\":\"always\",\"recorded\":5}",
          "mode" },
        { "{\"version\":1,\"login\":\"alice\",\"config\":\"/c\",\"source\":\"remove\","
          "\"mode\":\"close\",\"service\":\"x\",\"recorded\":5}",
          "no \"service\"" },
        { "{\"version\":1,\"login\":\"alice\",\"config\":\"/c\",\"source\":\"other\","
          "\"recorded\":5}",
          "source" },
        { "{\"version\":1,\"login\":\"alice\",\"config\":\"/c\",\"source\":\"remove\","
          "\"recorded\":0}",
          "recorded" },
        { "{\"version\":1,\"login\":\"alice\",\"config\":\"/c\",\"source\":\"remove\"}",
          "missing" },
        { "{\"version\":1,\"login\":\"alice\",\"config\":\"/c\",\"source\":\"remove\","
          "\"recorded\":5,\"token\":\"x\"}",
          "unknown field" },
        { "{\"version\":1,\"login\":7,\"config\":\"/c\",\"source\":\"remove\","
          "\"recorded\":5}",
          "login" },
    };
    ps_unresolved_t u;
    size_t i;

    (void)state;
    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[512] = "";

        if(parse_u(bad[i].text, &u, err, sizeof(err)) == 0 || !strstr(err, bad[i].why))
            fail_msg("case %zu: %s -> \"%s\", expected \"%s\"", i, bad[i].text, err, bad[i].why);
    }
    {
        char err[512] = "";
        const char ok[] = "{\"version\":1,\"login\":\"alice\",\"config\":\"/etc/x.conf\","
                          "\"source\":\"pam\",\"service\":\"sshd\",\"mode\":\"expired\","
                          "\"recorded\":1700000000}\n";

        assert_int_equal(parse_u(ok, &u, err, sizeof(err)), 0);
        assert_string_equal(u.login, "alice");
        assert_string_equal(u.config, "/etc/x.conf");
        assert_string_equal(u.service, "sshd");
        assert_string_equal(u.mode, "expired");
        assert_true(u.recorded == 1700000000LL);
        assert_int_equal(strlen(u.name), 21); /* 16 hex + ".json" */
    }
    { /* a NUL inside is refused, not truncated */
        char err[512] = "";
        const char nul[] = "{\"version\":1,\"login\":\"alice\"\0}";

        assert_int_equal(ps_unresolved_parse(nul, sizeof(nul) - 1, &u, err, sizeof(err)), -1);
    }
}

static void test_unresolved_record_list(void **state)
{
    struct fx *f = *state;
    ps_unresolved_t a, b, *list = NULL;
    char dir[600], err[512] = "";
    size_t n = 0, invalid = 0;
    struct stat st;

    snprintf(dir, sizeof(dir), "%s/spool/unresolved", f->base);
    /* missing directory: nothing recorded, not an error */
    assert_int_equal(ps_unresolved_list(dir, &list, &n, &invalid, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    memset(&a, 0, sizeof(a));
    snprintf(a.login, sizeof(a.login), "bob");
    snprintf(a.config, sizeof(a.config), "/etc/a.conf");
    a.recorded = 200;
    memset(&b, 0, sizeof(b));
    snprintf(b.login, sizeof(b.login), "alice");
    snprintf(b.config, sizeof(b.config), "/etc/a.conf");
    snprintf(b.service, sizeof(b.service), "sshd");
    snprintf(b.mode, sizeof(b.mode), "close");
    b.recorded = 100;
    /* creates the parent and the directory 0700 */
    assert_int_equal(ps_unresolved_record(dir, &a, err, sizeof(err)), 0);
    assert_int_equal(ps_unresolved_record(dir, &b, err, sizeof(err)), 0);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    /* the same key again keeps the first record's time */
    b.recorded = 999;
    assert_int_equal(ps_unresolved_record(dir, &b, err, sizeof(err)), 0);
    assert_int_equal(ps_unresolved_list(dir, &list, &n, &invalid, err, sizeof(err)), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].login, "alice"); /* oldest first */
    assert_true(list[0].recorded == 100);
    assert_string_equal(list[0].mode, "close");
    assert_string_equal(list[1].login, "bob");
    assert_int_equal(invalid, 0);
    free(list);
    /* hostile input is refused before anything is written */
    snprintf(a.login, sizeof(a.login), "../x");
    assert_int_equal(ps_unresolved_record(dir, &a, err, sizeof(err)), -1);
    snprintf(a.login, sizeof(a.login), "carol");
    snprintf(a.config, sizeof(a.config), "relative.conf");
    assert_int_equal(ps_unresolved_record(dir, &a, err, sizeof(err)), -1);
    assert_int_equal(count_files(dir, ""), 2);
    /* a group-writable directory is refused with the fix */
    assert_int_equal(chmod(dir, 0770), 0);
    snprintf(a.config, sizeof(a.config), "/etc/a.conf");
    assert_int_equal(ps_unresolved_record(dir, &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "chmod 700"));
    assert_int_equal(ps_unresolved_list(dir, &list, &n, &invalid, err, sizeof(err)), -1);
    assert_int_equal(chmod(dir, 0700), 0);
}

static void test_unresolved_record_full_disk(void **state)
{
    struct fx *f = *state;
    char dir[600];
    pid_t pid;

    snprintf(dir, sizeof(dir), "%s/u", f->base);
    pid = fork();
    assert_true(pid >= 0);
    if(pid == 0) {
        struct rlimit rl = { 16, 16 };
        ps_unresolved_t u;
        char err[512] = "";
        int code = 0;

        signal(SIGXFSZ, SIG_IGN);
        if(setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(10);
        memset(&u, 0, sizeof(u));
        snprintf(u.login, sizeof(u.login), "alice");
        snprintf(u.config, sizeof(u.config), "/etc/planetscale/deprovision.conf");
        if(ps_unresolved_record(dir, &u, err, sizeof(err)) != -1)
            code = 11;
        else if(!strstr(err, "File too large") || !strstr(err, dir))
            code = 12;
        _exit(code);
    }
    assert_int_equal(reap(pid), 0);
    /* no record and no temp file left behind */
    assert_int_equal(count_files(dir, ""), 0);
}

/* ------------------------------------------------------------ hook note */

static void test_hook_note_parse_strict(void **state)
{
    static const char *const bad[] = {
        "",
        "{}",
        "[]",
        "{\"at\":1,\"api\":\"https://a/v1\"}",
        "{\"at\":1,\"api\":\"https://a/v1\",\"reason\":\"r\",\"x\":1}",
        "{\"at\":\"1\",\"api\":\"https://a/v1\",\"reason\":\"r\"}",
        "{\"at\":1.5,\"api\":\"https://a/v1\",\"reason\":\"r\"}",
        "{\"at\":1,\"api\":2,\"reason\":\"r\"}",
        "{\"at\":1,\"api\":\"https://a/v1\",\"reason\":null}",
        "{\"at\":1,\"api\":\"https://a/v1\",\"reason\":\"r\"} trailing",
        "{\"at\":1,\"api\":\"https://a/v1\",\"reason\":\"r\",}",
    };
    char api[64], reason[64];
    long long at = 0;
    size_t i;
    const char *good = "{\"at\":1700000000,\"api\":\"https://a/v1\",\"reason\":\"GET: timeout\"}\n";

    (void)state;
    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ps_hook_note_parse(bad[i], strlen(bad[i]), &at, api, sizeof(api), reason,
                                            sizeof(reason)),
                         -1);
    assert_int_equal(
        ps_hook_note_parse(good, strlen(good), &at, api, sizeof(api), reason, sizeof(reason)), 0);
    assert_true(at == 1700000000LL);
    assert_string_equal(api, "https://a/v1");
    assert_string_equal(reason, "GET: timeout");
    /* an API URL longer than the caller's buffer is not cut: refused */
    assert_int_equal(ps_hook_note_parse(good, strlen(good), &at, api, 8, reason, sizeof(reason)),
                     -1);
}

static void test_hook_note_write_fresh_clear(void **state)
{
    struct fx *f = *state;
    static const ps_log_t quiet = { .to_stderr = 0 };
    ps_queue_t *q = open_q(f);
    char reason[128], err[512], path[256];
    long long at = 0;
    ps_qentry_t *list = NULL;
    size_t n = 99;
    struct stat st;

    assert_int_equal(ps_hook_note_fresh(f->qdir, "https://a/v1", 60, &at, reason, sizeof(reason)),
                     0);
    ps_hook_note_write(f->qdir, "https://a/v1", "GET: timeout", &quiet);
    snprintf(path, sizeof(path), "%s/%s", f->qdir, PS_HOOK_NOTE_NAME);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(ps_hook_note_fresh(f->qdir, "https://a/v1", 60, &at, reason, sizeof(reason)),
                     1);
    assert_string_equal(reason, "GET: timeout");
    assert_true(at > 0);
    /* another API, or a window already over */
    assert_int_equal(ps_hook_note_fresh(f->qdir, "https://b/v1", 60, &at, reason, sizeof(reason)),
                     0);
    assert_int_equal(ps_hook_note_fresh(f->qdir, "https://a/v1", 0, &at, reason, sizeof(reason)),
                     0);
    /* never an entry, never invalid */
    assert_int_equal(ps_queue_list(q, 0, &list, &n, NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    free(list);
    /* not ours to trust once others may write it */
    assert_int_equal(chmod(path, 0660), 0);
    assert_int_equal(ps_hook_note_fresh(f->qdir, "https://a/v1", 60, &at, reason, sizeof(reason)),
                     0);
    ps_hook_note_clear(f->qdir);
    assert_int_equal(lstat(path, &st), -1);
    ps_hook_note_clear(f->qdir); /* nothing to clear: no harm */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_0700, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refuses_0755, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refuses_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_parent_must_exist, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refuses_bad_subdir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refuses_foreign_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_key_keeps_older, setup, teardown),
        cmocka_unit_test_setup_teardown(test_email_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recorded_defaults_to_now, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_refuses_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oldest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_after_done_is_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_follows_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_after_dead_letter_is_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_removes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_foreign_owner, setup, teardown),
        cmocka_unit_test(test_parse_strict),
        cmocka_unit_test(test_format_parse_roundtrip),
        cmocka_unit_test(test_not_before),
        cmocka_unit_test_setup_teardown(test_put_write_failure, setup, teardown),
        cmocka_unit_test(test_unresolved_parse_strict),
        cmocka_unit_test_setup_teardown(test_unresolved_record_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unresolved_record_full_disk, setup, teardown),
        cmocka_unit_test(test_hook_note_parse_strict),
        cmocka_unit_test_setup_teardown(test_hook_note_write_fresh_clear, setup, teardown),
    };

    return cmocka_run_group_tests_name("queue", tests, NULL, NULL);
}
