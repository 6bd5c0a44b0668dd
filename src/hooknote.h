/* hooknote.h - the spool's note that the API did not answer a hook.
 *
 * A deprovisioning hook (remove --hook: the userdel hook, deluser.local)
 * waits at most hook_deadline seconds for the API. When its removal is left
 * pending because the API did not complete it in that time, it writes the
 * note QUEUE_DIR/.api-unanswered (0600: the time, the API URL and the
 * reason; a dot-file, so never an entry). For PS_HOOK_NOTE_WINDOW seconds
 * after that, hooks for the same API record their removal and leave it
 * pending without sending it: a loop of userdels during an outage waits
 * once a minute, not once per account. The sender and the retry timer send
 * what they leave. A hook whose removal completes deletes the note. */
#ifndef PS_HOOKNOTE_H
#define PS_HOOKNOTE_H

#include <stddef.h>

#include "log.h"

#define PS_HOOK_NOTE_NAME   ".api-unanswered"
#define PS_HOOK_NOTE_WINDOW 60 /* seconds */
#define PS_HOOK_NOTE_MAX    2048

/* 1 when DIR holds a note for api_url written less than `window` seconds
 * ago (*at, its time, and reason filled), 0 when not (no note, another
 * API, too old, or not a valid note: a note that cannot be read is no
 * reason to skip a removal). */
int ps_hook_note_fresh(const char *dir, const char *api_url, double window, long long *at,
                       char *reason, size_t reasonlen);

/* Writes the note (atomically, 0600). Failures are logged at LOG_DEBUG
 * only: the note is advice, the removal is in the spool either way. */
void ps_hook_note_write(const char *dir, const char *api_url, const char *reason,
                        const ps_log_t *lg);

/* Deletes the note, if any. */
void ps_hook_note_clear(const char *dir);

/* Parses a note's bytes: {"at": N, "api": "...", "reason": "..."}, nothing
 * else. 0, or -1. */
int ps_hook_note_parse(const char *buf, size_t len, long long *at, char *api, size_t apilen,
                       char *reason, size_t reasonlen);

#endif
