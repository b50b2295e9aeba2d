/* h1.h — HTTP/1.x messages read without callbacks: the request or status line and the header
 * section line by line into a header table (http.h), then the body by Content-Length, by chunks
 * or up to the connection's close. Strict where a lenient reading lets one message be read two
 * ways (RFC 9112 section 11.2): one framing per message, no whitespace before a colon, no line
 * folding, no control bytes in a value, one Host (and one at least in an HTTP/1.1 request); a
 * line may end with CRLF or a bare LF. No allocation
 * beyond the header table; one parser per connection and message direction, any thread. */
#ifndef FL_H1_H
#define FL_H1_H

#include "http.h"

typedef enum {
  FL_METHOD_NONE, FL_METHOD_GET, FL_METHOD_HEAD, FL_METHOD_POST, FL_METHOD_PUT, FL_METHOD_DELETE,
  FL_METHOD_CONNECT, FL_METHOD_OPTIONS, FL_METHOD_TRACE, FL_METHOD_PATCH,
} fl_method_t;

/* "GET", "POST", ...; "" for FL_METHOD_NONE. Static string. */
const char *fl_method_name(fl_method_t m);

/* What one call of fl_h1_feed found. */
typedef enum {
  FL_H1_MORE,     /* everything usable is used; more bytes are needed */
  FL_H1_HEAD,     /* the head is complete and in the table: the fields below are set */
  FL_H1_DATA,     /* body bytes (*body, *body_len), inside the bytes given */
  FL_H1_END,      /* the message is complete; the bytes after it are the next message's */
  FL_H1_ERROR,    /* malformed: `error` says why in words, `error_status` what a server answers */
} fl_h1_event_t;

typedef struct fl_h1 {
  /* set by the caller */
  bool response;               /* reads answers (status lines) rather than requests */
  bool no_body;                /* before the answer's head ends: it answers a HEAD request */
  /* the message's, once FL_H1_HEAD was returned */
  uint8_t minor;               /* HTTP/1.minor */
  fl_method_t method;          /* requests */
  uint16_t status;             /* answers */
  bool chunked;                /* Transfer-Encoding: chunked */
  bool has_length;             /* Content-Length was given: content_length */
  bool keep_alive;             /* the connection may carry another message after this one */
  uint64_t content_length;
  /* why FL_H1_ERROR was returned */
  int error_status;            /* 400, or 414 / 431 for a request line / head over the table's limits */
  const char *error;           /* static words, NULL before any error */
  /* private */
  uint8_t state;
  uint8_t n_cl, n_te, n_host;
  bool conn_close, conn_keep_alive, conn_upgrade, has_upgrade;
  bool line_started;           /* the head's first line has begun (leading blank lines are skipped) */
  bool first_done;             /* the request or status line is read */
  uint32_t head_bytes;         /* bytes of the head used so far */
  uint32_t scanned;            /* bytes of the unfinished line already searched for its end */
  uint32_t trailer_bytes;
  uint64_t remaining;          /* of the body's length, or the chunk being read */
} fl_h1_t;

/* A parser for requests (response false) or answers. */
void fl_h1_init(fl_h1_t *p, bool response);
/* Ready for the next message on the same connection. */
void fl_h1_reset(fl_h1_t *p);
/* FL_H1_END was returned and fl_h1_reset was not called since. */
bool fl_h1_done(const fl_h1_t *p);

/* Reads from data[0, len) (len may be 0), filling h with the head (h must be empty at a message's
 * start); *used says how many bytes it took. A line of the head that is not complete yet is not
 * taken (FL_H1_MORE with *used < len): the caller gives those bytes again, followed by the next
 * ones. Call again after every event but FL_H1_MORE, FL_H1_END and FL_H1_ERROR. A head that
 * outgrows h's limits is an error (431, or 414 while still in the request line). */
fl_h1_event_t fl_h1_feed(fl_h1_t *p, fl_http_head_t *h, const char *data, size_t len, size_t *used,
                         const char **body, size_t *body_len);

/* The peer closed its side: FL_H1_END for an answer that runs to the close, FL_H1_MORE when no
 * message has begun, else FL_H1_ERROR (a message cut short). */
fl_h1_event_t fl_h1_eof(fl_h1_t *p);

#endif
