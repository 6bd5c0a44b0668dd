/* recdir.h - a directory of small records, one file each: the storage under
 * the spool (queue.c) and the unresolved records (unresolved.c).
 *
 * The rules every such directory follows:
 * - the directory is a real directory (never followed through a symlink),
 *   owned by root or the caller, with no access for group or others;
 * - a record is a regular 0600 file owned by root or the caller, at most
 *   `max` bytes, read without blocking and without following a symlink;
 * - a write is a temp file (".tmp-*"), fsync, rename, fsync of the
 *   directory;
 * - a file that is not a valid record is moved aside into invalid/, never
 *   replacing anything there, and reported; a file that cannot be read for
 *   a reason of this process (too many open files, no memory) is an error
 *   of the caller, never a reason to move it;
 * - dot-files (temp and lock files) and subdirectories are never records.
 * Everything after the directory is opened goes through its descriptor. */
#ifndef PS_RECDIR_H
#define PS_RECDIR_H

#include <stddef.h>

#define PS_RECDIR_INVALID "invalid"

/* Opens directory `path` (O_NOFOLLOW; trailing slashes ignored) and checks
 * it. create: 0 never, 1 the last component (0700), 2 its parent too.
 * Returns the descriptor; -2 when it does not exist and !create; -1 with
 * err, which says how to fix it. */
int ps_recdir_open(const char *path, int create, char *err, size_t errlen);

/* The same for subdirectory `name` of dfd, created 0700 when missing; `dir`
 * names dfd in messages. */
int ps_recdir_open_sub(int dfd, const char *dir, const char *name, char *err, size_t errlen);

/* Checks an open directory: owner root or the caller, no group/other
 * access. 0, or -1 with err. */
int ps_recdir_check(int fd, const char *dir, char *err, size_t errlen);

/* What a record's bytes are checked with: fills *out from buf (len bytes,
 * not NUL-terminated) read from file `name`. 0 valid, -1 invalid (why). */
typedef int (*ps_recdir_parse_fn)(void *arg, const char *name, const char *buf, size_t len,
                                  void *out, char *why, size_t whylen);

/* Reads record `name` of dfd under the rules above and parses it into out.
 * 0 valid; 1 not a valid record (why); 2 no such file; -1 this process could
 * not read it (why): EMFILE, ENFILE, ENOMEM, EINTR, EIO. */
int ps_recdir_read(int dfd, const char *name, size_t max, ps_recdir_parse_fn parse, void *arg,
                   void *out, char *why, size_t whylen);

/* Moves `name` of from_fd into the directory invalid_fd, never replacing a
 * file there ("NAME", then "NAME.1", "NAME.2", ...), with RENAME_NOREPLACE
 * or, where the file system does not have it, a check and a rename; both
 * directories synced. 0, or -1 with errno (ENOENT: it vanished). */
int ps_recdir_quarantine(int from_fd, const char *name, int invalid_fd);

/* Reports a record moved aside (name, why); arg is the caller's. */
typedef void (*ps_recdir_invalid_fn)(void *arg, const char *name, const char *why);

typedef struct ps_recdir_list_opts {
    const char *suffix;       /* a record's name ends with it (".json") */
    size_t name_max;          /* and is shorter than this */
    size_t max;               /* bytes of one record */
    size_t size;              /* bytes of one listed element */
    ps_recdir_parse_fn parse; /* fills one element */
    void *parse_arg;
    int (*cmp)(const void *, const void *); /* the order of the list */
    int invalid_fd;                         /* where invalid files go; -1: dfd's invalid/ */
    ps_recdir_invalid_fn on_invalid;        /* may be NULL */
    void *invalid_arg;
} ps_recdir_list_opts_t;

/* Lists the records of dfd (`dir` for messages): every file but dot-files
 * and directories, read and parsed with ps_recdir_read; invalid ones are
 * moved aside and reported, never returned. *out is malloc'd (*n elements,
 * sorted). 0, or -1 with err (a read error of this process stops it: the
 * file stays where it is). */
int ps_recdir_list(int dfd, const char *dir, const ps_recdir_list_opts_t *o, void **out, size_t *n,
                   char *err, size_t errlen);

/* flock(LOCK_EX) on fd, polling every 20 ms until `deadline` (a ps_now()
 * time; 0 or past: one try). 0 locked, 1 busy, -1 error (errno). */
int ps_recdir_flock(int fd, double deadline);

/* The atomic write: temp file ".tmp-NAME16-XXXXXX" 0600 in dfd, write,
 * fsync, rename to `name`, fsync dfd. `dir` is for messages. 0, or -1 with
 * err (ENOSPC, EIO ...: the caller must fail loudly). */
int ps_write_file_atomic(int dfd, const char *dir, const char *name, const char *data, char *err,
                         size_t errlen);

/* fsync of a directory; a file system that cannot (EINVAL, EROFS) is not an
 * error. 0, or -1 with errno. */
int ps_recdir_sync(int fd);

#endif
