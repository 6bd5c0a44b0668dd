/* remove.h - one removal, end to end: map, record, send, confirm, audit.
 * Shared by `remove`, `pam-helper` and `retry`; knows nothing of argv or PAM. */
#ifndef PS_REMOVE_H
#define PS_REMOVE_H

#include "api.h"
#include "config.h"
#include "log.h"
#include "queue.h"

typedef enum ps_status {
    PS_ST_REMOVED = 0, /* 204 (or confirmed by a concurrent run) */
    PS_ST_ABSENT,      /* 404 */
    PS_ST_UNMAPPED,    /* not in the map, unmapped = "ignore" */
    PS_ST_UNKNOWN,     /* not in the map, unmapped = "error" */
    PS_ST_DRYRUN,      /* --dry-run: nothing sent */
    PS_ST_QUEUED,      /* transient: kept in the queue */
    PS_ST_NOT_QUEUED,  /* transient and --no-queue (or the queue failed) */
    PS_ST_REFUSED,     /* API refused: permanent */
    PS_ST_CONFIG,      /* configuration error */
    PS_ST_INVALID,     /* the login itself is not acceptable */
    PS_ST_ERROR        /* anything else, e.g. could not be queued */
} ps_status_t;

typedef struct ps_ctx {
    const ps_config_t *cfg;
    const ps_log_t *log;
    ps_client_t *client; /* created on first use */
    ps_queue_t *queue;   /* opened on first use */
    int dry_run;
    int no_queue;
    double deadline;     /* ps_now() value, 0 = none */
    double backoff_base; /* 0 = the client's default */
} ps_ctx_t;

typedef struct ps_report {
    ps_status_t status;
    ps_mapping_t map; /* valid when mapped */
    int mapped;
    long http_status;
    int attempts;
    char message[512]; /* human detail: API message, curl error, queue error */
} ps_report_t;

/* Removes one login. Never exits, never prints to stdout. */
ps_status_t ps_remove_login(ps_ctx_t *ctx, const char *login, ps_report_t *rep);

/* Sends one queued entry that the caller holds locked (lock_fd) and settles
 * it: done (204/404), rewritten with attempts+1 (transient), dead-lettered
 * (400/422-class refusal). 401/403 and configuration errors leave it
 * pending. Fills rep (status REMOVED/ABSENT/QUEUED/REFUSED/CONFIG/ERROR);
 * rep must be zeroed or hold the caller's mapping (rep->mapped), which is
 * kept: a mapping taken from e would point into e. */
ps_status_t ps_send_entry(ps_ctx_t *ctx, ps_qentry_t *e, int once, ps_report_t *rep,
                          ps_result_t *res);

/* Get (creating) the client and the queue. */
ps_client_t *ps_ctx_client(ps_ctx_t *ctx, char *err, size_t errlen);
ps_queue_t *ps_ctx_queue(ps_ctx_t *ctx, char *err, size_t errlen);
void ps_ctx_release(ps_ctx_t *ctx);

const char *ps_status_word(ps_status_t st);        /* helper.h words */
int ps_status_exit(ps_status_t st);                /* the design's exit codes */
int ps_status_worse(ps_status_t a, ps_status_t b); /* 1 when a outranks b for the exit code */

#endif
