/* planetscale-deprovision - remove departing users' PlanetScale memberships.
 * main() and the subcommands; all the work is in the core (remove.c,
 * drain.c, config.c, api.c, queue.c). */
#include <errno.h>
#include <getopt.h>
#include <shadow.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "drain.h"
#include "helper.h"
#include "members.h"
#include "remove.h"
#include "sender_client.h"
#include "sender_serve.h"
#include "unresolved.h"

#ifndef PS_VERSION
#define PS_VERSION "0.0.0"
#endif

#define EX_OK_     0
#define EX_USAGE_  64
#define EX_CONFIG_ 78

static const char usage_text[] =
    "Usage: planetscale-deprovision [--config FILE] [--verbose] [--json] COMMAND [ARGS]\n"
    "\n"
    "Removes departing users' PlanetScale organization memberships.\n"
    "\n"
    "Commands:\n"
    "  remove [--dry-run] [--no-queue] [--deadline SECONDS] LOGIN...\n"
    "                                            remove these logins' memberships\n"
    "                                            (LOGIN \"-\" reads logins from stdin)\n"
    "  retry [--deadline SECONDS]                drain the queue of removals that could\n"
    "                                            not complete (run by a systemd timer),\n"
    "                                            first queueing the logins recorded while\n"
    "                                            this configuration did not load\n"
    "  queue                                     list pending, dead-letter and unresolved\n"
    "                                            entries\n"
    "  check [--online]                          validate the configuration and permissions;\n"
    "                                            --online also asks the API whether the token\n"
    "                                            can read each organization's member list\n"
    "  lookup LOGIN...                           show what would be sent (no network)\n"
    "  members [--organization ORG]              list the members of each configured\n"
    "                                            organization (or ORG) with email, user id,\n"
    "                                            role, directory-managed and mapped login\n"
    "  serve [--socket PATH]                     keep one API connection warm and send the\n"
    "                                            removals that remove and the PAM module hand\n"
    "                                            to it (run by systemd socket activation)\n"
    "\n"
    "Options (before or after the command):\n"
    "  -c, --config FILE   configuration file (default " PS_DEFAULT_CONFIG ")\n"
    "  -v, --verbose       more detail on stderr, including the audit lines\n"
    "      --json          machine-readable output on stdout\n"
    "  -h, --help          this help\n"
    "  -V, --version       the version\n"
    "\n"
    "Exit status: 0 done (removed, already absent, or unmapped and ignored);\n"
    "75 queued for retry; 77 refused by the API; 78 configuration error;\n"
    "64 usage error; 1 anything else.\n";

typedef struct opts {
    const char *config;
    int verbose;
    int json;
    int dry_run;
    int no_queue;
    int online;
    int debug;
    double deadline; /* seconds from now, 0 = none */
    const char *mode;
    const char *service;
    const char *socket;
    long expire_day; /* pam-helper --expire-day: the sp_expire the module saw */
    int have_expire; /* --expire-day given */
    long grace;      /* pam-helper --expired-grace-days, -1 = the configuration's */
    const char *organization;
    const char *command;
    char **args; /* positional arguments after the command */
    int nargs;
} opts_t;

static int usage_error(const char *fmt, ...) PS_PRINTF(1, 2);

static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("planetscale-deprovision: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'planetscale-deprovision --help'.\n", stderr);
    return EX_USAGE_;
}

static int parse_seconds(const char *s, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if(errno || end == s || *end || v <= 0 || v > 86400 * 7)
        return -1;
    *out = v;
    return 0;
}

/* Global options are accepted anywhere; "--" ends option parsing. */
static int parse_args(int argc, char **argv, opts_t *o)
{
    enum {
        O_DRY = 256,
        O_NOQUEUE,
        O_JSON,
        O_DEADLINE,
        O_MODE,
        O_SERVICE,
        O_DEBUG,
        O_SOCKET,
        O_EXPIRE_DAY,
        O_GRACE,
        O_ONLINE,
        O_ORGANIZATION
    };
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' },
        { "verbose", no_argument, NULL, 'v' },
        { "json", no_argument, NULL, O_JSON },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "dry-run", no_argument, NULL, O_DRY },
        { "no-queue", no_argument, NULL, O_NOQUEUE },
        { "deadline", required_argument, NULL, O_DEADLINE },
        { "mode", required_argument, NULL, O_MODE },
        { "service", required_argument, NULL, O_SERVICE },
        { "debug", no_argument, NULL, O_DEBUG },
        { "socket", required_argument, NULL, O_SOCKET },
        { "expire-day", required_argument, NULL, O_EXPIRE_DAY },
        { "expired-grace-days", required_argument, NULL, O_GRACE },
        { "online", no_argument, NULL, O_ONLINE },
        { "organization", required_argument, NULL, O_ORGANIZATION },
        { NULL, 0, NULL, 0 }
    };
    int c;

    opterr = 0;
    /* GNU getopt permutes: options may come before or after the command. */
    while((c = getopt_long(argc, argv, ":c:vhV", longopts, NULL)) != -1) {
        switch(c) {
        case 'c': o->config = optarg; break;
        case 'v': o->verbose = 1; break;
        case O_JSON: o->json = 1; break;
        case 'h': fputs(usage_text, stdout); return 1;
        case 'V': printf("planetscale-deprovision %s\n", PS_VERSION); return 1;
        case O_DRY: o->dry_run = 1; break;
        case O_NOQUEUE: o->no_queue = 1; break;
        case O_DEADLINE:
            if(parse_seconds(optarg, &o->deadline) != 0)
                return -usage_error("--deadline: not a number of seconds: %s", optarg);
            break;
        case O_MODE: o->mode = optarg; break;
        case O_SERVICE: o->service = optarg; break;
        case O_DEBUG: o->debug = 1; break;
        case O_SOCKET: o->socket = optarg; break;
        case O_EXPIRE_DAY: {
            char *end;

            errno = 0;
            o->expire_day = strtol(optarg, &end, 10);
            if(errno || end == optarg || *end)
                return -usage_error("--expire-day: not a number of days: %s", optarg);
            o->have_expire = 1;
            break;
        }
        case O_GRACE:
            if(ps_grace_parse(optarg, &o->grace) != 0)
                return -usage_error("--expired-grace-days: not a number of days from 0 to %d: %s",
                                    PS_GRACE_DAYS_MAX, optarg);
            break;
        case O_ONLINE: o->online = 1; break;
        case O_ORGANIZATION: o->organization = optarg; break;
        case ':': return -usage_error("option %s needs an argument", argv[optind - 1]);
        default: return -usage_error("unknown option: %s", argv[optind - 1]);
        }
    }
    /* arguments after "--" */
    while(optind < argc) {
        if(!o->command)
            o->command = argv[optind];
        else
            o->args[o->nargs++] = argv[optind];
        optind++;
    }
    return 0;
}

static int load_config(const opts_t *o, const ps_log_t *lg, int require_auth, ps_config_t **cfg)
{
    char err[1024];

    if(ps_config_load(cfg, o->config, require_auth, err, sizeof(err)) != 0) {
        ps_logf(lg, LOG_ERR, "configuration error: %s", err);
        return EX_CONFIG_;
    }
    return EX_OK_;
}

/* The next login from stdin (one per line, empty lines skipped), in *line
 * (getline's buffer, freed by the caller); NULL at the end. A line longer
 * than a login can be is reported as invalid, not split; a line with a NUL
 * byte is made invalid ("\n") rather than cut at the NUL. */
static char *next_stdin_login(char **line, size_t *cap)
{
    ssize_t len;

    while((len = getline(line, cap, stdin)) != -1) {
        char *l = *line;

        if(len > 0 && l[len - 1] == '\n')
            l[--len] = '\0';
        if(len > 0 && l[len - 1] == '\r')
            l[--len] = '\0';
        if(len == 0)
            continue;
        if((size_t)len != strlen(l)) /* embedded NUL */
            l[0] = '\n';
        return l;
    }
    return NULL;
}

/* The configuration could not be loaded, so LOGIN cannot be mapped; the
 * account may already be gone, so the request is recorded for `retry`
 * (unresolved.h) instead of being lost. Returns 1 when recorded. */
static int record_unresolved(const opts_t *o, const ps_log_t *lg, const char *login,
                             const char *service, const char *mode, json_object *arr)
{
    char elogin[PS_LOGIN_MAX * 4 + 8], err[1024] = "", eerr[1200], detail[1600];
    const char *dir = ps_unresolved_dir();
    ps_unresolved_t u;
    int ok;

    ps_escape(login, elogin, sizeof(elogin));
    memset(&u, 0, sizeof(u));
    if(!ps_login_valid(login)) {
        ok = 0;
        snprintf(err, sizeof(err), "invalid login name");
    } else {
        snprintf(u.login, sizeof(u.login), "%s", login);
        ps_unresolved_config_key(o->config, u.config);
        /* a service name we could not keep can never match pam_services */
        snprintf(u.service, sizeof(u.service), "%s",
                 !mode                     ? ""
                 : ps_login_valid(service) ? service
                                           : "(invalid)");
        snprintf(u.mode, sizeof(u.mode), "%s", mode ? mode : "");
        ok = ps_unresolved_record(dir, &u, err, sizeof(err)) == 0;
    }
    ps_escape(err, eerr, sizeof(eerr));
    if(ok)
        snprintf(detail, sizeof(detail),
                 "configuration could not be loaded; recorded in %s/%s "
                 "for retry",
                 dir, u.name);
    else
        snprintf(detail, sizeof(detail), "configuration could not be loaded; NOT recorded: %s",
                 eerr);
    ps_audit(lg, LOG_ERR, ok ? "recorded" : "failed", login, NULL, NULL, -1, -1, 0, detail);
    if(arr) {
        json_object *j = json_object_new_object();

        json_object_object_add(j, "login", json_object_new_string(login));
        json_object_object_add(j, "outcome", json_object_new_string(ok ? "recorded" : "config"));
        json_object_object_add(j, "exit", json_object_new_int(EX_CONFIG_));
        json_object_object_add(j, "message", json_object_new_string(detail));
        json_object_array_add(arr, j);
    } else if(lg->to_stderr) {
        if(ok)
            fprintf(stderr,
                    "planetscale-deprovision: %s: NOT removed yet: recorded in %s/%s; "
                    "`planetscale-deprovision retry` removes it once the configuration loads\n",
                    elogin, dir, u.name);
        else
            fprintf(stderr, "planetscale-deprovision: %s: NOT removed and NOT recorded: %s\n",
                    elogin, eerr);
    }
    return ok;
}

/* `remove` without a configuration: record every login (stdin too). */
static int remove_unresolved(const opts_t *o, const ps_log_t *lg)
{
    json_object *arr = o->json ? json_object_new_array() : NULL;
    char *line = NULL;
    size_t cap = 0;
    int i, rv = EX_CONFIG_;

    for(i = 0; i < o->nargs; i++) {
        if(strcmp(o->args[i], "-") == 0) {
            char *login;

            while((login = next_stdin_login(&line, &cap)) != NULL)
                if(!record_unresolved(o, lg, login, NULL, NULL, arr))
                    rv = 1;
        } else if(!record_unresolved(o, lg, o->args[i], NULL, NULL, arr)) {
            rv = 1;
        }
    }
    free(line);
    if(arr) {
        puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY |
                                                     JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(arr);
    }
    /* 78 when every login is kept for retry; 1 ("anything else") when one
     * could be neither removed nor recorded */
    return rv;
}

/* ------------------------------------------------------------ remove */

typedef struct out {
    const opts_t *o;
    json_object *arr;
} out_t;

static void report(out_t *out, const char *login, const ps_report_t *rep)
{
    char elogin[PS_LOGIN_MAX * 4 + 8], emsg[2048];

    ps_escape(login, elogin, sizeof(elogin));
    snprintf(emsg, sizeof(emsg), "%s", rep->message); /* built printable by the core */
    if(out->o->json) {
        json_object *j = json_object_new_object();

        json_object_object_add(j, "login", json_object_new_string(login));
        json_object_object_add(j, "outcome", json_object_new_string(ps_status_word(rep->status)));
        json_object_object_add(j, "exit", json_object_new_int(ps_status_exit(rep->status)));
        if(rep->mapped) {
            json_object_object_add(j, "organization",
                                   json_object_new_string(rep->map.organization));
            json_object_object_add(j, "id", json_object_new_string(rep->map.id));
            json_object_object_add(j, "delete_passwords",
                                   json_object_new_boolean(rep->map.delete_passwords));
            json_object_object_add(j, "delete_service_tokens",
                                   json_object_new_boolean(rep->map.delete_service_tokens));
        }
        if(rep->http_status)
            json_object_object_add(j, "http_status", json_object_new_int((int)rep->http_status));
        if(rep->message[0])
            json_object_object_add(j, "message", json_object_new_string(rep->message));
        json_object_array_add(out->arr, j);
        return;
    }
    switch(rep->status) {
    case PS_ST_REMOVED:
        printf("%s: removed from %s (user %s)%s%s\n", elogin, rep->map.organization, rep->map.id,
               rep->message[0] && !rep->http_status ? ": " : "",
               rep->message[0] && !rep->http_status ? emsg : "");
        break;
    case PS_ST_ABSENT:
        printf("%s: already absent from %s (user %s)\n", elogin, rep->map.organization,
               rep->map.id);
        break;
    case PS_ST_UNMAPPED:
        printf("%s: not mapped to a PlanetScale user, nothing to do\n", elogin);
        break;
    case PS_ST_DRYRUN:
        printf("%s: would remove user %s from %s (delete_passwords=%s, "
               "delete_service_tokens=%s)\n",
               elogin, rep->map.id, rep->map.organization,
               rep->map.delete_passwords ? "true" : "false",
               rep->map.delete_service_tokens ? "true" : "false");
        break;
    case PS_ST_QUEUED:
        fprintf(stderr, "planetscale-deprovision: %s: queued for retry: %s\n", elogin, emsg);
        break;
    case PS_ST_NOT_QUEUED:
        fprintf(stderr,
                "planetscale-deprovision: %s: NOT removed and not queued (--no-queue): "
                "%s\n",
                elogin, emsg);
        break;
    case PS_ST_UNKNOWN: fprintf(stderr, "planetscale-deprovision: %s: %s\n", elogin, emsg); break;
    case PS_ST_REFUSED:
        fprintf(stderr, "planetscale-deprovision: %s: refused by the API, not retried: %s\n",
                elogin, emsg);
        break;
    case PS_ST_CONFIG:
        fprintf(stderr, "planetscale-deprovision: %s: configuration error: %s\n", elogin, emsg);
        break;
    case PS_ST_INVALID: fprintf(stderr, "planetscale-deprovision: %s\n", emsg); break;
    case PS_ST_ERROR:
        fprintf(stderr, "planetscale-deprovision: %s: NOT removed: %s\n", elogin, emsg);
        break;
    }
}

static ps_status_t remove_one(ps_ctx_t *ctx, out_t *out, const char *login, ps_status_t worst)
{
    ps_report_t rep;
    ps_status_t st = ps_remove_login(ctx, login, &rep);

    report(out, login, &rep);
    return ps_status_worse(st, worst) ? st : worst;
}

/* Removes each login read from stdin. */
static ps_status_t remove_stdin(ps_ctx_t *ctx, out_t *out, ps_status_t worst)
{
    char *line = NULL, *login;
    size_t cap = 0;

    while((login = next_stdin_login(&line, &cap)) != NULL)
        worst = remove_one(ctx, out, login, worst);
    free(line);
    return worst;
}

static int cmd_remove(const opts_t *o, const ps_log_t *lg, const ps_config_t *cfg)
{
    ps_ctx_t ctx;
    out_t out = { o, NULL };
    ps_status_t worst = PS_ST_REMOVED;
    int i;

    memset(&ctx, 0, sizeof(ctx));
    ctx.cfg = cfg;
    ctx.log = lg;
    ctx.dry_run = o->dry_run;
    ctx.no_queue = o->no_queue;
    ctx.handoff = ps_sender_handoff;
    if(o->deadline > 0)
        ctx.deadline = ps_now() + o->deadline;
    if(o->json)
        out.arr = json_object_new_array();

    for(i = 0; i < o->nargs; i++) {
        if(strcmp(o->args[i], "-") == 0)
            worst = remove_stdin(&ctx, &out, worst);
        else
            worst = remove_one(&ctx, &out, o->args[i], worst);
    }
    ps_ctx_release(&ctx);
    if(out.arr) {
        puts(json_object_to_json_string_ext(out.arr, JSON_C_TO_STRING_PRETTY |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(out.arr);
    }
    return ps_status_exit(worst);
}

/* ------------------------------------------------------------ pam-helper */

static const char *fmt_day(long days, char *buf, size_t len)
{
    time_t t = (time_t)(days < 0 || days > 10000000 ? 0 : days) * 86400;
    struct tm tm;

    if(days < 0 || days > 10000000 || !gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d", &tm))
        snprintf(buf, len, "day %ld", days);
    return buf;
}

/* only_expired: the helper's own reading of LOGIN's shadow entry (the
 * module's --expire-day is only what it saw, and anyone who can run this
 * command could pass one). 0 with *expire, or -1 (logged) when there is no
 * readable entry. */
static int helper_read_expiry(const opts_t *o, const ps_log_t *lg, long *expire)
{
    char elogin[PS_LOGIN_MAX * 4 + 8];
    struct spwd *sp;

    ps_escape(o->args[0], elogin, sizeof(elogin));
    errno = 0;
    sp = getspnam(o->args[0]);
    if(!sp) {
        int e = errno;

        ps_logf(lg, LOG_NOTICE,
                "pam-helper (%s): user %s: no readable shadow entry%s%s: not acting", o->mode,
                elogin, e ? ": " : "", e ? strerror(e) : "");
        return -1;
    }
    *expire = sp->sp_expire;
    if(o->have_expire && o->expire_day != *expire)
        ps_logf(lg, LOG_DEBUG,
                "pam-helper (%s): user %s: shadow expiry changed since the module read it "
                "(%ld, now %ld): deciding on %ld",
                o->mode, elogin, o->expire_day, *expire, *expire);
    return 0;
}

/* 1 when an account that expired on day `expire` is `grace` days past it;
 * else logs when the removal will happen and returns 0. */
static int helper_due(const opts_t *o, const ps_log_t *lg, long expire, long grace,
                      const char *from)
{
    char elogin[PS_LOGIN_MAX * 4 + 8], d1[32], d2[32];
    time_t now = time(NULL);

    ps_escape(o->args[0], elogin, sizeof(elogin));
    if(!ps_shadow_expired(expire, now)) {
        ps_logf(lg, LOG_INFO,
                "pam-helper (%s): user %s: account not expired (any more): not acting", o->mode,
                elogin);
        return 0;
    }
    if(!ps_shadow_due(expire, grace, now)) {
        ps_logf(lg, LOG_INFO,
                "pam-helper (%s): user %s: account expired on %s; removal from PlanetScale waits "
                "until %s (expired_grace_days = %ld, %s)",
                o->mode, elogin, fmt_day(expire, d1, sizeof(d1)),
                fmt_day(expire + grace, d2, sizeof(d2)), grace, from);
        return 0;
    }
    ps_logf(lg, LOG_INFO,
            "pam-helper (%s): user %s: account expired on %s, %ld days ago (expired_grace_days = "
            "%ld, %s): acting",
            o->mode, elogin, fmt_day(expire, d1, sizeof(d1)),
            expire < 0 ? ps_shadow_today(now) : ps_shadow_today(now) - expire, grace, from);
    return 1;
}

static int cmd_pam_helper(const opts_t *o, ps_log_t *lg)
{
    ps_config_t *cfg = NULL;
    ps_ctx_t ctx;
    ps_report_t rep;
    const char *word = PS_HELPER_ERROR;
    char esvc[256];
    ps_status_t st;
    long expire = -1;
    int expired;

    lg->to_stderr = 0;
    lg->verbose = o->debug;
    if(!o->mode || o->nargs != 1 ||
       (strcmp(o->mode, PS_MODE_SERVICE) && strcmp(o->mode, PS_MODE_EXPIRED) &&
        strcmp(o->mode, PS_MODE_CLOSE))) {
        ps_logf(lg, LOG_ERR, "pam-helper: bad invocation");
        goto out;
    }
    expired = strcmp(o->mode, PS_MODE_EXPIRED) == 0;
    if(expired) {
        /* shadow before the configuration, as in the module */
        word = PS_HELPER_NOT_DUE;
        if(helper_read_expiry(o, lg, &expire) != 0 ||
           (o->grace >= 0 && !helper_due(o, lg, expire, o->grace, "module argument")))
            goto out;
    }
    if(load_config(o, lg, 0, &cfg) != EX_OK_) {
        word = PS_HELPER_CONFIG;
        /* the account still exists and the next pass of the account stack
         * asks again: record only what would be due under the default */
        if(expired && o->grace < 0 &&
           !helper_due(o, lg, expire, PS_DEFAULT_EXPIRED_GRACE_DAYS,
                       "the default, as the configuration does not load")) {
            ps_logf(lg, LOG_ERR,
                    "pam-helper (%s): not recorded while the configuration does "
                    "not load",
                    o->mode);
            goto out;
        }
        record_unresolved(o, lg, o->args[0], o->service ? o->service : "", o->mode, NULL);
        goto out;
    }
    if(expired && o->grace < 0 &&
       !helper_due(o, lg, expire, cfg->expired_grace_days, "from the configuration")) {
        word = PS_HELPER_NOT_DUE;
        goto out;
    }
    if(strcmp(o->mode, PS_MODE_SERVICE) == 0 &&
       !ps_config_pam_service_allowed(cfg, o->service ? o->service : "")) {
        ps_logf(lg, LOG_NOTICE, "not acting: PAM service \"%s\" is not in pam_services",
                ps_escape(o->service ? o->service : "", esvc, sizeof(esvc)));
        word = PS_HELPER_IGNORED;
        goto out;
    }
    memset(&ctx, 0, sizeof(ctx));
    ctx.cfg = cfg;
    ctx.log = lg;
    ctx.deadline = ps_now() + (o->deadline > 0 ? o->deadline : PS_HELPER_DEFAULT_TIMEOUT);
    ctx.handoff = ps_sender_handoff;
    st = ps_remove_login(&ctx, o->args[0], &rep);
    ps_ctx_release(&ctx);
    word = st == PS_ST_INVALID || st == PS_ST_NOT_QUEUED ? PS_HELPER_ERROR : ps_status_word(st);
    if(st != PS_ST_REMOVED && st != PS_ST_ABSENT && st != PS_ST_UNMAPPED && rep.message[0]) {
        char emsg[1024];

        ps_logf(lg, st == PS_ST_QUEUED ? LOG_WARNING : LOG_ERR, "pam-helper (%s): %s: %s", o->mode,
                ps_status_word(st), ps_escape(rep.message, emsg, sizeof(emsg)));
    }
out:
    printf("%s\n", word);
    fflush(stdout);
    ps_config_free(cfg);
    return 0;
}

/* ------------------------------------------------------------ lookup */

static int cmd_lookup(const opts_t *o, const ps_config_t *cfg)
{
    json_object *arr = o->json ? json_object_new_array() : NULL;
    ps_status_t worst = PS_ST_REMOVED;
    int i;

    for(i = 0; i < o->nargs; i++) {
        const char *login = o->args[i];
        char elogin[PS_LOGIN_MAX * 4 + 8];
        ps_mapping_t m;
        ps_status_t st;
        char *url = NULL, *body = NULL;
        int rc;

        ps_escape(login, elogin, sizeof(elogin));
        if(!ps_login_valid(login)) {
            st = PS_ST_INVALID;
            fprintf(stderr, "planetscale-deprovision: invalid login name \"%s\"\n", elogin);
        } else if((rc = ps_config_map(cfg, login, &m)) == 1) {
            st = cfg->unmapped == PS_UNMAPPED_ERROR ? PS_ST_UNKNOWN : PS_ST_UNMAPPED;
            if(!o->json)
                printf("%s: not mapped%s\n", elogin,
                       st == PS_ST_UNKNOWN ? " (unmapped = \"error\")" : ", would be ignored");
        } else if(rc < 0) {
            st = PS_ST_CONFIG;
            fprintf(stderr, "planetscale-deprovision: %s: no organization\n", elogin);
        } else {
            st = PS_ST_DRYRUN;
            url = ps_build_url(cfg->api_url, m.organization, m.id, cfg->flags_mode,
                               m.delete_passwords, m.delete_service_tokens);
            if(cfg->flags_mode == PS_FLAGS_BODY)
                body = ps_build_body(m.delete_passwords, m.delete_service_tokens);
            if(!o->json) {
                printf("%s:\n  organization: %s\n  user id: %s\n  delete_passwords: %s\n"
                       "  delete_service_tokens: %s\n  request: DELETE %s\n",
                       elogin, m.organization, m.id, m.delete_passwords ? "true" : "false",
                       m.delete_service_tokens ? "true" : "false", url ? url : "?");
                if(body)
                    printf("  body: %s\n", body);
                printf("  authorization: %s\n", !cfg->auth_header    ? "none configured"
                                                : cfg->auth_is_oauth ? "OAuth token (Bearer)"
                                                                     : "service token");
            }
        }
        if(arr) {
            json_object *j = json_object_new_object();

            json_object_object_add(j, "login", json_object_new_string(login));
            json_object_object_add(
                j, "outcome",
                json_object_new_string(st == PS_ST_DRYRUN ? "mapped" : ps_status_word(st)));
            if(st == PS_ST_DRYRUN) {
                json_object_object_add(j, "organization", json_object_new_string(m.organization));
                json_object_object_add(j, "id", json_object_new_string(m.id));
                json_object_object_add(j, "delete_passwords",
                                       json_object_new_boolean(m.delete_passwords));
                json_object_object_add(j, "delete_service_tokens",
                                       json_object_new_boolean(m.delete_service_tokens));
                json_object_object_add(j, "method", json_object_new_string("DELETE"));
                json_object_object_add(j, "url", json_object_new_string(url ? url : ""));
                json_object_object_add(j, "body", body ? json_object_new_string(body) : NULL);
            }
            json_object_array_add(arr, j);
        }
        free(url);
        free(body);
        if(ps_status_worse(st, worst))
            worst = st;
    }
    if(arr) {
        puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY |
                                                     JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(arr);
    }
    return ps_status_exit(worst);
}

/* ------------------------------------------------------------ check */

/* `check --online`: asks the API, for each organization the configuration
 * names, whether the credential can read its member list (the first page,
 * per_page=1). write_organization cannot be tried without removing someone.
 * Prints a line per organization (text), or adds "online" and "ok" to j.
 * Returns 0, or the exit status of the worst answer: 78 (TLS, redirect),
 * 77 (401, 403, 404), 75 (unreachable, 429, 5xx), 1 (no client). */
static int check_online(const opts_t *o, const ps_log_t *lg, const ps_config_t *cfg, json_object *j)
{
    const char **orgs = NULL;
    ps_client_t *c = NULL;
    json_object *arr = NULL;
    double deadline = o->deadline > 0 ? ps_now() + o->deadline : 0;
    char err[1024], eerr[1200], what[1024];
    size_t n = 0, i;
    int rv = EX_OK_, invalid = 0;

    if(ps_config_organizations(cfg, &orgs, &n) != 0) {
        ps_logf(lg, LOG_ERR, "check --online: out of memory");
        return 1;
    }
    if(j)
        arr = json_object_new_array();
    if(n == 0 && !j)
        printf("  online: no organization configured, nothing to ask\n");
    if(n > 0 && !(c = ps_client_new(cfg, err, sizeof(err)))) {
        ps_logf(lg, LOG_ERR, "check --online: %s", ps_escape(err, eerr, sizeof(eerr)));
        rv = 1;
        n = 0;
    }
    for(i = 0; i < n; i++) {
        ps_result_t r;
        ps_outcome_t out;
        int code;

        if(invalid) {
            /* a token the API does not accept fails alike everywhere */
            out = PS_OUT_REFUSED;
            memset(&r, 0, sizeof(r));
            r.http_status = 401;
        } else {
            out = ps_client_probe_members(c, orgs[i], deadline, &r);
        }
        invalid = out == PS_OUT_REFUSED && r.http_status == 401;
        ps_online_explain(orgs[i], out, &r, what, sizeof(what));
        code = out == PS_OUT_OK          ? EX_OK_
               : out == PS_OUT_TRANSIENT ? 75
               : out == PS_OUT_CONFIG    ? EX_CONFIG_
                                         : 77;
        if(code > rv)
            rv = code;
        if(arr) {
            json_object *e = json_object_new_object();

            json_object_object_add(e, "organization", json_object_new_string(orgs[i]));
            json_object_object_add(e, "ok", json_object_new_boolean(out == PS_OUT_OK));
            json_object_object_add(e, "outcome", json_object_new_string(ps_outcome_name(out)));
            if(r.http_status)
                json_object_object_add(e, "http_status", json_object_new_int((int)r.http_status));
            json_object_object_add(e, "message", json_object_new_string(what));
            json_object_array_add(arr, e);
        } else {
            printf("  online: %s: %s: %s\n", orgs[i], out == PS_OUT_OK ? "OK" : "FAILED", what);
            if(out != PS_OUT_OK)
                ps_logf(lg, LOG_ERR, "check --online: %s: %s", orgs[i], what);
        }
    }
    if(c && !j)
        printf("  online: write_organization (needed to remove members) is not checked: only a "
               "removal can show it\n");
    if(j) {
        json_object_object_add(j, "online", arr);
        if(rv != EX_OK_)
            json_object_object_add(j, "ok", json_object_new_boolean(0));
    }
    ps_client_free(c);
    free(orgs);
    return rv;
}

static int cmd_check(const opts_t *o, const ps_log_t *lg, const ps_config_t *cfg)
{
    char err[1024];
    ps_queue_t *q = NULL;
    ps_qentry_t *pend = NULL, *dead = NULL;
    size_t npend = 0, ndead = 0;
    char smsg[512], mine[PS_UNRESOLVED_PATH_MAX];
    ps_unresolved_t *unres = NULL;
    size_t nunres = 0, nmine = 0, i;
    int rv = EX_OK_, sender;

    if(ps_queue_open(&q, cfg->queue_dir, err, sizeof(err)) != 0) {
        ps_logf(lg, LOG_ERR, "queue: %s", err);
        return EX_CONFIG_;
    }
    if(ps_queue_list(q, 0, &pend, &npend, NULL, NULL, err, sizeof(err)) != 0 ||
       ps_queue_list(q, 1, &dead, &ndead, NULL, NULL, err, sizeof(err)) != 0) {
        ps_logf(lg, LOG_ERR, "queue: %s", err);
        rv = EX_CONFIG_;
        goto out;
    }
    if(ps_unresolved_list(ps_unresolved_dir(), &unres, &nunres, NULL, err, sizeof(err)) != 0) {
        ps_logf(lg, LOG_ERR, "unresolved removals: %s", err);
        rv = EX_CONFIG_;
        goto out;
    }
    ps_unresolved_config_key(cfg->path, mine);
    for(i = 0; i < nunres; i++) {
        char theirs[PS_UNRESOLVED_PATH_MAX];

        ps_unresolved_config_key(unres[i].config, theirs);
        nmine += strcmp(theirs, mine) == 0;
    }
    sender = ps_sender_probe(cfg, smsg, sizeof(smsg));
    if(o->json) {
        json_object *j = json_object_new_object();

        json_object_object_add(j, "config", json_object_new_string(cfg->path));
        json_object_object_add(j, "ok", json_object_new_boolean(1));
        json_object_object_add(j, "users", json_object_new_int64((int64_t)cfg->nusers));
        json_object_object_add(j, "api_url", json_object_new_string(cfg->api_url));
        json_object_object_add(
            j, "auth", json_object_new_string(cfg->auth_is_oauth ? "oauth" : "service-token"));
        json_object_object_add(j, "queue_dir", json_object_new_string(cfg->queue_dir));
        json_object_object_add(j, "pending", json_object_new_int64((int64_t)npend));
        json_object_object_add(j, "dead", json_object_new_int64((int64_t)ndead));
        json_object_object_add(j, "unresolved", json_object_new_int64((int64_t)nmine));
        json_object_object_add(j, "unresolved_other_config",
                               json_object_new_int64((int64_t)(nunres - nmine)));
        json_object_object_add(j, "sender_socket", json_object_new_string(cfg->sender_socket));
        json_object_object_add(j, "sender",
                               json_object_new_string(sender == 0  ? "running"
                                                      : sender < 0 ? "disabled"
                                                                   : "not-used"));
        if(o->online) {
            int orv = check_online(o, lg, cfg, j);

            rv = orv > rv ? orv : rv;
        }
        puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY |
                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(j);
    } else {
        printf("%s: OK\n  users mapped: %zu\n  default organization: %s\n  api: %s (%s, "
               "cleanup flags as %s)\n  queue: %s (%zu pending, %zu dead letters)\n",
               cfg->path, cfg->nusers, cfg->organization ? cfg->organization : "(none)",
               cfg->api_url, cfg->auth_is_oauth ? "OAuth token" : "service token",
               cfg->flags_mode == PS_FLAGS_BODY ? "a JSON body" : "query parameters",
               cfg->queue_dir, npend, ndead);
        if(sender < 0)
            printf("  sender: %s\n", smsg);
        else
            printf("  sender: %s: %s\n", cfg->sender_socket, smsg);
        if(nunres)
            printf("  unresolved: %zu recorded while this configuration could not be loaded "
                   "(`retry` queues them), %zu for other configurations (%s)\n",
                   nmine, nunres - nmine, ps_unresolved_dir());
        if(o->online) {
            int orv = check_online(o, lg, cfg, NULL);

            rv = orv > rv ? orv : rv;
        }
    }
out:
    free(unres);
    free(pend);
    free(dead);
    ps_queue_close(q);
    return rv;
}

/* ------------------------------------------------------------ members */

/* One organization's member list, as read. */
typedef struct org_list {
    const char *org;
    ps_member_t *m;
    size_t n;
    ps_login_index_t *ix;
} org_list_t;

static const char *dm_word(int dm)
{
    return dm > 0 ? "yes" : dm == 0 ? "no" : "-";
}

static void members_text(const org_list_t *lists, size_t nlists)
{
    size_t wo = strlen("ORGANIZATION"), we = strlen("EMAIL"), wi = strlen("USER ID"), i, k;
    size_t wr = strlen("ROLE"), total = 0, mapped = 0;
    char buf[PS_EMAIL_MAX * 4 + 8];

    for(i = 0; i < nlists; i++) {
        if(strlen(lists[i].org) > wo)
            wo = strlen(lists[i].org);
        for(k = 0; k < lists[i].n; k++) {
            const ps_member_t *m = &lists[i].m[k];

            ps_escape(m->email, buf, sizeof(buf));
            we = strlen(buf) > we ? strlen(buf) : we;
            wi = strlen(m->user_id) > wi ? strlen(m->user_id) : wi;
            ps_escape(m->role, buf, sizeof(buf));
            wr = strlen(buf) > wr ? strlen(buf) : wr;
        }
    }
    printf("%-*s  %-*s  %-*s  %-*s  %-9s  %s\n", (int)wo, "ORGANIZATION", (int)we, "EMAIL", (int)wi,
           "USER ID", (int)wr, "ROLE", "DIRECTORY", "LOGIN");
    for(i = 0; i < nlists; i++) {
        for(k = 0; k < lists[i].n; k++) {
            const ps_member_t *m = &lists[i].m[k];
            const char *logins[8];
            char erole[PS_ROLE_MAX * 4 + 8];
            size_t nl = ps_login_index_find(lists[i].ix, m, logins, 8), j;

            printf("%-*s  %-*s  %-*s  %-*s  %-9s  ", (int)wo, lists[i].org, (int)we,
                   ps_escape(m->email, buf, sizeof(buf)), (int)wi, m->user_id, (int)wr,
                   ps_escape(m->role, erole, sizeof(erole)), dm_word(m->directory_managed));
            for(j = 0; j < nl && j < 8; j++)
                printf("%s%s", j ? "," : "", logins[j]);
            printf("%s\n", nl == 0 ? "-" : nl > 8 ? ",..." : "");
            mapped += nl > 0;
        }
        total += lists[i].n;
    }
    printf("%zu members in %zu organization%s, %zu mapped to a login\n", total, nlists,
           nlists == 1 ? "" : "s", mapped);
}

static json_object *members_json(const org_list_t *lists, size_t nlists)
{
    json_object *arr = json_object_new_array();
    size_t i, k;

    for(i = 0; i < nlists; i++) {
        for(k = 0; k < lists[i].n; k++) {
            const ps_member_t *m = &lists[i].m[k];
            json_object *j = json_object_new_object();
            json_object *jl = json_object_new_array();
            const char *logins[64];
            size_t nl = ps_login_index_find(lists[i].ix, m, logins, 64), x;

            json_object_object_add(j, "organization", json_object_new_string(lists[i].org));
            json_object_object_add(j, "email", json_object_new_string(m->email));
            json_object_object_add(j, "user_id", json_object_new_string(m->user_id));
            json_object_object_add(j, "membership_id", json_object_new_string(m->id));
            json_object_object_add(j, "name", json_object_new_string(m->name));
            json_object_object_add(j, "role", json_object_new_string(m->role));
            json_object_object_add(
                j, "directory_managed",
                m->directory_managed < 0 ? NULL : json_object_new_boolean(m->directory_managed));
            for(x = 0; x < nl && x < 64; x++)
                json_object_array_add(jl, json_object_new_string(logins[x]));
            json_object_object_add(j, "logins", jl);
            json_object_array_add(arr, j);
        }
    }
    return arr;
}

/* `members`: every member of each configured organization (or of
 * --organization ORG) with the logins the configuration maps to it. A list
 * that cannot be read whole is not shown in part: the organization is
 * reported on stderr and decides the exit status (77, 75, 78). */
static int cmd_members(const opts_t *o, const ps_log_t *lg, const ps_config_t *cfg)
{
    const char **orgs = NULL;
    org_list_t *lists = NULL;
    ps_client_t *c = NULL;
    char err[1024], eerr[1200], what[1024];
    size_t norgs = 0, nlists = 0, i;
    int rv = EX_OK_;

    if(o->organization) {
        orgs = malloc(sizeof(*orgs));
        if(orgs) {
            orgs[0] = o->organization;
            norgs = 1;
        }
    } else if(ps_config_organizations(cfg, &orgs, &norgs) != 0) {
        orgs = NULL;
    }
    if(!orgs) {
        ps_logf(lg, LOG_ERR, "members: out of memory");
        return 1;
    }
    if(norgs == 0) {
        ps_logf(lg, LOG_ERR,
                "members: no organization configured: set organization in %s or "
                "give --organization ORG",
                cfg->path);
        free(orgs);
        return EX_CONFIG_;
    }
    lists = calloc(norgs, sizeof(*lists));
    c = lists ? ps_client_new(cfg, err, sizeof(err)) : NULL;
    if(!c) {
        ps_logf(lg, LOG_ERR, "members: %s",
                lists ? ps_escape(err, eerr, sizeof(eerr)) : "out of memory");
        free(lists);
        free(orgs);
        return 1;
    }
    for(i = 0; i < norgs; i++) {
        ps_list_opts_t lo;
        ps_result_t r;
        ps_outcome_t out;
        org_list_t *l = &lists[nlists];

        memset(&lo, 0, sizeof(lo));
        lo.retry = 1;
        lo.deadline = o->deadline > 0 ? ps_now() + o->deadline : 0;
        out = ps_client_list_members_all(c, orgs[i], &lo, &l->m, &l->n, &r);
        if(out != PS_OUT_OK) {
            int code = out == PS_OUT_TRANSIENT ? 75 : out == PS_OUT_CONFIG ? EX_CONFIG_ : 77;

            if(out == PS_OUT_TRANSIENT && r.http_status == 200)
                snprintf(what, sizeof(what), "%s", ps_escape(r.message, eerr, sizeof(eerr)));
            else
                ps_online_explain(orgs[i], out, &r, what, sizeof(what));
            ps_logf(lg, LOG_ERR, "members: %s: %s", orgs[i], what);
            rv = code > rv ? code : rv;
            continue;
        }
        l->org = orgs[i];
        l->ix = ps_login_index_new(cfg, orgs[i]);
        if(!l->ix) {
            ps_logf(lg, LOG_ERR, "members: out of memory");
            free(l->m);
            rv = 1;
            continue;
        }
        nlists++;
    }
    if(o->json) {
        json_object *arr = members_json(lists, nlists);

        puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY |
                                                     JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(arr);
    } else if(nlists > 0) {
        members_text(lists, nlists);
    }
    for(i = 0; i < nlists; i++) {
        free(lists[i].m);
        ps_login_index_free(lists[i].ix);
    }
    free(lists);
    ps_client_free(c);
    free(orgs);
    return rv;
}

/* ------------------------------------------------------------ queue */

static void fmt_time(long long t, char *buf, size_t len)
{
    struct tm tm;
    time_t tt = (time_t)t;

    if(t <= 0 || !gmtime_r(&tt, &tm))
        snprintf(buf, len, "-");
    else
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void list_entries(json_object *arr, const char *state, const ps_qentry_t *e, size_t n)
{
    size_t i;
    time_t now = time(NULL);

    for(i = 0; i < n; i++) {
        char first[32], last[32], eerr[1024];

        fmt_time(e[i].first_attempt, first, sizeof(first));
        fmt_time(e[i].last_attempt, last, sizeof(last));
        if(arr) {
            json_object *j = json_object_new_object();

            json_object_object_add(j, "state", json_object_new_string(state));
            json_object_object_add(j, "login", json_object_new_string(e[i].login));
            json_object_object_add(j, "organization", json_object_new_string(e[i].organization));
            json_object_object_add(j, "id", json_object_new_string(e[i].id));
            json_object_object_add(j, "delete_passwords",
                                   json_object_new_boolean(e[i].delete_passwords));
            json_object_object_add(j, "delete_service_tokens",
                                   json_object_new_boolean(e[i].delete_service_tokens));
            json_object_object_add(j, "attempts", json_object_new_int(e[i].attempts));
            json_object_object_add(j, "first_attempt", json_object_new_string(first));
            json_object_object_add(j, "last_attempt", json_object_new_string(last));
            json_object_object_add(j, "age_seconds",
                                   json_object_new_int64((int64_t)(now - e[i].first_attempt)));
            json_object_object_add(j, "last_error", json_object_new_string(e[i].last_error));
            json_object_array_add(arr, j);
        } else {
            printf("%-7s %-16s %-16s %-16s %8d %-20s %-20s %s\n", state, e[i].login,
                   e[i].organization, e[i].id, e[i].attempts, first, last,
                   ps_escape(e[i].last_error, eerr, sizeof(eerr)));
        }
    }
}

static void list_unresolved(json_object *arr, const ps_unresolved_t *u, size_t n)
{
    time_t now = time(NULL);
    size_t i;

    for(i = 0; i < n; i++) {
        char when[32], why[PS_UNRESOLVED_PATH_MAX + PS_LOGIN_MAX + 128], ewhy[4096];

        fmt_time(u[i].recorded, when, sizeof(when));
        snprintf(why, sizeof(why), "recorded while %s could not be loaded%s%s%s%s", u[i].config,
                 u[i].mode[0] ? " (PAM service " : "", u[i].service, u[i].mode[0] ? ", mode " : "",
                 u[i].mode[0] ? u[i].mode : "");
        if(u[i].mode[0])
            strncat(why, ")", sizeof(why) - strlen(why) - 1);
        if(arr) {
            json_object *j = json_object_new_object();

            json_object_object_add(j, "state", json_object_new_string("unresolved"));
            json_object_object_add(j, "login", json_object_new_string(u[i].login));
            json_object_object_add(j, "config", json_object_new_string(u[i].config));
            json_object_object_add(j, "source",
                                   json_object_new_string(u[i].mode[0] ? "pam" : "remove"));
            if(u[i].mode[0]) {
                json_object_object_add(j, "service", json_object_new_string(u[i].service));
                json_object_object_add(j, "mode", json_object_new_string(u[i].mode));
            }
            json_object_object_add(j, "first_attempt", json_object_new_string(when));
            json_object_object_add(j, "age_seconds",
                                   json_object_new_int64((int64_t)(now - u[i].recorded)));
            json_object_array_add(arr, j);
        } else {
            printf("%-7s %-16s %-16s %-16s %8d %-20s %-20s %s\n", "unresolved", u[i].login, "-",
                   "-", 0, when, "-", ps_escape(why, ewhy, sizeof(ewhy)));
        }
    }
}

static void invalid_note(void *arg, const char *name, const char *reason)
{
    ps_log_t *lg = arg;
    char ename[128], ereason[512];

    ps_logf(lg, LOG_ERR, "queue entry %s is not valid (%s): moved to invalid/",
            ps_escape(name, ename, sizeof(ename)), ps_escape(reason, ereason, sizeof(ereason)));
}

static int cmd_queue(const opts_t *o, ps_log_t *lg, const ps_config_t *cfg)
{
    char err[1024];
    ps_queue_t *q = NULL;
    ps_qentry_t *pend = NULL, *dead = NULL;
    ps_unresolved_t *unres = NULL;
    size_t npend = 0, ndead = 0, nunres = 0;
    json_object *arr = NULL;
    int rv = EX_OK_;

    if(ps_queue_open(&q, cfg->queue_dir, err, sizeof(err)) != 0) {
        ps_logf(lg, LOG_ERR, "queue: %s", err);
        return EX_CONFIG_;
    }
    if(ps_queue_list(q, 0, &pend, &npend, invalid_note, lg, err, sizeof(err)) != 0 ||
       ps_queue_list(q, 1, &dead, &ndead, invalid_note, lg, err, sizeof(err)) != 0) {
        ps_logf(lg, LOG_ERR, "queue: %s", err);
        rv = 1;
        goto out;
    }
    if(ps_unresolved_list(ps_unresolved_dir(), &unres, &nunres, NULL, err, sizeof(err)) != 0) {
        ps_logf(lg, LOG_ERR, "unresolved removals: %s", err);
        rv = 1;
        goto out;
    }
    if(o->json) {
        arr = json_object_new_array();
    } else if(npend + ndead + nunres == 0) {
        printf("queue %s is empty\n", cfg->queue_dir);
        goto out;
    } else {
        printf("%-7s %-16s %-16s %-16s %8s %-20s %-20s %s\n", "STATE", "LOGIN", "ORGANIZATION",
               "ID", "ATTEMPTS", "FIRST", "LAST", "LAST ERROR");
    }
    list_entries(arr, "pending", pend, npend);
    list_entries(arr, "dead", dead, ndead);
    list_unresolved(arr, unres, nunres);
    if(arr) {
        puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY |
                                                     JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(arr);
    } else {
        printf("%zu pending, %zu dead letters (%s)\n", npend, ndead, cfg->queue_dir);
        if(nunres)
            printf("%zu unresolved: recorded while a configuration could not be loaded; "
                   "`retry` with that configuration queues them (%s)\n",
                   nunres, ps_unresolved_dir());
    }
out:
    free(unres);
    free(pend);
    free(dead);
    ps_queue_close(q);
    return rv;
}

/* ------------------------------------------------------------ retry */

static int cmd_retry(const opts_t *o, const ps_log_t *lg, const ps_config_t *cfg)
{
    ps_ctx_t ctx;
    ps_drain_stats_t st;
    ps_resolve_stats_t rs;
    ps_status_t rv;
    char err[1024], eerr[1200];
    double rate;
    int ur;

    memset(&ctx, 0, sizeof(ctx));
    ctx.cfg = cfg;
    ctx.log = lg;
    if(o->deadline > 0)
        ctx.deadline = ps_now() + o->deadline;
    /* first the logins recorded while this configuration could not be
     * loaded: the mapped ones join the queue and are drained with it */
    ur = ps_unresolved_resolve(&ctx, ps_unresolved_dir(), &rs, err, sizeof(err));
    if(ur < 0)
        ps_logf(lg, LOG_ERR, "unresolved removals: %s", ps_escape(err, eerr, sizeof(eerr)));
    else if(ur == 1)
        ps_logf(lg, LOG_NOTICE, "unresolved removals: another retry is resolving them");
    rv = ps_drain(&ctx, !o->json && isatty(STDERR_FILENO), &st);
    ps_ctx_release(&ctx);
    if(ur < 0 && ps_status_worse(PS_ST_ERROR, rv))
        rv = PS_ST_ERROR;
    else if(rs.left > 0 && ps_status_worse(PS_ST_QUEUED, rv))
        rv = PS_ST_QUEUED;
    rate =
        st.elapsed > 0 ? (double)(st.removed + st.absent + st.requeued + st.dead) / st.elapsed : 0;
    if(o->json) {
        json_object *j = json_object_new_object();

        json_object_object_add(j, "total", json_object_new_int64((int64_t)st.total));
        json_object_object_add(j, "removed", json_object_new_int64((int64_t)st.removed));
        json_object_object_add(j, "absent", json_object_new_int64((int64_t)st.absent));
        json_object_object_add(j, "requeued", json_object_new_int64((int64_t)st.requeued));
        json_object_object_add(j, "dead", json_object_new_int64((int64_t)(st.dead + st.aged)));
        json_object_object_add(j, "busy", json_object_new_int64((int64_t)st.busy));
        json_object_object_add(j, "invalid", json_object_new_int64((int64_t)st.invalid));
        json_object_object_add(j, "left", json_object_new_int64((int64_t)st.left));
        json_object_object_add(j, "http_429", json_object_new_int64(st.http_429));
        json_object_object_add(j, "connections", json_object_new_int64(st.connects));
        json_object_object_add(j, "seconds", json_object_new_double(st.elapsed));
        json_object_object_add(j, "rate", json_object_new_double(rate));
        if(st.stopped)
            json_object_object_add(j, "stopped", json_object_new_string(st.reason));
        if(ur == 0) {
            json_object *u = json_object_new_object();

            json_object_object_add(u, "queued", json_object_new_int64((int64_t)rs.queued));
            json_object_object_add(u, "dropped", json_object_new_int64((int64_t)rs.dropped));
            json_object_object_add(u, "left", json_object_new_int64((int64_t)rs.left));
            json_object_object_add(u, "other_config", json_object_new_int64((int64_t)rs.other));
            json_object_object_add(u, "invalid", json_object_new_int64((int64_t)rs.invalid));
            json_object_object_add(j, "unresolved", u);
        }
        puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
        json_object_put(j);
    } else {
        if(ur == 0 && rs.queued + rs.dropped + rs.left + rs.invalid > 0)
            printf("retry: %zu logins recorded while the configuration could not be loaded: "
                   "%zu queued, %zu dropped (not mapped or service not listed), %zu left, "
                   "%zu invalid\n",
                   rs.queued + rs.dropped + rs.left + rs.invalid, rs.queued, rs.dropped, rs.left,
                   rs.invalid);
        if(ur == 0 && rs.other > 0)
            printf("retry: %zu recorded logins belong to another configuration (see "
                   "`queue`)\n",
                   rs.other);
        if(st.total == 0 && !st.reason[0])
            printf("retry: the queue is empty\n");
        else
            printf("retry: %zu entries: %zu removed, %zu already absent, %zu still queued, "
                   "%zu dead letters, %zu busy, %zu invalid; %ld 429s, %ld connections, "
                   "%.1f s, %.1f req/s\n",
                   st.total, st.removed, st.absent, st.requeued, st.dead + st.aged, st.busy,
                   st.invalid, st.http_429, st.connects, st.elapsed, rate);
    }
    if(st.stopped || (st.reason[0] && rv != PS_ST_REMOVED)) {
        char er[512];

        ps_logf(lg, rv == PS_ST_QUEUED ? LOG_WARNING : LOG_ERR,
                "retry stopped: %s; %zu left "
                "in the queue",
                ps_escape(st.reason, er, sizeof(er)), st.left);
    }
    return ps_status_exit(rv);
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    opts_t o;
    ps_log_t lg = { 1, 1, 0, 0 };
    ps_config_t *cfg = NULL;
    int rv;

    memset(&o, 0, sizeof(o));
    o.grace = -1;
    o.args = calloc((size_t)argc + 1, sizeof(char *));
    if(!o.args)
        return 1;
    rv = parse_args(argc, argv, &o);
    if(rv != 0) {
        free(o.args);
        return rv > 0 ? 0 : -rv;
    }
    lg.verbose = o.verbose;
    lg.json = o.json;
    openlog("planetscale-deprovision", LOG_PID, LOG_AUTHPRIV);

    if(!o.command) {
        rv = usage_error("no command given");
    } else if(strcmp(o.command, PS_HELPER_SUBCOMMAND) == 0) {
        rv = cmd_pam_helper(&o, &lg);
    } else if(strcmp(o.command, "remove") == 0 || strcmp(o.command, "lookup") == 0) {
        if(o.nargs == 0)
            rv = usage_error("%s: no LOGIN given", o.command);
        else if((o.dry_run || o.no_queue) && strcmp(o.command, "remove") != 0)
            rv = usage_error("--dry-run and --no-queue go with remove");
        else if((rv = load_config(&o, &lg, 0, &cfg)) == EX_OK_)
            rv = o.command[0] == 'r' ? cmd_remove(&o, &lg, cfg) : cmd_lookup(&o, cfg);
        else if(o.command[0] == 'r' && !o.dry_run && !o.no_queue)
            rv = remove_unresolved(&o, &lg);
    } else if(o.online && strcmp(o.command, "check") != 0) {
        rv = usage_error("--online goes with check");
    } else if(o.organization && strcmp(o.command, "members") != 0) {
        rv = usage_error("--organization goes with members");
    } else if(strcmp(o.command, "members") == 0) {
        if(o.nargs > 0)
            rv = usage_error("members takes no argument (--organization ORG picks one)");
        else if(o.dry_run || o.no_queue)
            rv = usage_error("--dry-run and --no-queue go with remove");
        else if(o.organization && !ps_id_valid(o.organization))
            rv = usage_error("--organization: not an organization name: %s", o.organization);
        else if((rv = load_config(&o, &lg, 1, &cfg)) == EX_OK_)
            rv = cmd_members(&o, &lg, cfg);
    } else if(o.socket && strcmp(o.command, "serve") != 0) {
        rv = usage_error("--socket goes with serve");
    } else if(strcmp(o.command, "serve") == 0) {
        if(o.nargs > 0)
            rv = usage_error("serve takes no argument");
        else if(o.dry_run || o.no_queue || o.deadline > 0)
            rv = usage_error("--dry-run, --no-queue and --deadline do not go with serve");
        else if((rv = load_config(&o, &lg, 0, &cfg)) == EX_OK_)
            rv = ps_sender_serve(&cfg, o.socket, &lg);
    } else if(strcmp(o.command, "retry") == 0 || strcmp(o.command, "queue") == 0 ||
              strcmp(o.command, "check") == 0) {
        if(o.nargs > 0)
            rv = usage_error("%s takes no argument", o.command);
        else if(o.dry_run || o.no_queue)
            rv = usage_error("--dry-run and --no-queue go with remove");
        else if((rv = load_config(&o, &lg, strcmp(o.command, "check") == 0, &cfg)) == EX_OK_)
            rv = o.command[1] == 'e'   ? cmd_retry(&o, &lg, cfg)
                 : o.command[0] == 'q' ? cmd_queue(&o, &lg, cfg)
                                       : cmd_check(&o, &lg, cfg);
    } else {
        rv = usage_error("unknown command: %s", o.command);
    }
    ps_config_free(cfg);
    free(o.args);
    closelog();
    return rv;
}
