/* ui.c — finds the built-in dashboard's embedded files by the path they are served at, and
 * compares a client's cached validator with theirs. The bytes are in the generated table. */
#include "ui.h"

#include <string.h>

const fl_ui_asset_t *fl_ui_find(const char *path) {
  for (size_t i = 0; i < fl_ui_n_assets; i++)
    if (strcmp(fl_ui_assets[i].path, path) == 0) return &fl_ui_assets[i];
  return NULL;
}

/* One entity tag of a list, with a weak prefix (W/) dropped: If-None-Match compares weakly. */
static bool tag_is(const char *tag, size_t len, const char *etag) {
  if (len >= 2 && tag[0] == 'W' && tag[1] == '/') tag += 2, len -= 2;
  return (len == 1 && tag[0] == '*') || (len == strlen(etag) && memcmp(tag, etag, len) == 0);
}

bool fl_ui_etag_matches(const char *if_none_match, size_t len, const char *etag) {
  size_t i = 0;
  while (i < len) {
    while (i < len && (if_none_match[i] == ' ' || if_none_match[i] == '\t' || if_none_match[i] == ',')) i++;
    size_t start = i;
    while (i < len && if_none_match[i] != ',') i++;
    size_t end = i;
    while (end > start && (if_none_match[end - 1] == ' ' || if_none_match[end - 1] == '\t')) end--;
    if (end > start && tag_is(if_none_match + start, end - start, etag)) return true;
  }
  return false;
}
