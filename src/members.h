/* members.h - what the member list is used for besides a removal: the
 * organizations a configuration names and whether its credential can read
 * their member lists (`check --online`). Used by the command only. */
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

#endif
