/* api.h - the PlanetScale API client (libcurl + json-c).
 * Used by the command only: the PAM module never loads libcurl. */
#ifndef PS_API_H
#define PS_API_H

#include <stddef.h>
#include <time.h>
#include "config.h"

typedef enum ps_outcome {
    PS_OUT_REMOVED = 0, /* 2xx (204): the member was removed */
    PS_OUT_ABSENT,      /* 404: already gone - success for us */
    PS_OUT_REFUSED,     /* 400/401/403/422 and other 4xx: permanent, not queued */
    PS_OUT_TRANSIENT,   /* 408/429/5xx, timeout, connect/TLS-handshake failure */
    PS_OUT_CONFIG       /* certificate verification failed, 3xx, bad URL: permanent */
} ps_outcome_t;

typedef struct ps_result {
    ps_outcome_t outcome;
    long http_status;   /* 0 when no HTTP answer */
    int attempts;       /* attempts made by ps_client_remove */
    double retry_after; /* seconds from Retry-After, -1 when absent */
    char message[512];  /* API "message" or curl's error; unescaped; never a secret */
} ps_result_t;

typedef struct ps_client ps_client_t;

/* Creates a client: curl_global_init (reference-counted), one easy handle
 * reused for every request (one connection for a whole drain), TLS verified,
 * CURLOPT_NOSIGNAL, no redirects, proxy only from cfg (else none, ignoring the
 * environment), protocols limited to https (and http to loopback), timeouts
 * from cfg, User-Agent "pam-planetscale/VERSION". Returns NULL with err. */
ps_client_t *ps_client_new(const ps_config_t *cfg, char *err, size_t errlen);
void ps_client_free(ps_client_t *c); /* curl_global_cleanup: reference-counted */

/* Test hook: base of the exponential backoff in seconds (default 1.0) and
 * the cap of any single wait (default 60). */
void ps_client_set_backoff(ps_client_t *c, double base, double cap);

/* One DELETE, no retry. Fills r (attempts = 1). Returns r->outcome. */
ps_outcome_t ps_client_delete_once(ps_client_t *c, const ps_mapping_t *m, ps_result_t *r);

/* The DELETE with up to cfg->retries attempts for transient outcomes:
 * exponential backoff with full jitter, Retry-After honoured (capped), never
 * past `deadline` (a ps_now() value; 0 = no deadline). Returns r->outcome. */
ps_outcome_t ps_client_remove(ps_client_t *c, const ps_mapping_t *m, double deadline,
                              ps_result_t *r);

/* Number of new TCP connections this client has opened (for tests/bench). */
long ps_client_connects(const ps_client_t *c);

/* ---- pure helpers, unit-tested and fuzzed ---- */

/* The request URL: BASE/organizations/ORG/members/ID, path segments escaped
 * with %XX for anything outside [A-Za-z0-9_.~-] (and "." / ".." rejected);
 * in query mode "?delete_passwords=true&delete_service_tokens=false".
 * Returns a malloc'd string or NULL. */
char *ps_build_url(const char *base, const char *organization, const char *id, int flags_mode,
                   int delete_passwords, int delete_service_tokens);

/* The JSON body of body mode: {"delete_passwords":true,"delete_service_tokens":false}.
 * malloc'd. */
char *ps_build_body(int delete_passwords, int delete_service_tokens);

/* Classifies an HTTP answer (status, body of len bytes - not NUL-terminated,
 * may be binary) into an outcome and copies the API's "message" (when the
 * body is a JSON object with a string "message", parsed strictly: trailing
 * garbage is not JSON) or a short description into msg. */
ps_outcome_t ps_classify_http(long status, const char *body, size_t len, char *msg, size_t msglen);

/* Parses a Retry-After value (delta-seconds or an HTTP-date) relative to
 * `now`; returns seconds >= 0, or -1 when absent/invalid. */
double ps_parse_retry_after(const char *value, time_t now);

const char *ps_outcome_name(ps_outcome_t o);

#endif
