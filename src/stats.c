/* stats.c — one-sided tests of "canary worse than stable" (two-proportion z, Mann–Whitney U),
 * NumPy-compatible quantiles and per-window reservoir samples, matched against SciPy's numbers. */
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

/* ---- two proportions ---- */

fl_test_t fl_stats_two_proportion(uint64_t x_canary, uint64_t n_canary, uint64_t x_stable, uint64_t n_stable) {
  if (n_canary == 0 || n_stable == 0) return NO_EVIDENCE;
  /* Failure and request counters are summed from workers without a common snapshot, so a failure
   * can be seen before its request; more failures than trials is read as "all failed". */
  if (x_canary > n_canary) x_canary = n_canary;
  if (x_stable > n_stable) x_stable = n_stable;
  double n1 = (double)n_canary, n2 = (double)n_stable;
  double pooled = ((double)x_canary + (double)x_stable) / (n1 + n2);
  if (pooled <= 0.0 || pooled >= 1.0) return NO_EVIDENCE;
  double diff = (double)x_canary / n1 - (double)x_stable / n2;
  double sd = sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2));
  double z = diff / sd;
  return (fl_test_t){.statistic = z, .p_value = fl_stats_normal_sf(z)};
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

double fl_stats_quantile(double *v, size_t n, double q) {
  if (n == 0 || !(q >= 0.0 && q <= 1.0)) return NAN;
  qsort(v, n, sizeof *v, cmp_plain);
  if (isnan(v[n - 1])) return NAN; /* NaNs sort last; NumPy answers NaN for any NaN input */
  double h = (double)(n - 1) * q;
  double lower = floor(h);
  size_t lo = (size_t)lower;
  size_t hi = lo + 1 < n ? lo + 1 : n - 1;
  double gamma = h - lower;
  double a = v[lo], b = v[hi], diff = b - a;
  /* NumPy's _lerp: interpolate from the nearer end, so q = 1 gives exactly the maximum. */
  return gamma >= 0.5 ? b - diff * (1.0 - gamma) : a + diff * gamma;
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

fl_test_t fl_stats_two_proportion_margin(uint64_t x_canary, uint64_t n_canary, uint64_t x_stable, uint64_t n_stable,
                                         double margin) {
  fl_test_t t = {0, 1};
  if (n_canary == 0 || n_stable == 0) return t;
  double pc = (double)FL_MIN(x_canary, n_canary) / (double)n_canary;
  double ps = (double)FL_MIN(x_stable, n_stable) / (double)n_stable;
  double se = sqrt(pc * (1 - pc) / (double)n_canary + ps * (1 - ps) / (double)n_stable);
  if (se == 0) {
    t.p_value = pc - ps > margin ? 0 : 1;
    return t;
  }
  t.statistic = (pc - ps - margin) / se;
  t.p_value = fl_stats_normal_sf(t.statistic);
  return t;
}

/* ---- drift (issue 5) ---- */

/* Two-sample Kolmogorov–Smirnov. SciPy 1.10's ks_2samp(method="asymp", two-sided) does not use the
 * limiting distribution (kstwobign) but the one-sample two-sided distribution of D_n,
 * kstwo.sf(D, round(m·n/(m+n))), computed by the Simard–L'Ecuyer scheme in scipy/stats/_ksstats.py:
 * exact formulas at the ends, Durbin's matrix (Marsaglia–Tsang–Wang), Pomeranz's recursion,
 * twice the one-sided Smirnov tail where the two tails cannot overlap, and the Pelz–Good expansion.
 * The branches and their cut-offs below are SciPy's, so the p-values agree to rounding. */

#define KS_SCALE 0x1.0p128
#define KS_UNSCALE 0x1.0p-128

static double clip01(double p) { return p < 0.0 ? 0.0 : (p > 1.0 ? 1.0 : p); }

/* One-sided Smirnov tail P(D+_n ≥ x) by the Birnbaum–Tingey sum; its terms are all positive, so
 * summing them in log space loses nothing to cancellation (SciPy sums the same terms in
 * double-double arithmetic). */
static double smirnov_sf(int n, double x) {
  if (!(x > 0.0)) return 1.0;
  if (x >= 1.0) return 0.0;
  double dn = (double)n;
  int last = (int)floor(dn * (1.0 - x));
  if (last > n) last = n;
  double lg_n1 = lgamma(dn + 1.0), log_x = log(x);
  double max_log = -INFINITY, sum = 0.0;
  for (int j = 0; j <= last; j++) {
    double rest = 1.0 - x - j / dn;
    if (rest <= 0.0 && n - j > 0) continue; /* 0^(n-j) */
    double t = lg_n1 - lgamma(j + 1.0) - lgamma(dn - j + 1.0) + log_x + (j - 1) * log(x + j / dn);
    if (n - j > 0) t += (n - j) * log(rest);
    /* running log-sum-exp */
    if (t > max_log) {
      sum = sum * exp(max_log - t) + 1.0;
      max_log = t;
    } else {
      sum += exp(t - max_log);
    }
  }
  if (sum == 0.0) return 0.0;
  return clip01(exp(max_log + log(sum)));
}

/* Durbin's matrix algorithm as Marsaglia, Tsang and Wang: P(D_n < d) = n!/n^n · (H^n)[k-1][k-1]. */
static double kolmogn_dmtw_cdf(int n, double d) {
  if (d >= 1.0) return 1.0;
  double nd = n * d;
  if (nd <= 0.5) return 0.0;
  int k = (int)ceil(nd);
  double h = k - nd;
  int m = 2 * k - 1;
  size_t mm = (size_t)m * (size_t)m;
  double *H = calloc(4 * mm + 2 * (size_t)m, sizeof *H);
  if (!H) return NAN;
  double *P = H + mm, *T = P + mm, *T2 = T + mm, *v = T2 + mm, *w = v + m;
  double fac = 1.0;
  for (int j = 1; j <= m; j++) {
    v[j - 1] = 1.0 - pow(h, j);
    w[j - 1] = fac;
    fac /= j;
    v[j - 1] *= fac;
  }
  double tt = pow(fmax(2 * h - 1.0, 0.0), m) - 2 * pow(h, m);
  v[m - 1] = (1.0 + tt) * fac;
  for (int i = 1; i < m; i++)
    for (int r = i - 1; r < m; r++) H[r * m + i] = w[r - (i - 1)];
  for (int r = 0; r < m; r++) H[r * m] = v[r];
  for (int c = 0; c < m; c++) H[(m - 1) * m + c] = v[m - 1 - c];
  for (int r = 0; r < m; r++) P[r * m + r] = 1.0;
  int expnt = 0, h_expnt = 0;
  for (int nn = n; nn > 0; nn /= 2) {
    if (nn % 2) {
      for (int r = 0; r < m; r++)
        for (int c = 0; c < m; c++) {
          double s = 0.0;
          for (int q = 0; q < m; q++) s += P[r * m + q] * H[q * m + c];
          T[r * m + c] = s;
        }
      memcpy(P, T, mm * sizeof *P);
      expnt += h_expnt;
    }
    for (int r = 0; r < m; r++)
      for (int c = 0; c < m; c++) {
        double s = 0.0;
        for (int q = 0; q < m; q++) s += H[r * m + q] * H[q * m + c];
        T2[r * m + c] = s;
      }
    memcpy(H, T2, mm * sizeof *H);
    h_expnt *= 2;
    if (fabs(H[(k - 1) * m + (k - 1)]) > KS_SCALE) {
      for (size_t q = 0; q < mm; q++) H[q] *= KS_UNSCALE;
      h_expnt += 128;
    }
  }
  double p = P[(k - 1) * m + (k - 1)];
  free(H);
  for (int i = 1; i <= n; i++) {
    p = i * p / n;
    if (fabs(p) < KS_UNSCALE) {
      p *= KS_SCALE;
      expnt -= 128;
    }
  }
  if (expnt != 0) p = ldexp(p, expnt);
  return clip01(p);
}

static void pomeranz_j1j2(int i, int n, int ll, int ceilf, int roundf, int *j1, int *j2) {
  int a, b;
  if (i == 0) {
    a = -ll - ceilf - 1;
    b = ll + ceilf - 1;
  } else {
    int half = (i + 1) / 2, odd = (i + 1) % 2;
    if (odd == 0) {
      if (half == n + 1) {
        a = n - ll - ceilf - 1;
        b = n + ll + ceilf - 1;
      } else {
        a = half - 1 - ll - roundf - 1;
        b = half + ll - 1 + ceilf - 1;
      }
    } else {
      a = half - 1 - ll - 1;
      b = half + ll + roundf - 1;
    }
  }
  *j1 = a + 2 > 0 ? a + 2 : 0;
  *j2 = b < n ? b : n;
}

/* Pomeranz's recursion for P(D_n ≤ x). */
static double kolmogn_pomeranz_cdf(int n, double x) {
  double t = n * x;
  int ll = (int)floor(t);
  double f = t - ll, g = fmin(f, 1.0 - f);
  int ceilf = f > 0 ? 1 : 0, roundf = f > 0.5 ? 1 : 0;
  int npwrs = 2 * (ll + 1);
  double *buf = calloc(5 * (size_t)npwrs, sizeof *buf);
  if (!buf) return NAN;
  double *gp = buf, *g2p = gp + npwrs, *g12p = g2p + npwrs, *V0 = g12p + npwrs, *V1 = V0 + npwrs;
  gp[0] = g2p[0] = g12p[0] = 1.0;
  int expnt = 0;
  double g_n = g / n, g2_n = 2 * g / n, g12_n = (1 - 2 * g) / n;
  for (int m = 1; m < npwrs; m++) {
    gp[m] = gp[m - 1] * g_n / m;
    g2p[m] = g2p[m - 1] * g2_n / m;
    g12p[m] = g12p[m - 1] * g12_n / m;
  }
  V1[0] = 1.0;
  int V0s = 0, V1s = 0, j1, j2;
  pomeranz_j1j2(0, n, ll, ceilf, roundf, &j1, &j2);
  for (int i = 1; i < 2 * n + 2; i++) {
    int k1 = j1;
    double *swap = V0;
    V0 = V1;
    V1 = swap;
    int s = V0s;
    V0s = V1s;
    V1s = s;
    memset(V1, 0, (size_t)npwrs * sizeof *V1);
    pomeranz_j1j2(i, n, ll, ceilf, roundf, &j1, &j2);
    const double *pw = (i == 1 || i == 2 * n + 1) ? gp : (i % 2 ? g2p : g12p);
    int ln2 = j2 - k1 + 1;
    if (ln2 > 0) {
      const double *a = V0 + (k1 - V0s);
      int la = FL_MIN(ln2, npwrs - (k1 - V0s)); /* NumPy's slice stops at the row's end */
      int conv_start = j1 - k1, conv_len = j2 - j1 + 1;
      double vmax = 0.0;
      for (int c = 0; c < conv_len; c++) {
        int idx = conv_start + c; /* full convolution index, 0 .. 2·ln2-2 */
        double sum = 0.0;
        for (int q = 0; q < la; q++) {
          int r = idx - q;
          if (r >= 0 && r < ln2) sum += a[q] * pw[r];
        }
        V1[c] = sum;
        if (sum > vmax) vmax = sum;
      }
      if (vmax > 0 && vmax < KS_UNSCALE) {
        for (int c = 0; c < npwrs; c++) V1[c] *= KS_SCALE;
        expnt -= 128;
      }
      V1s = V0s + j1 - k1;
    }
  }
  double ans = V1[n - V1s];
  free(buf);
  for (int m = 1; m <= n; m++) {
    if (fabs(ans) > KS_SCALE) {
      ans *= KS_UNSCALE;
      expnt += 128;
    }
    ans *= m;
  }
  if (expnt != 0) ans = ldexp(ans, expnt);
  return clip01(ans);
}

/* The Pelz–Good asymptotic expansion of P(D_n ≤ x), for large n and small x. */
static double kolmogn_pelz_good_cdf(int n, double x) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  const double pi2 = M_PI * M_PI, pi4 = pi2 * pi2, pi6 = pi4 * pi2, sqrt2pi = sqrt(2 * M_PI);
  double z = sqrt((double)n) * x;
  double z2 = z * z, z3 = z2 * z, z4 = z2 * z2, z6 = z4 * z2;
  double qlog = -pi2 / 8 / z2;
  if (qlog < -708) return 0.0;
  double q = exp(qlog);
  double k1a = -z2, k1b = pi2 / 4;
  double k2a = 6 * z6 + 2 * z4, k2b = (2 * z4 - 5 * z2) * pi2 / 4, k2c = pi4 * (1 - 2 * z2) / 16;
  double k3d = pi6 * (5 - 30 * z2) / 64, k3c = pi4 * (-60 * z2 + 212 * z4) / 16,
         k3b = pi2 * (135 * z4 - 96 * z6) / 4, k3a = -30 * z6 - 90 * pow(z, 8);
  double K[4] = {0, 0, 0, 0};
  int maxk = (int)ceil(16 * z / M_PI);
  for (int k = maxk; k > 0; k--) {
    double m = 2 * k - 1, m2 = m * m, m4 = m2 * m2, m6 = m4 * m2;
    double qp = pow(q, 8 * k);
    double c[4] = {1.0, k1a + k1b * m2, k2a + k2b * m2 + k2c * m4, k3a + k3b * m2 + k3c * m4 + k3d * m6};
    for (int i = 0; i < 4; i++) K[i] = K[i] * qp + c[i];
  }
  double div[4] = {z, 6 * z4, 72 * pow(z, 7), 6480 * pow(z, 10)};
  for (int i = 0; i < 4; i++) K[i] = K[i] * q * sqrt2pi / div[i];
  q = exp(-pi2 / 2 / z2);
  double sqrt3z = sqrt(3.0) * z, k2extra = 0.0, k3extra = 0.0;
  for (int k = maxk; k > 0; k--) {
    double kk = (double)k * k, qk = pow(q, kk), kpi = M_PI * k;
    k2extra += kk * qk;
    k3extra += (sqrt3z + kpi) * (sqrt3z - kpi) * kk * qk;
  }
  K[2] += k2extra * (pi2 * sqrt2pi / (-36 * z3));
  K[3] += k3extra * (pi2 * sqrt2pi / (216 * z6));
  double sum = 0.0;
  for (int i = 0; i < 4; i++) sum += K[i] / pow((double)n, i / 2.0);
  return sum;
}

/* P(D_n ≥ x) for the one-sample two-sided statistic: SciPy's _kolmogn(n, x, cdf=False). */
static double kolmogn_sf(int n, double x) {
  if (x >= 1.0) return 0.0;
  if (x <= 0.0) return 1.0;
  double t = n * x;
  if (t <= 1.0) { /* Ruben–Gambino */
    if (t <= 0.5) return 1.0;
    double prob;
    if (n <= 140) {
      prob = 1.0;
      for (int i = 1; i <= n; i++) prob *= i * (1.0 / n) * (2 * t - 1);
    } else {
      static const double stirling[] = {-2.955065359477124183e-2, 6.4102564102564102564e-3,
                                        -1.9175269175269175269e-3, 8.4175084175084175084e-4,
                                        -5.952380952380952381e-4, 7.9365079365079365079e-4,
                                        -2.7777777777777777778e-3, 8.3333333333333333333e-2};
      double rn = 1.0 / n, poly = 0.0;
      for (size_t i = 0; i < FL_ARRAY_LEN(stirling); i++) poly = poly * (rn / n) + stirling[i];
      double lf = log((double)n) / 2 - n + log(2 * M_PI) / 2 + rn * poly;
      prob = exp(lf + n * log(2 * t - 1));
    }
    return clip01(1.0 - prob);
  }
  if (t >= n - 1) return clip01(2 * pow(1.0 - x, n));
  if (x >= 0.5) return clip01(2 * smirnov_sf(n, x));
  double nx2 = t * x;
  if (n <= 140) {
    if (nx2 <= 0.754693) return clip01(1.0 - kolmogn_dmtw_cdf(n, x));
    if (nx2 <= 4) return clip01(1.0 - kolmogn_pomeranz_cdf(n, x));
    return clip01(2 * smirnov_sf(n, x));
  }
  if (nx2 >= 370.0) return 0.0;
  if (nx2 >= 2.2) return clip01(2 * smirnov_sf(n, x));
  double cdf;
  if (n <= 100000 && n * pow(x, 1.5) <= 1.4) cdf = kolmogn_dmtw_cdf(n, x);
  else cdf = kolmogn_pelz_good_cdf(n, x);
  return clip01(1.0 - cdf);
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
  /* Both ECDFs are evaluated just after each distinct value (SciPy's searchsorted side='right');
   * the difference is formed exactly as SciPy does, i/n_a − j/n_b, so D matches to the bit. */
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
  double m = (double)FL_MAX(n_a, n_b), n = (double)FL_MIN(n_a, n_b);
  double en = rint(m * n / (m + n)); /* NumPy's round: half to even */
  /* One value a side gives en = 0.5 → 0, where SciPy answers NaN; n = 1 is the meaningful limit. */
  int n_eff = en < 1.0 ? 1 : (en > 1e9 ? 1000000000 : (int)en);
  return (fl_test_t){.statistic = d, .p_value = kolmogn_sf(n_eff, d)};
}

/* ---- PSI ---- */

static size_t upper_bin(const double *cuts, size_t n_cuts, double v) {
  /* the number of cut points ≤ v: a value equal to a cut point goes to the bin above it */
  size_t lo = 0, hi = n_cuts;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (cuts[mid] <= v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

double fl_stats_psi(const double *baseline, size_t n_baseline, const double *actual, size_t n_actual, size_t bins) {
  if (n_baseline == 0 || n_actual == 0 || bins == 0) return NAN;
  double *sorted = malloc((n_baseline + bins) * sizeof *sorted);
  if (!sorted) return NAN;
  double *cuts = sorted + n_baseline; /* at most bins − 1 */
  memcpy(sorted, baseline, n_baseline * sizeof *sorted);
  size_t n_cuts = 0;
  for (size_t i = 1; i < bins; i++) {
    double c = fl_stats_quantile(sorted, n_baseline, (double)i / (double)bins);
    if (n_cuts == 0 || c != cuts[n_cuts - 1]) cuts[n_cuts++] = c; /* ties merged */
  }
  size_t used = n_cuts + 1;
  double *expected = malloc(2 * used * sizeof *expected);
  if (!expected) {
    free(sorted);
    return NAN;
  }
  double *observed = expected + used;
  for (size_t b = 0; b < used; b++) expected[b] = observed[b] = 0.0;
  for (size_t i = 0; i < n_baseline; i++) expected[upper_bin(cuts, n_cuts, baseline[i])] += 1.0;
  for (size_t i = 0; i < n_actual; i++) observed[upper_bin(cuts, n_cuts, actual[i])] += 1.0;
  double psi = 0.0;
  for (size_t b = 0; b < used; b++) {
    double e = fmax(expected[b] / (double)n_baseline, 1e-4);
    double o = fmax(observed[b] / (double)n_actual, 1e-4);
    psi += (o - e) * log(o / e);
  }
  free(expected);
  free(sorted);
  return psi;
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
