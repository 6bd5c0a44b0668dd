/* outcome.c - the one outcome table (see outcome.h). */
#include <string.h>
#include <syslog.h>

#include "helper.h"
#include "outcome.h"

/* rank: which outcome of several (remove LOGIN LOGIN ..., a drain) decides
 * the exit code: the one that needs the administrator most. */
static const ps_outcome_row_t rows[] = {
    { PS_ST_REMOVED, PS_SPOOL_SETTLE, 0, "removed", LOG_INFO, PS_HELPER_REMOVED, 0 },
    { PS_ST_ABSENT, PS_SPOOL_SETTLE, 0, "absent", LOG_INFO, PS_HELPER_ABSENT, 0 },
    { PS_ST_UNMAPPED, PS_SPOOL_NONE, 0, "unmapped", LOG_DEBUG, PS_HELPER_UNMAPPED, 0 },
    { PS_ST_UNKNOWN, PS_SPOOL_NONE, 1, "unmapped", LOG_ERR, PS_HELPER_UNKNOWN, 6 },
    { PS_ST_DRYRUN, PS_SPOOL_NONE, 0, "dry-run", LOG_INFO, "dry-run", 0 },
    { PS_ST_QUEUED, PS_SPOOL_PENDING, 75, "queued", LOG_WARNING, PS_HELPER_QUEUED, 3 },
    { PS_ST_HELD, PS_SPOOL_HOLD, 77, "held", LOG_ERR, PS_HELPER_HELD, 7 },
    { PS_ST_HELD_CONFIG, PS_SPOOL_HOLD, 78, "held", LOG_ERR, PS_HELPER_HELD_CONFIG, 8 },
    { PS_ST_NOT_QUEUED, PS_SPOOL_NONE, 75, "not-queued", LOG_ERR, "not-queued", 4 },
    { PS_ST_REFUSED, PS_SPOOL_NONE, 77, "refused", LOG_ERR, PS_HELPER_REFUSED, 7 },
    { PS_ST_CONFIG, PS_SPOOL_NONE, 78, "failed", LOG_ERR, PS_HELPER_CONFIG, 8 },
    { PS_ST_RECORDED, PS_SPOOL_UNRESOLVED, 78, "recorded", LOG_ERR, PS_HELPER_RECORDED, 8 },
    { PS_ST_INVALID, PS_SPOOL_NONE, 64, "invalid", LOG_ERR, "invalid", 5 },
    { PS_ST_SCHEDULED, PS_SPOOL_PENDING, 75, "scheduled", LOG_NOTICE, PS_HELPER_SCHEDULED, 2 },
    /* ERROR stays last: ps_outcome() answers it for an unknown status */
    { PS_ST_ERROR, PS_SPOOL_NONE, 1, "failed", LOG_ERR, PS_HELPER_ERROR, 9 },
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

const ps_outcome_row_t *ps_outcome(ps_status_t st)
{
    size_t i;

    for(i = 0; i < NROWS; i++)
        if(rows[i].status == st)
            return &rows[i];
    return &rows[NROWS - 1]; /* ERROR */
}

ps_status_t ps_outcome_status(ps_verdict_t v, int recorded)
{
    switch(v) {
    case PS_V_REMOVED: return PS_ST_REMOVED;
    case PS_V_ABSENT: return PS_ST_ABSENT;
    case PS_V_TRANSIENT: return recorded ? PS_ST_QUEUED : PS_ST_NOT_QUEUED;
    case PS_V_REFUSED: return recorded ? PS_ST_HELD : PS_ST_REFUSED;
    case PS_V_CONFIG: return recorded ? PS_ST_HELD_CONFIG : PS_ST_CONFIG;
    }
    return PS_ST_ERROR;
}

ps_verdict_t ps_verdict_of_answer(ps_outcome_t o)
{
    switch(o) {
    case PS_OUT_REMOVED: return PS_V_REMOVED;
    case PS_OUT_TRANSIENT: return PS_V_TRANSIENT;
    case PS_OUT_CONFIG: return PS_V_CONFIG;
    case PS_OUT_ABSENT: /* ambiguous until confirmed */
    case PS_OUT_REFUSED: return PS_V_REFUSED;
    default: break;
    }
    return PS_V_REFUSED;
}

const char *ps_status_word(ps_status_t st)
{
    return ps_outcome(st)->helper;
}

int ps_status_exit(ps_status_t st)
{
    return ps_outcome(st)->exit_code;
}

int ps_status_worse(ps_status_t a, ps_status_t b)
{
    return ps_outcome(a)->rank > ps_outcome(b)->rank;
}

int ps_status_from_word(const char *word, ps_status_t *st)
{
    size_t i;

    for(i = 0; i < NROWS; i++) {
        if(strcmp(rows[i].helper, word) == 0) {
            *st = rows[i].status;
            return 0;
        }
    }
    return -1;
}
