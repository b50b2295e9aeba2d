/* geo.h — client country from a MaxMind .mmdb file (libmaxminddb, memory-mapped, so a
 * lookup never blocks on disk once the pages are warm). */
#ifndef FL_GEO_H
#define FL_GEO_H

#include "common.h"
#include <sys/socket.h>

typedef struct fl_geo fl_geo_t;

/* Opens path; on error writes a message naming the file into err. Caller owns *out. */
int fl_geo_open(const char *path, fl_geo_t **out, char *err, size_t err_cap);
void fl_geo_close(fl_geo_t *g);

/* Writes the upper-case ISO country code of sa into cc[3]; false when unknown.
 * Any thread: the database is read-only after open. */
bool fl_geo_country(const fl_geo_t *g, const struct sockaddr *sa, char cc[3]);

#endif
