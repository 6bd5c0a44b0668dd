/* jsonstrict.c - the one strict JSON reader (see jsonstrict.h). */
#include <limits.h>
#include <string.h>

#include "jsonstrict.h"
#include "util.h"

static int json_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

json_object *ps_json_object(const char *buf, size_t len, int depth, char *err, size_t errlen)
{
    struct json_tokener *tok;
    json_object *obj;
    enum json_tokener_error jerr;
    size_t end;

    if(!buf || !len) {
        ps_seterr(err, errlen, "not JSON: empty");
        return NULL;
    }
    if(len > INT_MAX) {
        ps_seterr(err, errlen, "too large");
        return NULL;
    }
    if(memchr(buf, '\0', len)) {
        ps_seterr(err, errlen, "holds a NUL byte");
        return NULL;
    }
    tok = json_tokener_new_ex(depth);
    if(!tok) {
        ps_seterr(err, errlen, "out of memory");
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    obj = json_tokener_parse_ex(tok, buf, (int)len);
    jerr = json_tokener_get_error(tok);
    if(!obj || jerr != json_tokener_success) {
        if(!obj && jerr == json_tokener_continue)
            ps_seterr(err, errlen, "not JSON: unexpected end of data");
        else
            ps_seterr(err, errlen, "not JSON: %s at byte %zu", json_tokener_error_desc(jerr),
                      json_tokener_get_parse_end(tok));
        goto bad;
    }
    for(end = json_tokener_get_parse_end(tok); end < len; end++) {
        if(!json_ws(buf[end])) {
            ps_seterr(err, errlen, "not JSON: trailing data at byte %zu", end);
            goto bad;
        }
    }
    if(!json_object_is_type(obj, json_type_object)) {
        ps_seterr(err, errlen, "not a JSON object");
        goto bad;
    }
    json_tokener_free(tok);
    return obj;
bad:
    json_object_put(obj);
    json_tokener_free(tok);
    return NULL;
}

int ps_json_str(json_object *v, const char *key, char *dst, size_t dstsz, char *err, size_t errlen)
{
    const char *s;
    size_t len;

    if(!json_object_is_type(v, json_type_string)) {
        ps_seterr(err, errlen, "\"%s\" is not a string", key);
        return -1;
    }
    s = json_object_get_string(v);
    len = (size_t)json_object_get_string_len(v);
    if(!s || strlen(s) != len) {
        ps_seterr(err, errlen, "\"%s\" holds a NUL character", key);
        return -1;
    }
    if(len >= dstsz) {
        ps_seterr(err, errlen, "\"%s\" is too long (at most %zu bytes)", key, dstsz - 1);
        return -1;
    }
    memcpy(dst, s, len + 1);
    return 0;
}
