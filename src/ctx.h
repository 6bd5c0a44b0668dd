/* ctx.h - what one removal carries through the core: its context (the
 * configuration, the log, the client and the queue opened on first use) and
 * the report of its outcome. A header of its own so that the front ends
 * (remove, the sender, retry) share the types without naming each other. */
#ifndef PS_CTX_H
#define PS_CTX_H

#include "api.h"
#include "config.h"
#include "log.h"
#include "outcome.h"
#include "queue.h"

/* How long a successful read of an organization's member list stands as
 * proof that this credential can see that organization, so that a 404 for
 * a member of it means "not a member" (remove.c). Short on purpose: the
 * proof goes stale only if someone changes the token's access on
 * PlanetScale's side, and a stale proof would settle an unconfirmed removal
 * as done; ten minutes covers a burst of removals (a mass offboarding, one
 * drain) with one probe per organization. Kept in memory only, per process,
 * and dropped with the context (a reloaded configuration starts afresh). */
#define PS_PROBE_TTL   600.0
#define PS_PROBE_SLOTS 8

struct ps_ctx;
struct ps_report;

/* Hands a recorded entry, locked through lock_fd, to someone else to send
 * (the command passes the sender's hand-off). 0 when taken (rep filled),
 * 1 when not: the caller still holds the lock and sends it itself. */
typedef int (*ps_handoff_fn)(struct ps_ctx *ctx, int lock_fd, const ps_qentry_t *e,
                             struct ps_report *rep);

typedef struct ps_ctx {
    const ps_config_t *cfg;
    const ps_log_t *log;
    ps_client_t *client; /* created on first use */
    ps_queue_t *queue;   /* opened on first use */
    int dry_run;
    int no_queue;
    double deadline;       /* ps_now() value, 0 = none */
    ps_handoff_fn handoff; /* NULL: ps_remove_login sends everything itself */
    const char *trigger;   /* what asked for the removals: "remove", "pam", ... */
    int retry_held;        /* `retry --held`: send every held entry again */
    int hook;              /* a deprovisioning hook (remove --hook): hooknote.h */
    /* api.spread for this front end (remove, pam-helper): > 0 records each
     * removal with a random first attempt within that many seconds and
     * sends nothing (`retry` does); 0 sends at once */
    double spread;
    /* Organizations whose member list this credential was seen to read
     * (PS_PROBE_TTL seconds, ps_now() times): what confirms a 404. */
    struct {
        char organization[PS_ID_MAX + 1];
        double at;
    } readable[PS_PROBE_SLOTS];
} ps_ctx_t;

typedef struct ps_report {
    ps_status_t status;
    ps_mapping_t map; /* valid when mapped */
    int mapped;
    char id_buf[PS_ID_MAX + 1]; /* map.id of a user entry given by email, once resolved */
    long http_status;
    int attempts;
    char message[512]; /* human detail: API message, curl error, queue error */
} ps_report_t;

#endif
