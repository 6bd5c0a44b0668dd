/* sender_wire.h - the sender's protocol and what both ends of its socket
 * share: the connection with its line buffer, line I/O (with a descriptor
 * riding along), the peer check, and the parsers and formatter of its lines.
 * The hand-off client (sender_client.h) and `serve` (sender_serve.h) are
 * built on it; neither knows the other.
 *
 * Protocol (one exchange per connection, lines of at most PS_SENDER_LINE_MAX
 * bytes ending in '\n', no control characters inside a line):
 *   C: HELLO 1 API_URL QUEUE_DIR
 *   S: READY                      (same API URL and same queue directory)
 *    | REFUSE REASON              (the client sends the removal itself)
 *   C: SEND NAME DEADLINE_MS      + SCM_RIGHTS: the entry's locked lock file
 *   S: ACCEPT | REFUSE REASON
 *   S: DONE WORD HTTP ATTEMPTS MESSAGE   (WORD: ps_status_word)
 * The sender may also answer REFUSE at once, before the HELLO (a client of
 * another uid, too many clients, stopping), and then closes. DEADLINE_MS is
 * what is left of the client's deadline (0: none); the sender answers DONE
 * before it, or not at all: what it could not complete by then stays in the
 * queue for retry.
 * Both sides check the peer's credentials (SO_PEERCRED): root, or the same
 * effective uid. The token never crosses the socket: only an API URL, a
 * queue directory, an entry name, a deadline and the outcome do. */
#ifndef PS_SENDER_WIRE_H
#define PS_SENDER_WIRE_H

#include <sys/types.h>

#include "ctx.h"

#define PS_SENDER_LINE_MAX 4096
#define PS_SENDER_PROTO    "1"
#define PS_WIRE_MAX_FDS    4 /* descriptors kept per connection; more: refused */

/* One end of a connection: bytes read but not yet taken as lines, and the
 * descriptors that came with them (SCM_RIGHTS, close-on-exec). */
typedef struct ps_wire {
    int fd;
    char buf[PS_SENDER_LINE_MAX + 1];
    size_t len;
    int fds[PS_WIRE_MAX_FDS];
    int nfds;
    int extra_fds; /* more descriptors arrived than fit (closed), or truncated */
} ps_wire_t;

void ps_wire_init(ps_wire_t *w, int fd);
/* Closes the descriptors received and not taken (not w->fd). */
void ps_wire_close_fds(ps_wire_t *w);

/* Takes the next whole line out of buf[0..*len) into out (without its '\n',
 * NUL-terminated), moving the rest to the front. 1: a line; 0: no whole
 * line yet; -1: the bytes cannot make a valid line (a control character
 * before the '\n', a line of outlen bytes or more, or PS_SENDER_LINE_MAX
 * bytes with no '\n'). Pure: unit-tested and fuzzed. */
int ps_wire_take_line(char *buf, size_t *len, char *out, size_t outlen);

/* One non-blocking read into the buffer, keeping descriptors that come
 * with it. >0 bytes added; 0 nothing to read now; -1 end of file, error,
 * or the buffer is already full. */
int ps_wire_fill(ps_wire_t *w);

/* Blocking (poll) until a whole line or `deadline` (ps_now()): 0 with the
 * line in out; -1 end of file, error, timeout or an invalid line. */
int ps_wire_read_line(ps_wire_t *w, char *out, size_t outlen, double deadline);

/* Writes what the socket takes now of data[0..len), without blocking;
 * the descriptor `pass` (or -1) rides with the first byte. Returns the bytes
 * written (0: try again when writable), -1 on error (peer gone). */
ssize_t ps_wire_send(int fd, const char *data, size_t len, int pass);

/* Writes a whole line by `deadline`; `pass` as above. 0 ok, -1 failed
 * (nothing about the peer's state is then known). */
int ps_wire_write_line(int fd, const char *line, int pass, double deadline);

/* Waits for `events` on fd until deadline: 1 ready, 0 timeout, -1 error. */
int ps_wire_wait(int fd, short events, double deadline);

/* The peer is root or runs as we do (SO_PEERCRED: for a socket systemd
 * listens on, that is systemd itself). 1 trusted; *uid is the peer's. */
int ps_wire_peer_trusted(int fd, uid_t *uid);

/* Copies `in`, replacing anything that could split or forge a line. */
void ps_wire_one_line(const char *in, char *out, size_t outlen);

/* ---- the lines (pure: unit-tested and fuzzed) ---- */

typedef struct ps_sender_hello {
    char url[PS_SENDER_LINE_MAX];
    char queue_dir[PS_SENDER_LINE_MAX];
} ps_sender_hello_t;

/* "HELLO 1 URL DIR": 0 and h filled, -1 not a valid HELLO. */
int ps_sender_parse_hello(const char *line, ps_sender_hello_t *h);

/* "SEND NAME MS": NAME an entry name (16 hex digits + ".json"), 0 <= MS
 * <= 7 days. 0 and the fields, -1 not a valid SEND. */
int ps_sender_parse_send(const char *line, char name[32], long *deadline_ms);

/* "DONE WORD HTTP ATTEMPTS MESSAGE": 0 with rep's status, http_status,
 * attempts and message set, -1 not a valid DONE (an unknown word too). */
int ps_sender_parse_done(const char *line, ps_report_t *rep);

/* The DONE line for rep, '\n' included, in one line whatever the message
 * holds; ps_sender_parse_done reads it back. Returns out. */
char *ps_sender_format_done(const ps_report_t *rep, char *out, size_t outlen);

#endif
