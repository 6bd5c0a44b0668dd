/* fuzz_member_page.c - libFuzzer target for the parsers of the member reads:
 * a page of the member list and one membership; and, on the same bytes, the
 * parser of a cached email resolution (members.h).
 *
 * Input layout: one byte, the page the caller asked for (0 = no
 * expectation), then the body, handed over in a buffer of its exact size
 * (no NUL after it), like the bytes libcurl delivers, so that
 * AddressSanitizer sees any read past its end. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "members.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_member(const ps_member_t *m)
{
    /* every field terminated, the id usable in a URL */
    if(!memchr(m->id, '\0', sizeof(m->id)) || !memchr(m->user_id, '\0', sizeof(m->user_id)) ||
       !memchr(m->email, '\0', sizeof(m->email)) || !memchr(m->name, '\0', sizeof(m->name)) ||
       !memchr(m->role, '\0', sizeof(m->role)))
        abort();
    if(!ps_id_valid(m->user_id) || !m->id[0] || !m->role[0])
        abort();
    if(m->directory_managed < -1 || m->directory_managed > 1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ps_member_page_t pg;
    ps_member_t m;
    char err[256];
    char *body;
    size_t blen, i;
    long expect;

    if(size < 1)
        return 0;
    expect = data[0];
    blen = size - 1;
    body = malloc(blen ? blen : 1);
    if(!body)
        abort();
    if(blen)
        memcpy(body, data + 1, blen);

    memset(err, 'x', sizeof(err));
    if(ps_parse_member_page(body, blen, expect, &pg, err, sizeof(err)) == 0) {
        if(expect && pg.current_page != expect)
            abort();
        if(pg.next_page && pg.next_page <= pg.current_page)
            abort();
        if(pg.n && !pg.members)
            abort();
        for(i = 0; i < pg.n; i++)
            check_member(&pg.members[i]);
        ps_member_page_free(&pg);
    } else {
        if(pg.members || pg.n || !memchr(err, '\0', sizeof(err)))
            abort();
    }

    memset(err, 'x', sizeof(err));
    if(ps_parse_member(body, blen, &m, err, sizeof(err)) == 0)
        check_member(&m);
    else if(m.user_id[0] || !memchr(err, '\0', sizeof(err)))
        abort();

    {
        ps_email_cache_entry_t e;

        if(ps_email_cache_parse(body, blen, &e, err, sizeof(err)) == 0 &&
           (!ps_id_valid(e.organization) || !ps_id_valid(e.id) || !ps_email_valid(e.email)))
            abort();
    }

    free(body);
    return 0;
}
