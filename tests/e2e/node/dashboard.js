// dashboard.js URL TOKEN SCREENSHOT SHADOW_SPEC: opens fledge's dashboard in headless Chromium
// (Debian's /usr/bin/chromium, or FLEDGE_CHROMIUM) through playwright-core, as an operator would on
// a 1366×768 laptop: waits until both variants' charts hold points and the shadow panel shows its
// comparison and a disagreeing pair, saves a screenshot, enters the admin token and clicks abort;
// then starts a rollout with SHADOW_SPEC (JSON, one with a shadow phase) from the page and reads
// how the rollout panel shows that phase. Prints what it saw as one JSON line; exits 1 with the
// reason when a step fails.
const fs = require('fs');

const CHROMIUM = process.env.FLEDGE_CHROMIUM || '/usr/bin/chromium';
const METRICS = ['rps', 'error_rate', 'p50', 'p99', 'ttft', 'tokens_per_s'];

function fail(why) {
  console.error('dashboard.js: ' + why);
  process.exit(1);
}

async function main() {
  const [url, token, screenshot, shadowSpec] = process.argv.slice(2);
  let playwright;
  try {
    playwright = require('playwright-core');
  } catch (e) {
    fail('playwright-core is not installed (make build/node/node_modules/openai/package.json runs npm ci): ' + e.message);
  }
  if (!fs.existsSync(CHROMIUM)) fail(CHROMIUM + ' is missing: apt-get install -y chromium (scripts/install-deps.sh)');
  const browser = await playwright.chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const seen = { console: [], requests: [] };
  try {
    const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
    page.on('console', (m) => { if (m.type() === 'error') seen.console.push(m.text()); });
    page.on('request', (r) => seen.requests.push(r.url()));
    await page.goto(url);
    // both variants' rings and charts fill as the page polls: at least 4 points each
    await page.waitForFunction((metrics) => window.fledgeDashboard && metrics.every((m) =>
      window.fledgeDashboard.points(m, 'stable') >= 4 && window.fledgeDashboard.points(m, 'canary') >= 4), METRICS,
    { timeout: 20000 });
    await page.waitForFunction(() => document.body.dataset.rolloutState === 'progressing', null, { timeout: 10000 });
    seen.points = {};
    for (const m of METRICS) {
      seen.points[m] = await page.$eval('#chart-' + m, (c) => ({ stable: Number(c.dataset.pointsStable),
        canary: Number(c.dataset.pointsCanary), stableLine: c.querySelector('polyline.stable').getAttribute('points').length,
        canaryLine: c.querySelector('polyline.canary').getAttribute('points').length }));
    }
    seen.route = await page.evaluate(() => window.fledgeDashboard.route());
    seen.legend = await page.textContent('#traffic h2');
    seen.steps = await page.$$eval('#steps li', (ls) => ls.map((l) => l.textContent));
    seen.stateBefore = await page.textContent('#rollout-state');
    await page.waitForFunction(() => document.querySelectorAll('#events li').length > 0, null, { timeout: 10000 });
    seen.events = await page.$$eval('#events li', (ls) => ls.map((l) => l.dataset.kind));
    await page.waitForFunction(() => document.querySelectorAll('#gauges .gauge').length > 0, null, { timeout: 10000 });
    seen.gauges = await page.$$eval('#gauges .gauge .label span:first-child', (ls) => ls.map((l) => l.textContent));
    seen.quality = await page.$$eval('#quality tr', (rs) => rs.map((r) => r.textContent));
    // the shadow panel: the comparison's measures and the last disagreeing pairs, as text
    await page.waitForFunction(() => !document.getElementById('shadow').hidden &&
      document.querySelectorAll('#shadow-diffs li[data-request-id]').length > 0, null, { timeout: 10000 });
    seen.shadow = await page.evaluate(() => {
      const text = (e, sel) => (e.querySelector(sel) || {}).textContent;
      const meters = {}, counts = {};
      for (const m of document.querySelectorAll('#shadow-meters .meter')) meters[m.dataset.measure] = text(m, '.value');
      for (const c of document.querySelectorAll('#shadow-counts [data-count]')) counts[c.dataset.count] = text(c, 'b');
      return { meters, counts, title: text(document, '#shadow h2'),
        mirroring: text(document, '#shadow-mirroring'),
        diffs: [...document.querySelectorAll('#shadow-diffs li[data-request-id]')].map((li) => ({
          id: li.dataset.requestId, measure: text(li, '.measure'), head: li.firstChild.textContent,
          prompt: text(li, '.text.prompt .said'), stable: text(li, '.text.stable .said'), canary: text(li, '.text.canary .said') })),
        // the prompt holds markup: shown as text, it makes no element
        injected: document.querySelectorAll('x-injected').length,
        beside: (() => { const d = document.getElementById('data').getBoundingClientRect(),
          s = document.getElementById('shadow').getBoundingClientRect();
        return Math.abs(d.top - s.top) < 2 && s.left > d.right - 1; })() };
    });
    seen.fits = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
    await page.screenshot({ path: screenshot, fullPage: false });

    // without a token, abort is refused on the page itself
    await page.click('button[data-action="abort"]');
    seen.withoutToken = await page.textContent('#answer');
    // with it, the rollout ends and the page says so
    await page.fill('#admin-token', token);
    await page.click('button[data-action="abort"]');
    await page.waitForFunction(() => document.getElementById('rollout-state').textContent === 'rolled_back', null,
      { timeout: 10000 });
    seen.answer = await page.textContent('#answer');
    seen.stateAfter = await page.textContent('#rollout-state');
    seen.weightAfter = await page.textContent('#weight');
    seen.stored = await page.evaluate(() => sessionStorage.getItem('fledge.adminToken') !== null);
    await page.waitForFunction(() => [...document.querySelectorAll('#events li')].some((l) => l.dataset.kind === 'rolled_back'),
      null, { timeout: 10000 });
    seen.eventsAfter = await page.$$eval('#events li', (ls) => ls.map((l) => l.textContent));

    // a rollout with a shadow phase, started from the page's origin: the phase shows before the steps
    seen.shadowStart = await page.evaluate(async ([spec, t]) => (await fetch('/api/v1/routes/chat/rollout', {
      method: 'POST', headers: { authorization: 'Bearer ' + t, 'content-type': 'application/json' }, body: spec })).status,
    [shadowSpec, token]);
    await page.waitForFunction(() => document.getElementById('rollout-state').textContent === 'shadow', null,
      { timeout: 10000 });
    seen.shadowPhase = await page.evaluate(() => ({
      steps: [...document.querySelectorAll('#steps li')].map((l) => [l.textContent, l.className]),
      verdict: document.getElementById('verdict').textContent,
      weight: document.getElementById('weight').textContent }));
    await page.waitForFunction(() => [...document.querySelectorAll('#events li')].some((l) => l.dataset.kind === 'shadow_started'),
      null, { timeout: 10000 });
  } catch (e) {
    fail(e.message + '\nseen so far: ' + JSON.stringify(seen));
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(seen));
}

main().catch((e) => fail(e.stack || String(e)));
