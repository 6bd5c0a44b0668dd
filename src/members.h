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

#endif
