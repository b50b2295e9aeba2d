"""tls_audit.py — `make testssl`: testssl.sh (Debian's testssl.sh package) against a real `fledge
serve` TLS listener, looking at its protocols, cipher categories and forward secrecy. Every
finding testssl rates LOW or worse fails, and so does any old protocol or weak cipher category
offered. About a minute; make test runs the quick form (test_tls's s_client probes). Ends with
"N passed, N failed"."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from certs import make_cert
from harness import mock, report
from test_tls import TlsGateway

OLD = ("SSLv2", "SSLv3", "TLS1", "TLS1_1")
WEAK = ("cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA",
        "cipherlist_AVERAGE")


def main():
    testssl = shutil.which("testssl") or shutil.which("testssl.sh")
    if not testssl:
        return report([("testssl.sh is installed (scripts/install-deps.sh)", False)])
    with tempfile.TemporaryDirectory() as d, mock() as m:
        crt, key = make_cert(d, "gw", "localhost")
        with TlsGateway(d, m.port, [(crt, key)]) as gw:
            out = os.path.join(d, "testssl.json")
            run = subprocess.run([testssl, "--quiet", "--color", "0", "--warnings", "off", "--nodns", "none", "-p", "-s",
                                  "-f", "--jsonfile", out, "127.0.0.1:%d" % gw.tls_port],
                                 capture_output=True, text=True, timeout=600)
            print(run.stdout)
            findings = {f["id"]: f for f in json.load(open(out))}
    bad = [f for f in findings.values() if f["severity"] in ("LOW", "MEDIUM", "HIGH", "CRITICAL")]
    return report([("testssl.sh ran and wrote its findings", run.returncode in (0, 1) or bool(findings))] +
                  [("%s: %s" % (k, findings.get(k, {}).get("finding")), findings.get(k, {}).get("finding") == "not offered")
                   for k in OLD + WEAK] +
                  [("TLS 1.2 and 1.3 offered", "offered" in findings["TLS1_2"]["finding"] and
                    "offered" in findings["TLS1_3"]["finding"]),
                   ("forward secrecy: %s" % findings["PFS"]["finding"], findings["PFS"]["severity"] == "OK"),
                   ("no finding rated LOW or worse%s" % "".join("; %s: %s" % (f["id"], f["finding"]) for f in bad),
                    not bad)])


if __name__ == "__main__":
    sys.exit(main())
