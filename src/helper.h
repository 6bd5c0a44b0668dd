/* helper.h - the protocol between pam_planetscale.so and the command.
 *
 * The module never loads libcurl, libconfig, json-c or a token: when it has
 * a removal to make it runs, like pam_unix runs unix_chkpwd,
 *
 *   HELPER pam-helper --mode MODE --service SERVICE --deadline SECS
 *          [--config PATH] [--debug] -- LOGIN
 *
 * (HELPER = SBINDIR "/planetscale-deprovision", or the module's helper=PATH)
 * with envp {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}, stdin and
 * stderr on /dev/null, stdout on a pipe, every other descriptor closed.
 * MODE is one of PS_MODE_*. The helper writes exactly one line, one of the
 * PS_HELPER_* words, and exits; it writes its own audit line to syslog.
 * The module waits at most SECS + PS_HELPER_GRACE seconds for that line,
 * then kills the child (SIGKILL) and reaps it; the word, not the exit
 * status, is the answer (a host that ignores SIGCHLD cannot steal it). */
#ifndef PS_HELPER_H
#define PS_HELPER_H

#define PS_HELPER_SUBCOMMAND      "pam-helper"
#define PS_HELPER_PATH            SBINDIR "/planetscale-deprovision"
#define PS_HELPER_GRACE           2 /* seconds past --deadline before SIGKILL */
#define PS_HELPER_DEFAULT_TIMEOUT 15

#define PS_MODE_SERVICE "service" /* dedicated service: helper checks pam_services */
#define PS_MODE_EXPIRED "expired" /* only_expired: the module saw sp_expire passed */
#define PS_MODE_CLOSE   "close"   /* session on_close */

#define PS_HELPER_REMOVED     "removed"     /* DELETE answered 204 */
#define PS_HELPER_ABSENT      "absent"      /* not a member, confirmed */
#define PS_HELPER_UNMAPPED    "unmapped"    /* not in the map, unmapped = "ignore" */
#define PS_HELPER_UNKNOWN     "unknown"     /* not in the map, unmapped = "error" */
#define PS_HELPER_IGNORED     "ignored"     /* service not in pam_services */
#define PS_HELPER_NOT_DUE     "not-due"     /* only_expired: expiry not expired_grace_days past */
#define PS_HELPER_QUEUED      "queued"      /* transient failure, pending in the spool */
#define PS_HELPER_SCHEDULED   "scheduled"   /* pending, first attempt later (api.spread) */
#define PS_HELPER_HELD        "held"        /* refused or not confirmed: held in the spool */
#define PS_HELPER_HELD_CONFIG "held-config" /* configuration problem: held in the spool */
#define PS_HELPER_RECORDED    "recorded"    /* configuration did not load: unresolved */
#define PS_HELPER_REFUSED     "refused"     /* refused, not in the spool */
#define PS_HELPER_CONFIG      "config"      /* configuration error, not in the spool */
#define PS_HELPER_ERROR       "error"       /* anything else */

#endif
