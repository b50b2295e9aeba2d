/* fuzz_conf.c — the config loader: any bytes as a YAML file, parsed, validated and freed. */
#include "fuzz.h"

#include "conf.h"

FL_FUZZ_TARGET(conf) {
  fl_conf_t *c = NULL;
  char err[512];
  if (fl_conf_parse("fuzz.yaml", (const char *)data, size, &c, err, sizeof err) == 0) fl_conf_unref(c);
  return 0;
}
