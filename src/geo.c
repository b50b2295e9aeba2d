/* geo.c — country lookups in a MaxMind database: country.iso_code, else registered_country. */
#include "geo.h"

#include <maxminddb.h>
#include <stdio.h>
#include <stdlib.h>

struct fl_geo {
  MMDB_s db;
};

int fl_geo_open(const char *path, fl_geo_t **out, char *err, size_t err_cap) {
  fl_geo_t *g = calloc(1, sizeof *g);
  if (!g) return FL_ENOMEM;
  int rc = MMDB_open(path, MMDB_MODE_MMAP, &g->db);
  if (rc != MMDB_SUCCESS) {
    snprintf(err, err_cap, "%s: cannot open GeoIP database: %s", path, MMDB_strerror(rc));
    free(g);
    return FL_EIO;
  }
  *out = g;
  return 0;
}

void fl_geo_close(fl_geo_t *g) {
  if (!g) return;
  MMDB_close(&g->db);
  free(g);
}

static bool iso_code(MMDB_lookup_result_s *res, const char *where, char cc[3]) {
  MMDB_entry_data_s data;
  if (MMDB_get_value(&res->entry, &data, where, "iso_code", NULL) != MMDB_SUCCESS) return false;
  if (!data.has_data || data.type != MMDB_DATA_TYPE_UTF8_STRING || data.data_size != 2) return false;
  for (int i = 0; i < 2; i++) {
    char c = data.utf8_string[i];
    cc[i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
  }
  cc[2] = '\0';
  return true;
}

bool fl_geo_country(const fl_geo_t *g, const struct sockaddr *sa, char cc[3]) {
  int mmdb_err = 0;
  MMDB_lookup_result_s res = MMDB_lookup_sockaddr((MMDB_s *)&g->db, sa, &mmdb_err);
  if (mmdb_err != MMDB_SUCCESS || !res.found_entry) return false;
  return iso_code(&res, "country", cc) || iso_code(&res, "registered_country", cc);
}
