"""prom.py — e2e support for checking fledge's Prometheus exposition with the real tools:
`promtool check metrics` on a scraped body, and a real `prometheus` server (Debian's package)
that scrapes fledge's admin listener, so tests can ask PromQL what it saw.

    ok, out = promtool_check(body)
    with Prometheus(["127.0.0.1:%d" % admin_port]) as prom:
        prom.wait_for("up", lambda r: r and r[0]["value"][1] == "1")
        rate = prom.wait_for('rate(fledge_requests_total[5s])', lambda r: len(r) > 0)

Only 127.0.0.1 is used; the server's port comes from harness.free_port() (20000-32000)."""
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import free_port  # noqa: E402

PROMETHEUS = os.environ.get("PROMETHEUS", "prometheus")
PROMTOOL = os.environ.get("PROMTOOL", "promtool")
_live = []  # servers not yet stopped; atexit stops them if a test dies without its `with`


def promtool_check(text):
    """Pipe exposition `text` to `promtool check metrics`. Returns (ok, output): ok only when
    promtool exits 0 AND prints nothing (any line it prints is a lint problem or parse error;
    it exits 3 for lint problems and 1 for parse errors, but do not rely on that)."""
    if isinstance(text, str):
        text = text.encode()
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode(errors="replace").strip()
    return p.returncode == 0 and out == "", out


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never an http_proxy


def _http_get(url, timeout=2.0):
    with _opener.open(url, timeout=timeout) as r:
        return r.status, r.read()


class Prometheus:
    """A real Prometheus scraping `targets` (host:port strings) every `interval` under job
    "fledge" at /metrics, and evaluating the alerting rules of `rule_files` as often. Use as a
    context manager; stop() is also safe to call directly."""

    def __init__(self, targets, interval="1s", ready_timeout=10.0, extra_args=(), rule_files=(), port=None):
        self.targets = list(targets)
        self.interval = interval
        self.dir = tempfile.mkdtemp(prefix="fledge-prom-")
        self.port = port or free_port()   # a port given: the gateways were told it before
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(self.dir, "prometheus.log")
        self.config_path = os.path.join(self.dir, "prometheus.yml")
        with open(self.config_path, "w") as f:
            # JSON strings are valid YAML scalars, so json.dumps quotes the targets safely.
            f.write("global:\n"
                    "  scrape_interval: %s\n"
                    "  evaluation_interval: %s\n"
                    "  scrape_timeout: %s\n"
                    "scrape_configs:\n"
                    "  - job_name: fledge\n"
                    "    metrics_path: /metrics\n"
                    "    scheme: http\n"
                    "    static_configs:\n"
                    "      - targets: %s\n"
                    "rule_files: %s\n"
                    % (interval, interval, interval, json.dumps(self.targets),
                       json.dumps([os.path.abspath(p) for p in rule_files])))
        self.args = [
            PROMETHEUS,
            "--config.file=" + self.config_path,
            "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
            "--storage.tsdb.retention.time=1h",
            "--web.listen-address=127.0.0.1:%d" % self.port,
            # Debian points these at /etc/prometheus; keep everything inside the temp dir.
            "--web.console.templates=" + os.path.join(self.dir, "consoles"),
            "--web.console.libraries=" + os.path.join(self.dir, "console_libraries"),
            "--log.level=warn",
        ] + list(extra_args)
        self.proc = None
        self._log = None
        self.ready_seconds = None
        self._start(ready_timeout)

    def _start(self, ready_timeout):
        self._log = open(self.log_path, "wb")
        t0 = time.time()
        try:
            self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.dir)
            _live.append(self)
            deadline = t0 + ready_timeout
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError("prometheus exited with %s before ready:\n%s"
                                       % (self.proc.returncode, self.output()))
                try:
                    if _http_get(self.url + "/-/ready", timeout=0.5)[0] == 200:
                        break
                except (OSError, urllib.error.URLError):
                    pass
                if time.time() > deadline:
                    raise RuntimeError("prometheus not ready after %.1fs:\n%s"
                                       % (ready_timeout, self.output()))
                time.sleep(0.05)
            self.ready_seconds = time.time() - t0
        except BaseException:
            self.stop()
            raise

    def output(self):
        """Prometheus's own log so far (warn level and above)."""
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _api(self, path, params=None):
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            _, body = _http_get(url, timeout=5.0)
        except urllib.error.HTTPError as e:  # 400/422/503 still carry a JSON error body
            body = e.read()
        doc = json.loads(body)
        if doc.get("status") != "success":
            raise RuntimeError("prometheus %s: %s: %s"
                               % (path, doc.get("errorType"), doc.get("error")))
        return doc["data"]

    def query(self, expr):
        """Instant query; returns data.result: a list of {"metric": {...}, "value": [ts, "str"]}
        for vectors (a scalar/string result comes back as its [ts, "str"] pair)."""
        return self._api("/api/v1/query", {"query": expr})["result"]

    def wait_for(self, expr, predicate, timeout=15.0, poll=0.25):
        """Poll query(expr) until predicate(result) is true; returns that result. Raises
        AssertionError with the last result (or the last query error) on timeout."""
        deadline = time.time() + timeout
        last, err = None, None
        while True:
            try:
                last, err = self.query(expr), None
                if predicate(last):
                    return last
            except RuntimeError as e:
                err = e
            if time.time() > deadline:
                raise AssertionError("prometheus: %r not satisfied after %.1fs; last result: %s%s"
                                     % (expr, timeout, json.dumps(last),
                                        "; last error: %s" % err if err else ""))
            time.sleep(poll)

    def rules(self):
        """Every rule of the rule files as /api/v1/rules has it: {"name", "query", "health",
        "state", ...}, all groups together."""
        return [r for g in self._api("/api/v1/rules")["groups"] for r in g["rules"]]

    def alerts(self):
        """data.alerts of /api/v1/alerts: every alert of the rule files that is pending or firing,
        each {"labels": {...}, "annotations": {...}, "state": "pending"|"firing", ...}."""
        return self._api("/api/v1/alerts")["alerts"]

    def active_targets(self):
        """data.activeTargets of /api/v1/targets."""
        return self._api("/api/v1/targets", {"state": "active"})["activeTargets"]

    def targets_up(self):
        """True when there is at least one active target and every one has health "up"."""
        ts = self.active_targets()
        return bool(ts) and all(t.get("health") == "up" for t in ts)

    def wait_targets_up(self, timeout=15.0):
        """Poll until targets_up(); returns the active targets. The first scrape comes ~6 s after
        start: Prometheus 2.42's discovery manager hands targets over only every 5 s."""
        deadline = time.time() + timeout
        while True:
            ts = self.active_targets()
            if ts and all(t.get("health") == "up" for t in ts):
                return ts
            if time.time() > deadline:
                raise AssertionError("prometheus targets not all up after %.1fs: %s" % (timeout, json.dumps(
                    [{k: t.get(k) for k in ("scrapeUrl", "health", "lastError")} for t in ts])))
            time.sleep(0.25)

    def stop(self):
        if self.proc is not None:
            harness.end(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.dir and os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)
        if self in _live:
            _live.remove(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


@atexit.register
def _cleanup():
    for p in list(_live):
        p.stop()
