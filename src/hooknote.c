/* hooknote.c - the spool's note that the API did not answer a hook; see
 * hooknote.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "hooknote.h"
#include "queue.h"

int ps_hook_note_parse(const char *buf, size_t len, long long *at, char *api, size_t apilen,
                       char *reason, size_t reasonlen)
{
    struct json_tokener *tok;
    json_object *root, *v;
    int n = 0, rv = -1;

    if(!buf || len == 0 || len > PS_HOOK_NOTE_MAX || memchr(buf, '\0', len))
        return -1;
    tok = json_tokener_new_ex(2);
    if(!tok)
        return -1;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    root = json_tokener_parse_ex(tok, buf, (int)len);
    /* the whole buffer, nothing after the object but a newline */
    if(!root || !json_object_is_type(root, json_type_object) ||
       (json_tokener_get_parse_end(tok) != len &&
        !(json_tokener_get_parse_end(tok) + 1 == len && buf[len - 1] == '\n')))
        goto out;
    json_object_object_foreach(root, key, val)
    {
        (void)val;
        if(strcmp(key, "at") && strcmp(key, "api") && strcmp(key, "reason"))
            goto out;
        n++;
    }
    if(n != 3)
        goto out;
    if(!json_object_object_get_ex(root, "at", &v) || !json_object_is_type(v, json_type_int))
        goto out;
    *at = (long long)json_object_get_int64(v);
    if(!json_object_object_get_ex(root, "api", &v) || !json_object_is_type(v, json_type_string) ||
       (size_t)json_object_get_string_len(v) >= apilen)
        goto out;
    memcpy(api, json_object_get_string(v), (size_t)json_object_get_string_len(v) + 1);
    if(!json_object_object_get_ex(root, "reason", &v) || !json_object_is_type(v, json_type_string))
        goto out;
    snprintf(reason, reasonlen, "%s", json_object_get_string(v));
    rv = 0;
out:
    json_object_put(root);
    json_tokener_free(tok);
    return rv;
}

int ps_hook_note_fresh(const char *dir, const char *api_url, double window, long long *at,
                       char *reason, size_t reasonlen)
{
    char buf[PS_HOOK_NOTE_MAX + 1], api[PS_HOOK_NOTE_MAX];
    struct stat st;
    long long now = (long long)time(NULL);
    ssize_t got;
    size_t len = 0;
    int dfd, fd;

    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if(dfd < 0)
        return 0;
    fd = openat(dfd, PS_HOOK_NOTE_NAME, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    close(dfd);
    if(fd < 0)
        return 0;
    /* written by us (root, or the caller), a regular file nobody else can
     * change */
    if(fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
       (st.st_mode & 0022) || st.st_size > PS_HOOK_NOTE_MAX) {
        close(fd);
        return 0;
    }
    while(len < sizeof(buf) - 1) {
        got = read(fd, buf + len, sizeof(buf) - 1 - len);
        if(got < 0 && errno == EINTR)
            continue;
        if(got <= 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    if(ps_hook_note_parse(buf, len, at, api, sizeof(api), reason, reasonlen) != 0)
        return 0;
    /* another API, or a note from the future (the clock was set back) */
    if(strcmp(api, api_url) != 0 || *at > now + 5 || (double)(now - *at) >= window)
        return 0;
    return 1;
}

void ps_hook_note_write(const char *dir, const char *api_url, const char *reason,
                        const ps_log_t *lg)
{
    json_object *j = json_object_new_object();
    char err[512], eerr[1024], why[400];
    const char *text;
    int dfd;

    if(!j)
        return;
    /* short enough that the note stays below PS_HOOK_NOTE_MAX */
    snprintf(why, sizeof(why), "%s", reason ? reason : "");
    json_object_object_add(j, "at", json_object_new_int64((int64_t)time(NULL)));
    json_object_object_add(j, "api", json_object_new_string(api_url));
    json_object_object_add(j, "reason", json_object_new_string(why));
    text =
        json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if(dfd < 0) {
        snprintf(err, sizeof(err), "%s: %s", dir, strerror(errno));
    } else {
        if(ps_write_file_atomic(dfd, dir, PS_HOOK_NOTE_NAME, text, err, sizeof(err)) == 0)
            err[0] = '\0';
        close(dfd);
    }
    if(err[0])
        ps_logf(lg, LOG_DEBUG, "cannot write %s/%s: %s", dir, PS_HOOK_NOTE_NAME,
                ps_escape(err, eerr, sizeof(eerr)));
    json_object_put(j);
}

void ps_hook_note_clear(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if(dfd < 0)
        return;
    (void)unlinkat(dfd, PS_HOOK_NOTE_NAME, 0);
    close(dfd);
}
