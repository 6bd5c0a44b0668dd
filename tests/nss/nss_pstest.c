/* nss_pstest.c - a test-only NSS module, libnss_pstest.so.2, for the
 * "passwd" database: it answers getpwnam_r from a passwd-format file and,
 * on request, fails the way a directory service does. Never installed.
 *
 * Use it in a private mount namespace, with an nsswitch.conf of its own
 * bind-mounted over /etc/nsswitch.conf (`passwd: files pstest`) and
 * LD_LIBRARY_PATH naming the directory that holds libnss_pstest.so.2
 * (tests/integration/nss.py does that).
 *
 * Environment:
 *   PS_NSS_PSTEST_PASSWD  the passwd-format file it answers from (read once
 *                         per process; a missing file is an empty database)
 *   PS_NSS_PSTEST_FAIL    MODE or MODE:LOGIN,LOGIN,...: fail every lookup,
 *                         or only those of the listed logins, with
 *     unavail-enoent   NSS_STATUS_UNAVAIL, errno ENOENT: what sssd's client
 *                      answers when its socket is missing (sssd stopped)
 *     unavail-eio      NSS_STATUS_UNAVAIL, errno EIO
 *     tryagain-erange  NSS_STATUS_TRYAGAIN, errno ERANGE ("buffer too small",
 *                      whatever the buffer)
 *     tryagain-eagain  NSS_STATUS_TRYAGAIN, errno EAGAIN
 *     notfound         NSS_STATUS_NOTFOUND: the directory forgot everyone
 *   PS_NSS_PSTEST_LOG     a file to which every lookup appends "LOGIN\n"
 *
 * A module that is not installed at all is the nsswitch.conf line without
 * LD_LIBRARY_PATH.
 *
 * Global state: the loaded file, guarded by a mutex. It is a test module. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <nss.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pw_rec {
    char *line; /* the file's line, split in place: name, passwd, uid, gid, gecos, dir, shell */
    char *f[7];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct pw_rec *recs;
static size_t nrecs;
static int loaded;

static int rec_cmp(const void *a, const void *b)
{
    return strcmp(((const struct pw_rec *)a)->f[0], ((const struct pw_rec *)b)->f[0]);
}

/* Splits a passwd line into its seven fields; 0 or -1. */
static int split(char *line, char *f[7])
{
    int i;

    for(i = 0; i < 7; i++) {
        char *c = i < 6 ? strchr(line, ':') : NULL;

        f[i] = line;
        if(i < 6) {
            if(!c)
                return -1;
            *c = '\0';
            line = c + 1;
        }
    }
    return f[0][0] ? 0 : -1;
}

static void load(void)
{
    const char *path = getenv("PS_NSS_PSTEST_PASSWD");
    char *line = NULL;
    size_t cap = 0, alloc = 0;
    ssize_t len;
    FILE *fp;

    loaded = 1;
    if(!path || !(fp = fopen(path, "re")))
        return;
    while((len = getline(&line, &cap, fp)) != -1) {
        struct pw_rec r;

        if(len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        r.line = strdup(line);
        if(!r.line || split(r.line, r.f) != 0) {
            free(r.line);
            continue;
        }
        if(nrecs == alloc) {
            struct pw_rec *n = realloc(recs, (alloc ? alloc * 2 : 64) * sizeof(*recs));

            if(!n) {
                free(r.line);
                break;
            }
            recs = n;
            alloc = alloc ? alloc * 2 : 64;
        }
        recs[nrecs++] = r;
    }
    free(line);
    fclose(fp);
    if(nrecs)
        qsort(recs, nrecs, sizeof(*recs), rec_cmp);
}

/* glibc unloads NSS modules at exit under valgrind (__libc_freeres): free
 * what load() kept, or it shows as lost in every test that runs the command
 * through this module under valgrind. */
__attribute__((destructor)) static void unload(void)
{
    size_t i;

    for(i = 0; i < nrecs; i++)
        free(recs[i].line);
    free(recs);
    recs = NULL;
    nrecs = 0;
    loaded = 0;
}

/* The failure asked for this login, or NULL. */
static const char *failure_for(const char *name)
{
    const char *spec = getenv("PS_NSS_PSTEST_FAIL");
    const char *colon, *p;
    size_t nlen = strlen(name);

    if(!spec || !*spec)
        return NULL;
    colon = strchr(spec, ':');
    if(!colon)
        return spec;
    for(p = colon + 1; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if(len == nlen && strncmp(p, name, len) == 0)
            return spec;
        if(!end)
            break;
        p = end + 1;
    }
    return NULL;
}

static int mode_is(const char *spec, const char *mode)
{
    size_t len = strlen(mode);

    return strncmp(spec, mode, len) == 0 && (spec[len] == '\0' || spec[len] == ':');
}

static void log_lookup(const char *name)
{
    const char *path = getenv("PS_NSS_PSTEST_LOG");
    int fd;

    if(!path || (fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0)
        return;
    if(write(fd, name, strlen(name)) < 0 || write(fd, "\n", 1) < 0) {
        /* a test log: nothing to do */
    }
    close(fd);
}

/* Copies s into the caller's buffer; NULL when it does not fit. */
static char *put(const char *s, char **buf, size_t *left)
{
    size_t len = strlen(s) + 1;
    char *out = *buf;

    if(len > *left)
        return NULL;
    memcpy(out, s, len);
    *buf += len;
    *left -= len;
    return out;
}

enum nss_status _nss_pstest_getpwnam_r(const char *name, struct passwd *pwd, char *buf,
                                       size_t buflen, int *errnop);

enum nss_status _nss_pstest_getpwnam_r(const char *name, struct passwd *pwd, char *buf,
                                       size_t buflen, int *errnop)
{
    struct pw_rec key, *r;
    const char *fail;
    enum nss_status st = NSS_STATUS_NOTFOUND;

    log_lookup(name);
    if((fail = failure_for(name)) != NULL) {
        if(mode_is(fail, "unavail-enoent")) {
            *errnop = ENOENT;
            return NSS_STATUS_UNAVAIL;
        }
        if(mode_is(fail, "unavail-eio")) {
            *errnop = EIO;
            return NSS_STATUS_UNAVAIL;
        }
        if(mode_is(fail, "tryagain-erange")) {
            *errnop = ERANGE;
            return NSS_STATUS_TRYAGAIN;
        }
        if(mode_is(fail, "tryagain-eagain")) {
            *errnop = EAGAIN;
            return NSS_STATUS_TRYAGAIN;
        }
        if(mode_is(fail, "notfound"))
            return NSS_STATUS_NOTFOUND;
    }

    pthread_mutex_lock(&lock);
    if(!loaded)
        load();
    memset(&key, 0, sizeof(key));
    key.f[0] = (char *)(uintptr_t)name;
    r = nrecs ? bsearch(&key, recs, nrecs, sizeof(*recs), rec_cmp) : NULL;
    if(r) {
        char *b = buf;
        size_t left = buflen;

        pwd->pw_name = put(r->f[0], &b, &left);
        pwd->pw_passwd = put(r->f[1], &b, &left);
        pwd->pw_gecos = put(r->f[4], &b, &left);
        pwd->pw_dir = put(r->f[5], &b, &left);
        pwd->pw_shell = put(r->f[6], &b, &left);
        pwd->pw_uid = (uid_t)strtoul(r->f[2], NULL, 10);
        pwd->pw_gid = (gid_t)strtoul(r->f[3], NULL, 10);
        if(!pwd->pw_name || !pwd->pw_passwd || !pwd->pw_gecos || !pwd->pw_dir || !pwd->pw_shell) {
            *errnop = ERANGE;
            st = NSS_STATUS_TRYAGAIN;
        } else {
            st = NSS_STATUS_SUCCESS;
        }
    }
    pthread_mutex_unlock(&lock);
    return st;
}
