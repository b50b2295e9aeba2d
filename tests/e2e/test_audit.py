"""Every change of a route's weight is on the record: by a reload of the file, the admin API or the
CLI, each is an event saying what caused it and the weight before and after; a reload (or a
restart) that changes the weight under a running rollout pauses it, and `fledge status` says so
and why."""
import os
import signal
import subprocess

from harness import FLEDGE, Gateway, mock, request, route_yaml

TOKEN = "audit-test-token-0123456789"
AUTH = {"authorization": "Bearer " + TOKEN}
WITH_TOKEN = dict(env={"FLEDGE_TOKEN": TOKEN}, admin_extra="  token_env: FLEDGE_TOKEN\n")
SPEC = {"steps": [10, 50, 100], "interval": "60s", "min_requests": 1000000,
        "checks": [{"metric": "error_rate", "max_increase": 0.01}]}


def route(gw):
    return request(gw.admin, "GET", "/api/v1/routes/chat").json()


def events(gw):
    return request(gw.admin, "GET", "/api/v1/events?route=chat").json()["events"]


def cli(gw, *args, token=TOKEN):
    env = dict(os.environ, FLEDGE_ADMIN_TOKEN=token)
    return subprocess.run([FLEDGE, *args, "-a", "127.0.0.1:%d" % gw.admin], capture_output=True, text=True,
                          timeout=10, env=env)


def start_rollout(gw):
    r = request(gw.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, SPEC)
    assert r.status == 200 and r.json()["rollout"]["state"] == "progressing", r.body


def status_lines(gw):
    out = cli(gw, "status")
    assert out.returncode == 0, out
    return out.stdout.splitlines()


def test_a_reload_that_changes_the_weight_during_a_rollout_is_recorded_and_pauses_it():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        gw = Gateway(route_yaml(v1, v2, weight=10), **WITH_TOKEN)
        with gw:
            start_rollout(gw)
            before = len(events(gw))
            gw.reload(route_yaml(v1, v2, weight=10))          # the same weight: nothing to record
            assert len(events(gw)) == before
            gw.reload(route_yaml(v1, v2, weight=30))
            r = route(gw)
            assert r["canary_weight"] == 30 and r["rollout"]["state"] == "paused" and r["rollout"]["step"] == 0, r
            why = "a reload changed the config file's weight from 10.00% to 30.00%"
            assert r["rollout"]["reason"] == why, r["rollout"]
            weight, paused = events(gw)[-2:]
            assert (weight["actor"], weight["kind"]) == ("reload", "weight"), weight
            assert weight["detail"]["source"] == "reload" and weight["detail"]["file"] == gw.conf.name, weight
            assert (weight["detail"]["from"], weight["detail"]["to"]) == (10, 30), weight
            assert (weight["detail"]["file_from"], weight["detail"]["file_to"]) == (10, 30), weight
            assert (paused["actor"], paused["kind"], paused["detail"]["reason"]) == ("reload", "paused", why), paused
            lines = status_lines(gw)
            row = [l.split() for l in lines if l.startswith("chat")][0]
            assert row[1] == "30.00" and row[4] == "paused", lines
            assert any("paused because " + why in l for l in lines), lines
            history = cli(gw, "history").stdout
            assert "reload   weight" in history and "10.00 -> 30.00" in history, history
            gw.p.send_signal(signal.SIGKILL)                   # the reason is kept with the state
            gw.p.wait()
            with Gateway(route_yaml(v1, v2, weight=30), state_dir=gw.state_dir, **WITH_TOKEN) as again:
                r = route(again)
                assert r["canary_weight"] == 30 and r["rollout"]["state"] == "paused", r
                assert r["rollout"]["reason"] == why, r["rollout"]


def test_a_file_weight_changed_while_the_gateway_was_down_is_recorded_at_restart():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2:
        gw = Gateway(route_yaml(v1, v2, weight=10), **WITH_TOKEN)
        with gw:
            start_rollout(gw)
            gw.p.send_signal(signal.SIGKILL)
            gw.p.wait()
            with Gateway(route_yaml(v1, v2, weight=25), state_dir=gw.state_dir, **WITH_TOKEN) as again:
                r = route(again)
                why = "the config file's weight changed from 10.00% to 25.00% while the gateway was down"
                assert r["canary_weight"] == 25 and r["rollout"]["state"] == "paused", r
                assert r["rollout"]["reason"] == why, r["rollout"]
                weight, paused = events(again)[-2:]
                assert (weight["actor"], weight["kind"], weight["detail"]["from"], weight["detail"]["to"]) == (
                    "restart", "weight", 10, 25), weight
                assert (paused["kind"], paused["detail"]["reason"]) == ("paused", why), paused


def test_weights_set_through_the_api_and_the_cli_are_recorded_with_their_source():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=10), **WITH_TOKEN) as gw:
        r = request(gw.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": 15})
        assert r.status == 200 and r.json()["rollout"]["state"] == "idle", r.body
        last = events(gw)[-1]
        assert (last["actor"], last["kind"]) == ("api", "weight"), last
        assert last["detail"] == {"source": "api", "client": "127.0.0.1", "from": 10, "to": 15,
                                  "reason": "set by hand (api)"}, last

        out = cli(gw, "rollout", "weight", "chat", "20")
        assert out.returncode == 0 and out.stdout == "chat: canary weight 20.00%, rollout idle\n", out
        last = events(gw)[-1]
        assert (last["actor"], last["kind"], last["detail"]["source"]) == ("cli", "weight", "cli"), last
        assert (last["detail"]["from"], last["detail"]["to"]) == (15, 20), last

        start_rollout(gw)                                      # a hand on the wheel pauses the rollout
        out = cli(gw, "rollout", "weight", "chat", "12.5")
        why = "the canary weight was set to 12.50% by hand (cli)"
        assert out.returncode == 0, out
        assert out.stdout == "chat: canary weight 12.50%%, rollout paused (%s)\n" % why, out.stdout
        kinds = [(e["actor"], e["kind"], e["detail"].get("reason")) for e in events(gw)[-2:]]
        assert kinds == [("cli", "weight", "set by hand (cli)"), ("cli", "paused", why)], kinds
        # every event of the log says why, fledge history's WHY column included
        history = cli(gw, "history").stdout.splitlines()
        assert len(history) == 1 + len(events(gw)), history
        for line, e in zip(history[1:], events(gw)):
            assert e["detail"]["reason"] and line.rstrip().endswith(e["detail"]["reason"]), (line, e)
        assert any("paused because " + why in l for l in status_lines(gw))

        r = request(gw.admin, "POST", "/api/v1/routes/chat/rollout/resume", AUTH)
        assert r.json()["canary_weight"] == 10 and "reason" not in r.json()["rollout"], r.body
        r = request(gw.admin, "POST", "/api/v1/routes/chat/rollout/pause", AUTH)
        assert r.json()["rollout"]["reason"] == "paused by hand (api)", r.body


def test_the_cli_weight_command_refuses_what_is_wrong_and_has_help():
    with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
            Gateway(route_yaml(v1, v2, weight=10), **WITH_TOKEN) as gw:
        out = cli(gw, "rollout", "weight", "--help")
        assert out.returncode == 0 and "fledge rollout weight ROUTE PERCENT" in out.stdout, out
        for args in (("chat", "150"), ("chat", "ten"), ("chat",)):
            out = cli(gw, "rollout", "weight", *args)
            assert out.returncode == 2 and out.stdout == "", (args, out)
        out = cli(gw, "rollout", "weight", "chat", "20", token="wrong-token-0123456789")
        assert out.returncode == 1 and "401" in out.stderr, out
        out = cli(gw, "rollout", "weight", "nosuch", "20")
        assert out.returncode == 1 and "no route named nosuch" in out.stderr, out
        out = cli(gw, "rollout", "weight", "chat", "20.125")
        assert out.returncode == 1 and "two decimals" in out.stderr, out
        r = request(gw.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": 20, "source": "rm -rf /"})
        assert r.status == 400 and "source" in r.json()["error"]["message"], r.body
        assert route(gw)["canary_weight"] == 10 and all(e["kind"] != "weight" for e in events(gw))
