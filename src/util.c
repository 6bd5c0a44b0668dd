/* util.c - small helpers shared by the module, the command and the tests.
 * libc only (see util.h). */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* ------------------------------------------------------------ escaping */

/* 1 when byte c must be written as \xHH. */
static int needs_escape(unsigned char c)
{
    return c < 0x20 || c == 0x7f || c >= 0x80 || c == '\\' || c == '"';
}

static size_t escaped_len(unsigned char c)
{
    return needs_escape(c) ? 4 : 1;
}

/* Writes the encoding of c at out (room checked by the caller). */
static size_t put_escaped(unsigned char c, char *out)
{
    static const char hex[] = "0123456789abcdef";

    if(!needs_escape(c)) {
        out[0] = (char)c;
        return 1;
    }
    out[0] = '\\';
    out[1] = 'x';
    out[2] = hex[c >> 4];
    out[3] = hex[c & 0x0f];
    return 4;
}

char *ps_escape(const char *in, char *out, size_t outsz)
{
    const unsigned char *p;
    size_t total = 0;
    size_t room;
    size_t pos = 0;
    int truncated;

    if(!out || outsz == 0)
        return out;
    if(!in)
        in = "";

    for(p = (const unsigned char *)in; *p; p++)
        total += escaped_len(*p);

    room = outsz - 1;
    truncated = total > room;
    if(truncated)
        room = room > 3 ? room - 3 : 0; /* keep space for "..." */

    for(p = (const unsigned char *)in; *p; p++) {
        size_t len = escaped_len(*p);
        if(pos + len > room)
            break;
        pos += put_escaped(*p, out + pos);
    }
    if(truncated) {
        size_t dots = outsz - 1 - pos;
        if(dots > 3)
            dots = 3;
        memset(out + pos, '.', dots);
        pos += dots;
    }
    out[pos] = '\0';
    return out;
}

/* ------------------------------------------------------------ validation */

int ps_login_valid(const char *login)
{
    size_t len;
    const unsigned char *p;

    if(!login || !login[0] || login[0] == '-')
        return 0;
    len = strnlen(login, PS_LOGIN_MAX + 1);
    if(len > PS_LOGIN_MAX)
        return 0;
    for(p = (const unsigned char *)login; *p; p++) {
        if(*p < 0x20 || *p == 0x7f || *p == ' ' || *p == '/' || *p == ':' || *p == '\\')
            return 0;
    }
    return 1;
}

static int id_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

int ps_id_valid(const char *id)
{
    size_t len;
    size_t i;

    if(!id || !id[0] || id[0] == '.' || id[0] == '-')
        return 0;
    len = strnlen(id, PS_ID_MAX + 1);
    if(len > PS_ID_MAX)
        return 0;
    for(i = 0; i < len; i++) {
        if(!id_char_ok((unsigned char)id[i]))
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ emails */

static int email_local_ok(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c && strchr(".!#$%&'*+/=?^_`{|}~-", c) != NULL);
}

static int email_domain_ok(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

int ps_email_valid(const char *email)
{
    const char *at, *p;
    size_t len;

    if(!email)
        return 0;
    len = strnlen(email, PS_EMAIL_MAX + 1);
    if(len > PS_EMAIL_MAX)
        return 0;
    at = strchr(email, '@');
    if(!at || at == email || at - email > 64)
        return 0;
    for(p = email; p < at; p++) {
        if(!email_local_ok((unsigned char)*p))
            return 0;
    }
    p = at + 1;
    if(!*p)
        return 0;
    for(; *p; p++) {
        if(*p == '.') {
            if(p[-1] == '@' || p[-1] == '.' || !p[1])
                return 0; /* an empty label */
        } else if(!email_domain_ok((unsigned char)*p)) {
            return 0; /* a second '@' too */
        }
    }
    return 1;
}

static unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

int ps_email_equal(const char *a, const char *b)
{
    const unsigned char *x = (const unsigned char *)a;
    const unsigned char *y = (const unsigned char *)b;

    if(!a || !b)
        return 0;
    for(; *x && *y; x++, y++) {
        if(ascii_lower(*x) != ascii_lower(*y))
            return 0;
    }
    return *x == *y;
}

/* ------------------------------------------------------------ permissions */

const char *ps_file_kind(mode_t mode)
{
    switch(mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFIFO: return "a FIFO";
    case S_IFDIR: return "a directory";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFSOCK: return "a socket";
    case S_IFLNK: return "a symbolic link";
    default: return "an unknown kind of file";
    }
}

static int not_regular(const char *path, mode_t mode, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: not a regular file (%s)", path, ps_file_kind(mode));
    errno = EINVAL;
    return -1;
}

/* The shared rules once we hold a struct stat. */
static int check_stat(const struct stat *st, const char *path, int secret, char *err, size_t errlen)
{
    uid_t euid = geteuid();

    if(!S_ISREG(st->st_mode))
        return not_regular(path, st->st_mode, err, errlen);
    if(st->st_uid != 0 && st->st_uid != euid) {
        if(euid == 0)
            snprintf(err, errlen,
                     "%s: owned by uid %lu, must be owned by root; "
                     "fix: chown root %s",
                     path, (unsigned long)st->st_uid, path);
        else
            snprintf(err, errlen,
                     "%s: owned by uid %lu, must be owned by root "
                     "or uid %lu; fix: chown root %s",
                     path, (unsigned long)st->st_uid, (unsigned long)euid, path);
        return -1;
    }
    if(secret && (st->st_mode & (S_IRWXG | S_IRWXO))) {
        snprintf(err, errlen,
                 "%s: holds a secret but is accessible by group or "
                 "others (mode %04o); fix: chmod 600 %s",
                 path, (unsigned)(st->st_mode & 07777), path);
        return -1;
    }
    if(!secret && (st->st_mode & (S_IWGRP | S_IWOTH))) {
        snprintf(err, errlen,
                 "%s: writable by group or others (mode %04o); "
                 "fix: chmod go-w %s",
                 path, (unsigned)(st->st_mode & 07777), path);
        return -1;
    }
    return 0;
}

int ps_check_file_perms(const char *path, int secret, char *err, size_t errlen)
{
    struct stat st;

    if(lstat(path, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if(S_ISLNK(st.st_mode)) {
        snprintf(err, errlen, "%s: is a symbolic link; refer to the file itself", path);
        return -1;
    }
    return check_stat(&st, path, secret, err, errlen);
}

int ps_check_fd_perms(int fd, const char *path, int secret, char *err, size_t errlen)
{
    struct stat st;

    if(fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    return check_stat(&st, path, secret, err, errlen);
}

int ps_open_regular(const char *path, int nofollow, char *err, size_t errlen)
{
    struct stat st;
    int flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
    int fd, e;

    /* Before opening: opening a FIFO blocks until a writer comes (without
     * O_NONBLOCK), and opening a device can have effects of its own (a
     * tape rewinds, a modem line hangs up). */
    if((nofollow ? lstat(path, &st) : stat(path, &st)) != 0) {
        e = errno;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    if(nofollow && S_ISLNK(st.st_mode)) {
        snprintf(err, errlen, "%s: is a symbolic link; refer to the file itself", path);
        errno = ELOOP;
        return -1;
    }
    if(!S_ISREG(st.st_mode))
        return not_regular(path, st.st_mode, err, errlen);
    if(nofollow)
        flags |= O_NOFOLLOW;
    fd = open(path, flags);
    if(fd < 0) {
        e = errno;
        if(e == ELOOP && nofollow)
            snprintf(err, errlen, "%s: is a symbolic link; refer to the file itself", path);
        else if(e == ENXIO && stat(path, &st) == 0 && !S_ISREG(st.st_mode))
            return not_regular(path, st.st_mode, err, errlen); /* a socket now */
        else
            snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    /* What we opened is what counts: it may have been replaced since. */
    if(fstat(fd, &st) != 0) {
        e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        close(fd);
        errno = e;
        return -1;
    }
    if(!S_ISREG(st.st_mode)) {
        close(fd);
        return not_regular(path, st.st_mode, err, errlen);
    }
    if(fcntl(fd, F_SETFL, O_RDONLY) != 0) { /* clears O_NONBLOCK */
        e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* ------------------------------------------------------------ time */

double ps_now(void)
{
    struct timespec ts;

    if(clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0.0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* pam_unix 1.5.2, passverify.c check_shadow_expiry():
 *   curdays = (long int)(time(NULL) / (60 * 60 * 24));
 *   if ((curdays >= spent->sp_expire) && (spent->sp_expire != -1))
 *           return PAM_ACCT_EXPIRED; */
int ps_shadow_expired(long expire_days, time_t now)
{
    long curdays = (long)(now / (60 * 60 * 24));

    return curdays >= expire_days && expire_days != -1;
}

long ps_shadow_today(time_t now)
{
    return (long)(now / (60 * 60 * 24));
}

int ps_shadow_due(long expire_days, long grace_days, time_t now)
{
    if(!ps_shadow_expired(expire_days, now))
        return 0;
    if(grace_days <= 0 || expire_days < 0)
        return 1; /* < -1: expired before 1970, longer ago than any grace */
    /* days past the expiry date; no overflow: both are days since 1970 */
    return ps_shadow_today(now) - expire_days >= grace_days;
}

int ps_grace_parse(const char *s, long *out)
{
    long v = 0;
    const char *p;

    if(s == NULL || *s == '\0' || strlen(s) > 6)
        return -1;
    for(p = s; *p; p++) {
        if(*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    if(v > PS_GRACE_DAYS_MAX)
        return -1;
    *out = v;
    return 0;
}

/* ------------------------------------------------------------ keys */

#define FNV64_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV64_PRIME  UINT64_C(0x100000001b3)

static uint64_t fnv1a(uint64_t h, const char *s)
{
    const unsigned char *p;

    for(p = (const unsigned char *)(s ? s : ""); *p; p++) {
        h ^= *p;
        h *= FNV64_PRIME;
    }
    return h;
}

static uint64_t fnv1a_nul(uint64_t h)
{
    /* h ^= 0 is a no-op: only the multiplication remains */
    return h * FNV64_PRIME;
}

void ps_key_hex(const char *a, const char *b, const char *c, char out[17])
{
    uint64_t h = FNV64_OFFSET;

    h = fnv1a(h, a);
    h = fnv1a_nul(h);
    h = fnv1a(h, b);
    h = fnv1a_nul(h);
    h = fnv1a(h, c);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

void ps_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if(!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void ps_sleep_until(double t)
{
    for(;;) {
        double left = t - ps_now();
        struct timespec ts;

        if(left <= 0)
            return;
        ts.tv_sec = (time_t)left;
        ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
        if(nanosleep(&ts, NULL) == 0 || errno != EINTR)
            return;
    }
}

void ps_one_line(char *s)
{
    for(; *s; s++)
        if((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}
