/* unresolved.h - removals asked for while the configuration could not be
 * loaded.
 *
 * When `remove` or the PAM helper cannot load its configuration, it cannot
 * map the login to a PlanetScale user, but the account is already gone (the
 * userdel-post.d hook runs after userdel). Dropping the request would leave a
 * live membership behind, so the login is recorded here instead, with the
 * configuration path that failed and, for the PAM helper, the service and
 * mode. `retry`, once that configuration loads, maps each record: a mapped
 * login becomes an ordinary queue entry (then drained like any other), an
 * unmapped one (or a service outside pam_services) is dropped with a log line.
 *
 * The directory is fixed at build time, PS_UNRESOLVED_DIR (the default queue
 * directory's unresolved/), since the configuration that would name another
 * one is the thing that failed; PS_UNRESOLVED_ENV overrides it (tests, a
 * relocated install). Same rules as the queue: 0700 directory owned by root
 * or the caller, 0600 files written atomically, no secret in a record. */
#ifndef PS_UNRESOLVED_H
#define PS_UNRESOLVED_H

#include <stddef.h>
#include "remove.h"

#define PS_UNRESOLVED_DIR      PS_DEFAULT_QUEUE_DIR "/unresolved"
#define PS_UNRESOLVED_ENV      "PLANETSCALE_DEPROVISION_UNRESOLVED_DIR"
#define PS_UNRESOLVED_PATH_MAX 1024

/* The local account when the login was recorded (what resolution checks). */
enum ps_account { PS_ACCOUNT_UNKNOWN = 0, PS_ACCOUNT_ABSENT, PS_ACCOUNT_PRESENT };

typedef struct ps_unresolved {
    char name[32]; /* file name "KEY.json" or "KEY-N.json" */
    char login[PS_LOGIN_MAX + 1];
    char config[PS_UNRESOLVED_PATH_MAX]; /* the configuration that failed */
    char service[PS_LOGIN_MAX + 1];      /* PAM service, "" from the command */
    char mode[16];                       /* PS_MODE_*, "" from the command */
    long long recorded;                  /* unix time of the first record */
    int account;                         /* enum ps_account, when recorded */
    long long uid;                       /* the account's uid when present, else -1 */
    long long expire;                    /* shadow expiry day when recorded, -1: none */
    long long held_at;                   /* 0, or when resolution held it */
    char held_reason[256];               /* why it is held, "" when not */
} ps_unresolved_t;

/* What NSS says of LOGIN now: PS_ACCOUNT_PRESENT (and *uid), _ABSENT (a
 * definite "no such user": getpwnam_r returned 0 with no result), or -1 on
 * any lookup error (a directory that does not answer is not "absent"). */
int ps_account_state(const char *login, long long *uid);

/* The shadow expiry day of LOGIN (-1: none, or no shadow entry), or -2 when
 * it cannot be read. */
long long ps_account_expire(const char *login);

/* The directory in use: $PS_UNRESOLVED_ENV when set and absolute, else
 * PS_UNRESOLVED_DIR. */
const char *ps_unresolved_dir(void);

/* The path under which records for configuration `path` are kept and
 * matched: realpath() when it resolves, else the path as given (NULL means
 * the default configuration). out must hold PS_UNRESOLVED_PATH_MAX bytes. */
void ps_unresolved_config_key(const char *path, char *out);

/* Records u (login, config, service, mode; recorded = now when 0) in dir,
 * creating dir (and its parent) 0700 when missing, with the state of the
 * local account now (account, uid, and for PS_MODE_EXPIRED the expiry day).
 * A record that already exists for the same login, configuration, service
 * and mode is kept (it has the older time); a different record under the
 * same name (a hash collision) never hides this one: it gets the next free
 * name KEY-N.json. Fills u->name. 0, or -1 with err: the caller must then
 * say loudly that nothing was kept. */
int ps_unresolved_record(const char *dir, ps_unresolved_t *u, char *err, size_t errlen);

/* Strict parse of a record's bytes (known fields only, valid login, absolute
 * config path, known mode). Fuzzed through the unit tests. */
int ps_unresolved_parse(const char *buf, size_t len, ps_unresolved_t *u, char *err, size_t errlen);

/* Lists the records of dir, oldest first (*n = 0 when dir does not exist).
 * A file that is not a valid record is moved to dir/invalid/ and counted in
 * *invalid (may be NULL). *out is malloc'd. 0, or -1 with err. */
int ps_unresolved_list(const char *dir, ps_unresolved_t **out, size_t *n, size_t *invalid,
                       char *err, size_t errlen);

typedef struct ps_resolve_stats {
    size_t queued;  /* mapped: now an ordinary queue entry */
    size_t dropped; /* not mapped, service not in pam_services, or no longer expired */
    size_t held;    /* the account is not in the state it was recorded in */
    size_t other;   /* recorded for another configuration: left alone */
    size_t left;    /* could not be resolved now (busy, queue error) */
    size_t invalid; /* not a valid record: moved to invalid/ */
} ps_resolve_stats_t;

/* Resolves, under ctx->cfg, the records of dir made for this configuration.
 * First the local account is checked against the record: a login absent
 * when recorded that exists now (or present with another uid) is a reused
 * name: the record is held with that reason and never sent (only `queue
 * drop` removes it); an only_expired record whose account is no longer
 * expired is dropped (the trigger is gone); an NSS error leaves the record
 * for the next run. Then each mapped login is written into ctx's queue
 * (recorded at the record's time, never sent yet) before the record is
 * deleted, so a crash in between only repeats the work. Takes an exclusive lock on dir for the whole pass; when
 * another process holds it, does nothing and returns 1. 0 done (see st), -1
 * with err when dir cannot be used. */
int ps_unresolved_resolve(ps_ctx_t *ctx, const char *dir, ps_resolve_stats_t *st, char *err,
                          size_t errlen);

/* `queue drop NAME` of a record: 0 dropped (*u filled), 2 none, -1 (err). */
int ps_unresolved_drop(const char *dir, const char *name, ps_unresolved_t *u, char *err,
                       size_t errlen);

#endif
