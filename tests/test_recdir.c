/* test_recdir.c - the one record-directory layer under the spool and the
 * unresolved records, and the two places where their copies once drifted:
 *
 * - a file system without RENAME_NOREPLACE: an invalid file is still moved
 *   aside (check, then rename) and never replaces a file already in
 *   invalid/, for spool entries and unresolved records alike;
 * - a process out of descriptors (EMFILE) while listing: an error for the
 *   caller, never a reason to move a valid record aside, for both.
 *
 * renameat2 and openat are wrapped at link time (-Wl,--wrap) so that the
 * tests can make them fail like such a file system or such a process. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "queue.h"
#include "recdir.h"
#include "unresolved.h"

/* ------------------------------------------------------------ the wraps */

static int no_noreplace;   /* renameat2 answers EINVAL (no RENAME_NOREPLACE) */
static int noreplace_used; /* how many times the fallback was needed */
static int emfile_json;    /* openat of a "*.json" file answers EMFILE */

int __real_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
                     unsigned int flags);
int __wrap_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
                     unsigned int flags);
int __real_openat(int dirfd, const char *path, int flags, ...);
int __wrap_openat(int dirfd, const char *path, int flags, ...);

int __wrap_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
                     unsigned int flags)
{
    if(no_noreplace && (flags & RENAME_NOREPLACE)) {
        noreplace_used++;
        errno = EINVAL;
        return -1;
    }
    return __real_renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}

int __wrap_openat(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    size_t len = strlen(path);

    if(flags & O_CREAT) {
        va_list ap;

        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if(emfile_json && len > 5 && strcmp(path + len - 5, ".json") == 0 && !(flags & O_CREAT)) {
        errno = EMFILE;
        return -1;
    }
    return __real_openat(dirfd, path, flags, mode);
}

/* ------------------------------------------------------------ fixture */

struct fx {
    char dir[64];
    char qdir[96];
    char udir[96];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    snprintf(f->dir, sizeof(f->dir), "/tmp/test_recdir.XXXXXX");
    if(!mkdtemp(f->dir))
        return -1;
    snprintf(f->qdir, sizeof(f->qdir), "%s/queue", f->dir);
    snprintf(f->udir, sizeof(f->udir), "%s/queue/unresolved", f->dir);
    no_noreplace = noreplace_used = emfile_json = 0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    no_noreplace = emfile_json = 0;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if(system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static void write_file(const char *dir, const char *name, const char *data)
{
    char path[512];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
    close(fd);
}

static int exists(const char *dir, const char *name)
{
    char path[512];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return lstat(path, &st) == 0;
}

static void count_invalid(void *arg, const char *name, const char *why)
{
    (void)name;
    (void)why;
    (*(int *)arg)++;
}

/* A valid spool entry for alice, and a valid unresolved record of bob. */
static void make_records(struct fx *f, ps_queue_t *q, char ename[32], char uname[32])
{
    char err[512];
    ps_qentry_t e;
    ps_unresolved_t u;

    memset(&e, 0, sizeof(e));
    snprintf(e.login, sizeof(e.login), "alice");
    snprintf(e.organization, sizeof(e.organization), "acme");
    snprintf(e.id, sizeof(e.id), "d4xkq1abc");
    assert_int_equal(ps_queue_put(q, &e, err, sizeof(err)), 0);
    snprintf(ename, 32, "%s", e.name);

    memset(&u, 0, sizeof(u));
    snprintf(u.login, sizeof(u.login), "bob");
    snprintf(u.config, sizeof(u.config), "/etc/planetscale/deprovision.conf");
    assert_int_equal(ps_unresolved_record(f->udir, &u, err, sizeof(err)), 0);
    snprintf(uname, 32, "%s", u.name);
}

/* ------------------------------------------------------------ tests */

static void test_without_rename_noreplace_both_move_aside_and_never_replace(void **state)
{
    struct fx *f = *state;
    char err[512], ename[32], uname[32], qinv[160], uinv[160];
    ps_queue_t *q = NULL;
    ps_qentry_t *list = NULL;
    ps_unresolved_t *ulist = NULL;
    size_t n = 0, invalid = 0;
    int reported = 0;

    assert_int_equal(ps_queue_open(&q, f->qdir, err, sizeof(err)), 0);
    make_records(f, q, ename, uname);
    snprintf(qinv, sizeof(qinv), "%s/invalid", f->qdir);
    snprintf(uinv, sizeof(uinv), "%s/invalid", f->udir);
    assert_int_equal(mkdir(uinv, 0700), 0);
    /* a corrupt file in each, and one of the same name already set aside */
    write_file(f->qdir, "0000000000000bad.json", "not json");
    write_file(qinv, "0000000000000bad.json", "the earlier one");
    write_file(f->udir, "0000000000000bad.json", "not json either");
    write_file(uinv, "0000000000000bad.json", "the earlier one");

    no_noreplace = 1;
    assert_int_equal(ps_queue_list(q, 0, &list, &n, count_invalid, &reported, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].login, "alice");
    assert_int_equal(reported, 1);
    assert_false(exists(f->qdir, "0000000000000bad.json"));
    assert_true(exists(qinv, "0000000000000bad.json"));
    assert_true(exists(qinv, "0000000000000bad.json.1")); /* not replaced */

    assert_int_equal(ps_unresolved_list(f->udir, &ulist, &n, &invalid, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ulist[0].login, "bob");
    assert_int_equal(invalid, 1);
    assert_false(exists(f->udir, "0000000000000bad.json"));
    assert_true(exists(uinv, "0000000000000bad.json.1"));
    assert_true(noreplace_used >= 2); /* both went through the fallback */
    free(list);
    free(ulist);
    ps_queue_close(q);
}

static void test_out_of_descriptors_is_an_error_never_a_quarantine(void **state)
{
    struct fx *f = *state;
    char err[512], ename[32], uname[32];
    ps_queue_t *q = NULL;
    ps_qentry_t *list = NULL;
    ps_unresolved_t *ulist = NULL;
    size_t n = 0, invalid = 0;
    int reported = 0;

    assert_int_equal(ps_queue_open(&q, f->qdir, err, sizeof(err)), 0);
    make_records(f, q, ename, uname);

    emfile_json = 1;
    assert_int_equal(ps_queue_list(q, 0, &list, &n, count_invalid, &reported, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "Too many open files"));
    assert_int_equal(reported, 0);
    assert_int_equal(ps_unresolved_list(f->udir, &ulist, &n, &invalid, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "Too many open files"));
    assert_int_equal(invalid, 0);
    emfile_json = 0;

    /* both valid records are where they were, and list again */
    assert_true(exists(f->qdir, ename));
    assert_true(exists(f->udir, uname));
    assert_int_equal(ps_queue_list(q, 0, &list, &n, count_invalid, &reported, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ps_unresolved_list(f->udir, &ulist, &n, &invalid, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    free(list);
    free(ulist);
    ps_queue_close(q);
}

static void test_read_reports_each_kind(void **state)
{
    struct fx *f = *state;
    char err[512], why[256], ename[32], uname[32];
    ps_queue_t *q = NULL;
    ps_qentry_t e;
    int dfd;

    assert_int_equal(ps_queue_open(&q, f->qdir, err, sizeof(err)), 0);
    make_records(f, q, ename, uname);
    assert_int_equal(ps_queue_read(q, ename, &e, err, sizeof(err)), 0);
    assert_int_equal(ps_queue_read(q, "0123456789abcdef.json", &e, err, sizeof(err)), 2);
    emfile_json = 1;
    assert_int_equal(ps_queue_read(q, ename, &e, err, sizeof(err)), -1);
    emfile_json = 0;

    /* the directory rules: a group-readable directory is refused */
    dfd = ps_recdir_open(f->qdir, 0, why, sizeof(why));
    assert_true(dfd >= 0);
    close(dfd);
    assert_int_equal(chmod(f->qdir, 0750), 0);
    assert_int_equal(ps_recdir_open(f->qdir, 0, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "chmod 700"));
    assert_int_equal(chmod(f->qdir, 0700), 0);
    assert_int_equal(ps_recdir_open("/nonexistent/x", 0, why, sizeof(why)), -2);
    ps_queue_close(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_without_rename_noreplace_both_move_aside_and_never_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_descriptors_is_an_error_never_a_quarantine,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_reports_each_kind, setup, teardown),
    };

    return cmocka_run_group_tests_name("recdir", tests, NULL, NULL);
}
