/* log.c - one logging function for the whole core (see log.h).
 * syslog() is called with LOG_AUTHPRIV in the priority and without
 * openlog()/closelog(): inside a PAM stack the host owns the syslog state
 * (ident, facility, connection) and we must not change it. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "log.h"

#define PS_LOG_PREFIX "planetscale-deprovision: "
#define PS_LOG_LINE   2048
#define PS_AUDIT_LINE 4096

static int stderr_wanted(const ps_log_t *lg, int prio)
{
    if(!lg->to_stderr)
        return 0;
    if(prio >= LOG_INFO)
        return lg->verbose;
    return 1;
}

void ps_logf(const ps_log_t *lg, int prio, const char *fmt, ...)
{
    char buf[PS_LOG_LINE];
    va_list ap;

    if(!lg || !fmt)
        return;
    if(prio == LOG_DEBUG && !lg->verbose)
        return;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);

    if(stderr_wanted(lg, prio))
        fprintf(stderr, PS_LOG_PREFIX "%s\n", buf);
    if(lg->to_syslog) {
        /* a control character left in the text (a caller forgot
         * ps_escape) becomes '?' instead of splitting the record */
        ps_one_line(buf);
        syslog(LOG_AUTHPRIV | prio, "%s", buf);
    }
}

/* One "key=value" string value: escaped, and quoted when it holds a space
 * so that it cannot pass for further key=value pairs. NULL prints "-". */
static const char *field(const char *in, char *out, size_t outsz)
{
    char *v = out + 1; /* leaves room for the quotes */
    size_t len;

    if(!in)
        return "-";
    ps_escape(in, v, outsz - 2);
    if(v[0] && !strchr(v, ' ') && !strchr(v, '='))
        return v;
    len = strlen(v);
    out[0] = '"';
    out[len + 1] = '"';
    out[len + 2] = '\0';
    return out;
}

static const char *flag(int v)
{
    if(v < 0)
        return "-";
    return v ? "true" : "false";
}

void ps_audit(const ps_log_t *lg, int prio, const char *outcome, const char *trigger,
              const char *login, const char *organization, const char *id, int delete_passwords,
              int delete_service_tokens, long http_status, const char *detail)
{
    char o[64], t[64], l[PS_LOGIN_MAX * 4 + 8], org[PS_ID_MAX * 4 + 8];
    char i[PS_ID_MAX * 4 + 8], d[1024];
    char line[PS_AUDIT_LINE];

    ps_escape(detail ? detail : "", d, sizeof(d));
    snprintf(
        line, sizeof(line),
        "outcome=%s trigger=%s login=%s organization=%s id=%s delete_passwords=%s "
        "delete_service_tokens=%s http_status=%ld detail=\"%s\"",
        field(outcome, o, sizeof(o)), field(trigger && trigger[0] ? trigger : NULL, t, sizeof(t)),
        field(login, l, sizeof(l)), field(organization, org, sizeof(org)), field(id, i, sizeof(i)),
        flag(delete_passwords), flag(delete_service_tokens), http_status, d);

    syslog(LOG_AUTHPRIV | prio, "%s", line);
    if(lg && lg->on_audit && outcome)
        lg->on_audit(lg->on_audit_arg, outcome);
    if(lg && lg->to_stderr && lg->verbose)
        fprintf(stderr, PS_LOG_PREFIX "%s\n", line);
}
