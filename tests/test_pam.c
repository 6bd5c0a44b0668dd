/* test_pam.c - pam_planetscale.so driven through real libpam, under
 * pam_wrapper (service files from a private directory, no root, no
 * /etc/pam.d) and nss_wrapper (private passwd, group and shadow files), with
 * libpamtest and cmocka. Output: TAP (CMOCKA_MESSAGE_OUTPUT=TAP).
 *
 * The wrappers must be preloaded before the process starts, so main() first
 * builds a scratch directory (service files, passwd/group/shadow, a fake
 * helper) and re-runs this binary with LD_PRELOAD and the wrapper variables
 * set; the scratch directory is removed afterwards (kept with PS_TEST_KEEP=1).
 * Without libpam_wrapper.so or libnss_wrapper.so the test is skipped
 * ("1..0 # SKIP ...").
 *
 * The module never runs the real command here: every service file points
 * helper= at ps-fake-helper, a /bin/sh script that appends its argv, its
 * initial environment (/proc/PID/environ) and its open descriptors to
 * helper.log and prints the word found in the file
 * "word" (or sleeps, or prints nothing, ...). For what a shell hides (the
 * inherited signal mask, exact descriptors) a copy of this binary serves
 * as the helper: see probe().
 *
 * Every service file stacks the module as
 *     TYPE [ignore=ignore default=done] pam_planetscale.so ARGS
 *     TYPE required pam_debug.so ...=cred_expired
 * so that the stack returns the module's own code, except PAM_IGNORE which
 * shows as PAM_CRED_EXPIRED (a code the module never returns): IGNORED.
 *
 * Running it under valgrind: the checks run in the re-executed child, so
 * pass --trace-children=yes and skip the fake helper and the tools it runs:
 * --trace-children-skip='*ps-fake-helper,*bin/sh,*bin/sleep,...' (see the
 * report or the Makefile's TEST_WRAPPER).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_appl.h>
#include <libpamtest.h>

#include "helper.h"

/* What the stack returns when the module answered PAM_IGNORE. */
#define IGNORED     PAM_CRED_EXPIRED
#define FAKE_HELPER "ps-fake-helper"
#define CLEAN_PATH  "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

/* ================================================================ setup */

static int write_file(const char *dir, const char *name, mode_t mode, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int write_file(const char *dir, const char *name, mode_t mode, const char *fmt, ...)
{
    char path[PATH_MAX];
    va_list ap;
    FILE *f;
    int rc;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "we");
    if(f == NULL)
        return -1;
    va_start(ap, fmt);
    rc = vfprintf(f, fmt, ap) < 0 ? -1 : 0;
    va_end(ap);
    if(fclose(f) != 0)
        rc = -1;
    if(rc == 0 && chmod(path, mode) != 0)
        rc = -1;
    return rc;
}

/* First existing file among: the "Libs:" path or "libdir" of pkg-config
 * package pc, the directory of libc, and the usual multiarch directories. */
static int find_lib(const char *pc, const char *so, char *out, size_t outsz)
{
    const char *dirs[] = { NULL, "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib" };
    char cmd[256], line[1024], libcdir[PATH_MAX] = "";
    Dl_info info;
    size_t i;
    FILE *p;

    snprintf(cmd, sizeof(cmd),
             "pkg-config --libs %s 2>/dev/null; "
             "pkg-config --variable=libdir %s 2>/dev/null",
             pc, pc);
    p = popen(cmd, "re");
    if(p != NULL) {
        while(fgets(line, sizeof(line), p) != NULL) {
            char *save = NULL, *tok;

            for(tok = strtok_r(line, " \t\n", &save); tok != NULL;
                tok = strtok_r(NULL, " \t\n", &save)) {
                if(tok[0] != '/')
                    continue;
                if(strstr(tok, so) != NULL)
                    snprintf(out, outsz, "%s", tok);
                else
                    snprintf(out, outsz, "%s/%s", tok, so);
                if(access(out, R_OK) == 0) {
                    pclose(p);
                    return 0;
                }
            }
        }
        pclose(p);
    }
    if(dladdr((void *)(uintptr_t)&printf, &info) != 0 && info.dli_fname != NULL &&
       info.dli_fname[0] == '/') {
        char *slash;

        snprintf(libcdir, sizeof(libcdir), "%s", info.dli_fname);
        if((slash = strrchr(libcdir, '/')) != NULL)
            *slash = '\0';
        dirs[0] = libcdir;
    }
    for(i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        if(dirs[i] == NULL)
            continue;
        snprintf(out, outsz, "%s/%s", dirs[i], so);
        if(access(out, R_OK) == 0)
            return 0;
    }
    return -1;
}

static int find_pam_module(const char *name, char *out, size_t outsz)
{
    char so[64];

    snprintf(so, sizeof(so), "security/%s", name);
    return find_lib("pam", so, out, outsz);
}

static const char helper_script[] =
    "#!/bin/sh\n"
    "d='%s'\n"
    "# descriptors first, listed by a child (a redirection in this shell\n"
    "# would move our own descriptors around)\n"
    "sh -c 'exec ls -l /proc/$PPID/fd >> \"$1/helper.log\"' sh \"$d\"\n"
    "{\n"
    "  printf 'ARGV'\n"
    "  for a in \"$0\" \"$@\"; do printf ' [%%s]' \"$a\"; done\n"
    "  printf '\\nPID %%s\\n' \"$$\"\n"
    "} >> \"$d/helper.log\"\n"
    "tr '\\0' '\\n' < /proc/$$/environ | sed 's/^/ENV /' >> \"$d/helper.log\"\n"
    "w=$(cat \"$d/word\")\n"
    "case \"$w\" in\n"
    "  sleep) exec sleep 60 ;;\n"
    "  wordsleep) printf 'removed\\n'; exec sleep 60 ;;\n"
    "  silent) exit 0 ;;\n"
    "  long) printf '%%0200d\\n' 0 ;;\n"
    "  nul) printf 'removed\\000x\\n' ;;\n"
    "  *) printf '%%s\\n' \"$w\" ;;\n"
    "esac\n";

/* One service file: each TYPE gets the module line and the sentinel. */
static int write_service(const char *sdir, const char *name, const char *module,
                         const char *debugmod, const char *args)
{
    return write_file(sdir, name, 0644,
                      "auth    [ignore=ignore default=done] %s %s\n"
                      "auth    required %s auth=cred_expired cred=cred_expired\n"
                      "account [ignore=ignore default=done] %s %s\n"
                      "account required %s acct=cred_expired\n"
                      "session [ignore=ignore default=done] %s %s\n"
                      "session required %s open_session=cred_expired close_session=cred_expired\n"
                      "password [ignore=ignore default=done] %s %s\n"
                      "password required %s prechauthtok=cred_expired chauthtok=cred_expired\n",
                      module, args, debugmod, module, args, debugmod, module, args, debugmod,
                      module, args, debugmod);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int copy_file(const char *from, const char *to, mode_t mode)
{
    char buf[65536];
    ssize_t n;
    int in, out, rc = 0;

    in = open(from, O_RDONLY | O_CLOEXEC);
    if(in < 0)
        return -1;
    out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if(out < 0) {
        close(in);
        return -1;
    }
    while((n = read(in, buf, sizeof(buf))) > 0)
        if(write(out, buf, (size_t)n) != n) {
            rc = -1;
            break;
        }
    if(n < 0 || fchmod(out, mode) != 0)
        rc = -1;
    close(in);
    if(close(out) != 0)
        rc = -1;
    return rc;
}

/* This binary as a helper (copied to SCRATCH/ps-probe): records what a
 * shell would hide or disturb, namely the blocked and ignored signals it
 * inherited through execve (dash clears the mask), its uids, gids,
 * supplementary groups and umask (from /proc/self/status) and its exact
 * descriptors, in SCRATCH/probe.log; then answers "removed". */
static int probe(int argc, char **argv)
{
    char path[PATH_MAX], link[PATH_MAX], line[256], *slash;
    struct dirent *e;
    FILE *log, *st;
    DIR *d;
    int i;

    snprintf(path, sizeof(path), "%s", argv[0]);
    if((slash = strrchr(path, '/')) == NULL)
        return 1;
    snprintf(slash, sizeof(path) - (size_t)(slash - path), "/probe.log");
    log = fopen(path, "ae");
    if(log == NULL)
        return 1;
    fprintf(log, "ARGC %d", argc);
    for(i = 0; i < argc; i++)
        fprintf(log, " [%s]", argv[i]);
    fputc('\n', log);
    st = fopen("/proc/self/status", "re");
    while(st != NULL && fgets(line, sizeof(line), st) != NULL)
        if(strncmp(line, "SigBlk:", 7) == 0 || strncmp(line, "SigIgn:", 7) == 0 ||
           strncmp(line, "Uid:", 4) == 0 || strncmp(line, "Gid:", 4) == 0 ||
           strncmp(line, "Groups:", 7) == 0 || strncmp(line, "Umask:", 6) == 0)
            fputs(line, log);
    if(st != NULL)
        fclose(st);
    d = opendir("/proc/self/fd");
    while(d != NULL && (e = readdir(d)) != NULL) {
        ssize_t n;
        int fd = atoi(e->d_name);

        if(e->d_name[0] == '.' || fd == dirfd(d) || fd == fileno(log))
            continue;
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        n = readlink(path, link, sizeof(link) - 1);
        link[n > 0 ? n : 0] = '\0';
        fprintf(log, "FD %d %s\n", fd, link);
    }
    if(d != NULL)
        closedir(d);
    for(i = 0; environ[i] != NULL; i++)
        fprintf(log, "ENV %s\n", environ[i]);
    fclose(log);
    printf("%s\n", PS_HELPER_REMOVED);
    return 0;
}

static int outer(int argc, char **argv)
{
    char pamwrap[PATH_MAX], nsswrap[PATH_MAX], module[PATH_MAX];
    char debugmod[PATH_MAX], denymod[PATH_MAX], self[PATH_MAX];
    char dir[1024], sdir[PATH_MAX], path[PATH_MAX], helper[PATH_MAX];
    char args[PATH_MAX * 2], preload[PATH_MAX * 3];
    const char *modenv = getenv("PS_MODULE");
    const char *old_preload = getenv("LD_PRELOAD");
    const char *tmp = getenv("TMPDIR");
    long today = (long)(time(NULL) / 86400);
    const char *ph = "$6$salt$hash";
    /* helper: a name in the scratch dir, or an absolute path; args: at
	 * most one %s, the scratch dir. */
    static const struct {
        const char *name, *helper, *args;
    } services[] = {
        { "planetscale-deprovision", FAKE_HELPER, "conf=%s/deprovision.conf" },
        { "ps-debug", FAKE_HELPER, "debug timeout=7 bogus_arg" },
        { "login-test", FAKE_HELPER, "" },
        { "ps-expired", FAKE_HELPER, "only_expired" },
        { "ps-expired-grace", FAKE_HELPER, "only_expired expired_grace_days=3" },
        { "ps-expired-grace0", FAKE_HELPER, "only_expired expired_grace_days=0" },
        { "ps-expired-badgrace", FAKE_HELPER, "only_expired expired_grace_days=3x" },
        { "ps-expired-neggrace", FAKE_HELPER, "only_expired expired_grace_days=-1" },
        { "ps-expired-biggrace", FAKE_HELPER, "only_expired expired_grace_days=3651" },
        { "ps-close", FAKE_HELPER, "on_close" },
        { "ps-noclose", FAKE_HELPER, "" },
        { "ps-timeout", FAKE_HELPER, "timeout=1" },
        { "ps-badconf", FAKE_HELPER, "conf=relative.conf" },
        { "ps-missing", "/nonexistent/" FAKE_HELPER, "" },
        { "ps-expired-missing", "/nonexistent/" FAKE_HELPER, "only_expired" },
        { "ps-close-missing", "/nonexistent/" FAKE_HELPER, "on_close" },
        { "ps-unsafe", "unsafe-helper", "" },
        { "ps-badexec", "badexec-helper", "" },
        { "ps-probe", "ps-probe", "" },
    };
    size_t i;
    int status, rc = 99;
    pid_t pid;

    if(find_lib("pam_wrapper", "libpam_wrapper.so", pamwrap, sizeof(pamwrap)) != 0) {
        printf("1..0 # SKIP libpam_wrapper.so not found "
               "(Debian: apt install libpam-wrapper)\n");
        return 0;
    }
    if(find_lib("nss_wrapper", "libnss_wrapper.so", nsswrap, sizeof(nsswrap)) != 0) {
        printf("1..0 # SKIP libnss_wrapper.so not found "
               "(Debian: apt install libnss-wrapper)\n");
        return 0;
    }
    if(find_pam_module("pam_debug.so", debugmod, sizeof(debugmod)) != 0 ||
       find_pam_module("pam_deny.so", denymod, sizeof(denymod)) != 0) {
        printf("1..0 # SKIP pam_debug.so or pam_deny.so not found "
               "(Debian: libpam-modules)\n");
        return 0;
    }
    if(modenv == NULL || *modenv == '\0')
        modenv = ".libs/pam_planetscale.so";
    if(realpath(modenv, module) == NULL) {
        printf("1..0 # SKIP module %s not built\n", modenv);
        return 0;
    }
    if(strchr(argv[0], '/') != NULL) {
        if(realpath(argv[0], self) == NULL) {
            perror(argv[0]);
            return 99;
        }
    } else {
        snprintf(self, sizeof(self), "/proc/self/exe");
    }

    snprintf(dir, sizeof(dir), "%s/test_pam.XXXXXX", tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
    if(mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 99;
    }
    snprintf(sdir, sizeof(sdir), "%s/services", dir);
    snprintf(helper, sizeof(helper), "%s/" FAKE_HELPER, dir);
    if(mkdir(sdir, 0755) != 0 || write_file(dir, FAKE_HELPER, 0755, helper_script, dir) != 0 ||
       write_file(dir, "unsafe-helper", 0777, helper_script, dir) != 0 ||
       write_file(dir, "badexec-helper", 0755, "#!/nonexistent/interpreter\n") != 0 ||
       write_file(dir, "word", 0644, "removed\n") != 0 ||
       write_file(dir, "helper.log", 0644, "%s", "") != 0 ||
       write_file(dir, "deprovision.conf", 0600, "# unused\n") != 0 ||
       write_file(dir, "passwd", 0644,
                  "root:x:0:0:root:/root:/bin/sh\n"
                  "alice:x:1001:1001::/home/alice:/bin/sh\n"
                  "olduser:x:1002:1001::/home/olduser:/bin/sh\n"
                  "todayuser:x:1003:1001::/home/todayuser:/bin/sh\n"
                  "tomorrowuser:x:1004:1001::/home/tomorrowuser:/bin/sh\n"
                  "lockeduser:x:1005:1001::/home/lockeduser:/bin/sh\n"
                  "lockedold:x:1006:1001::/home/lockedold:/bin/sh\n"
                  "keyonly:x:1007:1001::/home/keyonly:/bin/sh\n"
                  "nopw:x:1008:1001::/home/nopw:/bin/sh\n"
                  "noshadow:x:1009:1001::/home/noshadow:/bin/sh\n"
                  "zeroexp:x:1010:1001::/home/zeroexp:/bin/sh\n"
                  "grace2:x:1011:1001::/home/grace2:/bin/sh\n"
                  "grace3:x:1012:1001::/home/grace3:/bin/sh\n") != 0 ||
       write_file(dir, "group", 0644, "root:x:0:\nusers:x:1001:\n") != 0 ||
       write_file(dir, "shadow", 0600,
                  "root:*:19000:0:99999:7:::\n"
                  "alice:%s:19000:0:99999:7:::\n"
                  "olduser:%s:19000:0:99999:7::1000:\n"
                  "todayuser:%s:19000:0:99999:7::%ld:\n"
                  "tomorrowuser:%s:19000:0:99999:7::%ld:\n"
                  "lockeduser:!%s:19000:0:99999:7:::\n"
                  "lockedold:!%s:19000:0:99999:7::1000:\n"
                  "keyonly:*:19000:0:99999:7:::\n"
                  "nopw::19000:0:99999:7:::\n"
                  "zeroexp:%s:19000:0:99999:7::0:\n"
                  "grace2:!:19000:0:99999:7::%ld:\n"
                  "grace3:!:19000:0:99999:7::%ld:\n",
                  ph, ph, ph, today, ph, today + 1, ph, ph, ph, today - 2, today - 3) != 0 ||
       write_file(sdir, "other", 0644,
                  "auth required %s\naccount required %s\n"
                  "session required %s\npassword required %s\n",
                  denymod, denymod, denymod, denymod) != 0) {
        perror("writing the test files");
        goto out;
    }
    snprintf(path, sizeof(path), "%s/ps-probe", dir);
    if(copy_file(self, path, 0755) != 0) {
        perror("copying the probe");
        goto out;
    }
    for(i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
        char extra[2048];

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
#pragma GCC diagnostic ignored "-Wformat-extra-args"
        snprintf(extra, sizeof(extra), services[i].args, dir);
#pragma GCC diagnostic pop
        if(services[i].helper[0] == '/')
            snprintf(args, sizeof(args), "helper=%s %s", services[i].helper, extra);
        else
            snprintf(args, sizeof(args), "helper=%s/%s %s", dir, services[i].helper, extra);
        if(write_service(sdir, services[i].name, module, debugmod, args) != 0) {
            perror("writing a service file");
            goto out;
        }
    }

    /* Our wrappers first, then what was preloaded already, except
	 * valgrind's own (it adds that back when it traces the child). */
    snprintf(preload, sizeof(preload), "%s:%s", pamwrap, nsswrap);
    if(old_preload != NULL) {
        char *copy = strdup(old_preload), *save = NULL, *tok;

        for(tok = copy ? strtok_r(copy, ": ", &save) : NULL; tok != NULL;
            tok = strtok_r(NULL, ": ", &save)) {
            if(strstr(tok, "vgpreload") != NULL)
                continue;
            if(strlen(preload) + strlen(tok) + 2 < sizeof(preload)) {
                size_t len = strlen(preload);

                snprintf(preload + len, sizeof(preload) - len, ":%s", tok);
            }
        }
        free(copy);
    }
    setenv("LD_PRELOAD", preload, 1);
    setenv("PAM_WRAPPER", "1", 1);
    setenv("PAM_WRAPPER_SERVICE_DIR", sdir, 1);
    snprintf(path, sizeof(path), "%s/passwd", dir);
    setenv("NSS_WRAPPER_PASSWD", path, 1);
    snprintf(path, sizeof(path), "%s/group", dir);
    setenv("NSS_WRAPPER_GROUP", path, 1);
    snprintf(path, sizeof(path), "%s/shadow", dir);
    setenv("NSS_WRAPPER_SHADOW", path, 1);
    setenv("PS_TEST_DIR", dir, 1);
    fflush(stdout);

    pid = fork();
    if(pid < 0) {
        perror("fork");
        goto out;
    }
    if(pid == 0) {
        (void)argc;
        execv(self, argv);
        perror(self);
        _exit(99);
    }
    while(waitpid(pid, &status, 0) < 0) {
        if(errno != EINTR) {
            perror("waitpid");
            goto out;
        }
    }
    rc = WIFEXITED(status) ? WEXITSTATUS(status) : 99;
out:
    if(getenv("PS_TEST_KEEP") != NULL)
        fprintf(stderr, "# test files kept in %s\n", dir);
    else
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}

/* ================================================================ helpers */

static const char *tdir(void)
{
    return getenv("PS_TEST_DIR");
}

static void set_word(const char *word)
{
    assert_int_equal(write_file(tdir(), "word", 0644, "%s\n", word), 0);
}

static void clear_log(void)
{
    assert_int_equal(write_file(tdir(), "helper.log", 0644, "%s", ""), 0);
}

/* The helper log, malloc'd. */
static char *read_log(void)
{
    char path[PATH_MAX];
    char *buf;
    size_t len = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/helper.log", tdir());
    f = fopen(path, "re");
    assert_non_null(f);
    buf = malloc(65536);
    assert_non_null(buf);
    len = fread(buf, 1, 65535, f);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

/* Number of lines of log starting with prefix. */
static int count_lines(const char *log, const char *prefix)
{
    size_t plen = strlen(prefix);
    const char *p = log;
    int n = 0;

    while(*p) {
        if(strncmp(p, prefix, plen) == 0)
            n++;
        p = strchr(p, '\n');
        if(p == NULL)
            break;
        p++;
    }
    return n;
}

static int helper_runs(void)
{
    char *log = read_log();
    int n = count_lines(log, "ARGV ");

    free(log);
    return n;
}

/* Runs one PAM operation as service/user and checks the stack's return. */
static void pam_op(const char *service, const char *user, enum pamtest_ops op, int expected)
{
    struct pamtest_conv_data conv;
    struct pam_testcase tests[] = { pam_test(op, expected) };
    enum pamtest_err perr;

    memset(&conv, 0, sizeof(conv));
    perr = run_pamtest(service, user, &conv, tests, NULL);
    if(perr == PAMTEST_ERR_CASE || perr == PAMTEST_ERR_OK) {
        if(tests[0].op_rv != expected)
            print_error("%s/%s op %d: got %d (%s), want %d (%s)\n", service, user, (int)op,
                        tests[0].op_rv, pam_strerror(NULL, tests[0].op_rv), expected,
                        pam_strerror(NULL, expected));
        assert_int_equal(tests[0].op_rv, expected);
    }
    assert_int_equal(perr, PAMTEST_ERR_OK);
}

static void account(const char *service, const char *user, int expected)
{
    pam_op(service, user, PAMTEST_ACCOUNT, expected);
}

/* Open a session, then close it with a fresh handle. (In one handle libpam
 * picks each module's action at close from the code it returned at open:
 * PAM_IGNORE at open makes the close answer advisory; see
 * test_close_same_handle.) */
static void session(const char *service, const char *user, int want_open, int want_close)
{
    pam_op(service, user, PAMTEST_OPEN_SESSION, want_open);
    pam_op(service, user, PAMTEST_CLOSE_SESSION, want_close);
}

/* The single recorded ARGV line must be exactly this; `extra` is what
 * follows the deadline ("" or e.g. " [--expire-day] [1000]"). */
static void assert_argv_x(const char *mode, const char *service, int deadline, const char *extra,
                          const char *conf, int debug, const char *user, const char *helper)
{
    char want[PATH_MAX * 2], hpath[PATH_MAX], *log, *line, *end;

    if(helper == NULL) {
        snprintf(hpath, sizeof(hpath), "%s/" FAKE_HELPER, tdir());
        helper = hpath;
    }
    snprintf(want, sizeof(want),
             "ARGV [%s] [" PS_HELPER_SUBCOMMAND "] [--mode] [%s] [--service] [%s]"
             " [--deadline] [%d]%s%s%s%s%s [--] [%s]",
             helper, mode, service, deadline, extra, conf ? " [--config] [" : "", conf ? conf : "",
             conf ? "]" : "", debug ? " [--debug]" : "", user);
    log = read_log();
    assert_int_equal(count_lines(log, "ARGV "), 1);
    line = strstr(log, "ARGV ");
    assert_non_null(line);
    end = strchr(line, '\n');
    assert_non_null(end);
    *end = '\0';
    assert_string_equal(line, want);
    free(log);
}

static void assert_argv(const char *mode, const char *service, int deadline, const char *conf,
                        int debug, const char *user, const char *helper)
{
    assert_argv_x(mode, service, deadline, "", conf, debug, user, helper);
}

/* Clean environment, stdio on /dev/null and a pipe, no other descriptor
 * (but the script that /bin/sh itself holds open). The signal mask is
 * checked with the probe: dash clears it when it runs a script. */
static void assert_child_hygiene(void)
{
    char *log = read_log(), *p, *save = NULL;
    char helper[PATH_MAX];
    int env = 0, fds = 0;

    snprintf(helper, sizeof(helper), "%s/" FAKE_HELPER, tdir());
    for(p = strtok_r(log, "\n", &save); p != NULL; p = strtok_r(NULL, "\n", &save)) {
        char *arrow = strstr(p, " -> ");

        if(strncmp(p, "ENV ", 4) == 0) {
            env++;
            if(strcmp(p + 4, CLEAN_PATH) != 0 && strcmp(p + 4, "LC_ALL=C") != 0)
                fail_msg("unexpected variable in the helper's "
                         "environment: %s",
                         p + 4);
        } else if(arrow != NULL) {
            const char *sp, *target = arrow + 4;
            int fd;

            *arrow = '\0';
            sp = strrchr(p, ' ');
            fd = atoi(sp ? sp + 1 : p);
            fds++;
            if(fd == 0 || fd == 2)
                assert_string_equal(target, "/dev/null");
            else if(fd == 1)
                assert_true(strncmp(target, "pipe:", 5) == 0);
            else if(strcmp(target, helper) != 0)
                fail_msg("descriptor %d -> %s leaked into the "
                         "helper",
                         fd, target);
        }
    }
    assert_int_equal(env, 2);
    assert_true(fds >= 3);
    free(log);
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while((e = readdir(d)) != NULL)
        if(e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own descriptor */
}

static int setup(void **state)
{
    char path[PATH_MAX];

    (void)state;
    snprintf(path, sizeof(path), "%s/probe.log", tdir());
    unlink(path);
    clear_log();
    set_word(PS_HELPER_REMOVED);
    return 0;
}

/* ================================================================ service */

static void test_service_argv_env(void **state)
{
    char conf[PATH_MAX];

    int leaky;

    (void)state;
    /* a descriptor the host forgot to mark close-on-exec */
    leaky = open("/dev/zero", O_RDONLY);
    assert_true(leaky >= 0);
    snprintf(conf, sizeof(conf), "%s/deprovision.conf", tdir());
    account("planetscale-deprovision", "alice", PAM_SUCCESS);
    close(leaky);
    assert_argv(PS_MODE_SERVICE, "planetscale-deprovision", PS_HELPER_DEFAULT_TIMEOUT, conf, 0,
                "alice", NULL);
    assert_child_hygiene();
}

static void test_service_debug_timeout(void **state)
{
    (void)state;
    /* also carries an unknown argument: logged and ignored */
    account("ps-debug", "alice", PAM_SUCCESS);
    assert_argv(PS_MODE_SERVICE, "ps-debug", 7, NULL, 1, "alice", NULL);
}

static const struct {
    const char *word;
    int service, expired, close;
} words[] = {
    { PS_HELPER_REMOVED, PAM_SUCCESS, IGNORED, PAM_SUCCESS },
    { PS_HELPER_ABSENT, PAM_SUCCESS, IGNORED, PAM_SUCCESS },
    { PS_HELPER_UNMAPPED, PAM_SUCCESS, IGNORED, IGNORED },
    { PS_HELPER_UNKNOWN, PAM_USER_UNKNOWN, IGNORED, IGNORED },
    { PS_HELPER_IGNORED, IGNORED, IGNORED, IGNORED },
    { PS_HELPER_QUEUED, PAM_AUTHINFO_UNAVAIL, IGNORED, PAM_SUCCESS },
    { PS_HELPER_REFUSED, PAM_PERM_DENIED, IGNORED, IGNORED },
    { PS_HELPER_CONFIG, PAM_SERVICE_ERR, IGNORED, IGNORED },
    { PS_HELPER_ERROR, PAM_SYSTEM_ERR, IGNORED, IGNORED },
    { "silent", PAM_SYSTEM_ERR, IGNORED, IGNORED },
    { "bogus", PAM_SYSTEM_ERR, IGNORED, IGNORED },
    { "long", PAM_SYSTEM_ERR, IGNORED, IGNORED },
    { "removed extra", PAM_SYSTEM_ERR, IGNORED, IGNORED },
    { "nul", PAM_SYSTEM_ERR, IGNORED, IGNORED },
};
#define N_WORDS (sizeof(words) / sizeof(words[0]))

static void test_service_words(void **state)
{
    size_t i;

    (void)state;
    for(i = 0; i < N_WORDS; i++) {
        clear_log();
        set_word(words[i].word);
        account("planetscale-deprovision", "alice", words[i].service);
        assert_int_equal(helper_runs(), 1);
    }
}

static void test_interlock_service_passed(void **state)
{
    (void)state;
    /* The helper owns the pam_services interlock: the module passes the
	 * real PAM_SERVICE and maps "ignored" to PAM_IGNORE. */
    set_word(PS_HELPER_IGNORED);
    account("login-test", "alice", IGNORED);
    assert_argv(PS_MODE_SERVICE, "login-test", PS_HELPER_DEFAULT_TIMEOUT, NULL, 0, "alice", NULL);
}

static void test_stray_auth_password_lines(void **state)
{
    (void)state;
    pam_op("planetscale-deprovision", "alice", PAMTEST_AUTHENTICATE, IGNORED);
    pam_op("planetscale-deprovision", "alice", PAMTEST_SETCRED, IGNORED);
    pam_op("planetscale-deprovision", "alice", PAMTEST_CHAUTHTOK, IGNORED);
    assert_int_equal(helper_runs(), 0);
}

static void test_bad_conf_argument(void **state)
{
    (void)state;
    account("ps-badconf", "alice", PAM_SERVICE_ERR);
    assert_int_equal(helper_runs(), 0);
}

/* ================================================================ expired */

/* sp_expire of the test accounts, relative to today (see main) */
static long expire_of(const char *user)
{
    long today = (long)(time(NULL) / 86400);

    if(strcmp(user, "olduser") == 0 || strcmp(user, "lockedold") == 0)
        return 1000;
    if(strcmp(user, "zeroexp") == 0)
        return 0;
    if(strcmp(user, "todayuser") == 0)
        return today;
    if(strcmp(user, "grace2") == 0)
        return today - 2;
    if(strcmp(user, "grace3") == 0)
        return today - 3;
    fail_msg("no expiry known for %s", user);
    return -1;
}

/* One account pass of `service` (only_expired, maybe expired_grace_days=)
 * as user: the helper runs `runs` times (0 or 1), with --expire-day and,
 * when grace >= 0, --expired-grace-days. */
static void expired_case_in(const char *service, const char *user, long grace, int runs)
{
    char extra[128];

    clear_log();
    account(service, user, IGNORED);
    assert_int_equal(helper_runs(), runs);
    if(!runs)
        return;
    if(grace >= 0)
        snprintf(extra, sizeof(extra), " [--expire-day] [%ld] [--expired-grace-days] [%ld]",
                 expire_of(user), grace);
    else
        snprintf(extra, sizeof(extra), " [--expire-day] [%ld]", expire_of(user));
    assert_argv_x(PS_MODE_EXPIRED, service, PS_HELPER_DEFAULT_TIMEOUT, extra, NULL, 0, user, NULL);
}

static void expired_case(const char *user, int runs)
{
    expired_case_in("ps-expired", user, -1, runs);
}

static void test_expired_valid_account(void **state)
{
    (void)state;
    expired_case("alice", 0); /* expire field empty: -1 */
    expired_case("tomorrowuser", 0);
}

static void test_expired_account_runs_helper(void **state)
{
    size_t i;

    (void)state;
    expired_case("olduser", 1);
    assert_child_hygiene();
    /* PAM_IGNORE whatever the helper says */
    for(i = 0; i < N_WORDS; i++) {
        clear_log();
        set_word(words[i].word);
        account("ps-expired", "olduser", words[i].expired);
        assert_int_equal(helper_runs(), 1);
    }
}

static void test_expired_today(void **state)
{
    (void)state;
    /* pam_unix: expired when today >= sp_expire */
    expired_case("todayuser", 1);
    expired_case("zeroexp", 1);
}

static void test_expired_locked_not_expired(void **state)
{
    (void)state;
    expired_case("lockeduser", 0); /* '!' password, no expiry */
    expired_case("keyonly", 0);    /* '*' */
    expired_case("nopw", 0);       /* empty password */
    expired_case("lockedold", 1);  /* locked AND expired */
}

/* expired_grace_days=3 on the module line: the module itself waits, and
 * passes the grace to the helper. grace2 expired 2 days ago (the day before
 * it becomes due), grace3 3 days ago (the day it becomes due). */
static void test_expired_grace_argument(void **state)
{
    (void)state;
    expired_case_in("ps-expired-grace", "grace2", 3, 0);
    expired_case_in("ps-expired-grace", "grace3", 3, 1);
    expired_case_in("ps-expired-grace", "olduser", 3, 1);
    expired_case_in("ps-expired-grace", "todayuser", 3, 0);
    expired_case_in("ps-expired-grace", "alice", 3, 0);
    expired_case_in("ps-expired-grace", "tomorrowuser", 3, 0);
    /* 0: as soon as pam_unix calls the account expired */
    expired_case_in("ps-expired-grace0", "todayuser", 0, 1);
    expired_case_in("ps-expired-grace0", "tomorrowuser", 0, 0);
}

/* Without the argument the module cannot know the configuration's grace
 * (it never reads the configuration): it runs the helper for any expired
 * account, with the day it saw, and the helper decides. */
static void test_expired_grace_from_config(void **state)
{
    (void)state;
    expired_case("grace2", 1);
    expired_case("grace3", 1);
}

static void test_expired_grace_bad_argument(void **state)
{
    static const char *services[] = { "ps-expired-badgrace", "ps-expired-neggrace",
                                      "ps-expired-biggrace" };
    size_t i;

    (void)state;
    /* a bad value removes nobody, and the login is still pam_unix's */
    for(i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
        expired_case_in(services[i], "olduser", -1, 0);
        expired_case_in(services[i], "grace3", -1, 0);
    }
}

static void test_expired_no_shadow_entry(void **state)
{
    (void)state;
    expired_case("noshadow", 0);
    expired_case("nosuchuser", 0);
}

/* ================================================================ session */

static void test_close_session(void **state)
{
    size_t i;

    (void)state;
    for(i = 0; i < N_WORDS; i++) {
        clear_log();
        set_word(words[i].word);
        session("ps-close", "alice", IGNORED, words[i].close);
        assert_int_equal(helper_runs(), 1);
    }
    clear_log();
    set_word(PS_HELPER_REMOVED);
    pam_op("ps-close", "alice", PAMTEST_OPEN_SESSION, IGNORED);
    assert_int_equal(helper_runs(), 0); /* nothing at open */
    pam_op("ps-close", "alice", PAMTEST_CLOSE_SESSION, PAM_SUCCESS);
    assert_argv(PS_MODE_CLOSE, "ps-close", PS_HELPER_DEFAULT_TIMEOUT, NULL, 0, "alice", NULL);
    assert_child_hygiene();
}

static void test_close_same_handle(void **state)
{
    struct pamtest_conv_data conv;
    struct pam_testcase tests[] = {
        pam_test(PAMTEST_OPEN_SESSION, IGNORED),
        pam_test(PAMTEST_CLOSE_SESSION, IGNORED),
    };

    (void)state;
    memset(&conv, 0, sizeof(conv));
    set_word(PS_HELPER_REFUSED);
    assert_int_equal(run_pamtest("ps-close", "alice", &conv, tests, NULL), PAMTEST_ERR_OK);
    assert_argv(PS_MODE_CLOSE, "ps-close", PS_HELPER_DEFAULT_TIMEOUT, NULL, 0, "alice", NULL);
}

static void test_session_without_on_close(void **state)
{
    (void)state;
    session("ps-noclose", "alice", IGNORED, IGNORED);
    assert_int_equal(helper_runs(), 0);
}

static void test_close_helper_missing(void **state)
{
    (void)state;
    session("ps-close-missing", "alice", IGNORED, IGNORED);
}

/* ================================================================ users */

static void hostile_user(const char *user)
{
    account("planetscale-deprovision", user, PAM_USER_UNKNOWN);
    account("ps-expired", user, IGNORED);
    session("ps-close", user, IGNORED, IGNORED);
    assert_int_equal(helper_runs(), 0);
}

static void test_user_with_newline(void **state)
{
    (void)state;
    hostile_user("alice\nroot");
}

static void test_user_overlong(void **state)
{
    char user[301];

    (void)state;
    memset(user, 'a', sizeof(user) - 1);
    user[sizeof(user) - 1] = '\0';
    hostile_user(user);
}

static void test_user_option_like(void **state)
{
    (void)state;
    hostile_user("--config=/tmp/x");
    hostile_user("a b");
    hostile_user("../etc");
    hostile_user("");
}

/* ================================================================ helper */

static pid_t logged_pid(void)
{
    char *log = read_log(), *p = strstr(log, "\nPID ");
    pid_t pid = p ? (pid_t)atol(p + 5) : 0;

    free(log);
    return pid;
}

static void test_helper_hangs(void **state)
{
    double t0, dt;
    pid_t pid;
    int rc, err;

    (void)state;
    set_word("sleep");
    t0 = now();
    account("ps-timeout", "alice", PAM_SYSTEM_ERR);
    dt = now() - t0;
    assert_true(dt >= 1 + PS_HELPER_GRACE - 0.2);
    assert_true(dt < 1 + PS_HELPER_GRACE + 3);
    pid = logged_pid();
    assert_true(pid > 0);
    /* killed and reaped: the pid is gone */
    errno = 0;
    rc = kill(pid, 0);
    err = errno;
    assert_int_equal(rc, -1);
    assert_int_equal(err, ESRCH);
}

static void test_helper_answers_then_hangs(void **state)
{
    double t0, dt;

    (void)state;
    /* The word is the answer, even when the helper does not exit. */
    set_word("wordsleep");
    t0 = now();
    account("ps-timeout", "alice", PAM_SUCCESS);
    dt = now() - t0;
    assert_true(dt < 1 + PS_HELPER_GRACE + 3);
    assert_int_equal(kill(logged_pid(), 0), -1);
}

static void test_helper_missing(void **state)
{
    (void)state;
    account("ps-missing", "alice", PAM_SYSTEM_ERR);
    account("ps-expired-missing", "olduser", IGNORED);
}

static void test_helper_unsafe(void **state)
{
    (void)state;
    /* world-writable helper: refused before fork */
    account("ps-unsafe", "alice", PAM_SYSTEM_ERR);
    assert_int_equal(helper_runs(), 0);
}

static void test_helper_exec_fails(void **state)
{
    (void)state;
    /* execve itself fails (bad interpreter): the child reports it */
    account("ps-badexec", "alice", PAM_SYSTEM_ERR);
}

/* ================================================================ process */

static void test_sigchld_ignored(void **state)
{
    struct sigaction ign, old;

    (void)state;
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    assert_int_equal(sigaction(SIGCHLD, &ign, &old), 0);
    set_word(PS_HELPER_ABSENT);
    account("planetscale-deprovision", "alice", PAM_SUCCESS);
    set_word("sleep");
    account("ps-timeout", "alice", PAM_SYSTEM_ERR);
    assert_int_equal(sigaction(SIGCHLD, &old, NULL), 0);
}

/* The value of the probe's record for a /proc/self/status field ("Uid"),
 * whitespace squeezed to single spaces, in out. */
static void probe_field(const char *name, char *out, size_t outsz)
{
    char path[PATH_MAX], line[PATH_MAX + 64];
    size_t nlen = strlen(name);
    FILE *f;

    out[0] = '\0';
    snprintf(path, sizeof(path), "%s/probe.log", tdir());
    f = fopen(path, "re");
    assert_non_null(f);
    while(fgets(line, sizeof(line), f) != NULL) {
        char *p, *save = NULL;
        size_t len = 0;

        if(strncmp(line, name, nlen) != 0 || line[nlen] != ':')
            continue;
        for(p = strtok_r(line + nlen + 1, " \t\n", &save); p != NULL;
            p = strtok_r(NULL, " \t\n", &save))
            len += (size_t)snprintf(out + len, outsz - len, "%s%s", len ? " " : "", p);
        break;
    }
    fclose(f);
}

/* The probe's record: SigBlk and SigIgn all clear, umask 077, exactly 0 1 2
 * open, clean env. */
static void assert_probe_hygiene(void)
{
    char path[PATH_MAX], line[PATH_MAX + 64], v[256];
    int fds = 0, env = 0, blk = 0;
    FILE *f;

    probe_field("SigIgn", v, sizeof(v));
    assert_string_equal(v, "0000000000000000");
    probe_field("Umask", v, sizeof(v));
    assert_string_equal(v, "0077");

    snprintf(path, sizeof(path), "%s/probe.log", tdir());
    f = fopen(path, "re");
    assert_non_null(f);
    while(fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if(strncmp(line, "SigBlk:", 7) == 0) {
            blk++;
            assert_string_equal(line + 7 + strspn(line + 7, " \t"), "0000000000000000");
        } else if(strncmp(line, "FD 0 ", 5) == 0 || strncmp(line, "FD 2 ", 5) == 0) {
            fds++;
            assert_string_equal(line + 5, "/dev/null");
        } else if(strncmp(line, "FD 1 ", 5) == 0) {
            fds++;
            assert_true(strncmp(line + 5, "pipe:", 5) == 0);
        } else if(strncmp(line, "FD ", 3) == 0) {
            fail_msg("descriptor leaked into the helper: %s", line);
        } else if(strncmp(line, "ENV ", 4) == 0) {
            env++;
            if(strcmp(line + 4, CLEAN_PATH) != 0 && strcmp(line + 4, "LC_ALL=C") != 0)
                fail_msg("unexpected variable: %s", line + 4);
        }
    }
    fclose(f);
    assert_int_equal(blk, 1);
    assert_int_equal(fds, 3);
    assert_int_equal(env, 2);
    unlink(path);
}

static void test_signals_untouched(void **state)
{
    int sigs[] = { SIGCHLD, SIGPIPE, SIGALRM, SIGTERM, SIGINT, SIGHUP };
    struct sigaction before[6], after;
    sigset_t block, mask_before, mask_after;
    size_t i;
    int leaky;

    (void)state;
    /* a host that blocks signals and leaks a descriptor: the helper
	 * must inherit neither */
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    assert_int_equal(sigprocmask(SIG_BLOCK, &block, NULL), 0);
    assert_int_equal(sigprocmask(SIG_BLOCK, NULL, &mask_before), 0);
    for(i = 0; i < 6; i++)
        assert_int_equal(sigaction(sigs[i], NULL, &before[i]), 0);
    leaky = open("/dev/zero", O_RDONLY);
    assert_true(leaky >= 0);

    account("ps-probe", "alice", PAM_SUCCESS);
    assert_probe_hygiene();
    account("planetscale-deprovision", "alice", PAM_SUCCESS);
    assert_child_hygiene();
    close(leaky);

    for(i = 0; i < 6; i++) {
        assert_int_equal(sigaction(sigs[i], NULL, &after), 0);
        assert_true(after.sa_handler == before[i].sa_handler);
        assert_int_equal(after.sa_flags, before[i].sa_flags);
    }
    assert_int_equal(sigprocmask(SIG_BLOCK, NULL, &mask_after), 0);
    for(i = 1; i < NSIG; i++)
        assert_int_equal(sigismember(&mask_before, (int)i), sigismember(&mask_after, (int)i));
    assert_int_equal(sigprocmask(SIG_UNBLOCK, &block, NULL), 0);
}

static void test_host_ignores_signals_and_umask(void **state)
{
    int sigs[] = { SIGPIPE, SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGCHLD };
    struct sigaction ign, before[6], after;
    sigset_t block, mask_before, mask_after;
    mode_t old_umask;
    char v[256];
    size_t i;

    (void)state;
    /* A host that ignores signals (an ignored signal stays ignored through
     * execve), blocks others and runs with umask 0: the helper gets none of
     * it, and the host keeps all of it. */
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    for(i = 0; i < 6; i++)
        assert_int_equal(sigaction(sigs[i], &ign, &before[i]), 0);
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGUSR2);
    sigaddset(&block, SIGALRM);
    assert_int_equal(sigprocmask(SIG_BLOCK, &block, &mask_before), 0);
    old_umask = umask(0);

    account("ps-probe", "alice", PAM_SUCCESS);

    assert_int_equal(umask(old_umask), 0);
    assert_int_equal(sigprocmask(SIG_SETMASK, &mask_before, &mask_after), 0);
    for(i = 1; i < NSIG; i++)
        assert_int_equal(sigismember(&mask_after, (int)i),
                         sigismember(&block, (int)i) || sigismember(&mask_before, (int)i));
    for(i = 0; i < 6; i++) {
        assert_int_equal(sigaction(sigs[i], &before[i], &after), 0);
        assert_true(after.sa_handler == SIG_IGN);
    }
    probe_field("SigIgn", v, sizeof(v));
    assert_string_equal(v, "0000000000000000");
    probe_field("SigBlk", v, sizeof(v));
    assert_string_equal(v, "0000000000000000");
    probe_field("Umask", v, sizeof(v));
    assert_string_equal(v, "0077");
    assert_probe_hygiene();
}

/* In a forked child: become a setuid-root host run by nobody (real uid and
 * gid nobody, effective uid 0, nobody's groups), run the probe through the
 * module, exit 0 when the stack said PAM_SUCCESS. */
static void setuid_host(void)
{
    struct pamtest_conv_data conv;
    struct pam_testcase tests[] = { pam_test(PAMTEST_ACCOUNT, PAM_SUCCESS) };
    gid_t groups[2] = { 65534, 1001 };

    memset(&conv, 0, sizeof(conv));
    if(setgroups(2, groups) != 0 || setresgid(65534, 65534, 65534) != 0 ||
       setresuid(65534, 0, 0) != 0) {
        perror("becoming a setuid host");
        _exit(2);
    }
    if(run_pamtest("ps-probe", "alice", &conv, tests, NULL) != PAMTEST_ERR_OK ||
       tests[0].op_rv != PAM_SUCCESS) {
        fprintf(stderr, "# setuid host: the stack answered %d\n", tests[0].op_rv);
        _exit(1);
    }
    _exit(0);
}

static void test_setuid_host_runs_helper_as_root(void **state)
{
    char v[256];
    int status;
    pid_t pid;

    (void)state;
    if(geteuid() != 0 || getuid() != 0) {
        /* no way to become a setuid-root host without being root */
        print_message("# needs root (run make check as root): skipped\n");
        skip();
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    assert_true(pid >= 0);
    if(pid == 0)
        setuid_host();
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* real, effective, saved and file-system ids all 0, no groups */
    probe_field("Uid", v, sizeof(v));
    assert_string_equal(v, "0 0 0 0");
    probe_field("Gid", v, sizeof(v));
    assert_string_equal(v, "0 0 0 0");
    probe_field("Groups", v, sizeof(v));
    assert_string_equal(v, "");
    assert_probe_hygiene();
}

static void test_host_without_stdio(void **state)
{
    int save0, save2;

    (void)state;
    /* A daemon may run with 0 and 2 closed: then /dev/null and the pipe
	 * get those numbers, and a careless dup2 loses them. */
    fflush(stderr);
    save0 = fcntl(0, F_DUPFD_CLOEXEC, 10);
    save2 = fcntl(2, F_DUPFD_CLOEXEC, 10);
    assert_true(save0 >= 0 && save2 >= 0);
    close(0);
    close(2);
    account("ps-probe", "alice", PAM_SUCCESS);
    dup2(save0, 0);
    dup2(save2, 2);
    close(save0);
    close(save2);
    assert_probe_hygiene();
}

static void test_no_leaked_descriptors(void **state)
{
    int before, after, i, rc, err;

    (void)state;
    account("planetscale-deprovision", "alice", PAM_SUCCESS); /* warm up */
    before = open_fds();
    for(i = 0; i < 20; i++) {
        set_word(i % 2 ? PS_HELPER_QUEUED : "silent");
        account("planetscale-deprovision", "alice", i % 2 ? PAM_AUTHINFO_UNAVAIL : PAM_SYSTEM_ERR);
        account("ps-expired", "olduser", IGNORED);
        account("ps-expired", "alice", IGNORED);
        session("ps-close", "alice", IGNORED, i % 2 ? PAM_SUCCESS : IGNORED);
        account("ps-missing", "alice", PAM_SYSTEM_ERR);
        account("ps-badexec", "alice", PAM_SYSTEM_ERR);
        account("planetscale-deprovision", "bad\nuser", PAM_USER_UNKNOWN);
    }
    after = open_fds();
    assert_int_equal(before, after);
    /* every child reaped */
    rc = waitpid(-1, NULL, WNOHANG);
    err = errno;
    assert_int_equal(rc, -1);
    assert_int_equal(err, ECHILD);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_service_argv_env, setup),
        cmocka_unit_test_setup(test_service_debug_timeout, setup),
        cmocka_unit_test_setup(test_service_words, setup),
        cmocka_unit_test_setup(test_interlock_service_passed, setup),
        cmocka_unit_test_setup(test_stray_auth_password_lines, setup),
        cmocka_unit_test_setup(test_bad_conf_argument, setup),
        cmocka_unit_test_setup(test_expired_valid_account, setup),
        cmocka_unit_test_setup(test_expired_account_runs_helper, setup),
        cmocka_unit_test_setup(test_expired_today, setup),
        cmocka_unit_test_setup(test_expired_locked_not_expired, setup),
        cmocka_unit_test_setup(test_expired_grace_argument, setup),
        cmocka_unit_test_setup(test_expired_grace_from_config, setup),
        cmocka_unit_test_setup(test_expired_grace_bad_argument, setup),
        cmocka_unit_test_setup(test_expired_no_shadow_entry, setup),
        cmocka_unit_test_setup(test_close_session, setup),
        cmocka_unit_test_setup(test_close_same_handle, setup),
        cmocka_unit_test_setup(test_session_without_on_close, setup),
        cmocka_unit_test_setup(test_close_helper_missing, setup),
        cmocka_unit_test_setup(test_user_with_newline, setup),
        cmocka_unit_test_setup(test_user_overlong, setup),
        cmocka_unit_test_setup(test_user_option_like, setup),
        cmocka_unit_test_setup(test_helper_hangs, setup),
        cmocka_unit_test_setup(test_helper_answers_then_hangs, setup),
        cmocka_unit_test_setup(test_helper_missing, setup),
        cmocka_unit_test_setup(test_helper_unsafe, setup),
        cmocka_unit_test_setup(test_helper_exec_fails, setup),
        cmocka_unit_test_setup(test_sigchld_ignored, setup),
        cmocka_unit_test_setup(test_signals_untouched, setup),
        cmocka_unit_test_setup(test_host_without_stdio, setup),
        cmocka_unit_test_setup(test_host_ignores_signals_and_umask, setup),
        cmocka_unit_test_setup(test_setuid_host_runs_helper_as_root, setup),
        cmocka_unit_test_setup(test_no_leaked_descriptors, setup),
    };

    if(argc > 1 && strcmp(argv[1], PS_HELPER_SUBCOMMAND) == 0)
        return probe(argc, argv);
    if(getenv("PAM_WRAPPER") == NULL || tdir() == NULL)
        return outer(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
