/* sender_wire.c - the sender's protocol: connections, lines, the peer check,
 * parsers; see sender_wire.h. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "outcome.h"
#include "sender_wire.h"

/* ------------------------------------------------------------ connection */

void ps_wire_init(ps_wire_t *w, int fd)
{
    memset(w, 0, sizeof(*w));
    w->fd = fd;
}

void ps_wire_close_fds(ps_wire_t *w)
{
    int i;

    for(i = 0; i < w->nfds; i++)
        close(w->fds[i]);
    w->nfds = 0;
}

int ps_wire_wait(int fd, short events, double deadline)
{
    for(;;) {
        struct pollfd p = { fd, events, 0 };
        double left = deadline - ps_now();
        int ms, rc;

        if(left <= 0)
            return 0;
        ms = left > 3600 ? 3600 * 1000 : (int)(left * 1000) + 1;
        rc = poll(&p, 1, ms);
        if(rc > 0)
            return 1;
        if(rc < 0 && errno != EINTR)
            return -1;
    }
}

/* Keeps every descriptor that arrives (closing what does not fit). */
static void take_fds(ps_wire_t *w, struct msghdr *mh)
{
    struct cmsghdr *cm;

    for(cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        size_t i, n;
        int fd;

        if(cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for(i = 0; i < n; i++) {
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if(w->nfds < PS_WIRE_MAX_FDS) {
                w->fds[w->nfds++] = fd;
            } else {
                close(fd);
                w->extra_fds = 1;
            }
        }
    }
}

int ps_wire_take_line(char *buf, size_t *len, char *out, size_t outlen)
{
    char *nl = memchr(buf, '\n', *len);
    size_t n, i, scan = nl ? (size_t)(nl - buf) : *len;

    /* a control character is fatal wherever it is, even before the '\n' */
    for(i = 0; i < scan; i++)
        if((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
            return -1;
    if(!nl)
        return *len >= PS_SENDER_LINE_MAX || *len >= outlen ? -1 : 0;
    n = (size_t)(nl - buf);
    if(n >= outlen)
        return -1;
    memcpy(out, buf, n);
    out[n] = '\0';
    memmove(buf, nl + 1, *len - n - 1);
    *len -= n + 1;
    return 1;
}

int ps_wire_fill(ps_wire_t *w)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * PS_WIRE_MAX_FDS)];
        struct cmsghdr align;
    } cbuf;
    struct iovec iov;
    struct msghdr mh;
    ssize_t r;

    if(w->len >= PS_SENDER_LINE_MAX)
        return -1;
    for(;;) {
        iov.iov_base = w->buf + w->len;
        iov.iov_len = PS_SENDER_LINE_MAX - w->len;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cbuf.buf;
        mh.msg_controllen = sizeof(cbuf.buf);
        r = recvmsg(w->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if(r < 0 && errno == EINTR)
            continue;
        if(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if(r <= 0)
            return -1;
        take_fds(w, &mh);
        if(mh.msg_flags & MSG_CTRUNC)
            w->extra_fds = 1;
        w->len += (size_t)r;
        return (int)r;
    }
}

int ps_wire_read_line(ps_wire_t *w, char *out, size_t outlen, double deadline)
{
    for(;;) {
        int rc = ps_wire_take_line(w->buf, &w->len, out, outlen);

        if(rc != 0)
            return rc > 0 ? 0 : -1;
        rc = ps_wire_fill(w);
        if(rc < 0)
            return -1;
        if(rc == 0 && ps_wire_wait(w->fd, POLLIN, deadline) != 1)
            return -1;
    }
}

ssize_t ps_wire_send(int fd, const char *data, size_t len, int pass)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } cbuf;
    struct iovec iov;
    struct msghdr mh;
    ssize_t w;

    iov.iov_base = (void *)(size_t)data; /* sendmsg does not write it */
    iov.iov_len = len;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if(pass >= 0) {
        struct cmsghdr *cm;

        memset(&cbuf, 0, sizeof(cbuf));
        mh.msg_control = cbuf.buf;
        mh.msg_controllen = sizeof(cbuf.buf);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &pass, sizeof(int));
    }
    do {
        w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while(w < 0 && errno == EINTR);
    if(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    return w < 0 ? -1 : w;
}

int ps_wire_write_line(int fd, const char *line, int pass, double deadline)
{
    size_t len = strlen(line), off = 0;

    if(len > PS_SENDER_LINE_MAX)
        return -1;
    while(off < len) {
        ssize_t w = ps_wire_send(fd, line + off, len - off, off == 0 ? pass : -1);

        if(w < 0)
            return -1;
        if(w == 0 && ps_wire_wait(fd, POLLOUT, deadline) != 1)
            return -1;
        off += (size_t)w;
    }
    return 0;
}

int ps_wire_peer_trusted(int fd, uid_t *uid)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);

    if(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0 || len != sizeof(cr))
        return 0;
    *uid = cr.uid;
    return cr.uid == 0 || cr.uid == geteuid();
}

void ps_wire_one_line(const char *in, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", in);
    ps_one_line(out);
}

/* ------------------------------------------------------------ lines */

int ps_sender_parse_hello(const char *line, ps_sender_hello_t *h)
{
    const char *p, *sp;
    size_t n;

    if(strncmp(line, "HELLO " PS_SENDER_PROTO " ", 8) != 0)
        return -1;
    p = line + 8;
    sp = strchr(p, ' ');
    if(!sp || sp == p)
        return -1;
    n = (size_t)(sp - p);
    if(n >= sizeof(h->url) || strlen(sp + 1) >= sizeof(h->queue_dir) || sp[1] != '/')
        return -1;
    memcpy(h->url, p, n);
    h->url[n] = '\0';
    snprintf(h->queue_dir, sizeof(h->queue_dir), "%s", sp + 1);
    return 0;
}

static int name_ok(const char *name)
{
    size_t i;

    /* ps_queue_name(): 16 lowercase hex digits + ".json" */
    if(strlen(name) != 21 || strcmp(name + 16, ".json") != 0)
        return 0;
    for(i = 0; i < 16; i++)
        if(!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return 0;
    return 1;
}

int ps_sender_parse_send(const char *line, char name[32], long *deadline_ms)
{
    char nm[32];
    char *end;
    long ms;

    if(strncmp(line, "SEND ", 5) != 0 || strlen(line + 5) < 23)
        return -1;
    memcpy(nm, line + 5, 21);
    nm[21] = '\0';
    if(!name_ok(nm) || line[26] != ' ' || line[27] < '0' || line[27] > '9')
        return -1;
    errno = 0;
    ms = strtol(line + 27, &end, 10);
    if(errno || *end || ms < 0 || ms > 7L * 86400 * 1000)
        return -1;
    memcpy(name, nm, 22);
    *deadline_ms = ms;
    return 0;
}

static const ps_status_t done_statuses[] = { PS_ST_REMOVED, PS_ST_ABSENT,      PS_ST_QUEUED,
                                             PS_ST_HELD,    PS_ST_HELD_CONFIG, PS_ST_REFUSED,
                                             PS_ST_CONFIG,  PS_ST_ERROR };

int ps_sender_parse_done(const char *line, ps_report_t *rep)
{
    char word[32];
    const char *p;
    char *end;
    long http, att;
    size_t i, n;

    if(strncmp(line, "DONE ", 5) != 0)
        return -1;
    p = line + 5;
    n = strcspn(p, " ");
    if(n == 0 || n >= sizeof(word) || p[n] != ' ')
        return -1;
    memcpy(word, p, n);
    word[n] = '\0';
    p += n + 1;
    errno = 0;
    http = strtol(p, &end, 10);
    if(errno || end == p || *end != ' ' || http < 0 || http > 999)
        return -1;
    p = end + 1;
    att = strtol(p, &end, 10);
    if(errno || end == p || (*end != ' ' && *end) || att < 0 || att > 1000)
        return -1;
    for(i = 0; i < sizeof(done_statuses) / sizeof(done_statuses[0]); i++) {
        if(strcmp(word, ps_status_word(done_statuses[i])) == 0) {
            rep->status = done_statuses[i];
            rep->http_status = http;
            rep->attempts = (int)att;
            snprintf(rep->message, sizeof(rep->message), "%s", *end ? end + 1 : "");
            return 0;
        }
    }
    return -1;
}

char *ps_sender_format_done(const ps_report_t *rep, char *out, size_t outlen)
{
    char msg[sizeof(rep->message)];
    int att = rep->attempts;

    ps_wire_one_line(rep->message, msg, sizeof(msg));
    if(att < 0 || att > 1000)
        att = att < 0 ? 0 : 1000;
    snprintf(out, outlen, "DONE %s %ld %d %s\n", ps_status_word(rep->status),
             rep->http_status > 0 && rep->http_status < 1000 ? rep->http_status : 0L, att, msg);
    return out;
}
