/* fuzz_reconcile_state.c - libFuzzer target for the reader of reconcile's
 * state file (ps_rc_state_parse). An accepted state must hold what the
 * confirmation count relies on: valid logins, organizations and ids, no
 * login twice, runs >= 1, positive times with first_missing <= last_counted;
 * and it must read back the same after ps_rc_state_format. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ps_rc_state_t st, back;
    char err[256];
    char *text;
    size_t i, j;

    err[0] = '\0';
    if(ps_rc_state_parse((const char *)data, size, &st, err, sizeof(err)) != 0) {
        if(!err[0] || st.v || st.n)
            abort(); /* every refusal says why, and leaves nothing behind */
        return 0;
    }
    for(i = 0; i < st.n; i++) {
        const ps_rc_entry_t *e = &st.v[i];

        if(!ps_login_valid(e->login) || !ps_id_valid(e->organization) || !ps_id_valid(e->id) ||
           e->runs < 1 || e->first_missing <= 0 || e->first_missing > e->last_counted)
            abort();
        for(j = 0; j < i; j++)
            if(!strcmp(st.v[j].login, e->login))
                abort();
    }
    text = ps_rc_state_format(&st);
    if(!text || ps_rc_state_parse(text, strlen(text), &back, err, sizeof(err)) != 0 ||
       back.n != st.n || back.last_run != st.last_run ||
       (st.n && memcmp(back.v, st.v, st.n * sizeof(*st.v)) != 0))
        abort();
    free(text);
    ps_rc_state_free(&back);
    ps_rc_state_free(&st);
    return 0;
}
