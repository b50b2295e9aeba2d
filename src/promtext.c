/* promtext.c — the Prometheus text format, a line at a time: name, optional {labels}, value,
 * optional timestamp. */
#include "promtext.h"

#include <math.h>
#include <stdlib.h>

static bool name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
static bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }

static const char *skip_blank(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t')) p++;
  return p;
}

/* A name into out (cap bytes); returns the position after it, or NULL. */
static const char *read_name(const char *p, const char *end, char *out, size_t cap, bool metric) {
  size_t n = 0;
  if (p >= end || !name_start(*p) || (!metric && *p == ':')) return NULL;
  while (p < end && name_char(*p) && (metric || *p != ':')) {
    if (n + 1 >= cap) return NULL;
    out[n++] = *p++;
  }
  out[n] = '\0';
  return p;
}

/* A quoted label value with its escapes; returns the position after the closing quote. */
static const char *read_value(const char *p, const char *end, char *out, size_t cap) {
  size_t n = 0;
  if (p >= end || *p++ != '"') return NULL;
  while (p < end && *p != '"' && *p != '\n') {
    char c = *p++;
    if (c == '\\') {
      if (p >= end) return NULL;
      c = *p++;
      if (c == 'n') c = '\n';
      else if (c != '\\' && c != '"') return NULL;
    }
    if (n + 1 >= cap) return NULL;
    out[n++] = c;
  }
  if (p >= end || *p != '"') return NULL;
  out[n] = '\0';
  return p + 1;
}

static const char *read_labels(const char *p, const char *end, fl_prom_label_t *labels, size_t *n) {
  *n = 0;
  p = skip_blank(p + 1, end);                         /* after '{' */
  while (p < end && *p != '}') {
    if (*n == FL_PROM_MAX_LABELS) return NULL;
    fl_prom_label_t *l = &labels[(*n)++];
    if (!(p = read_name(p, end, l->name, sizeof l->name, false))) return NULL;
    p = skip_blank(p, end);
    if (p >= end || *p++ != '=') return NULL;
    if (!(p = read_value(skip_blank(p, end), end, l->value, sizeof l->value))) return NULL;
    p = skip_blank(p, end);
    if (p < end && *p == ',') p = skip_blank(p + 1, end);
    else if (p >= end || *p != '}') return NULL;
  }
  return p < end ? p + 1 : NULL;
}

/* The value: a float as Go's ParseFloat takes it, or +Inf, -Inf, NaN. */
static const char *read_number(const char *p, const char *end, double *out) {
  char buf[64];
  size_t n = 0;
  while (p < end && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
    if (n + 1 >= sizeof buf) return NULL;
    buf[n++] = *p++;
  }
  buf[n] = '\0';
  char *stop;
  if (!n) return NULL;
  if (strcmp(buf, "+Inf") == 0 || strcmp(buf, "Inf") == 0) *out = INFINITY;
  else if (strcmp(buf, "-Inf") == 0) *out = -INFINITY;
  else if (strcmp(buf, "NaN") == 0) *out = NAN;
  else if (strspn(buf, "0123456789+-.eE") != n || (*out = strtod(buf, &stop), *stop)) return NULL;
  return p;
}

static bool parse_line(const char *p, const char *end, fl_prom_fn fn, void *ctx) {
  char name[128];
  fl_prom_label_t labels[FL_PROM_MAX_LABELS];
  size_t n_labels = 0;
  double value, ts;
  if (!(p = read_name(p, end, name, sizeof name, true))) return false;
  p = skip_blank(p, end);
  if (p < end && *p == '{' && !(p = read_labels(p, end, labels, &n_labels))) return false;
  p = skip_blank(p, end);
  if (!(p = read_number(p, end, &value))) return false;
  p = skip_blank(p, end);
  if (p < end && *p != '\r' && !(p = read_number(p, end, &ts))) return false;     /* a timestamp */
  p = skip_blank(p, end);
  if (p < end && *p == '\r') p++;
  if (p != end) return false;
  fn(ctx, name, labels, n_labels, value);
  return true;
}

int fl_prom_parse(const char *text, size_t len, fl_prom_fn fn, void *ctx) {
  int bad = 0;
  for (const char *p = text, *end = text + len; p < end;) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *line_end = nl ? nl : end;
    const char *q = skip_blank(p, line_end);
    if (q < line_end && *q != '#' && !(line_end - q == 1 && *q == '\r') && !parse_line(q, line_end, fn, ctx)) bad++;
    p = line_end + 1;
  }
  return bad;
}
