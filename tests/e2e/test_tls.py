"""TLS listeners: certificates made here with the openssl command, clients are curl and openssl
s_client, over real sockets to a real `fledge serve` in front of `fledge mock`."""
import os
import signal
import subprocess
import tempfile
import time

from harness import FLEDGE, Proc, free_port, mock, wait_port

CHAT = '{"model":"m","messages":[{"role":"user","content":"hi"}]}'
STREAM = '{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}'


def make_cert(folder, name, host):
    """A self-signed ECDSA certificate for host (CN and SAN), as NAME.crt and NAME.key."""
    crt, key = os.path.join(folder, name + ".crt"), os.path.join(folder, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=" + host,
                    "-addext", "subjectAltName=DNS:" + host], check=True, capture_output=True)
    return crt, key


class TlsGateway(Proc):
    """fledge serve with a plain listener (self.port) and a TLS one (self.tls_port) whose
    certificates are the given (cert, key) pairs, the first the default."""

    def __init__(self, folder, backend_port, certs):
        self.folder, self.backend_port = folder, backend_port
        self.tls_port, self.admin = free_port(), free_port()
        port = free_port()
        self.conf = os.path.join(folder, "fledge.yaml")
        self.write(port, certs)
        super().__init__([FLEDGE, "serve", "-c", self.conf], port, "fledge")
        wait_port(self.admin, self.p)
        wait_port(self.tls_port, self.p)

    def write(self, port, certs, extra_listener=""):
        items = "".join("        - {cert: %s, key: %s}\n" % (os.path.basename(c), os.path.basename(k)) for c, k in certs)
        with open(self.conf, "w") as f:
            f.write("listen:\n  - 127.0.0.1:%d\n  - address: 127.0.0.1:%d\n    tls:\n      certificates:\n%s%s"
                    "workers: 2\nstate: %s/state.db\nadmin:\n  listen: 127.0.0.1:%d\n"
                    "routes:\n  - name: chat\n    match: { path_prefix: / }\n"
                    "    stable: { version: v1, backends: [127.0.0.1:%d] }\n"
                    % (port, self.tls_port, items, extra_listener, self.folder, self.admin, self.backend_port))

    def sighup(self, certs, extra_listener=""):
        """Rewrites the config and reloads; returns what the gateway said about it."""
        before = self.output()
        self.write(self.port, certs, extra_listener)
        self.send_signal(signal.SIGHUP)
        deadline = time.time() + 5
        while time.time() < deadline:
            new = self.output()[len(before):]
            if "reloaded" in new or "reload of " in new:
                return new
            time.sleep(0.02)
        raise AssertionError("no answer to SIGHUP:\n" + self.output()[-2000:])


def curl(gw, ca, *args, body=CHAT, host="localhost"):
    out = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", ca, "--resolve", "%s:%d:127.0.0.1" % (host, gw.tls_port),
                          "-H", "content-type: application/json", "-d", body, "-w", "\n%{http_code} %{ssl_verify_result}",
                          *args, "https://%s:%d/v1/chat/completions" % (host, gw.tls_port)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text, status = out.stdout.rsplit("\n", 1)
    return text, status


def served_cert(gw, servername):
    """The subject of the certificate the TLS listener presents for servername."""
    out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % gw.tls_port, "-servername", servername],
                         input="", capture_output=True, text=True, timeout=10)
    pem = out.stdout[out.stdout.index("-----BEGIN CERTIFICATE-----"):out.stdout.index("-----END CERTIFICATE-----") + 25]
    return subprocess.run(["openssl", "x509", "-noout", "-subject", "-fingerprint"], input=pem, capture_output=True,
                          text=True, check=True).stdout


def test_curl_speaks_tls_1_3_and_1_2_to_the_tls_listener_streaming_included_and_plain_http_stays_on_its_own():
    with tempfile.TemporaryDirectory() as d, mock() as m:
        crt, key = make_cert(d, "gw", "localhost")
        with TlsGateway(d, m.port, [(crt, key)]) as gw:
            for version in ("1.3", "1.2"):
                text, status = curl(gw, crt, "--tlsv" + version, "--tls-max", version, "-v")
                assert status == "200 0" and '"choices"' in text, (version, status, text)
            text, status = curl(gw, crt, "-N", body=STREAM)
            assert status == "200 0" and text.rstrip().endswith("data: [DONE]"), text[-300:]
            # TLS 1.1 and plain HTTP on the TLS port are refused; the plain listener answers plain HTTP
            old = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % gw.tls_port, "-tls1_1"],
                                 input="", capture_output=True, text=True, timeout=10)
            assert old.returncode != 0 and "Cipher is (NONE)" in old.stdout, old.stdout[-800:]
            plain = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "content-type: application/json",
                                    "-d", CHAT, "http://127.0.0.1:%d/v1/chat/completions" % gw.port],
                                   capture_output=True, text=True, timeout=20)
            assert plain.stdout == "200", plain


def test_sni_picks_the_certificate_whose_name_was_asked_for_and_the_first_one_otherwise():
    with tempfile.TemporaryDirectory() as d, mock() as m:
        first, other = make_cert(d, "first", "localhost"), make_cert(d, "other", "models.example")
        with TlsGateway(d, m.port, [first, other]) as gw:
            assert "CN = models.example" in served_cert(gw, "models.example")
            assert "CN = localhost" in served_cert(gw, "localhost")
            assert "CN = localhost" in served_cert(gw, "unknown.example")
            text, status = curl(gw, other[0], host="models.example")
            assert status == "200 0", (status, text)


def test_sighup_swaps_the_certificate_for_new_handshakes_while_a_stream_in_flight_completes():
    with tempfile.TemporaryDirectory() as d, mock("--ttft-ms", "200", "--tokens-per-s", "8") as m:
        crt, key = make_cert(d, "gw", "localhost")
        with TlsGateway(d, m.port, [(crt, key)]) as gw:
            before = served_cert(gw, "localhost")
            stream = subprocess.Popen(["curl", "-sS", "-N", "--max-time", "20", "--cacert", crt, "--resolve",
                                       "localhost:%d:127.0.0.1" % gw.tls_port, "-H", "content-type: application/json",
                                       "-d", STREAM, "https://localhost:%d/v1/chat/completions" % gw.tls_port],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(0.5)                           # the stream is under way (16 tokens at 8/s)
            new = make_cert(d, "gw2", "localhost")
            said = gw.sighup([new])
            assert "reloaded" in said, said
            after = served_cert(gw, "localhost")
            assert after != before and "CN = localhost" in after, (before, after)
            out, err = stream.communicate(timeout=30)
            assert stream.returncode == 0 and out.rstrip().endswith("data: [DONE]"), (err, out[-300:])
            text, status = curl(gw, new[0])
            assert status == "200 0", (status, text)


def test_a_reload_that_changes_the_listeners_or_names_a_missing_key_is_refused_and_tls_keeps_serving():
    with tempfile.TemporaryDirectory() as d, mock() as m:
        crt, key = make_cert(d, "gw", "localhost")
        with TlsGateway(d, m.port, [(crt, key)]) as gw:
            said = gw.sighup([(crt, key)], extra_listener="  - 127.0.0.1:%d\n" % free_port())
            assert "refused" in said and "listeners change only at restart" in said, said
            said = gw.sighup([(crt, os.path.join(d, "missing.key"))])
            assert "reload of" in said and "missing.key" in gw.output(), gw.output()[-1500:]
            text, status = curl(gw, crt)
            assert status == "200 0", (status, text)
