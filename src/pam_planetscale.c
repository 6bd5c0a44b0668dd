/* pam_planetscale.c - PAM entry points of pam-planetscale.
 *
 * The module removes PAM_USER from PlanetScale, but it never does so itself:
 * like pam_unix runs unix_chkpwd, it runs the command
 *
 *   planetscale-deprovision pam-helper --mode MODE --service SERVICE
 *                           --deadline SECS [--expire-day DAY
 *                           [--expired-grace-days N]] [--config PATH]
 *                           [--debug] -- LOGIN
 *
 * as a child with a clean environment and a deadline, and maps the one word
 * the helper prints to a PAM return code (see helper.h). No libcurl, TLS
 * stack, libconfig, json-c or token ever enters the host process (sshd,
 * login, ...); the module links libpam and libc (plus libpsutil) only.
 *
 * Modes (module arguments):
 *   account                the dedicated service: --mode service; the helper
 *                          applies the pam_services interlock.
 *   account only_expired   login stacks: getspnam(PAM_USER) first; runs the
 *                          helper only when sp_expire has passed (and, with
 *                          expired_grace_days=N, is N days past: without it
 *                          the helper applies the configuration's value);
 *                          always PAM_IGNORE.
 *   session on_close       pam_close_session runs --mode close; never fails.
 *
 * auth, setcred and chauthtok are exported and return PAM_IGNORE, so that a
 * stray "auth" or "password" line naming this module cannot break a stack
 * (without them libpam would answer PAM_MODULE_UNKNOWN for that line).
 *
 * The helper child: what it must not inherit from the host is reset in the
 * child between fork and execve, never in the host. With the module running
 * as root (euid 0), also under a setuid-root host such as su (real uid = the
 * caller), the child runs with real, effective and saved uid and gid 0 and
 * no supplementary groups; every signal disposition is back to default (a
 * host that ignores SIGPIPE or SIGCHLD does not pass that on through
 * execve), no signal is blocked, and the umask is 077. The calling thread's
 * signal mask is set to block everything for the fork() only and restored
 * right after it in the host (as posix_spawn does), so that no host signal
 * handler runs in the child before its dispositions are reset; signals that
 * arrive meanwhile stay pending and are delivered then.
 *
 * No global or static mutable state, no signal handler, no signal
 * disposition changed in the host, no exit(). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2, close_range, O_CLOEXEC */
#endif
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <shadow.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAM_SM_ACCOUNT
#define PAM_SM_SESSION
#define PAM_SM_AUTH
#define PAM_SM_PASSWORD
#include <security/pam_modules.h>
#include <security/pam_ext.h>

#include "helper.h"
#include "util.h"

#define PS_TIMEOUT_MIN 1
#define PS_TIMEOUT_MAX 120
#define PS_WORD_MAX    64 /* longest line we accept from the helper */
#define PS_ESC_MAX     (PS_LOGIN_MAX * 4 + 4)
#define PS_EXEC_MARK   "!exec "  /* written by the child when execve fails */
#define PS_SETID_MARK  "!setid " /* ... when it cannot take uid and gid 0 */

/* ------------------------------------------------------------ arguments */

struct ps_opts {
    const char *conf;   /* conf=PATH, or NULL for the helper's default */
    const char *helper; /* helper=PATH */
    int debug;
    int only_expired;
    int on_close;
    int timeout;     /* seconds, passed as --deadline */
    long grace;      /* expired_grace_days=N, -1 when not given (the config decides) */
    long expire_day; /* only_expired: the sp_expire seen, passed as --expire-day */
    int bad;         /* an unusable conf=, helper= or expired_grace_days=: do not act */
};

static int path_ok(const char *path)
{
    const unsigned char *p;

    if(path[0] != '/' || strlen(path) >= PATH_MAX)
        return 0;
    for(p = (const unsigned char *)path; *p; p++)
        if(*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

static void parse_args(pam_handle_t *pamh, int argc, const char **argv, struct ps_opts *o)
{
    char esc[PS_ESC_MAX];
    int i;

    memset(o, 0, sizeof(*o));
    o->helper = PS_HELPER_PATH;
    o->timeout = PS_HELPER_DEFAULT_TIMEOUT;
    o->grace = -1;
    o->expire_day = -1;

    for(i = 0; i < argc; i++) {
        const char *a = argv[i];

        if(strcmp(a, "debug") == 0) {
            o->debug = 1;
        } else if(strcmp(a, "only_expired") == 0) {
            o->only_expired = 1;
        } else if(strcmp(a, "on_close") == 0) {
            o->on_close = 1;
        } else if(strncmp(a, "conf=", 5) == 0) {
            o->conf = a + 5;
            if(!path_ok(o->conf)) {
                pam_syslog(pamh, LOG_ERR, "conf=%s: not an absolute path; not acting",
                           ps_escape(o->conf, esc, sizeof(esc)));
                o->bad = 1;
            }
        } else if(strncmp(a, "helper=", 7) == 0) {
            o->helper = a + 7;
            if(!path_ok(o->helper)) {
                pam_syslog(pamh, LOG_ERR, "helper=%s: not an absolute path; not acting",
                           ps_escape(o->helper, esc, sizeof(esc)));
                o->bad = 1;
            }
        } else if(strncmp(a, "expired_grace_days=", 19) == 0) {
            if(ps_grace_parse(a + 19, &o->grace) != 0) {
                pam_syslog(pamh, LOG_ERR,
                           "expired_grace_days=%s: not a number of days from 0 to %d; "
                           "not acting",
                           ps_escape(a + 19, esc, sizeof(esc)), PS_GRACE_DAYS_MAX);
                o->grace = -1;
                o->bad = 1;
            }
        } else if(strncmp(a, "timeout=", 8) == 0) {
            char *end;
            long t;

            errno = 0;
            t = strtol(a + 8, &end, 10);
            if(errno != 0 || end == a + 8 || *end != '\0') {
                pam_syslog(pamh, LOG_ERR, "timeout=%s: not a number; using %d",
                           ps_escape(a + 8, esc, sizeof(esc)), PS_HELPER_DEFAULT_TIMEOUT);
                o->timeout = PS_HELPER_DEFAULT_TIMEOUT;
            } else if(t < PS_TIMEOUT_MIN || t > PS_TIMEOUT_MAX) {
                o->timeout = t < PS_TIMEOUT_MIN ? PS_TIMEOUT_MIN : PS_TIMEOUT_MAX;
                pam_syslog(pamh, LOG_ERR, "timeout=%ld: out of range %d..%d; using %d", t,
                           PS_TIMEOUT_MIN, PS_TIMEOUT_MAX, o->timeout);
            } else {
                o->timeout = (int)t;
            }
        } else {
            pam_syslog(pamh, LOG_ERR, "unknown argument ignored: %s",
                       ps_escape(a, esc, sizeof(esc)));
        }
    }
}

/* ------------------------------------------------------------ the child */

/* What came back from one run of the helper. */
enum ps_run {
    RUN_WORD,    /* a line was read: see word */
    RUN_NOWORD,  /* EOF or garbage before a complete line */
    RUN_TIMEOUT, /* deadline passed: child killed */
    RUN_EXEC,    /* the helper could not be executed */
    RUN_SETID,   /* the child could not take uid and gid 0 */
    RUN_SYS      /* pipe, fork, ... failed in the module */
};

struct ps_argv {
    char *block; /* one allocation holding every string */
    char *argv[24];
    char *envp[3];
};

/* Copies the strings into one allocation so that execve gets non-const
 * pointers without casts; built before fork (malloc is not async-signal
 * safe). Returns 0 or -1. */
static int build_argv(struct ps_argv *a, const struct ps_opts *o, const char *mode,
                      const char *service, const char *user, const char *deadline)
{
    const char *src[24];
    const char *env[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C" };
    char expire_s[24], grace_s[24];
    size_t n = 0, i, total = 0;
    char *p;

    src[n++] = o->helper;
    src[n++] = PS_HELPER_SUBCOMMAND;
    src[n++] = "--mode";
    src[n++] = mode;
    src[n++] = "--service";
    src[n++] = service;
    src[n++] = "--deadline";
    src[n++] = deadline;
    if(o->expire_day != -1) {
        /* only_expired: what the module saw; the helper reads shadow again */
        snprintf(expire_s, sizeof(expire_s), "%ld", o->expire_day);
        src[n++] = "--expire-day";
        src[n++] = expire_s;
        if(o->grace >= 0) {
            snprintf(grace_s, sizeof(grace_s), "%ld", o->grace);
            src[n++] = "--expired-grace-days";
            src[n++] = grace_s;
        }
    }
    if(o->conf != NULL) {
        src[n++] = "--config";
        src[n++] = o->conf;
    }
    if(o->debug)
        src[n++] = "--debug";
    src[n++] = "--";
    src[n++] = user;

    for(i = 0; i < n; i++)
        total += strlen(src[i]) + 1;
    for(i = 0; i < 2; i++)
        total += strlen(env[i]) + 1;

    a->block = malloc(total);
    if(a->block == NULL)
        return -1;
    p = a->block;
    for(i = 0; i < n; i++) {
        size_t len = strlen(src[i]) + 1;

        memcpy(p, src[i], len);
        a->argv[i] = p;
        p += len;
    }
    a->argv[n] = NULL;
    for(i = 0; i < 2; i++) {
        size_t len = strlen(env[i]) + 1;

        memcpy(p, env[i], len);
        a->envp[i] = p;
        p += len;
    }
    a->envp[2] = NULL;
    return 0;
}

/* Moves fd out of 0..2 (the host may run with stdio closed, and then pipe2
 * or open can hand those out), keeping O_CLOEXEC. Returns the new fd or -1;
 * closes the old one either way. */
static int above_stdio(int fd)
{
    int nfd;

    if(fd < 0 || fd > 2)
        return fd;
    nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    close(fd);
    return nfd;
}

/* What the child is set up with, all prepared before fork. */
struct ps_child {
    int devnull;             /* stdin and stderr */
    int out;                 /* stdout: the pipe */
    long maxfd;              /* close_range fallback */
    int as_root;             /* take uid and gid 0 (the module runs with euid 0) */
    unsigned long kdfl[8];   /* a kernel sigaction: all zero, SIG_DFL */
    sigset_t empty;          /* the mask the helper starts with */
    const struct ps_argv *a; /* what to execute */
};

/* In the child: tells the parent why, as "MARK ERRNO\n" on stdout (the
 * pipe), and exits. */
static void child_fail(const char *mark, size_t marklen, int err)
{
    char msg[32];
    char digits[12];
    size_t len = 0;
    int nd = 0;

    if(marklen > sizeof(msg) - sizeof(digits) - 1)
        _exit(127);
    memcpy(msg, mark, marklen);
    len = marklen;
    do {
        digits[nd++] = (char)('0' + err % 10);
        err /= 10;
    } while(err > 0 && nd < (int)sizeof(digits));
    while(nd > 0)
        msg[len++] = digits[--nd];
    msg[len++] = '\n';
    (void)!write(STDOUT_FILENO, msg, len);
    _exit(127);
}

/* In the child: async-signal-safe calls only. Every signal is blocked on
 * entry (run_helper blocks them around fork). */
static void child_exec(const struct ps_child *c)
{
    int sig;

    /* Default dispositions first, while everything is still blocked: an
     * ignored signal stays ignored through execve, and until here a host
     * handler would have run in this child. Through the system call itself:
     * sigaction() refuses the C library's two internal real-time signals
     * (32 and 33 with glibc), which a host may have ignored too. A zeroed
     * kernel sigaction is SIG_DFL with no flag and an empty mask whatever
     * the architecture's layout. (SIGKILL and SIGSTOP refuse: nothing to
     * do for them.) */
    for(sig = 1; sig < NSIG; sig++)
        (void)syscall(SYS_rt_sigaction, sig, c->kdfl, NULL, (size_t)(NSIG - 1) / 8);

    if(dup2(c->devnull, STDIN_FILENO) < 0 || dup2(c->out, STDOUT_FILENO) < 0 ||
       dup2(c->devnull, STDERR_FILENO) < 0)
        _exit(127);
    if(close_range(3, ~0U, 0) != 0) {
        long fd;

        for(fd = 3; fd < c->maxfd; fd++)
            close((int)fd);
    }
    /* Under a setuid-root host (su, sudo, ...) the real uid is the caller
     * and the groups are the caller's: the helper runs as root entirely.
     * Groups first, then gids, then uids (afterwards there would be no
     * privilege left to change the others). */
    if(c->as_root) {
        if(setgroups(0, NULL) != 0 || setresgid(0, 0, 0) != 0 || setresuid(0, 0, 0) != 0)
            child_fail(PS_SETID_MARK, sizeof(PS_SETID_MARK) - 1, errno);
    }
    (void)umask(077);
    /* Last: the host's blocked-signal mask (and ours) is inherited through
     * execve. */
    (void)sigprocmask(SIG_SETMASK, &c->empty, NULL);

    execve(c->a->argv[0], c->a->argv, c->a->envp);
    child_fail(PS_EXEC_MARK, sizeof(PS_EXEC_MARK) - 1, errno);
}

/* Checks the helper before forking: a regular executable file owned by root
 * or by us, not writable by group or others (the module runs as root in
 * sshd: a helper that someone else could replace would be a way in).
 * Returns NULL when fine, else why not. */
static const char *check_helper(const char *path)
{
    struct stat st;

    if(stat(path, &st) != 0)
        return strerror(errno);
    if(!S_ISREG(st.st_mode))
        return "not a regular file";
    if((st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return "not owned by root, or writable by group or others";
    /* with the effective ids, which execve uses (access() would check a
     * setuid host's caller) */
    if(faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) != 0)
        return strerror(errno);
    return NULL;
}

static int ms_left(double deadline)
{
    double left = deadline - ps_now();

    if(left <= 0)
        return 0;
    if(left > 3600)
        return 3600 * 1000;
    return (int)(left * 1000.0) + 1;
}

/* Runs the helper once and reads its answer into word (NUL-terminated, no
 * newline). *status gets the wait status, or -1 when it is unknown (the
 * child was reaped elsewhere: SIGCHLD ignored, or a host's own handler). On
 * RUN_EXEC, *why says why and *exec_errno is execve's errno, if it got
 * that far. */
static enum ps_run run_helper(pam_handle_t *pamh, const struct ps_opts *o, const char *mode,
                              const char *service, const char *user, char *word, size_t wordsz,
                              int *status, int *exec_errno, const char **why)
{
    struct ps_argv a = { NULL, { NULL }, { NULL } };
    enum ps_run rv = RUN_SYS;
    char deadline_s[16];
    char buf[PS_WORD_MAX];
    size_t got = 0;
    int pfd[2] = { -1, -1 };
    int devnull = -1, timed_out = 0, have_line = 0;
    struct ps_child child;
    sigset_t all, host_mask;
    double deadline;
    pid_t pid;

    *status = -1;
    *exec_errno = 0;
    *why = NULL;
    word[0] = '\0';

    if((*why = check_helper(o->helper)) != NULL)
        return RUN_EXEC;

    snprintf(deadline_s, sizeof(deadline_s), "%d", o->timeout);
    if(build_argv(&a, o, mode, service, user, deadline_s) != 0) {
        pam_syslog(pamh, LOG_CRIT, "out of memory");
        goto err;
    }
    memset(&child, 0, sizeof(child));
    child.maxfd = sysconf(_SC_OPEN_MAX);
    if(child.maxfd < 0 || child.maxfd > INT_MAX)
        child.maxfd = 1024;
    child.as_root = geteuid() == 0;
    /* child.kdfl: zeroed by the memset */
    sigemptyset(&child.empty);
    child.a = &a;
    sigfillset(&all);

    devnull = above_stdio(open("/dev/null", O_RDWR | O_CLOEXEC));
    if(devnull < 0) {
        pam_syslog(pamh, LOG_ERR, "open /dev/null: %m");
        goto err;
    }
    if(pipe2(pfd, O_CLOEXEC) != 0) {
        pam_syslog(pamh, LOG_ERR, "pipe2: %m");
        goto err;
    }
    pfd[0] = above_stdio(pfd[0]);
    pfd[1] = above_stdio(pfd[1]);
    if(pfd[0] < 0 || pfd[1] < 0) {
        pam_syslog(pamh, LOG_ERR, "fcntl: %m");
        goto err;
    }

    child.devnull = devnull;
    child.out = pfd[1];

    deadline = ps_now() + o->timeout + PS_HELPER_GRACE;
    /* Blocked for the fork only (see the top of this file); the host's
     * mask is back before anything else happens in the host. */
    if((errno = pthread_sigmask(SIG_SETMASK, &all, &host_mask)) != 0) {
        pam_syslog(pamh, LOG_ERR, "pthread_sigmask: %m");
        goto err;
    }
    pid = fork();
    if(pid == 0)
        child_exec(&child);
    (void)pthread_sigmask(SIG_SETMASK, &host_mask, NULL);
    if(pid < 0) {
        pam_syslog(pamh, LOG_ERR, "fork: %m");
        goto err;
    }

    close(pfd[1]);
    pfd[1] = -1;
    close(devnull);
    devnull = -1;

    /* Read one line, until the deadline. */
    while(!have_line) {
        struct pollfd p = { pfd[0], POLLIN, 0 };
        int ms = ms_left(deadline), r;
        ssize_t n;

        if(ms == 0) {
            timed_out = 1;
            break;
        }
        r = poll(&p, 1, ms);
        if(r < 0 && errno == EINTR)
            continue;
        if(r < 0) {
            pam_syslog(pamh, LOG_ERR, "poll: %m");
            break;
        }
        if(r == 0)
            continue; /* the loop checks the deadline */
        n = read(pfd[0], buf + got, sizeof(buf) - 1 - got);
        if(n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if(n <= 0)
            break; /* EOF (or error) before a full line */
        got += (size_t)n;
        buf[got] = '\0';
        if(memchr(buf, '\n', got) != NULL)
            have_line = 1;
        else if(got == sizeof(buf) - 1)
            break; /* too long to be a word */
    }
    close(pfd[0]);
    pfd[0] = -1;

    /* Reap, waiting for the exit no later than the deadline. */
    for(;;) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);

        if(w == pid) {
            *status = st;
            break;
        }
        if(w < 0 && errno == EINTR)
            continue;
        if(w < 0)
            break; /* ECHILD: the host ignores SIGCHLD */
        if(timed_out || ms_left(deadline) == 0) {
            if(!have_line)
                timed_out = 1;
            (void)kill(pid, SIGKILL);
            while((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
                ;
            if(w == pid)
                *status = st;
            break;
        }
        (void)poll(NULL, 0, 10);
    }

    if(timed_out) {
        rv = RUN_TIMEOUT;
    } else if(have_line) {
        char *nl = memchr(buf, '\n', got);

        *nl = '\0';
        if(strlen(buf) != (size_t)(nl - buf)) {
            /* a NUL inside the line: not a word */
            snprintf(word, wordsz, "%s", buf);
            rv = RUN_NOWORD;
        } else if(strncmp(buf, PS_EXEC_MARK, sizeof(PS_EXEC_MARK) - 1) == 0) {
            *exec_errno = atoi(buf + sizeof(PS_EXEC_MARK) - 1);
            *why = strerror(*exec_errno);
            rv = RUN_EXEC;
        } else if(strncmp(buf, PS_SETID_MARK, sizeof(PS_SETID_MARK) - 1) == 0) {
            *exec_errno = atoi(buf + sizeof(PS_SETID_MARK) - 1);
            *why = strerror(*exec_errno);
            rv = RUN_SETID;
        } else {
            size_t len = strlen(buf);

            if(len > 0 && buf[len - 1] == '\r')
                buf[len - 1] = '\0';
            snprintf(word, wordsz, "%s", buf);
            rv = RUN_WORD;
        }
    } else {
        buf[got] = '\0';
        snprintf(word, wordsz, "%s", buf);
        rv = RUN_NOWORD;
    }

err:
    if(pfd[0] >= 0)
        close(pfd[0]);
    if(pfd[1] >= 0)
        close(pfd[1]);
    if(devnull >= 0)
        close(devnull);
    free(a.block);
    return rv;
}

/* ------------------------------------------------------------ outcomes */

enum ps_answer {
    ANS_REMOVED,
    ANS_ABSENT,
    ANS_UNMAPPED,
    ANS_UNKNOWN,
    ANS_IGNORED,
    ANS_NOT_DUE,
    ANS_QUEUED,
    ANS_HELD,
    ANS_REFUSED,
    ANS_CONFIG,
    ANS_ERROR,
    ANS_NONE
};

static const struct {
    const char *word;
    enum ps_answer ans;
    int prio;
    const char *text;
} answers[] = {
    { PS_HELPER_REMOVED, ANS_REMOVED, LOG_INFO, "removed from PlanetScale" },
    { PS_HELPER_ABSENT, ANS_ABSENT, LOG_INFO, "already absent from PlanetScale" },
    { PS_HELPER_UNMAPPED, ANS_UNMAPPED, LOG_INFO,
      "not mapped to a PlanetScale user: nothing to do" },
    { PS_HELPER_UNKNOWN, ANS_UNKNOWN, LOG_ERR,
      "not mapped to a PlanetScale user (unmapped = \"error\")" },
    { PS_HELPER_IGNORED, ANS_IGNORED, LOG_NOTICE, NULL },
    { PS_HELPER_NOT_DUE, ANS_NOT_DUE, LOG_DEBUG,
      "account expired, but not expired_grace_days ago yet: not acting" },
    { PS_HELPER_QUEUED, ANS_QUEUED, LOG_WARNING,
      "removal failed for now and was queued for retry" },
    { PS_HELPER_SCHEDULED, ANS_QUEUED, LOG_NOTICE,
      "removal recorded; api.spread puts its first attempt later (the retry timer sends it)" },
    { PS_HELPER_HELD, ANS_HELD, LOG_ERR,
      "removal refused by the PlanetScale API or not confirmed: held in the spool until a "
      "person deals with it (planetscale-deprovision queue shows why)" },
    { PS_HELPER_HELD_CONFIG, ANS_CONFIG, LOG_ERR,
      "configuration problem: the removal is held in the spool (planetscale-deprovision queue, "
      "check)" },
    { PS_HELPER_RECORDED, ANS_CONFIG, LOG_ERR,
      "the configuration does not load: the login is recorded for retry (see "
      "planetscale-deprovision check)" },
    { PS_HELPER_REFUSED, ANS_REFUSED, LOG_ERR, "removal refused by the PlanetScale API" },
    { PS_HELPER_CONFIG, ANS_CONFIG, LOG_ERR,
      "configuration error (see planetscale-deprovision check)" },
    { PS_HELPER_ERROR, ANS_ERROR, LOG_ERR, "removal failed" },
};

/* PAM code for an answer in service mode. */
static int service_code(enum ps_answer ans)
{
    switch(ans) {
    case ANS_REMOVED:
    case ANS_ABSENT:
    case ANS_UNMAPPED: return PAM_SUCCESS;
    case ANS_UNKNOWN: return PAM_USER_UNKNOWN;
    case ANS_IGNORED:
    case ANS_NOT_DUE: return PAM_IGNORE;
    case ANS_QUEUED: return PAM_AUTHINFO_UNAVAIL;
    case ANS_HELD:
    case ANS_REFUSED: return PAM_PERM_DENIED;
    case ANS_CONFIG: return PAM_SERVICE_ERR;
    case ANS_ERROR:
    case ANS_NONE:
    default: return PAM_SYSTEM_ERR;
    }
}

static const char *describe_status(int status, char *buf, size_t bufsz)
{
    if(status != -1 && WIFEXITED(status))
        snprintf(buf, bufsz, "exit status %d", WEXITSTATUS(status));
    else if(status != -1 && WIFSIGNALED(status))
        snprintf(buf, bufsz, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, bufsz, "exit status unknown");
    return buf;
}

/* Runs the helper for user in mode, logs the outcome (one line) and returns
 * the answer. */
static enum ps_answer act(pam_handle_t *pamh, const struct ps_opts *o, const char *mode,
                          const char *service, const char *user)
{
    char euser[PS_ESC_MAX], eservice[PS_ESC_MAX], eword[PS_WORD_MAX * 4];
    char word[PS_WORD_MAX], st[64];
    enum ps_answer ans = ANS_NONE;
    enum ps_run run;
    int status, exec_errno;
    const char *why = NULL;
    double t0 = ps_now();
    size_t i;

    ps_escape(user, euser, sizeof(euser));
    ps_escape(service, eservice, sizeof(eservice));

    if(o->bad) {
        pam_syslog(pamh, LOG_ERR, "user %s mode %s: not acting: bad module arguments", euser, mode);
        return ANS_CONFIG;
    }
    if(o->debug)
        pam_syslog(pamh, LOG_DEBUG,
                   "running %s %s --mode %s --service %s --deadline %d%s%s%s -- %s", o->helper,
                   PS_HELPER_SUBCOMMAND, mode, eservice, o->timeout, o->conf ? " --config " : "",
                   o->conf ? o->conf : "", o->debug ? " --debug" : "", euser);

    run = run_helper(pamh, o, mode, service, user, word, sizeof(word), &status, &exec_errno, &why);
    if(o->debug)
        pam_syslog(pamh, LOG_DEBUG, "helper finished in %.3f s, %s", ps_now() - t0,
                   describe_status(status, st, sizeof(st)));

    switch(run) {
    case RUN_WORD:
        for(i = 0; i < sizeof(answers) / sizeof(answers[0]); i++)
            if(strcmp(word, answers[i].word) == 0)
                break;
        if(i == sizeof(answers) / sizeof(answers[0])) {
            pam_syslog(pamh, LOG_ERR, "user %s mode %s: helper answered an unknown word \"%s\"",
                       euser, mode, ps_escape(word, eword, sizeof(eword)));
            return ANS_NONE;
        }
        ans = answers[i].ans;
        if(ans == ANS_NOT_DUE) {
            /* the helper logged when the removal will happen */
            if(o->debug)
                pam_syslog(pamh, LOG_DEBUG, "user %s mode %s: %s (%s)", euser, mode,
                           answers[i].text, answers[i].word);
        } else if(ans == ANS_IGNORED)
            pam_syslog(pamh, answers[i].prio,
                       "user %s mode %s: not acting: service %s not in pam_services", euser, mode,
                       eservice);
        else
            pam_syslog(pamh, answers[i].prio, "user %s mode %s: %s (%s)", euser, mode,
                       answers[i].text, answers[i].word);
        return ans;
    case RUN_NOWORD:
        pam_syslog(pamh, LOG_ERR, "user %s mode %s: helper %s gave no answer (%s)%s%s", euser, mode,
                   o->helper, describe_status(status, st, sizeof(st)), word[0] ? ": " : "",
                   ps_escape(word, eword, sizeof(eword)));
        break;
    case RUN_TIMEOUT:
        pam_syslog(pamh, LOG_ERR, "user %s mode %s: helper %s did not answer within %d s: killed",
                   euser, mode, o->helper, o->timeout + PS_HELPER_GRACE);
        break;
    case RUN_EXEC:
        pam_syslog(pamh, LOG_ERR, "user %s mode %s: cannot run helper %s: %s", euser, mode,
                   o->helper, why ? why : "unknown error");
        break;
    case RUN_SETID:
        pam_syslog(pamh, LOG_ERR,
                   "user %s mode %s: cannot run helper %s as root (uid and gid 0, no "
                   "supplementary groups): %s",
                   euser, mode, o->helper, why ? why : "unknown error");
        break;
    case RUN_SYS:
    default:
        pam_syslog(pamh, LOG_ERR, "user %s mode %s: could not run the helper", euser, mode);
        break;
    }
    return ANS_NONE;
}

/* PAM_USER and PAM_SERVICE, validated. Never prompts (pam_get_item, not
 * pam_get_user): this module must not change what the user sees. Returns
 * 0, or after logging GN_SERVICE (no usable PAM_SERVICE) or GN_USER (no
 * usable PAM_USER). */
#define GN_SERVICE (-1)
#define GN_USER    (-2)
static int get_names(pam_handle_t *pamh, const struct ps_opts *o, const char **user,
                     const char **service)
{
    const void *item = NULL;
    char esc[PS_ESC_MAX];

    *user = NULL;
    *service = NULL;
    if(pam_get_item(pamh, PAM_SERVICE, &item) != PAM_SUCCESS || item == NULL) {
        pam_syslog(pamh, LOG_ERR, "cannot get PAM_SERVICE");
        return GN_SERVICE;
    }
    *service = item;
    if(!ps_login_valid(*service)) {
        pam_syslog(pamh, LOG_ERR, "invalid PAM_SERVICE %s: not acting",
                   ps_escape(*service, esc, sizeof(esc)));
        return GN_SERVICE;
    }
    item = NULL;
    if(pam_get_item(pamh, PAM_USER, &item) != PAM_SUCCESS || item == NULL) {
        pam_syslog(pamh, LOG_ERR, "no PAM_USER: not acting");
        return GN_USER;
    }
    *user = item;
    if(!ps_login_valid(*user)) {
        pam_syslog(pamh, LOG_ERR, "invalid user name %s: not acting",
                   ps_escape(*user, esc, sizeof(esc)));
        return GN_USER;
    }
    if(o->debug)
        pam_syslog(pamh, LOG_DEBUG, "user %s service %s", ps_escape(*user, esc, sizeof(esc)),
                   *service);
    return 0;
}

/* ------------------------------------------------------------ account */

/* The day `days` (since the epoch) as YYYY-MM-DD. */
static const char *day_str(long days, char *buf, size_t bufsz)
{
    time_t t = (time_t)(days < 0 || days > 10000000 ? 0 : days) * 86400;
    struct tm tm;

    if(days < 0 || days > 10000000 || gmtime_r(&t, &tm) == NULL ||
       strftime(buf, bufsz, "%Y-%m-%d", &tm) == 0)
        snprintf(buf, bufsz, "day %ld", days);
    return buf;
}

/* only_expired. Shadow first, before anything else: most logins stop here,
 * and the configuration (which holds expired_grace_days) is never read in
 * this process. The module runs the helper once the account is expired
 * and, when its line has expired_grace_days=N, N days past; without it the
 * helper applies the configuration's expired_grace_days. Either way the
 * helper reads shadow again and decides on its own reading. */
static int acct_only_expired(pam_handle_t *pamh, const struct ps_opts *o)
{
    const char *user, *service;
    char esc[PS_ESC_MAX], d1[32], d2[32];
    struct ps_opts eo;
    struct spwd *sp;
    time_t now = time(NULL);
    long expire;

    if(get_names(pamh, o, &user, &service) != 0)
        return PAM_IGNORE;

    sp = getspnam(user);
    if(sp == NULL) {
        if(o->debug)
            pam_syslog(pamh, LOG_DEBUG, "user %s: no readable shadow entry: not acting",
                       ps_escape(user, esc, sizeof(esc)));
        return PAM_IGNORE;
    }
    expire = sp->sp_expire;
    if(!ps_shadow_expired(expire, now)) {
        if(o->debug)
            pam_syslog(pamh, LOG_DEBUG, "user %s: account not expired (expire %ld): not acting",
                       ps_escape(user, esc, sizeof(esc)), expire);
        return PAM_IGNORE;
    }
    if(o->grace > 0 && !o->bad && !ps_shadow_due(expire, o->grace, now)) {
        pam_syslog(pamh, LOG_INFO,
                   "user %s: account expired on %s; removal from PlanetScale waits until %s "
                   "(expired_grace_days=%ld)",
                   ps_escape(user, esc, sizeof(esc)), day_str(expire, d1, sizeof(d1)),
                   day_str(expire + o->grace, d2, sizeof(d2)), o->grace);
        return PAM_IGNORE;
    }

    /* The helper's answer is logged; the login's outcome is pam_unix's. */
    eo = *o;
    eo.expire_day = expire;
    (void)act(pamh, &eo, PS_MODE_EXPIRED, service, user);
    return PAM_IGNORE;
}

static int acct_service(pam_handle_t *pamh, const struct ps_opts *o)
{
    const char *user, *service;

    switch(get_names(pamh, o, &user, &service)) {
    case 0: break;
    case GN_SERVICE: return PAM_SERVICE_ERR;
    default: return PAM_USER_UNKNOWN;
    }
    return service_code(act(pamh, o, PS_MODE_SERVICE, service, user));
}

PAM_EXTERN int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    struct ps_opts o;

    (void)flags;
    parse_args(pamh, argc, argv, &o);
    if(o.on_close)
        pam_syslog(pamh, LOG_ERR, "on_close has no meaning in an account line: ignored");
    if(o.only_expired)
        return acct_only_expired(pamh, &o);
    return acct_service(pamh, &o);
}

/* ------------------------------------------------------------ session */

PAM_EXTERN int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    struct ps_opts o;

    (void)flags;
    parse_args(pamh, argc, argv, &o);
    if(o.debug)
        pam_syslog(pamh, LOG_DEBUG, "open_session: nothing to do%s",
                   o.on_close ? " (on_close acts at close)" : "");
    return PAM_IGNORE;
}

PAM_EXTERN int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    const char *user, *service;
    struct ps_opts o;

    (void)flags;
    parse_args(pamh, argc, argv, &o);
    if(o.only_expired)
        pam_syslog(pamh, LOG_ERR, "only_expired has no meaning in a session line: ignored");
    if(!o.on_close) {
        if(o.debug)
            pam_syslog(pamh, LOG_DEBUG, "close_session without on_close: nothing to do");
        return PAM_IGNORE;
    }
    if(get_names(pamh, &o, &user, &service) != 0)
        return PAM_IGNORE;

    switch(act(pamh, &o, PS_MODE_CLOSE, service, user)) {
    case ANS_REMOVED:
    case ANS_ABSENT:
    case ANS_QUEUED: return PAM_SUCCESS;
    default: return PAM_IGNORE;
    }
}

/* ------------------------------------------------------------ the rest */

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)flags;
    (void)argc;
    (void)argv;
    pam_syslog(pamh, LOG_WARNING,
               "this module provides account and session only: auth line ignored");
    return PAM_IGNORE;
}

PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)pamh;
    (void)flags;
    (void)argc;
    (void)argv;
    return PAM_IGNORE;
}

PAM_EXTERN int pam_sm_chauthtok(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)argc;
    (void)argv;
    if(flags & PAM_UPDATE_AUTHTOK)
        pam_syslog(pamh, LOG_WARNING,
                   "this module provides account and session only: password line ignored");
    return PAM_IGNORE;
}
