/* sender_worker.c - the thread that owns the API client and sends the
 * accepted removals one at a time, paced; see sender_worker.h. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "remove.h"
#include "sender_worker.h"

/* ------------------------------------------------------------ configurations */

struct ps_shared_cfg {
    ps_config_t *cfg;
    atomic_int refs;
};

ps_shared_cfg_t *ps_shared_cfg_new(ps_config_t *cfg)
{
    ps_shared_cfg_t *s = malloc(sizeof(*s));

    if(!s)
        return NULL;
    s->cfg = cfg;
    atomic_init(&s->refs, 1);
    return s;
}

ps_shared_cfg_t *ps_shared_cfg_ref(ps_shared_cfg_t *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void ps_shared_cfg_unref(ps_shared_cfg_t *s)
{
    if(s && atomic_fetch_sub(&s->refs, 1) == 1) {
        ps_config_free(s->cfg);
        free(s);
    }
}

const ps_config_t *ps_shared_cfg_get(const ps_shared_cfg_t *s)
{
    return s->cfg;
}

ps_config_t *ps_shared_cfg_take(ps_shared_cfg_t *s)
{
    ps_config_t *cfg = s->cfg;

    free(s);
    return cfg;
}

/* ------------------------------------------------------------ jobs */

ps_job_t *ps_job_new(const ps_qentry_t *e, int lock_fd, double deadline, ps_shared_cfg_t *cfg)
{
    ps_job_t *job = calloc(1, sizeof(*job));

    if(!job) {
        ps_queue_unlock(lock_fd);
        return NULL;
    }
    job->entry = *e;
    job->lock_fd = lock_fd;
    job->deadline = deadline;
    job->cfg = ps_shared_cfg_ref(cfg);
    return job;
}

void ps_job_free(ps_job_t *job)
{
    if(!job)
        return;
    ps_queue_unlock(job->lock_fd);
    ps_shared_cfg_unref(job->cfg);
    free(job);
}

/* The job ends without a request: the entry stays pending in the queue (the
 * retry timer sends it) and its client hears "queued". */
static void kept(const ps_log_t *lg, ps_job_t *job, int prio, const char *why)
{
    const ps_qentry_t *e = &job->entry;

    job->rep.status = PS_ST_QUEUED;
    snprintf(job->rep.message, sizeof(job->rep.message), "%s", why);
    ps_audit(lg, prio, "queued", e->trigger, e->login, e->organization, e->id, e->delete_passwords,
             e->delete_service_tokens, 0, job->rep.message);
}

/* ------------------------------------------------------------ the worker */

struct ps_worker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ps_job_t *head, *tail;           /* waiting, in the order submitted */
    ps_job_t *done_head, *done_tail; /* done, not collected */
    ps_job_t *sending;               /* in hand */
    int stop;
    int wake[2]; /* [0] for `serve`'s poll, [1] written when a job is done */
    pthread_t thread;
    const ps_log_t *log;
    /* the worker thread's own */
    ps_ctx_t ctx;         /* its API client (the warm connection) and queue */
    ps_shared_cfg_t *cur; /* the configuration ctx was made from */
};

static double thread_cpu(void)
{
    struct timespec ts;

    if(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A job accepted under another configuration than the last one: a new
 * client (and connection) for it, and the pacing rate of its rate limit. */
static void use_config(ps_worker_t *w, ps_shared_cfg_t *cfg)
{
    if(w->cur == cfg)
        return;
    ps_ctx_release(&w->ctx);
    ps_shared_cfg_unref(w->cur);
    w->cur = ps_shared_cfg_ref(cfg);
    w->ctx.cfg = ps_shared_cfg_get(cfg);
}

/* The one place an accepted entry is sent. */
static void send_entry(ps_worker_t *w, ps_job_t *job, ps_result_t *res)
{
    w->ctx.deadline = job->deadline;
    ps_send_entry(&w->ctx, &job->entry, 0, &job->rep, res);
}

/* Sends a job. The pacing is the API client's (api.c), the same as
 * `retry`'s: every request starts at least 1/rate after the previous one,
 * so a burst of hooks (a mass offboarding) is spread below the limit on the
 * one connection, and a 429 slows it down. A request whose turn would come
 * after the client's deadline is not sent: the entry stays in the queue. */
static void send_paced(ps_worker_t *w, ps_job_t *job)
{
    ps_result_t res;
    char err[512];

    if(!ps_ctx_queue(&w->ctx, err, sizeof(err))) {
        ps_logf(w->log, LOG_ERR, "sender: %s", err);
        kept(w->log, job, LOG_ERR, "the sender cannot open its queue; kept in the queue");
        job->rep.status = PS_ST_ERROR;
        return;
    }
    send_entry(w, job, &res);
    if(w->ctx.client)
        ps_client_pace_answer(w->ctx.client, &res,
                              job->rep.status == PS_ST_REMOVED || job->rep.status == PS_ST_ABSENT);
}

static void wake(ps_worker_t *w)
{
    while(write(w->wake[1], "", 1) < 0 && errno == EINTR)
        ; /* EAGAIN: a wake-up is already waiting */
}

static void *run(void *arg)
{
    ps_worker_t *w = arg;

    pthread_mutex_lock(&w->mu);
    for(;;) {
        ps_job_t *job;
        double c0;

        while(!w->head && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if(w->stop)
            break;
        job = w->head;
        w->head = job->next;
        if(!w->head)
            w->tail = NULL;
        job->next = NULL;
        w->sending = job;
        pthread_mutex_unlock(&w->mu);

        c0 = thread_cpu();
        use_config(w, job->cfg);
        send_paced(w, job);
        job->cpu = thread_cpu() - c0;

        pthread_mutex_lock(&w->mu);
        w->sending = NULL;
        if(w->done_tail)
            w->done_tail->next = job;
        else
            w->done_head = job;
        w->done_tail = job;
        wake(w);
    }
    pthread_mutex_unlock(&w->mu);
    ps_ctx_release(&w->ctx);
    ps_shared_cfg_unref(w->cur);
    w->cur = NULL;
    return NULL;
}

ps_worker_t *ps_worker_start(const ps_log_t *lg, char *err, size_t errlen)
{
    ps_worker_t *w = calloc(1, sizeof(*w));
    int rc;

    if(!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->log = lg;
    w->ctx.log = lg;
    if(pipe2(w->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        free(w);
        return NULL;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    rc = pthread_create(&w->thread, NULL, run, w);
    if(rc != 0) {
        snprintf(err, errlen, "cannot start the sending thread: %s", strerror(rc));
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        close(w->wake[0]);
        close(w->wake[1]);
        free(w);
        return NULL;
    }
    return w;
}

int ps_worker_wake_fd(const ps_worker_t *w)
{
    return w->wake[0];
}

void ps_worker_submit(ps_worker_t *w, ps_job_t *job)
{
    job->next = NULL;
    pthread_mutex_lock(&w->mu);
    if(w->tail)
        w->tail->next = job;
    else
        w->head = job;
    w->tail = job;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

ps_job_t *ps_worker_collect(ps_worker_t *w)
{
    char buf[64];
    ps_job_t *done;

    for(;;) {
        ssize_t r = read(w->wake[0], buf, sizeof(buf));

        if(r > 0 || (r < 0 && errno == EINTR))
            continue;
        break; /* EAGAIN: drained */
    }
    pthread_mutex_lock(&w->mu);
    done = w->done_head;
    w->done_head = w->done_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    return done;
}

int ps_worker_cancel(ps_worker_t *w, ps_job_t *job, const char *why)
{
    ps_job_t **pp, *prev = NULL;
    int taken = 0;

    pthread_mutex_lock(&w->mu);
    for(pp = &w->head; *pp; prev = *pp, pp = &(*pp)->next) {
        if(*pp == job) {
            *pp = job->next;
            if(w->tail == job)
                w->tail = prev;
            job->next = NULL;
            taken = 1;
            break;
        }
    }
    pthread_mutex_unlock(&w->mu);
    if(taken)
        kept(w->log, job, LOG_NOTICE, why);
    return taken;
}

int ps_worker_sending(ps_worker_t *w)
{
    int busy;

    pthread_mutex_lock(&w->mu);
    busy = w->sending != NULL;
    pthread_mutex_unlock(&w->mu);
    return busy;
}

static void free_list(ps_job_t *job)
{
    while(job) {
        ps_job_t *next = job->next;

        ps_job_free(job);
        job = next;
    }
}

void ps_worker_stop(ps_worker_t *w)
{
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
}

void ps_worker_free(ps_worker_t *w)
{
    if(!w)
        return;
    free_list(w->head);
    free_list(w->done_head);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    close(w->wake[0]);
    close(w->wake[1]);
    free(w);
}
