/* conf_shadow.c — a route's `shadow:` section: which share of stable's requests is mirrored to
 * the canary, how many mirrors may be open at once, how long one may take, and which methods are
 * mirrored. Kept apart from conf.c, which only names it in the route's table. */
#include "conf_int.h"
#include "h1.h"

#include <string.h>

#define FL_SHADOW_METHODS_DEFAULT                                                                          \
  ((1u << FL_METHOD_GET) | (1u << FL_METHOD_HEAD) | (1u << FL_METHOD_OPTIONS) | (1u << FL_METHOD_POST))

static int f_percent(parse_ctx_t *p, yaml_node_t *v, void *slot) { return cy_get_weight(p, v, slot); }

static int f_max_in_flight(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  int rc = cy_f_u32(p, v, slot);
  if (rc == 0 && (*(uint32_t *)slot == 0 || *(uint32_t *)slot > 100000))
    rc = cy_fail(p, v, "shadow.max_in_flight must be from 1 to 100000");
  return rc;
}

static int f_timeout(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  int rc = cy_f_duration(p, v, slot);
  if (rc == 0 && (*(uint32_t *)slot < 100 || *(uint32_t *)slot > 3600000))
    rc = cy_fail(p, v, "shadow.timeout must be from 100ms to 1h");
  return rc;
}

/* methods: [GET, POST]: CONNECT cannot be copied (a tunnel), anything else may be listed. */
static int f_methods(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  uint32_t *mask = slot;
  int rc = cy_want_list(p, v, "shadow.methods");
  if (rc) return rc;
  *mask = 0;
  for (size_t i = 0; i < cy_list_len(v); i++) {
    yaml_node_t *item = cy_list_item(p, v, i);
    if ((rc = cy_want_scalar(p, item)) != 0) return rc;
    fl_method_t m = FL_METHOD_NONE;
    for (int k = FL_METHOD_GET; k <= FL_METHOD_PATCH; k++)
      if (strcmp(cy_scalar(item), fl_method_name((fl_method_t)k)) == 0) m = (fl_method_t)k;
    if (m == FL_METHOD_NONE || m == FL_METHOD_CONNECT)
      return cy_fail(p, item, "shadow.methods: \"%s\" is not a method that can be mirrored (GET, HEAD, POST, PUT, "
                     "DELETE, OPTIONS, TRACE or PATCH, in capitals)", cy_scalar(item));
    *mask |= 1u << m;
  }
  return 0;
}

static const field_t shadow_fields[] = {
  {"percent", f_percent, offsetof(fl_shadow_conf_t, percent_bp), NULL},
  {"max_in_flight", f_max_in_flight, offsetof(fl_shadow_conf_t, max_in_flight), NULL},
  {"timeout", f_timeout, offsetof(fl_shadow_conf_t, timeout_ms), NULL},
  {"methods", f_methods, offsetof(fl_shadow_conf_t, methods), NULL},
};
static const section_t shadow_section = {"shadow", NULL, shadow_fields, FL_ARRAY_LEN(shadow_fields)};

void fl_conf_shadow_defaults(fl_shadow_conf_t *s) {
  *s = (fl_shadow_conf_t){.on = false, .percent_bp = 10000, .max_in_flight = 64, .timeout_ms = 30000,
                          .methods = FL_SHADOW_METHODS_DEFAULT};
}

int fl_conf_f_shadow(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_shadow_conf_t *s = &((fl_route_t *)slot)->shadow;
  int rc = cy_want_mapping(p, v, "shadow");
  if (rc) return rc;
  s->on = true;
  return cy_walk(p, v, &shadow_section, s);
}
