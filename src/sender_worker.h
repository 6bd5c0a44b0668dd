/* sender_worker.h - the sender's API side: one thread that owns the API
 * client (its one warm connection) and sends the removals `serve` accepted,
 * one at a time, in the order accepted, paced below api.rate_limit.
 *
 * `serve` (sender_serve.c) does all the socket work in its own thread and
 * never waits for the API: it submits a job (an entry it adopted, with its
 * lock) and later collects it, done, with its report; the worker writes a
 * byte to ps_worker_wake_fd() each time a job is done. Every job is sent
 * with the configuration it was accepted under (a reload does not change
 * what an accepted job is sent with); the configurations are shared,
 * reference-counted, between the two threads.
 *
 * The worker is the one place that sends an entry (ps_send_entry): the
 * outcome (settle, keep pending, audit line) is the core's. */
#ifndef PS_SENDER_WORKER_H
#define PS_SENDER_WORKER_H

#include "ctx.h"

/* A configuration shared between `serve` and the worker; freed with its
 * last reference. */
typedef struct ps_shared_cfg ps_shared_cfg_t;

/* Takes ownership of cfg; one reference. NULL when out of memory (cfg is
 * then still the caller's). */
ps_shared_cfg_t *ps_shared_cfg_new(ps_config_t *cfg);
ps_shared_cfg_t *ps_shared_cfg_ref(ps_shared_cfg_t *s);
void ps_shared_cfg_unref(ps_shared_cfg_t *s);
const ps_config_t *ps_shared_cfg_get(const ps_shared_cfg_t *s);
/* The last reference: returns the configuration itself (the caller frees
 * it) and frees the wrapper. */
ps_config_t *ps_shared_cfg_take(ps_shared_cfg_t *s);

typedef struct ps_job {
    struct ps_job *next;  /* the worker's lists */
    ps_qentry_t entry;    /* read by `serve` under the entry's lock */
    int lock_fd;          /* the adopted lock: closed by ps_job_free */
    double deadline;      /* ps_now() value by which it must be answered; 0 none */
    ps_shared_cfg_t *cfg; /* one reference, dropped by ps_job_free */
    ps_report_t rep;      /* the outcome, once done */
    double cpu;           /* worker CPU seconds spent on it */
    /* `serve`'s own, never touched by the worker: */
    void *owner;     /* the client waiting for it, or NULL */
    double accepted; /* ps_now() when it was accepted */
    int late;        /* its deadline passed while it was being sent */
} ps_job_t;

/* A job for entry e, adopted through lock_fd (taken over), to be sent with
 * cfg (a reference is taken). NULL when out of memory (lock_fd is closed:
 * the lock is the client's again). */
ps_job_t *ps_job_new(const ps_qentry_t *e, int lock_fd, double deadline, ps_shared_cfg_t *cfg);
/* Releases the entry's lock (the outcome is in the queue) and the job. */
void ps_job_free(ps_job_t *job);

typedef struct ps_worker ps_worker_t;

/* Starts the worker thread. Signals should be blocked first by the caller
 * (the thread inherits the mask). NULL with err. */
ps_worker_t *ps_worker_start(const ps_log_t *lg, char *err, size_t errlen);

/* Readable after a job is done; ps_worker_collect drains it. */
int ps_worker_wake_fd(const ps_worker_t *w);

/* Queues a job, after every job submitted before it. */
void ps_worker_submit(ps_worker_t *w, ps_job_t *job);

/* The jobs done since the last call, in the order they finished (a list
 * through ->next), or NULL. */
ps_job_t *ps_worker_collect(ps_worker_t *w);

/* Takes a job back that the worker has not begun: 1 taken (rep says
 * queued, `why`, with an audit line; the entry is left pending for retry),
 * 0 it is being sent or is done (collect it). */
int ps_worker_cancel(ps_worker_t *w, ps_job_t *job, const char *why);

/* 1 while a job is being sent. */
int ps_worker_sending(ps_worker_t *w);

/* Stops the thread once the job in hand (if any) is done. Jobs still
 * waiting are not sent: take them back first (ps_worker_cancel); collect
 * the last ones done (ps_worker_collect), then free the worker. */
void ps_worker_stop(ps_worker_t *w);
/* Frees a stopped worker (and any job left in it). */
void ps_worker_free(ps_worker_t *w);

#endif
