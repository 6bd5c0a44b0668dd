/* config.h - the configuration: /etc/planetscale/deprovision.conf and its
 * include_dir, as planetscale-deprovision.conf(5) describes them. */
#ifndef PS_CONFIG_H
#define PS_CONFIG_H

#include <stddef.h>

#define PS_DEFAULT_CONFIG        SYSCONFDIR "/planetscale/deprovision.conf"
#define PS_DEFAULT_QUEUE_DIR     LOCALSTATEDIR "/spool/planetscale-deprovision"
#define PS_DEFAULT_API_URL       "https://api.planetscale.com/v1"
#define PS_DEFAULT_SENDER_SOCKET "/run/planetscale-deprovision.sock"
#define PS_DEFAULT_SENDER_IDLE   300
#define PS_SPREAD_MAX            86400 /* api.spread: at most a day */
#define PS_METRICS_PATH_MAX      1024  /* metrics.textfile */

/* How long a deprovisioning hook (remove --hook: the userdel hook,
 * deluser.local) waits for the API before it leaves the recorded removal
 * pending for the sender or the retry timer: long enough for a cold TLS
 * connection, the GET and the DELETE (and a member-list probe) on a slow
 * link, short enough that a hanging API does not hold up userdel. */
#define PS_DEFAULT_HOOK_DEADLINE 5
#define PS_HOOK_DEADLINE_MAX     300

#define PS_DEFAULT_CONFIRM_RUNS     2
#define PS_DEFAULT_CONFIRM_INTERVAL 3600
#define PS_DEFAULT_MAX_REMOVALS     10
#define PS_DEFAULT_MAX_FRACTION     0.2

enum ps_flags_mode { PS_FLAGS_QUERY = 0, PS_FLAGS_BODY = 1 };
enum ps_unmapped { PS_UNMAPPED_IGNORE = 0, PS_UNMAPPED_ERROR = 1 };

typedef struct ps_user {
    char *login;
    char *id;                  /* NULL when the entry gives an email instead */
    char *email;               /* NULL when the entry gives an id (exactly one of the two) */
    char *organization;        /* NULL: the default organization */
    int delete_passwords;      /* -1: the default */
    int delete_service_tokens; /* -1: the default */
    char *file;                /* where it was defined */
    int line;
} ps_user_t;

typedef struct ps_config {
    char *path;         /* main file */
    char *organization; /* default organization, may be NULL */

    /* api */
    char *api_url;          /* no trailing '/' */
    char *auth_header;      /* complete "Authorization: ..." line: SECRET */
    char *token_file;       /* the api.token_file it was read from, or NULL */
    int auth_is_oauth;      /* 1 when it is Bearer */
    int flags_mode;         /* enum ps_flags_mode */
    double timeout;         /* seconds, total per request */
    double connect_timeout; /* seconds */
    int retries;            /* attempts before the request is queued, >= 1 */
    double rate_limit;      /* requests per second when draining */
    double spread;          /* api.spread: seconds over which a first attempt is spread, 0 = none */
    char *ca_file;          /* may be NULL */
    char *ca_pem;           /* ca_file's content, read when loaded (NUL-terminated) */
    size_t ca_pem_len;
    char *proxy; /* may be NULL: then no proxy at all */

    int def_delete_passwords;
    int def_delete_service_tokens;
    int unmapped; /* enum ps_unmapped */

    ps_user_t *users; /* sorted by login after load */
    size_t nusers;
    char *include_dir; /* may be NULL */

    char *queue_dir;
    int max_age_days;

    char *sender_socket; /* "" = never hand removals to a sender */
    int sender_idle;     /* seconds `serve` waits idle before it exits, 0 = never */

    char **pam_services;
    size_t npam_services;

    int expired_grace_days; /* only_expired waits this many days past sp_expire */
    double hook_deadline;   /* seconds remove --hook waits for the API */

    /* reconcile: when a mapped account missing from NSS counts as gone */
    struct {
        int confirm_runs;      /* runs in a row that must find it missing, 1..100 */
        long confirm_interval; /* seconds between two runs that count, 0..30 days */
        long max_removals;     /* more candidates than this: act on none */
        double max_fraction;   /* or more than this share of the mapped logins (>= 10) */
    } reconcile;

    char *metrics_textfile; /* metrics.textfile: the node_exporter textfile, NULL = off */
} ps_config_t;

/* What one login resolves to. Strings point into the config. */
typedef struct ps_mapping {
    const char *login;
    const char *organization;
    const char *id;    /* NULL when the user entry gives an email: resolve it (members.h) */
    const char *email; /* the entry's email, or NULL */
    int delete_passwords;
    int delete_service_tokens;
} ps_mapping_t;

/* Load and validate `path` (NULL: PS_DEFAULT_CONFIG) and its include_dir.
 * Returns 0 and *out on success. On failure returns -1 with a message
 * naming the file and line ("FILE:LINE: ...") in err; no secret value is
 * ever copied into err. Rules: unknown keys, wrong types, duplicate logins,
 * invalid ids/organizations (ps_id_valid), a non-https URL to anything but
 * a loopback address, a secret in a file that group/others can read, more
 * than one credential form, no credential at all: all errors. A config with
 * no users and no credential is valid ("nothing to do") when `require_auth`
 * is 0. */
int ps_config_load(ps_config_t **out, const char *path, int require_auth, char *err, size_t errlen);

/* The same, bounded by `deadline` (a ps_now() value; 0 = none): checked
 * before each file is opened and while include_dir is listed; past it, the
 * load fails with a message that names the file or directory and how far it
 * got. (One open or read that blocks in the kernel, on a hung network file
 * system, is not interrupted: see config.c.) Files the configuration names
 * are never opened in a way that can block on what they are, and must be
 * regular files. */
int ps_config_load_until(ps_config_t **out, const char *path, int require_auth, double deadline,
                         char *err, size_t errlen);
void ps_config_free(ps_config_t *cfg);

/* Resolve a login. Returns 0 with *m filled, 1 when unmapped, -1 when the
 * mapped user has no organization (none given and no default). A user entry
 * that gives an email has m->id NULL and m->email set: the id comes from
 * ps_resolve_email (members.h). */
int ps_config_map(const ps_config_t *cfg, const char *login, ps_mapping_t *m);

/* 1 when `service` is listed in pam_services. */
int ps_config_pam_service_allowed(const ps_config_t *cfg, const char *service);

/* 1 when the URL's host is a loopback address (127.0.0.0/8, ::1, localhost). */
int ps_url_is_loopback_http(const char *url);

#endif
