/* fuzz_unresolved.c - libFuzzer target for the reader of logins recorded
 * while the configuration could not be loaded (ps_unresolved_parse). An
 * accepted record must hold what `retry` relies on: a valid login, an
 * absolute printable config path, a known source/mode, a positive time and
 * a file name derived from its content. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helper.h"
#include "unresolved.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ps_unresolved_t u;
    char err[256];
    const char *c;

    err[0] = '\0';
    if(ps_unresolved_parse((const char *)data, size, &u, err, sizeof(err)) != 0) {
        if(!err[0])
            abort(); /* every refusal says why */
        return 0;
    }
    if(!ps_login_valid(u.login) || u.config[0] != '/' || u.recorded <= 0 || strlen(u.name) != 21 ||
       strcmp(u.name + 16, ".json") != 0)
        abort();
    for(c = u.config; *c; c++)
        if((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            abort();
    if(u.mode[0] && strcmp(u.mode, PS_MODE_SERVICE) && strcmp(u.mode, PS_MODE_EXPIRED) &&
       strcmp(u.mode, PS_MODE_CLOSE))
        abort();
    if(!u.mode[0] && u.service[0])
        abort();
    return 0;
}
