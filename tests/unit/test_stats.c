/* test_stats.c — the canary statistics as a specification: SciPy/NumPy reference vectors
 * (tests/unit/vectors/stats.txt), the tests' symmetries and edge cases, reservoir uniformity. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "stats.h"

/* The vectors file: argv[1], else $FLEDGE_STATS_VECTORS, else the path from the repository root
 * (tests/run.sh runs every test binary from there). */
static const char *vectors_path = "tests/unit/vectors/stats.txt";

/* p-values must agree with SciPy to 1e-9 absolute or 1e-7 relative (the far tail is tiny). */
static bool close_to(double got, double want) {
  if (got == want) return true;
  double err = fabs(got - want);
  return err <= 1e-9 || err <= 1e-7 * fabs(want);
}

/* ---- a deterministic sample source ---- */

static uint64_t rng_state = 0x243F6A8885A308D3ull;

static double uniform01(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return ((rng_state * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}

static double lognormal_ms(double median_ms, double sigma) {
  double u1 = uniform01(), u2 = uniform01();
  double normal = sqrt(-2.0 * log(u1 + 0x1.0p-60)) * cos(2.0 * M_PI * u2);
  return median_ms * exp(sigma * normal);
}

static double *latencies(size_t n, double median_ms, double sigma) {
  double *v = malloc(n * sizeof *v);
  assert_non_null(v);
  for (size_t i = 0; i < n; i++) v[i] = lognormal_ms(median_ms, sigma);
  return v;
}

/* ---- the vectors file ---- */

typedef struct {
  double *v;
  size_t n, cap;
} vec_t;

static void vec_push(vec_t *a, double x) {
  if (a->n == a->cap) {
    a->cap = a->cap ? a->cap * 2 : 64;
    a->v = realloc(a->v, a->cap * sizeof *a->v);
    assert_non_null(a->v);
  }
  a->v[a->n++] = x;
}

/* Reads numbers from *p up to the next '|' or the end of the line; leaves *p after the '|'. */
static void read_numbers(char **p, vec_t *out) {
  out->n = 0;
  for (;;) {
    while (**p == ' ' || **p == '\t') (*p)++;
    if (**p == '|') {
      (*p)++;
      return;
    }
    if (**p == '\0' || **p == '\n') return;
    char *end;
    double x = strtod(*p, &end);
    assert_true(end != *p);
    vec_push(out, x);
    *p = end;
  }
}

typedef void (*case_fn)(const char *name, double *head, size_t n_head, vec_t *groups, size_t n_groups,
                        unsigned *failures);

/* Calls fn for each line of kind `kind`: the numbers before the first '|' as head, the '|'-separated
 * lists after it as groups. Returns how many cases there were. */
static unsigned for_each_vector(const char *kind, case_fn fn, unsigned *failures) {
  FILE *f = fopen(vectors_path, "r");
  if (!f) fprintf(stderr, "cannot open %s (run from the repository root, or pass the path)\n", vectors_path);
  assert_non_null(f);
  char *line = NULL;
  size_t line_cap = 0;
  unsigned cases = 0;
  size_t kind_len = strlen(kind);
  vec_t head = {0}, groups[2] = {{0}, {0}};
  while (getline(&line, &line_cap, f) > 0) {
    if (strncmp(line, kind, kind_len) != 0 || line[kind_len] != ' ') continue;
    char name[64];
    int used = 0;
    assert_int_equal(sscanf(line + kind_len, " %63s%n", name, &used), 1);
    char *p = line + kind_len + used;
    read_numbers(&p, &head);
    size_t n_groups = 0;
    while (*p && *p != '\n' && n_groups < 2) read_numbers(&p, &groups[n_groups++]);
    fn(name, head.v, head.n, groups, n_groups, failures);
    cases++;
  }
  free(line);
  free(head.v);
  free(groups[0].v);
  free(groups[1].v);
  fclose(f);
  return cases;
}

static void check_mann_whitney(const char *name, double *head, size_t n_head, vec_t *groups, size_t n_groups,
                               unsigned *failures) {
  assert_int_equal(n_head, 2);
  assert_int_equal(n_groups, 2);
  double want_p = head[0], want_u = head[1];
  fl_test_t t = fl_stats_mann_whitney(groups[0].v, groups[0].n, groups[1].v, groups[1].n);
  if (t.statistic != want_u || !close_to(t.p_value, want_p)) {
    fprintf(stderr, "mw %s: U %.17g p %.17g, SciPy U %.17g p %.17g\n", name, t.statistic, t.p_value, want_u, want_p);
    (*failures)++;
  }
}

static void check_margin(const char *name, double *head, size_t n_head, vec_t *groups, size_t n_groups,
                         unsigned *failures) {
  assert_int_equal(n_head, 7);
  double want_p = head[0], want_z = head[1];
  fl_test_t t = fl_stats_rate_margin((uint64_t)head[2], (uint64_t)head[3], (uint64_t)head[4], (uint64_t)head[5],
                                     head[6]);
  if (!close_to(t.statistic, want_z) || !close_to(t.p_value, want_p)) {
    fprintf(stderr, "margin %s: z %.17g p %.17g, reference z %.17g p %.17g\n", name, t.statistic, t.p_value, want_z,
            want_p);
    (*failures)++;
  }
}

static void check_quantile(const char *name, double *head, size_t n_head, vec_t *groups, size_t n_groups,
                           unsigned *failures) {
  assert_int_equal(n_head, 2);
  assert_int_equal(n_groups, 1);
  double want = head[0], q = head[1];
  double got = fl_stats_quantile(groups[0].v, groups[0].n, q);
  /* NumPy's own arithmetic, so only rounding (e.g. a fused multiply-add) may differ */
  if (!(fabs(got - want) <= 1e-12 * fmax(1.0, fabs(want)))) {
    fprintf(stderr, "q %s: %.17g, NumPy %.17g\n", name, got, want);
    (*failures)++;
  }
}

static uint64_t *as_counts(const vec_t *v) {
  uint64_t *c = malloc((v->n ? v->n : 1) * sizeof *c);
  assert_non_null(c);
  for (size_t i = 0; i < v->n; i++) c[i] = (uint64_t)v->v[i];
  return c;
}

/* PSI and JS are sums of the same terms in the same order as NumPy's, so only rounding differs. */
static bool relatively_close(double got, double want) { return fabs(got - want) <= 1e-12 * fabs(want); }

static void check_ks(const char *name, double *head, size_t n_head, vec_t *groups, size_t n_groups,
                     unsigned *failures) {
  assert_int_equal(n_head, 2);
  assert_int_equal(n_groups, 2);
  double want_p = head[0], want_d = head[1];
  fl_test_t t = fl_stats_ks(groups[0].v, groups[0].n, groups[1].v, groups[1].n);
  if (!(fabs(t.statistic - want_d) <= 1e-15) || !close_to(t.p_value, want_p)) {
    fprintf(stderr, "ks %s: D %.17g p %.17g, SciPy D %.17g p %.17g\n", name, t.statistic, t.p_value, want_d, want_p);
    (*failures)++;
  }
}

static void check_psi(const char *name, double *head, size_t n_head, vec_t *groups, size_t n_groups,
                      unsigned *failures) {
  assert_int_equal(n_head, 5);
  assert_int_equal(n_groups, 2);
  double want = head[0], want_p = head[3], want_chi2 = head[4];
  size_t bins = (size_t)head[1], want_used = (size_t)head[2];
  fl_psi_t got = fl_stats_psi_test(groups[0].v, groups[0].n, groups[1].v, groups[1].n, bins);
  if (!relatively_close(got.psi, want) || got.bins != want_used || !close_to(got.test.p_value, want_p) ||
      !close_to(got.test.statistic, want_chi2) ||
      got.psi != fl_stats_psi(groups[0].v, groups[0].n, groups[1].v, groups[1].n, bins)) {
    fprintf(stderr, "psi %s: %.17g in %zu bins, chi2 %.17g p %.17g; NumPy %.17g in %zu, SciPy chi2 %.17g p %.17g\n",
            name, got.psi, got.bins, got.test.statistic, got.test.p_value, want, want_used, want_chi2, want_p);
    (*failures)++;
  }
}

static void check_chi_square(const char *name, double *head, size_t n_head, vec_t *groups, size_t n_groups,
                             unsigned *failures) {
  assert_int_equal(n_head, 2);
  assert_int_equal(n_groups, 2);
  assert_int_equal(groups[0].n, groups[1].n);
  double want_p = head[0], want_stat = head[1];
  uint64_t *a = as_counts(&groups[0]), *b = as_counts(&groups[1]);
  fl_test_t t = fl_stats_chi_square(a, b, groups[0].n);
  if (!close_to(t.statistic, want_stat) || !close_to(t.p_value, want_p)) {
    fprintf(stderr, "chi2 %s: stat %.17g p %.17g, SciPy stat %.17g p %.17g\n", name, t.statistic, t.p_value,
            want_stat, want_p);
    (*failures)++;
  }
  free(a);
  free(b);
}

static void check_js(const char *name, double *head, size_t n_head, vec_t *groups, size_t n_groups,
                     unsigned *failures) {
  assert_int_equal(n_head, 1);
  assert_int_equal(n_groups, 2);
  assert_int_equal(groups[0].n, groups[1].n);
  uint64_t *a = as_counts(&groups[0]), *b = as_counts(&groups[1]);
  double got = fl_stats_js_distance(a, b, groups[0].n);
  if (!relatively_close(got, head[0])) {
    fprintf(stderr, "js %s: %.17g, SciPy %.17g\n", name, got, head[0]);
    (*failures)++;
  }
  free(a);
  free(b);
}

/* ---- against SciPy and NumPy ---- */

static void mann_whitney_matches_scipy_on_every_vector(void **state) {
  unsigned failures = 0;
  unsigned cases = for_each_vector("mw", check_mann_whitney, &failures);
  assert_true(cases >= 20);
  assert_int_equal(failures, 0);
}

static void margin_test_matches_the_reference_on_every_vector(void **state) {
  unsigned failures = 0;
  unsigned cases = for_each_vector("margin", check_margin, &failures);
  assert_true(cases >= 20);
  assert_int_equal(failures, 0);
}

static void quantile_matches_numpy_linear_on_every_vector(void **state) {
  unsigned failures = 0;
  unsigned cases = for_each_vector("q", check_quantile, &failures);
  assert_true(cases >= 10);
  assert_int_equal(failures, 0);
}

static void ks_matches_scipy_on_every_vector(void **state) {
  unsigned failures = 0;
  unsigned cases = for_each_vector("ks", check_ks, &failures);
  assert_true(cases >= 10);
  assert_int_equal(failures, 0);
}

static void psi_matches_the_numpy_reference_on_every_vector(void **state) {
  unsigned failures = 0;
  unsigned cases = for_each_vector("psi", check_psi, &failures);
  assert_true(cases >= 6);
  assert_int_equal(failures, 0);
}

static void chi_square_matches_scipy_on_every_vector(void **state) {
  unsigned failures = 0;
  unsigned cases = for_each_vector("chi2", check_chi_square, &failures);
  assert_true(cases >= 6);
  assert_int_equal(failures, 0);
}

static void js_distance_matches_scipy_on_every_vector(void **state) {
  unsigned failures = 0;
  unsigned cases = for_each_vector("js", check_js, &failures);
  assert_true(cases >= 5);
  assert_int_equal(failures, 0);
}

static void the_normal_tail_is_accurate_far_out(void **state) {
  static const struct {
    double z, sf;
  } scipy[] = {
      {0.0, 0.5},
      {1.959963984540054, 0.025},
      {-1.959963984540054, 0.975},
      {3.0, 0.0013498980316300933},
      {-5.0, 0.9999997133484281},
      {10.0, 7.61985302416047e-24},
      {30.0, 4.906713927147908e-198},
      {37.5, 4.605353009581954e-308},
  };
  for (size_t i = 0; i < FL_ARRAY_LEN(scipy); i++) {
    double got = fl_stats_normal_sf(scipy[i].z);
    assert_true(fabs(got - scipy[i].sf) <= 1e-12 * scipy[i].sf);
  }
  assert_true(fl_stats_normal_sf(INFINITY) == 0.0);
  assert_true(fl_stats_normal_sf(-INFINITY) == 1.0);
}

/* ---- Mann–Whitney properties ---- */

static void identical_samples_give_no_evidence(void **state) {
  static const size_t sizes[] = {5, 30, 400, 5000};
  for (size_t i = 0; i < FL_ARRAY_LEN(sizes); i++) {
    double *v = latencies(sizes[i], 120, 0.5);
    fl_test_t t = fl_stats_mann_whitney(v, sizes[i], v, sizes[i]);
    assert_true(t.statistic == sizes[i] * (double)sizes[i] / 2);
    assert_true(t.p_value >= 0.4 && t.p_value <= 1.0);
    free(v);
  }
}

static void all_values_tied_give_p_one(void **state) {
  double c[7] = {80, 80, 80, 80, 80, 80, 80}, s[3] = {80, 80, 80};
  fl_test_t t = fl_stats_mann_whitney(c, 7, s, 3);
  assert_true(t.statistic == 10.5);
  assert_true(t.p_value == 1.0);
}

static void an_empty_side_gives_no_evidence(void **state) {
  double v[3] = {1, 2, 3};
  fl_test_t t = fl_stats_mann_whitney(v, 0, v, 3);
  assert_true(t.statistic == 0.0 && t.p_value == 1.0);
  t = fl_stats_mann_whitney(v, 3, NULL, 0);
  assert_true(t.statistic == 0.0 && t.p_value == 1.0);
}

/* Swapping the sides turns "canary slower" into "canary faster": the U values add up to n1·n2, and
 * the two p-values add up to 1 plus the normal mass of the one-rank continuity band between them
 * (each side subtracts 0.5), so slightly more than 1, never less. */
static void swapping_the_sides_mirrors_the_test(void **state) {
  static const size_t sizes[][2] = {{12, 9}, {300, 250}, {2000, 2000}};
  for (size_t i = 0; i < FL_ARRAY_LEN(sizes); i++) {
    size_t n1 = sizes[i][0], n2 = sizes[i][1];
    double *c = latencies(n1, 130, 0.5), *s = latencies(n2, 125, 0.5); /* continuous: no ties */
    fl_test_t cs = fl_stats_mann_whitney(c, n1, s, n2);
    fl_test_t sc = fl_stats_mann_whitney(s, n2, c, n1);
    assert_true(cs.statistic + sc.statistic == (double)n1 * n2);
    double sd = sqrt(n1 * (double)n2 * (n1 + n2 + 1) / 12.0);
    double d = cs.statistic - n1 * (double)n2 / 2;
    double band = fl_stats_normal_sf((d - 0.5) / sd) - fl_stats_normal_sf((d + 0.5) / sd);
    assert_true(cs.p_value + sc.p_value >= 1.0);
    assert_true(fabs(cs.p_value + sc.p_value - 1.0 - band) < 1e-12);
    assert_true(band < 1.0 / (sd * sqrt(2 * M_PI)) + 1e-15);
    free(c);
    free(s);
  }
}

static void the_inputs_are_left_untouched(void **state) {
  double c[5] = {5, 1, 4, 2, 3}, s[4] = {9, 0, 7, 6};
  double c0[5], s0[4];
  memcpy(c0, c, sizeof c);
  memcpy(s0, s, sizeof s);
  fl_stats_mann_whitney(c, 5, s, 4);
  assert_memory_equal(c, c0, sizeof c);
  assert_memory_equal(s, s0, sizeof s);
}

/* Ten thousand latencies a side, as the control thread sees once a minute: a 5% slower canary is
 * caught, a 5% faster one clears, and one comparison takes a small fraction of a second. */
static void ten_thousand_a_side_catch_a_five_percent_slowdown_quickly(void **state) {
  size_t n = 10000;
  double *stable = latencies(n, 200, 0.5), *slower = latencies(n, 210, 0.5), *faster = latencies(n, 190, 0.5);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  fl_test_t worse = fl_stats_mann_whitney(slower, n, stable, n);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  fl_test_t better = fl_stats_mann_whitney(faster, n, stable, n);
  double seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  assert_true(worse.p_value < 1e-4); /* expected z ≈ 7 */
  assert_true(better.p_value > 0.9999);
  assert_true(seconds < 0.5);
  free(stable);
  free(slower);
  free(faster);
}

/* ---- two proportions ---- */

static void two_proportion_degenerate_counts_give_no_evidence(void **state) {
  fl_test_t t = fl_stats_rate_margin(0, 1000, 0, 1000, 0);   /* no failures, no difference: */
  assert_true(t.statistic == 0.0 && t.p_value == 0.5);        /* evidence neither way */
  t = fl_stats_rate_margin(50, 50, 9, 9, 0);                  /* both always fail: a small */
  assert_true(t.p_value > 0.1);                               /* side's adjustment is no proof */
  t = fl_stats_rate_margin(0, 0, 5, 100, 0);
  assert_true(t.statistic == 0.0 && t.p_value == 1.0);
  t = fl_stats_rate_margin(5, 100, 0, 0, 0);
  assert_true(t.statistic == 0.0 && t.p_value == 1.0);
  /* 0 of 3 against 0 of 30 is no certainty that the canary is within a point (the Wald variance
   * of 0 would have said p = 1 one way and 0 the other) */
  t = fl_stats_rate_margin(0, 3, 0, 30, 0.01);
  assert_true(fl_stats_normal_sf(-t.statistic) > 0.05);
}

static void more_canary_failures_mean_stronger_evidence(void **state) {
  double previous_p = 2.0;
  for (uint64_t x = 0; x <= 100; x++) {
    fl_test_t t = fl_stats_rate_margin(x, 2000, 20, 2000, 0);
    assert_true(t.p_value < previous_p);
    assert_true(t.p_value >= 0.0 && t.p_value <= 1.0);
    previous_p = t.p_value;
  }
  assert_true(previous_p < 1e-10); /* 5% vs 1% over 2000 requests each */
}

/* Counters are summed without a common snapshot; a failure counted before its request must not
 * produce NaN. It reads as "every request failed". */
static void more_failures_than_trials_count_as_all_failed(void **state) {
  fl_test_t over = fl_stats_rate_margin(12, 10, 1, 100, 0.01);
  fl_test_t all = fl_stats_rate_margin(10, 10, 1, 100, 0.01);
  assert_false(isnan(over.p_value));
  assert_true(over.statistic == all.statistic && over.p_value == all.p_value);
}

/* ---- quantiles ---- */

static void quantile_edges(void **state) {
  assert_true(isnan(fl_stats_quantile(NULL, 0, 0.5)));
  double v[5] = {30, 10, 50, 20, 40};
  assert_true(isnan(fl_stats_quantile(v, 5, 1.5)));
  assert_true(isnan(fl_stats_quantile(v, 5, -0.1)));
  assert_true(isnan(fl_stats_quantile(v, 5, NAN)));
  assert_true(fl_stats_quantile(v, 5, 0.0) == 10);
  assert_true(fl_stats_quantile(v, 5, 1.0) == 50);
  assert_true(fl_stats_quantile(v, 5, 0.5) == 30);
  assert_true(fl_stats_quantile(v, 5, 0.1) == 14);
  const double sorted[5] = {10, 20, 30, 40, 50}; /* sorted in place, as documented */
  assert_memory_equal(v, sorted, sizeof sorted);
  double with_nan[3] = {1, NAN, 2}; /* NumPy: any NaN makes the quantile NaN */
  assert_true(isnan(fl_stats_quantile(with_nan, 3, 0.2)));
}

/* ---- the reservoir ---- */

static void the_reservoir_keeps_everything_until_full_and_never_more(void **state) {
  fl_reservoir_t r;
  assert_int_equal(fl_reservoir_init(&r, 64, 7), 0);
  for (int i = 0; i < 50; i++) fl_reservoir_add(&r, i);
  assert_int_equal(r.n, 50);
  assert_int_equal(r.seen, 50);
  for (int i = 0; i < 50; i++) assert_true(r.values[i] == i);
  for (int i = 50; i < 10000; i++) {
    fl_reservoir_add(&r, i);
    assert_true(r.n <= 64);
  }
  assert_int_equal(r.n, 64);
  assert_int_equal(r.seen, 10000);
  fl_reservoir_reset(&r);
  assert_int_equal(r.n, 0);
  assert_int_equal(r.seen, 0);
  fl_reservoir_add(&r, -1);
  assert_int_equal(r.n, 1);
  assert_true(r.values[0] == -1);
  fl_reservoir_free(&r);
}

static void each_value_is_kept_with_probability_cap_over_seen(void **state) {
  enum { VALUES = 1000, CAP = 100, WINDOWS = 20000 };
  static unsigned kept[VALUES];
  fl_reservoir_t r;
  assert_int_equal(fl_reservoir_init(&r, CAP, 12345), 0);
  for (int w = 0; w < WINDOWS; w++) {
    fl_reservoir_reset(&r);
    for (int i = 0; i < VALUES; i++) fl_reservoir_add(&r, i);
    assert_int_equal(r.n, CAP);
    for (size_t k = 0; k < r.n; k++) kept[(int)r.values[k]]++;
  }
  /* expected WINDOWS·CAP/VALUES = 2000 each, binomial sd ≈ 42: ±10% is about 4.7 sd */
  for (int i = 0; i < VALUES; i++) assert_in_range(kept[i], 1800, 2200);
  /* and no drift along the stream: the values that filled the reservoir, the middle and the last
   * ones are each kept 10% of the time within 1% of that (sd of a tenth's sum ≈ 0.2%) */
  for (int tenth = 0; tenth < 10; tenth++) {
    unsigned sum = 0;
    for (int i = tenth * VALUES / 10; i < (tenth + 1) * VALUES / 10; i++) sum += kept[i];
    assert_in_range(sum, 198000, 202000);
  }
  fl_reservoir_free(&r);
}

/* The smallest windows show an off-by-one at once: keeping 1 of 3, each value is kept a third
 * of the time (sd ≈ 0.27% over 30000 windows; ±2% allowed), the first one included. */
static void tiny_windows_keep_each_value_equally_often(void **state) {
  static const struct {
    int values, cap;
  } shapes[] = {{2, 1}, {3, 1}, {5, 2}};
  enum { WINDOWS = 30000 };
  for (size_t s = 0; s < FL_ARRAY_LEN(shapes); s++) {
    unsigned kept[5] = {0};
    fl_reservoir_t r;
    assert_int_equal(fl_reservoir_init(&r, (size_t)shapes[s].cap, 777 + s), 0);
    for (int w = 0; w < WINDOWS; w++) {
      fl_reservoir_reset(&r);
      for (int i = 0; i < shapes[s].values; i++) fl_reservoir_add(&r, i);
      for (size_t k = 0; k < r.n; k++) kept[(int)r.values[k]]++;
    }
    for (int i = 0; i < shapes[s].values; i++) {
      double share = kept[i] / (double)WINDOWS, want = shapes[s].cap / (double)shapes[s].values;
      assert_true(fabs(share - want) < 0.02);
    }
    fl_reservoir_free(&r);
  }
}

static void the_same_seed_draws_the_same_sample(void **state) {
  fl_reservoir_t a, b, c;
  assert_int_equal(fl_reservoir_init(&a, 16, 99), 0);
  assert_int_equal(fl_reservoir_init(&b, 16, 99), 0);
  assert_int_equal(fl_reservoir_init(&c, 16, 0), 0); /* 0 is a valid seed too */
  assert_true(c.rng != 0);
  for (int i = 0; i < 1000; i++) {
    fl_reservoir_add(&a, i);
    fl_reservoir_add(&b, i);
    fl_reservoir_add(&c, i);
  }
  assert_memory_equal(a.values, b.values, 16 * sizeof(double));
  assert_true(memcmp(a.values, c.values, 16 * sizeof(double)) != 0);
  fl_reservoir_free(&a);
  fl_reservoir_free(&b);
  fl_reservoir_free(&c);
}

/* ---- drift properties ---- */

static void a_sample_against_itself_shows_no_drift(void **state) {
  static const size_t sizes[] = {1, 2, 17, 300, 5000};
  for (size_t i = 0; i < FL_ARRAY_LEN(sizes); i++) {
    double *v = latencies(sizes[i], 120, 0.5);
    fl_test_t t = fl_stats_ks(v, sizes[i], v, sizes[i]);
    assert_true(t.statistic == 0.0 && t.p_value == 1.0);
    assert_true(fl_stats_psi(v, sizes[i], v, sizes[i], 10) == 0.0);
    free(v);
  }
  uint64_t counts[4] = {900, 60, 0, 30};
  assert_true(fl_stats_js_distance(counts, counts, 4) == 0.0);
  uint64_t doubled[4] = {1800, 120, 0, 60}; /* the same shares */
  assert_true(fl_stats_js_distance(counts, doubled, 4) == 0.0);
}

static void js_distance_stays_within_zero_and_one(void **state) {
  for (int trial = 0; trial < 2000; trial++) {
    uint64_t a[5], b[5];
    for (int i = 0; i < 5; i++) {
      a[i] = (uint64_t)(uniform01() * (trial % 3 ? 1000 : 3));
      b[i] = (uint64_t)(uniform01() * (trial % 5 ? 1000 : 3));
    }
    a[trial % 5] += 1;
    b[(trial + 2) % 5] += 1;
    double d = fl_stats_js_distance(a, b, 5);
    assert_true(d >= 0.0 && d <= 1.0);
    assert_true(fabs(d - fl_stats_js_distance(b, a, 5)) <= 1e-15); /* symmetric */
  }
  uint64_t x[3] = {5, 0, 0}, y[3] = {0, 2, 9};
  assert_true(fl_stats_js_distance(x, y, 3) == 1.0); /* disjoint supports */
}

static void ks_moves_with_the_shift(void **state) {
  size_t n = 2000;
  double *stable = latencies(n, 200, 0.5), *same = latencies(n, 200, 0.5), *slower = latencies(n, 230, 0.5);
  fl_test_t t_same = fl_stats_ks(same, n, stable, n), t_slower = fl_stats_ks(slower, n, stable, n);
  assert_true(t_same.p_value > 1e-3);
  assert_true(t_slower.p_value < 1e-6 && t_slower.statistic > t_same.statistic);
  fl_test_t swapped = fl_stats_ks(stable, n, slower, n); /* two-sided: symmetric */
  assert_true(swapped.statistic == t_slower.statistic && swapped.p_value == t_slower.p_value);
  double a[4] = {3, 1, 2, 4}, a0[4];
  memcpy(a0, a, sizeof a);
  fl_stats_ks(a, 4, stable, n);
  assert_memory_equal(a, a0, sizeof a); /* inputs unchanged */
  free(stable);
  free(same);
  free(slower);
}

static void psi_flags_doubled_lengths_and_not_resampling(void **state) {
  size_t n = 3000;
  double *baseline = latencies(n, 300, 0.6), *again = latencies(n, 300, 0.6), *doubled = latencies(n, 300, 0.6);
  for (size_t i = 0; i < n; i++) doubled[i] *= 2;
  assert_true(fl_stats_psi(baseline, n, again, n, 10) < 0.05);
  assert_true(fl_stats_psi(baseline, n, doubled, n, 10) > 0.2);
  free(baseline);
  free(again);
  free(doubled);
}

/* A value equal to a cut point belongs to the bin above it: with the baseline 1..4 in two bins the
 * cut is 2.5 (no tie), but with 1,2,2,3 and two bins it is 2, and the 2s fall in the upper bin.
 * Each bin's count gets half a value before the shares are taken: (count + 1/2) / (4 + 1). */
static void psi_puts_a_value_on_a_cut_point_in_the_upper_bin(void **state) {
  double baseline[4] = {1, 2, 2, 3};
  double low[4] = {1, 1, 1, 1}, on_cut[4] = {2, 2, 2, 2}, high[4] = {3, 3, 3, 3};
  double e_low = 1.5 / 5, e_high = 3.5 / 5;          /* the baseline: one value below, three above */
  double all = 4.5 / 5, none = 0.5 / 5;              /* a side with every value in one bin */
  double want_low = (all - e_low) * log(all / e_low) + (none - e_high) * log(none / e_high);
  double want_high = (none - e_low) * log(none / e_low) + (all - e_high) * log(all / e_high);
  assert_true(fabs(fl_stats_psi(baseline, 4, low, 4, 2) - want_low) < 1e-12);
  assert_true(fabs(fl_stats_psi(baseline, 4, on_cut, 4, 2) - want_high) < 1e-12);
  assert_true(fabs(fl_stats_psi(baseline, 4, high, 4, 2) - want_high) < 1e-12);
  double all_same[5] = {7, 7, 7, 7, 7}; /* every cut point merges into one: two bins */
  fl_psi_t same = fl_stats_psi_test(all_same, 5, all_same, 5, 10);
  assert_true(same.psi == 0.0 && same.bins == 2 && same.test.p_value == 1.0);
}

static void assert_same_psi(fl_psi_t a, fl_psi_t b) {
  assert_true(a.bins == b.bins);
  assert_true(a.psi == b.psi || (isnan(a.psi) && isnan(b.psi)));
  assert_true(a.test.statistic == b.test.statistic && a.test.p_value == b.test.p_value);
}

static int ascending(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The cut points are the baseline's quantiles, found by selecting a few of its values rather than
 * sorting it all: the same values in any order, with many ties (counted token lengths) or none,
 * must cut the same bins. A NaN anywhere makes every cut NaN, as it does in NumPy. */
static void psi_cuts_the_same_bins_whatever_the_order_of_the_baseline(void **state) {
  static const size_t sizes[] = {1, 2, 3, 17, 100, 1001, 20000};
  for (size_t k = 0; k < FL_ARRAY_LEN(sizes); k++) {
    size_t n = sizes[k];
    double *shuffled = latencies(n, 120, 0.5), *sorted = malloc(n * sizeof *sorted), *actual = latencies(50, 130, 0.5);
    assert_non_null(sorted);
    for (size_t i = 0; i < n; i++) shuffled[i] = k % 2 ? round(shuffled[i]) : shuffled[i];   /* ties, or none */
    memcpy(sorted, shuffled, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, ascending);
    for (size_t bins = 1; bins <= 20; bins += 3) {
      fl_psi_t want = fl_stats_psi_test(sorted, n, actual, 50, bins);
      assert_same_psi(fl_stats_psi_test(shuffled, n, actual, 50, bins), want);
      for (size_t i = 0; i < n / 2; i++) {                  /* descending */
        double t = sorted[i];
        sorted[i] = sorted[n - 1 - i];
        sorted[n - 1 - i] = t;
      }
      assert_same_psi(fl_stats_psi_test(sorted, n, actual, 50, bins), want);
      qsort(sorted, n, sizeof *sorted, ascending);
    }
    shuffled[n / 2] = NAN;                                   /* NaN sorts last */
    memcpy(sorted, shuffled, n * sizeof *sorted);
    sorted[n / 2] = sorted[n - 1];
    sorted[n - 1] = NAN;
    assert_same_psi(fl_stats_psi_test(shuffled, n, actual, 50, 10), fl_stats_psi_test(sorted, n, actual, 50, 10));
    free(shuffled);
    free(sorted);
    free(actual);
  }
}

/* The floor of 1e-4 made one empty bin worth 0.5-0.7 of PSI by itself; half a value keeps it
 * near what an empty bin says about a sample of this size. */
static void an_empty_bin_costs_what_half_a_value_would(void **state) {
  double baseline[20], actual[20];
  for (int i = 0; i < 20; i++) baseline[i] = actual[i] = i;      /* 10 bins of 2 values each */
  actual[0] = actual[1] = 2;                                     /* the lowest bin left empty */
  fl_psi_t t = fl_stats_psi_test(baseline, 20, actual, 20, 10);
  double e = 2.5 / 25, empty = 0.5 / 25, full = 4.5 / 25;
  double want = (empty - e) * log(empty / e) + (full - e) * log(full / e);
  assert_true(t.bins == 10);
  assert_true(fabs(t.psi - want) < 1e-12);
  assert_true(t.psi < 0.25);                                     /* the floor gave 0.76 */
  assert_true(t.test.p_value > 0.5);                             /* and two values moved are no evidence */
}

/* (bins − 1)·(1/n + 1/m): what PSI shows between two samples of one distribution. */
static void the_noise_of_psi_shrinks_with_the_sample(void **state) {
  assert_true(fabs(fl_stats_psi_noise(10, 20, 20) - 0.9) < 1e-12);
  assert_true(fabs(fl_stats_psi_noise(10, 100, 300) - 9.0 * (0.01 + 1.0 / 300)) < 1e-12);
  assert_true(fabs(fl_stats_psi_noise(5, 1000, 1000) - 0.008) < 1e-12);
  assert_true(fl_stats_psi_noise(1, 5, 5) == 0.0);               /* one bin: nothing can differ */
  assert_true(isinf(fl_stats_psi_noise(10, 0, 5)) && isinf(fl_stats_psi_noise(10, 5, 0)));
}

/* ⌈4·(bins − 1)/max⌉ values a side: there the noise is half the bound. */
static void the_values_needed_follow_the_bound(void **state) {
  assert_int_equal(fl_stats_psi_min_n(10, 0.2), 180);
  assert_int_equal(fl_stats_psi_min_n(10, 0.1), 360);
  assert_int_equal(fl_stats_psi_min_n(10, 0.25), 144);
  assert_int_equal(fl_stats_psi_min_n(4, 0.2), 60);
  assert_int_equal(fl_stats_psi_min_n(1, 0.2), 0);
  assert_true(fl_stats_psi_min_n(10, 0) == SIZE_MAX && fl_stats_psi_min_n(10, NAN) == SIZE_MAX);
  for (size_t bins = 2; bins <= 10; bins++)
    for (double max = 0.05; max < 1; max += 0.05) {
      size_t n = fl_stats_psi_min_n(bins, max);
      assert_true(fl_stats_psi_noise(bins, n, n) <= max / 2 + 1e-12);
      assert_true(fl_stats_psi_noise(bins, n - 1, n - 1) > max / 2);
    }
}

static void drift_edge_cases(void **state) {
  double v[3] = {1, 2, 3};
  fl_test_t t = fl_stats_ks(v, 0, v, 3);
  assert_true(t.statistic == 0.0 && t.p_value == 1.0);
  t = fl_stats_ks(v, 3, NULL, 0);
  assert_true(t.statistic == 0.0 && t.p_value == 1.0);
  assert_true(isnan(fl_stats_psi(v, 0, v, 3, 10)));
  assert_true(isnan(fl_stats_psi(v, 3, NULL, 0, 10)));
  uint64_t zero[4] = {0, 0, 0, 0}, some[4] = {5, 1, 0, 2}, one[4] = {0, 9, 0, 0}, other[4] = {0, 4, 0, 0};
  assert_true(isnan(fl_stats_js_distance(zero, some, 4)));
  assert_true(isnan(fl_stats_js_distance(some, zero, 4)));
  t = fl_stats_chi_square(one, other, 4); /* one category left */
  assert_true(t.statistic == 0.0 && t.p_value == 1.0);
  t = fl_stats_chi_square(zero, some, 4); /* an empty side */
  assert_true(t.statistic == 0.0 && t.p_value == 1.0);
  t = fl_stats_chi_square(some, some, 4);
  assert_true(fabs(t.statistic) < 1e-12 && fabs(t.p_value - 1.0) < 1e-12);
}

int main(int argc, char **argv) {
  const char *env = getenv("FLEDGE_STATS_VECTORS");
  if (argc > 1) vectors_path = argv[1];
  else if (env && *env) vectors_path = env;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(mann_whitney_matches_scipy_on_every_vector),
      cmocka_unit_test(margin_test_matches_the_reference_on_every_vector),
      cmocka_unit_test(quantile_matches_numpy_linear_on_every_vector),
      cmocka_unit_test(ks_matches_scipy_on_every_vector),
      cmocka_unit_test(psi_matches_the_numpy_reference_on_every_vector),
      cmocka_unit_test(chi_square_matches_scipy_on_every_vector),
      cmocka_unit_test(js_distance_matches_scipy_on_every_vector),
      cmocka_unit_test(the_normal_tail_is_accurate_far_out),
      cmocka_unit_test(identical_samples_give_no_evidence),
      cmocka_unit_test(all_values_tied_give_p_one),
      cmocka_unit_test(an_empty_side_gives_no_evidence),
      cmocka_unit_test(swapping_the_sides_mirrors_the_test),
      cmocka_unit_test(the_inputs_are_left_untouched),
      cmocka_unit_test(ten_thousand_a_side_catch_a_five_percent_slowdown_quickly),
      cmocka_unit_test(two_proportion_degenerate_counts_give_no_evidence),
      cmocka_unit_test(more_canary_failures_mean_stronger_evidence),
      cmocka_unit_test(more_failures_than_trials_count_as_all_failed),
      cmocka_unit_test(quantile_edges),
      cmocka_unit_test(the_reservoir_keeps_everything_until_full_and_never_more),
      cmocka_unit_test(each_value_is_kept_with_probability_cap_over_seen),
      cmocka_unit_test(tiny_windows_keep_each_value_equally_often),
      cmocka_unit_test(the_same_seed_draws_the_same_sample),
      cmocka_unit_test(a_sample_against_itself_shows_no_drift),
      cmocka_unit_test(js_distance_stays_within_zero_and_one),
      cmocka_unit_test(ks_moves_with_the_shift),
      cmocka_unit_test(psi_flags_doubled_lengths_and_not_resampling),
      cmocka_unit_test(psi_puts_a_value_on_a_cut_point_in_the_upper_bin),
      cmocka_unit_test(psi_cuts_the_same_bins_whatever_the_order_of_the_baseline),
      cmocka_unit_test(an_empty_bin_costs_what_half_a_value_would),
      cmocka_unit_test(the_noise_of_psi_shrinks_with_the_sample),
      cmocka_unit_test(the_values_needed_follow_the_bound),
      cmocka_unit_test(drift_edge_cases),
  };
  return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
