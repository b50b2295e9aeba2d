/* stats.c — one-sided tests of "canary worse than stable" (two-proportion z, Mann–Whitney U),
 * drift measures (Kolmogorov–Smirnov, PSI, chi-square, Jensen–Shannon), NumPy-compatible
 * quantiles and per-window reservoir samples, all checked against stored SciPy/NumPy values. */
#include "stats.h"

#include <math.h>
#include <stdlib.h>

#ifndef M_SQRT2
#define M_SQRT2 1.41421356237309504880
#endif

static const fl_test_t NO_EVIDENCE = {.statistic = 0.0, .p_value = 1.0};

double fl_stats_normal_sf(double z) {
  /* erfc keeps full relative precision far into the upper tail, where 1 - Phi(z) would round to 0. */
  return 0.5 * erfc(z / M_SQRT2);
}

/* ---- Mann–Whitney U ---- */

typedef struct {
  double value;
  int is_canary;
} ranked_t;

/* A total order: NaN (a sample that carries no number) ranks above every number and ties with the
 * other NaNs, so qsort always sees a consistent comparison. */
static int cmp_double(double a, double b) {
  bool an = isnan(a), bn = isnan(b);
  if (an || bn) return (int)an - (int)bn;
  return (a > b) - (a < b);
}

static int cmp_ranked(const void *pa, const void *pb) {
  return cmp_double(((const ranked_t *)pa)->value, ((const ranked_t *)pb)->value);
}

static bool same_value(double a, double b) { return cmp_double(a, b) == 0; }

fl_test_t fl_stats_mann_whitney(const double *canary, size_t n_canary, const double *stable, size_t n_stable) {
  if (n_canary == 0 || n_stable == 0) return NO_EVIDENCE;
  size_t total = n_canary + n_stable;
  ranked_t *pool = malloc(total * sizeof *pool);
  if (!pool) return (fl_test_t){.statistic = 0.0, .p_value = NAN};
  for (size_t i = 0; i < n_canary; i++) pool[i] = (ranked_t){canary[i], 1};
  for (size_t i = 0; i < n_stable; i++) pool[n_canary + i] = (ranked_t){stable[i], 0};
  qsort(pool, total, sizeof *pool, cmp_ranked);

  /* Ranks are 1-based; a tie group at sorted positions i..j-1 shares the rank (i+1 + j)/2, so twice
   * the canary rank sum is an exact integer and U comes out exact. */
  uint64_t twice_rank_sum = 0;
  double tie_term = 0.0; /* Σ (t³ − t) over tie groups */
  for (size_t i = 0; i < total;) {
    size_t j = i + 1;
    while (j < total && same_value(pool[j].value, pool[i].value)) j++;
    uint64_t canaries = 0;
    for (size_t k = i; k < j; k++) canaries += (uint64_t)pool[k].is_canary;
    twice_rank_sum += canaries * (uint64_t)(i + 1 + j);
    double t = (double)(j - i);
    tie_term += t * t * t - t;
    i = j;
  }
  free(pool);

  double n1 = (double)n_canary, n2 = (double)n_stable, n = (double)total;
  double u = (double)(twice_rank_sum - (uint64_t)n_canary * (n_canary + 1)) / 2.0;
  double mean = n1 * n2 / 2.0;
  double variance = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
  fl_test_t out = {.statistic = u, .p_value = 1.0};
  /* All values tied: no ordering evidence either way (SciPy reaches the same via z = −inf). */
  if (!(variance > 0.0)) return out;
  /* Continuity correction: always −0.5, since only the upper tail of U is ever used. */
  double z = (u - mean - 0.5) / sqrt(variance);
  out.p_value = fl_stats_normal_sf(z);
  if (out.p_value > 1.0) out.p_value = 1.0;
  return out;
}

/* ---- quantiles ---- */

static int cmp_plain(const void *pa, const void *pb) { return cmp_double(*(const double *)pa, *(const double *)pb); }

/* Where quantile q of n > 0 sorted values lies: between positions lo and hi, gamma of the way. */
typedef struct {
  size_t lo, hi;
  double gamma;
} quantile_at_t;

static quantile_at_t quantile_at(size_t n, double q) {
  double h = (double)(n - 1) * q, lower = floor(h);
  size_t lo = (size_t)lower;
  return (quantile_at_t){.lo = lo, .hi = lo + 1 < n ? lo + 1 : n - 1, .gamma = h - lower};
}

/* The quantile of n > 0 values in sorted order (cmp_plain) at least at the positions it reads:
 * quantile_at(n, q)'s two and the last. */
static double sorted_quantile(const double *v, size_t n, double q) {
  if (isnan(v[n - 1])) return NAN; /* NaNs sort last; NumPy answers NaN for any NaN input */
  quantile_at_t at = quantile_at(n, q);
  double gamma = at.gamma;
  double a = v[at.lo], b = v[at.hi], diff = b - a;
  /* NumPy's _lerp: interpolate from the nearer end, so q = 1 gives exactly the maximum. */
  return gamma >= 0.5 ? b - diff * (1.0 - gamma) : a + diff * gamma;
}

/* ---- order statistics ---- */

static void swap_values(double *v, size_t i, size_t j) {
  double t = v[i];
  v[i] = v[j];
  v[j] = t;
}

static double median_of_three(double a, double b, double c) {
  if (a > b) {
    double t = a;
    a = b;
    b = t;
  }
  return b <= c ? b : a >= c ? a : c;
}

/* Moves the values of v[from..hi) below pivot (or_equal: not above it) to the front, and returns
 * where the others begin. Every value is swapped, moved or not, so that no branch depends on the
 * data: its order is random, and a mispredicted branch per value cost more than the swaps. */
static size_t partition_below(double *v, size_t from, size_t hi, double pivot, bool or_equal) {
  size_t front = from;
  for (size_t i = from; i < hi; i++) {
    double x = v[i];
    v[i] = v[front];
    v[front] = x;
    front += or_equal ? x <= pivot : x < pivot;
  }
  return front;
}

/* A three-way partition of v[lo..hi) around pivot: below it v[lo..*eq), equal to it
 * v[*eq..*above), above it v[*above..hi). Counted values (token lengths) tie a lot, and a tie
 * group lands in place at once instead of being split again and again. No NaNs. */
static void partition3(double *v, size_t lo, size_t hi, double pivot, size_t *eq, size_t *above) {
  *eq = partition_below(v, lo, hi, pivot, false);
  *above = partition_below(v, *eq, hi, pivot, true);
}

/* Moves the numbers (no NaNs) of v[lo..hi) so that each position in at[0..n) (ascending, within
 * [lo, hi)) holds the value a sort would put there: Hoare's selection, for several positions at
 * once. A range still unresolved after depth partitions is sorted outright, so an unlucky run of
 * pivots costs n log n, never n². */
static void select_positions(double *v, size_t lo, size_t hi, const size_t *at, size_t n, unsigned depth) {
  while (n > 0 && hi - lo > 1) {
    if (depth-- == 0) {
      qsort(v + lo, hi - lo, sizeof *v, cmp_plain);
      return;
    }
    size_t eq, above, n_below = 0, n_placed;
    partition3(v, lo, hi, median_of_three(v[lo], v[lo + (hi - lo) / 2], v[hi - 1]), &eq, &above);
    while (n_below < n && at[n_below] < eq) n_below++;
    n_placed = n_below;
    while (n_placed < n && at[n_placed] < above) n_placed++;  /* among the equal: in place */
    select_positions(v, lo, eq, at, n_below, depth);
    at += n_placed;
    n -= n_placed;
    lo = above;
  }
}

/* Twice the bits of n: introselect's budget of partitions before it falls back to sorting. */
static unsigned partition_budget(size_t n) { return 2u * (unsigned)(64 - __builtin_clzll((unsigned long long)n | 1)); }

/* Leaves at each position at[0..n_at) (ascending) of v the value a sort by cmp_plain would put
 * there, or a NaN last when v holds one, sorting nothing else: a PSI reads a few quantiles of its
 * baseline at each look, and sorting it all each time was most of what judging a rollout cost.
 * sorted_quantile, seeing a NaN last, reads no other position, so only numbers need selecting. */
static void place_positions(double *v, size_t n, const size_t *at, size_t n_at) {
  for (size_t i = 0; i < n; i++)
    if (isnan(v[i])) {
      swap_values(v, i, n - 1);
      return;
    }
  select_positions(v, 0, n, at, n_at, partition_budget(n));
}

double fl_stats_quantile(double *v, size_t n, double q) {
  if (n == 0 || !(q >= 0.0 && q <= 1.0)) return NAN;
  qsort(v, n, sizeof *v, cmp_plain);
  return sorted_quantile(v, n, q);
}

/* ---- reservoir ---- */

/* splitmix64 spreads nearby seeds (1, 2, 3…) over the whole state space before xorshift starts. */
static uint64_t mix_seed(uint64_t seed) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return z ? z : 0x9E3779B97F4A7C15ull;
}

/* xorshift64* (xorshift64 state, multiplied output): the plain xorshift low bits are weak, and the
 * slot index is taken modulo the count seen. */
static uint64_t next_random(fl_reservoir_t *r) {
  uint64_t x = r->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  r->rng = x;
  return x * 0x2545F4914F6CDD1Dull;
}

int fl_reservoir_init(fl_reservoir_t *r, size_t cap, uint64_t seed) {
  *r = (fl_reservoir_t){.cap = cap, .rng = mix_seed(seed)};
  if (cap == 0) return 0;
  r->values = malloc(cap * sizeof *r->values);
  if (!r->values) {
    r->cap = 0;
    return FL_ENOMEM;
  }
  return 0;
}

void fl_reservoir_add(fl_reservoir_t *r, double v) {
  r->seen++;
  if (r->n < r->cap) {
    r->values[r->n++] = v;
    return;
  }
  if (r->cap == 0) return;
  /* Keep the seen-th value with probability cap/seen, in a uniformly chosen slot. */
  uint64_t slot = next_random(r) % r->seen;
  if (slot < r->cap) r->values[slot] = v;
}

void fl_reservoir_reset(fl_reservoir_t *r) {
  /* The RNG keeps running so consecutive windows draw different samples. */
  r->n = 0;
  r->seen = 0;
}

void fl_reservoir_free(fl_reservoir_t *r) {
  free(r->values);
  r->values = NULL;
  r->cap = r->n = 0;
  r->seen = 0;
}

/* ---- two proportions ---- */

fl_test_t fl_stats_rate_margin(uint64_t x_canary, uint64_t n_canary, uint64_t x_stable, uint64_t n_stable,
                               double margin) {
  fl_test_t t = {0, 1};
  if (n_canary == 0 || n_stable == 0) return t;
  double nc = (double)n_canary + 2, ns = (double)n_stable + 2;
  double pc = ((double)FL_MIN(x_canary, n_canary) + 1) / nc;
  double ps = ((double)FL_MIN(x_stable, n_stable) + 1) / ns;
  t.statistic = (pc - ps - margin) / sqrt(pc * (1 - pc) / nc + ps * (1 - ps) / ns);
  t.p_value = fl_stats_normal_sf(t.statistic);
  return t;
}

/* ---- drift (issue 5) ---- */

static double clip01(double p) { return p < 0.0 ? 0.0 : (p > 1.0 ? 1.0 : p); }

/* Upper tail of the limiting Kolmogorov distribution, P(K > x). Two textbook series for the
 * same function: the alternating one converges fast for large x, the theta-function form for
 * small x, where the alternating one would need many terms that cancel. */
static double kolmogorov_sf(double x) {
  if (x <= 0) return 1;
  double sum = 0;
  if (x < 1.18) {
    const double pi2_8x2 = M_PI * M_PI / (8 * x * x);
    for (int k = 1; k <= 12; k++) sum += exp(-(double)((2 * k - 1) * (2 * k - 1)) * pi2_8x2);
    return clip01(1 - sqrt(2 * M_PI) / x * sum);
  }
  for (int k = 1; k <= 100; k++) {
    double term = exp(-2.0 * k * k * x * x);
    sum += (k % 2 ? term : -term);
    if (term < 1e-17) break;
  }
  return clip01(2 * sum);
}

fl_test_t fl_stats_ks(const double *a, size_t n_a, const double *b, size_t n_b) {
  if (n_a == 0 || n_b == 0) return NO_EVIDENCE;
  double *sa = malloc((n_a + n_b) * sizeof *sa);
  if (!sa) return (fl_test_t){.statistic = 0.0, .p_value = NAN};
  double *sb = sa + n_a;
  memcpy(sa, a, n_a * sizeof *sa);
  memcpy(sb, b, n_b * sizeof *sb);
  qsort(sa, n_a, sizeof *sa, cmp_plain);
  qsort(sb, n_b, sizeof *sb, cmp_plain);
  /* Both ECDFs are compared just after each distinct value, as i/n_a − j/n_b. */
  double d = 0.0;
  size_t i = 0, j = 0;
  while (i < n_a || j < n_b) {
    double v = (j >= n_b || (i < n_a && cmp_double(sa[i], sb[j]) <= 0)) ? sa[i] : sb[j];
    while (i < n_a && same_value(sa[i], v)) i++;
    while (j < n_b && same_value(sb[j], v)) j++;
    double diff = fabs((double)i / (double)n_a - (double)j / (double)n_b);
    if (diff > d) d = diff;
  }
  free(sa);
  double en = (double)n_a * (double)n_b / (double)(n_a + n_b);   /* the effective sample size */
  return (fl_test_t){.statistic = d, .p_value = kolmogorov_sf(sqrt(en) * d)};
}

/* ---- PSI ---- */

/* The number of cut points ≤ v (ascending cuts): a value equal to a cut point goes to the bin
 * above it, a NaN to the first. Counted rather than searched for: there are few cuts (a PSI has
 * about ten bins), and a count has no branch to mispredict on each of many values. */
static size_t upper_bin(const double *cuts, size_t n_cuts, double v) {
  size_t below = 0;
  for (size_t i = 0; i < n_cuts; i++) below += cuts[i] <= v;
  return below;
}

/* The bins of one PSI: cut points (at the end of a copy of the baseline, in order where the cuts
 * read it) and each side's count per bin. */
typedef struct {
  double *ordered, *cuts;
  size_t n_cuts;
  uint64_t *expected, *observed;   /* n_cuts + 1 each */
} psi_bins_t;

/* Puts in place, in a copy of the baseline, the positions its quantiles i/bins read (and the
 * last, where a NaN would show); at has room for 2·bins − 1 positions. */
static void place_cut_positions(double *v, size_t n, size_t bins, size_t *at) {
  size_t n_at = 0;
  for (size_t i = 1; i < bins; i++) {
    quantile_at_t q = quantile_at(n, (double)i / (double)bins);
    at[n_at++] = q.lo;
    at[n_at++] = q.hi;
  }
  at[n_at++] = n - 1;
  place_positions(v, n, at, n_at);
}

/* Cuts at the baseline's quantiles i/bins, equal ones merged, and both sides counted. */
static int psi_bin(psi_bins_t *pb, const double *baseline, size_t n_baseline, const double *actual, size_t n_actual,
                   size_t bins) {
  double *ordered = malloc((n_baseline + bins) * sizeof *ordered);
  uint64_t *counts = calloc(2 * bins, sizeof *counts);
  size_t *at = malloc((2 * bins - 1) * sizeof *at);
  if (!ordered || !counts || !at) {
    free(ordered);
    free(counts);
    free(at);
    return FL_ENOMEM;
  }
  double *cuts = ordered + n_baseline; /* at most bins − 1 */
  memcpy(ordered, baseline, n_baseline * sizeof *ordered);
  place_cut_positions(ordered, n_baseline, bins, at);      /* once for all the cut points */
  free(at);
  size_t n_cuts = 0;
  for (size_t i = 1; i < bins; i++) {
    double c = sorted_quantile(ordered, n_baseline, (double)i / (double)bins);
    if (n_cuts == 0 || c != cuts[n_cuts - 1]) cuts[n_cuts++] = c; /* ties merged */
  }
  *pb = (psi_bins_t){.ordered = ordered, .cuts = cuts, .n_cuts = n_cuts, .expected = counts, .observed = counts + n_cuts + 1};
  for (size_t i = 0; i < n_baseline; i++) pb->expected[upper_bin(cuts, n_cuts, baseline[i])]++;
  for (size_t i = 0; i < n_actual; i++) pb->observed[upper_bin(cuts, n_cuts, actual[i])]++;
  return 0;
}

static void psi_bins_free(psi_bins_t *pb) {
  free(pb->ordered);
  free(pb->expected);
}

fl_psi_t fl_stats_psi_test(const double *baseline, size_t n_baseline, const double *actual, size_t n_actual,
                           size_t bins) {
  fl_psi_t out = {.psi = NAN, .test = NO_EVIDENCE};
  if (n_baseline == 0 || n_actual == 0 || bins == 0) return out;
  psi_bins_t pb;
  if (psi_bin(&pb, baseline, n_baseline, actual, n_actual, bins) != 0)
    return (fl_psi_t){.psi = NAN, .test = {.statistic = 0.0, .p_value = NAN}};
  out.bins = pb.n_cuts + 1;
  /* add-1/2 on every bin of both sides: the shares stay a distribution and no log sees a 0 */
  double half = 0.5 * (double)out.bins;
  out.psi = 0.0;
  for (size_t b = 0; b < out.bins; b++) {
    double e = ((double)pb.expected[b] + 0.5) / ((double)n_baseline + half);
    double o = ((double)pb.observed[b] + 0.5) / ((double)n_actual + half);
    out.psi += (o - e) * log(o / e);
  }
  out.test = fl_stats_chi_square(pb.observed, pb.expected, out.bins);
  psi_bins_free(&pb);
  return out;
}

double fl_stats_psi(const double *baseline, size_t n_baseline, const double *actual, size_t n_actual, size_t bins) {
  return fl_stats_psi_test(baseline, n_baseline, actual, n_actual, bins).psi;
}

double fl_stats_psi_noise(size_t bins, size_t n, size_t m) {
  if (n == 0 || m == 0) return INFINITY;
  if (bins <= 1) return 0.0;
  return (double)(bins - 1) * (1.0 / (double)n + 1.0 / (double)m);
}

size_t fl_stats_psi_min_n(size_t bins, double max) {
  if (bins <= 1) return 0;
  if (!(max > 0.0)) return SIZE_MAX;
  double n = ceil(4.0 * (double)(bins - 1) / max);
  return n >= (double)SIZE_MAX ? SIZE_MAX : (size_t)n;
}

/* ---- chi-square ---- */

/* Regularized upper incomplete gamma Q(a, x): the series for P below a+1, Lentz's continued
 * fraction for Q above (Numerical Recipes §6.2), each to full double precision. */
static double gamma_q(double a, double x) {
  if (!(x > 0.0)) return 1.0;
  if (isinf(x)) return 0.0;
  double log_prefix = a * log(x) - x - lgamma(a);
  if (x < a + 1.0) {
    double term = 1.0 / a, sum = term;
    for (int k = 1; k < 10000; k++) {
      term *= x / (a + k);
      sum += term;
      if (fabs(term) < fabs(sum) * 1e-17) break;
    }
    return clip01(1.0 - sum * exp(log_prefix));
  }
  const double tiny = 1e-300;
  double b = x + 1.0 - a, c = 1.0 / tiny, d = 1.0 / b, h = d;
  for (int i = 1; i < 10000; i++) {
    double an = -i * (i - a);
    b += 2.0;
    d = an * d + b;
    if (fabs(d) < tiny) d = tiny;
    c = b + an / c;
    if (fabs(c) < tiny) c = tiny;
    d = 1.0 / d;
    double delta = d * c;
    h *= delta;
    if (fabs(delta - 1.0) < 1e-16) break;
  }
  return clip01(exp(log_prefix) * h);
}

fl_test_t fl_stats_chi_square(const uint64_t *a, const uint64_t *b, size_t k) {
  double total_a = 0.0, total_b = 0.0;
  size_t kept = 0;
  for (size_t i = 0; i < k; i++) {
    total_a += (double)a[i];
    total_b += (double)b[i];
    if (a[i] + b[i] > 0) kept++;
  }
  /* An empty side would make expected counts 0 (SciPy raises); it carries no evidence either. */
  if (kept < 2 || total_a == 0.0 || total_b == 0.0) return NO_EVIDENCE;
  double total = total_a + total_b, stat = 0.0;
  for (size_t i = 0; i < k; i++) {
    double col = (double)a[i] + (double)b[i];
    if (col == 0.0) continue;
    double ea = total_a * col / total, eb = total_b * col / total;
    double da = (double)a[i] - ea, db = (double)b[i] - eb;
    stat += da * da / ea + db * db / eb;
  }
  return (fl_test_t){.statistic = stat, .p_value = gamma_q((double)(kept - 1) / 2.0, stat / 2.0)};
}

/* ---- Jensen–Shannon ---- */

double fl_stats_js_distance(const uint64_t *a, const uint64_t *b, size_t k) {
  double total_a = 0.0, total_b = 0.0;
  for (size_t i = 0; i < k; i++) {
    total_a += (double)a[i];
    total_b += (double)b[i];
  }
  if (total_a == 0.0 || total_b == 0.0) return NAN;
  double left = 0.0, right = 0.0;
  for (size_t i = 0; i < k; i++) {
    double p = (double)a[i] / total_a, q = (double)b[i] / total_b, m = (p + q) / 2.0;
    if (p > 0.0) left += p * log(p / m); /* 0·log 0 = 0 */
    if (q > 0.0) right += q * log(q / m);
  }
  double js = (left + right) / log(2.0) / 2.0;
  if (!(js > 0.0)) return 0.0;
  return js >= 1.0 ? 1.0 : sqrt(js);
}
