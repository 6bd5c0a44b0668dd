/* util.h - small helpers shared by the module, the command and the tests.
 * No dependency beyond libc: the PAM module links this and nothing else of
 * the core, so that no TLS stack, libconfig or json-c enters a login. */
#ifndef PS_UTIL_H
#define PS_UTIL_H

#include <stddef.h>
#include <sys/types.h>

#define PS_LOGIN_MAX 256 /* LOGIN_NAME_MAX on Linux */
#define PS_ID_MAX    64  /* PlanetScale ids and organization slugs */
#define PS_EMAIL_MAX 254 /* the longest address SMTP allows */

#if defined(__GNUC__)
#define PS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PS_PRINTF(a, b)
#endif

/* Copy `in` to `out` (size outsz, always NUL-terminated) with every control
 * character, backslash, quote, DEL and non-ASCII byte written as \xHH, so that
 * a user-controlled string cannot forge or split a log line. Truncates with
 * "..." when out is too small. Returns out. */
char *ps_escape(const char *in, char *out, size_t outsz);

/* A login we accept from argv, stdin, PAM or a queue entry: 1..PS_LOGIN_MAX
 * bytes, no control character, no space, no '/', ':' or '\\', and not starting
 * with '-'. Returns 1 when valid, 0 otherwise. */
int ps_login_valid(const char *login);

/* Strict allowlist for user ids and organization slugs: 1..PS_ID_MAX bytes
 * of [A-Za-z0-9_.-], not starting with '.' or '-' (so never "." or ".."). */
int ps_id_valid(const char *id);

/* An email address as a user entry may give it: LOCAL@DOMAIN, at most
 * PS_EMAIL_MAX bytes; LOCAL 1..64 bytes of A-Z a-z 0-9 and
 * .!#$%&'*+/=?^_`{|}~- ; DOMAIN dot-separated non-empty labels of A-Z a-z
 * 0-9 and -. Quoted local parts and address literals are not accepted.
 * Returns 1 when valid. */
int ps_email_valid(const char *email);

/* 1 when two emails are equal ignoring ASCII case (whatever the locale),
 * as PlanetScale's CLI compares them. */
int ps_email_equal(const char *a, const char *b);

/* Checks that `path` is a regular file owned by root or by the caller's
 * effective uid and, when `secret` is set, not readable or writable by group
 * or others; when not secret, not writable by group or others. Uses lstat:
 * a symlink is refused. On failure writes a message that says how to fix it
 * ("chmod 600 FILE", "chown root FILE") into err and returns -1. */
int ps_check_file_perms(const char *path, int secret, char *err, size_t errlen);

/* Same check on an already-open descriptor (no TOCTOU). */
int ps_check_fd_perms(int fd, const char *path, int secret, char *err, size_t errlen);

/* What kind of file st_mode is, for messages: "a regular file", "a FIFO",
 * "a directory", "a character device", "a block device", "a socket", "a
 * symbolic link" or "an unknown kind of file". */
const char *ps_file_kind(mode_t mode);

/* Opens `path` for reading without ever blocking on what it is: refuses
 * anything but a regular file before opening it (stat, or lstat when
 * `nofollow`), opens it O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC (plus
 * O_NOFOLLOW when `nofollow`: a symbolic link is refused), checks the open
 * descriptor again with fstat (the file may have been replaced in between)
 * and only then clears O_NONBLOCK. Nothing is read. Returns the descriptor,
 * or -1 with errno set (ELOOP: a symbolic link under `nofollow`; EINVAL: not
 * a regular file) and a message starting "PATH: " in err, e.g. "PATH: not a
 * regular file (a FIFO)" or "PATH: cannot open: No such file or directory".
 * Owner and mode are the caller's to check (ps_check_fd_perms). */
int ps_open_regular(const char *path, int nofollow, char *err, size_t errlen);

/* Formats an error message into err (errlen bytes, always terminated;
 * nothing when err is NULL or errlen 0): the one error setter of the core. */
void ps_seterr(char *err, size_t errlen, const char *fmt, ...) PS_PRINTF(3, 4);

/* Replaces every control character (and DEL) in s with '?', so that a text
 * written as one line (syslog, a protocol line) stays one line. */
void ps_one_line(char *s);

/* Sleeps until ps_now() reaches t (through EINTR); at once when t has
 * passed. */
void ps_sleep_until(double t);

/* Monotonic clock in seconds. */
double ps_now(void);

/* 1 when shadow-style `expire_days` (days since the epoch, -1 = never) has
 * passed at time `now`, exactly as pam_unix decides it. */
int ps_shadow_expired(long expire_days, time_t now);

/* only_expired acts once the shadow expiry date is this many days past
 * (expired_grace_days): an expiry is often temporary (leave, an
 * investigation, a mistake corrected the next working day), and cron and atd
 * run the account stack for a user's jobs within a minute of it. */
#define PS_DEFAULT_EXPIRED_GRACE_DAYS 7
#define PS_GRACE_DAYS_MAX             3650

/* Days since the epoch (UTC) at `now`, as shadow and pam_unix count them. */
long ps_shadow_today(time_t now);

/* 1 when the account is expired at `now` (ps_shadow_expired) and its expiry
 * date is at least grace_days days past: today - expire_days >= grace_days.
 * grace_days 0 is ps_shadow_expired. */
int ps_shadow_due(long expire_days, long grace_days, time_t now);

/* Parses a grace period in days: decimal digits only, 0..PS_GRACE_DAYS_MAX.
 * 0 with *out, or -1. */
int ps_grace_parse(const char *s, long *out);

/* 64-bit FNV-1a of the NUL-separated fields, as 16 lowercase hex chars in
 * out[17]. Used for queue entry names. */
void ps_key_hex(const char *a, const char *b, const char *c, char out[17]);

#endif
