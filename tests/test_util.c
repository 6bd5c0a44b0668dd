/* test_util.c - unit tests for src/util.c (cmocka). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define DAY 86400

/* ------------------------------------------------------------ ps_escape */

static void test_escape_plain(void **state)
{
    char out[64];

    (void)state;
    assert_string_equal(ps_escape("alice", out, sizeof(out)), "alice");
    assert_string_equal(ps_escape("", out, sizeof(out)), "");
    assert_string_equal(ps_escape(NULL, out, sizeof(out)), "");
    assert_string_equal(ps_escape("a b-c_d.e@f", out, sizeof(out)), "a b-c_d.e@f");
}

static void test_escape_control(void **state)
{
    char out[64];

    (void)state;
    assert_string_equal(ps_escape("a\nb", out, sizeof(out)), "a\\x0ab");
    assert_string_equal(ps_escape("a\rb", out, sizeof(out)), "a\\x0db");
    assert_string_equal(ps_escape("\x1b[31m", out, sizeof(out)), "\\x1b[31m");
    assert_string_equal(ps_escape("x\x7fy", out, sizeof(out)), "x\\x7fy");
    assert_string_equal(ps_escape("t\tt", out, sizeof(out)), "t\\x09t");
}

static void test_escape_quote_backslash(void **state)
{
    char out[64];

    (void)state;
    assert_string_equal(ps_escape("say \"hi\"", out, sizeof(out)), "say \\x22hi\\x22");
    assert_string_equal(ps_escape("a\\b", out, sizeof(out)), "a\\x5cb");
}

static void test_escape_non_ascii(void **state)
{
    char out[64];

    (void)state;
    /* "é" in UTF-8 */
    assert_string_equal(ps_escape("caf\xc3\xa9", out, sizeof(out)), "caf\\xc3\\xa9");
    assert_string_equal(ps_escape("\xff", out, sizeof(out)), "\\xff");
}

static void test_escape_truncation(void **state)
{
    char out[8];
    char big[300];
    char huge[4096];

    (void)state;
    /* fits exactly: 7 chars + NUL */
    assert_string_equal(ps_escape("abcdefg", out, sizeof(out)), "abcdefg");
    /* one too many: truncated with "..." */
    assert_string_equal(ps_escape("abcdefgh", out, sizeof(out)), "abcd...");
    /* an escape is never cut in half */
    assert_string_equal(ps_escape("ab\ncdefgh", out, sizeof(out)), "ab...");
    assert_string_equal(ps_escape("\n\n\n", out, sizeof(out)), "\\x0a...");
    /* tiny buffers */
    assert_string_equal(ps_escape("abc", out, 1), "");
    assert_string_equal(ps_escape("abc", out, 3), "..");
    assert_string_equal(ps_escape("ab", out, 3), "ab");
    assert_null(ps_escape("abc", NULL, 0));

    memset(big, '\n', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ps_escape(big, huge, sizeof(huge));
    assert_int_equal(strlen(huge), 4 * (sizeof(big) - 1));
    ps_escape(big, huge, 100);
    assert_int_equal(strlen(huge), 99);
    assert_string_equal(huge + 96, "...");
    assert_null(strchr(huge, '\n'));
}

/* ------------------------------------------------------------ logins */

static void test_login_valid(void **state)
{
    char big[PS_LOGIN_MAX + 2];

    (void)state;
    assert_true(ps_login_valid("alice"));
    assert_true(ps_login_valid("a"));
    assert_true(ps_login_valid("first.last"));
    assert_true(ps_login_valid("svc_backup-1"));
    assert_true(ps_login_valid("machine$"));
    assert_true(ps_login_valid("a-"));

    assert_false(ps_login_valid(NULL));
    assert_false(ps_login_valid(""));
    assert_false(ps_login_valid("alice\n"));
    assert_false(ps_login_valid("ali\nce"));
    assert_false(ps_login_valid("alice\r"));
    assert_false(ps_login_valid("a\x1b"));
    assert_false(ps_login_valid("a\x7f"));
    assert_false(ps_login_valid("-alice"));
    assert_false(ps_login_valid("-"));
    assert_false(ps_login_valid("a/b"));
    assert_false(ps_login_valid("../etc"));
    assert_false(ps_login_valid("a b"));
    assert_false(ps_login_valid("a:b"));
    assert_false(ps_login_valid("a\\b"));

    memset(big, 'a', sizeof(big));
    big[PS_LOGIN_MAX] = '\0'; /* 256 bytes: the maximum */
    assert_true(ps_login_valid(big));
    big[PS_LOGIN_MAX] = 'a';
    big[PS_LOGIN_MAX + 1] = '\0'; /* 257 bytes */
    assert_false(ps_login_valid(big));
}

/* ------------------------------------------------------------ ids */

static void test_email_valid(void **state)
{
    static const char *const good[] = {
        "alice@example.com",  "Alice.Smith+ops@Example.COM",     "a@b",   "x_y-z@sub.example.co.uk",
        "o'brien@example.ie", "!#$%&'*+/=?^_`{|}~-@example.com", "1@2.3",
    };
    static const char *const bad[] = {
        "",
        "alice",
        "@example.com",
        "alice@",
        "alice@@example.com",
        "a@b@c",
        "alice@.example.com",
        "alice@example..com",
        "alice@example.com.",
        "al ice@example.com",
        "alice@exa mple.com",
        "\"alice\"@example.com",
        "alice@[127.0.0.1]",
        "alice@example.com\n",
        "al\x01ice@x.y",
        "al\xc3\xa9@example.com",
        "alice@ex_ample.com",
        "a(b)@example.com",
        "a,b@example.com",
        "a\\b@example.com",
    };
    char local[80], long_email[300];
    size_t i;

    (void)state;
    for(i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if(!ps_email_valid(good[i]))
            fail_msg("refused \"%s\"", good[i]);
    }
    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if(ps_email_valid(bad[i]))
            fail_msg("accepted \"%s\"", bad[i]);
    }
    assert_false(ps_email_valid(NULL));
    /* the local part: 64 bytes at most */
    memset(local, 'a', 64);
    snprintf(local + 64, sizeof(local) - 64, "@x.y");
    assert_true(ps_email_valid(local));
    memset(local, 'a', 65);
    snprintf(local + 65, sizeof(local) - 65, "@x.y");
    assert_false(ps_email_valid(local));
    /* the whole: 254 bytes at most */
    memset(long_email, 'b', sizeof(long_email));
    memcpy(long_email, "a@", 2);
    long_email[254] = '\0';
    assert_true(ps_email_valid(long_email));
    long_email[254] = 'b';
    long_email[255] = '\0';
    assert_false(ps_email_valid(long_email));
}

static void test_email_equal(void **state)
{
    (void)state;
    assert_true(ps_email_equal("Alice@Example.COM", "alice@example.com"));
    assert_true(ps_email_equal("", ""));
    assert_false(ps_email_equal("alice@example.com", "alice@example.co"));
    assert_false(ps_email_equal("alice@example.co", "alice@example.com"));
    assert_false(ps_email_equal("alice@example.com", "alicf@example.com"));
    /* ASCII only: no locale folding of other bytes */
    assert_false(ps_email_equal("\xc3\x89@x.y", "\xc3\xa9@x.y"));
    assert_false(ps_email_equal(NULL, "a@b"));
    assert_false(ps_email_equal("a@b", NULL));
}

static void test_id_valid(void **state)
{
    char big[PS_ID_MAX + 2];

    (void)state;
    assert_true(ps_id_valid("d4xkq1abc"));
    assert_true(ps_id_valid("acme"));
    assert_true(ps_id_valid("acme-eu"));
    assert_true(ps_id_valid("a.b_c-D9"));
    assert_true(ps_id_valid("a.."));
    assert_true(ps_id_valid("_x"));

    assert_false(ps_id_valid(NULL));
    assert_false(ps_id_valid(""));
    assert_false(ps_id_valid("."));
    assert_false(ps_id_valid(".."));
    assert_false(ps_id_valid(".hidden"));
    assert_false(ps_id_valid("-x"));
    assert_false(ps_id_valid("a/b"));
    assert_false(ps_id_valid("a?b"));
    assert_false(ps_id_valid("a#b"));
    assert_false(ps_id_valid("a%2f"));
    assert_false(ps_id_valid("a b"));
    assert_false(ps_id_valid("a\n"));
    assert_false(ps_id_valid("a\t"));
    assert_false(ps_id_valid("caf\xc3\xa9"));
    assert_false(ps_id_valid("a:b"));
    assert_false(ps_id_valid("a@b"));

    memset(big, 'x', sizeof(big));
    big[PS_ID_MAX] = '\0';
    assert_true(ps_id_valid(big));
    big[PS_ID_MAX] = 'x';
    big[PS_ID_MAX + 1] = '\0';
    assert_false(ps_id_valid(big));
}

/* ------------------------------------------------------------ shadow */

static void test_shadow_expired(void **state)
{
    time_t now = (time_t)20000 * DAY + 12 * 3600; /* day 20000, noon */

    (void)state;
    /* -1: never expires */
    assert_false(ps_shadow_expired(-1, now));
    assert_false(ps_shadow_expired(-1, 0));
    /* 0: 1970-01-01, long gone (pam_unix agrees: curdays >= 0) */
    assert_true(ps_shadow_expired(0, now));
    assert_true(ps_shadow_expired(0, 0));
    /* today: expired (>=) */
    assert_true(ps_shadow_expired(20000, now));
    assert_true(ps_shadow_expired(20000, (time_t)20000 * DAY));
    /* tomorrow: not yet */
    assert_false(ps_shadow_expired(20001, now));
    assert_false(ps_shadow_expired(20001, (time_t)20001 * DAY - 1));
    assert_true(ps_shadow_expired(20001, (time_t)20001 * DAY));
    /* yesterday */
    assert_true(ps_shadow_expired(19999, now));
}

static void test_shadow_due(void **state)
{
    time_t now = (time_t)20000 * DAY + 12 * 3600; /* day 20000, noon */

    (void)state;
    assert_int_equal(ps_shadow_today(now), 20000);
    assert_int_equal(ps_shadow_today((time_t)20000 * DAY - 1), 19999);
    /* never, or not expired yet: never due, whatever the grace */
    assert_false(ps_shadow_due(-1, 0, now));
    assert_false(ps_shadow_due(20001, 0, now));
    assert_false(ps_shadow_due(20001, 7, now));
    /* grace 0 is ps_shadow_expired */
    assert_true(ps_shadow_due(20000, 0, now));
    /* grace 7: expired 6 days ago is the day before it becomes due */
    assert_false(ps_shadow_due(20000 - 6, 7, now));
    assert_true(ps_shadow_due(20000 - 7, 7, now));
    assert_true(ps_shadow_due(20000 - 8, 7, now));
    /* the boundary is midnight UTC of day expire + grace */
    assert_false(ps_shadow_due(19993, 7, (time_t)20000 * DAY - 1));
    assert_true(ps_shadow_due(19993, 7, (time_t)20000 * DAY));
    /* 0 (1970-01-01) and other negative values: long past any grace */
    assert_true(ps_shadow_due(0, PS_GRACE_DAYS_MAX, now));
    assert_true(ps_shadow_due(-2, PS_GRACE_DAYS_MAX, now));
    assert_true(ps_shadow_due(LONG_MIN, PS_GRACE_DAYS_MAX, now));
    assert_false(ps_shadow_due(LONG_MAX, 0, now));
}

static void test_grace_parse(void **state)
{
    static const char *bad[] = {
        "", "-1", "+1", " 1", "1 ", "1x", "0x10", "3651", "99999999999999999999", "1.5"
    };
    long v = -5;
    size_t i;

    (void)state;
    assert_int_equal(ps_grace_parse("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(ps_grace_parse("7", &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(ps_grace_parse("007", &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(ps_grace_parse("3650", &v), 0);
    assert_int_equal(v, PS_GRACE_DAYS_MAX);
    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = -5;
        assert_int_equal(ps_grace_parse(bad[i], &v), -1);
        assert_int_equal(v, -5);
    }
    assert_int_equal(ps_grace_parse(NULL, &v), -1);
}

/* ------------------------------------------------------------ key */

static void test_key_hex(void **state)
{
    char out[17];

    (void)state;
    /* FNV-1a 64 of "alice\0acme\0d4xkq1abc" */
    ps_key_hex("alice", "acme", "d4xkq1abc", out);
    assert_string_equal(out, "59c28dc05bfef256");
    /* FNV-1a 64 of "\0\0" */
    ps_key_hex("", "", "", out);
    assert_string_equal(out, "08328807b4eb6fed");
    ps_key_hex(NULL, NULL, NULL, out);
    assert_string_equal(out, "08328807b4eb6fed");
    /* fields are separated: moving a byte across changes the key */
    ps_key_hex("ab", "c", "", out);
    {
        char other[17];
        ps_key_hex("a", "bc", "", other);
        assert_string_not_equal(out, other);
    }
    assert_int_equal(strlen(out), 16);
}

/* ------------------------------------------------------------ perms */

struct tmp {
    char dir[64];
    char file[128];
};

static int tmp_setup(void **state)
{
    struct tmp *t = calloc(1, sizeof(*t));

    if(!t)
        return -1;
    snprintf(t->dir, sizeof(t->dir), "/tmp/test_util.XXXXXX");
    if(!mkdtemp(t->dir))
        return -1;
    snprintf(t->file, sizeof(t->file), "%s/f", t->dir);
    *state = t;
    return 0;
}

static int tmp_teardown(void **state)
{
    struct tmp *t = *state;
    char link[160];

    snprintf(link, sizeof(link), "%s/link", t->dir);
    unlink(link);
    unlink(t->file);
    rmdir(t->dir);
    free(t);
    return 0;
}

static void make_file(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, "x\n", 2), 2);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void test_perms(void **state)
{
    struct tmp *t = *state;
    char err[512];
    char link[160];
    int fd;

    make_file(t->file, 0600);
    assert_int_equal(ps_check_file_perms(t->file, 1, err, sizeof(err)), 0);
    assert_int_equal(ps_check_file_perms(t->file, 0, err, sizeof(err)), 0);

    make_file(t->file, 0644);
    assert_int_equal(ps_check_file_perms(t->file, 0, err, sizeof(err)), 0);
    assert_int_equal(ps_check_file_perms(t->file, 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "chmod 600 "));
    assert_non_null(strstr(err, t->file));

    make_file(t->file, 0640);
    assert_int_equal(ps_check_file_perms(t->file, 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "chmod 600"));

    make_file(t->file, 0620);
    assert_int_equal(ps_check_file_perms(t->file, 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "chmod go-w"));
    make_file(t->file, 0602);
    assert_int_equal(ps_check_file_perms(t->file, 0, err, sizeof(err)), -1);

    /* same through a descriptor */
    make_file(t->file, 0604);
    fd = open(t->file, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(ps_check_fd_perms(fd, t->file, 0, err, sizeof(err)), 0);
    assert_int_equal(ps_check_fd_perms(fd, t->file, 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "chmod 600"));
    close(fd);

    /* a symlink is refused by path */
    make_file(t->file, 0600);
    snprintf(link, sizeof(link), "%s/link", t->dir);
    assert_int_equal(symlink(t->file, link), 0);
    assert_int_equal(ps_check_file_perms(link, 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "symbolic link"));

    /* owned by somebody else (needs root to set up) */
    if(geteuid() == 0) {
        unlink(link);
        make_file(t->file, 0600);
        assert_int_equal(chown(t->file, 65534, 65534), 0);
        assert_int_equal(ps_check_file_perms(t->file, 1, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "chown root"));
        assert_int_equal(ps_check_file_perms(t->file, 0, err, sizeof(err)), -1);
    }

    /* a directory is not a regular file */
    assert_int_equal(ps_check_file_perms(t->dir, 0, err, sizeof(err)), -1);
    /* missing */
    assert_int_equal(ps_check_file_perms("/nonexistent/x", 0, err, sizeof(err)), -1);
}

static void test_perms_owner(void **state)
{
    char err[512];

    (void)state;
    /* /etc/passwd is root's: fine for everyone, not a secret-grade file */
    if(access("/etc/passwd", R_OK) == 0) {
        assert_int_equal(ps_check_file_perms("/etc/passwd", 0, err, sizeof(err)), 0);
        assert_int_equal(ps_check_file_perms("/etc/passwd", 1, err, sizeof(err)), -1);
    }
}

/* ------------------------------------------------------------ ps_open_regular */

/* Expects ps_open_regular(path) to refuse with errno e and a message that
 * starts "PATH: " and holds `words`; fast, since nothing may block. */
static void expect_refused(const char *path, int nofollow, int e, const char *words)
{
    char err[512], want[400];
    double t0 = ps_now();
    int fd;

    err[0] = '\0';
    errno = 0;
    fd = ps_open_regular(path, nofollow, err, sizeof(err));
    if(fd >= 0)
        close(fd);
    assert_int_equal(fd, -1);
    assert_int_equal(errno, e);
    snprintf(want, sizeof(want), "%s: ", path);
    assert_memory_equal(err, want, strlen(want));
    if(!strstr(err, words))
        fail_msg("\"%s\" does not contain \"%s\"", err, words);
    assert_true(ps_now() - t0 < 5.0);
}

static void test_open_regular(void **state)
{
    struct tmp *t = *state;
    char fifo[160], link[160], sub[160], sock[160], flink[160], err[512];
    struct sockaddr_un sa;
    char buf[8];
    int fd, s;

    make_file(t->file, 0644);
    snprintf(fifo, sizeof(fifo), "%s/fifo", t->dir);
    snprintf(link, sizeof(link), "%s/link", t->dir);
    snprintf(sub, sizeof(sub), "%s/sub", t->dir);
    snprintf(sock, sizeof(sock), "%s/sock", t->dir);
    snprintf(flink, sizeof(flink), "%s/flink", t->dir);

    /* a regular file: open, close-on-exec, blocking again, nothing read */
    fd = ps_open_regular(t->file, 1, err, sizeof(err));
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
    assert_int_equal(read(fd, buf, sizeof(buf)), 2);
    close(fd);

    /* a FIFO with no writer: refused at once, not waited on */
    assert_int_equal(mkfifo(fifo, 0600), 0);
    expect_refused(fifo, 0, EINVAL, "not a regular file (a FIFO)");
    expect_refused(fifo, 1, EINVAL, "not a regular file (a FIFO)");

    /* other kinds */
    assert_int_equal(mkdir(sub, 0700), 0);
    expect_refused(sub, 0, EINVAL, "not a regular file (a directory)");
    expect_refused("/dev/zero", 0, EINVAL, "not a regular file (a character device)");
    expect_refused("/dev/null", 1, EINVAL, "not a regular file (a character device)");
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(s >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    assert_true(strlen(sock) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    expect_refused(sock, 0, EINVAL, "not a regular file (a socket)");
    close(s);

    /* symbolic links: followed (the target counts) unless nofollow */
    assert_int_equal(symlink(t->file, link), 0);
    fd = ps_open_regular(link, 0, err, sizeof(err));
    assert_true(fd >= 0);
    close(fd);
    expect_refused(link, 1, ELOOP, "symbolic link");
    assert_int_equal(symlink(fifo, flink), 0);
    expect_refused(flink, 0, EINVAL, "not a regular file (a FIFO)");
    expect_refused(flink, 1, ELOOP, "symbolic link");

    /* missing */
    expect_refused("/nonexistent/x", 0, ENOENT, "cannot open: No such file");

    /* ps_check_*_perms name the kind too */
    assert_int_equal(ps_check_file_perms(fifo, 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a regular file (a FIFO)"));
    assert_string_equal(ps_file_kind(S_IFREG | 0644), "a regular file");
    assert_string_equal(ps_file_kind(S_IFBLK), "a block device");

    unlink(flink);
    unlink(sock);
    rmdir(sub);
    unlink(fifo);
}

/* ------------------------------------------------------------ clock */

static void test_now(void **state)
{
    double a;
    double b;

    (void)state;
    a = ps_now();
    b = ps_now();
    assert_true(a > 0);
    assert_true(b >= a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_plain),
        cmocka_unit_test(test_escape_control),
        cmocka_unit_test(test_escape_quote_backslash),
        cmocka_unit_test(test_escape_non_ascii),
        cmocka_unit_test(test_escape_truncation),
        cmocka_unit_test(test_login_valid),
        cmocka_unit_test(test_id_valid),
        cmocka_unit_test(test_email_valid),
        cmocka_unit_test(test_email_equal),
        cmocka_unit_test(test_shadow_expired),
        cmocka_unit_test(test_shadow_due),
        cmocka_unit_test(test_grace_parse),
        cmocka_unit_test(test_key_hex),
        cmocka_unit_test_setup_teardown(test_perms, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_perms_owner),
        cmocka_unit_test_setup_teardown(test_open_regular, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_now),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
