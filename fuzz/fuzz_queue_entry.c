/* fuzz_queue_entry.c - libFuzzer target for the queue entry reader
 * (ps_queue_parse). An accepted entry must be valid by the rules the sender
 * relies on, and must survive a format/parse round trip unchanged. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const ps_qentry_t *a, const ps_qentry_t *b)
{
    return !strcmp(a->name, b->name) && !strcmp(a->login, b->login) &&
           !strcmp(a->organization, b->organization) && !strcmp(a->id, b->id) &&
           !strcmp(a->email, b->email) && a->delete_passwords == b->delete_passwords &&
           a->delete_service_tokens == b->delete_service_tokens &&
           a->first_attempt == b->first_attempt && a->last_attempt == b->last_attempt &&
           a->attempts == b->attempts && !strcmp(a->last_error, b->last_error);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ps_qentry_t e;
    ps_qentry_t back;
    char name[32];
    char err[256];
    char *s;

    err[0] = '\0';
    if(ps_queue_parse((const char *)data, size, &e, err, sizeof(err)) != 0) {
        if(!err[0])
            abort(); /* every refusal says why */
        return 0;
    }
    /* an id, or an email whose id is not resolved yet */
    if(!ps_login_valid(e.login) || !ps_id_valid(e.organization) ||
       !(ps_id_valid(e.id) || (!e.id[0] && e.email[0])) ||
       (e.email[0] && !ps_email_valid(e.email)) || e.attempts < 0 || e.first_attempt < 0 ||
       e.last_attempt < 0 || !memchr(e.last_error, '\0', sizeof(e.last_error)))
        abort();
    ps_queue_entry_name(&e, name);
    if(strcmp(name, e.name))
        abort();
    s = ps_queue_format(&e);
    if(!s)
        abort();
    if(ps_queue_parse(s, strlen(s), &back, err, sizeof(err)) != 0 || !same(&e, &back))
        abort();
    free(s);
    return 0;
}
