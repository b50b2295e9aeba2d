"""The fledge command as a person meets it: help on every command, config errors with their
position, and clear failures at start."""
import os
import socket
import subprocess
import tempfile

from harness import FLEDGE, free_port


def run(*args, timeout=10):
    return subprocess.run([FLEDGE, *args], capture_output=True, text=True, timeout=timeout)


def conf_file(text):
    f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    f.write(text)
    f.close()
    return f.name


GOOD = ("routes:\n  - name: chat\n    stable: { version: v1, backends: [127.0.0.1:9001] }\n"
        "    canary: { version: v2, backends: [127.0.0.1:9002], weight: 20 }\n")


def test_every_command_has_help():
    for cmd in ("serve", "check", "mock"):
        r = run(cmd, "--help")
        assert r.returncode == 0 and "usage: fledge " + cmd in r.stdout, (cmd, r)
    r = run("--help")
    assert r.returncode == 0 and "serve" in r.stdout and "check" in r.stdout and "mock" in r.stdout
    r = run("version")
    assert r.returncode == 0 and r.stdout.startswith("fledge ")
    r = run("frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr


def test_check_accepts_a_good_config_and_points_at_errors():
    good, bad = conf_file(GOOD), conf_file(GOOD.replace("weight: 20", "weight: 150"))
    try:
        r = run("check", "-c", good)
        assert r.returncode == 0 and "ok" in r.stdout
        r = run("check", "-c", bad)
        assert r.returncode == 1
        assert r.stderr.startswith("%s:4:" % bad) and "weight must be between 0 and 100" in r.stderr, r.stderr
        r = run("check", "-c", "/nonexistent/fledge.yaml")
        assert r.returncode == 1 and "/nonexistent/fledge.yaml" in r.stderr and "No such file" in r.stderr
        r = run("check")
        assert r.returncode == 2 and "usage" in r.stderr
    finally:
        os.unlink(good)
        os.unlink(bad)


def test_serve_refuses_a_bad_config_and_a_taken_port_with_a_message():
    bad = conf_file(GOOD.replace("127.0.0.1:9002", "127.0.0.1:99999"))
    r = run("serve", "-c", bad)
    os.unlink(bad)
    assert r.returncode == 1 and 'bad address "127.0.0.1:99999"' in r.stderr, r.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # SO_REUSEPORT lets sockets of the same user share a port only if every one set it
        good = conf_file("listen: 127.0.0.1:%d\nadmin: { listen: 127.0.0.1:%d }\n" % (port, free_port()) + GOOD)
        r = run("serve", "-c", good)
        os.unlink(good)
    assert r.returncode == 1 and "listen 127.0.0.1:%d" % port in r.stderr and "in use" in r.stderr, r.stderr


def test_mock_rejects_bad_options():
    r = run("mock", "--error-rate", "2")
    assert r.returncode == 2 and "error-rate" in r.stderr


def test_serve_and_check_refuse_a_missing_admin_token_that_cli_tools_do_not_need():
    conf = conf_file("admin: { listen: 127.0.0.1:%d, token_env: FLEDGE_NO_SUCH_TOKEN }\n" % free_port() + GOOD)
    try:
        for cmd in ("check", "serve"):
            r = run(cmd, "-c", conf)
            assert r.returncode == 1, (cmd, r)
            assert r.stderr.startswith(conf + ":1:") and "FLEDGE_NO_SUCH_TOKEN" in r.stderr, r.stderr
        r = run("status", "-c", conf)              # reads the address; nothing listens there
        assert r.returncode == 1 and "cannot connect" in r.stderr, r.stderr
    finally:
        os.unlink(conf)
