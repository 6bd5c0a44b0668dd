/* api.h - the PlanetScale API client (libcurl + json-c).
 * Used by the command only: the PAM module never loads libcurl. */
#ifndef PS_API_H
#define PS_API_H

#include <stddef.h>
#include <time.h>
#include "config.h"
#include "util.h"

typedef enum ps_outcome {
    PS_OUT_REMOVED = 0, /* 2xx (204): the member was removed */
    PS_OUT_ABSENT,      /* 404: already gone - success for us (a DELETE); for a read,
                         * "not there, or this credential cannot see it": ambiguous */
    PS_OUT_REFUSED,     /* 400/401/403/422 and other 4xx: permanent, not queued */
    PS_OUT_TRANSIENT,   /* 408/429/5xx, timeout, connect/TLS-handshake failure; for a
                         * read also a 200 whose body is not what was asked for */
    PS_OUT_CONFIG,      /* certificate verification failed, 3xx, bad URL: permanent */
    PS_OUT_OK           /* a read (GET) answered 200 with a well-formed body */
} ps_outcome_t;

typedef struct ps_result {
    ps_outcome_t outcome;
    long http_status;   /* 0 when no HTTP answer */
    int attempts;       /* requests made (ps_client_remove's attempts; every request of a list) */
    long pages;         /* member-list pages read completely (list calls) */
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

#ifdef PS_TEST_HOOKS
/* For the tests only (built with -DPS_TEST_HOOKS): the base of the
 * exponential backoff in seconds (default 1.0) and the cap of any single
 * wait (default 60), so that a retried request does not make a test wait. */
void ps_client_set_backoff(ps_client_t *c, double base, double cap);
#endif

/* One DELETE, no retry. Fills r (attempts = 1). Returns r->outcome. */
ps_outcome_t ps_client_delete_once(ps_client_t *c, const ps_mapping_t *m, ps_result_t *r);

/* The DELETE with up to cfg->retries attempts for transient outcomes:
 * exponential backoff with full jitter, Retry-After honoured (capped), never
 * past `deadline` (a ps_now() value; 0 = no deadline). Returns r->outcome. */
ps_outcome_t ps_client_remove(ps_client_t *c, const ps_mapping_t *m, double deadline,
                              ps_result_t *r);

/* ---- reads: one member, the member list ----
 *
 * Every read uses the client's one handle (one connection), the same TLS,
 * proxy, no-redirect, timeout and body-cap rules as the DELETE, and the same
 * outcome classes: 429/5xx/timeouts/connection failures TRANSIENT, 401/403
 * and other 4xx REFUSED, certificate failure and 3xx CONFIG, 404 ABSENT
 * (which for a read means "not there, or this credential cannot see it").
 * A 200 is PS_OUT_OK only when its body parses strictly (one JSON object, no
 * trailing bytes, every field used of the right type); any other 200 (and
 * any other 2xx) is PS_OUT_TRANSIENT with a message that says what was wrong,
 * so that a caller can never mistake a malformed answer for a result.
 *
 * The variants without "_once" (and the list calls with opts->retry) retry a
 * transient answer like ps_client_remove: up to cfg->retries attempts,
 * exponential backoff with full jitter, Retry-After honoured (capped), never
 * past the deadline. The "_once" variants (and opts->retry = 0) make one
 * request and hand a 429 (r->retry_after) to the caller, as the queue drain
 * wants. */

#define PS_MEMBER_ID_MAX 64
#define PS_NAME_MAX      255 /* longer names are cut (at a UTF-8 boundary) */
#define PS_ROLE_MAX      32
#define PS_PER_PAGE_MAX  100 /* the API's limit for per_page */

typedef struct ps_member {
    char id[PS_MEMBER_ID_MAX + 1]; /* the membership id (not used in requests) */
    char user_id[PS_ID_MAX + 1];   /* user.id: what DELETE .../members/{id} takes */
    char email[PS_EMAIL_MAX + 1];  /* user.email as the API has it */
    char name[PS_NAME_MAX + 1];    /* user.name (else display_name), may be "" */
    char role[PS_ROLE_MAX + 1];    /* "member", "admin", ... */
    int directory_managed;         /* user.directory_managed: 1, 0, -1 when null or absent */
} ps_member_t;

/* GET BASE/organizations/ORG/members/USER_ID. PS_OUT_OK (with *m filled) only
 * for a 200 whose body is a well-formed membership whose user.id is exactly
 * user_id; PS_OUT_ABSENT for a 404 (ambiguous: the caller confirms that the
 * credential can read the member list, ps_client_probe_members); the other
 * classes as above. *m is zeroed unless the outcome is PS_OUT_OK. */
ps_outcome_t ps_client_get_member(ps_client_t *c, const char *org, const char *user_id,
                                  double deadline, ps_member_t *m, ps_result_t *r);
ps_outcome_t ps_client_get_member_once(ps_client_t *c, const char *org, const char *user_id,
                                       double deadline, ps_member_t *m, ps_result_t *r);

/* One page of the member list, parsed. */
typedef struct ps_member_page {
    ps_member_t *members; /* malloc'd, n of them; ps_member_page_free */
    size_t n;
    long current_page;
    long next_page;   /* 0 on the last page */
    long total_count; /* -1 when the API did not say */
} ps_member_page_t;
void ps_member_page_free(ps_member_page_t *pg);

#define PS_LIST_MAX_PAGES 2000                 /* 200,000 members at 100 a page */
#define PS_LIST_MAX_BYTES (256L * 1024 * 1024) /* all pages of one list together */
#define PS_PAGE_MAX_BYTES (1L * 1024 * 1024)   /* one page */

typedef struct ps_list_opts {
    const char *q;    /* the API's search filter (a prefix of an email or a name);
                       * NULL or "" for every member */
    int per_page;     /* 1..PS_PER_PAGE_MAX; 0 = PS_PER_PAGE_MAX */
    int retry;        /* 1: retry each page's transient failures (see above) */
    long max_pages;   /* 0 = PS_LIST_MAX_PAGES */
    size_t max_bytes; /* 0 = PS_LIST_MAX_BYTES */
    double deadline;  /* ps_now() value; 0 = none */
} ps_list_opts_t;

/* GET BASE/organizations/ORG/members?q=Q&page=PAGE&per_page=N: one page.
 * PS_OUT_OK with *pg filled (free it with ps_member_page_free) when the
 * answer is a well-formed page whose current_page is PAGE; *pg is empty
 * otherwise. 404: PS_OUT_ABSENT - the organization does not exist, or the
 * credential cannot see it or lacks read_organization (r->message says so). */
ps_outcome_t ps_client_list_page(ps_client_t *c, const char *org, const ps_list_opts_t *o,
                                 long page, ps_member_page_t *pg, ps_result_t *r);

/* Called once per member of the list, in the API's order; `m` is valid
 * during the call only. Non-zero stops the walk. */
typedef int (*ps_member_cb)(void *arg, const ps_member_t *m);

/* The whole member list (of those matching o->q): page 1, then next_page
 * until the API says there is none, every page checked as above. Bounded:
 * at most o->max_pages pages and o->max_bytes bytes of answers, never past
 * o->deadline. Paced like `retry`: each request starts at least
 * 1/api.rate_limit seconds (with a 2% margin) after this client's previous
 * one, over the one connection.
 * PS_OUT_OK only when every page was read and handed to cb (r->pages pages,
 * r->attempts requests). Anything else means the list is incomplete and
 * must not be used as if it were the whole list: ABSENT (404 on a page),
 * REFUSED, CONFIG, or TRANSIENT (also when a bound was reached, a page was
 * malformed, next_page did not move forward, or cb stopped the walk; the
 * message says which). cb may already have seen some members then. */
ps_outcome_t ps_client_list_members(ps_client_t *c, const char *org, const ps_list_opts_t *o,
                                    ps_member_cb cb, void *arg, ps_result_t *r);

/* The same, collecting the members into a malloc'd array (*out, *n; freed
 * with free(), NULL/0 unless PS_OUT_OK). */
ps_outcome_t ps_client_list_members_all(ps_client_t *c, const char *org, const ps_list_opts_t *o,
                                        ps_member_t **out, size_t *n, ps_result_t *r);

/* Can this credential read ORG's member list (read_organization)? The first
 * page with per_page=1. PS_OUT_OK: yes. PS_OUT_ABSENT (404): the
 * organization does not exist or the credential cannot see it or lacks
 * read_organization. PS_OUT_REFUSED: 401 (invalid credential), 403 and
 * other 4xx. TRANSIENT/CONFIG as above. This is what makes a 404 of
 * GET/DELETE .../members/{id} a confirmed "not a member". */
ps_outcome_t ps_client_probe_members(ps_client_t *c, const char *org, double deadline,
                                     ps_result_t *r);
ps_outcome_t ps_client_probe_members_once(ps_client_t *c, const char *org, double deadline,
                                          ps_result_t *r);

/* The one pacer of the command: a client sends at most floor(rate)
 * requests in any one second (one every 1/rate seconds below one a second),
 * counted from when each request left, and none before a 429's pause has
 * passed: a removal's GET and DELETE go back to back, a drain stays at the
 * rate, and no second holds more. A removal is one to three requests and a list one
 * request a page, so this, not the callers, bounds the request rate. A
 * client starts at api.rate_limit with a 2% margin; ps_client_set_pace
 * changes it (0: unpaced). A wait that would pass a request's deadline makes
 * that request TRANSIENT without sending it.
 * ps_client_pace_answer adapts the pace to an answer: a 429 halves it (not
 * below 0.1/s) and pauses for Retry-After (or 1/rate; at most 60 s); an
 * answer that settled a removal raises it by 10%, back up to the start. The
 * drain and the sender call it after each removal. */
void ps_client_set_pace(ps_client_t *c, double rate);
double ps_client_pace(const ps_client_t *c);
void ps_client_pace_answer(ps_client_t *c, const ps_result_t *r, int settled);

/* Number of new TCP connections this client has opened (for tests/bench). */
long ps_client_connects(const ps_client_t *c);

/* ---- pure helpers, unit-tested and fuzzed ---- */

/* The request URL: BASE/organizations/ORG/members/ID, path segments escaped
 * with %XX for anything outside [A-Za-z0-9_.~-] (and "." / ".." rejected);
 * in query mode "?delete_passwords=true&delete_service_tokens=false".
 * Returns a malloc'd string or NULL. */
char *ps_build_url(const char *base, const char *organization, const char *id, int flags_mode,
                   int delete_passwords, int delete_service_tokens);

/* The list URL: BASE/organizations/ORG/members?q=Q&page=P&per_page=N, the
 * organization escaped as in ps_build_url, q escaped for a query (anything
 * outside [A-Za-z0-9_.~-] as %XX: "+" and "@" too); no q= when q is NULL or
 * "". page >= 1, per_page 1..PS_PER_PAGE_MAX. malloc'd, or NULL. */
char *ps_build_list_url(const char *base, const char *organization, const char *q, long page,
                        int per_page);

/* Parsers of the read answers (pure, strict, fuzzed): the body is one JSON
 * object and nothing else (whitespace aside), every field we use has the
 * type the API documents, user.id passes ps_id_valid, strings hold no NUL.
 * 0, or -1 with a short reason in err (nothing of the body is copied into
 * it but field names and indexes). */
int ps_parse_member(const char *body, size_t len, ps_member_t *m, char *err, size_t errlen);
/* A list page. expect_page > 0: current_page must be exactly that.
 * next_page is an integer greater than current_page, or null. On success
 * pg->members is malloc'd (free with ps_member_page_free). */
int ps_parse_member_page(const char *body, size_t len, long expect_page, ps_member_page_t *pg,
                         char *err, size_t errlen);

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
