/* fuzz_sender_line.c - libFuzzer target for the sender's wire: the cutting
 * of a byte stream into lines (ps_wire_take_line, fed in pieces whose sizes
 * the input's first byte chooses) and the parsers of the lines it yields
 * (ps_sender_parse_hello, _send, _done); an input with no '\n' or NUL is
 * also parsed whole, as one line. A line taken must be what came before its
 * '\n', with no control character; an accepted line must give the fields
 * the hand-off relies on; and a DONE must survive the sender's own
 * formatting (ps_sender_format_done) unchanged, but for control characters
 * (only a whole input can hold them), which become '?'. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remove.h"
#include "sender_wire.h"

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

static void parse_line(const char *line, size_t size)
{
    static ps_sender_hello_t h;
    ps_report_t rep, back;
    char name[32], again[PS_SENDER_LINE_MAX + 64], expect[sizeof(rep.message)];
    long ms = -1;
    size_t n;

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
        /* what the sender writes for this report reads back the same
         * (a control character, which no line from the wire holds, as '?') */
        ps_wire_one_line(rep.message, expect, sizeof(expect));
        ps_sender_format_done(&rep, again, sizeof(again));
        n = strlen(again);
        if(n == 0 || again[n - 1] != '\n' || memchr(again, '\n', n - 1))
            abort();
        again[n - 1] = '\0';
        memset(&back, 0, sizeof(back));
        if(ps_sender_parse_done(again, &back) != 0 || back.status != rep.status ||
           back.http_status != rep.http_status || back.attempts != rep.attempts ||
           strcmp(back.message, expect) != 0)
            abort();
    }
}

/* The input as a stream, in pieces of 1 to 16 bytes (or all at once). */
static void split_stream(const uint8_t *data, size_t size)
{
    static char buf[PS_SENDER_LINE_MAX + 1], out[PS_SENDER_LINE_MAX + 1];
    size_t len = 0, off = 1, consumed = 0, piece;
    int rc;

    if(size < 1)
        return;
    piece = data[0] % 17; /* 0: as much as fits */
    while(off < size) {
        size_t n = piece ? piece : PS_SENDER_LINE_MAX - len;

        if(n > size - off)
            n = size - off;
        if(n > PS_SENDER_LINE_MAX - len)
            n = PS_SENDER_LINE_MAX - len;
        if(n == 0)
            return; /* full with no line: the reader gives up (rc -1 below) */
        memcpy(buf + len, data + off, n);
        len += n;
        off += n;
        while((rc = ps_wire_take_line(buf, &len, out, sizeof(out))) == 1) {
            size_t ol = strlen(out), i;

            /* the line is exactly the stream's next bytes up to a '\n' */
            if(consumed + ol + 1 > size - 1 || memcmp(out, data + 1 + consumed, ol) != 0 ||
               data[1 + consumed + ol] != '\n')
                abort();
            for(i = 0; i < ol; i++)
                if((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
                    abort();
            consumed += ol + 1;
            parse_line(out, ol);
        }
        if(rc < 0)
            return; /* a reader closes the connection here */
        if(len >= PS_SENDER_LINE_MAX)
            abort(); /* a full buffer must have been refused */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line;

    split_stream(data, size);
    if(size > PS_SENDER_LINE_MAX || memchr(data, '\0', size) || memchr(data, '\n', size))
        return 0;
    line = malloc(size + 1);
    if(!line)
        return 0;
    memcpy(line, data, size);
    line[size] = '\0';
    parse_line(line, size);
    free(line);
    return 0;
}
