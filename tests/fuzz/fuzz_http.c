/* fuzz_http.c — request and response framing as the gateway reads them: http-parser with the
 * gateway's header table (fl_http_head_*), the framing and smuggling checks and the hop-by-hop
 * set, over pipelined messages with chunked or sized bodies. Byte 0 chooses requests or
 * responses and where the input is cut into reads. */
#include "fuzz.h"

#include "http.h"

#include <http_parser.h>

typedef struct {
  fl_http_head_t head;
  size_t body;
  int failed;
} state_t;

#define ST(p) ((state_t *)(p)->data)

static int on_begin(http_parser *p) {
  fl_http_head_reset(&ST(p)->head);
  ST(p)->body = 0;
  return 0;
}
static int on_url(http_parser *p, const char *at, size_t n) { return fl_http_head_url(&ST(p)->head, at, n) ? -1 : 0; }
static int on_field(http_parser *p, const char *at, size_t n) { return fl_http_head_field(&ST(p)->head, at, n) ? -1 : 0; }
static int on_value(http_parser *p, const char *at, size_t n) { return fl_http_head_value(&ST(p)->head, at, n) ? -1 : 0; }

static int on_headers(http_parser *p) {
  const fl_http_head_t *h = &ST(p)->head;
  if (fl_http_check_framing(h)) return -1;
  size_t len;
  fl_http_head_get(h, "host", &len);
  for (uint32_t i = 0; i < h->n; i++) (void)fl_http_is_hop(h, &h->hdrs[i]);
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  ST(p)->body += n;
  return 0;
}

static const http_parser_settings settings = {.on_message_begin = on_begin, .on_url = on_url,
                                              .on_header_field = on_field, .on_header_value = on_value,
                                              .on_headers_complete = on_headers, .on_body = on_body};

FL_FUZZ_TARGET(http) {
  if (size < 1) return 0;
  state_t st = {0};
  if (fl_http_head_init(&st.head, 65536, 100) != 0) return 0;
  http_parser p;
  http_parser_init(&p, data[0] & 1 ? HTTP_RESPONSE : HTTP_REQUEST);
  p.data = &st;
  size_t piece = (size_t)(data[0] >> 1) + 1;
  for (size_t i = 1; i < size && HTTP_PARSER_ERRNO(&p) == HPE_OK; i += piece)
    http_parser_execute(&p, &settings, (const char *)data + i, FL_MIN(piece, size - i));
  fl_http_head_free(&st.head);
  return 0;
}
