/* jsonstrict.h - the one strict JSON reader of the core.
 *
 * json-c's json_tokener_parse() accepts trailing garbage after a value and
 * json_object_get_int64() turns a string into 0 (measured with json-c
 * 0.16): every JSON the command reads (API answers, spool entries,
 * unresolved records, the email cache) goes through these instead. */
#ifndef PS_JSONSTRICT_H
#define PS_JSONSTRICT_H

#include <stddef.h>
#include <json-c/json.h>

/* The JSON object that buf (len bytes, not NUL-terminated) is, exactly:
 * strict JSON, at most `depth` levels deep, no NUL byte, nothing after it
 * but white space. Returns it (release with json_object_put), or NULL with
 * the reason in err ("not JSON: ... at byte N", "not JSON: trailing data at
 * byte N", "not a JSON object", "holds a NUL byte"). err may be NULL. */
json_object *ps_json_object(const char *buf, size_t len, int depth, char *err, size_t errlen);

/* Copies string field `key` (its value v) into dst: a JSON string with no
 * NUL, shorter than dstsz; empty allowed. 0, or -1 with err naming key. */
int ps_json_str(json_object *v, const char *key, char *dst, size_t dstsz, char *err, size_t errlen);

#endif
