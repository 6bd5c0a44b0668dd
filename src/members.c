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

/* ------------------------------------------------------------ login index */

struct ps_login_index {
    const ps_user_t **by_id; /* users of the organization given by id, sorted by id */
    size_t nid;
    const ps_user_t **by_email; /* given by email, sorted by email ignoring ASCII case */
    size_t nemail;
};

static int ascii_casecmp(const char *a, const char *b)
{
    const unsigned char *x = (const unsigned char *)a;
    const unsigned char *y = (const unsigned char *)b;

    for(;; x++, y++) {
        int cx = *x >= 'A' && *x <= 'Z' ? *x - 'A' + 'a' : *x;
        int cy = *y >= 'A' && *y <= 'Z' ? *y - 'A' + 'a' : *y;

        if(cx != cy || !cx)
            return cx - cy;
    }
}

static const char *user_email(const ps_user_t *u)
{
    (void)u;
    return NULL; /* user entries give an id only, so far */
}

static int by_id_cmp(const void *a, const void *b)
{
    return strcmp((*(const ps_user_t *const *)a)->id, (*(const ps_user_t *const *)b)->id);
}

static int by_email_cmp(const void *a, const void *b)
{
    return ascii_casecmp(user_email(*(const ps_user_t *const *)a),
                         user_email(*(const ps_user_t *const *)b));
}

ps_login_index_t *ps_login_index_new(const ps_config_t *cfg, const char *org)
{
    ps_login_index_t *ix = calloc(1, sizeof(*ix));
    size_t i;

    if(!ix)
        return NULL;
    ix->by_id = malloc((cfg->nusers + 1) * sizeof(*ix->by_id));
    ix->by_email = malloc((cfg->nusers + 1) * sizeof(*ix->by_email));
    if(!ix->by_id || !ix->by_email) {
        ps_login_index_free(ix);
        return NULL;
    }
    for(i = 0; i < cfg->nusers; i++) {
        const ps_user_t *u = &cfg->users[i];
        const char *uorg = u->organization ? u->organization : cfg->organization;

        if(!uorg || strcmp(uorg, org) != 0)
            continue;
        if(u->id)
            ix->by_id[ix->nid++] = u;
        else if(user_email(u))
            ix->by_email[ix->nemail++] = u;
    }
    qsort(ix->by_id, ix->nid, sizeof(*ix->by_id), by_id_cmp);
    qsort(ix->by_email, ix->nemail, sizeof(*ix->by_email), by_email_cmp);
    return ix;
}

void ps_login_index_free(ps_login_index_t *ix)
{
    if(!ix)
        return;
    free(ix->by_id);
    free(ix->by_email);
    free(ix);
}

/* The first index in v[0..n) whose key is not below `key`. */
static size_t lower_bound(const ps_user_t **v, size_t n, const char *key, int email)
{
    size_t lo = 0, hi = n;

    while(lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = email ? ascii_casecmp(user_email(v[mid]), key) : strcmp(v[mid]->id, key);

        if(c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

size_t ps_login_index_find(const ps_login_index_t *ix, const ps_member_t *m, const char **logins,
                           size_t max)
{
    size_t i, n = 0;

    if(!ix || !m)
        return 0;
    for(i = lower_bound(ix->by_id, ix->nid, m->user_id, 0);
        i < ix->nid && !strcmp(ix->by_id[i]->id, m->user_id); i++) {
        if(n < max)
            logins[n] = ix->by_id[i]->login;
        n++;
    }
    if(m->email[0]) {
        for(i = lower_bound(ix->by_email, ix->nemail, m->email, 1);
            i < ix->nemail && !ascii_casecmp(user_email(ix->by_email[i]), m->email); i++) {
            if(n < max)
                logins[n] = ix->by_email[i]->login;
            n++;
        }
    }
    qsort(logins, n < max ? n : max, sizeof(*logins), str_cmp);
    return n;
}
