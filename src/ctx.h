/* ctx.h - what one removal carries through the core: its context (the
 * configuration, the log, the client and the queue opened on first use) and
 * the report of its outcome. A header of its own so that the front ends
 * (remove, the sender, retry) share the types without naming each other. */
#ifndef PS_CTX_H
#define PS_CTX_H

#include "api.h"
#include "config.h"
#include "log.h"
#include "queue.h"

struct ps_ctx;
struct ps_report;

/* Hands a recorded entry, locked through lock_fd, to someone else to send
 * (the command passes the sender's hand-off). 0 when taken (rep filled),
 * 1 when not: the caller still holds the lock and sends it itself. */
typedef int (*ps_handoff_fn)(struct ps_ctx *ctx, int lock_fd, const ps_qentry_t *e,
                             struct ps_report *rep);

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
    double deadline;       /* ps_now() value, 0 = none */
    double backoff_base;   /* 0 = the client's default */
    ps_handoff_fn handoff; /* NULL: ps_remove_login sends everything itself */
} ps_ctx_t;

typedef struct ps_report {
    ps_status_t status;
    ps_mapping_t map; /* valid when mapped */
    int mapped;
    long http_status;
    int attempts;
    char message[512]; /* human detail: API message, curl error, queue error */
} ps_report_t;

#endif
