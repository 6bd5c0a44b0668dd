/* members.h - what the member list is used for besides a removal: the
 * organizations a configuration names and whether its credential can read
 * their member lists (`check --online`), the logins mapped to each member
 * (`members`), and user entries that give an email instead of an id: the
 * email resolved to a user id through the list, and the id cached in the
 * spool so that a removal needs no extra request. Used by the command only. */
#ifndef PS_MEMBERS_H
#define PS_MEMBERS_H

#include <stddef.h>
#include "api.h"
#include "config.h"

/* The organizations the configuration names: the default one and every
 * user's, sorted, each once. *orgs is a malloc'd array of pointers into
 * cfg (free() it). 0, or -1 when out of memory. */
int ps_config_organizations(const ps_config_t *cfg, const char ***orgs, size_t *n);

/* Whether the credential can read ORG's member list (read_organization),
 * in words for `check --online`: "can read the member list", "the token is
 * invalid", "cannot see organization ORG or lacks read_organization", "the
 * API is unreachable", ... from the list probe's outcome and result. The
 * words hold no secret (r->message never does) and are escaped. */
void ps_online_explain(const char *org, ps_outcome_t o, const ps_result_t *r, char *out,
                       size_t outlen);

/* The logins the configuration maps to the members of one organization:
 * by user id, and by email (compared ignoring ASCII case) for user entries
 * that give an email instead of an id. Built once, O(log n) per member. */
typedef struct ps_login_index ps_login_index_t;

/* NULL when out of memory. The index points into cfg. */
ps_login_index_t *ps_login_index_new(const ps_config_t *cfg, const char *org);
void ps_login_index_free(ps_login_index_t *ix);

/* The logins mapped to member m, sorted, at most max of them in logins[]
 * (pointers into the configuration). Returns how many there are, which may
 * be more than max. */
size_t ps_login_index_find(const ps_login_index_t *ix, const ps_member_t *m, const char **logins,
                           size_t max);

/* ---- email to user id ----
 *
 * The way PlanetScale's own CLI does it: list the organization's members
 * with q=EMAIL (the API's filter is a prefix match on emails and names, so
 * it may return other members, on several pages), follow EVERY page, and
 * take the member whose user.email equals EMAIL ignoring ASCII case. Never
 * the first hit: an email that is a prefix of another resolves to its own
 * member.
 *
 * Resolved ids are cached in the queue directory, one file per organization
 * and email, ".email-KEY" (KEY = ps_key_hex(ORG, email in lower case,
 * "email")): 0600, written atomically (ps_write_file_atomic), owned by root
 * or the caller, holding {"version":1,"organization","email","id",
 * "resolved"} and no secret. The dot keeps it out of the queue's entries. */

#define PS_EMAIL_CACHE_MAX 2048 /* a cache file larger than this is not one */

typedef struct ps_email_cache_entry {
    char organization[PS_ID_MAX + 1];
    char email[PS_EMAIL_MAX + 1];
    char id[PS_ID_MAX + 1];
    long long resolved; /* unix time */
} ps_email_cache_entry_t;

/* The cache file's name for ORG and EMAIL: ".email-" and 16 hex digits. */
void ps_email_cache_name(const char *org, const char *email, char out[32]);

/* Strict parse of a cache file's bytes (one JSON object, known fields only,
 * right types, valid organization, email and id). 0, or -1 with err. */
int ps_email_cache_parse(const char *buf, size_t len, ps_email_cache_entry_t *e, char *err,
                         size_t errlen);
/* The file's bytes for e, malloc'd (NULL when out of memory). */
char *ps_email_cache_format(const ps_email_cache_entry_t *e);

/* The cached id of EMAIL in ORG, without any network: 0 and id_out, 1 when
 * not cached (no queue directory, no file, or a file for another email),
 * -1 with err when the queue directory or the file may not be trusted
 * (owner, mode, symlink, not a valid cache file). */
int ps_email_cache_get(const char *queue_dir, const char *org, const char *email,
                       char id_out[PS_ID_MAX + 1], char *err, size_t errlen);
/* Caches EMAIL -> ID for ORG (creating the queue directory like the queue
 * does). 0, or -1 with err. */
int ps_email_cache_put(const char *queue_dir, const char *org, const char *email, const char *id,
                       char *err, size_t errlen);

#define PS_RESOLVE_RETRY   1 /* retry transient answers of each page (backoff, Retry-After) */
#define PS_RESOLVE_REFRESH 2 /* ask the API even when the email is cached (then cache anew) */

/* Resolves EMAIL to the user id of ORG's member with that email.
 * First the cache in queue_dir (unless PS_RESOLVE_REFRESH): a cached email
 * needs no request and no client (c may be NULL then). Else the member list
 * through c, every page, paced, bounded by `deadline` (a ps_now() value, 0 =
 * none); a found id is cached (a cache that cannot be written is said in
 * r->message, and the id is still returned). Returns:
 *   PS_OUT_OK        found: id_out holds the id, *from_cache says whether
 *                    the cache gave it (from_cache may be NULL)
 *   PS_OUT_ABSENT    no member of ORG has this email: the whole filtered
 *                    list was read, so the credential can read it (a 404
 *                    of the list is NOT this: see REFUSED)
 *   PS_OUT_TRANSIENT the list could not be read to the end now (429, 5xx,
 *                    time-out, connection failure, a malformed page, a
 *                    bound), or not cached and c is NULL: try again later
 *   PS_OUT_REFUSED   the credential cannot read ORG's member list (401,
 *                    403, 404 of the list: invalid token, no such
 *                    organization or no read_organization), or two members
 *                    have this email
 *   PS_OUT_CONFIG    certificate or redirect problem, no credential, an
 *                    invalid organization or email, a cache that may not be
 *                    trusted
 * r describes the last request (r->attempts and r->pages count them, 0 when
 * the cache answered); its message says what happened, without secrets.
 * A removal's context calls it through ps_ctx_resolve_email (remove.h). */
ps_outcome_t ps_resolve_email(ps_client_t *c, const char *queue_dir, const char *org,
                              const char *email, double deadline, int flags,
                              char id_out[PS_ID_MAX + 1], int *from_cache, ps_result_t *r);

#endif
