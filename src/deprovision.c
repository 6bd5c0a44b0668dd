/* planetscale-deprovision - remove departing users' PlanetScale memberships.
 * main(), the command table and the subcommands' output; all the work is in
 * the core (remove.c, drain.c, outcome.c, config.c, api.c, queue.c). */
#include <errno.h>
#include <getopt.h>
#include <shadow.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "drain.h"
#include "helper.h"
#include "members.h"
#include "metrics.h"
#include "reconcile.h"
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
    "  remove [--dry-run] [--no-queue] [--no-spread] [--deadline SECONDS] [--hook]\n"
    "         LOGIN...\n"
    "                              remove these logins' memberships (LOGIN \"-\" reads\n"
    "                              logins from stdin); each request is recorded in the\n"
    "                              spool first and leaves it only once PlanetScale\n"
    "                              confirmed the removal; --hook (the userdel hook,\n"
    "                              deluser.local): wait at most hook_deadline seconds\n"
    "                              (default 5), not at all for a minute after the API\n"
    "                              did not answer, and print nothing for an unmapped\n"
    "                              login; with api.spread, `retry` makes the first\n"
    "                              attempt later (--no-spread: now)\n"
    "  retry [--held] [--deadline SECONDS]\n"
    "                              send what waits in the spool (run by a systemd timer):\n"
    "                              pending entries, and held ones once the configuration\n"
    "                              changed since they were held (--held: all held and\n"
    "                              dead entries)\n"
    "  queue [--queue-dir DIR]     list the spool: pending, held, dead and unresolved\n"
    "                              entries, with their reasons; when the configuration\n"
    "                              does not load, the default spool (or DIR), exit 78\n"
    "  queue drop NAME...          delete these entries without a confirmed removal\n"
    "                              (an administrator's decision; audited)\n"
    "  check [--queue-dir DIR]     validate the configuration and permissions; fails while\n"
    "                              anything is held or dead; counts the spool also when\n"
    "                              the configuration does not load (exit 78)\n"
    "  check --online              also ask the API whether the token can read each\n"
    "                              organization's member list\n"
    "  lookup LOGIN...             show what would be sent (no network)\n"
    "  members [--organization ORG]\n"
    "                              list the members of each configured organization (or\n"
    "                              ORG) with email, user id, role, directory-managed and\n"
    "                              mapped login\n"
    "  reconcile [--apply] [--allow N] [--deadline SECONDS]\n"
    "                              find the memberships whose local account is gone (NSS);\n"
    "                              without --apply print the plan and change nothing; with\n"
    "                              it, remove them once confirmed (a timer runs it on\n"
    "                              directory-backed hosts)\n"
    "  serve [--socket PATH]       keep one API connection warm and send the removals that\n"
    "                              remove and the PAM module hand to it (run by systemd\n"
    "                              socket activation)\n"
    "\n"
    "Options (before or after the command):\n"
    "  -c, --config FILE   configuration file (default " PS_DEFAULT_CONFIG ")\n"
    "  -v, --verbose       more detail on stderr, including the audit lines\n"
    "      --json          machine-readable output on stdout\n"
    "  -h, --help          this help\n"
    "  -V, --version       the version\n"
    "\n"
    "Exit status: 0 done (removed, confirmed absent, or unmapped and ignored);\n"
    "75 pending in the spool, retried later; 77 held: refused by the API or not\n"
    "confirmed, waits for a person; 78 configuration error (the request is\n"
    "recorded); 64 usage error; 1 anything else (the message says whether the\n"
    "request was recorded). reconcile also exits 75 when an account lookup failed\n"
    "or the member list could not be read for now, and 77 when more accounts are\n"
    "missing than its cap allows: in both cases it did nothing.\n";

/* Options that only some commands take (opts_t.given). */
enum {
    OPT_DRY_RUN = 1 << 0,
    OPT_NO_QUEUE = 1 << 1,
    OPT_DEADLINE = 1 << 2,
    OPT_SOCKET = 1 << 3,
    OPT_HELD = 1 << 4,
    OPT_QUEUE_DIR = 1 << 5,
    OPT_HELPER = 1 << 6, /* --mode, --service, --debug */
    OPT_ONLINE = 1 << 7,
    OPT_ORGANIZATION = 1 << 8,
    OPT_HOOK = 1 << 9,
    OPT_APPLY = 1 << 10, /* --apply, --allow */
    OPT_NO_SPREAD = 1 << 11
};

typedef struct opts {
    const char *config;
    int verbose;
    int json;
    int dry_run;
    int no_queue;
    int debug;
    int held;
    int online;
    int hook;           /* remove --hook */
    double start;       /* ps_now() when the command started */
    int no_spread;      /* remove --no-spread: send at once whatever api.spread says */
    double deadline;    /* seconds from the start, 0 = none */
    double deadline_at; /* the same as a ps_now() value, 0 = none */
    const char *mode;
    const char *service;
    const char *socket;
    long expire_day; /* pam-helper --expire-day: the sp_expire the module saw */
    int have_expire; /* --expire-day given */
    long grace;      /* pam-helper --expired-grace-days, -1 = the configuration's */
    const char *queue_dir;
    const char *organization;
    int apply;  /* reconcile --apply */
    long allow; /* reconcile --allow N, -1 = not given */
    const char *command;
    ps_metrics_t *metrics; /* counts this run's outcomes (NULL: none) */
    char **args;           /* positional arguments after the command */
    int nargs;
    unsigned given; /* OPT_* seen */
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
        O_HELD,
        O_QUEUE_DIR,
        O_EXPIRE_DAY,
        O_GRACE,
        O_ONLINE,
        O_ORGANIZATION,
        O_HOOK,
        O_APPLY,
        O_ALLOW,
        O_NO_SPREAD
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
        { "held", no_argument, NULL, O_HELD },
        { "queue-dir", required_argument, NULL, O_QUEUE_DIR },
        { "expire-day", required_argument, NULL, O_EXPIRE_DAY },
        { "expired-grace-days", required_argument, NULL, O_GRACE },
        { "online", no_argument, NULL, O_ONLINE },
        { "organization", required_argument, NULL, O_ORGANIZATION },
        { "hook", no_argument, NULL, O_HOOK },
        { "apply", no_argument, NULL, O_APPLY },
        { "allow", required_argument, NULL, O_ALLOW },
        { "no-spread", no_argument, NULL, O_NO_SPREAD },
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
        case O_DRY:
            o->dry_run = 1;
            o->given |= OPT_DRY_RUN;
            break;
        case O_NOQUEUE:
            o->no_queue = 1;
            o->given |= OPT_NO_QUEUE;
            break;
        case O_NO_SPREAD:
            o->no_spread = 1;
            o->given |= OPT_NO_SPREAD;
            break;
        case O_DEADLINE:
            if(parse_seconds(optarg, &o->deadline) != 0)
                return -usage_error("--deadline: not a number of seconds: %s", optarg);
            o->given |= OPT_DEADLINE;
            break;
        case O_MODE:
            o->mode = optarg;
            o->given |= OPT_HELPER;
            break;
        case O_SERVICE:
            o->service = optarg;
            o->given |= OPT_HELPER;
            break;
        case O_DEBUG:
            o->debug = 1;
            o->given |= OPT_HELPER;
            break;
        case O_SOCKET:
            o->socket = optarg;
            o->given |= OPT_SOCKET;
            break;
        case O_HELD:
            o->held = 1;
            o->given |= OPT_HELD;
            break;
        case O_QUEUE_DIR:
            if(optarg[0] != '/')
                return -usage_error("--queue-dir: not an absolute path: %s", optarg);
            o->queue_dir = optarg;
            o->given |= OPT_QUEUE_DIR;
            break;
        case O_EXPIRE_DAY: {
            char *end;

            errno = 0;
            o->expire_day = strtol(optarg, &end, 10);
            if(errno || end == optarg || *end)
                return -usage_error("--expire-day: not a number of days: %s", optarg);
            o->have_expire = 1;
            o->given |= OPT_HELPER;
            break;
        }
        case O_APPLY:
            o->apply = 1;
            o->given |= OPT_APPLY;
            break;
        case O_ALLOW: {
            char *end;

            errno = 0;
            o->allow = strtol(optarg, &end, 10);
            if(errno || end == optarg || *end || optarg[0] == '-' || optarg[0] == '+' ||
               o->allow > 1000000)
                return -usage_error("--allow: not a number of removals (0 to 1000000): %s", optarg);
            o->given |= OPT_APPLY;
            break;
        }
        case O_GRACE:
            if(ps_grace_parse(optarg, &o->grace) != 0)
                return -usage_error("--expired-grace-days: not a number of days from 0 to %d: %s",
                                    PS_GRACE_DAYS_MAX, optarg);
            o->given |= OPT_HELPER;
            break;
        case O_ONLINE:
            o->online = 1;
            o->given |= OPT_ONLINE;
            break;
        case O_ORGANIZATION:
            if(!ps_id_valid(optarg))
                return -usage_error("--organization: not an organization name: %s", optarg);
            o->organization = optarg;
            o->given |= OPT_ORGANIZATION;
            break;
        case O_HOOK:
            o->hook = 1;
            o->given |= OPT_HOOK;
            break;
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

    /* bounded by --deadline: the userdel hook must not hang on a file */
    if(ps_config_load_until(cfg, o->config, require_auth, o->deadline_at, err, sizeof(err)) != 0) {
        ps_logf(lg, LOG_ERR, "configuration error: %s", err);
        return EX_CONFIG_;
    }
    return EX_OK_;
}

static void print_json(json_object *j)
{
    puts(json_object_to_json_string_ext(j,
                                        JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(j);
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
 * (unresolved.h) instead of being lost. Returns RECORDED, or ERROR when it
 * could not be kept. */
static ps_status_t record_unresolved(const opts_t *o, const ps_log_t *lg, const char *login,
                                     const char *service, const char *mode, json_object *arr)
{
    char elogin[PS_LOGIN_MAX * 4 + 8], err[1024] = "", eerr[1200], detail[1600];
    const char *dir = ps_unresolved_dir();
    ps_unresolved_t u;
    ps_status_t st;

    ps_escape(login, elogin, sizeof(elogin));
    memset(&u, 0, sizeof(u));
    if(!ps_login_valid(login)) {
        snprintf(err, sizeof(err), "invalid login name");
        st = PS_ST_ERROR;
    } else {
        snprintf(u.login, sizeof(u.login), "%s", login);
        ps_unresolved_config_key(o->config, u.config);
        /* a service name we could not keep can never match pam_services */
        snprintf(u.service, sizeof(u.service), "%s",
                 !mode                     ? ""
                 : ps_login_valid(service) ? service
                                           : "(invalid)");
        snprintf(u.mode, sizeof(u.mode), "%s", mode ? mode : "");
        st = ps_unresolved_record(dir, &u, err, sizeof(err)) == 0 ? PS_ST_RECORDED : PS_ST_ERROR;
    }
    ps_escape(err, eerr, sizeof(eerr));
    if(st == PS_ST_RECORDED)
        snprintf(detail, sizeof(detail),
                 "configuration could not be loaded; recorded in %s/%s "
                 "for retry",
                 dir, u.name);
    else
        snprintf(detail, sizeof(detail), "configuration could not be loaded; NOT recorded: %s",
                 eerr);
    ps_audit(lg, LOG_ERR, ps_outcome(st)->audit, mode ? "pam" : "remove", login, NULL, NULL, -1, -1,
             0, detail);
    if(arr) {
        json_object *j = json_object_new_object();

        json_object_object_add(j, "login", json_object_new_string(login));
        json_object_object_add(j, "outcome", json_object_new_string(ps_status_word(st)));
        json_object_object_add(j, "exit", json_object_new_int(ps_status_exit(st)));
        json_object_object_add(j, "message", json_object_new_string(detail));
        json_object_array_add(arr, j);
    } else if(lg->to_stderr) {
        if(st == PS_ST_RECORDED)
            fprintf(stderr,
                    "planetscale-deprovision: %s: NOT removed yet: recorded in %s/%s; "
                    "`planetscale-deprovision retry` removes it once the configuration loads\n",
                    elogin, dir, u.name);
        else
            fprintf(stderr, "planetscale-deprovision: %s: NOT removed and NOT recorded: %s\n",
                    elogin, eerr);
    }
    return st;
}

/* `remove` without a configuration: record every login (stdin too). Exit
 * 78 when every login is kept for retry, 1 when one could be neither
 * removed nor recorded. */
static int remove_unresolved(const opts_t *o, const ps_log_t *lg)
{
    json_object *arr = o->json ? json_object_new_array() : NULL;
    ps_status_t worst = PS_ST_RECORDED, st;
    char *line = NULL;
    size_t cap = 0;
    int i;

    for(i = 0; i < o->nargs; i++) {
        if(strcmp(o->args[i], "-") == 0) {
            char *login;

            while((login = next_stdin_login(&line, &cap)) != NULL) {
                st = record_unresolved(o, lg, login, NULL, NULL, arr);
                worst = ps_status_worse(st, worst) ? st : worst;
            }
        } else {
            st = record_unresolved(o, lg, o->args[i], NULL, NULL, arr);
            worst = ps_status_worse(st, worst) ? st : worst;
        }
    }
    free(line);
    if(arr)
        print_json(arr);
    return ps_status_exit(worst);
}

/* ------------------------------------------------------------ remove */

typedef struct out {
    const opts_t *o;
    json_object *arr;
} out_t;

static void report_json(out_t *out, const char *login, const ps_report_t *rep)
{
    json_object *j = json_object_new_object();

    json_object_object_add(j, "login", json_object_new_string(login));
    json_object_object_add(j, "outcome", json_object_new_string(ps_status_word(rep->status)));
    json_object_object_add(j, "exit", json_object_new_int(ps_status_exit(rep->status)));
    if(rep->mapped) {
        json_object_object_add(j, "organization", json_object_new_string(rep->map.organization));
        json_object_object_add(j, "id", rep->map.id ? json_object_new_string(rep->map.id) : NULL);
        if(rep->map.email)
            json_object_object_add(j, "email", json_object_new_string(rep->map.email));
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
}

/* One line per login: what happened, and for anything but success what
 * happens next. rep->message is built printable by the core. */
static void report(out_t *out, const char *login, const ps_report_t *rep)
{
    char elogin[PS_LOGIN_MAX * 4 + 8], who[PS_EMAIL_MAX + PS_ID_MAX + 32];
    const char *msg = rep->message;
    const ps_mapping_t *m = &rep->map;

    if(out->o->json) {
        report_json(out, login, rep);
        return;
    }
    ps_escape(login, elogin, sizeof(elogin));
    /* the user: its id, or the email of an entry that gives one */
    if(m->email && m->id)
        snprintf(who, sizeof(who), "%s, email %s", m->id, m->email);
    else
        snprintf(who, sizeof(who), "%s%s", m->id ? "" : "email ",
                 m->id      ? m->id
                 : m->email ? m->email
                            : "?");
    switch(rep->status) {
    case PS_ST_REMOVED:
        printf("%s: removed from %s (user %s)%s%s\n", elogin, m->organization, who,
               msg[0] && !rep->http_status ? ": " : "", msg[0] && !rep->http_status ? msg : "");
        break;
    case PS_ST_ABSENT:
        printf("%s: already absent from %s (user %s), confirmed\n", elogin, m->organization, who);
        break;
    case PS_ST_UNMAPPED:
        /* a hook runs for every deleted account, system accounts of
         * packages included: nothing to say (the audit line is at debug) */
        if(!out->o->hook)
            printf("%s: not mapped to a PlanetScale user, nothing to do\n", elogin);
        break;
    case PS_ST_DRYRUN:
        printf("%s: would remove user %s from %s (delete_passwords=%s, "
               "delete_service_tokens=%s)%s\n",
               elogin, who, m->organization, m->delete_passwords ? "true" : "false",
               m->delete_service_tokens ? "true" : "false",
               m->id ? ""
                     : "; the email is not resolved yet: the removal reads the member list "
                       "first");
        break;
    case PS_ST_QUEUED:
        fprintf(stderr,
                "planetscale-deprovision: %s: NOT removed yet: queued for retry (pending in "
                "the spool): %s\n",
                elogin, msg);
        break;
    case PS_ST_SCHEDULED:
        printf("%s: user %s of %s %s\n", elogin, m->id, m->organization, msg);
        break;
    case PS_ST_HELD:
    case PS_ST_HELD_CONFIG:
        fprintf(stderr,
                "planetscale-deprovision: %s: NOT removed: held in the spool until a person "
                "or a changed configuration deals with it (see `queue`): %s\n",
                elogin, msg);
        break;
    case PS_ST_NOT_QUEUED:
        fprintf(stderr,
                "planetscale-deprovision: %s: NOT removed and not queued (--no-queue): %s\n",
                elogin, msg);
        break;
    case PS_ST_REFUSED:
        fprintf(stderr,
                "planetscale-deprovision: %s: NOT removed (refused, not recorded: --no-queue): "
                "%s\n",
                elogin, msg);
        break;
    case PS_ST_UNKNOWN: fprintf(stderr, "planetscale-deprovision: %s: %s\n", elogin, msg); break;
    case PS_ST_CONFIG:
        fprintf(stderr, "planetscale-deprovision: %s: configuration error: %s\n", elogin, msg);
        break;
    case PS_ST_INVALID: fprintf(stderr, "planetscale-deprovision: %s\n", msg); break;
    case PS_ST_RECORDED:
    case PS_ST_ERROR:
        fprintf(stderr, "planetscale-deprovision: %s: NOT removed: %s\n", elogin, msg);
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

static int cmd_remove(const opts_t *o, ps_log_t *lg, ps_config_t **cfgp)
{
    ps_ctx_t ctx;
    out_t out = { o, NULL };
    ps_status_t worst = PS_ST_REMOVED;
    int i;

    if(!*cfgp)
        return o->dry_run || o->no_queue ? EX_CONFIG_ : remove_unresolved(o, lg);
    memset(&ctx, 0, sizeof(ctx));
    ctx.cfg = *cfgp;
    ctx.log = lg;
    ctx.dry_run = o->dry_run;
    ctx.no_queue = o->no_queue;
    ctx.handoff = ps_sender_handoff;
    ctx.trigger = "remove";
    ctx.hook = o->hook;
    ctx.deadline = o->deadline_at; /* counted from the start: loading took some of it */
    if(o->hook && !(o->deadline > 0))
        ctx.deadline = o->start + ctx.cfg->hook_deadline;
    ctx.spread = o->no_spread ? 0 : ctx.cfg->spread;
    if(o->json)
        out.arr = json_object_new_array();

    for(i = 0; i < o->nargs; i++) {
        if(strcmp(o->args[i], "-") == 0)
            worst = remove_stdin(&ctx, &out, worst);
        else
            worst = remove_one(&ctx, &out, o->args[i], worst);
    }
    ps_ctx_release(&ctx);
    if(out.arr)
        print_json(out.arr);
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
    long ago = expire < 0 ? ps_shadow_today(now) : ps_shadow_today(now) - expire;

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
            "pam-helper (%s): user %s: account expired on %s, %ld day%s ago (expired_grace_days = "
            "%ld, %s): acting",
            o->mode, elogin, fmt_day(expire, d1, sizeof(d1)), ago, ago == 1 ? "" : "s", grace,
            from);
    return 1;
}

/* The PAM module's helper: one login, one word on stdout (helper.h), and
 * the one audit line of its outcome in syslog. */
static int cmd_pam_helper(const opts_t *o, ps_log_t *lg, ps_config_t **cfgp)
{
    ps_config_t *cfg = NULL;
    ps_ctx_t ctx;
    ps_report_t rep;
    const char *word = PS_HELPER_ERROR;
    char esvc[256];
    long expire = -1;
    int expired;

    (void)cfgp;
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
        word = ps_status_word(
            record_unresolved(o, lg, o->args[0], o->service ? o->service : "", o->mode, NULL));
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
    ctx.deadline = o->deadline_at; /* main() gives pam-helper one in any case */
    ctx.handoff = ps_sender_handoff;
    ctx.trigger = "pam";
    ctx.spread = cfg->spread;
    word = ps_status_word(ps_remove_login(&ctx, o->args[0], &rep));
    ps_ctx_release(&ctx);
out:
    printf("%s\n", word);
    fflush(stdout);
    /* after the word: the module has its answer and does not wait for this */
    if(cfg)
        ps_metrics_write(o->metrics, cfg, lg);
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
        ps_report_t rep;
        ps_status_t st;
        char *url = NULL, *body = NULL, *lurl = NULL;
        char cached[PS_ID_MAX + 1], cerr[512], ecerr[2048] = "";
        const char *id_source = "config";

        ps_escape(login, elogin, sizeof(elogin));
        st = ps_map_login(cfg, login, &rep);
        m = rep.map;
        if(st == PS_ST_INVALID) {
            fprintf(stderr, "planetscale-deprovision: %s\n", rep.message);
        } else if(st == PS_ST_UNMAPPED || st == PS_ST_UNKNOWN) {
            if(!o->json)
                printf("%s: not mapped%s\n", elogin,
                       st == PS_ST_UNKNOWN ? " (unmapped = \"error\")" : ", would be ignored");
        } else if(st != PS_ST_DRYRUN) {
            fprintf(stderr, "planetscale-deprovision: %s: %s\n", elogin, rep.message);
        } else {
            if(!m.id) {
                /* an email: its id from the cache, without any network */
                int crc = ps_email_cache_get(cfg->queue_dir, m.organization, m.email, cached, cerr,
                                             sizeof(cerr));

                id_source = crc == 0 ? "cache" : "request";
                m.id = crc == 0 ? cached : NULL;
                if(crc < 0)
                    ps_escape(cerr, ecerr, sizeof(ecerr));
            }
            if(m.id) {
                url = ps_build_url(cfg->api_url, m.organization, m.id, cfg->flags_mode,
                                   m.delete_passwords, m.delete_service_tokens);
            } else {
                char *base = ps_build_url(cfg->api_url, m.organization, "ID", cfg->flags_mode,
                                          m.delete_passwords, m.delete_service_tokens);
                char *at = base ? strstr(base, "/members/ID") : NULL;

                /* DELETE .../members/{id of EMAIL}, once the list gave it */
                if(at && asprintf(&url, "%.*s/members/{id of %s}%s", (int)(at - base), base,
                                  m.email, at + strlen("/members/ID")) < 0)
                    url = NULL;
                lurl = ps_build_list_url(cfg->api_url, m.organization, m.email, 1, PS_PER_PAGE_MAX);
                free(base);
            }
            if(cfg->flags_mode == PS_FLAGS_BODY)
                body = ps_build_body(m.delete_passwords, m.delete_service_tokens);
            if(!o->json) {
                printf("%s:\n  organization: %s\n", elogin, m.organization);
                if(m.email)
                    printf("  email: %s\n", m.email);
                if(!m.email)
                    printf("  user id: %s\n", m.id);
                else if(m.id)
                    printf("  user id: %s (from the cache of resolved emails: no request "
                           "needed)\n",
                           m.id);
                else
                    printf("  user id: not resolved yet: the removal first reads the member "
                           "list (GET %s, every page)%s%s\n",
                           lurl ? lurl : "?", ecerr[0] ? "; the cache: " : "", ecerr);
                printf("  delete_passwords: %s\n"
                       "  delete_service_tokens: %s\n  request: DELETE %s\n",
                       m.delete_passwords ? "true" : "false",
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
                json_object_object_add(j, "id", m.id ? json_object_new_string(m.id) : NULL);
                if(m.email)
                    json_object_object_add(j, "email", json_object_new_string(m.email));
                json_object_object_add(j, "id_source", json_object_new_string(id_source));
                if(lurl)
                    json_object_object_add(j, "resolve_url", json_object_new_string(lurl));
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
        free(lurl);
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
    printf("%zu member%s in %zu organization%s, %zu mapped to a login\n", total,
           total == 1 ? "" : "s", nlists, nlists == 1 ? "" : "s", mapped);
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

/* ------------------------------------------------------------ the spool */

/* What `queue` and `check` show: the spool read once. */
typedef struct spool {
    const char *dir;
    ps_queue_t *q;
    ps_qentry_t *live, *dead;
    size_t nlive, ndead;
    ps_unresolved_t *unres;
    size_t nunres;
    size_t pending, held;           /* of live */
    size_t unres_held, unres_other; /* of unres */
} spool_t;

static void invalid_note(void *arg, const char *name, const char *reason)
{
    const ps_log_t *lg = arg;
    char ename[128], ereason[512];

    ps_logf(lg, LOG_ERR, "spool entry %s is not valid (%s): moved to invalid/",
            ps_escape(name, ename, sizeof(ename)), ps_escape(reason, ereason, sizeof(ereason)));
}

/* The spool directory in use: --queue-dir, else the configuration's, else
 * the built-in default (the configuration did not load). */
static const char *spool_dir(const opts_t *o, const ps_config_t *cfg)
{
    if(o->queue_dir)
        return o->queue_dir;
    return cfg ? cfg->queue_dir : PS_DEFAULT_QUEUE_DIR;
}

static void spool_free(spool_t *sp)
{
    free(sp->live);
    free(sp->dead);
    free(sp->unres);
    ps_queue_close(sp->q);
    memset(sp, 0, sizeof(*sp));
}

/* Reads the spool of dir and the unresolved records; config_path (may be
 * NULL) says which records belong to other configurations. 0, or -1 with a
 * message logged. */
static int spool_read(spool_t *sp, const char *dir, const char *config_path, ps_log_t *lg)
{
    char err[1024], mine[PS_UNRESOLVED_PATH_MAX];
    size_t i;

    memset(sp, 0, sizeof(*sp));
    sp->dir = dir;
    if(ps_queue_open(&sp->q, dir, err, sizeof(err)) != 0 ||
       ps_queue_list(sp->q, 0, &sp->live, &sp->nlive, invalid_note, lg, err, sizeof(err)) != 0 ||
       ps_queue_list(sp->q, 1, &sp->dead, &sp->ndead, invalid_note, lg, err, sizeof(err)) != 0) {
        ps_logf(lg, LOG_ERR, "spool: %s", err);
        return -1;
    }
    if(ps_unresolved_list(ps_unresolved_dir(), &sp->unres, &sp->nunres, NULL, err, sizeof(err)) !=
       0) {
        ps_logf(lg, LOG_ERR, "unresolved removals: %s", err);
        return -1;
    }
    for(i = 0; i < sp->nlive; i++)
        sp->live[i].state == PS_Q_HELD ? sp->held++ : sp->pending++;
    ps_unresolved_config_key(config_path, mine);
    for(i = 0; i < sp->nunres; i++) {
        char theirs[PS_UNRESOLVED_PATH_MAX];

        sp->unres_held += sp->unres[i].held_at > 0;
        ps_unresolved_config_key(sp->unres[i].config, theirs);
        sp->unres_other += strcmp(theirs, mine) != 0;
    }
    return 0;
}

static void fmt_time(long long t, char *buf, size_t len)
{
    struct tm tm;
    time_t tt = (time_t)t;

    if(t <= 0 || !gmtime_r(&tt, &tm))
        snprintf(buf, len, "-");
    else
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "3d4h", "5m", ... since t. */
static void fmt_age(long long t, char *buf, size_t len)
{
    long long s = (long long)time(NULL) - t;

    if(t <= 0 || s < 0)
        snprintf(buf, len, "-");
    else if(s < 3600)
        snprintf(buf, len, "%lldm", s / 60);
    else if(s < 86400)
        snprintf(buf, len, "%lldh%lldm", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, len, "%lldd%lldh", s / 86400, s % 86400 / 3600);
}

#define QUEUE_ROW "%-10s %-21s %-16s %-16s %-16s %8s %-8s %s\n"

static void list_entries(json_object *arr, const char *dead_state, const ps_qentry_t *e, size_t n)
{
    size_t i;

    for(i = 0; i < n; i++) {
        const char *state = dead_state ? dead_state : ps_qstate_name(e[i].state);
        char rec[32], first[32], last[32], held[32], nb[32], age[32], att[16];
        char elogin[PS_LOGIN_MAX * 4 + 8], eerr[1024], why[sizeof(e[i].last_error) + 64];

        fmt_time(e[i].not_before, nb, sizeof(nb));
        if(!e[i].last_error[0] && e[i].first_attempt == 0 && e[i].not_before > 0)
            snprintf(why, sizeof(why), "first attempt at %s (api.spread)", nb);
        else if(!e[i].last_error[0] && e[i].attempts == 0)
            snprintf(why, sizeof(why), "recorded, not sent yet");
        else
            snprintf(why, sizeof(why), "%s", e[i].last_error);
        fmt_time(e[i].recorded, rec, sizeof(rec));
        fmt_time(e[i].first_attempt, first, sizeof(first));
        fmt_time(e[i].last_attempt, last, sizeof(last));
        fmt_time(e[i].held_at, held, sizeof(held));
        if(arr) {
            json_object *j = json_object_new_object();

            json_object_object_add(j, "name", json_object_new_string(e[i].name));
            json_object_object_add(j, "state", json_object_new_string(state));
            json_object_object_add(j, "login", json_object_new_string(e[i].login));
            json_object_object_add(j, "organization", json_object_new_string(e[i].organization));
            json_object_object_add(j, "id", json_object_new_string(e[i].id));
            if(e[i].email[0])
                json_object_object_add(j, "email", json_object_new_string(e[i].email));
            json_object_object_add(j, "delete_passwords",
                                   json_object_new_boolean(e[i].delete_passwords));
            json_object_object_add(j, "delete_service_tokens",
                                   json_object_new_boolean(e[i].delete_service_tokens));
            json_object_object_add(j, "trigger", json_object_new_string(e[i].trigger));
            json_object_object_add(j, "attempts", json_object_new_int(e[i].attempts));
            json_object_object_add(j, "recorded", json_object_new_string(rec));
            json_object_object_add(j, "first_attempt", json_object_new_string(first));
            json_object_object_add(j, "last_attempt", json_object_new_string(last));
            json_object_object_add(j, "held_at", json_object_new_string(held));
            json_object_object_add(j, "not_before", json_object_new_string(nb));
            json_object_object_add(j, "age_seconds",
                                   json_object_new_int64((int64_t)(time(NULL) - e[i].recorded)));
            json_object_object_add(j, "last_error", json_object_new_string(e[i].last_error));
            json_object_array_add(arr, j);
        } else {
            fmt_age(e[i].recorded, age, sizeof(age));
            snprintf(att, sizeof(att), "%d", e[i].attempts);
            printf(QUEUE_ROW, state, e[i].name, ps_escape(e[i].login, elogin, sizeof(elogin)),
                   e[i].organization, e[i].id[0] ? e[i].id : e[i].email, att, age,
                   ps_escape(why, eerr, sizeof(eerr)));
        }
    }
}

static void list_unresolved(json_object *arr, const ps_unresolved_t *u, size_t n)
{
    size_t i;

    for(i = 0; i < n; i++) {
        const char *state = u[i].held_at > 0 ? "held" : "unresolved";
        char when[32], age[32], why[PS_UNRESOLVED_PATH_MAX + PS_LOGIN_MAX + 400], ewhy[4096];
        char elogin[PS_LOGIN_MAX * 4 + 8];

        fmt_time(u[i].recorded, when, sizeof(when));
        if(u[i].held_at > 0)
            snprintf(why, sizeof(why), "%s", u[i].held_reason);
        else
            snprintf(why, sizeof(why), "recorded while %s could not be loaded%s%s%s%s%s",
                     u[i].config, u[i].mode[0] ? " (PAM service " : "", u[i].service,
                     u[i].mode[0] ? ", mode " : "", u[i].mode, u[i].mode[0] ? ")" : "");
        if(arr) {
            json_object *j = json_object_new_object();

            json_object_object_add(j, "name", json_object_new_string(u[i].name));
            json_object_object_add(j, "state", json_object_new_string(state));
            json_object_object_add(j, "kind", json_object_new_string("unresolved"));
            json_object_object_add(j, "login", json_object_new_string(u[i].login));
            json_object_object_add(j, "config", json_object_new_string(u[i].config));
            json_object_object_add(j, "source",
                                   json_object_new_string(u[i].mode[0] ? "pam" : "remove"));
            if(u[i].mode[0]) {
                json_object_object_add(j, "service", json_object_new_string(u[i].service));
                json_object_object_add(j, "mode", json_object_new_string(u[i].mode));
            }
            json_object_object_add(j, "recorded", json_object_new_string(when));
            json_object_object_add(j, "first_attempt", json_object_new_string(when));
            json_object_object_add(j, "age_seconds",
                                   json_object_new_int64((int64_t)(time(NULL) - u[i].recorded)));
            json_object_object_add(j, "last_error", json_object_new_string(why));
            json_object_array_add(arr, j);
        } else {
            fmt_age(u[i].recorded, age, sizeof(age));
            printf(QUEUE_ROW, state, u[i].name, ps_escape(u[i].login, elogin, sizeof(elogin)), "-",
                   "-", "-", age, ps_escape(why, ewhy, sizeof(ewhy)));
        }
    }
}

/* `queue drop NAME...`: an administrator deletes entries that were not
 * confirmed; each gets an audit line. */
static int queue_drop(const opts_t *o, const ps_log_t *lg, const char *dir)
{
    char err[1024], eerr[1200], ename[128], detail[700];
    ps_queue_t *q = NULL;
    int i, rv = EX_OK_;

    if(o->nargs < 2)
        return usage_error("queue drop: no NAME given (the NAME column of `queue`)");
    if(ps_queue_open(&q, dir, err, sizeof(err)) != 0) {
        ps_logf(lg, LOG_ERR, "spool: %s", err);
        return EX_CONFIG_;
    }
    for(i = 1; i < o->nargs; i++) {
        const char *name = o->args[i];
        ps_qentry_t e;
        ps_unresolved_t u;
        int rc = ps_queue_drop(q, name, 5.0, &e, err, sizeof(err));

        ps_escape(name, ename, sizeof(ename));
        if(rc == 0) {
            snprintf(detail, sizeof(detail),
                     "dropped by an administrator without a confirmed removal (queue drop %s); "
                     "was %s: %.300s",
                     e.name, ps_qstate_name(e.state), e.last_error);
            ps_audit(lg, LOG_WARNING, "dropped", e.trigger, e.login, e.organization, e.id,
                     e.delete_passwords, e.delete_service_tokens, 0, detail);
            printf("%s: dropped (%s: %s in %s, user %s); the membership was NOT removed by this "
                   "tool\n",
                   ename, ps_qstate_name(e.state), e.login, e.organization, e.id);
            continue;
        }
        if(rc == 2)
            rc = ps_unresolved_drop(ps_unresolved_dir(), name, &u, err, sizeof(err));
        if(rc == 0) {
            snprintf(detail, sizeof(detail),
                     "unresolved record dropped by an administrator (queue drop %s)", name);
            ps_audit(lg, LOG_WARNING, "dropped", u.mode[0] ? "pam" : "remove", u.login, NULL, NULL,
                     -1, -1, 0, detail);
            printf("%s: dropped (unresolved record of %s); nothing was sent\n", ename, u.login);
            continue;
        }
        if(rc == 2)
            snprintf(err, sizeof(err), "no entry or record %s in %s or %s (see `queue`)", name, dir,
                     ps_unresolved_dir());
        fprintf(stderr, "planetscale-deprovision: %s: not dropped: %s\n", ename,
                ps_escape(err, eerr, sizeof(eerr)));
        rv = 1;
    }
    ps_queue_close(q);
    return rv;
}

static int cmd_queue(const opts_t *o, ps_log_t *lg, ps_config_t **cfgp)
{
    const ps_config_t *cfg = *cfgp;
    const char *dir = spool_dir(o, cfg);
    json_object *arr = NULL;
    spool_t sp;
    int rv = cfg ? EX_OK_ : EX_CONFIG_;

    if(o->nargs > 0 && strcmp(o->args[0], "drop") == 0)
        return queue_drop(o, lg, dir);
    if(o->nargs > 0)
        return usage_error("queue: unknown argument %s (queue, or queue drop NAME...)", o->args[0]);
    if(!cfg)
        fprintf(stderr,
                "planetscale-deprovision: the configuration does not load (above); listing "
                "the spool %s\n",
                dir);
    if(spool_read(&sp, dir, cfg ? cfg->path : o->config, lg) != 0) {
        spool_free(&sp);
        return 1;
    }
    if(o->json) {
        arr = json_object_new_array();
    } else if(sp.nlive + sp.ndead + sp.nunres == 0) {
        printf("the spool %s is empty\n", dir);
        spool_free(&sp);
        return rv;
    } else {
        printf(QUEUE_ROW, "STATE", "NAME", "LOGIN", "ORGANIZATION", "ID", "ATTEMPTS", "AGE",
               "REASON");
    }
    list_entries(arr, NULL, sp.live, sp.nlive);
    list_entries(arr, "dead", sp.dead, sp.ndead);
    list_unresolved(arr, sp.unres, sp.nunres);
    if(arr) {
        print_json(arr);
    } else {
        printf("%zu pending, %zu held, %zu dead, %zu unresolved (%s)\n", sp.pending,
               sp.held + sp.unres_held, sp.ndead, sp.nunres - sp.unres_held, dir);
        if(sp.held + sp.unres_held + sp.ndead > 0)
            printf("held and dead entries wait for a person: fix what the reason says, then "
                   "`retry --held`, or `queue drop NAME` once the membership is dealt with\n");
    }
    spool_free(&sp);
    return rv;
}

/* ------------------------------------------------------------ check */

/* `check --online` for the user entries of ORG that give an email: each is
 * resolved anew through the member list and cached (ps_resolve_email), so
 * that removals find it in the cache. An email no member has is a warning
 * (the person may have left already; a removal of that login is held);
 * one that cannot be resolved now, or that two members share, decides the
 * exit status like a probe. Returns 0, 75, 77 or 78. */
static int check_emails(const ps_config_t *cfg, const ps_log_t *lg, ps_client_t *c, const char *org,
                        double deadline, json_object *arr)
{
    size_t i;
    int rv = EX_OK_;

    for(i = 0; i < cfg->nusers; i++) {
        const ps_user_t *u = &cfg->users[i];
        const char *uorg = u->organization ? u->organization : cfg->organization;
        char id[PS_ID_MAX + 1], emsg[sizeof(((ps_result_t *)0)->message) * 4];
        ps_result_t r;
        ps_outcome_t out;
        int code;

        if(!u->email || !uorg || strcmp(uorg, org) != 0)
            continue;
        out = ps_resolve_email(c, cfg->queue_dir, org, u->email, deadline,
                               PS_RESOLVE_RETRY | PS_RESOLVE_REFRESH, id, NULL, &r);
        ps_escape(r.message, emsg, sizeof(emsg));
        code = out == PS_OUT_OK || out == PS_OUT_ABSENT ? EX_OK_
               : out == PS_OUT_TRANSIENT                ? 75
               : out == PS_OUT_CONFIG                   ? EX_CONFIG_
                                                        : 77;
        rv = code > rv ? code : rv;
        if(arr) {
            json_object *e = json_object_new_object();

            json_object_object_add(e, "login", json_object_new_string(u->login));
            json_object_object_add(e, "email", json_object_new_string(u->email));
            json_object_object_add(e, "outcome", json_object_new_string(ps_outcome_name(out)));
            json_object_object_add(e, "id", out == PS_OUT_OK ? json_object_new_string(id) : NULL);
            json_object_object_add(e, "message", json_object_new_string(emsg));
            json_object_array_add(arr, e);
        } else if(out == PS_OUT_OK) {
            printf("  online: %s: email %s (login %s): user %s (%s)\n", org, u->email, u->login, id,
                   emsg);
        } else {
            printf("  online: %s: email %s (login %s): %s: %s\n", org, u->email, u->login,
                   out == PS_OUT_ABSENT ? "WARNING" : "FAILED", emsg);
            ps_logf(lg, out == PS_OUT_ABSENT ? LOG_WARNING : LOG_ERR,
                    "check --online: %s: email %s (login %s): %s%s", org, u->email, u->login, emsg,
                    out == PS_OUT_ABSENT ? "; a removal of this login would be held" : "");
        }
    }
    return rv;
}

/* `check --online`: asks the API, for each organization the configuration
 * names, whether the credential can read its member list (the first page,
 * per_page=1), then resolves its email entries (check_emails).
 * write_organization cannot be tried without removing someone.
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
            if(out == PS_OUT_OK) {
                json_object *emails = json_object_new_array();

                code = check_emails(cfg, lg, c, orgs[i], deadline, emails);
                json_object_object_add(e, "emails", emails);
            }
        } else {
            printf("  online: %s: %s: %s\n", orgs[i], out == PS_OUT_OK ? "OK" : "FAILED", what);
            if(out != PS_OUT_OK)
                ps_logf(lg, LOG_ERR, "check --online: %s: %s", orgs[i], what);
            else
                code = check_emails(cfg, lg, c, orgs[i], deadline, NULL);
        }
        if(code > rv)
            rv = code;
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

static int cmd_check(const opts_t *o, ps_log_t *lg, ps_config_t **cfgp)
{
    const ps_config_t *cfg = *cfgp;
    const char *dir = spool_dir(o, cfg);
    char smsg[512];
    size_t waiting;
    spool_t sp;
    int rv = EX_OK_, sender = -1;

    if(spool_read(&sp, dir, cfg ? cfg->path : o->config, lg) != 0) {
        spool_free(&sp);
        return EX_CONFIG_;
    }
    waiting = sp.held + sp.unres_held + sp.ndead;
    if(!cfg)
        rv = EX_CONFIG_;
    else if(waiting > 0)
        rv = 77; /* EX_NOPERM: held entries need a person */
    if(cfg)
        sender = ps_sender_probe(cfg, smsg, sizeof(smsg));
    if(o->json) {
        json_object *j = json_object_new_object();

        json_object_object_add(j, "config",
                               json_object_new_string(cfg         ? cfg->path
                                                      : o->config ? o->config
                                                                  : PS_DEFAULT_CONFIG));
        json_object_object_add(j, "ok", json_object_new_boolean(rv == EX_OK_));
        json_object_object_add(j, "config_loads", json_object_new_boolean(cfg != NULL));
        if(cfg) {
            json_object_object_add(j, "users", json_object_new_int64((int64_t)cfg->nusers));
            json_object_object_add(j, "api_url", json_object_new_string(cfg->api_url));
            json_object_object_add(
                j, "auth", json_object_new_string(cfg->auth_is_oauth ? "oauth" : "service-token"));
            json_object_object_add(j, "sender_socket", json_object_new_string(cfg->sender_socket));
            json_object_object_add(j, "sender",
                                   json_object_new_string(sender == 0  ? "running"
                                                          : sender < 0 ? "disabled"
                                                                       : "not-used"));
        }
        json_object_object_add(j, "queue_dir", json_object_new_string(dir));
        json_object_object_add(j, "pending", json_object_new_int64((int64_t)sp.pending));
        json_object_object_add(j, "held",
                               json_object_new_int64((int64_t)(sp.held + sp.unres_held)));
        json_object_object_add(j, "dead", json_object_new_int64((int64_t)sp.ndead));
        json_object_object_add(
            j, "unresolved",
            json_object_new_int64((int64_t)(sp.nunres - sp.unres_held - sp.unres_other)));
        json_object_object_add(j, "unresolved_other_config",
                               json_object_new_int64((int64_t)sp.unres_other));
        if(cfg && o->online) {
            int orv = check_online(o, lg, cfg, j);

            rv = orv > rv ? orv : rv;
        }
        print_json(j);
    } else {
        if(cfg)
            printf("%s: %s\n  users mapped: %zu\n  default organization: %s\n  api: %s (%s, "
                   "cleanup flags as %s)\n",
                   cfg->path, rv == EX_OK_ ? "OK" : "loads, but removals wait for a person",
                   cfg->nusers, cfg->organization ? cfg->organization : "(none)", cfg->api_url,
                   cfg->auth_is_oauth ? "OAuth token" : "service token",
                   cfg->flags_mode == PS_FLAGS_BODY ? "a JSON body" : "query parameters");
        else
            printf("%s: the configuration does not load (above)\n",
                   o->config ? o->config : PS_DEFAULT_CONFIG);
        printf("  spool: %s (%zu pending, %zu held, %zu dead)\n", dir, sp.pending,
               sp.held + sp.unres_held, sp.ndead);
        if(cfg && sender < 0)
            printf("  sender: %s\n", smsg);
        else if(cfg)
            printf("  sender: %s: %s\n", cfg->sender_socket, smsg);
        if(sp.nunres > sp.unres_held)
            printf("  unresolved: %zu recorded while a configuration could not be loaded "
                   "(`retry` with it queues them), %zu of them for other configurations (%s)\n",
                   sp.nunres - sp.unres_held, sp.unres_other, ps_unresolved_dir());
        if(cfg && o->online) {
            int orv = check_online(o, lg, cfg, NULL);

            rv = orv > rv ? orv : rv;
        }
        if(waiting > 0) {
            printf("  %zu removal%s wait%s for a person (`queue` shows why):\n", waiting,
                   waiting == 1 ? "" : "s", waiting == 1 ? "s" : "");
            list_entries(NULL, NULL, sp.live, sp.nlive);
            list_entries(NULL, "dead", sp.dead, sp.ndead);
        }
    }
    spool_free(&sp);
    return rv;
}

/* ------------------------------------------------------------ retry */

static void retry_json(const ps_drain_stats_t *st, int ur, const ps_resolve_stats_t *rs)
{
    json_object *j = json_object_new_object();

    json_object_object_add(j, "total", json_object_new_int64((int64_t)st->total));
    json_object_object_add(j, "sent", json_object_new_int64((int64_t)st->sent));
    json_object_object_add(j, "removed", json_object_new_int64((int64_t)st->removed));
    json_object_object_add(j, "absent", json_object_new_int64((int64_t)st->absent));
    json_object_object_add(j, "aged", json_object_new_int64((int64_t)st->aged));
    json_object_object_add(j, "busy", json_object_new_int64((int64_t)st->busy));
    json_object_object_add(j, "invalid", json_object_new_int64((int64_t)st->invalid));
    json_object_object_add(j, "pending", json_object_new_int64((int64_t)st->pending));
    json_object_object_add(j, "held", json_object_new_int64((int64_t)st->held));
    json_object_object_add(j, "dead", json_object_new_int64((int64_t)st->dead));
    json_object_object_add(j, "waiting", json_object_new_int64((int64_t)st->waiting));
    json_object_object_add(j, "http_429", json_object_new_int64(st->http_429));
    json_object_object_add(j, "connections", json_object_new_int64(st->connects));
    json_object_object_add(j, "seconds", json_object_new_double(st->elapsed));
    if(st->stopped)
        json_object_object_add(j, "stopped", json_object_new_string(st->reason));
    if(ur == 0) {
        json_object *u = json_object_new_object();

        json_object_object_add(u, "queued", json_object_new_int64((int64_t)rs->queued));
        json_object_object_add(u, "dropped", json_object_new_int64((int64_t)rs->dropped));
        json_object_object_add(u, "held", json_object_new_int64((int64_t)rs->held));
        json_object_object_add(u, "left", json_object_new_int64((int64_t)rs->left));
        json_object_object_add(u, "other_config", json_object_new_int64((int64_t)rs->other));
        json_object_object_add(u, "invalid", json_object_new_int64((int64_t)rs->invalid));
        json_object_object_add(j, "unresolved", u);
    }
    puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    json_object_put(j);
}

static void retry_text(const ps_drain_stats_t *st, int ur, const ps_resolve_stats_t *rs)
{
    size_t nres = rs->queued + rs->dropped + rs->held + rs->left + rs->invalid;

    if(ur == 0 && nres > 0)
        printf("retry: %zu login%s recorded while the configuration could not be loaded: %zu "
               "queued, %zu dropped (not mapped, service not listed, or no longer expired), %zu "
               "held (the account changed), %zu left, %zu invalid\n",
               nres, nres == 1 ? "" : "s", rs->queued, rs->dropped, rs->held, rs->left,
               rs->invalid);
    if(ur == 0 && rs->other > 0)
        printf("retry: %zu recorded login%s belong%s to another configuration (see `queue`)\n",
               rs->other, rs->other == 1 ? "" : "s", rs->other == 1 ? "s" : "");
    if(st->sent > 0 && st->connects > 0)
        printf("retry: sent %zu: %zu removed, %zu confirmed absent; %ld HTTP 429%s, %ld "
               "connection%s, %.1f s, %.1f entries/s\n",
               st->sent, st->removed, st->absent, st->http_429, st->http_429 == 1 ? "" : "s",
               st->connects, st->connects == 1 ? "" : "s", st->elapsed,
               st->elapsed > 0 ? (double)st->sent / st->elapsed : 0.0);
    else if(st->sent > 0)
        printf("retry: sent %zu: no connection to the API could be made (%.1f s)\n", st->sent,
               st->elapsed);
    if(st->aged > 0)
        printf("retry: %zu entr%s pending too long became %s\n", st->aged,
               st->aged == 1 ? "y" : "ies", st->aged == 1 ? "a dead letter" : "dead letters");
    if(st->waiting > 0) {
        char when[32];

        fmt_time(st->next_due, when, sizeof(when));
        printf("retry: %zu entr%s wait%s for a first attempt that api.spread puts later (the "
               "next at %s)\n",
               st->waiting, st->waiting == 1 ? "y" : "ies", st->waiting == 1 ? "s" : "", when);
    }
    if(st->sent + st->aged + nres == 0 && st->pending + st->held + st->dead == 0) {
        printf("retry: the queue is empty\n");
        return;
    }
    printf("retry: the spool holds %zu pending, %zu held, %zu dead%s\n", st->pending, st->held,
           st->dead,
           st->pending + st->held + st->dead == 0 ? ""
           : st->held + st->dead > 0 ? " (held and dead entries wait for a person: `queue`)"
                                     : "");
}

static int cmd_retry(const opts_t *o, ps_log_t *lg, ps_config_t **cfgp)
{
    ps_ctx_t ctx;
    ps_drain_stats_t st;
    ps_resolve_stats_t rs;
    ps_status_t rv;
    char err[1024], eerr[1200];
    int ur;

    memset(&ctx, 0, sizeof(ctx));
    ctx.cfg = *cfgp;
    ctx.log = lg;
    ctx.trigger = "retry";
    ctx.retry_held = o->held;
    if(o->deadline > 0)
        ctx.deadline = ps_now() + o->deadline;
    /* first the logins recorded while this configuration could not be
     * loaded: the mapped ones join the spool and are drained with it */
    ur = ps_unresolved_resolve(&ctx, ps_unresolved_dir(), &rs, err, sizeof(err));
    if(ur < 0)
        ps_logf(lg, LOG_ERR, "unresolved removals: %s", ps_escape(err, eerr, sizeof(eerr)));
    else if(ur == 1)
        ps_logf(lg, LOG_NOTICE, "unresolved removals: another retry is resolving them");
    rv = ps_drain(&ctx, !o->json && isatty(STDERR_FILENO), &st);
    ps_ctx_release(&ctx);
    ps_metrics_retry(o->metrics, !st.stopped && rv != PS_ST_ERROR);
    if(ur < 0 && ps_status_worse(PS_ST_ERROR, rv))
        rv = PS_ST_ERROR;
    else if(ur == 0 && rs.left > 0 && ps_status_worse(PS_ST_QUEUED, rv))
        rv = PS_ST_QUEUED;
    else if(ur == 0 && rs.held > 0 && ps_status_worse(PS_ST_HELD, rv))
        rv = PS_ST_HELD;
    if(o->json)
        retry_json(&st, ur, &rs);
    else
        retry_text(&st, ur, &rs);
    if(st.stopped || (st.reason[0] && rv != PS_ST_REMOVED)) {
        char er[1200];

        ps_logf(lg, rv == PS_ST_QUEUED ? LOG_WARNING : LOG_ERR,
                "retry stopped: %s; the spool holds %zu pending, %zu held, %zu dead",
                ps_escape(st.reason, er, sizeof(er)), st.pending, st.held, st.dead);
    }
    return ps_status_exit(rv);
}

/* ------------------------------------------------------------ reconcile */

static int cmd_reconcile(const opts_t *o, ps_log_t *lg, ps_config_t **cfgp)
{
    ps_rc_opts_t ro;
    ps_rc_plan_t plan;
    int decided = 0, rv;

    memset(&ro, 0, sizeof(ro));
    ro.apply = o->apply;
    ro.allow = o->allow;
    ro.json = o->json;
    if(o->deadline > 0)
        ro.deadline = ps_now() + o->deadline;
    ro.plan_out = &plan;
    ro.decided = &decided;
    rv = ps_reconcile(*cfgp, lg, &ro);
    /* what --apply found goes to the metrics (a plan changes nothing) */
    if(decided && o->apply)
        ps_metrics_reconcile(o->metrics, plan.candidates, plan.tripped);
    return rv;
}

/* ------------------------------------------------------------ main */

static int cmd_serve(const opts_t *o, ps_log_t *lg, ps_config_t **cfgp)
{
    return ps_sender_serve(cfgp, o->socket, lg, o->metrics);
}

static int cmd_members_(const opts_t *o, ps_log_t *lg, ps_config_t **cfgp)
{
    return cmd_members(o, lg, *cfgp);
}

static int cmd_lookup_(const opts_t *o, ps_log_t *lg, ps_config_t **cfgp)
{
    (void)lg;
    return cmd_lookup(o, *cfgp);
}

enum { ARGS_NONE, ARGS_SOME, ARGS_ANY };
enum {
    CFG_NEEDED,   /* the command does not run without a configuration */
    CFG_OPTIONAL, /* runs without one (queue, check list the spool; remove records) */
    CFG_SELF      /* loads it itself (pam-helper) */
};

enum {
    METRICS_NO,    /* changes nothing the metrics show */
    METRICS_AFTER, /* writes the metrics textfile when it is done */
    METRICS_SELF   /* writes it itself (serve, pam-helper) */
};

typedef struct command {
    const char *name;
    int (*run)(const opts_t *o, ps_log_t *lg, ps_config_t **cfgp);
    int args;         /* ARGS_* */
    unsigned options; /* the OPT_* it takes */
    int config;       /* CFG_* */
    int require_auth; /* a configuration without a credential is an error */
    int metrics;      /* METRICS_* */
} command_t;

static const command_t commands[] = {
    { "remove", cmd_remove, ARGS_SOME,
      OPT_DRY_RUN | OPT_NO_QUEUE | OPT_DEADLINE | OPT_HOOK | OPT_NO_SPREAD, CFG_OPTIONAL, 0,
      METRICS_AFTER },
    { "lookup", cmd_lookup_, ARGS_SOME, 0, CFG_NEEDED, 0, METRICS_NO },
    { "retry", cmd_retry, ARGS_NONE, OPT_DEADLINE | OPT_HELD, CFG_NEEDED, 0, METRICS_AFTER },
    { "queue", cmd_queue, ARGS_ANY, OPT_QUEUE_DIR, CFG_OPTIONAL, 0, METRICS_AFTER },
    { "check", cmd_check, ARGS_NONE, OPT_QUEUE_DIR | OPT_ONLINE | OPT_DEADLINE, CFG_OPTIONAL, 1,
      METRICS_NO },
    { "members", cmd_members_, ARGS_NONE, OPT_ORGANIZATION | OPT_DEADLINE, CFG_NEEDED, 1,
      METRICS_NO },
    { "reconcile", cmd_reconcile, ARGS_NONE, OPT_APPLY | OPT_DEADLINE, CFG_NEEDED, 1,
      METRICS_AFTER },
    { "serve", cmd_serve, ARGS_NONE, OPT_SOCKET, CFG_NEEDED, 0, METRICS_SELF },
    { PS_HELPER_SUBCOMMAND, cmd_pam_helper, ARGS_ANY, OPT_HELPER | OPT_DEADLINE, CFG_SELF, 0,
      METRICS_SELF },
};

/* Whether this run changed what the metrics show: `queue` only with drop,
 * `remove` unless --dry-run, `reconcile` only with --apply. */
static int changes_state(const command_t *c, const opts_t *o)
{
    if(c->metrics != METRICS_AFTER)
        return 0;
    if(c->run == cmd_queue)
        return o->nargs > 0 && strcmp(o->args[0], "drop") == 0;
    if(c->run == cmd_remove)
        return !o->dry_run;
    if(c->run == cmd_reconcile)
        return o->apply;
    return 1;
}

static const struct {
    unsigned bit;
    const char *name;
} option_names[] = { { OPT_DRY_RUN, "--dry-run" },
                     { OPT_NO_QUEUE, "--no-queue" },
                     { OPT_DEADLINE, "--deadline" },
                     { OPT_SOCKET, "--socket" },
                     { OPT_HELD, "--held" },
                     { OPT_QUEUE_DIR, "--queue-dir" },
                     { OPT_HELPER, "--mode/--service/--debug" },
                     { OPT_ONLINE, "--online" },
                     { OPT_ORGANIZATION, "--organization" },
                     { OPT_HOOK, "--hook" },
                     { OPT_APPLY, "--apply/--allow" },
                     { OPT_NO_SPREAD, "--no-spread" } };

static int run_command(const opts_t *opts, ps_log_t *lg)
{
    const command_t *c = NULL;
    ps_config_t *cfg = NULL;
    opts_t run = *opts;
    const opts_t *o = &run;
    size_t i;
    int rv;

    if(!o->command)
        return usage_error("no command given");
    for(i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if(strcmp(o->command, commands[i].name) == 0)
            c = &commands[i];
    if(!c)
        return usage_error("unknown command: %s", o->command);
    for(i = 0; i < sizeof(option_names) / sizeof(option_names[0]); i++)
        if((o->given & option_names[i].bit) && !(c->options & option_names[i].bit))
            return usage_error("%s does not go with %s", option_names[i].name, c->name);
    if(c->args == ARGS_NONE && o->nargs > 0)
        return usage_error("%s takes no argument", c->name);
    if(c->args == ARGS_SOME && o->nargs == 0)
        return usage_error("%s: no LOGIN given", c->name);
    if(c->config != CFG_SELF) {
        rv = load_config(o, lg, c->require_auth, &cfg);
        if(rv != EX_OK_ && c->config != CFG_OPTIONAL)
            return rv;
    }
    /* every audit line of this run is counted; the counts reach the
     * textfile only when metrics.textfile is set */
    if(c->metrics != METRICS_NO && (cfg || c->config == CFG_SELF)) {
        run.metrics = ps_metrics_new();
        ps_metrics_attach(run.metrics, lg);
    }
    rv = c->run(o, lg, &cfg);
    if(cfg && changes_state(c, o))
        ps_metrics_write(run.metrics, cfg, lg);
    lg->on_audit = NULL;
    ps_metrics_free(run.metrics);
    ps_config_free(cfg);
    return rv;
}

int main(int argc, char **argv)
{
    opts_t o;
    ps_log_t lg = { .to_stderr = 1, .to_syslog = 1 };
    double start;
    int rv;

    /* First of all, for every command (serve and pam-helper too): no core
     * dump of this process, which holds the API token in memory, and no
     * ptrace or /proc/PID/mem access to it by anyone but root. The systemd
     * units add LimitCORE=0. A failure (a seccomp filter refusing prctl)
     * is no reason not to remove a departing user. */
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    start = ps_now();

    memset(&o, 0, sizeof(o));
    o.start = start;
    o.grace = -1;
    o.allow = -1;
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
    if(o.deadline > 0)
        o.deadline_at = start + o.deadline;
    else if(o.command && strcmp(o.command, PS_HELPER_SUBCOMMAND) == 0)
        o.deadline_at = start + PS_HELPER_DEFAULT_TIMEOUT;
    else if(o.hook)
        /* hook_deadline is in the configuration, which must load first:
         * within the default wait (remove then counts hook_deadline from
         * the start too) */
        o.deadline_at = start + PS_DEFAULT_HOOK_DEADLINE;
    openlog("planetscale-deprovision", LOG_PID, LOG_AUTHPRIV);
    rv = run_command(&o, &lg);
    free(o.args);
    closelog();
    return rv;
}
