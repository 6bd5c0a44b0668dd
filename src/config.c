/* config.c - load and validate the configuration (libconfig syntax; every
 * key is described in planetscale-deprovision.conf(5)).
 *
 * libconfig 1.5 accepts any key, so every group is walked against a table of
 * the keys we know; anything else is an error naming FILE:LINE. Numbers may be
 * written as integers or floats where a float makes sense (rate_limit = 10 is
 * an integer to libconfig).
 *
 * Files are opened by us and parsed with config_read() so that the
 * descriptor whose owner and mode we check is the one we parse. Every file
 * the configuration names (the main file, include_dir files, token_file,
 * ca_file) is opened by ps_open_regular(): never blocking on what it is (a
 * FIFO would wait for a writer forever, /dev/zero never ends), and checked
 * to be a regular file before a byte is read. api.ca_file is read here too,
 * through the descriptor that was checked, and handed to libcurl as a
 * buffer: it replaces the whole trust store, so it gets the owner and mode
 * rules of include files, and nobody can swap it between the check and its
 * use.
 *
 * Deadline: ps_config_load_until() checks the caller's deadline before each
 * file it opens and while it lists include_dir, and fails with a message
 * saying how far it got (the userdel hook passes --deadline, and `remove`
 * then records the login for retry). What a deadline checked between calls
 * cannot bound is one call that blocks in the kernel: open() or read() on a
 * hung network file system (a hard NFS mount, a stuck FUSE server), and
 * libconfig parsing one very large file (about 0.2 s per 100,000 users,
 * bounded by the file's size). That is accepted: the configuration lives on
 * the root file system next to /etc/passwd, and when that hangs, userdel
 * hangs before it ever runs our hook. The login path is bounded anyway: the
 * PAM module kills its helper with SIGKILL at the deadline (a task waiting
 * on NFS is killable). Interrupting the command itself (alarm) would kill it
 * before it could record the login, which is worse than waiting.
 *
 * Symbolic links: the main file may be a symlink (configuration management
 * often installs one) as long as it holds no secret; the checks then apply to
 * the target, through the open descriptor. A main file that holds a secret,
 * and api.token_file, must be named directly: a link lets whoever controls
 * the link point root at another file, and "chmod 600" on the path the admin
 * sees would not obviously protect the secret. Include files may be links
 * (the usual *.d pattern); each target is checked like any include file.
 *
 * libconfig's own "@include" is refused: the included file would escape the
 * owner and mode checks. include_dir is the supported way to split users.
 *
 * Secrets (token, oauth token, a proxy URL with credentials) are never copied
 * into an error message; the buffers that held them are wiped before free. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

#define PS_TOKEN_FILE_MAX 4096
#define PS_CA_FILE_MAX    (4 * 1024 * 1024) /* Debian's whole CA bundle is about 0.2 MiB */
#define PS_IOBUF_SIZE     16384
#define PS_ID_RULE        "1-64 characters of A-Z a-z 0-9 _ . -, not starting with '.' or '-'"
#define PS_EMAIL_RULE                                                                  \
    "LOCAL@DOMAIN, at most 254 bytes; LOCAL of A-Z a-z 0-9 and .!#$%&'*+/=?^_`{|}~-, " \
    "DOMAIN of dot-separated labels of A-Z a-z 0-9 and -"
#define PS_LOGIN_RULE                                              \
    "1-256 bytes, no space, control character, '/', ':' or '\\', " \
    "not starting with '-'"

struct loader {
    ps_config_t *cfg;
    const char *file; /* file being walked, for messages */
    char *err;
    size_t errlen;
    size_t cap;      /* allocated entries in cfg->users */
    ps_user_t *user; /* user being walked */

    /* credentials as found in the main file (point into the libconfig tree) */
    const config_setting_t *s_api;
    const config_setting_t *s_token_id;
    const config_setting_t *s_token;
    const config_setting_t *s_token_file;
    const config_setting_t *s_oauth;
    const config_setting_t *s_timeout;
    const config_setting_t *s_connect_timeout;
    const config_setting_t *s_include_dir;
    const config_setting_t *s_ca_file;

    double deadline; /* ps_now() value, 0 = none */
};

typedef int (*key_fn)(struct loader *ld, const config_setting_t *s);

struct key {
    const char *name;
    key_fn fn;
};

/* ------------------------------------------------------------ messages */

static void setting_path(const config_setting_t *s, char *buf, size_t len)
{
    const config_setting_t *chain[32];
    size_t n = 0;
    size_t pos = 0;

    buf[0] = '\0';
    for(; s && !config_setting_is_root(s) && n < 32; s = config_setting_parent(s))
        chain[n++] = s;
    while(n-- > 0 && pos < len) {
        const char *name = config_setting_name(chain[n]);
        int w;
        if(name)
            w = snprintf(buf + pos, len - pos, "%s%s", pos ? "." : "", name);
        else
            w = snprintf(buf + pos, len - pos, "[%d]", config_setting_index(chain[n]));
        if(w < 0)
            break;
        pos += (size_t)w;
    }
}

/* "FILE:LINE: PATH: message"; returns -1 so that callers can return it.
 * libconfig 1.5 keeps source lines in an unsigned short: past line 65535 the
 * number it reports wraps around (the PATH, e.g. users[70000], stays exact). */
static int fail_at(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
    PS_PRINTF(3, 4);
static int fail_at(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
{
    char where[256];
    va_list ap;
    int n;

    if(!ld->err || !ld->errlen)
        return -1;
    setting_path(s, where, sizeof(where));
    n = snprintf(ld->err, ld->errlen, "%s:%u: %s%s", ld->file,
                 (unsigned)config_setting_source_line(s), where, where[0] ? ": " : "");
    if(n < 0 || (size_t)n >= ld->errlen)
        return -1;
    va_start(ap, fmt);
    vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* "FILE: message" */
static int fail_file(struct loader *ld, const char *file, const char *fmt, ...) PS_PRINTF(3, 4);
static int fail_file(struct loader *ld, const char *file, const char *fmt, ...)
{
    va_list ap;
    int n;

    if(!ld->err || !ld->errlen)
        return -1;
    n = snprintf(ld->err, ld->errlen, "%s: ", file);
    if(n < 0 || (size_t)n >= ld->errlen)
        return -1;
    va_start(ap, fmt);
    vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* 1 when the caller's deadline has passed. */
static int past_deadline(const struct loader *ld)
{
    return ld->deadline > 0 && ps_now() >= ld->deadline;
}

/* ps_check_*_perms() messages start with "PATH: "; fail_file() adds it too. */
static const char *without_path(const char *msg, const char *path)
{
    size_t len = strlen(path);

    if(!strncmp(msg, path, len) && msg[len] == ':' && msg[len + 1] == ' ')
        return msg + len + 2;
    return msg;
}

static const char *type_name(int type)
{
    switch(type) {
    case CONFIG_TYPE_GROUP: return "a group { ... }";
    case CONFIG_TYPE_INT: return "an integer";
    case CONFIG_TYPE_INT64: return "a 64-bit integer";
    case CONFIG_TYPE_FLOAT: return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_ARRAY: return "an array [ ... ]";
    case CONFIG_TYPE_LIST: return "a list ( ... )";
    default: return "nothing";
    }
}

static int wrong_type(struct loader *ld, const config_setting_t *s, const char *expected)
{
    return fail_at(ld, s, "expected %s, got %s", expected, type_name(config_setting_type(s)));
}

/* ------------------------------------------------------------ scalars */

/* 1 when every byte is visible ASCII (no space, control, DEL or 8-bit). */
static int visible_ascii(const char *s)
{
    for(; *s; s++) {
        if((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    }
    return 1;
}

/* A non-empty string setting; points into the libconfig tree. */
static int get_cstr(struct loader *ld, const config_setting_t *s, const char **out)
{
    const char *v = NULL;

    if(config_setting_type(s) != CONFIG_TYPE_STRING)
        return wrong_type(ld, s, "a string");
    v = config_setting_get_string(s);
    if(!v || !v[0])
        return fail_at(ld, s, "must not be empty");
    *out = v;
    return 0;
}

/* A non-empty string setting without control characters, copied. */
static int get_str(struct loader *ld, const config_setting_t *s, char **out)
{
    const char *v = NULL;
    char esc[128];
    const char *p;

    if(get_cstr(ld, s, &v))
        return -1;
    for(p = v; *p; p++) {
        if((unsigned char)*p < 0x20 || *p == 0x7f)
            return fail_at(ld, s, "contains a control character: \"%s\"",
                           ps_escape(v, esc, sizeof(esc)));
    }
    free(*out);
    *out = strdup(v);
    if(!*out)
        return fail_at(ld, s, "out of memory");
    return 0;
}

static int get_bool(struct loader *ld, const config_setting_t *s, int *out)
{
    if(config_setting_type(s) != CONFIG_TYPE_BOOL)
        return wrong_type(ld, s, "a boolean (true or false)");
    *out = config_setting_get_bool(s) ? 1 : 0;
    return 0;
}

static int get_int(struct loader *ld, const config_setting_t *s, long long lo, long long hi,
                   long long *out)
{
    long long v = 0;

    if(config_setting_type(s) == CONFIG_TYPE_INT)
        v = config_setting_get_int(s);
    else if(config_setting_type(s) == CONFIG_TYPE_INT64)
        v = config_setting_get_int64(s);
    else
        return wrong_type(ld, s, "an integer");
    if(v < lo || v > hi)
        return fail_at(ld, s, "%lld is out of range (%lld to %lld)", v, lo, hi);
    *out = v;
    return 0;
}

/* An integer or a float in (0, hi]. */
static int get_positive(struct loader *ld, const config_setting_t *s, double hi, double *out)
{
    double v;

    switch(config_setting_type(s)) {
    case CONFIG_TYPE_INT: v = config_setting_get_int(s); break;
    case CONFIG_TYPE_INT64: v = (double)config_setting_get_int64(s); break;
    case CONFIG_TYPE_FLOAT: v = config_setting_get_float(s); break;
    default: return wrong_type(ld, s, "a number");
    }
    if(!(v > 0) || v > hi)
        return fail_at(ld, s, "%g is out of range (more than 0, at most %g)", v, hi);
    *out = v;
    return 0;
}

static int get_id(struct loader *ld, const config_setting_t *s, const char *what, char **out)
{
    const char *v = NULL;
    char esc[PS_ID_MAX * 4 + 8];

    if(config_setting_type(s) != CONFIG_TYPE_STRING)
        return wrong_type(ld, s, "a string");
    v = config_setting_get_string(s);
    if(!v || !v[0])
        return fail_at(ld, s, "empty %s", what);
    if(!ps_id_valid(v))
        return fail_at(ld, s, "invalid %s \"%s\" (%s)", what, ps_escape(v, esc, sizeof(esc)),
                       PS_ID_RULE);
    free(*out);
    *out = strdup(v);
    if(!*out)
        return fail_at(ld, s, "out of memory");
    return 0;
}

/* Relative paths are taken relative to the main file's directory. */
static char *resolve_path(const ps_config_t *cfg, const char *p)
{
    const char *slash;
    char *r;
    size_t dlen;

    if(p[0] == '/')
        return strdup(p);
    slash = strrchr(cfg->path, '/');
    if(!slash)
        return strdup(p);
    dlen = (size_t)(slash - cfg->path);
    r = malloc(dlen + strlen(p) + 2);
    if(r) {
        memcpy(r, cfg->path, dlen);
        r[dlen] = '/';
        memcpy(r + dlen + 1, p, strlen(p) + 1);
    }
    return r;
}

/* ------------------------------------------------------------ walking */

static int from_include_directive(struct loader *ld, const config_setting_t *s)
{
    if(config_setting_source_file(s))
        return fail_at(ld, s,
                       "comes from @include \"%s\", which is not supported; "
                       "use include_dir",
                       config_setting_source_file(s));
    return 0;
}

static int unknown_key(struct loader *ld, const config_setting_t *s, const struct key *keys)
{
    char known[256];
    size_t pos = 0;
    const struct key *k;

    known[0] = '\0';
    for(k = keys; k->name && pos < sizeof(known); k++) {
        int w = snprintf(known + pos, sizeof(known) - pos, "%s%s", pos ? ", " : "", k->name);
        if(w < 0)
            break;
        pos += (size_t)w;
    }
    return fail_at(ld, s, "unknown key (known here: %s)", known);
}

static int walk_group(struct loader *ld, const config_setting_t *g, const struct key *keys)
{
    int n = config_setting_length(g);
    int i;

    for(i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(s);
        const struct key *k;

        if(from_include_directive(ld, s))
            return -1;
        for(k = keys; k->name; k++) {
            if(name && !strcmp(name, k->name))
                break;
        }
        if(!k->name)
            return unknown_key(ld, s, keys);
        if(k->fn(ld, s))
            return -1;
    }
    return 0;
}

static int walk_subgroup(struct loader *ld, const config_setting_t *s, const struct key *keys)
{
    if(config_setting_type(s) != CONFIG_TYPE_GROUP)
        return wrong_type(ld, s, "a group { ... }");
    return walk_group(ld, s, keys);
}

/* ------------------------------------------------------------ api */

static int k_url(struct loader *ld, const config_setting_t *s);

static int k_token_id(struct loader *ld, const config_setting_t *s)
{
    const char *v = NULL;

    if(get_cstr(ld, s, &v))
        return -1;
    if(!visible_ascii(v) || strchr(v, ':'))
        return fail_at(ld, s,
                       "contains a space, ':', control or non-ASCII "
                       "character (value not shown)");
    ld->s_token_id = s;
    return 0;
}

/* A secret string: visible ASCII only (it goes into an HTTP header); the
 * value itself never appears in an error. */
static int secret_value(struct loader *ld, const config_setting_t *s)
{
    const char *v = NULL;

    if(get_cstr(ld, s, &v))
        return -1;
    if(!visible_ascii(v))
        return fail_at(ld, s,
                       "contains a space, control or non-ASCII character "
                       "(value not shown)");
    return 0;
}

static int k_token(struct loader *ld, const config_setting_t *s)
{
    if(secret_value(ld, s))
        return -1;
    ld->s_token = s;
    return 0;
}

static int k_token_file(struct loader *ld, const config_setting_t *s)
{
    const char *v = NULL;

    if(get_cstr(ld, s, &v))
        return -1;
    ld->s_token_file = s;
    return 0;
}

static int k_oauth_token(struct loader *ld, const config_setting_t *s)
{
    if(secret_value(ld, s))
        return -1;
    ld->s_oauth = s;
    return 0;
}

static int k_cleanup_flags(struct loader *ld, const config_setting_t *s)
{
    const char *v = NULL;

    if(get_cstr(ld, s, &v))
        return -1;
    if(!strcmp(v, "query"))
        ld->cfg->flags_mode = PS_FLAGS_QUERY;
    else if(!strcmp(v, "body"))
        ld->cfg->flags_mode = PS_FLAGS_BODY;
    else
        return fail_at(ld, s, "must be \"query\" or \"body\"");
    return 0;
}

static int k_timeout(struct loader *ld, const config_setting_t *s)
{
    ld->s_timeout = s;
    return get_positive(ld, s, 300, &ld->cfg->timeout);
}

static int k_connect_timeout(struct loader *ld, const config_setting_t *s)
{
    ld->s_connect_timeout = s;
    return get_positive(ld, s, 300, &ld->cfg->connect_timeout);
}

static int k_retries(struct loader *ld, const config_setting_t *s)
{
    long long v = 0;

    if(get_int(ld, s, 1, 20, &v))
        return -1;
    ld->cfg->retries = (int)v;
    return 0;
}

static int k_rate_limit(struct loader *ld, const config_setting_t *s)
{
    return get_positive(ld, s, 1000, &ld->cfg->rate_limit);
}

/* api.spread: an integer or a float in [0, PS_SPREAD_MAX] seconds. */
static int k_spread(struct loader *ld, const config_setting_t *s)
{
    double v;

    switch(config_setting_type(s)) {
    case CONFIG_TYPE_INT: v = config_setting_get_int(s); break;
    case CONFIG_TYPE_INT64: v = (double)config_setting_get_int64(s); break;
    case CONFIG_TYPE_FLOAT: v = config_setting_get_float(s); break;
    default: return wrong_type(ld, s, "a number of seconds");
    }
    if(!(v >= 0) || v > PS_SPREAD_MAX)
        return fail_at(ld, s, "%g is out of range (0 to %d seconds)", v, PS_SPREAD_MAX);
    ld->cfg->spread = v;
    return 0;
}

/* Only the path here: the file is read once the main file is walked
 * (read_ca_file). */
static int k_ca_file(struct loader *ld, const config_setting_t *s)
{
    char *v = NULL;

    if(get_str(ld, s, &v))
        return -1;
    free(ld->cfg->ca_file);
    ld->cfg->ca_file = resolve_path(ld->cfg, v);
    free(v);
    if(!ld->cfg->ca_file)
        return fail_at(ld, s, "out of memory");
    ld->s_ca_file = s;
    return 0;
}

/* A proxy URL may carry credentials: never echo it. */
static int k_proxy(struct loader *ld, const config_setting_t *s)
{
    const char *v = NULL;

    if(get_cstr(ld, s, &v))
        return -1;
    if(!visible_ascii(v))
        return fail_at(ld, s,
                       "contains a space, control or non-ASCII character "
                       "(value not shown)");
    free(ld->cfg->proxy);
    ld->cfg->proxy = strdup(v);
    if(!ld->cfg->proxy)
        return fail_at(ld, s, "out of memory");
    return 0;
}

static const struct key api_keys[] = { { "url", k_url },
                                       { "token_id", k_token_id },
                                       { "token", k_token },
                                       { "token_file", k_token_file },
                                       { "oauth_token", k_oauth_token },
                                       { "cleanup_flags", k_cleanup_flags },
                                       { "timeout", k_timeout },
                                       { "connect_timeout", k_connect_timeout },
                                       { "retries", k_retries },
                                       { "rate_limit", k_rate_limit },
                                       { "spread", k_spread },
                                       { "ca_file", k_ca_file },
                                       { "proxy", k_proxy },
                                       { NULL, NULL } };

static int k_api(struct loader *ld, const config_setting_t *s)
{
    ld->s_api = s;
    return walk_subgroup(ld, s, api_keys);
}

/* ------------------------------------------------------------ URL */

struct url_parts {
    int https;
    const char *host;
    size_t hostlen;
    int ipv6;
};

static int url_port_ok(const char *p, const char *end)
{
    long port = 0;

    if(p == end || end - p > 5)
        return 0;
    for(; p < end; p++) {
        if(*p < '0' || *p > '9')
            return 0;
        port = port * 10 + (*p - '0');
    }
    return port >= 1 && port <= 65535;
}

/* Splits scheme://host[:port][/path]; *why says what is wrong. */
static int url_split(const char *url, struct url_parts *u, const char **why)
{
    const char *p;
    const char *end;
    const char *after;

    memset(u, 0, sizeof(*u));
    if(!strncasecmp(url, "https://", 8)) {
        u->https = 1;
        p = url + 8;
    } else if(!strncasecmp(url, "http://", 7))
        p = url + 7;
    else {
        *why = "must start with https://";
        return -1;
    }
    if(!visible_ascii(url)) {
        *why = "contains a space, control or non-ASCII character";
        return -1;
    }
    if(strchr(url, '?') || strchr(url, '#')) {
        *why = "must not contain a query (?) or a fragment (#)";
        return -1;
    }
    end = p + strcspn(p, "/");
    if(memchr(p, '@', (size_t)(end - p))) {
        *why = "must not contain user information (user@host)";
        return -1;
    }
    if(*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if(!close) {
            *why = "has an unterminated [IPv6] address";
            return -1;
        }
        u->host = p + 1;
        u->hostlen = (size_t)(close - p - 1);
        u->ipv6 = 1;
        after = close + 1;
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        after = colon ? colon : end;
        u->host = p;
        u->hostlen = (size_t)(after - p);
    }
    if(!u->hostlen) {
        *why = "has no host";
        return -1;
    }
    if(after != end && (*after != ':' || !url_port_ok(after + 1, end))) {
        *why = "has an invalid port";
        return -1;
    }
    return 0;
}

static int host_is_loopback(const struct url_parts *u)
{
    char host[256];
    unsigned char addr[sizeof(struct in6_addr)];

    if(u->hostlen >= sizeof(host))
        return 0;
    memcpy(host, u->host, u->hostlen);
    host[u->hostlen] = '\0';
    if(u->ipv6) {
        return inet_pton(AF_INET6, host, addr) == 1 &&
               IN6_IS_ADDR_LOOPBACK((const struct in6_addr *)(void *)addr);
    }
    if(!strcasecmp(host, "localhost"))
        return 1;
    return inet_pton(AF_INET, host, addr) == 1 && addr[0] == 127;
}

int ps_url_is_loopback_http(const char *url)
{
    struct url_parts u;
    const char *why;

    if(!url || url_split(url, &u, &why))
        return 0;
    return host_is_loopback(&u);
}

static int k_url(struct loader *ld, const config_setting_t *s)
{
    struct url_parts u;
    const char *v = NULL;
    const char *why = NULL;
    size_t len;

    /* the value is not echoed: a URL with user information holds a password */
    if(get_cstr(ld, s, &v))
        return -1;
    if(url_split(v, &u, &why))
        return fail_at(ld, s, "%s", why);
    if(!u.https && !host_is_loopback(&u))
        return fail_at(ld, s,
                       "plain http:// is allowed only to a loopback "
                       "address (127.0.0.0/8, [::1], localhost); use https://");
    free(ld->cfg->api_url);
    ld->cfg->api_url = strdup(v);
    if(!ld->cfg->api_url)
        return fail_at(ld, s, "out of memory");
    len = strlen(ld->cfg->api_url);
    while(len > 0 && ld->cfg->api_url[len - 1] == '/')
        ld->cfg->api_url[--len] = '\0';
    return 0;
}

/* ------------------------------------------------------------ users */

static int k_u_login(struct loader *ld, const config_setting_t *s)
{
    const char *v = NULL;
    char esc[128];

    if(config_setting_type(s) != CONFIG_TYPE_STRING)
        return wrong_type(ld, s, "a string");
    v = config_setting_get_string(s);
    if(!v || !v[0])
        return fail_at(ld, s, "empty login");
    if(!ps_login_valid(v))
        return fail_at(ld, s, "invalid login \"%s\" (%s)", ps_escape(v, esc, sizeof(esc)),
                       PS_LOGIN_RULE);
    ld->user->login = strdup(v);
    if(!ld->user->login)
        return fail_at(ld, s, "out of memory");
    return 0;
}

static int k_u_id(struct loader *ld, const config_setting_t *s)
{
    return get_id(ld, s, "id", &ld->user->id);
}

static int k_u_email(struct loader *ld, const config_setting_t *s)
{
    const char *v = NULL;
    char esc[PS_EMAIL_MAX * 4 + 8];

    if(config_setting_type(s) != CONFIG_TYPE_STRING)
        return wrong_type(ld, s, "a string");
    v = config_setting_get_string(s);
    if(!v || !v[0])
        return fail_at(ld, s, "empty email");
    if(!ps_email_valid(v))
        return fail_at(ld, s, "invalid email \"%s\" (%s)", ps_escape(v, esc, sizeof(esc)),
                       PS_EMAIL_RULE);
    free(ld->user->email);
    ld->user->email = strdup(v);
    if(!ld->user->email)
        return fail_at(ld, s, "out of memory");
    return 0;
}

static int k_u_organization(struct loader *ld, const config_setting_t *s)
{
    return get_id(ld, s, "organization", &ld->user->organization);
}

static int k_u_delete_passwords(struct loader *ld, const config_setting_t *s)
{
    return get_bool(ld, s, &ld->user->delete_passwords);
}

static int k_u_delete_service_tokens(struct loader *ld, const config_setting_t *s)
{
    return get_bool(ld, s, &ld->user->delete_service_tokens);
}

static const struct key user_keys[] = { { "login", k_u_login },
                                        { "id", k_u_id },
                                        { "email", k_u_email },
                                        { "organization", k_u_organization },
                                        { "delete_passwords", k_u_delete_passwords },
                                        { "delete_service_tokens", k_u_delete_service_tokens },
                                        { NULL, NULL } };

/* A zeroed slot at the end of cfg->users, counted at once so that
 * ps_config_free() releases whatever the walk puts in it. */
static ps_user_t *new_user(struct loader *ld)
{
    ps_config_t *cfg = ld->cfg;
    ps_user_t *u;

    if(cfg->nusers == ld->cap) {
        size_t cap = ld->cap ? ld->cap * 2 : 64;
        ps_user_t *n = realloc(cfg->users, cap * sizeof(*n));
        if(!n)
            return NULL;
        cfg->users = n;
        ld->cap = cap;
    }
    u = &cfg->users[cfg->nusers++];
    memset(u, 0, sizeof(*u));
    u->delete_passwords = -1;
    u->delete_service_tokens = -1;
    return u;
}

static int load_user(struct loader *ld, const config_setting_t *g)
{
    ps_user_t *u;

    if(from_include_directive(ld, g))
        return -1;
    if(config_setting_type(g) != CONFIG_TYPE_GROUP)
        return wrong_type(ld, g, "a group { login = \"...\"; id = \"...\"; } (or email = \"...\")");
    u = new_user(ld);
    if(!u)
        return fail_at(ld, g, "out of memory");
    u->line = config_setting_source_line(g);
    u->file = strdup(ld->file);
    if(!u->file)
        return fail_at(ld, g, "out of memory");
    ld->user = u;
    if(walk_group(ld, g, user_keys))
        return -1;
    if(!u->login)
        return fail_at(ld, g, "missing login");
    if(!u->id && !u->email)
        return fail_at(ld, g, "missing id (the PlanetScale user id, or email = \"...\" instead)");
    if(u->id && u->email)
        return fail_at(ld, g, "both id and email: give exactly one of them");
    return 0;
}

static int k_users(struct loader *ld, const config_setting_t *s)
{
    int n;
    int i;

    if(config_setting_type(s) != CONFIG_TYPE_LIST)
        return wrong_type(ld, s, "a list ( { login = ...; id = ...; }, ... )");
    n = config_setting_length(s);
    for(i = 0; i < n; i++) {
        if(load_user(ld, config_setting_get_elem(s, (unsigned)i)))
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ top level */

static int k_organization(struct loader *ld, const config_setting_t *s)
{
    return get_id(ld, s, "organization", &ld->cfg->organization);
}

static int k_def_delete_passwords(struct loader *ld, const config_setting_t *s)
{
    return get_bool(ld, s, &ld->cfg->def_delete_passwords);
}

static int k_def_delete_service_tokens(struct loader *ld, const config_setting_t *s)
{
    return get_bool(ld, s, &ld->cfg->def_delete_service_tokens);
}

static const struct key defaults_keys[] = { { "delete_passwords", k_def_delete_passwords },
                                            { "delete_service_tokens",
                                              k_def_delete_service_tokens },
                                            { NULL, NULL } };

static int k_defaults(struct loader *ld, const config_setting_t *s)
{
    return walk_subgroup(ld, s, defaults_keys);
}

static int k_unmapped(struct loader *ld, const config_setting_t *s)
{
    const char *v = NULL;

    if(get_cstr(ld, s, &v))
        return -1;
    if(!strcmp(v, "ignore"))
        ld->cfg->unmapped = PS_UNMAPPED_IGNORE;
    else if(!strcmp(v, "error"))
        ld->cfg->unmapped = PS_UNMAPPED_ERROR;
    else
        return fail_at(ld, s, "must be \"ignore\" or \"error\"");
    return 0;
}

static int k_include_dir(struct loader *ld, const config_setting_t *s)
{
    char *v = NULL;

    if(get_str(ld, s, &v))
        return -1;
    free(ld->cfg->include_dir);
    ld->cfg->include_dir = resolve_path(ld->cfg, v);
    free(v);
    if(!ld->cfg->include_dir)
        return fail_at(ld, s, "out of memory");
    ld->s_include_dir = s;
    return 0;
}

static int k_queue_dir(struct loader *ld, const config_setting_t *s)
{
    if(get_str(ld, s, &ld->cfg->queue_dir))
        return -1;
    if(ld->cfg->queue_dir[0] != '/')
        return fail_at(ld, s, "must be an absolute path");
    return 0;
}

static int k_max_age_days(struct loader *ld, const config_setting_t *s)
{
    long long v = 0;

    if(get_int(ld, s, 1, 3650, &v))
        return -1;
    ld->cfg->max_age_days = (int)v;
    return 0;
}

static const struct key queue_keys[] = { { "dir", k_queue_dir },
                                         { "max_age_days", k_max_age_days },
                                         { NULL, NULL } };

static int k_queue(struct loader *ld, const config_setting_t *s)
{
    return walk_subgroup(ld, s, queue_keys);
}

static int k_sender_socket(struct loader *ld, const config_setting_t *s)
{
    char *v;

    if(config_setting_type(s) != CONFIG_TYPE_STRING)
        return wrong_type(ld, s, "a string");
    if(!config_setting_get_string(s)[0]) {
        ld->cfg->sender_socket[0] = '\0'; /* "": no sender */
        return 0;
    }
    v = NULL;
    if(get_str(ld, s, &v))
        return -1;
    free(ld->cfg->sender_socket);
    ld->cfg->sender_socket = v;
    if(v[0] != '/')
        return fail_at(ld, s, "must be an absolute path, or \"\" for no sender");
    if(strlen(v) >= 108)
        return fail_at(ld, s, "too long for a unix socket path (at most 107 bytes)");
    if(!visible_ascii(v))
        return fail_at(ld, s, "a socket path has no space or non-ASCII character");
    return 0;
}

static int k_sender_idle(struct loader *ld, const config_setting_t *s)
{
    long long v = 0;

    if(get_int(ld, s, 0, 86400, &v))
        return -1;
    ld->cfg->sender_idle = (int)v;
    return 0;
}

static const struct key sender_keys[] = { { "socket", k_sender_socket },
                                          { "idle_timeout", k_sender_idle },
                                          { NULL, NULL } };

static int k_sender(struct loader *ld, const config_setting_t *s)
{
    return walk_subgroup(ld, s, sender_keys);
}

static void free_services(ps_config_t *cfg)
{
    size_t i;

    for(i = 0; i < cfg->npam_services; i++)
        free(cfg->pam_services[i]);
    free(cfg->pam_services);
    cfg->pam_services = NULL;
    cfg->npam_services = 0;
}

static int k_pam_services(struct loader *ld, const config_setting_t *s)
{
    ps_config_t *cfg = ld->cfg;
    int n;
    int i;

    if(config_setting_type(s) != CONFIG_TYPE_ARRAY && config_setting_type(s) != CONFIG_TYPE_LIST)
        return wrong_type(ld, s, "an array of strings [ \"...\", ... ]");
    free_services(cfg);
    n = config_setting_length(s);
    cfg->pam_services = calloc((size_t)n + 1, sizeof(char *));
    if(!cfg->pam_services)
        return fail_at(ld, s, "out of memory");
    for(i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        char *v = NULL;
        if(from_include_directive(ld, e) || get_str(ld, e, &v))
            return -1;
        cfg->pam_services[cfg->npam_services++] = v;
        if(!visible_ascii(v))
            return fail_at(ld, e,
                           "a PAM service name has no space or "
                           "non-ASCII character");
    }
    return 0;
}

static int k_expired_grace_days(struct loader *ld, const config_setting_t *s)
{
    long long v = 0;

    if(get_int(ld, s, 0, PS_GRACE_DAYS_MAX, &v))
        return -1;
    ld->cfg->expired_grace_days = (int)v;
    return 0;
}

/* How long a deprovisioning hook (remove --hook) waits for the API. */
static int k_hook_deadline(struct loader *ld, const config_setting_t *s)
{
    return get_positive(ld, s, PS_HOOK_DEADLINE_MAX, &ld->cfg->hook_deadline);
}

static int k_rc_confirm_runs(struct loader *ld, const config_setting_t *s)
{
    long long v = 0;

    if(get_int(ld, s, 1, 100, &v))
        return -1;
    ld->cfg->reconcile.confirm_runs = (int)v;
    return 0;
}

static int k_rc_confirm_interval(struct loader *ld, const config_setting_t *s)
{
    long long v = 0;

    if(get_int(ld, s, 0, 30LL * 86400, &v))
        return -1;
    ld->cfg->reconcile.confirm_interval = (long)v;
    return 0;
}

static int k_rc_max_removals(struct loader *ld, const config_setting_t *s)
{
    long long v = 0;

    if(get_int(ld, s, 0, 1000000, &v))
        return -1;
    ld->cfg->reconcile.max_removals = (long)v;
    return 0;
}

/* A share from 0 to 1, written as an integer (0, 1) or a float. */
static int k_rc_max_fraction(struct loader *ld, const config_setting_t *s)
{
    double v;

    switch(config_setting_type(s)) {
    case CONFIG_TYPE_INT: v = config_setting_get_int(s); break;
    case CONFIG_TYPE_INT64: v = (double)config_setting_get_int64(s); break;
    case CONFIG_TYPE_FLOAT: v = config_setting_get_float(s); break;
    default: return wrong_type(ld, s, "a number from 0 to 1");
    }
    if(!(v >= 0 && v <= 1))
        return fail_at(ld, s, "%g is out of range (0 to 1)", v);
    ld->cfg->reconcile.max_fraction = v;
    return 0;
}

static const struct key reconcile_keys[] = { { "confirm_runs", k_rc_confirm_runs },
                                             { "confirm_interval", k_rc_confirm_interval },
                                             { "max_removals", k_rc_max_removals },
                                             { "max_fraction", k_rc_max_fraction },
                                             { NULL, NULL } };

static int k_reconcile(struct loader *ld, const config_setting_t *s)
{
    return walk_subgroup(ld, s, reconcile_keys);
}

/* metrics.textfile: an absolute path ending in ".prom" (node_exporter's
 * textfile collector reads nothing else), whose name does not start with a
 * dot (the temporary file of an atomic write does). */
static int k_metrics_textfile(struct loader *ld, const config_setting_t *s)
{
    char *v = NULL;
    const char *base;
    size_t len;

    if(get_str(ld, s, &v))
        return -1;
    free(ld->cfg->metrics_textfile);
    ld->cfg->metrics_textfile = v;
    len = strlen(v);
    if(v[0] != '/')
        return fail_at(ld, s, "must be an absolute path");
    base = strrchr(v, '/');
    if(len < 6 || strcmp(v + len - 5, ".prom") != 0)
        return fail_at(ld, s,
                       "must end in \".prom\" (node_exporter's textfile collector reads "
                       "only *.prom files)");
    if(base[1] == '.')
        return fail_at(ld, s, "the file name must not start with '.'");
    if(len > PS_METRICS_PATH_MAX)
        return fail_at(ld, s, "longer than %d bytes", PS_METRICS_PATH_MAX);
    return 0;
}

static const struct key metrics_keys[] = { { "textfile", k_metrics_textfile }, { NULL, NULL } };

static int k_metrics(struct loader *ld, const config_setting_t *s)
{
    return walk_subgroup(ld, s, metrics_keys);
}

static const struct key top_keys[] = { { "organization", k_organization },
                                       { "api", k_api },
                                       { "defaults", k_defaults },
                                       { "unmapped", k_unmapped },
                                       { "users", k_users },
                                       { "include_dir", k_include_dir },
                                       { "queue", k_queue },
                                       { "sender", k_sender },
                                       { "pam_services", k_pam_services },
                                       { "expired_grace_days", k_expired_grace_days },
                                       { "hook_deadline", k_hook_deadline },
                                       { "reconcile", k_reconcile },
                                       { "metrics", k_metrics },
                                       { NULL, NULL } };

static const struct key include_keys[] = { { "users", k_users }, { NULL, NULL } };

/* ------------------------------------------------------------ files */

/* Parses an open stream; syntax errors name the file and line. */
static int parse_stream(struct loader *ld, config_t *lc, FILE *fp, const char *path)
{
    if(config_read(lc, fp) == CONFIG_TRUE)
        return 0;
    if(config_error_type(lc) == CONFIG_ERR_FILE_IO && !config_error_line(lc))
        return fail_file(ld, path, "cannot read: %s",
                         config_error_text(lc) ? config_error_text(lc) : "I/O error");
    if(ld->err && ld->errlen)
        snprintf(ld->err, ld->errlen, "%s:%d: %s",
                 config_error_file(lc) ? config_error_file(lc) : path, config_error_line(lc),
                 config_error_text(lc) ? config_error_text(lc) : "syntax error");
    return -1;
}

static int load_include_file(struct loader *ld, const char *path)
{
    config_t lc;
    FILE *fp = NULL;
    char msg[512];
    int fd;
    int rv = -1;

    config_init(&lc);
    /* may be a symbolic link (the usual *.d pattern): its target counts */
    fd = ps_open_regular(path, 0, msg, sizeof(msg));
    if(fd < 0) {
        fail_file(ld, path, "%s%s", without_path(msg, path),
                  errno == EINVAL ? "; every *.conf entry of include_dir is loaded: "
                                    "remove it or make it a regular file"
                                  : "");
        goto err;
    }
    if(ps_check_fd_perms(fd, path, 0, msg, sizeof(msg))) {
        fail_file(ld, path, "%s", without_path(msg, path));
        close(fd);
        goto err;
    }
    fp = fdopen(fd, "r");
    if(!fp) {
        fail_file(ld, path, "%s", strerror(errno));
        close(fd);
        goto err;
    }
    if(parse_stream(ld, &lc, fp, path))
        goto err;
    ld->file = path;
    if(walk_group(ld, config_root_setting(&lc), include_keys)) {
        /* say why, the known-keys hint alone could puzzle */
        if(ld->err && strstr(ld->err, "unknown key"))
            snprintf(ld->err + strlen(ld->err), ld->errlen - strlen(ld->err),
                     "; an include_dir file may hold only users = ( ... )");
        goto err;
    }
    rv = 0;
err:
    ld->file = ld->cfg->path;
    config_destroy(&lc);
    if(fp)
        fclose(fp);
    return rv;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_conf_name(const char *name)
{
    size_t len = strlen(name);

    return name[0] != '.' && len > 5 && !strcmp(name + len - 5, ".conf");
}

/* The directory itself must not let others drop files in. */
static int check_include_dir(struct loader *ld, DIR *d)
{
    struct stat st;
    const char *dir = ld->cfg->include_dir;

    if(fstat(dirfd(d), &st))
        return fail_at(ld, ld->s_include_dir, "%s: %s", dir, strerror(errno));
    if(st.st_uid != 0 && st.st_uid != geteuid())
        return fail_at(ld, ld->s_include_dir,
                       "%s: owned by uid %lu, must be "
                       "owned by root; fix: chown root %s",
                       dir, (unsigned long)st.st_uid, dir);
    if(st.st_mode & (S_IWGRP | S_IWOTH))
        return fail_at(ld, ld->s_include_dir,
                       "%s: writable by group or others; "
                       "fix: chmod go-w %s",
                       dir, dir);
    return 0;
}

static int load_include_dir(struct loader *ld)
{
    const char *dir = ld->cfg->include_dir;
    char **names = NULL;
    size_t n = 0;
    size_t cap = 0;
    size_t i;
    struct dirent *e;
    DIR *d;
    int rv = -1;

    if(past_deadline(ld))
        return fail_at(ld, ld->s_include_dir,
                       "%s: not read: the deadline passed while loading the configuration", dir);
    /* opendir() opens with O_DIRECTORY | O_NONBLOCK: never blocks on a FIFO */
    d = opendir(dir);
    if(!d)
        return fail_at(ld, ld->s_include_dir, "cannot open %s: %s", dir, strerror(errno));
    if(check_include_dir(ld, d))
        goto err;
    while((e = readdir(d))) {
        if(past_deadline(ld)) {
            fail_at(ld, ld->s_include_dir,
                    "%s: the deadline passed while listing the directory, after %zu *.conf "
                    "files (a slow file system, or too many files?)",
                    dir, n);
            goto err;
        }
        if(!is_conf_name(e->d_name))
            continue;
        if(n == cap) {
            char **nn = realloc(names, (cap ? cap * 2 : 16) * sizeof(*nn));
            if(!nn)
                goto oom;
            names = nn;
            cap = cap ? cap * 2 : 16;
        }
        if(asprintf(&names[n], "%s/%s", dir, e->d_name) < 0)
            goto oom;
        n++;
    }
    qsort(names, n, sizeof(*names), name_cmp);
    for(i = 0; i < n; i++) {
        if(past_deadline(ld)) {
            fail_at(ld, ld->s_include_dir,
                    "%s: the deadline passed while loading the configuration, after %zu of "
                    "%zu include files (a slow file system, or too many files?)",
                    dir, i, n);
            goto err;
        }
        if(load_include_file(ld, names[i]))
            goto err;
    }
    rv = 0;
    goto err;
oom:
    fail_at(ld, ld->s_include_dir, "out of memory");
err:
    for(i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return rv;
}

/* ------------------------------------------------------------ credentials */

static int set_auth(ps_config_t *cfg, const char *prefix, const char *a, const char *sep,
                    const char *b)
{
    size_t len = strlen(prefix) + strlen(a) + strlen(sep) + strlen(b) + 1;

    cfg->auth_header = malloc(len);
    if(!cfg->auth_header)
        return -1;
    snprintf(cfg->auth_header, len, "%s%s%s%s", prefix, a, sep, b);
    return 0;
}

/* Reads "ID:TOKEN" (one line, a trailing newline allowed) from the buffer. */
static int parse_token_line(struct loader *ld, const config_setting_t *s, const char *path,
                            char *buf, size_t len)
{
    char *colon;

    if(len > 0 && buf[len - 1] == '\n')
        buf[--len] = '\0';
    if(len > 0 && buf[len - 1] == '\r')
        buf[--len] = '\0';
    if(strlen(buf) != len)
        return fail_at(ld, s, "%s: contains a NUL byte", path);
    colon = strchr(buf, ':');
    if(!colon || colon == buf || !colon[1])
        return fail_at(ld, s, "%s: must hold one line \"TOKEN_ID:TOKEN\"", path);
    *colon = '\0';
    if(!visible_ascii(buf) || !visible_ascii(colon + 1))
        return fail_at(ld, s,
                       "%s: must hold one line \"TOKEN_ID:TOKEN\" with no "
                       "space, control or non-ASCII character (content not shown)",
                       path);
    if(set_auth(ld->cfg, "Authorization: ", buf, ":", colon + 1))
        return fail_at(ld, s, "out of memory");
    return 0;
}

/* token_file: named directly (O_NOFOLLOW), root-only, read through the
 * descriptor that was checked. */
static int read_token_file(struct loader *ld)
{
    const config_setting_t *s = ld->s_token_file;
    char buf[PS_TOKEN_FILE_MAX + 1];
    char msg[512];
    char *path;
    size_t len = 0;
    ssize_t r;
    int fd = -1;
    int rv = -1;

    path = resolve_path(ld->cfg, config_setting_get_string(s));
    if(!path)
        return fail_at(ld, s, "out of memory");
    if(past_deadline(ld)) {
        fail_at(ld, s, "%s: not read: the deadline passed while loading the configuration", path);
        goto err;
    }
    fd = ps_open_regular(path, 1, msg, sizeof(msg));
    if(fd < 0) {
        if(errno == ELOOP)
            fail_at(ld, s,
                    "%s: is a symbolic link; a secret is read only from "
                    "a file named directly",
                    path);
        else
            fail_at(ld, s, "%s", msg);
        goto err;
    }
    if(ps_check_fd_perms(fd, path, 1, msg, sizeof(msg))) {
        fail_at(ld, s, "%s", msg);
        goto err;
    }
    while(len < sizeof(buf) - 1) {
        r = read(fd, buf + len, sizeof(buf) - 1 - len);
        if(r < 0 && errno == EINTR)
            continue;
        if(r < 0) {
            fail_at(ld, s, "cannot read %s: %s", path, strerror(errno));
            goto err;
        }
        if(r == 0)
            break;
        len += (size_t)r;
    }
    if(len == sizeof(buf) - 1) {
        fail_at(ld, s, "%s: too large for a token", path);
        goto err;
    }
    buf[len] = '\0';
    rv = parse_token_line(ld, s, path, buf, len);
    if(rv == 0) {
        free(ld->cfg->token_file);
        ld->cfg->token_file = path; /* where the secret came from, not the secret */
        path = NULL;
    }
err:
    explicit_bzero(buf, sizeof(buf));
    if(fd >= 0)
        close(fd);
    free(path);
    return rv;
}

/* api.ca_file: the rules of include files (a symbolic link is followed and
 * its target checked; owned by root or the caller, not writable by group or
 * others), read whole through the checked descriptor into cfg->ca_pem. */
static int read_ca_file(struct loader *ld)
{
    const config_setting_t *s = ld->s_ca_file;
    const char *path = ld->cfg->ca_file;
    char msg[512];
    char *buf = NULL;
    size_t len = 0, cap = 0;
    ssize_t r;
    int fd;
    int rv = -1;

    if(past_deadline(ld))
        return fail_at(ld, s, "%s: not read: the deadline passed while loading the configuration",
                       path);
    fd = ps_open_regular(path, 0, msg, sizeof(msg));
    if(fd < 0)
        return fail_at(ld, s, "%s", msg);
    if(ps_check_fd_perms(fd, path, 0, msg, sizeof(msg))) {
        fail_at(ld, s, "%s (the CA file replaces the whole trust store)", msg);
        goto err;
    }
    for(;;) {
        if(len == cap) {
            char *n;

            if(cap >= PS_CA_FILE_MAX) {
                fail_at(ld, s, "%s: larger than %d MiB; name a file of PEM certificates", path,
                        PS_CA_FILE_MAX / (1024 * 1024));
                goto err;
            }
            cap = cap ? cap * 2 : 16384;
            n = realloc(buf, cap + 1);
            if(!n) {
                fail_at(ld, s, "out of memory");
                goto err;
            }
            buf = n;
        }
        r = read(fd, buf + len, cap - len);
        if(r < 0 && errno == EINTR)
            continue;
        if(r < 0) {
            fail_at(ld, s, "cannot read %s: %s", path, strerror(errno));
            goto err;
        }
        if(r == 0)
            break;
        len += (size_t)r;
    }
    if(len == 0) {
        fail_at(ld, s, "%s: empty; name a file of PEM certificates", path);
        goto err;
    }
    buf[len] = '\0';
    free(ld->cfg->ca_pem);
    ld->cfg->ca_pem = buf;
    ld->cfg->ca_pem_len = len;
    buf = NULL;
    rv = 0;
err:
    free(buf);
    close(fd);
    return rv;
}

static int build_auth(struct loader *ld, int require_auth)
{
    int forms = 0;

    if(ld->s_token_id && !ld->s_token)
        return fail_at(ld, ld->s_token_id,
                       "api.token is missing (token_id and "
                       "token go together)");
    if(ld->s_token && !ld->s_token_id)
        return fail_at(ld, ld->s_token,
                       "api.token_id is missing (token_id and "
                       "token go together)");
    forms = (ld->s_token != NULL) + (ld->s_token_file != NULL) + (ld->s_oauth != NULL);
    if(forms > 1)
        return fail_at(ld, ld->s_api,
                       "more than one credential: keep exactly one "
                       "of token_id and token, token_file, oauth_token");
    if(forms == 0) {
        if(!require_auth)
            return 0;
        return fail_file(ld, ld->cfg->path,
                         "no API credential: set api.token_id "
                         "and api.token, api.token_file or api.oauth_token");
    }
    if(ld->s_token_file)
        return read_token_file(ld);
    if(ld->s_oauth) {
        ld->cfg->auth_is_oauth = 1;
        if(set_auth(ld->cfg, "Authorization: Bearer ", config_setting_get_string(ld->s_oauth), "",
                    ""))
            return fail_at(ld, ld->s_oauth, "out of memory");
        return 0;
    }
    if(set_auth(ld->cfg, "Authorization: ", config_setting_get_string(ld->s_token_id), ":",
                config_setting_get_string(ld->s_token)))
        return fail_at(ld, ld->s_token, "out of memory");
    return 0;
}

/* Overwrites a secret string inside the libconfig tree before
 * config_destroy() frees it without wiping. libconfig hands out const
 * pointers to memory it allocated with strdup(); the cast through uintptr_t
 * is deliberate. */
static void wipe_setting(config_t *lc, const char *path)
{
    const config_setting_t *s = config_lookup(lc, path);
    const char *v = NULL;

    if(!s || config_setting_type(s) != CONFIG_TYPE_STRING)
        return;
    v = config_setting_get_string(s);
    if(v)
        explicit_bzero((void *)(uintptr_t)v, strlen(v));
}

static void wipe_secrets(config_t *lc)
{
    wipe_setting(lc, "api.token");
    wipe_setting(lc, "api.oauth_token");
    wipe_setting(lc, "api.proxy");
    wipe_setting(lc, "api.url");
}

/* Does the parsed main file hold a secret? Looked up before the walk so that
 * an exposed secret is refused whatever else is wrong with the file. */
static int holds_secret(config_t *lc)
{
    const config_setting_t *proxy = config_lookup(lc, "api.proxy");

    if(config_lookup(lc, "api.token") || config_lookup(lc, "api.oauth_token"))
        return 1;
    return proxy && config_setting_type(proxy) == CONFIG_TYPE_STRING &&
           config_setting_get_string(proxy) && strchr(config_setting_get_string(proxy), '@');
}

/* ------------------------------------------------------------ main file */

/* Opens the main file; *is_link tells whether `path` is a symbolic link. */
static int open_main(struct loader *ld, const char *path, int *is_link)
{
    struct stat lst;
    struct stat st;
    char msg[512];
    int fd;

    *is_link = 0;
    fd = ps_open_regular(path, 0, msg, sizeof(msg));
    if(fd < 0)
        return fail_file(ld, path, "%s", without_path(msg, path));
    if(lstat(path, &lst) || fstat(fd, &st)) {
        fail_file(ld, path, "%s", strerror(errno));
        goto err;
    }
    if(S_ISLNK(lst.st_mode))
        *is_link = 1;
    else if(lst.st_dev != st.st_dev || lst.st_ino != st.st_ino) {
        fail_file(ld, path, "changed while being opened");
        goto err;
    }
    if(ps_check_fd_perms(fd, path, 0, msg, sizeof(msg))) {
        fail_file(ld, path, "%s", without_path(msg, path));
        goto err;
    }
    return fd;
err:
    close(fd);
    return -1;
}

static int set_defaults(ps_config_t *cfg, const char *path)
{
    cfg->path = strdup(path);
    cfg->api_url = strdup(PS_DEFAULT_API_URL);
    cfg->flags_mode = PS_FLAGS_QUERY;
    cfg->timeout = 10;
    cfg->connect_timeout = 5;
    cfg->retries = 3;
    cfg->rate_limit = 10;
    cfg->def_delete_passwords = 1;
    cfg->def_delete_service_tokens = 1;
    cfg->unmapped = PS_UNMAPPED_IGNORE;
    cfg->queue_dir = strdup(PS_DEFAULT_QUEUE_DIR);
    cfg->max_age_days = 30;
    cfg->sender_socket = strdup(PS_DEFAULT_SENDER_SOCKET);
    cfg->sender_idle = PS_DEFAULT_SENDER_IDLE;
    cfg->expired_grace_days = PS_DEFAULT_EXPIRED_GRACE_DAYS;
    cfg->hook_deadline = PS_DEFAULT_HOOK_DEADLINE;
    cfg->reconcile.confirm_runs = PS_DEFAULT_CONFIRM_RUNS;
    cfg->reconcile.confirm_interval = PS_DEFAULT_CONFIRM_INTERVAL;
    cfg->reconcile.max_removals = PS_DEFAULT_MAX_REMOVALS;
    cfg->reconcile.max_fraction = PS_DEFAULT_MAX_FRACTION;
    cfg->pam_services = calloc(2, sizeof(char *));
    if(cfg->pam_services) {
        cfg->pam_services[0] = strdup("planetscale-deprovision");
        if(cfg->pam_services[0])
            cfg->npam_services = 1;
    }
    if(!cfg->path || !cfg->api_url || !cfg->queue_dir || !cfg->sender_socket || !cfg->npam_services)
        return -1;
    return 0;
}

static int check_cross(struct loader *ld)
{
    const ps_config_t *cfg = ld->cfg;
    size_t i;

    if(cfg->connect_timeout > cfg->timeout) {
        const config_setting_t *s = ld->s_connect_timeout ? ld->s_connect_timeout : ld->s_timeout;
        return fail_at(ld, s, "connect_timeout (%g) must not exceed timeout (%g)",
                       cfg->connect_timeout, cfg->timeout);
    }
    if(cfg->organization)
        return 0;
    for(i = 0; i < cfg->nusers; i++) {
        const ps_user_t *u = &cfg->users[i];
        char esc[128];

        if(u->organization)
            continue;
        if(ld->err && ld->errlen)
            snprintf(ld->err, ld->errlen,
                     "%s:%d: users: login \"%s\" has no "
                     "organization and there is no default organization",
                     u->file, u->line, ps_escape(u->login, esc, sizeof(esc)));
        return -1;
    }
    return 0;
}

/* Users in load order -> sorted by login; duplicates are errors that name
 * both places (neighbours after the sort: O(n log n)). Ties are broken by
 * address, which is load order, so the "first" place is the first loaded. */
static int ptr_cmp(const void *a, const void *b)
{
    const ps_user_t *ua = *(const ps_user_t *const *)a;
    const ps_user_t *ub = *(const ps_user_t *const *)b;
    int c = strcmp(ua->login, ub->login);

    if(c)
        return c;
    return ua < ub ? -1 : (ua > ub);
}

static int sort_users(struct loader *ld)
{
    ps_config_t *cfg = ld->cfg;
    const ps_user_t **ptrs;
    ps_user_t *sorted;
    size_t i;

    if(cfg->nusers < 1)
        return 0;
    ptrs = malloc(cfg->nusers * sizeof(*ptrs));
    if(!ptrs)
        return fail_file(ld, cfg->path, "out of memory");
    for(i = 0; i < cfg->nusers; i++)
        ptrs[i] = &cfg->users[i];
    qsort(ptrs, cfg->nusers, sizeof(*ptrs), ptr_cmp);
    for(i = 1; i < cfg->nusers; i++) {
        if(!strcmp(ptrs[i - 1]->login, ptrs[i]->login)) {
            char esc[128];
            if(ld->err && ld->errlen)
                snprintf(ld->err, ld->errlen,
                         "%s:%d: duplicate login \"%s\", "
                         "already defined at %s:%d",
                         ptrs[i]->file, ptrs[i]->line, ps_escape(ptrs[i]->login, esc, sizeof(esc)),
                         ptrs[i - 1]->file, ptrs[i - 1]->line);
            free(ptrs);
            return -1;
        }
    }
    sorted = malloc(cfg->nusers * sizeof(*sorted));
    if(!sorted) {
        free(ptrs);
        return fail_file(ld, cfg->path, "out of memory");
    }
    for(i = 0; i < cfg->nusers; i++)
        sorted[i] = *ptrs[i];
    free(ptrs);
    free(cfg->users);
    cfg->users = sorted;
    ld->cap = cfg->nusers;
    return 0;
}

static int load_main(struct loader *ld, config_t *lc, FILE *fp, int fd, int is_link,
                     int require_auth)
{
    ps_config_t *cfg = ld->cfg;
    char msg[512];

    if(parse_stream(ld, lc, fp, cfg->path))
        return -1;
    if(holds_secret(lc)) {
        if(is_link)
            return fail_file(ld, cfg->path,
                             "holds a secret and is a symbolic "
                             "link; name the file itself (or move the secret to "
                             "api.token_file)");
        if(ps_check_fd_perms(fd, cfg->path, 1, msg, sizeof(msg)))
            return fail_file(ld, cfg->path, "%s", without_path(msg, cfg->path));
    }
    if(walk_group(ld, config_root_setting(lc), top_keys))
        return -1;
    if(build_auth(ld, require_auth))
        return -1;
    if(cfg->ca_file && read_ca_file(ld))
        return -1;
    if(cfg->include_dir && load_include_dir(ld))
        return -1;
    if(check_cross(ld))
        return -1;
    return sort_users(ld);
}

int ps_config_load(ps_config_t **out, const char *path, int require_auth, char *err, size_t errlen)
{
    return ps_config_load_until(out, path, require_auth, 0, err, errlen);
}

int ps_config_load_until(ps_config_t **out, const char *path, int require_auth, double deadline,
                         char *err, size_t errlen)
{
    struct loader ld;
    ps_config_t *cfg;
    config_t lc;
    FILE *fp = NULL;
    char *iobuf = NULL;
    int is_link = 0;
    int fd;
    int rv = -1;

    *out = NULL;
    if(err && errlen)
        err[0] = '\0';
    if(!path)
        path = PS_DEFAULT_CONFIG;
    memset(&ld, 0, sizeof(ld));
    ld.err = err;
    ld.errlen = errlen;
    ld.file = path;
    ld.deadline = deadline;

    config_init(&lc);
    cfg = calloc(1, sizeof(*cfg));
    if(!cfg || set_defaults(cfg, path)) {
        fail_file(&ld, path, "out of memory");
        goto err;
    }
    ld.cfg = cfg;
    ld.file = cfg->path;

    if(past_deadline(&ld)) {
        fail_file(&ld, path, "not read: the deadline passed before the configuration was loaded");
        goto err;
    }
    fd = open_main(&ld, path, &is_link);
    if(fd < 0)
        goto err;
    fp = fdopen(fd, "r");
    if(!fp) {
        fail_file(&ld, path, "%s", strerror(errno));
        close(fd);
        goto err;
    }
    /* our own stdio buffer, so that we can wipe what it saw of the file */
    iobuf = calloc(1, PS_IOBUF_SIZE);
    if(iobuf)
        setvbuf(fp, iobuf, _IOFBF, PS_IOBUF_SIZE);

    rv = load_main(&ld, &lc, fp, fd, is_link, require_auth);
err:
    wipe_secrets(&lc);
    config_destroy(&lc);
    if(fp)
        fclose(fp);
    if(iobuf) {
        explicit_bzero(iobuf, PS_IOBUF_SIZE);
        free(iobuf);
    }
    if(rv)
        ps_config_free(cfg);
    else
        *out = cfg;
    return rv;
}

void ps_config_free(ps_config_t *cfg)
{
    size_t i;

    if(!cfg)
        return;
    for(i = 0; i < cfg->nusers; i++) {
        free(cfg->users[i].login);
        free(cfg->users[i].id);
        free(cfg->users[i].email);
        free(cfg->users[i].organization);
        free(cfg->users[i].file);
    }
    free(cfg->users);
    if(cfg->auth_header) {
        explicit_bzero(cfg->auth_header, strlen(cfg->auth_header));
        free(cfg->auth_header);
    }
    if(cfg->proxy) {
        explicit_bzero(cfg->proxy, strlen(cfg->proxy));
        free(cfg->proxy);
    }
    free_services(cfg);
    free(cfg->path);
    free(cfg->organization);
    free(cfg->api_url);
    free(cfg->ca_file);
    free(cfg->ca_pem);
    free(cfg->include_dir);
    free(cfg->queue_dir);
    free(cfg->sender_socket);
    free(cfg->token_file);
    free(cfg->metrics_textfile);
    free(cfg);
}

/* ------------------------------------------------------------ queries */

static int login_cmp(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const ps_user_t *)elem)->login);
}

int ps_config_map(const ps_config_t *cfg, const char *login, ps_mapping_t *m)
{
    const ps_user_t *u;

    if(!cfg || !login || !cfg->nusers)
        return 1;
    u = bsearch(login, cfg->users, cfg->nusers, sizeof(*u), login_cmp);
    if(!u)
        return 1;
    m->login = u->login;
    m->id = u->id;
    m->email = u->email;
    m->organization = u->organization ? u->organization : cfg->organization;
    m->delete_passwords =
        u->delete_passwords >= 0 ? u->delete_passwords : cfg->def_delete_passwords;
    m->delete_service_tokens =
        u->delete_service_tokens >= 0 ? u->delete_service_tokens : cfg->def_delete_service_tokens;
    return m->organization ? 0 : -1;
}

int ps_config_pam_service_allowed(const ps_config_t *cfg, const char *service)
{
    size_t i;

    if(!cfg || !service)
        return 0;
    for(i = 0; i < cfg->npam_services; i++) {
        if(!strcmp(cfg->pam_services[i], service))
            return 1;
    }
    return 0;
}
