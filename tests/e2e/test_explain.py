"""`fledge explain` as an operator uses it: given a config and a request described on the command
line, it says which route, rule or sticky bucket sends the request to which version and why, and
what it says is what the running gateway does."""
import os
import re
import subprocess
import tempfile

from harness import FLEDGE, Gateway, chat, mock, request, route_yaml

RULES = """routes:
  - name: chat
    match: { path_prefix: /v1/ }
    user_key: [header:x-user-id, json:user]
    stable: { version: v1, backends: [127.0.0.1:9001] }
    canary: { version: v2, backends: [127.0.0.1:9002], weight: 0 }
    rules:
      - match: { header: { x-beta: "1" }, cidr: [10.0.0.0/8] }
        variant: canary
      - match: { cookie: { staff: "yes" } }
        variant: canary
  - name: admin-site
    match: { host: admin.example.com }
    stable: { version: a1, backends: [127.0.0.1:9003] }
override_from: [127.0.0.0/8]
"""


def explain(conf, *args):
    return subprocess.run([FLEDGE, "explain", "-c", conf, *args], capture_output=True, text=True, timeout=10)


def conf_file(text):
    f = tempfile.NamedTemporaryFile("w", prefix="fledge-", suffix=".yaml", delete=False)
    f.write(text)
    f.close()
    return f.name


def lines_of(out):
    return {l[:10].strip(): l[10:] for l in out.stdout.splitlines() if l[:10].strip()}


def test_explain_names_the_rule_that_sends_a_request_by_header_and_the_conditions_that_failed():
    path = conf_file(RULES)
    try:
        out = explain(path, "--path", "/v1/chat/completions", "--header", "x-beta=1", "--ip", "10.1.2.3")
        assert out.returncode == 0, out
        said = lines_of(out)
        assert said["route"].startswith('chat: path_prefix "/v1/", any host'), out.stdout
        assert said["rules"] == ('rule 1 (line 8) to canary: header x-beta is "1" (yes) and client address in '
                                 '10.0.0.0/8 (yes): fits'), out.stdout
        assert said["decision"] == "canary (version v2; backends 127.0.0.1:9002), by rule 1 (line 8)", out.stdout

        out = explain(path, "-p", "/v1/x", "-H", "X-Beta: 1", "--cookie", "staff=yes", "--ip", "192.0.2.7")
        text = out.stdout
        assert "rule 1 (line 8) to canary: header x-beta is \"1\" (yes) and client address in 10.0.0.0/8 (no): " \
               "does not fit" in text, text
        assert "rule 2 (line 10) to canary: cookie staff is \"yes\" (yes): fits" in text, text
        assert lines_of(out)["decision"].endswith("by rule 2 (line 10)"), text

        out = explain(path, "-p", "/v1/x", "--body", '{"user": "alice"}')
        said = lines_of(out)
        assert said["user key"].startswith('json:user = "alice" (the first of header:x-user-id, json:user'), out.stdout
        assert "the canary takes none of them (weight 0.00%)" in said["bucket"], out.stdout
        assert said["decision"].startswith("stable (version v1; backends 127.0.0.1:9001), by the sticky bucket"), \
            out.stdout
        out = explain(path, "-p", "/v1/x", "--weight", "100", "-H", "x-user-id=7")
        assert lines_of(out)["decision"].startswith("canary (version v2"), out.stdout
        assert "the weight is --weight's" in out.stdout, out.stdout
    finally:
        os.unlink(path)


def test_explain_gives_the_bucket_of_a_user_key_and_agrees_with_the_gateway():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=30, user_key="[header:x-user-id]")) as gw:
        agree = 0
        for i in range(30):
            user = "user-%d" % i
            out = explain(gw.conf.name, "--path", "/v1/chat/completions", "--header", "x-user-id=" + user)
            said = lines_of(out)
            assert said["user key"].startswith('header:x-user-id = "%s"' % user), out.stdout
            bucket = int(re.match(r"(\d+) of 10000: the hash of salt \"chat\" and the key; the canary takes buckets "
                                  r"0 to 2999 \(weight 30.00%\)", said["bucket"]).group(1))
            variant = said["decision"].split()[0]
            assert variant == ("canary" if bucket < 3000 else "stable"), out.stdout
            served = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": user}, chat())
            agree += served.header("x-fledge-variant") == variant
        assert agree == 30
        out = explain(gw.conf.name, "--path", "/v1/chat/completions")
        said = lines_of(out)
        assert said["user key"] == "none: the request has none of header:x-user-id", out.stdout
        assert said["decision"].startswith("canary with 30.00%, stable with 70.00%, drawn for each request"), out.stdout


def test_explain_says_which_host_route_fits_when_none_does_and_whose_override_is_believed():
    path = conf_file(RULES)
    try:
        out = explain(path, "--path", "/status", "--host", "Admin.Example.com:8443")
        said = lines_of(out)
        assert said["route"].startswith('admin-site: path_prefix "/", host admin.example.com'), out.stdout
        assert said["decision"] == "stable (version a1; backends 127.0.0.1:9003): the route has no canary"
        out = explain(path, "--path", "/status")
        assert out.returncode == 0 and lines_of(out)["route"] == "none fits: the gateway answers 404", out.stdout
        out = explain(path, "-p", "/v1/x", "-H", "x-fledge-variant=canary")
        assert lines_of(out)["decision"].endswith("by x-fledge-variant from a trusted client (127.0.0.1 is in "
                                                  "override_from)"), out.stdout
        out = explain(path, "-p", "/v1/x", "-H", "x-fledge-variant=canary", "--ip", "203.0.113.5")
        said = lines_of(out)
        assert said["override"] == "x-fledge-variant is not believed: 203.0.113.5 is not in override_from", out.stdout
        assert said["decision"].startswith("canary with 0.00%"), out.stdout
    finally:
        os.unlink(path)


def test_explain_has_help_and_refuses_bad_usage_and_bad_configs():
    out = subprocess.run([FLEDGE, "explain", "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and out.stdout.startswith("usage: fledge explain -c FILE"), out
    out = subprocess.run([FLEDGE, "explain", "--path", "/v1/x"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "usage: fledge explain" in out.stderr, out
    path = conf_file(RULES)
    bad = conf_file(RULES.replace("weight: 0", "weight: 300"))
    try:
        for args, words in ((("--ip", "not-an-ip"), "--ip wants a numeric address"),
                            (("--header", "novalue"), "--header wants NAME=VALUE"),
                            (("--weight", "101"), "--weight is a percentage"),
                            (("--country", "DEU"), "--country wants a two-letter ISO code")):
            out = explain(path, *args)
            assert out.returncode == 2 and words in out.stderr, (args, out)
        out = explain(bad)
        assert out.returncode == 1 and out.stderr.startswith(bad + ":6:") and "weight" in out.stderr, out
    finally:
        os.unlink(path)
        os.unlink(bad)
