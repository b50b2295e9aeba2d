/* target.h — a request's target as the gateway routes and forwards it (RFC 9112 section 3.2):
 * the authority of an absolute-form target, and the path with its dot-segments removed and "%2E"
 * read as ".", so that "/v1/chat/../../metrics" is matched and forwarded as "/metrics", never
 * as a prefix of a route it climbs out of. An encoded slash or backslash is refused: backends
 * disagree on whether it separates segments. Pure functions; any thread. */
#ifndef FL_TARGET_H
#define FL_TARGET_H

#include "common.h"

typedef struct fl_target {
  const char *authority; size_t authority_len;   /* absolute-form's host[:port], else NULL, 0 */
  const char *path; size_t path_len;             /* normalised; "/" for an absolute-form without one */
  const char *query; size_t query_len;           /* after the '?', without it; "" when none */
} fl_target_t;

/* Reads the target in url[0, len), normalising its path in place (it only shrinks): t points
 * into url. Returns 0, or FL_EPARSE with *why set (static words: "encoded slash in the path",
 * "invalid authority in the URL", ...). The asterisk-form "*" is a path of its own. */
int fl_target_parse(char *url, size_t len, fl_target_t *t, const char **why);

/* Removes "." and ".." segments from path[0, len) in place (RFC 3986 section 5.2.4; ".." at the
 * root stays at the root). Returns the new length. */
size_t fl_path_remove_dots(char *path, size_t len);

#endif
