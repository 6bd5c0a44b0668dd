/* fuzz_api_answer.c - libFuzzer target for the handling of an API answer.
 *
 * Input layout: two bytes of HTTP status (big endian, modulo 1000), then a
 * Retry-After header value up to the first '\n', then the body. The body is
 * handed over in a buffer of its exact size (no NUL after it), like the bytes
 * libcurl delivers, so that AddressSanitizer sees any read past its end. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"

#define FUZZ_NOW ((time_t)1700000000)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *rest;
    const uint8_t *nl;
    size_t rlen;
    size_t hlen;
    size_t blen;
    char *header;
    char *body;
    char msg[512];
    ps_outcome_t o;
    double ra;
    long status;

    if(size < 2)
        return 0;
    status = (long)(((unsigned)data[0] << 8 | data[1]) % 1000);
    rest = data + 2;
    rlen = size - 2;
    nl = memchr(rest, '\n', rlen);
    hlen = nl ? (size_t)(nl - rest) : rlen;
    blen = nl ? rlen - hlen - 1 : 0;

    header = malloc(hlen + 1);
    body = malloc(blen ? blen : 1);
    if(!header || !body)
        abort();
    memcpy(header, rest, hlen);
    header[hlen] = '\0';
    if(blen)
        memcpy(body, nl + 1, blen);

    ra = ps_parse_retry_after(header, FUZZ_NOW);
    if(ra != -1 && !(ra >= 0))
        abort();

    memset(msg, 'x', sizeof(msg));
    o = ps_classify_http(status, body, blen, msg, sizeof(msg));
    if((int)o < PS_OUT_REMOVED || o > PS_OUT_CONFIG)
        abort();
    if(!memchr(msg, '\0', sizeof(msg)))
        abort();
    /* a NULL body is allowed too */
    o = ps_classify_http(status, NULL, 0, msg, sizeof(msg));
    if(!ps_outcome_name(o))
        abort();

    free(header);
    free(body);
    return 0;
}
