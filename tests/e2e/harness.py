"""harness.py — black-box test support: start real `fledge serve` and `fledge mock` processes on
free loopback ports, talk real HTTP to them, and leave nothing running afterwards."""
import atexit
import random
import threading
import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLEDGE = os.environ.get("FLEDGE", os.path.join(ROOT, "build", "fledge"))
_procs = []


_handed_out = set()


def free_port():
    """A free port below the kernel's ephemeral range (32768+), so that no outgoing connection
    of another test or process can take it between now and the server binding it."""
    import random
    # run.py's side lane hands out the upper half of the range, the main run the lower half
    low = 26000 if os.environ.get("FLEDGE_E2E_SIDE_LANE") else 20000
    while True:
        port = random.randrange(low, low + 6000)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


def wait_port(port, proc=None, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening on %d" % (proc.returncode, port))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("nothing listening on port %d after %.1fs" % (port, timeout))


def end(p, sig=signal.SIGTERM, timeout=10):
    """Stops a child process: sig, then SIGKILL if it has not exited within timeout; its status."""
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode


class Proc:
    """A child process that is killed when the test (or the interpreter) ends."""

    def __init__(self, args, port, log_name, env=None):
        self.log = tempfile.NamedTemporaryFile(prefix=log_name + "-", suffix=".log", delete=False)
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=dict(os.environ, **(env or {})))
        _procs.append(self)
        self.port = port
        wait_port(port, self.p)

    @property
    def pid(self):
        return self.p.pid

    def send_signal(self, sig):
        self.p.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        return end(self.p, sig, timeout)

    def output(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        if not os.environ.get("FLEDGE_KEEP_LOGS"):      # set it to read what a process said after the run
            os.unlink(self.log.name)


def mock(*opts, model="mock-model"):
    port = free_port()
    return Proc([FLEDGE, "mock", "--listen", "127.0.0.1:%d" % port, "--model", model, *map(str, opts)], port, "mock")


class Gateway(Proc):
    """`fledge serve` on a config given as YAML text; {port} and {admin} are filled in. Unless the
    YAML says who may override (override_from, trusted_cidrs) or overrides=False, the tests on
    loopback may force a variant with x-fledge-variant (fledge's own default is nobody)."""

    def __init__(self, yaml_text, workers=2, env=None, admin_extra="", state_dir=None, overrides=True):
        self.admin = free_port()
        self.admin_extra = admin_extra
        self.overrides = overrides
        # each gateway keeps its own state store, unless a test restarts one on the same state
        self.own_state = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="fledge-state-")
        port = free_port()
        self.conf = tempfile.NamedTemporaryFile("w", prefix="fledge-", suffix=".yaml", delete=False)
        self.write_conf(yaml_text, port, workers)
        super().__init__([FLEDGE, "serve", "-c", self.conf.name], port, "fledge", env)
        wait_port(self.admin, self.p)

    def write_conf(self, yaml_text, port=None, workers=2):
        port = port or self.port
        head = "listen: 127.0.0.1:%d\nworkers: %d\nstate: %s/state.db\nadmin:\n  listen: 127.0.0.1:%d\n%s" % (
            port, workers, self.state_dir, self.admin, self.admin_extra)
        if self.overrides and "override_from" not in yaml_text and "trusted_cidrs" not in yaml_text:
            head += "override_from: [127.0.0.0/8]\n"
        with open(self.conf.name, "w") as f:
            f.write(head + yaml_text)

    def reload(self, yaml_text, workers=2, poll=0.02):
        """Writes the config, sends SIGHUP and waits for the gateway to say it reloaded; a reload
        it refused raises at once."""
        self.write_conf(yaml_text, workers=workers)
        out = self.output()
        before, failed = out.count("reloaded"), out.count("reload of ")
        self.send_signal(signal.SIGHUP)
        deadline = time.time() + 5
        while True:
            out = self.output()
            if out.count("reload of ") > failed:
                raise RuntimeError("reload refused:\n" + out[-3000:])
            if out.count("reloaded") > before:
                return
            if time.time() > deadline:
                raise RuntimeError("reload not acknowledged:\n" + out[-3000:])
            time.sleep(poll)

    def __exit__(self, *exc):
        super().__exit__(*exc)
        os.unlink(self.conf.name)
        if self.own_state:
            import shutil
            shutil.rmtree(self.state_dir, ignore_errors=True)


class RedisServer(Proc):
    """A real redis-server on a free loopback port, in a folder of its own, persisting nothing;
    restart() brings it back on the same port (empty) after a kill."""

    def __init__(self, port=None):
        import shutil
        self.dir = tempfile.mkdtemp(prefix="fledge-redis-")
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self._start(port or free_port())

    def _start(self, port):
        Proc.__init__(self, [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", self.dir, "--protected-mode", "yes",
                             "--enable-debug-command", "local"], port, "redis")   # DEBUG SLEEP: a stall

    def restart(self):
        self.stop(signal.SIGKILL)
        self._start(self.port)

    def command(self, *args, db=0):
        """One command over RESP in database db; the reply decoded (bulk strings as str, arrays as lists)."""
        def encode(cmd):
            return "*%d\r\n" % len(cmd) + "".join("$%d\r\n%s\r\n" % (len(str(a).encode()), a) for a in cmd)
        with socket.create_connection(("127.0.0.1", self.port), timeout=3) as s:
            s.sendall((encode(["SELECT", db]) + encode(args)).encode())
            f = s.makefile("rb")
            _resp(f)
            return _resp(f)

    def __exit__(self, *exc):
        import shutil
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
        if not os.environ.get("FLEDGE_KEEP_LOGS"):
            os.unlink(self.log.name)


def _resp(f):
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:].decode()
    if kind in (b"+", b"-"):
        return rest if kind == b"+" else RuntimeError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        return None if int(rest) < 0 else f.read(int(rest) + 2)[:-2].decode()
    if kind == b"*":
        return None if int(rest) < 0 else [_resp(f) for _ in range(int(rest))]
    raise RuntimeError("unexpected RESP line %r" % line)


def route_yaml(stable, canary=None, weight=20, extra="", user_key="[header:x-user-id, ip]", prefix="/"):
    """A one-route config body for backends given as Proc objects or ports."""
    def addrs(b):
        bs = b if isinstance(b, (list, tuple)) else [b]
        return "[" + ", ".join("127.0.0.1:%d" % (x.port if hasattr(x, "port") else x) for x in bs) + "]"
    text = ("routes:\n  - name: chat\n    match: { path_prefix: %s }\n    user_key: %s\n"
            "    stable: { version: v1, backends: %s }\n" % (prefix, user_key, addrs(stable)))
    if canary is not None:
        text += "    canary: { version: v2, backends: %s, weight: %s }\n" % (addrs(canary), weight)
    return text + extra


def wait_for(what, fn, timeout, every=0.05):
    """Polls fn() until it returns something true (returned), failing after timeout seconds."""
    deadline = time.time() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError("not within %.1fs: %s" % (timeout, what))
        time.sleep(every)


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name.lower())


def request(port, method="GET", path="/v1/models", headers=None, body=None, conn=None, timeout=10):
    """One HTTP request; pass conn (http.client.HTTPConnection) to reuse a keep-alive connection."""
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        headers = dict(headers or {}, **{"content-type": "application/json"})
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    resp = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    if own:
        c.close()
    return resp


def raw(port, data, timeout=3.0, until_close=True):
    """Sends raw bytes; returns everything read until the peer closes or the timeout passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if not until_close and b"\r\n\r\n" in out:
                break
        return out


def status_of(raw_response):
    line = raw_response.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def chat(stream=False, user=None, tokens=None, model="m"):
    body = {"model": model, "messages": [{"role": "user", "content": "hello there model"}], "stream": stream}
    if user is not None:
        body["user"] = user
    if tokens is not None:
        body["max_tokens"] = tokens
    return body


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler for the tests' own small servers: HTTP/1.1, nothing logged."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass


class LocalServer:
    """A threaded HTTP server on a free loopback port (self.port) serving handler_cls until the
    `with` block ends."""

    def serve(self, handler_cls):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class CaptureBackend(LocalServer):
    """A threaded HTTP/1.1 backend that records each request's headers (lower-case) and answers 200
    with `answer` (JSON {"ok":true} unless given)."""

    def __init__(self, answer=b'{"ok":true}', content_type="application/json"):
        owner = self

        class Handler(QuietHandler):

            def do_any(self):
                if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                    body = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        body += self.rfile.read(size)
                        self.rfile.readline()
                        if size == 0:
                            break
                else:
                    n = int(self.headers.get("content-length") or 0)
                    body = self.rfile.read(n) if n else b""
                owner.requests.append({k.lower(): v for k, v in self.headers.items()})
                owner.raw_headers.append([(k.lower(), v) for k, v in self.headers.items()])
                owner.bodies.append(body)
                out = answer
                self.send_response(200)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_any

        self.requests, self.bodies, self.raw_headers = [], [], []
        self.serve(Handler)


class Nginx:
    """Debian's nginx (one worker, in a folder of its own) serving the given text inside its http
    block: each "{port}" there is a free port of its own, in order (self.ports; self.port is the
    first), "{dir}" the folder. Access lines go to {dir}/access.log when a server asks for them."""

    def __init__(self, servers):
        import shutil
        self.dir = tempfile.mkdtemp(prefix="fledge-nginx-")
        self.ports = []
        while "{port}" in servers:
            self.ports.append(free_port())
            servers = servers.replace("{port}", str(self.ports[-1]), 1)
        self.port = self.ports[0]
        conf = os.path.join(self.dir, "nginx.conf")
        temps = "".join("%s_temp_path %s/%s;\n" % (t, self.dir, t) for t in
                        ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        with open(conf, "w") as f:
            f.write("daemon off;\nworker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
                    "events { worker_connections 256; }\nhttp {\n access_log off;\n%s%s}\n"
                    % (self.dir, self.dir, temps, servers.replace("{dir}", self.dir)))
        self.p = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-p", self.dir, "-c", conf],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for port in self.ports:
                wait_port(port, self.p)
        except Exception:
            self.close()
            raise

    def access_lines(self):
        try:
            with open(os.path.join(self.dir, "access.log")) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def close(self):
        import shutil
        end(self.p, timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def report(checks):
    """Prints each (name, ok) check and the closing "N passed, N failed" line; returns the exit
    status (the soak and the GPU check end this way)."""
    for name, ok in checks:
        print("%s  %s" % ("ok   " if ok else "FAIL ", name))
    failed = sum(not ok for _, ok in checks)
    print("%d passed, %d failed" % (len(checks) - failed, failed))
    return 1 if failed else 0


class Load:
    """Client threads sending requests (a chat completion unless told; body may be a function
    making each one) from random users until stopped; as fast as they can, or `rate` requests a
    second in all; `headers` go with every request (x-fledge-variant to force one)."""

    CHAT = '{"model":"m","messages":[{"role":"user","content":"hi"}]}'

    def __init__(self, port, threads=4, path="/v1/chat/completions", body=CHAT, rate=None, headers=None):
        self.port, self.stop, self.sent = port, False, 0
        self.headers = dict(headers or {}, **{"content-type": "application/json"})
        self.gap = threads / rate if rate else 0
        self.path = path
        self.body = body if callable(body) else (lambda: body) if isinstance(body, str) else (lambda: json.dumps(body))
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        due = time.time() + random.random() * self.gap
        while not self.stop:
            if self.gap:
                time.sleep(max(0.0, due - time.time()))
                due += self.gap
            try:
                conn.request("POST", self.path, self.body(),
                             dict(self.headers, **{"x-user-id": "u%d" % random.randrange(10**9)}))
                conn.getresponse().read()
                self.sent += 1
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                time.sleep(0.01)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop = True
        for t in self.threads:
            t.join(10)


@atexit.register
def _cleanup():
    for p in _procs:
        if p.p.poll() is None:
            p.p.kill()
            p.p.wait()
