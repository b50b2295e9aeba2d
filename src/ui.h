/* ui.h — the built-in dashboard's files (src/ui/), compiled into the binary from a table that
 * scripts/embed_ui.py generates at build time; the admin listener serves them at / and /ui/. */
#ifndef FL_UI_H
#define FL_UI_H

#include <stdbool.h>
#include <stddef.h>

/* One embedded file. Static data, never freed; any thread may read it. */
typedef struct fl_ui_asset {
  const char *path;                 /* where it is served: "/" for index.html, else "/ui/NAME" */
  const char *content_type;         /* with its charset for text */
  const char *etag;                 /* quoted strong validator: a hash of the bytes */
  const unsigned char *data;        /* NUL-terminated for convenience; len excludes the NUL */
  size_t len;
} fl_ui_asset_t;

/* The generated table (build/gen/ui_assets.c). */
extern const fl_ui_asset_t fl_ui_assets[];
extern const size_t fl_ui_n_assets;

/* The file served at path (a request's path, without its query), or NULL. */
const fl_ui_asset_t *fl_ui_find(const char *path);

/* True when an If-None-Match header value (len bytes, not NUL-terminated) names etag, or is "*":
 * the client's copy is current and a 304 will do (RFC 9110 13.1.2, weak comparison). */
bool fl_ui_etag_matches(const char *if_none_match, size_t len, const char *etag);

#endif
