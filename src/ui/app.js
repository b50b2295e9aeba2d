// app.js — the dashboard's logic: polls the admin API (/api/v1/stats every second, a route's
// rollout, its events, its shadow diffs and the resources every two), keeps a ring of points per
// series in the page and draws them as SVG; the rollout buttons call the API with the admin token
// (sessionStorage). API data reaches the page as text only (textContent, attributes), never as HTML.
// Plain JS, no library, nothing loaded from elsewhere.
'use strict';

const POLL_MS = 1000;
const SLOW_EVERY = 2;                 // the rollout, events and resources: every second poll
const KEEP_POINTS = 600;              // ten minutes at one point a second
const MIN_SPAN_MS = 30000;            // a chart's time axis, while the page has less history
const VARIANTS = ['stable', 'canary'];
const SHADOW_DIFFS_SHOWN = 3;         // the last disagreeing pairs listed (the API keeps 32)
const SHORT_TEXT = 160;               // characters of a prompt or an answer shown; the rest on hover
const SHADOW_OK = 0.9;                // a share below it is drawn red (a shadow phase's default bound)
const CHARTS = [
  { key: 'rps', title: 'requests/s', unit: '' },
  { key: 'error_rate', title: 'error rate', unit: '%', scale: 100 },
  { key: 'p50', title: 'latency p50', unit: ' ms' },
  { key: 'p99', title: 'latency p99', unit: ' ms' },
  { key: 'ttft', title: 'TTFT p50', unit: ' ms' },
  { key: 'tokens_per_s', title: 'tokens/s', unit: '' },
];

const state = {
  route: null,          // the route shown
  routes: [],           // names, from /api/v1/stats
  series: {},           // route → metric → variant → [{t, v}]
  last: {},             // route → variant → {t, requests, errors, tokens}: the previous totals
  windows: {},          // route → its last windows as the store keeps them, newest first
  events: {},           // route → [event], oldest first
  eventsAfter: {},      // route → the last event id read
  detail: null,         // the shown route's /api/v1/routes/NAME answer
  shadow: false,        // whether the shown route's canary has mirrors (its stats have `shadow`)
  polls: 0,
};

// ---- the API ----

function readToken() { return sessionStorage.getItem('fledge.readToken') || ''; }
function adminToken() { return sessionStorage.getItem('fledge.adminToken') || ''; }

// A read of /api/v1/...: with the read token when one was given (or the admin token, which reads
// too). A 401 shows the read-token form and throws.
async function getJSON(path) {
  const token = readToken() || adminToken();
  const headers = token ? { authorization: 'Bearer ' + token } : {};
  const r = await fetch(path, { headers, cache: 'no-store' });
  if (r.status === 401 || r.status === 403) {
    document.getElementById('read-token-form').hidden = false;
    throw new Error('the admin API wants a read token');
  }
  if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
  return r.json();
}

// A change (rollout action or weight) with the admin token; answers {status, body}.
async function change(method, path, body) {
  const headers = { authorization: 'Bearer ' + adminToken() };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch (e) { /* not JSON: shown as it came */ }
  return { status: r.status, body: parsed };
}

// ---- the rings ----

function ring(route, metric, variant) {
  const r = (state.series[route] ??= {});
  const m = (r[metric] ??= {});
  return (m[variant] ??= []);
}

function push(route, metric, variant, t, v) {
  const points = ring(route, metric, variant);
  points.push({ t, v: Number.isFinite(v) ? v : null });
  if (points.length > KEEP_POINTS) points.splice(0, points.length - KEEP_POINTS);
}

// Points with a value, for the tests and the chart's corner (a null is a gap: no data then).
function countPoints(route, metric, variant) {
  return ring(route, metric, variant).filter((p) => p.v !== null).length;
}

// Rates come from the cumulative totals between two polls (what happened in that second); the
// quantiles from the gateway's one-minute window, the shortest it keeps histograms for.
function record(route, v, t) {
  const totals = v.totals || {};
  const win = (v.windows || {})['1m'] || {};
  const prev = ((state.last[route] ??= {})[v.variant]);
  const now = { t, requests: totals.requests || 0, errors: totals.errors || 0, tokens: totals.completion_tokens || 0 };
  state.last[route][v.variant] = now;
  if (!prev || now.requests < prev.requests || t <= prev.t) return;    // first look, or the series started over
  const dt = (t - prev.t) / 1000, dn = now.requests - prev.requests;
  push(route, 'rps', v.variant, t, dn / dt);
  push(route, 'error_rate', v.variant, t, dn > 0 ? (now.errors - prev.errors) / dn : null);
  push(route, 'tokens_per_s', v.variant, t, (now.tokens - prev.tokens) / dt);
  const q = (h, k) => (h && h.count > 0 ? h[k] : null);
  push(route, 'p50', v.variant, t, q(win.latency_ms, 'p50'));
  push(route, 'p99', v.variant, t, q(win.latency_ms, 'p99'));
  push(route, 'ttft', v.variant, t, q(win.ttft_ms, 'p50'));
}

// ---- drawing ----

const SVG = 'http://www.w3.org/2000/svg';

function el(tag, attrs, ...children) {
  const e = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.setAttribute('class', v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function fmt(v, unit, scale) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  const x = v * (scale || 1);
  const digits = Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2;
  return x.toFixed(digits) + (unit || '');
}

function buildCharts() {
  const box = document.getElementById('charts');
  box.replaceChildren();
  for (const c of CHARTS) {
    const svg = el('svg:svg', { viewBox: '0 0 300 100', preserveAspectRatio: 'none' });
    for (const variant of VARIANTS) svg.append(el('svg:polyline', { class: variant }));
    svg.append(el('svg:text', { class: 'axis max', x: 2, y: 9 }));
    box.append(el('div', { class: 'chart', id: 'chart-' + c.key, 'data-metric': c.key },
      el('div', { class: 'title' }, el('span', { text: c.title }), el('span', { class: 'now' })), svg));
  }
}

// Each series' polyline over the same time axis (the last KEEP_POINTS seconds) and y from zero to
// the largest value shown; a null breaks nothing, it is left out.
function drawChart(c) {
  const box = document.getElementById('chart-' + c.key);
  const now = Date.now();
  let max = 0, oldest = now;
  for (const variant of VARIANTS)
    for (const p of ring(state.route, c.key, variant)) {
      oldest = Math.min(oldest, p.t);
      if (p.v !== null) max = Math.max(max, p.v);
    }
  // the axis grows with the history held, from MIN_SPAN_MS to the whole ring
  const span = Math.min(KEEP_POINTS * POLL_MS, Math.max(MIN_SPAN_MS, now - oldest));
  max = max > 0 ? max * 1.1 : 1;
  const latest = {};
  for (const variant of VARIANTS) {
    const points = ring(state.route, c.key, variant).filter((p) => p.v !== null);
    const coords = points.map((p) => (300 - ((now - p.t) / span) * 300).toFixed(1) + ',' + (100 - (p.v / max) * 96).toFixed(1));
    box.querySelector('polyline.' + variant).setAttribute('points', coords.join(' '));
    box.dataset['points' + variant[0].toUpperCase() + variant.slice(1)] = String(points.length);
    latest[variant] = points.length ? points[points.length - 1].v : null;
  }
  box.querySelector('.max').textContent = fmt(max, c.unit, c.scale);
  box.querySelector('.now').replaceChildren(el('b', { class: 's', text: fmt(latest.stable, c.unit, c.scale) }), ' / ',
    el('b', { class: 'c', text: fmt(latest.canary, c.unit, c.scale) }));
}

function drawRoutes() {
  const nav = document.getElementById('routes');
  const names = nav.dataset.names || '';
  if (names === state.routes.join(',')) {
    for (const b of nav.children) b.classList.toggle('current', b.textContent === state.route);
    return;
  }
  nav.dataset.names = state.routes.join(',');
  nav.replaceChildren(...state.routes.map((name) => {
    const b = el('button', { type: 'button', text: name });
    b.classList.toggle('current', name === state.route);
    b.addEventListener('click', () => { state.route = name; state.detail = null; state.shadow = false; refreshAll(); });
    return b;
  }));
}

function rate(r) { return r === null || r === undefined ? '—' : (r * 100).toFixed(2) + '%'; }

function drawQuality(route) {
  const vs = {};
  for (const v of route.variants || []) vs[v.variant] = v;
  const rows = [
    ['samples read', (d) => d.counts.samples],
    ['empty answers', (d) => d.counts.empty_answers + ' (' + rate(d.rates.empty_answer_rate) + ')'],
    ['NaN values', (d) => d.counts.nan + ' (' + rate(d.rates.nan_rate) + ')'],
    ['Inf / null', (d) => d.counts.inf + ' / ' + d.counts.null],
    ['cut answers', (d) => rate(d.rates.truncated_rate)],
    ['refusals', (d) => rate(d.rates.refusal_rate)],
    ['invalid JSON', (d) => rate(d.rates.invalid_json_rate)],
    ['feedback', (d) => d.feedback ? d.feedback.count + (d.feedback.mean_score === null ? '' : ' · ' + d.feedback.mean_score.toFixed(2)) : '—'],
  ];
  const cell = (v, f) => { try { return v && v.data ? String(f(v.data)) : '—'; } catch (e) { return '—'; } };
  const t = document.getElementById('quality');
  t.replaceChildren(el('tr', {}, el('th', { text: 'data' }), el('th', { text: 'stable ' + ((vs.stable || {}).version || '') }),
    el('th', { text: 'canary ' + ((vs.canary || {}).version || '') })),
  ...rows.map(([name, f]) => el('tr', {}, el('td', { text: name }), el('td', { text: cell(vs.stable, f) }),
    el('td', { text: cell(vs.canary, f) }))));
  const drift = ((vs.canary || {}).data || {}).drift || {};
  const d = document.getElementById('drift');
  const num = (x, digits) => (typeof x === 'number' ? x.toFixed(digits) : '—');
  d.replaceChildren(el('tr', {}, ...['drift vs stable', 'PSI', 'noise', 'n canary', 'n stable', 'p'].map((h) => el('th', { text: h }))),
    ...Object.entries(drift).map(([feature, x]) => el('tr', { 'data-feature': feature }, el('td', { text: feature }),
      el('td', { text: x.psi !== undefined ? num(x.psi, 3) : 'JS ' + num(x.js, 3) }), el('td', { text: num(x.psi_noise, 3) }),
      el('td', { text: String(x.n ?? '—') }), el('td', { text: String(x.n_reference ?? '—') }),
      el('td', { text: num(x.psi_p_value ?? x.chi2_p_value ?? x.ks_p_value, 3) }))));
  if (!Object.keys(drift).length) d.append(el('tr', {}, el('td', { colspan: 6, class: 'muted', text: 'no drift measured yet' })));
  const versions = { stable: (vs.stable || {}).version, canary: (vs.canary || {}).version };
  for (const variant of VARIANTS)
    document.getElementById('legend-' + variant).textContent = variant + (versions[variant] ? ' ' + versions[variant] : '');
}

function drawRollout(r) {
  const ro = r.rollout || { state: 'idle' };
  const badge = document.getElementById('rollout-state');
  badge.textContent = ro.state;
  badge.className = 'badge ' + ro.state;
  document.body.dataset.rolloutState = ro.state;
  document.getElementById('weight').textContent = r.canary_weight + '%';
  document.getElementById('weight-bar').style.width = Math.min(100, r.canary_weight) + '%';
  const steps = (ro.spec && ro.spec.steps) || [];
  const stepping = ro.state === 'progressing' || ro.state === 'paused';
  const weighted = steps.map((w, i) => {
    const li = el('li', { text: w + '%', title: 'step ' + (i + 1) });
    const done = ro.state === 'promoted' || i < ro.step;
    li.className = done ? 'done' : i === ro.step && stepping ? 'current' : '';
    return li;
  });
  document.getElementById('steps').replaceChildren(...[shadowStep(ro), ...weighted].filter(Boolean));
  // before its steps a rollout has judged no window of its own (what the API may still hold is an
  // earlier rollout's)
  const a = ro.state === 'shadow' || ro.state === 'acceptance' ? null : ro.last_analysis;
  const p = document.getElementById('verdict');
  const counts = ro.windows ? ' · windows: ' + ro.windows.pass + ' passed, ' + ro.windows.fail + ' failed, ' +
    ro.windows.inconclusive + ' inconclusive' : '';
  if (a) p.replaceChildren('last window: ', el('b', { class: a.verdict, text: a.verdict }), ' — ' + reasonOf(a) + counts);
  else if (ro.state === 'shadow')
    p.textContent = 'shadow phase: the canary answers mirrored requests only, at weight 0; its pairs are judged after ' +
      duration(ro.spec.shadow.duration) + ' (see Shadow traffic)';
  else p.textContent = ro.state === 'idle' ? 'no rollout on this route' : 'no window judged yet' + counts;
  drawChecks(a ? a.checks || [] : []);
}

// A spec's seconds as it would be written: 90 → "90s", 600 → "10m", 3600 → "1h".
function duration(s) {
  if (typeof s !== 'number' || !(s > 0)) return '—';
  return s % 3600 === 0 ? s / 3600 + 'h' : s % 60 === 0 ? s / 60 + 'm' : s + 's';
}

// The shadow phase, before the first weighted step, when the spec has one: current while in it,
// done once the steps began, and after a rollback failed or not by what the event log says.
function shadowStep(ro) {
  const s = ro.spec && ro.spec.shadow;
  if (!s) return null;
  const li = el('li', { class: 'shadow', text: 'shadow ' + duration(s.duration),
    title: 'shadow phase: mirrored requests only, at weight 0, judged on the pairs of answers' });
  if (ro.state === 'shadow') li.classList.add('current');
  else if (['progressing', 'paused', 'promoted'].includes(ro.state)) li.classList.add('done');
  else if (ro.state === 'rolled_back') {
    const last = (state.events[state.route] || []).filter((e) => e.kind.startsWith('shadow_')).pop();
    if (last && last.kind === 'shadow_passed') li.classList.add('done');
    if (last && last.kind === 'shadow_failed') li.classList.add('failed');
  }
  return li;
}

function drawChecks(checks) {
  const t = document.getElementById('checks');
  const n = (x) => (typeof x === 'number' ? (Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(3)) : '—');
  if (!checks.length) { t.replaceChildren(); return; }
  t.replaceChildren(el('tr', {}, ...['check', 'canary', 'stable', 'n', 'p', 'α', 'verdict'].map((h) => el('th', { text: h }))),
    ...checks.map((c) => el('tr', { title: c.reason || '' }, el('td', { text: c.metric }), el('td', { text: n(c.canary) }),
      el('td', { text: n(c.stable) }), el('td', { text: (c.n_canary ?? '—') + '/' + (c.n_stable ?? '—') }),
      el('td', { text: n(c.p_value) }), el('td', { text: n(c.alpha) }), el('td', { class: c.verdict, text: c.verdict }))));
}

// What a window's analysis says about itself: its reason, else the checks that failed, by name.
function reasonOf(a) {
  if (a.reason) return a.reason;
  const failed = (a.checks || []).filter((c) => c.verdict === 'fail').map((c) => c.metric + (c.reason ? ': ' + c.reason : ''));
  return failed.length ? 'failed: ' + failed.join('; ') : '';
}

function clock(ms) { return new Date(ms).toLocaleTimeString(); }

function eventReason(e) {
  const d = e.detail || {};
  const a = d.analysis;
  let text = d.reason || (a ? reasonOf(a) : '');
  if (d.from !== undefined && d.to !== undefined) text = d.from + '% → ' + d.to + '%' + (text ? ': ' + text : '');
  return text;
}

// A decision of the event log with its evidence: a step's analysis, or the shadow phase's report.
function decisionOf(e) {
  const d = e.detail || {};
  if (d.analysis)
    return { t: e.time_ms, label: 'step ' + ((d.step ?? d.analysis.step ?? 0) + 1), verdict: d.analysis.verdict,
      reason: e.kind + ': ' + (d.reason || reasonOf(d.analysis)) };
  if ((e.kind === 'shadow_passed' || e.kind === 'shadow_failed') && d.report)
    return { t: e.time_ms, label: 'shadow', verdict: e.kind === 'shadow_passed' ? 'pass' : 'fail',
      reason: e.kind + ': ' + (d.reason || d.report.pairs + ' pairs compared, every check held') };
  return null;
}

function drawTimeline() {
  const decisions = (state.events[state.route] || []).map(decisionOf).filter(Boolean);
  const items = [...(state.windows[state.route] || []), ...decisions].sort((x, y) => y.t - x.t);
  document.getElementById('timeline').replaceChildren(...items.slice(0, 100).map((w) =>
    el('li', {}, el('time', { text: clock(w.t) }), (w.label || 'step ' + ((w.step ?? 0) + 1)) + ' ',
      el('b', { class: w.verdict, text: w.verdict }), ' — ' + w.reason)));
}

function drawEvents() {
  const events = (state.events[state.route] || []).slice(-100).reverse();
  document.getElementById('events').replaceChildren(...events.map((e) =>
    el('li', { 'data-kind': e.kind }, el('time', { text: clock(e.time_ms) }), el('span', { class: 'kind', text: e.kind }),
      ' by ' + e.actor + ' ', eventReason(e))));
}

// ---- shadow traffic ----

function pct(x) { return typeof x === 'number' && Number.isFinite(x) ? (x * 100).toFixed(1) + '%' : '—'; }

// A share from 0 to 1 as a bar, red below SHADOW_OK; "—" and an empty bar when nothing measured it.
function meter(key, label, share) {
  const known = typeof share === 'number' && Number.isFinite(share);
  const m = el('div', { class: 'gauge meter' + (known && share < SHADOW_OK ? ' low' : ''), 'data-measure': key },
    el('div', { class: 'label' }, el('span', { text: label }), el('b', { class: 'value', text: pct(share) })),
    el('div', { class: 'bar' }, el('div')));
  m.querySelector('.bar div').style.width = known ? (Math.max(0, Math.min(1, share)) * 100).toFixed(1) + '%' : '0';
  return m;
}

function count(key, label, value, title) {
  return el('span', { 'data-count': key, title: title || '' }, el('span', { class: 'muted', text: label }),
    el('b', { text: String(value ?? '—') }));
}

// The canary's mirrors as /api/v1/stats counts them: the panel shows only where there are some.
function drawShadow(route) {
  const canary = (route.variants || []).find((v) => v.variant === 'canary');
  const sh = canary && canary.shadow;
  state.shadow = !!sh;
  document.getElementById('shadow').hidden = !sh;
  document.getElementById('quality-row').classList.toggle('with-shadow', !!sh);
  if (!sh) return;
  document.getElementById('shadow-version').textContent = 'canary ' + (canary.version || '');
  const c = sh.comparison || {};
  const meters = [meter('agreement', 'agreement', c.agreement), meter('exact_match_rate', 'exact match', c.exact_match_rate),
    meter('status_agreement', 'status agreement', c.status_agreement)];
  if (c.text_similarity !== null && c.text_similarity !== undefined)
    meters.push(meter('text_similarity', 'text similarity', c.text_similarity));
  if (c.class_agreement !== null && c.class_agreement !== undefined)
    meters.push(meter('class_agreement', 'class agreement', c.class_agreement));
  if (c.cosine !== null && c.cosine !== undefined) meters.push(meter('cosine', 'cosine', c.cosine));
  document.getElementById('shadow-meters').replaceChildren(...meters);
  const total = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);
  const which = (o) => Object.entries(o || {}).filter(([, n]) => n > 0).map(([k, n]) => k + ': ' + n).join(', ');
  const diff = (x) => (typeof x !== 'number' ? '—' : Math.abs(x) < 0.005 ? '0 ms' : (x > 0 ? '+' : '') + fmt(x, ' ms'));
  document.getElementById('shadow-counts').replaceChildren(count('requests', 'mirrored', sh.requests),
    count('answered', 'answered', sh.answered), count('in_flight', 'in flight', sh.in_flight),
    count('errors', 'errors', sh.errors, which(sh.error_kinds)), count('dropped', 'dropped', total(sh.dropped), which(sh.dropped)),
    count('pairs', 'pairs', c.pairs),
    count('latency_diff_ms', 'latency canary − stable', diff(c.latency_diff_ms), 'mean over the pairs, each side timed from its own sending'),
    count('ttft_diff_ms', 'TTFT canary − stable', diff(c.ttft_diff_ms)),
    count('error_rates', 'errors stable / canary', rate(c.primary_error_rate) + ' / ' + rate(c.shadow_error_rate)));
}

// Whitespace folded and cut to n characters; an answer the gateway already cut ends in "…" too.
function shorten(text, n, cut) {
  const t = String(text ?? '').replace(/\s+/g, ' ').trim();
  return t.length > n ? t.slice(0, n - 1) + '…' : t + (cut ? '…' : '');
}

function pairText(who, label, text, cut) {
  const shown = shorten(text, SHORT_TEXT, cut);
  return el('div', { class: 'text ' + who, title: String(text ?? '') }, el('span', { class: 'who', text: label }),
    shown ? el('span', { class: 'said', text: shown }) : el('span', { class: 'said muted', text: '(empty)' }));
}

// The measure that says how far a pair's answers are apart, by their kind.
function pairMeasure(x) {
  const num = (v) => (typeof v === 'number' ? v.toFixed(2) : null);
  if (num(x.text_similarity) !== null) return ['similarity', num(x.text_similarity)];
  if (num(x.class_agreement) !== null) return ['class agreement', num(x.class_agreement)];
  if (num(x.cosine) !== null) return ['cosine', num(x.cosine)];
  return ['exact', x.exact ? 'yes' : 'no'];
}

// The diffs endpoint's answer; the route mirrors by its shadow section, or in a rollout's shadow phase.
function drawShadowDiffs(d, inShadowPhase) {
  const on = d.mirroring || inShadowPhase;
  const mirroring = document.getElementById('shadow-mirroring');
  mirroring.textContent = on ? 'mirroring' : 'not mirroring now';
  mirroring.className = 'badge' + (on ? ' mirroring' : '');
  const diffs = (d.diffs || []).slice(0, SHADOW_DIFFS_SHOWN);
  document.getElementById('shadow-diffs').replaceChildren(...diffs.map((x) => {
    const [name, value] = pairMeasure(x);
    return el('li', { 'data-request-id': x.request_id || '' },
      el('div', {}, el('time', { text: clock(x.time_ms) }), 'status ',
        el('span', { class: x.status_agree ? '' : 'bad', text: x.primary_status + ' / ' + x.shadow_status }),
        ' · ' + name + ' ', el('b', { class: 'measure', text: value }),
        typeof x.length_ratio === 'number' ? ' · length ×' + x.length_ratio.toFixed(2) : ''),
      pairText('prompt', 'prompt', x.prompt, false), pairText('stable', 'stable', x.primary, x.primary_truncated),
      pairText('canary', 'canary', x.shadow, x.shadow_truncated));
  }));
  if (!diffs.length) document.getElementById('shadow-diffs').append(el('li', { class: 'muted', text: 'no disagreeing pair yet' }));
}

function gauge(label, fraction, text) {
  const f = Number.isFinite(fraction) ? Math.max(0, Math.min(1, fraction)) : 0;
  const g = el('div', { class: 'gauge' + (f > 0.9 ? ' high' : '') },
    el('div', { class: 'label' }, el('span', { text: label }), el('span', { text })),
    el('div', { class: 'bar' }, el('div')));
  g.querySelector('.bar div').style.width = (f * 100).toFixed(1) + '%';
  return g;
}

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + ' ' + units[i];
}

function drawResources(res) {
  const out = [];
  const host = res.host || {};
  if (host.cpu) out.push(gauge('CPU (' + (host.cpu.cores || []).length + ' cores)', host.cpu.usage, fmt(host.cpu.usage, '%', 100)));
  if (host.memory && host.memory.total) {
    const used = 1 - host.memory.available / host.memory.total;
    out.push(gauge('memory', used, bytes(host.memory.total - host.memory.available) + ' / ' + bytes(host.memory.total)));
  }
  if (host.load && host.cpu) out.push(gauge('load (1 min)', host.load[0] / Math.max(1, (host.cpu.cores || []).length), host.load[0].toFixed(2)));
  for (const [mount, fs] of Object.entries(host.filesystems || {}))
    if (fs.size) out.push(gauge('disk ' + mount, 1 - fs.available / fs.size, bytes(fs.available) + ' free'));
  for (const g of res.gpus || []) {
    const name = 'GPU ' + (g.index ?? '') + ' ';
    if (typeof g.utilization === 'number') out.push(gauge(name + 'busy', g.utilization, fmt(g.utilization, '%', 100)));
    if (g.memory && g.memory.total) out.push(gauge(name + 'memory', g.memory.used / g.memory.total, bytes(g.memory.used)));
  }
  for (const p of res.processes || [])
    if (typeof p.cpu === 'number') out.push(gauge('process ' + (p.name || p.pid), p.cpu, fmt(p.cpu, '%', 100)));
  document.getElementById('gauges').replaceChildren(...out);
}

function redraw() {
  drawRoutes();
  for (const c of CHARTS) drawChart(c);
  drawTimeline();
  drawEvents();
}

// ---- polling ----

async function pollStats() {
  const stats = await getJSON('/api/v1/stats');
  const t = Date.now();
  state.routes = (stats.routes || []).map((r) => r.route);
  if (!state.route || !state.routes.includes(state.route)) state.route = state.routes[0] || null;
  for (const r of stats.routes || []) for (const v of r.variants || []) record(r.route, v, t);
  const shown = (stats.routes || []).find((r) => r.route === state.route);
  if (shown) {
    drawQuality(shown);
    drawShadow(shown);
  }
}

async function pollEvents(route) {
  for (;;) {
    const after = state.eventsAfter[route] || 0;
    const got = await getJSON('/api/v1/events?route=' + encodeURIComponent(route) + '&after=' + after + '&limit=500');
    const list = (state.events[route] ??= []);
    for (const e of got.events) { list.push(e); state.eventsAfter[route] = e.id; }
    if (list.length > 1000) list.splice(0, list.length - 1000);
    if (got.events.length < 500) return;
  }
}

async function pollRoute() {
  if (!state.route) return;
  const route = state.route;
  const base = '/api/v1/routes/' + encodeURIComponent(route);
  const [detail, res, win, , diffs] = await Promise.all([getJSON(base), getJSON('/api/v1/resources'),
    getJSON(base + '/windows?limit=100'), pollEvents(route), state.shadow ? getJSON(base + '/shadow/diffs') : null]);
  if (route !== state.route) return;
  state.windows[route] = (win.windows || []).map((w) =>
    ({ t: w.time_ms, step: w.step, verdict: w.verdict, reason: reasonOf(w.analysis || {}) }));
  state.detail = detail;
  drawRollout(detail);
  if (diffs) drawShadowDiffs(diffs, (detail.rollout || {}).state === 'shadow');
  drawResources(res);
}

function showStatus(text, bad) {
  const s = document.getElementById('status');
  s.textContent = text;
  s.style.color = bad ? '#feb2b2' : '';
}

async function refreshAll() {
  try {
    await pollStats();
    if (state.polls % SLOW_EVERY === 0 || !state.detail) await pollRoute();
    redraw();
    showStatus('updated ' + new Date().toLocaleTimeString(), false);
  } catch (e) {
    showStatus(e.message, true);
  }
}

async function loop() {
  await refreshAll();
  state.polls++;
  setTimeout(loop, POLL_MS);
}

// ---- actions ----

function showAnswer(text, bad) {
  const a = document.getElementById('answer');
  a.textContent = text;
  a.classList.toggle('error', !!bad);
}

async function act(action) {
  const input = document.getElementById('admin-token');
  if (input.value) sessionStorage.setItem('fledge.adminToken', input.value);
  if (!adminToken()) {
    showAnswer('enter the admin token (admin.token_env) first', true);
    input.focus();
    return;
  }
  const route = encodeURIComponent(state.route);
  let r;
  if (action === 'weight') {
    const w = Number(document.getElementById('weight-input').value);
    r = await change('PUT', '/api/v1/routes/' + route + '/weight', { weight: w, source: 'dashboard' });
  } else {
    r = await change('POST', '/api/v1/routes/' + route + '/rollout/' + action);
  }
  const ok = r.status >= 200 && r.status < 300;
  const what = ok ? action + ': ' + r.status + ', rollout ' + ((r.body.rollout || {}).state || 'idle') + ', weight ' +
    r.body.canary_weight + '%' : action + ': ' + r.status + ' ' + ((r.body.error || {}).message || JSON.stringify(r.body));
  showAnswer(what, !ok);
  if (r.status === 401) sessionStorage.removeItem('fledge.adminToken');
  if (ok) { state.detail = r.body; drawRollout(r.body); }
  await pollRoute().catch(() => {});
  redraw();
}

function start() {
  buildCharts();
  document.getElementById('span-minutes').textContent = String(KEEP_POINTS * POLL_MS / 60000);
  document.getElementById('admin-token').value = adminToken();
  for (const b of document.querySelectorAll('#actions button[data-action]'))
    b.addEventListener('click', () => act(b.dataset.action).catch((e) => showAnswer(e.message, true)));
  document.getElementById('read-token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem('fledge.readToken', document.getElementById('read-token').value);
    document.getElementById('read-token-form').hidden = true;
    refreshAll();
  });
  loop();
}

// What the end-to-end test reads instead of pixels: points per series of the shown route.
window.fledgeDashboard = {
  points(metric, variant) { return countPoints(state.route, metric, variant); },
  route() { return state.route; },
  rolloutState() { return document.body.dataset.rolloutState || null; },
};

start();
