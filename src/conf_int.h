/* conf_int.h — the YAML reading machinery shared by conf.c (what the keys mean) and conf_yaml.c
 * (how nodes, scalars, lists and sections are read, with FILE:LINE:COL errors). Not for other
 * modules. */
#ifndef FL_CONF_INT_H
#define FL_CONF_INT_H

#include "conf.h"

#include <yaml.h>

typedef struct parse_ctx {
  yaml_document_t *doc;
  const char *name;                 /* file name used in messages */
  char *err;
  size_t err_cap;
  fl_conf_t *conf;
  const char *key;                  /* key whose value is being read, for messages */
  bool override_set;                /* override_from (or trusted_cidrs) given */
  yaml_node_t *route_name_node;     /* where the current route's name is, for duplicates */
  yaml_node_t *canary_rule_node;    /* first rule sending to canary; checked once the whole
                                       route is read, because `canary:` may come after `rules:` */
} parse_ctx_t;

typedef int (*field_fn)(parse_ctx_t *p, yaml_node_t *val, void *slot);

typedef struct section section_t;
typedef struct field {
  const char *key;
  field_fn fn;                      /* called with obj + off ... */
  size_t off;
  const section_t *sub;             /* ... or, when set, a nested mapping filling the same obj */
} field_t;

struct section {
  const char *what;                 /* "canary", "timeouts", ... as messages name it */
  const char *noun;                 /* for unknown keys: "key" unless set */
  const field_t *fields;
  size_t n_fields;
};

typedef int (*item_check_fn)(parse_ctx_t *p, yaml_node_t *n, char *value);

/* Errors: "FILE:LINE:COL: message" into p->err; return FL_EINVAL (cy_nomem: FL_ENOMEM). */
int cy_fail_mark(parse_ctx_t *p, yaml_mark_t m, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int cy_fail(parse_ctx_t *p, const yaml_node_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int cy_nomem(parse_ctx_t *p);
/* Adds "FILE:LINE:COL: warning: ..." as a line of conf->warnings: 0, or FL_ENOMEM. */
int cy_warn(parse_ctx_t *p, const yaml_node_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Nodes of p->doc. */
const char *cy_scalar(const yaml_node_t *n);
size_t cy_list_len(const yaml_node_t *n);
yaml_node_t *cy_list_item(parse_ctx_t *p, const yaml_node_t *n, size_t i);
size_t cy_map_len(const yaml_node_t *n);
yaml_node_t *cy_pair_key(parse_ctx_t *p, const yaml_node_t *n, size_t i);
yaml_node_t *cy_pair_value(parse_ctx_t *p, const yaml_node_t *n, size_t i);
yaml_node_t *cy_map_get(parse_ctx_t *p, const yaml_node_t *map, const char *key);
int cy_want_mapping(parse_ctx_t *p, yaml_node_t *n, const char *what);
int cy_want_list(parse_ctx_t *p, yaml_node_t *n, const char *what);
int cy_want_scalar(parse_ctx_t *p, yaml_node_t *n);

/* Mappings: keys checked (unknown and duplicate ones are errors), then each field's function
 * called with obj + its offset, or its sub-section walked over the same obj. */
int cy_check_keys(parse_ctx_t *p, yaml_node_t *map, const char *what);
int cy_walk(parse_ctx_t *p, yaml_node_t *map, const section_t *s, void *obj);

/* Values; p->key names the key being read in messages. */
int cy_dup_into(parse_ctx_t *p, const char *s, char **out);
int cy_get_str(parse_ctx_t *p, yaml_node_t *n, char **out);
void cy_lower(char *s);
bool cy_is_token(const char *s, size_t len);
int cy_get_header_name(parse_ctx_t *p, yaml_node_t *n, char **out);
bool cy_parse_u64(const char *s, uint64_t *out);
int cy_get_weight(parse_ctx_t *p, yaml_node_t *n, uint32_t *bp);
int cy_get_addr(parse_ctx_t *p, yaml_node_t *n, fl_addr_t *out);
int cy_alloc_items(parse_ctx_t *p, size_t n, size_t size, void **out);
int cy_get_cidrs(parse_ctx_t *p, yaml_node_t *n, fl_cidr_t **out, size_t *n_out);
int cy_get_str_list(parse_ctx_t *p, yaml_node_t *n, char ***out, size_t *n_out, item_check_fn check);

/* A route's shadow: mapping (conf_shadow.c); slot is the fl_route_t. */
int fl_conf_f_shadow(parse_ctx_t *p, yaml_node_t *v, void *slot);
/* What a route without one mirrors with in a rollout's shadow phase (and a section starts from). */
void fl_conf_shadow_defaults(fl_shadow_conf_t *s);

/* Field functions for section tables. */
int cy_f_addr(parse_ctx_t *p, yaml_node_t *v, void *slot);
int cy_f_duration(parse_ctx_t *p, yaml_node_t *v, void *slot);
int cy_f_bool(parse_ctx_t *p, yaml_node_t *v, void *slot);
int cy_f_str(parse_ctx_t *p, yaml_node_t *v, void *slot);
int cy_f_header_name(parse_ctx_t *p, yaml_node_t *v, void *slot);
int cy_f_noop(parse_ctx_t *p, yaml_node_t *v, void *slot);
int cy_f_opt_str(parse_ctx_t *p, yaml_node_t *v, void *slot);
int cy_f_model(parse_ctx_t *p, yaml_node_t *v, void *slot);
int cy_f_u32(parse_ctx_t *p, yaml_node_t *v, void *slot);
int cy_f_u64(parse_ctx_t *p, yaml_node_t *v, void *slot);

#endif
