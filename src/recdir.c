/* recdir.c - a directory of small records (see recdir.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* renameat2, RENAME_NOREPLACE */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "recdir.h"
#include "util.h"

#define TMP_PREFIX   ".tmp-"
#define LOCK_POLL_NS 20000000L /* 20 ms between lock attempts */

static int owner_ok(const struct stat *st)
{
    return st->st_uid == 0 || st->st_uid == geteuid();
}

static void close_keep_errno(int fd)
{
    int saved = errno;

    if(fd >= 0)
        close(fd);
    errno = saved;
}

int ps_recdir_sync(int fd)
{
    if(fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
        return -1;
    return 0;
}

int ps_recdir_check(int fd, const char *dir, char *err, size_t errlen)
{
    struct stat st;

    if(fstat(fd, &st) != 0) {
        ps_seterr(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if(!S_ISDIR(st.st_mode)) {
        ps_seterr(err, errlen, "%s: not a directory", dir);
        return -1;
    }
    if(!owner_ok(&st)) {
        ps_seterr(err, errlen, "%s: owned by uid %lu, must be owned by root; fix: chown root %s",
                  dir, (unsigned long)st.st_uid, dir);
        return -1;
    }
    if(st.st_mode & (S_IRWXG | S_IRWXO)) {
        ps_seterr(err, errlen, "%s: accessible by group or others (mode %04o); fix: chmod 700 %s",
                  dir, (unsigned)(st.st_mode & 07777), dir);
        return -1;
    }
    return 0;
}

/* Strips trailing slashes ("/var/spool/q/" -> "/var/spool/q"): a trailing
 * slash would make the kernel follow a symlink despite O_NOFOLLOW. */
static void clean_path(const char *in, char *out, size_t outsz)
{
    size_t len;

    snprintf(out, outsz, "%s", in);
    len = strlen(out);
    while(len > 1 && out[len - 1] == '/')
        out[--len] = '\0';
}

static int make_dir(const char *path, char *err, size_t errlen)
{
    if(mkdir(path, 0700) != 0 && errno != EEXIST) {
        ps_seterr(err, errlen, "%s: cannot create directory: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int ps_recdir_open(const char *path, int create, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    struct stat st;
    int fd;

    if(!path || !path[0]) {
        ps_seterr(err, errlen, "directory: empty path");
        return -1;
    }
    clean_path(path, dir, sizeof(dir));
    if(create && mkdir(dir, 0700) != 0 && errno == ENOENT && create > 1) {
        /* the parent too (the default spool directory), never further up */
        char parent[PATH_MAX];
        char *slash;

        snprintf(parent, sizeof(parent), "%s", dir);
        slash = strrchr(parent, '/');
        if(slash && slash != parent) {
            *slash = '\0';
            if(make_dir(parent, err, errlen) != 0)
                return -1;
        }
    }
    if(create && make_dir(dir, err, errlen) != 0)
        return -1;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if(fd < 0) {
        if(errno == ENOENT && !create)
            return -2;
        if(errno == ELOOP || (errno == ENOTDIR && lstat(dir, &st) == 0 && S_ISLNK(st.st_mode)))
            ps_seterr(err, errlen, "%s: is a symbolic link; name the directory itself", dir);
        else
            ps_seterr(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if(ps_recdir_check(fd, dir, err, errlen) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int ps_recdir_open_sub(int dfd, const char *dir, const char *name, char *err, size_t errlen)
{
    char where[PATH_MAX];
    int fd;

    snprintf(where, sizeof(where), "%s/%s", dir, name);
    if(mkdirat(dfd, name, 0700) != 0 && errno != EEXIST) {
        ps_seterr(err, errlen, "%s: cannot create directory: %s", where, strerror(errno));
        return -1;
    }
    fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if(fd < 0) {
        if(errno == ELOOP || errno == ENOTDIR)
            ps_seterr(err, errlen,
                      "%s: not a directory (a symbolic link?); remove it and run again", where);
        else
            ps_seterr(err, errlen, "%s: %s", where, strerror(errno));
        return -1;
    }
    if(ps_recdir_check(fd, where, err, errlen) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads at most max + 1 bytes from the start of fd into buf (max + 1 big).
 * Returns the length, or -1 with errno. */
static ssize_t read_all(int fd, char *buf, size_t max)
{
    size_t got = 0;

    while(got <= max) {
        ssize_t r = pread(fd, buf + got, max + 1 - got, (off_t)got);

        if(r < 0) {
            if(errno == EINTR)
                continue;
            return -1;
        }
        if(r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* Errors of this process, not of the file. */
static int resource_errno(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOMEM || e == EINTR || e == EIO || e == ENOBUFS;
}

int ps_recdir_read(int dfd, const char *name, size_t max, ps_recdir_parse_fn parse, void *arg,
                   void *out, char *why, size_t whylen)
{
    struct stat st;
    ssize_t len;
    char *buf;
    int fd, rv = 1;

    fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if(fd < 0) {
        if(errno == ENOENT)
            return 2;
        if(errno == ELOOP) {
            ps_seterr(why, whylen, "a symbolic link, not a regular file");
            return 1;
        }
        ps_seterr(why, whylen, "%s: cannot open: %s", name, strerror(errno));
        return resource_errno(errno) ? -1 : 1;
    }
    if(fstat(fd, &st) != 0) {
        ps_seterr(why, whylen, "%s: cannot stat: %s", name, strerror(errno));
        rv = resource_errno(errno) ? -1 : 1;
        close(fd);
        return rv;
    }
    if(!S_ISREG(st.st_mode)) {
        ps_seterr(why, whylen, "not a regular file");
        close(fd);
        return 1;
    }
    if(!owner_ok(&st)) {
        ps_seterr(why, whylen, "owned by uid %lu, not root", (unsigned long)st.st_uid);
        close(fd);
        return 1;
    }
    if((st.st_mode & 07777) != 0600) {
        ps_seterr(why, whylen, "mode %04o, expected 0600", (unsigned)(st.st_mode & 07777));
        close(fd);
        return 1;
    }
    if(st.st_size < 0 || (size_t)st.st_size > max) {
        ps_seterr(why, whylen, "larger than %zu bytes", max);
        close(fd);
        return 1;
    }
    buf = malloc(max + 1);
    if(!buf) {
        ps_seterr(why, whylen, "%s: out of memory", name);
        close(fd);
        return -1;
    }
    len = read_all(fd, buf, max);
    if(len < 0) {
        ps_seterr(why, whylen, "%s: cannot read: %s", name, strerror(errno));
        rv = resource_errno(errno) ? -1 : 1;
    } else if((size_t)len > max) {
        ps_seterr(why, whylen, "larger than %zu bytes", max);
    } else if(parse(arg, name, buf, (size_t)len, out, why, whylen) == 0) {
        rv = 0;
    }
    free(buf);
    close(fd);
    return rv;
}

int ps_recdir_quarantine(int from_fd, const char *name, int invalid_fd)
{
    char dst[NAME_MAX + 1];
    int i;

    for(i = 0; i < 1000; i++) {
        struct stat st;

        if(i == 0)
            snprintf(dst, sizeof(dst), "%s", name);
        else
            snprintf(dst, sizeof(dst), "%.240s.%d", name, i);
        if(renameat2(from_fd, name, invalid_fd, dst, RENAME_NOREPLACE) == 0)
            goto done;
        if(errno == EEXIST)
            continue;
        if(errno != EINVAL && errno != ENOSYS)
            return -1;
        /* a file system without RENAME_NOREPLACE: check, then rename */
        if(fstatat(invalid_fd, dst, &st, AT_SYMLINK_NOFOLLOW) == 0)
            continue;
        if(renameat(from_fd, name, invalid_fd, dst) == 0)
            goto done;
        return -1;
    }
    errno = EEXIST;
    return -1;
done:
    ps_recdir_sync(invalid_fd);
    ps_recdir_sync(from_fd);
    return 0;
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);

    return ls > lx && strcmp(s + ls - lx, suffix) == 0;
}

/* Moves a bad file aside and reports it; vanished files are not reported. */
static void set_aside(int dfd, int invalid_fd, const char *name, const char *why,
                      const ps_recdir_list_opts_t *o)
{
    char msg[600];
    int own = -1;

    if(invalid_fd < 0) {
        if(mkdirat(dfd, PS_RECDIR_INVALID, 0700) == 0 || errno == EEXIST)
            own = openat(dfd, PS_RECDIR_INVALID, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        invalid_fd = own;
    }
    if(invalid_fd < 0 || ps_recdir_quarantine(dfd, name, invalid_fd) != 0) {
        if(errno == ENOENT && invalid_fd >= 0) {
            close_keep_errno(own);
            return;
        }
        snprintf(msg, sizeof(msg), "%.400s (could not move it to %s/: %s)", why, PS_RECDIR_INVALID,
                 strerror(errno));
        why = msg;
    }
    close_keep_errno(own);
    if(o->on_invalid)
        o->on_invalid(o->invalid_arg, name, why);
}

int ps_recdir_list(int dfd, const char *dir, const ps_recdir_list_opts_t *o, void **out, size_t *n,
                   char *err, size_t errlen)
{
    char *list = NULL, *elem = NULL;
    size_t count = 0, cap = 0;
    struct dirent *de;
    DIR *d = NULL;
    int fd, rv = -1;

    *out = NULL;
    *n = 0;
    /* a fresh open file description: the caller's offset stays untouched */
    fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if(fd < 0 || !(d = fdopendir(fd))) {
        ps_seterr(err, errlen, "%s: %s", dir, strerror(errno));
        close_keep_errno(fd);
        return -1;
    }
    elem = malloc(o->size);
    if(!elem) {
        ps_seterr(err, errlen, "%s: out of memory", dir);
        goto out;
    }
    for(;;) {
        char why[512];
        struct stat st;
        int r;

        errno = 0;
        de = readdir(d);
        if(!de) {
            if(errno) {
                ps_seterr(err, errlen, "%s: readdir: %s", dir, strerror(errno));
                goto out;
            }
            break;
        }
        if(de->d_name[0] == '.')
            continue; /* ".", "..", temp files, locks */
        if(fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue; /* vanished */
        if(S_ISDIR(st.st_mode))
            continue; /* dead/, invalid/ ... */
        if(!has_suffix(de->d_name, o->suffix) || strlen(de->d_name) >= o->name_max) {
            set_aside(dfd, o->invalid_fd, de->d_name, "not a record name", o);
            continue;
        }
        memset(elem, 0, o->size);
        r = ps_recdir_read(dfd, de->d_name, o->max, o->parse, o->parse_arg, elem, why, sizeof(why));
        if(r < 0) {
            ps_seterr(err, errlen, "%s/%s", dir, why);
            goto out;
        }
        if(r == 2)
            continue;
        if(r == 1) {
            set_aside(dfd, o->invalid_fd, de->d_name, why, o);
            continue;
        }
        if(count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char *nl = realloc(list, ncap * o->size);

            if(!nl) {
                ps_seterr(err, errlen, "%s: out of memory", dir);
                goto out;
            }
            list = nl;
            cap = ncap;
        }
        memcpy(list + count * o->size, elem, o->size);
        count++;
    }
    if(count && o->cmp)
        qsort(list, count, o->size, o->cmp);
    *out = list;
    *n = count;
    list = NULL;
    rv = 0;
out:
    free(elem);
    free(list);
    closedir(d);
    return rv;
}

int ps_recdir_flock(int fd, double deadline)
{
    for(;;) {
        struct timespec ts = { 0, LOCK_POLL_NS };

        if(flock(fd, LOCK_EX | LOCK_NB) == 0)
            return 0;
        if(errno == EINTR)
            continue;
        if(errno != EWOULDBLOCK)
            return -1;
        if(ps_now() >= deadline)
            return 1;
        nanosleep(&ts, NULL);
    }
}

static int write_all(int fd, const char *buf, size_t len)
{
    while(len) {
        ssize_t w = write(fd, buf, len);

        if(w < 0) {
            if(errno == EINTR)
                continue;
            return -1;
        }
        if(w == 0) {
            errno = EIO;
            return -1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Creates ".tmp-TAG-XXXXXX" 0600 with O_EXCL; fills tmp. */
static int open_temp(int dfd, const char *tag, char *tmp, size_t tmpsz)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char rnd[6];
    int tries, fd;
    size_t i;

    for(tries = 0; tries < 100; tries++) {
        char sfx[sizeof(rnd) + 1];

        if(getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
            /* no entropy yet (early boot): uniqueness is all we need */
            struct timespec ts;
            unsigned long long v;

            clock_gettime(CLOCK_REALTIME, &ts);
            v = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)getpid() << 20) ^
                ((unsigned long long)tries << 40);
            for(i = 0; i < sizeof(rnd); i++)
                rnd[i] = (unsigned char)(v >> (i * 8));
        }
        for(i = 0; i < sizeof(rnd); i++)
            sfx[i] = chars[rnd[i] % (sizeof(chars) - 1)];
        sfx[sizeof(rnd)] = '\0';
        snprintf(tmp, tmpsz, TMP_PREFIX "%s-%s", tag, sfx);
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if(fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}

int ps_write_file_atomic(int dfd, const char *dir, const char *name, const char *data, char *err,
                         size_t errlen)
{
    char tmp[NAME_MAX + 1];
    char tag[17];
    int fd = -1;
    int have_tmp = 0;
    int rv = -1;

    /* the temp name carries the first 16 characters of the name */
    snprintf(tag, sizeof(tag), "%s", name);
    if(strchr(tag, '.'))
        *strchr(tag, '.') = '\0';
    fd = open_temp(dfd, tag, tmp, sizeof(tmp));
    if(fd < 0) {
        ps_seterr(err, errlen, "%s/" TMP_PREFIX "%s-*: %s", dir, tag, strerror(errno));
        goto out;
    }
    have_tmp = 1;
    /* exactly 0600 whatever the umask */
    if(fchmod(fd, 0600) != 0) {
        ps_seterr(err, errlen, "%s/%s: chmod: %s", dir, tmp, strerror(errno));
        goto out;
    }
    if(write_all(fd, data, strlen(data)) != 0) {
        ps_seterr(err, errlen, "%s/%s: write: %s", dir, tmp, strerror(errno));
        goto out;
    }
    if(fsync(fd) != 0) {
        ps_seterr(err, errlen, "%s/%s: fsync: %s", dir, tmp, strerror(errno));
        goto out;
    }
    if(close(fd) != 0) {
        fd = -1;
        ps_seterr(err, errlen, "%s/%s: close: %s", dir, tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if(renameat(dfd, tmp, dfd, name) != 0) {
        ps_seterr(err, errlen, "%s/%s: rename to %s: %s", dir, tmp, name, strerror(errno));
        goto out;
    }
    have_tmp = 0;
    if(ps_recdir_sync(dfd) != 0) {
        /* the file is in place but may not survive a crash: fail loudly */
        ps_seterr(err, errlen, "%s: fsync: %s", dir, strerror(errno));
        goto out;
    }
    rv = 0;
out:
    close_keep_errno(fd);
    if(have_tmp)
        unlinkat(dfd, tmp, 0);
    return rv;
}
