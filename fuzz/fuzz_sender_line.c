/* fuzz_sender_line.c - libFuzzer target for the sender protocol's parsers
 * (ps_sender_parse_hello, _send, _done): one line of input, as read_line()
 * hands it over (no '\n', no NUL inside). An accepted line must give the
 * fields the hand-off relies on, and a DONE must survive the sender's own
 * formatting unchanged. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remove.h"
#include "sender.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int name_ok(const char *n)
{
    size_t i;

    if(strlen(n) != 21 || strcmp(n + 16, ".json") != 0)
        return 0;
    for(i = 0; i < 16; i++)
        if(!((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f')))
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ps_sender_hello_t h;
    ps_report_t rep, back;
    char *line, name[32], again[PS_SENDER_LINE_MAX + 64];
    long ms = -1;

    if(size > PS_SENDER_LINE_MAX || memchr(data, '\0', size) || memchr(data, '\n', size))
        return 0;
    line = malloc(size + 1);
    if(!line)
        return 0;
    memcpy(line, data, size);
    line[size] = '\0';

    if(ps_sender_parse_hello(line, &h) == 0) {
        if(!h.url[0] || strchr(h.url, ' ') || h.queue_dir[0] != '/' ||
           strlen(h.url) + strlen(h.queue_dir) + 9 != size)
            abort();
    }
    if(ps_sender_parse_send(line, name, &ms) == 0) {
        if(!name_ok(name) || ms < 0 || ms > 7L * 86400 * 1000)
            abort();
    }
    memset(&rep, 0, sizeof(rep));
    if(ps_sender_parse_done(line, &rep) == 0) {
        if(rep.http_status < 0 || rep.http_status > 999 || rep.attempts < 0 ||
           rep.attempts > 1000 || !memchr(rep.message, '\0', sizeof(rep.message)))
            abort();
        /* what the sender writes for this report reads back the same */
        snprintf(again, sizeof(again), "DONE %s %ld %d %s", ps_status_word(rep.status),
                 rep.http_status, rep.attempts, rep.message);
        memset(&back, 0, sizeof(back));
        if(ps_sender_parse_done(again, &back) != 0 || back.status != rep.status ||
           back.http_status != rep.http_status || back.attempts != rep.attempts ||
           strcmp(back.message, rep.message) != 0)
            abort();
    }
    free(line);
    return 0;
}
