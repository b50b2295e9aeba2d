"""certs.py — certificates the tests make with the openssl command: self-signed ones, and a small
certificate authority that issues certificates for a host with any validity period (an expired
one included), as `openssl ca` does."""
import datetime
import os
import subprocess

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_cert(folder, name, host):
    """A self-signed ECDSA certificate for host (CN and SAN), as NAME.crt and NAME.key."""
    crt, key = os.path.join(folder, name + ".crt"), os.path.join(folder, name + ".key")
    _openssl("req", "-x509", *EC, "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=" + host,
             "-addext", "subjectAltName=DNS:" + host)
    return crt, key


def _stamp(t):
    return t.strftime("%Y%m%d%H%M%SZ")


class TestCA:
    """An authority (ca.crt, the file a ca_file names) in folder, issuing leaf certificates."""

    def __init__(self, folder):
        self.folder = folder
        self.crt, self.key = make_cert(folder, "ca", "fledge test authority")
        self.cnf = os.path.join(folder, "ca.cnf")
        with open(self.cnf, "w") as f:
            f.write("[ca]\ndefault_ca = issuing\n[issuing]\ndatabase = %s/index.txt\nnew_certs_dir = %s\n"
                    "serial = %s/serial\ndefault_md = sha256\npolicy = any\ncopy_extensions = copy\n"
                    "unique_subject = no\n[any]\ncommonName = supplied\n" % (folder, folder, folder))
        open(os.path.join(folder, "index.txt"), "w").close()
        with open(os.path.join(folder, "serial"), "w") as f:
            f.write("1000\n")

    def issue(self, name, host, valid_from=None, valid_to=None):
        """A certificate for host (CN, and a DNS or IP SAN), valid from an hour ago for a day
        unless the period is given; returns (NAME.crt, NAME.key)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        valid_from = valid_from or now - datetime.timedelta(hours=1)
        valid_to = valid_to or now + datetime.timedelta(days=1)
        crt, key, csr = (os.path.join(self.folder, name + ext) for ext in (".crt", ".key", ".csr"))
        san = ("IP:" if host.replace(".", "").isdigit() else "DNS:") + host
        _openssl("req", *EC, "-keyout", key, "-out", csr, "-subj", "/CN=" + host, "-addext", "subjectAltName=" + san)
        _openssl("ca", "-batch", "-notext", "-config", self.cnf, "-cert", self.crt, "-keyfile", self.key, "-in", csr,
                 "-out", crt, "-startdate", _stamp(valid_from), "-enddate", _stamp(valid_to))
        return crt, key
