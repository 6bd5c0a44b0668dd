/* members.c - the organizations of a configuration, and what a list probe
 * says about its credential. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "members.h"
#include "util.h"

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int ps_config_organizations(const ps_config_t *cfg, const char ***orgs, size_t *n)
{
    const char **v;
    size_t i, k = 0, out = 0;

    *orgs = NULL;
    *n = 0;
    v = malloc((cfg->nusers + 1) * sizeof(*v));
    if(!v)
        return -1;
    if(cfg->organization)
        v[k++] = cfg->organization;
    for(i = 0; i < cfg->nusers; i++) {
        if(cfg->users[i].organization)
            v[k++] = cfg->users[i].organization;
    }
    if(k) {
        qsort(v, k, sizeof(*v), str_ptr_cmp);
        for(i = 0; i < k; i++) {
            if(!out || strcmp(v[out - 1], v[i]) != 0)
                v[out++] = v[i];
        }
    }
    *orgs = v;
    *n = out;
    return 0;
}

void ps_online_explain(const char *org, ps_outcome_t o, const ps_result_t *r, char *out,
                       size_t outlen)
{
    char eorg[PS_ID_MAX * 4 + 8], emsg[sizeof(r->message) * 4];

    ps_escape(org, eorg, sizeof(eorg));
    ps_escape(r->message, emsg, sizeof(emsg));
    switch(o) {
    case PS_OUT_OK:
        snprintf(out, outlen, "the token can read the member list of %s (read_organization)", eorg);
        return;
    case PS_OUT_ABSENT:
        snprintf(out, outlen,
                 "the token cannot see organization %s or lacks read_organization (HTTP 404): "
                 "check the organization's name and the token's access",
                 eorg);
        return;
    case PS_OUT_REFUSED:
        if(r->http_status == 401)
            snprintf(out, outlen,
                     "the token is invalid: the API does not accept it (HTTP 401); check "
                     "api.token_id and api.token (or api.token_file, api.oauth_token)");
        else if(r->http_status == 403)
            snprintf(out, outlen,
                     "the token may not read the member list of %s: it lacks read_organization "
                     "(HTTP 403)",
                     eorg);
        else
            snprintf(out, outlen, "the API refused to list the members of %s (HTTP %ld): %.300s",
                     eorg, r->http_status, emsg);
        return;
    case PS_OUT_TRANSIENT:
        if(r->http_status > 0)
            snprintf(out, outlen, "the API is unavailable (HTTP %ld): %.300s", r->http_status,
                     emsg);
        else
            snprintf(out, outlen, "the API is unreachable: %.300s", emsg);
        return;
    case PS_OUT_CONFIG:
    case PS_OUT_REMOVED: break;
    }
    snprintf(out, outlen, "%.400s", emsg);
}
