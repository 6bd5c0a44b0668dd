/* queue.h - the durable spool of removals that are not confirmed yet.
 *
 * Layout of the queue directory (0700, owned by root or the caller):
 *   KEY.json          a live entry, KEY = ps_key_hex(login, org, id), in one
 *                     of two states (its "state" field):
 *                       pending  a transient failure, or not sent yet:
 *                                `retry` sends it with backoff
 *                       held     refused by the API, not confirmed, or a
 *                                configuration problem: waits for a person
 *                                or a changed configuration, with its reason
 *   dead/KEY.json     pending for longer than max_age_days since its first
 *                     real attempt (an entry never sent never ages out)
 *   invalid/NAME      files that failed validation, moved aside, never sent
 *   .tmp-*            temp files during an atomic write (never an entry)
 *   .KEY.json.lock    the per-key lock files (never an entry); ps_queue_lock
 * Every write: temp file 0600, write, fsync, rename, fsync(dir). An entry is
 * deleted only by ps_queue_done(), after the API confirmed the removal, or
 * by ps_queue_drop() on an administrator's explicit command.
 * No secret is ever written into an entry. */
#ifndef PS_QUEUE_H
#define PS_QUEUE_H

#include <stddef.h>
#include <time.h>
#include "recdir.h" /* ps_write_file_atomic */
#include "util.h"

#define PS_QENTRY_MAX 4096 /* an entry file larger than this is invalid */

enum ps_qstate { PS_Q_PENDING = 0, PS_Q_HELD = 1 };

typedef struct ps_qentry {
    char name[32]; /* file name "KEY.json" */
    char login[PS_LOGIN_MAX + 1];
    char organization[PS_ID_MAX + 1];
    char id[PS_ID_MAX + 1];       /* may be "" while an email is not resolved */
    char email[PS_EMAIL_MAX + 1]; /* the user entry's email, "" when it gives an id */
    int delete_passwords;
    int delete_service_tokens;
    long long recorded;      /* unix time of the write-ahead record */
    long long first_attempt; /* unix time of the first real send, 0 = never sent */
    long long last_attempt;  /* unix time, 0 = never tried */
    int attempts;
    char last_error[256]; /* the last failure; for a held entry, why it is held */
    int state;            /* enum ps_qstate */
    long long held_at;    /* unix time it was held, 0 when pending */
    char held_config[17]; /* ps_config_fingerprint() when it was held, "" when pending */
    char trigger[16];     /* what asked for it: remove, pam, reconcile, ... ("" unknown) */
    long long not_before; /* api.spread: no attempt before this unix time, 0 = none */
} ps_qentry_t;

const char *ps_qstate_name(int state); /* "pending" or "held" */

typedef struct ps_queue ps_queue_t;

/* Opens (creating 0700 when missing, with dead/ and invalid/) the queue
 * directory and checks its owner and mode. */
int ps_queue_open(ps_queue_t **q, const char *dir, char *err, size_t errlen);
void ps_queue_close(ps_queue_t *q);
const char *ps_queue_dir(const ps_queue_t *q);

/* Writes (or rewrites) the entry for e->login/organization/id atomically.
 * When an entry with the same key exists, the older recorded time is kept;
 * everything else is taken from e (a caller that keeps history reads the
 * entry first). recorded = now when 0. Fills e->name.
 * Returns 0, or -1 with err (ENOSPC, EIO ...: the caller must fail loudly). */
int ps_queue_put(ps_queue_t *q, ps_qentry_t *e, char *err, size_t errlen);

/* Parses and validates an entry's bytes (strict JSON object, known fields
 * only, right types, ps_login_valid/ps_id_valid). Version 1 entries (no
 * state, first_attempt meaning the record's time) are read as pending
 * entries of version 2. Fuzzed. */
int ps_queue_parse(const char *buf, size_t len, ps_qentry_t *e, char *err, size_t errlen);

/* Serializes an entry as JSON into a malloc'd string. */
char *ps_queue_format(const ps_qentry_t *e);

/* Lists live (dead = 0: pending and held) or dead-letter (dead = 1)
 * entries, oldest record first. Invalid entries (bad JSON, wrong field, not a regular
 * file, a symlink, mode not 0600, wrong owner, too big, name not matching
 * its key) are moved into invalid/ and reported through `on_invalid` (may be
 * NULL) with a reason; they are never returned. *entries is malloc'd. */
typedef void (*ps_queue_invalid_cb)(void *arg, const char *name, const char *reason);
int ps_queue_list(ps_queue_t *q, int dead, ps_qentry_t **entries, size_t *n,
                  ps_queue_invalid_cb on_invalid, void *arg, char *err, size_t errlen);

/* The same, keeping only each entry's name, times and state (for `retry`,
 * which reads an entry again when it locks it): memory stays small however
 * long the queue is. */
typedef struct ps_qref {
    char name[32];
    long long recorded;
    long long first_attempt;
    long long not_before;
    int state;
    char held_config[17];
} ps_qref_t;
int ps_queue_list_refs(ps_queue_t *q, int dead, ps_qref_t **refs, size_t *n,
                       ps_queue_invalid_cb on_invalid, void *arg, char *err, size_t errlen);

/* Per-key locks: a lock file ".KEY.json.lock" beside the entry (never
 * renamed, so a rewrite of the entry keeps it locked), flock LOCK_EX, non
 * blocking or waiting up to `wait` seconds. Whoever sends a key holds its
 * lock from before it records the entry until the entry is settled.
 *
 * ps_queue_lock_key: 0 with *fd locked, 1 busy (another process holds it),
 * -1 on error. The entry may or may not exist.
 *
 * ps_queue_lock: the same, then reads the entry into e: 0 locked and read,
 * 1 busy, 2 gone (completed by someone else; not locked), -1 on error. */
int ps_queue_lock_key(ps_queue_t *q, const char *name, double wait, int *fd, char *err,
                      size_t errlen);
int ps_queue_lock(ps_queue_t *q, const char *name, double wait, int *fd, ps_qentry_t *e, char *err,
                  size_t errlen);

/* Takes over a lock handed over by another process (a descriptor received
 * with SCM_RIGHTS): checks that fd is the current lock file of NAME and
 * that its lock is held through this very open file (flock on the shared
 * open file description), taking it when nobody holds it. 0 adopted, 1 not
 * this entry's lock or held by someone else, -1 on error. */
int ps_queue_adopt_lock(ps_queue_t *q, const char *name, int fd, char *err, size_t errlen);

/* Reads and validates entry NAME: 0, 2 when it does not exist, -1 (err). */
int ps_queue_read(ps_queue_t *q, const char *name, ps_qentry_t *e, char *err, size_t errlen);
/* Releases the lock (closes fd). */
void ps_queue_unlock(int fd);

/* The API confirmed the removal: unlink the (locked) entry, fsync the dir. */
int ps_queue_done(ps_queue_t *q, const char *name, char *err, size_t errlen);

/* An administrator's `queue drop NAME`: deletes live entry NAME (taking its
 * lock, waiting up to `wait` seconds) or dead/NAME, copying what was
 * dropped into *e. 0 dropped, 1 busy, 2 no such entry, -1 (err). */
int ps_queue_drop(ps_queue_t *q, const char *name, double wait, ps_qentry_t *e, char *err,
                  size_t errlen);

/* Brings dead/NAME back as a live pending entry (a new `remove` of the same
 * login, `retry --held`): its first attempt starts again (first_attempt 0,
 * so it ages from its next real attempt). Called with the key locked.
 * 0 moved, 2 no dead entry, -1 (err). */
int ps_queue_revive(ps_queue_t *q, const char *name, char *err, size_t errlen);

/* Moves a (locked) entry to dead/ and fsyncs both directories. */
int ps_queue_dead_letter(ps_queue_t *q, const char *name, char *err, size_t errlen);

/* An entry whose user entry gives an email instead of an id carries that
 * email and is keyed by it, KEY = ps_key_hex(login, org, email), from the
 * write-ahead on, whether or not the id is known yet (an email contains an
 * '@', an id never does). Its id is "" until the email is resolved
 * (remove.c) and is then written into the entry. */
void ps_queue_entry_name(const ps_qentry_t *e, char out[32]);

/* Entry name for a key triple: "KEY.json". */
void ps_queue_name(const char *login, const char *organization, const char *id, char out[32]);

#endif
