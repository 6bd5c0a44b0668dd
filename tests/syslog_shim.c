/* syslog_shim.c - test-only LD_PRELOAD library: every syslog() call of the
 * process is appended to $PS_SYSLOG_FILE as "FACILITY.PRIO IDENT: message",
 * so that tests can assert on audit lines (and on the absence of secrets)
 * without a syslog daemon. Never installed. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

void openlog(const char *ident, int option, int facility);
void closelog(void);
void syslog(int pri, const char *fmt, ...);
void vsyslog(int pri, const char *fmt, va_list ap);
void __syslog_chk(int pri, int flag, const char *fmt, ...);
void __vsyslog_chk(int pri, int flag, const char *fmt, va_list ap);

static const char *shim_ident = "unknown";
static int shim_facility = LOG_USER;

void openlog(const char *ident, int option, int facility)
{
    (void)option;
    if(ident)
        shim_ident = ident;
    shim_facility = facility;
}

void closelog(void)
{
}

static const char *prio_name(int p)
{
    static const char *const names[] = { "emerg",   "alert",  "crit", "err",
                                         "warning", "notice", "info", "debug" };
    return names[p & 7];
}

static const char *fac_name(int f)
{
    switch(f & LOG_FACMASK) {
    case LOG_AUTHPRIV: return "authpriv";
    case LOG_AUTH: return "auth";
    case LOG_USER: return "user";
    case LOG_DAEMON: return "daemon";
    default: return "other";
    }
}

void vsyslog(int pri, const char *fmt, va_list ap)
{
    const char *path = getenv("PS_SYSLOG_FILE");
    char msg[8192];
    char line[8400];
    int fd, n;
    int fac = (pri & LOG_FACMASK) ? pri : shim_facility;

    if(!path)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = snprintf(line, sizeof(line), "%s.%s %s[%d]: %s\n", fac_name(fac), prio_name(pri),
                 shim_ident, (int)getpid(), msg);
    if(n < 0)
        return;
    if((size_t)n >= sizeof(line))
        n = (int)sizeof(line) - 1;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if(fd < 0)
        return;
    if(write(fd, line, (size_t)n) < 0) {
        /* nothing to do in a test shim */
    }
    close(fd);
}

void syslog(int pri, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsyslog(pri, fmt, ap);
    va_end(ap);
}

void __vsyslog_chk(int pri, int flag, const char *fmt, va_list ap)
{
    (void)flag;
    vsyslog(pri, fmt, ap);
}

void __syslog_chk(int pri, int flag, const char *fmt, ...)
{
    va_list ap;

    (void)flag;
    va_start(ap, fmt);
    vsyslog(pri, fmt, ap);
    va_end(ap);
}
