/* test_sender.c - unit tests of the sender's wire (src/sender_wire.c): the
 * HELLO the sender reads, the SEND it reads, the DONE the client reads (and
 * the sender writes), and the cutting of a byte stream into lines, with the
 * descriptors that ride along. Valid lines, truncated ones, lines that come
 * in pieces, overlong fields, bad numbers, bad names and unknown words. The
 * exchange itself is tested end to end in tests/integration/test_sender.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "remove.h"
#include "sender_wire.h"

#define NAME "0123456789abcdef.json"

/* A line of `n` copies of `c` between prefix and suffix (caller frees). */
static char *filled(const char *prefix, char c, size_t n, const char *suffix)
{
    size_t lp = strlen(prefix), ls = strlen(suffix);
    char *s = malloc(lp + n + ls + 1);

    assert_non_null(s);
    memcpy(s, prefix, lp);
    memset(s + lp, c, n);
    memcpy(s + lp + n, suffix, ls + 1);
    return s;
}

/* ------------------------------------------------------------ HELLO */

static void test_hello_valid(void **state)
{
    ps_sender_hello_t *h = malloc(sizeof(*h));

    (void)state;
    assert_non_null(h);
    assert_int_equal(ps_sender_parse_hello("HELLO 1 https://api.planetscale.com/v1 "
                                           "/var/spool/planetscale-deprovision",
                                           h),
                     0);
    assert_string_equal(h->url, "https://api.planetscale.com/v1");
    assert_string_equal(h->queue_dir, "/var/spool/planetscale-deprovision");
    /* the queue directory is the rest of the line, spaces included */
    assert_int_equal(ps_sender_parse_hello("HELLO 1 https://127.0.0.1:8443/v1 /tmp/a b", h), 0);
    assert_string_equal(h->url, "https://127.0.0.1:8443/v1");
    assert_string_equal(h->queue_dir, "/tmp/a b");
    assert_int_equal(ps_sender_parse_hello("HELLO 1 u /", h), 0);
    assert_string_equal(h->url, "u");
    assert_string_equal(h->queue_dir, "/");
    free(h);
}

static void test_hello_invalid(void **state)
{
    static const char *const bad[] = {
        "",
        "HELLO",
        "HELLO ",
        "HELLO 1",
        "HELLO 1 ",
        "HELLO 1 u",
        "HELLO 1 u ",
        "HELLO 1  /q",   /* empty URL */
        "HELLO 1 u q",   /* relative queue directory */
        "HELLO 1 u  /q", /* queue directory " /q" */
        "HELLO 2 u /q",
        "HELLO 10 u /q",
        "HELLO 0 u /q",
        "HELLO one u /q",
        "HELLO  1 u /q",
        "hello 1 u /q",
        "HELO 1 u /q",
        "SEND 1 u /q",
        "HELLO1 u /q",
        "HELLO\t1 u /q",
    };
    ps_sender_hello_t *h = malloc(sizeof(*h));
    size_t i;

    (void)state;
    assert_non_null(h);
    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if(ps_sender_parse_hello(bad[i], h) != -1)
            fail_msg("accepted HELLO line \"%s\"", bad[i]);
    }
    free(h);
}

static void test_hello_lengths(void **state)
{
    ps_sender_hello_t *h = malloc(sizeof(*h));
    char *line;

    (void)state;
    assert_non_null(h);
    /* the longest URL and queue directory that fit */
    line = filled("HELLO 1 ", 'u', PS_SENDER_LINE_MAX - 1, " /q");
    assert_int_equal(ps_sender_parse_hello(line, h), 0);
    assert_int_equal(strlen(h->url), PS_SENDER_LINE_MAX - 1);
    free(line);
    line = filled("HELLO 1 u /", 'd', PS_SENDER_LINE_MAX - 2, "");
    assert_int_equal(ps_sender_parse_hello(line, h), 0);
    assert_int_equal(strlen(h->queue_dir), PS_SENDER_LINE_MAX - 1);
    free(line);
    /* one byte more is refused, not truncated */
    line = filled("HELLO 1 ", 'u', PS_SENDER_LINE_MAX, " /q");
    assert_int_equal(ps_sender_parse_hello(line, h), -1);
    free(line);
    line = filled("HELLO 1 u /", 'd', PS_SENDER_LINE_MAX - 1, "");
    assert_int_equal(ps_sender_parse_hello(line, h), -1);
    free(line);
    free(h);
}

/* ------------------------------------------------------------ SEND */

static void test_send_valid(void **state)
{
    char name[32];
    long ms = -1;

    (void)state;
    memset(name, 'x', sizeof(name));
    assert_int_equal(ps_sender_parse_send("SEND " NAME " 1500", name, &ms), 0);
    assert_string_equal(name, NAME);
    assert_int_equal(ms, 1500);
    assert_int_equal(ps_sender_parse_send("SEND ffffffffffffffff.json 0", name, &ms), 0);
    assert_string_equal(name, "ffffffffffffffff.json");
    assert_int_equal(ms, 0);
    assert_int_equal(ps_sender_parse_send("SEND " NAME " 00042", name, &ms), 0);
    assert_int_equal(ms, 42);
    /* up to seven days */
    assert_int_equal(ps_sender_parse_send("SEND " NAME " 604800000", name, &ms), 0);
    assert_int_equal(ms, 604800000L);
}

static void test_send_invalid(void **state)
{
    static const char *const bad[] = {
        "",
        "SEND",
        "SEND ",
        "SEND " NAME,
        "SEND " NAME " ",
        "SEND " NAME " 604800001",               /* more than seven days */
        "SEND " NAME " 99999999999999999999999", /* out of range */
        "SEND " NAME " -1",
        "SEND " NAME " +1",
        "SEND " NAME "  1",
        "SEND " NAME " 1 ",
        "SEND " NAME " 1x",
        "SEND " NAME " 0x10",
        "SEND " NAME " 1.5",
        "SEND " NAME "\t1",
        "SEND " NAME "1",
        "SEND  " NAME " 1",
        "send " NAME " 1",
        "SENT " NAME " 1",
        /* names: not 16 lowercase hex digits + ".json" */
        "SEND ../../etc/passwd 1000",
        "SEND ../../../../../etc/passwd 1000",
        "SEND 0123456789ABCDEF.json 1",
        "SEND 0123456789abcdeg.json 1",
        "SEND 0123456789abcde.json 1",
        "SEND 0123456789abcdef0.json 1",
        "SEND 0123456789abcdef.jsox 1",
        "SEND 0123456789abcdef.json.lock 1",
        "SEND .0123456789abcdef.json 1",
        "SEND 0123456789abcde/.json 1",
        "SEND 0123456789abcdef.JSON 1",
        "SEND ..23456789abcdef.json 1",
    };
    char name[32];
    long ms = 77;
    size_t i;

    (void)state;
    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(name, sizeof(name), "untouched");
        if(ps_sender_parse_send(bad[i], name, &ms) != -1)
            fail_msg("accepted SEND line \"%s\"", bad[i]);
        assert_string_equal(name, "untouched");
        assert_int_equal(ms, 77);
    }
}

static void test_send_overlong(void **state)
{
    char name[32];
    long ms = 0;
    char *line = filled("SEND " NAME " ", '9', PS_SENDER_LINE_MAX, "");

    (void)state;
    assert_int_equal(ps_sender_parse_send(line, name, &ms), -1);
    free(line);
    line = filled("SEND ", 'a', PS_SENDER_LINE_MAX, ".json 1");
    assert_int_equal(ps_sender_parse_send(line, name, &ms), -1);
    free(line);
}

/* ------------------------------------------------------------ DONE */

static void test_done_valid(void **state)
{
    static const ps_status_t sts[] = { PS_ST_REMOVED, PS_ST_ABSENT, PS_ST_QUEUED,
                                       PS_ST_REFUSED, PS_ST_CONFIG, PS_ST_ERROR };
    ps_report_t rep;
    char line[700];
    size_t i;

    (void)state;
    memset(&rep, 0, sizeof(rep));
    rep.status = PS_ST_UNMAPPED;
    assert_int_equal(ps_sender_parse_done("DONE removed 204 1 ", &rep), 0);
    assert_int_equal(rep.status, PS_ST_REMOVED);
    assert_int_equal(rep.http_status, 204);
    assert_int_equal(rep.attempts, 1);
    assert_string_equal(rep.message, "");

    assert_int_equal(ps_sender_parse_done("DONE queued 503 3 HTTP 503: Simulated error 503", &rep),
                     0);
    assert_int_equal(rep.status, PS_ST_QUEUED);
    assert_int_equal(rep.http_status, 503);
    assert_int_equal(rep.attempts, 3);
    assert_string_equal(rep.message, "HTTP 503: Simulated error 503");

    /* no message at all */
    snprintf(rep.message, sizeof(rep.message), "stale");
    assert_int_equal(ps_sender_parse_done("DONE absent 404 1", &rep), 0);
    assert_int_equal(rep.status, PS_ST_ABSENT);
    assert_string_equal(rep.message, "");

    /* no HTTP answer (0), the extremes of the ranges */
    assert_int_equal(ps_sender_parse_done("DONE queued 0 0 connection refused", &rep), 0);
    assert_int_equal(rep.http_status, 0);
    assert_int_equal(rep.attempts, 0);
    assert_int_equal(ps_sender_parse_done("DONE refused 999 1000 x", &rep), 0);
    assert_int_equal(rep.http_status, 999);
    assert_int_equal(rep.attempts, 1000);

    /* every word the sender writes, formatted as it formats them */
    for(i = 0; i < sizeof(sts) / sizeof(sts[0]); i++) {
        memset(&rep, 0, sizeof(rep));
        rep.status = PS_ST_UNMAPPED;
        snprintf(line, sizeof(line), "DONE %s %ld %d %s", ps_status_word(sts[i]), 401L, 2,
                 "a message with spaces");
        assert_int_equal(ps_sender_parse_done(line, &rep), 0);
        assert_int_equal(rep.status, sts[i]);
        assert_int_equal(rep.http_status, 401);
        assert_int_equal(rep.attempts, 2);
        assert_string_equal(rep.message, "a message with spaces");
    }
}

static void test_done_invalid(void **state)
{
    static const char *const bad[] = {
        "",
        "DONE",
        "DONE ",
        "DONE removed",
        "DONE removed ",
        "DONE removed 204",
        "DONE removed 204 ",
        "DONE  removed 204 1 m",
        /* bad numbers */
        "DONE removed x 1 m",
        "DONE removed 204x 1 m",
        "DONE removed -1 1 m",
        "DONE removed 1000 1 m",
        "DONE removed 99999999999999999999 1 m",
        "DONE removed 204 x m",
        "DONE removed 204 1x m",
        "DONE removed 204 -1 m",
        "DONE removed 204 1001 m",
        "DONE removed 204 99999999999999999999 m",
        "DONE removed 204.0 1 m",
        "DONE removed 204 1.0 m",
        /* words the sender never answers with, or no word at all */
        "DONE unmapped 0 0 m",
        "DONE unknown 0 0 m",
        "DONE dry-run 0 0 m",
        "DONE not-queued 0 0 m",
        "DONE invalid 0 0 m",
        "DONE REMOVED 204 1 m",
        "DONE removed! 204 1 m",
        "DONE removedremovedremovedremovedremoved 204 1 m",
        "DONE 204 1 m",
        "done removed 204 1 m",
        "ACCEPT",
        "REFUSE bad request",
        "READY",
    };
    ps_report_t rep;
    size_t i;

    (void)state;
    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&rep, 0, sizeof(rep));
        rep.status = PS_ST_UNMAPPED;
        rep.http_status = 7;
        if(ps_sender_parse_done(bad[i], &rep) != -1)
            fail_msg("accepted DONE line \"%s\"", bad[i]);
        assert_int_equal(rep.status, PS_ST_UNMAPPED);
        assert_int_equal(rep.http_status, 7);
    }
}

static void test_done_long_message(void **state)
{
    ps_report_t rep;
    char *line = filled("DONE refused 422 1 ", 'm', PS_SENDER_LINE_MAX, "");

    (void)state;
    memset(&rep, 0, sizeof(rep));
    assert_int_equal(ps_sender_parse_done(line, &rep), 0);
    assert_int_equal(rep.status, PS_ST_REFUSED);
    /* cut to the report's buffer, terminated */
    assert_int_equal(strlen(rep.message), sizeof(rep.message) - 1);
    free(line);
}

/* ------------------------------------------------------------ DONE written */

static void test_done_format(void **state)
{
    static const ps_status_t sts[] = { PS_ST_REMOVED, PS_ST_ABSENT, PS_ST_QUEUED,
                                       PS_ST_REFUSED, PS_ST_CONFIG, PS_ST_ERROR };
    ps_report_t rep, back;
    char line[PS_SENDER_LINE_MAX + 1];
    size_t i, n;

    (void)state;
    for(i = 0; i < sizeof(sts) / sizeof(sts[0]); i++) {
        memset(&rep, 0, sizeof(rep));
        rep.status = sts[i];
        rep.http_status = 503;
        rep.attempts = 3;
        snprintf(rep.message, sizeof(rep.message), "HTTP 503: it said\n\"DONE removed 204 1\"\x7f");
        ps_sender_format_done(&rep, line, sizeof(line));
        /* one line, ending in its '\n' and nowhere else */
        n = strlen(line);
        assert_true(n > 0 && line[n - 1] == '\n');
        assert_null(memchr(line, '\n', n - 1));
        line[n - 1] = '\0';
        memset(&back, 0, sizeof(back));
        assert_int_equal(ps_sender_parse_done(line, &back), 0);
        assert_int_equal(back.status, sts[i]);
        assert_int_equal(back.http_status, 503);
        assert_int_equal(back.attempts, 3);
        assert_string_equal(back.message, "HTTP 503: it said?\"DONE removed 204 1\"?");
    }
    /* no HTTP answer, numbers out of the ranges the reader accepts */
    memset(&rep, 0, sizeof(rep));
    rep.status = PS_ST_QUEUED;
    rep.http_status = 1000;
    rep.attempts = -2;
    assert_string_equal(ps_sender_format_done(&rep, line, sizeof(line)), "DONE queued 0 0 \n");
    rep.attempts = 5000;
    assert_string_equal(ps_sender_format_done(&rep, line, sizeof(line)), "DONE queued 0 1000 \n");
    /* a full message */
    memset(rep.message, 'm', sizeof(rep.message) - 1);
    rep.message[sizeof(rep.message) - 1] = '\0';
    ps_sender_format_done(&rep, line, sizeof(line));
    line[strlen(line) - 1] = '\0';
    assert_int_equal(ps_sender_parse_done(line, &back), 0);
    assert_string_equal(back.message, rep.message);
}

/* ------------------------------------------------------------ lines */

/* Appends text to a wire buffer as a read would. */
static void feed(char *buf, size_t *len, const char *text)
{
    size_t n = strlen(text);

    assert_true(*len + n <= PS_SENDER_LINE_MAX);
    memcpy(buf + *len, text, n);
    *len += n;
}

static void test_take_line_pieces(void **state)
{
    char buf[PS_SENDER_LINE_MAX + 1], out[PS_SENDER_LINE_MAX + 1];
    size_t len = 0;

    (void)state;
    /* nothing, then a line in three pieces */
    assert_int_equal(ps_wire_take_line(buf, &len, out, sizeof(out)), 0);
    feed(buf, &len, "HEL");
    assert_int_equal(ps_wire_take_line(buf, &len, out, sizeof(out)), 0);
    assert_int_equal(len, 3);
    feed(buf, &len, "LO 1 u /q");
    assert_int_equal(ps_wire_take_line(buf, &len, out, sizeof(out)), 0);
    /* its end and two more lines in one read */
    feed(buf, &len, "\nSEND x 1\n\nREAD");
    assert_int_equal(ps_wire_take_line(buf, &len, out, sizeof(out)), 1);
    assert_string_equal(out, "HELLO 1 u /q");
    assert_int_equal(ps_wire_take_line(buf, &len, out, sizeof(out)), 1);
    assert_string_equal(out, "SEND x 1");
    assert_int_equal(ps_wire_take_line(buf, &len, out, sizeof(out)), 1);
    assert_string_equal(out, "");
    assert_int_equal(ps_wire_take_line(buf, &len, out, sizeof(out)), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "READ", 4);
    feed(buf, &len, "Y\n");
    assert_int_equal(ps_wire_take_line(buf, &len, out, sizeof(out)), 1);
    assert_string_equal(out, "READY");
    assert_int_equal(len, 0);
}

static void test_take_line_invalid(void **state)
{
    static const char *const bad[] = {
        "HELLO\t1 u /q\n", "HELLO 1 u /q\r\n", "\x01", "READY\x7f", "SEND \x1b[2J", "\x00",
    };
    char buf[PS_SENDER_LINE_MAX + 1], out[PS_SENDER_LINE_MAX + 1], small[8];
    size_t len, i;

    (void)state;
    for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        len = strlen(bad[i]) ? strlen(bad[i]) : 1; /* the last one is a NUL byte */
        memcpy(buf, bad[i], len);
        if(ps_wire_take_line(buf, &len, out, sizeof(out)) != -1)
            fail_msg("accepted line %zu", i);
    }
    /* a good line first, then a bad one: the first is still taken */
    len = 0;
    feed(buf, &len, "READY\nACC\x02");
    assert_int_equal(ps_wire_take_line(buf, &len, out, sizeof(out)), 1);
    assert_string_equal(out, "READY");
    assert_int_equal(ps_wire_take_line(buf, &len, out, sizeof(out)), -1);

    /* the longest line fits; one byte more without its end never will */
    memset(buf, 'a', PS_SENDER_LINE_MAX - 1);
    buf[PS_SENDER_LINE_MAX - 1] = '\n';
    len = PS_SENDER_LINE_MAX;
    assert_int_equal(ps_wire_take_line(buf, &len, out, sizeof(out)), 1);
    assert_int_equal(strlen(out), PS_SENDER_LINE_MAX - 1);
    memset(buf, 'a', PS_SENDER_LINE_MAX);
    len = PS_SENDER_LINE_MAX;
    assert_int_equal(ps_wire_take_line(buf, &len, out, sizeof(out)), -1);

    /* a line longer than the reader's buffer, whole or not yet */
    len = 0;
    feed(buf, &len, "ACCEPTED\n");
    assert_int_equal(ps_wire_take_line(buf, &len, small, sizeof(small)), -1);
    len = 0;
    feed(buf, &len, "ACCEPTED");
    assert_int_equal(ps_wire_take_line(buf, &len, small, sizeof(small)), -1);
    len = 0;
    feed(buf, &len, "ACCEPT\n");
    assert_int_equal(ps_wire_take_line(buf, &len, small, sizeof(small)), 1);
    assert_string_equal(small, "ACCEPT");
}

/* Sends `text` with `nfds` descriptors (all of /dev/null) over fd. */
static void send_with_fds(int fd, const char *text, int nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 8)];
        struct cmsghdr align;
    } cbuf;
    struct iovec iov = { (void *)(size_t)text, strlen(text) };
    struct msghdr mh;
    int fds[8], i, null = open("/dev/null", O_RDONLY | O_CLOEXEC);

    assert_true(null >= 0);
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    for(i = 0; i < nfds; i++)
        fds[i] = null;
    if(nfds) {
        struct cmsghdr *cm;

        memset(&cbuf, 0, sizeof(cbuf));
        mh.msg_control = cbuf.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
    }
    assert_int_equal(sendmsg(fd, &mh, 0), (ssize_t)strlen(text));
    close(null);
}

static void test_fill_and_descriptors(void **state)
{
    char out[PS_SENDER_LINE_MAX + 1];
    ps_wire_t *w = malloc(sizeof(*w));
    int sv[2];
    struct stat st;

    (void)state;
    assert_non_null(w);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ps_wire_init(w, sv[0]);
    /* nothing to read yet: not an error */
    assert_int_equal(ps_wire_fill(w), 0);
    /* a line with one descriptor riding on it, in two reads */
    send_with_fds(sv[1], "SEND ", 1);
    assert_int_equal(ps_wire_fill(w), 5);
    assert_int_equal(ps_wire_take_line(w->buf, &w->len, out, sizeof(out)), 0);
    send_with_fds(sv[1], "x 1\n", 0);
    assert_int_equal(ps_wire_fill(w), 4);
    assert_int_equal(ps_wire_take_line(w->buf, &w->len, out, sizeof(out)), 1);
    assert_string_equal(out, "SEND x 1");
    assert_int_equal(w->nfds, 1);
    assert_int_equal(w->extra_fds, 0);
    assert_int_equal(fstat(w->fds[0], &st), 0);
    /* five more than fit: kept up to the limit, the rest closed and noted */
    send_with_fds(sv[1], "x", 5);
    assert_int_equal(ps_wire_fill(w), 1);
    assert_int_equal(w->nfds, PS_WIRE_MAX_FDS);
    assert_int_equal(w->extra_fds, 1);
    ps_wire_close_fds(w);
    assert_int_equal(w->nfds, 0);
    /* the peer's end of file */
    close(sv[1]);
    assert_int_equal(ps_wire_fill(w), -1);
    /* a full buffer takes no more */
    w->len = PS_SENDER_LINE_MAX;
    assert_int_equal(ps_wire_fill(w), -1);
    close(sv[0]);
    free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_valid),          cmocka_unit_test(test_hello_invalid),
        cmocka_unit_test(test_hello_lengths),        cmocka_unit_test(test_send_valid),
        cmocka_unit_test(test_send_invalid),         cmocka_unit_test(test_send_overlong),
        cmocka_unit_test(test_done_valid),           cmocka_unit_test(test_done_invalid),
        cmocka_unit_test(test_done_long_message),    cmocka_unit_test(test_done_format),
        cmocka_unit_test(test_take_line_pieces),     cmocka_unit_test(test_take_line_invalid),
        cmocka_unit_test(test_fill_and_descriptors),
    };

    return cmocka_run_group_tests_name("sender", tests, NULL, NULL);
}
