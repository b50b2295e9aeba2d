"""TLS listeners: certificates made here with the openssl command, clients are curl and openssl
s_client, over real sockets to a real `fledge serve` in front of `fledge mock`."""
import json
import os
import signal
import subprocess
import tempfile
import time

from certs import make_cert
from harness import FLEDGE, Proc, end, free_port, mock, wait_port
from test_sdk import HERE, NODE_MODULES

CHAT = '{"model":"m","messages":[{"role":"user","content":"hi"}]}'
STREAM = '{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}'


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


def s_client(port, *args):
    out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost",
                          *args], input="", capture_output=True, text=True, timeout=10)
    return out.stdout


def test_a_session_ticket_issued_before_a_reload_still_resumes_after_it():
    with tempfile.TemporaryDirectory() as d, mock() as m:
        crt, key = make_cert(d, "gw", "localhost")
        with TlsGateway(d, m.port, [(crt, key)]) as gw:
            session = os.path.join(d, "session.pem")
            assert "New, TLSv1.2" in s_client(gw.tls_port, "-tls1_2", "-sess_out", session)
            assert "Reused, TLSv1.2" in s_client(gw.tls_port, "-tls1_2", "-sess_in", session)
            said = gw.sighup([(crt, key)])
            assert "reloaded" in said, said
            assert "Reused, TLSv1.2" in s_client(gw.tls_port, "-tls1_2", "-sess_in", session), "the ticket keys outlive a reload"


def test_the_official_openai_node_sdk_talks_to_the_tls_listener_over_1_3_and_1_2_streaming_included():
    with tempfile.TemporaryDirectory() as d, mock() as m:
        crt, key = make_cert(d, "gw", "localhost")
        with TlsGateway(d, m.port, [(crt, key)]) as gw:
            for version in ("--tls-min-v1.3", "--tls-max-v1.2"):
                out = subprocess.run(["node", version, os.path.join(HERE, "node", "chat.js"),
                                      "https://localhost:%d/v1" % gw.tls_port], capture_output=True, text=True, timeout=30,
                                     env=dict(os.environ, NODE_PATH=NODE_MODULES, NODE_EXTRA_CA_CERTS=crt))
                assert out.returncode == 0, (version, out.stderr)
                said = json.loads(out.stdout)
                assert said["content"] and said["streamed"] == said["content"] and said["chunks"] > 2, (version, said)


def test_no_old_protocol_and_no_weak_suite_that_a_permissive_server_would_take_is_accepted():
    """The quick form of `make testssl` (testssl.sh's full look). Each weak offer is first shown to
    work against `openssl s_server` allowing everything with the same certificate, so a probe the
    client cannot make, or one no server could take with this key, cannot pass for a refusal."""
    with tempfile.TemporaryDirectory() as d, mock() as m:
        crt, key = make_cert(d, "gw", "localhost")
        open_port = free_port()
        permissive = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:%d" % open_port, "-cert", crt,
                                       "-key", key, "-cipher", "ALL:@SECLEVEL=0", "-quiet", "-www"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(open_port, permissive)
            with TlsGateway(d, m.port, [(crt, key)]) as gw:
                weak = [("-tls1", "DEFAULT@SECLEVEL=0"), ("-tls1_1", "DEFAULT@SECLEVEL=0")]
                weak += [("-tls1_2", suite + "@SECLEVEL=0") for suite in (
                    "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-ECDSA-AES128-SHA256",   # CBC
                    "ECDHE-ECDSA-AES256-SHA384", "aNULL", "CAMELLIA", "ARIA")]
                for protocol, suites in weak:
                    took = s_client(open_port, protocol, "-cipher", suites)
                    assert "CONNECTED" in took and "Cipher is (NONE)" not in took, ("the probe works", protocol, suites)
                    said = s_client(gw.tls_port, protocol, "-cipher", suites)
                    assert "CONNECTED" in said and "Cipher is (NONE)" in said, (protocol, suites, said[-600:])
                said = s_client(gw.tls_port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
                assert "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" in said, said[-600:]
        finally:
            end(permissive)
