"""make soak: mixed traffic through a real gateway for SOAK_SECONDS (default 600) — plain, streamed
and cut-off chat, embeddings and predictions from random users, a canary that fails sometimes and
a backend that refuses, weight changes every 5 s and config reloads every 20 s — then a report:
throughput, answers by class, client-side failures, resident memory after the warm-up (the first
half) and at the end, and descriptors before the load and once idle again. Ends with
"N passed, N failed" over its checks: RSS growth under 5%, descriptors back to their baseline, the
gateway alive and answering, no failure the client did not cause."""
import http.client
import json
import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e"))
from harness import Gateway, free_port, mock, report, request  # noqa: E402

SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
TOKEN = "soak-token-0123456789abcdef"
AUTH = {"authorization": "Bearer " + TOKEN}


def config(stable, canary, faulty, dead, weight):
    return ("timeouts: { idle: 2s, connect: 1s }\n"
            "data: { window: 1m, refresh: 5s, baseline_capture: 1m }\n"
            "routes:\n  - name: chat\n    user_key: [header:x-user-id]\n"
            "    stable: { version: v1, backends: [127.0.0.1:%d] }\n"
            "    canary: { version: v2, backends: [127.0.0.1:%d, 127.0.0.1:%d, 127.0.0.1:%d], weight: %d }\n"
            % (stable.port, canary.port, faulty.port, dead, weight))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Traffic:
    """Client threads with a mix of requests; counts what they saw."""

    KINDS = [("chat", 40), ("stream", 30), ("embed", 10), ("predict", 15), ("cut", 5)]

    def __init__(self, port, threads):
        self.port, self.stop = port, False
        self.lock = threading.Lock()
        self.counts = {"2xx": 0, "4xx": 0, "5xx": 0, "cut_by_client": 0, "transport_errors": 0}
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def count(self, key):
        with self.lock:
            self.counts[key] += 1

    def one(self, conn, kind):
        user = {"x-user-id": "u%d" % random.randrange(100000), "content-type": "application/json"}
        if kind in ("chat", "stream", "cut"):
            body = {"model": "m", "messages": [{"role": "user", "content": "hi " * random.randint(1, 30)}],
                    "stream": kind != "chat"}
            conn.request("POST", "/v1/chat/completions", json.dumps(body), user)
        elif kind == "embed":
            conn.request("POST", "/v1/embeddings", json.dumps({"input": ["a b", "c"]}), user)
        else:
            conn.request("POST", "/v1/models/m:predict", json.dumps({"instances": [[1, 2], [3, 4]]}), user)
        r = conn.getresponse()
        if kind == "cut" and r.status == 200:
            r.read(10)                                   # the user closes the tab mid-stream
            conn.close()
            self.count("cut_by_client")
            return False
        r.read()
        self.count("%dxx" % (r.status // 100))
        return not r.will_close

    def run(self):
        conn = None
        names, weights = zip(*self.KINDS)
        while not self.stop:
            conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                if not self.one(conn, random.choices(names, weights)[0]):
                    conn = None
            except (OSError, http.client.HTTPException):
                self.count("transport_errors")
                conn.close()
                conn = None


def main():
    checks = []
    with mock("--ttft-ms", 5, "--tokens-per-s", 2000, model="m-v1") as v1, \
            mock("--ttft-ms", 5, "--tokens-per-s", 2000, "--error-rate", 0.02, model="m-v2") as v2, \
            mock("--error-rate", 0.5, model="m-faulty") as faulty:
        dead = free_port()
        gw = Gateway(config(v1, v2, faulty, dead, 20), env={"FLEDGE_TOKEN": TOKEN},
                     admin_extra="  token_env: FLEDGE_TOKEN\n")
        with gw:
            time.sleep(1)
            fd_base, rss_start = fds(gw.pid), rss_kib(gw.pid)
            traffic = Traffic(gw.port, threads=6)
            t0 = time.time()
            warm_until, rss_warm, rss_max, reloads, weights = t0 + SECONDS / 2, None, 0, 0, 0
            trend, next_trend = [], t0 + 60
            next_weight, next_reload = t0 + 5, t0 + 20
            while time.time() - t0 < SECONDS:
                time.sleep(1)
                now = time.time()
                rss = rss_kib(gw.pid)
                rss_max = max(rss_max, rss)
                if rss_warm is None and now >= warm_until:
                    rss_warm = rss
                if now >= next_trend:
                    trend.append(rss)
                    next_trend = now + 60
                if now >= next_weight:
                    r = request(gw.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": random.randint(0, 100)})
                    weights += r.status == 200
                    next_weight = now + 5
                if now >= next_reload:
                    gw.reload(config(v1, v2, faulty, dead, random.choice([10, 20, 30])))
                    reloads += 1
                    next_reload = now + 20
            traffic.stop = True
            for t in traffic.threads:
                t.join(15)
            elapsed = time.time() - t0
            rss_end = rss_kib(gw.pid)
            time.sleep(4)                                 # timeouts.idle (2 s) closes pooled connections
            fd_idle = fds(gw.pid)
            alive = gw.p.poll() is None and request(gw.admin, "GET", "/health").status == 200
            c = traffic.counts
            total = c["2xx"] + c["4xx"] + c["5xx"] + c["cut_by_client"]
            growth = (rss_end - rss_warm) / rss_warm * 100 if rss_warm else float("nan")
            print("soak: %ds, %d requests (%.0f/s), 2xx %d, 4xx %d, 5xx %d (canary's injected failures), "
                  "cut by client %d, transport errors %d" % (elapsed, total, total / elapsed, c["2xx"], c["4xx"],
                                                              c["5xx"], c["cut_by_client"], c["transport_errors"]))
            print("soak: %d weight changes, %d reloads" % (weights, reloads))
            print("soak: RSS %d KiB at start, %d KiB after warm-up (%ds), %d KiB at the end, max %d KiB: "
                  "growth after warm-up %.2f%%" % (rss_start, rss_warm or 0, SECONDS / 2, rss_end, rss_max, growth))
            print("soak: descriptors %d before the load, %d once idle" % (fd_base, fd_idle))
            print("soak: RSS each minute (KiB): %s" % " ".join(str(r) for r in trend))
            checks += [("RSS growth after warm-up under 5%", growth < 5),
                       ("descriptors back to their baseline", fd_idle <= fd_base),
                       ("the gateway is alive and answers", alive),
                       ("no transport error the client did not cause", c["transport_errors"] == 0),
                       ("traffic flowed", c["2xx"] > 0)]
    return report(checks)


if __name__ == "__main__":
    sys.exit(main())
