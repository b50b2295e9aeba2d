/* stats.h — the statistics behind canary analysis: one-sided tests of "canary worse than stable",
 * quantiles and per-window reservoir samples. Pure functions; any thread. */
#ifndef FL_STATS_H
#define FL_STATS_H

#include "common.h"

typedef struct fl_test {
  double statistic;            /* z for proportions; U of the canary for Mann–Whitney */
  double p_value;              /* one-sided: small means the canary is significantly worse */
} fl_test_t;

/* Upper tail of the standard normal distribution, P(Z > z), accurate in the far tail too. */
double fl_stats_normal_sf(double z);

/* One-sided test of a margin, H1: canary rate − stable rate > margin, for a sequential analysis
 * where a side may have few trials or none failed: Agresti–Caffo's adjustment (one success and
 * one failure added to each side) keeps the variance from vanishing, so 0 of 3 against 0 of 30 is
 * not a certainty either way. statistic: z of
 * (canary rate − stable rate − margin); p_value: its upper tail (the canary beyond the margin);
 * the lower tail, fl_stats_normal_sf(−z), is the evidence that it is within. No trials on a
 * side: statistic 0, p 1. */
fl_test_t fl_stats_rate_margin(uint64_t x_canary, uint64_t n_canary, uint64_t x_stable, uint64_t n_stable,
                               double margin);

/* One-sided Mann–Whitney U test, H1: canary values tend to be larger (slower). Normal
 * approximation with tie correction and continuity correction, as SciPy's
 * mannwhitneyu(canary, stable, alternative="greater", method="asymptotic"). The inputs are not
 * modified; scratch memory is allocated. An empty side gives statistic 0, p 1. Returns p = NaN
 * only when out of memory. */
fl_test_t fl_stats_mann_whitney(const double *canary, size_t n_canary, const double *stable, size_t n_stable);

/* ---- drift (issue 5): comparing two distributions, canary against stable or live against a
 * baseline ---- */

/* Two-sample Kolmogorov–Smirnov: statistic D = sup |F_a − F_b| and the two-sided p-value of the
 * limiting Kolmogorov distribution, P(K > D·√(n_a·n_b/(n_a+n_b))) — SciPy's kstwobign.sf of the
 * same argument. It is the large-sample approximation (drift windows hold hundreds of values or
 * more). Inputs unchanged. Empty side: statistic 0, p 1; out of memory: p NaN. */
fl_test_t fl_stats_ks(const double *a, size_t n_a, const double *b, size_t n_b);

/* Population stability index of actual against baseline: `bins` bins cut at the baseline's
 * quantiles (ties merged; a value equal to a cut point goes to the upper bin), half a value added
 * to every bin's count on both sides (Jeffreys' add-1/2), so an empty bin weighs as the
 * half-observation it might have held instead of dividing by a floor picked out of the air;
 * PSI = Σ (a_i − e_i)·ln(a_i / e_i) over those shares. 0 for identical samples; > 0.2 is a large
 * shift. NaN when a side is empty or bins is 0. */
double fl_stats_psi(const double *baseline, size_t n_baseline, const double *actual, size_t n_actual, size_t bins);

/* The PSI with what it takes to judge it: the bins it used (after ties merged) and a chi-square
 * test of homogeneity of the two sides' raw counts in exactly those bins, as
 * fl_stats_chi_square. An empty side or bins 0: psi NaN, bins 0, test statistic 0, p 1; out of
 * memory: psi and p NaN. Inputs unchanged; scratch memory is allocated. */
typedef struct fl_psi {
  double psi;
  size_t bins;                 /* bins used: at most the bins asked for */
  fl_test_t test;              /* p small: the two sides' bin shares differ */
} fl_psi_t;

fl_psi_t fl_stats_psi_test(const double *baseline, size_t n_baseline, const double *actual, size_t n_actual,
                           size_t bins);

/* The PSI expected between two samples of n and m values drawn from one distribution into
 * `bins` bins: (bins − 1)·(1/n + 1/m). PSI ≈ Σ (a_i − e_i)²/p_i for small differences, and each
 * a_i − e_i has variance p_i(1 − p_i)(1/n + 1/m). Infinity when a side is empty. */
double fl_stats_psi_noise(size_t bins, size_t n, size_t m);

/* Values per side before a PSI bound `max` can be told from noise: the smallest n with
 * fl_stats_psi_noise(bins, n, n) ≤ max/2, that is ⌈4·(bins − 1)/max⌉. There the chi-square
 * statistic of a true PSI of `max` has noncentrality ≈ 2·(bins − 1), found significant at
 * α = 0.05 about 86% of the time with 10 bins. 0 when bins ≤ 1 (nothing to tell apart);
 * SIZE_MAX when max is not positive. */
size_t fl_stats_psi_min_n(size_t bins, double max);

/* Chi-square test of homogeneity of two category count vectors (a 2×k table; categories with no
 * count on either side are dropped), as SciPy's chi2_contingency(correction=False):
 * statistic and p-value. Fewer than two categories left, or an empty side: statistic 0, p 1. */
fl_test_t fl_stats_chi_square(const uint64_t *a, const uint64_t *b, size_t k);

/* Jensen–Shannon distance (base 2, in [0, 1]) between two count vectors normalised to
 * distributions, as SciPy's jensenshannon(a, b, base=2). An empty side: NaN. */
double fl_stats_js_distance(const uint64_t *a, const uint64_t *b, size_t k);

/* Quantile q ∈ [0,1] of v with linear interpolation between order statistics (NumPy's default
 * "linear" method). Sorts v in place. NaN when n is 0. */
double fl_stats_quantile(double *v, size_t n, double q);

/* Reservoir sampling (Vitter's algorithm R): a uniform sample of at most `cap` of the values
 * seen (a route's input baseline, baseline.h). One writer. */
typedef struct fl_reservoir {
  double *values;
  size_t cap, n;
  uint64_t seen;
  uint64_t rng;                /* xorshift state, never 0 */
} fl_reservoir_t;

int fl_reservoir_init(fl_reservoir_t *r, size_t cap, uint64_t seed);   /* 0 or FL_ENOMEM */
void fl_reservoir_add(fl_reservoir_t *r, double v);
void fl_reservoir_reset(fl_reservoir_t *r);                            /* a new window */
void fl_reservoir_free(fl_reservoir_t *r);

#endif
