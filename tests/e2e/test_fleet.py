"""One rollout across a fleet (issue 16): three `fledge serve` replicas share one real
redis-server. Every decision is a record of a log in Redis, written under the leader's lease
before it takes effect; every replica applies it within a second, keeps the same history, and a
new leader goes on from the same step. Redis gone: all serve on with the same weights, no step
is taken; Redis back (empty): the rollout goes on."""
import signal
import time

from fleet import LEASE_S, Fleet, cluster_of, fleet_yaml, leaders, one_leader, wait_for
from harness import Gateway, RedisServer, chat, mock, request

TOKEN = "fleet-test-token-0123456789"
AUTH = {"authorization": "Bearer " + TOKEN, "content-type": "application/json"}
WITH_TOKEN = dict(env={"FL_TOKEN": TOKEN}, admin_extra="  token_env: FL_TOKEN\n")
# windows of 1 s with a handful of requests: the leader judges what it sees itself
SPEC = {"steps": [10, 30, 60, 100], "interval": "1s", "min_requests": 5, "max_failures": 3,
        "checks": [{"metric": "error_rate", "max_increase": 0.2}]}


def weight(g):
    return request(g.admin, "GET", "/api/v1/routes/chat").json()["canary_weight"]


def rollout(g):
    return request(g.admin, "GET", "/api/v1/routes/chat").json()["rollout"]


def history(g):
    return [(e["kind"], e["detail"].get("to")) for e in
            request(g.admin, "GET", "/api/v1/events?route=chat", AUTH).json()["events"]]


def traffic(gs, n):
    """n requests to each replica; every one must be answered 200."""
    for g in gs:
        for i in range(n):
            r = request(g.port, "POST", "/v1/chat/completions", {"x-user-id": "u%d" % i}, chat())
            assert r.status == 200, (g.port, r.status, r.body)


class Traffic:
    """Background requests to every replica, as a load balancer would spread them."""

    def __init__(self, gs, rate=40):
        from harness import Load
        self.loads = [Load(g.port, threads=2 if rate <= 40 else 4, rate=rate) for g in gs]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for l in self.loads:
            l.__exit__(*exc)


def test_a_weight_set_on_the_leader_reaches_every_replica_within_a_second_with_the_same_history():
    with RedisServer() as redis, mock() as v1, mock() as v2, Fleet(v1, redis, canary=v2, **WITH_TOKEN) as gs:
        leader = one_leader(gs)
        wait_for("every replica on the log", lambda: all(weight(g) == 20 for g in gs), 3)
        r = request(leader.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": 55})
        assert r.status == 200, r.body
        t0 = time.time()
        wait_for("55% everywhere", lambda: all(weight(g) == 55 for g in gs), 3, every=0.02)
        took = time.time() - t0
        print("    weight on every replica %.2fs after the leader's answer" % took)
        assert took <= 1.0, took
        import subprocess
        from harness import FLEDGE
        out = subprocess.run([FLEDGE, "status", "-a", "127.0.0.1:%d" % gs[1].admin], capture_output=True, text=True,
                             timeout=10).stdout
        wait_for("three heartbeats with 55%", lambda: len([ln for ln in subprocess.run(
            [FLEDGE, "status", "-a", "127.0.0.1:%d" % gs[1].admin], capture_output=True, text=True,
            timeout=10).stdout.splitlines() if ln.startswith("r") and "chat 55.00%" in ln and " same " in ln]) == 3, 3)
        assert "REPLICA" in out and "HEARTBEAT" in out, out
        for g in gs:                                   # the same record in every replica's history
            assert history(g).count(("weight", 55)) == 1, history(g)
            answers = [request(g.port, "POST", "/v1/chat/completions", {"x-user-id": "w%d" % i}, chat())
                       .header("x-fledge-variant") for i in range(200)]
            assert 80 <= answers.count("canary") <= 140, answers.count("canary")   # 55% of 200, give or take


def apply_latencies(leader, followers, weights):
    """For each weight: set on the leader, then the seconds until every follower serves it."""
    took = []
    for w in weights:
        assert request(leader.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": w}).status == 200
        t0 = time.time()
        wait_for("%d%% on every follower" % w, lambda: all(weight(g) == w for g in followers), 3, every=0.005)
        took.append(time.time() - t0)
    return took


def test_followers_apply_a_decision_at_once_through_the_notice_channel_and_by_polling_when_it_is_cut():
    import statistics
    with RedisServer() as redis, mock() as v1, mock() as v2, Fleet(v1, redis, canary=v2, **WITH_TOKEN) as gs:
        leader = one_leader(gs)
        followers = [g for g in gs if g is not leader]
        wait_for("every replica subscribed", lambda: all(cluster_of(g)["subscribed"] for g in gs), 3)
        told = apply_latencies(leader, followers, [31, 32, 33, 34, 35, 36, 37])
        print("    told: every follower %s ms after the leader's answer (median %.0f ms; the poll is 1 s)" % (
            [round(t * 1000) for t in told], statistics.median(told) * 1000))
        assert statistics.median(told) <= 0.05 and max(told) <= 0.25, told
        # the channel cut, and refused when they come back for it: the periodic read alone
        redis.command("ACL", "SETUSER", "default", "-subscribe", db=3)
        assert redis.command("CLIENT", "KILL", "TYPE", "pubsub", db=3) == 3
        wait_for("no replica subscribed", lambda: not any(cluster_of(g)["subscribed"] for g in gs), 2)
        polled = apply_latencies(leader, followers, [41, 42, 43, 44, 45])
        print("    polled: every follower %s ms after the leader's answer" % [round(t * 1000) for t in polled])
        assert max(polled) <= 0.6, polled           # a read every tick (250 ms) while the channel is down
        assert not any(cluster_of(g)["subscribed"] for g in gs)
        redis.command("ACL", "SETUSER", "default", "+subscribe", db=3)
        wait_for("every replica subscribed again", lambda: all(cluster_of(g)["subscribed"] for g in gs), 4)
        again = apply_latencies(leader, followers, [51, 52, 53])
        assert statistics.median(again) <= 0.05, again
        for g in gs:
            assert [w for k, w in history(g) if k == "weight"] == [31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45,
                                                                   51, 52, 53], history(g)


def test_a_replica_restarted_joins_with_the_current_weight_before_it_takes_traffic():
    with RedisServer() as redis, mock() as v1, mock() as v2, Fleet(v1, redis, canary=v2, **WITH_TOKEN) as gs:
        leader = one_leader(gs)
        follower = [g for g in gs if g is not leader][0]
        name = cluster_of(follower)["replica"]
        state_dir = follower.state_dir
        follower.stop()
        assert request(leader.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": 0}).status == 200
        again = Gateway(fleet_yaml(v1, redis, name, canary=v2), state_dir=state_dir, **WITH_TOKEN)
        try:
            assert weight(again) == 0                  # the first thing it says, without waiting
            for i in range(30):
                r = request(again.port, "POST", "/v1/chat/completions", {"x-user-id": "j%d" % i}, chat())
                assert r.header("x-fledge-variant") == "stable"
            assert history(again).count(("weight", 0)) == 1, history(again)
        finally:
            again.__exit__(None, None, None)


def test_a_leader_killed_mid_rollout_is_followed_from_the_same_step_and_no_step_is_taken_twice():
    with RedisServer() as redis, mock() as v1, mock() as v2, \
            Fleet(v1, redis, canary=v2, weight=0, **WITH_TOKEN) as gs, Traffic(gs):
        leader = one_leader(gs)
        assert request(leader.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, SPEC).status == 200
        wait_for("step 1", lambda: rollout(leader)["step"] >= 1, 10, every=0.1)
        leader.stop(signal.SIGKILL)
        rest = [g for g in gs if g is not leader]
        step = max(rollout(g)["step"] for g in rest)
        second = one_leader(rest, timeout=LEASE_S + 2)
        assert rollout(second)["step"] >= step          # it goes on from where the log was
        wait_for("promoted everywhere", lambda: all(rollout(g)["state"] == "promoted" for g in rest), 20, every=0.2)
        for g in rest:
            h = history(g)
            assert [k for k in h if k[0] in ("rollout_started", "step", "promoted")] == [
                ("rollout_started", 10), ("step", 30), ("step", 60), ("promoted", 100)], h
            assert weight(g) == 100


def log_records(redis):
    """The shared decision log as Redis keeps it, oldest first."""
    import json
    return [json.loads(r) for r in redis.command("ZRANGE", "t%d:log" % redis.port, 0, -1, db=3)]


def test_a_leader_frozen_mid_rollout_and_thawed_after_another_took_over_decides_nothing():
    spec = dict(SPEC, steps=[5, 10, 20, 30, 45, 60, 80, 100])
    with RedisServer() as redis, mock() as v1, mock() as v2, \
            Fleet(v1, redis, canary=v2, weight=0, **WITH_TOKEN) as gs:
        stale = one_leader(gs)
        rest = [g for g in gs if g is not stale]
        name, epoch = cluster_of(stale)["replica"], cluster_of(stale)["epoch"]
        with Traffic(rest):
            assert request(stale.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, spec).status == 200
            wait_for("step 1", lambda: rollout(stale)["step"] >= 1, 10, every=0.1)
            stale.send_signal(signal.SIGSTOP)           # frozen with the lease: its clock runs on, its loop does not
            frozen_at = len(log_records(redis))
            try:
                second = one_leader(rest, timeout=LEASE_S + 2)
                assert cluster_of(second)["epoch"] > epoch
                step = rollout(second)["step"]
                wait_for("a step by the new leader", lambda: rollout(second)["step"] > step, 10, every=0.1)
            finally:
                stale.send_signal(signal.SIGCONT)
            # thawed, it still holds its old epoch and its windows are due: it must not decide
            wait_for("the thawed replica on the new leader's weight", lambda: weight(stale) == weight(second), 1.5,
                     every=0.05)
            assert not cluster_of(stale)["leading"] and leaders(gs) == [second]
            assert "no longer leads (epoch %d): its lease ran out" % epoch in stale.output()
            wait_for("promoted everywhere", lambda: all(rollout(g)["state"] == "promoted" for g in gs), 30, every=0.2)
        made_since = {r["replica"] for r in log_records(redis)[frozen_at:]}
        assert made_since == {cluster_of(second)["replica"]}, made_since      # nothing of the stale one's
        assert name not in made_since
        expected = [("rollout_started", 5)] + [("step", w) for w in spec["steps"][1:-1]] + [("promoted", 100)]
        for g in gs:
            h = history(g)
            assert [k for k in h if k[0] in ("rollout_started", "step", "promoted")] == expected, h
            assert weight(g) == 100


def test_a_leader_whose_lease_was_taken_behind_its_back_has_its_decision_refused_by_redis():
    with RedisServer() as redis, mock() as v1, mock() as v2, Fleet(v1, redis, canary=v2, **WITH_TOKEN) as gs:
        stale = one_leader(gs)
        epoch = cluster_of(stale)["epoch"]
        wait_for("20% everywhere", lambda: all(weight(g) == 20 for g in gs), 3)
        # as after a Redis failover that lost the key: another holds the lease, with a higher epoch,
        # while the old leader's own deadline has not yet run out
        logged = len(log_records(redis))
        taken = redis.command("INCR", "t%d:epoch" % redis.port, db=3)
        redis.command("SET", "t%d:leader" % redis.port, "elsewhere:%d" % taken, "PX", 60000, db=3)
        r = request(stale.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": 70})
        assert r.status == 503 and "the lease is no longer this replica's; nothing changed" in r.body.decode(), \
            (r.status, r.body)
        assert not cluster_of(stale)["leading"]
        assert len(log_records(redis)) == logged and all(weight(g) == 20 for g in gs)
        for g in gs:
            assert ("weight", 70) not in history(g)
        redis.command("DEL", "t%d:leader" % redis.port, db=3)
        again = one_leader(gs)                        # the fleet goes on, under a higher epoch still
        assert cluster_of(again)["epoch"] > taken > epoch
        assert request(again.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": 70}).status == 200
        wait_for("70% everywhere", lambda: all(weight(g) == 70 for g in gs), 2)


def test_every_replica_restarted_mid_rollout_keeps_the_weight_and_step_and_goes_on_from_there():
    with RedisServer() as redis, mock() as v1, mock() as v2:
        fleet = Fleet(v1, redis, canary=v2, weight=0, **WITH_TOKEN)
        gs = fleet.gs
        try:
            leader = one_leader(gs)
            assert request(leader.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, SPEC).status == 200
            with Traffic(gs):
                wait_for("step 1 everywhere", lambda: all(rollout(g)["step"] == 1 for g in gs), 15, every=0.1)
            names = [cluster_of(g)["replica"] for g in gs]
            dirs = [g.state_dir for g in gs]
            for g in gs[:2]:                               # their stores go on with the new processes
                g.own_state = False
            for g in gs:                                   # all of them, one after another
                g.__exit__(None, None, None)
            import json
            st = json.loads(redis.command("HGET", "t%d:state" % redis.port, "chat", db=3))
            before = [(st["weight_bp"] / 100, st["step"], st["rollout_state"])] * 3
            assert st["step"] in (1, 2) and st["rollout_state"] == "progressing", st    # after a step, before the end
            dirs[2] = None                                 # r3 comes back on a new machine: an empty store
            gs[:] = [Gateway(fleet_yaml(v1, redis, n, canary=v2, weight=0), state_dir=d, **WITH_TOKEN)
                     for n, d in zip(names, dirs)]
            for g in gs:
                g.own_state = True                         # removed at the end
            # the first thing each says, before any window: the same step, not the file's 0%
            assert [(weight(g), rollout(g)["step"], rollout(g)["state"]) for g in gs] == before
            one_leader(gs)
            with Traffic(gs):
                wait_for("promoted everywhere", lambda: all(rollout(g)["state"] == "promoted" for g in gs), 30,
                         every=0.2)
            for g in gs:
                h = history(g)
                assert [k for k in h if k[0] in ("rollout_started", "step", "promoted", "rolled_back")] == [
                    ("rollout_started", 10), ("step", 30), ("step", 60), ("promoted", 100)], h
                assert weight(g) == 100
        finally:
            fleet.__exit__(None, None, None)


def test_without_redis_every_replica_serves_the_same_weight_and_the_rollout_goes_on_when_it_is_back():
    with RedisServer() as redis, mock() as v1, mock() as v2, \
            Fleet(v1, redis, canary=v2, weight=0, **WITH_TOKEN) as gs, Traffic(gs):
        leader = one_leader(gs)
        assert request(leader.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, SPEC).status == 200
        wait_for("step 1 everywhere", lambda: all(rollout(g)["step"] == 1 for g in gs), 10, every=0.1)
        redis.stop(signal.SIGKILL)
        time.sleep(LEASE_S + 1)                        # the leader steps down; nobody decides
        weights = [weight(g) for g in gs]
        steps = [rollout(g)["step"] for g in gs]
        assert len(set(weights)) == 1 and len(set(steps)) == 1, (weights, steps)
        traffic(gs, 20)                                # serving, no errors
        time.sleep(2)                                  # two more windows' time: still no step
        assert [weight(g) for g in gs] == weights and [rollout(g)["step"] for g in gs] == steps
        redis.restart()                                # empty: the new leader seeds it from its state
        wait_for("promoted everywhere", lambda: all(rollout(g)["state"] == "promoted" for g in gs), 25, every=0.2)
        for g in gs:
            h = history(g)
            assert [k for k in h if k[0] in ("rollout_started", "step", "promoted")] == [
                ("rollout_started", 10), ("step", 30), ("step", 60), ("promoted", 100)], h


def test_the_leader_judges_every_replica_s_traffic_a_window_counts_the_sum_over_replicas():
    spec = {"steps": [50, 100], "interval": "1s", "min_requests": 100000,   # never enough: it holds
            "checks": [{"metric": "error_rate", "max_increase": 0.01}]}
    with RedisServer() as redis, mock() as v1, mock() as v2, \
            Fleet(v1, redis, canary=v2, weight=0, **WITH_TOKEN) as gs:
        leader = one_leader(gs)
        assert request(leader.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, spec).status == 200
        wait_for("50% everywhere", lambda: all(weight(g) == 50 for g in gs), 3)
        time.sleep(1.2)                                # every replica has begun its step
        sent = {"canary": 0, "stable": 0}
        for k, g in enumerate(gs):                     # 30, 40 and 50 requests: each replica its own count
            for i in range(30 + 10 * k):
                r = request(g.port, "POST", "/v1/chat/completions", {"x-user-id": "s%d-%d" % (k, i)}, chat())
                assert r.status == 200
                sent[r.header("x-fledge-variant")] += 1
        time.sleep(3.5)                                # the counts reach Redis each second; a window closes

        def evidence():
            a = rollout(leader).get("last_analysis") or {}
            ev = a.get("evidence", {})
            return a if (ev.get("canary_requests"), ev.get("stable_requests")) == (sent["canary"], sent["stable"]) else None
        a = wait_for("a window with every replica's requests %s" % sent, evidence, 4, every=0.2)
        assert a["replicas"] == 3, a


def test_a_canary_failing_on_every_replica_is_rolled_back_and_every_replica_drops_it_within_a_second():
    # 5% errors take about 1,600 canary requests to tell (make sim): half of ~240 requests a second
    spec = {"steps": [50, 100], "interval": "2s", "min_requests": 40, "max_failures": 2,
            "checks": [{"metric": "error_rate", "max_increase": 0.01}]}
    with RedisServer() as redis, mock() as v1, mock("--error-rate", 0.05, "--seed", 7) as v2, \
            Fleet(v1, redis, canary=v2, weight=0, **WITH_TOKEN) as gs, Traffic(gs, rate=80):
        leader = one_leader(gs)
        assert request(leader.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, spec).status == 200
        wait_for("rolled back on the leader", lambda: rollout(leader)["state"] == "rolled_back", 40, every=0.05)
        t0 = time.time()
        wait_for("0% everywhere", lambda: all(weight(g) == 0 for g in gs), 2, every=0.02)
        assert time.time() - t0 <= 1.0
        last = [e for e in request(leader.admin, "GET", "/api/v1/events?route=chat", AUTH).json()["events"]
                if e["kind"] == "rolled_back"][-1]
        ev = last["detail"]["analysis"]["evidence"]
        assert last["detail"]["analysis"]["replicas"] == 3, last["detail"]["analysis"]
        assert "error_rate" in last["detail"]["reason"], last
        print("    rolled back on %d canary and %d stable requests from 3 replicas" % (
            ev["canary_requests"], ev["stable_requests"]))


def own_p50_ms(g, variant, what):
    """What g itself measured over the last minute: its variant's median (what: latency_ms or
    ttft_ms) and its requests."""
    route = [r for r in request(g.admin, "GET", "/api/v1/stats", AUTH).json()["routes"] if r["route"] == "chat"][0]
    w = [v for v in route["variants"] if v["variant"] == variant][0]["windows"]["1m"]
    return w[what]["p50"], w["requests"]


def test_latency_and_ttft_checks_judge_the_fleet_s_merged_histograms_while_the_leader_s_own_traffic_is_fast():
    from harness import Load
    spec = {"steps": [50, 100], "interval": "3s", "min_requests": 60, "max_failures": 1,
            "checks": [{"metric": "latency_p50", "max_ratio": 1.5}, {"metric": "ttft_p50", "max_ratio": 1.5}]}
    stream = '{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    knobs = ("--ttft-ms", 20, "--jitter-ms", 5)
    with RedisServer() as redis, mock(*knobs) as v1, mock(*knobs) as fast, \
            mock("--ttft-ms", 150, "--jitter-ms", 5) as slow:
        # r1 starts alone, so it leads; its canary answers as fast as stable, the others' canary is slow
        gs = [Gateway(fleet_yaml(v1, redis, "r1", canary=fast, weight=0), **WITH_TOKEN)]
        loads = []
        try:
            leader = one_leader(gs)
            gs += [Gateway(fleet_yaml(v1, redis, "r%d" % i, canary=slow, weight=0), **WITH_TOKEN) for i in (2, 3)]
            wait_for("three heartbeats", lambda: len(cluster_of(leader)["replicas"]) == 3, 3)
            assert request(leader.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, spec).status == 200
            loads = [Load(leader.port, threads=2, rate=10, body=stream)] + [
                Load(g.port, threads=4, rate=40, body=stream) for g in gs[1:]]
            wait_for("rolled back", lambda: rollout(leader)["state"] == "rolled_back", 30, every=0.1)
            last = [e for e in request(leader.admin, "GET", "/api/v1/events?route=chat", AUTH).json()["events"]
                    if e["kind"] == "rolled_back"][-1]
            a = last["detail"]["analysis"]
            assert "latency_p50" in last["detail"]["reason"] and "ttft_p50" in last["detail"]["reason"], last
            assert a["replicas"] == 3, a
            for check in a["checks"]:
                what = "latency_ms" if check["metric"] == "latency_p50" else "ttft_ms"
                own = {v: own_p50_ms(leader, v, what) for v in ("canary", "stable")}
                assert own["canary"][1] > 0 and own["canary"][0] <= 1.5 * own["stable"][0], own   # alone: a pass
                print("    %s: the leader's own canary %.0f ms, stable %.0f ms (%d, %d requests); judged on the "
                      "fleet's %d and %d: canary %.0f ms, stable %.0f ms" % (
                          check["metric"], own["canary"][0], own["stable"][0], own["canary"][1], own["stable"][1],
                          check["n_canary"], check["n_stable"], check["canary"] * 1000, check["stable"] * 1000))
                assert check["verdict"] == "fail" and check["canary"] >= 0.14 and check["stable"] <= 0.05, check
                assert check["n_canary"] > own["canary"][1], check            # the others' requests are in
        finally:
            for load in loads:
                load.__exit__(None, None, None)
            for g in gs:
                g.__exit__(None, None, None)


def test_a_feedback_id_signed_by_one_replica_is_taken_once_by_any_other():
    with RedisServer() as redis, mock() as v1, mock() as v2, Fleet(v1, redis, canary=v2, **WITH_TOKEN) as gs:
        a, b, c = gs
        r = request(a.port, "POST", "/v1/chat/completions", {"x-user-id": "fb"}, chat())
        rid = r.header("x-request-id")
        assert r.status == 200 and rid
        first = request(b.admin, "POST", "/api/v1/feedback", AUTH, {"request_id": rid, "score": 1})
        assert first.status == 200, first.body
        assert first.json()["route"] == "chat" and first.json()["variant"] == r.header("x-fledge-variant")
        again = request(b.admin, "POST", "/api/v1/feedback", AUTH, {"request_id": rid, "score": -1})
        assert again.status == 409 and "rated already" in again.body.decode(), again.body
        elsewhere = request(c.admin, "POST", "/api/v1/feedback", AUTH, {"request_id": rid, "score": -1})
        assert elsewhere.status == 409, elsewhere.body            # once across the fleet, not once per replica
        forged = rid[:-2] + ("AA" if not rid.endswith("AA") else "BB")
        assert request(c.admin, "POST", "/api/v1/feedback", AUTH, {"request_id": forged, "score": 1}).status == 400


def test_a_change_asked_of_a_follower_is_made_by_the_leader_and_answered_with_its_answer():
    with RedisServer() as redis, mock() as v1, mock() as v2, Fleet(v1, redis, canary=v2, **WITH_TOKEN) as gs:
        leader = one_leader(gs)
        follower = [g for g in gs if g is not leader][0]
        r = request(follower.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": 35})
        assert r.status == 200 and r.json()["canary_weight"] == 35, (r.status, r.body)
        wait_for("35% everywhere", lambda: all(weight(g) == 35 for g in gs), 1)
        # the leader's refusal comes back as it is
        r = request(follower.admin, "POST", "/api/v1/routes/chat/rollout/resume", AUTH)
        assert r.status == 409 and "no rollout in a state that allows it" in r.body.decode(), (r.status, r.body)
        r = request(follower.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": 101})
        assert r.status == 400, r.body
        # a rollout started through a follower, aborted through another
        other = [g for g in gs if g not in (leader, follower)][0]
        assert request(follower.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, SPEC).status == 200
        r = request(other.admin, "POST", "/api/v1/routes/chat/rollout/abort", AUTH)
        assert r.status == 200 and r.json()["rollout"]["state"] == "rolled_back", r.body
        wait_for("0% everywhere", lambda: all(weight(g) == 0 for g in gs), 1)
        for g in gs:
            kinds = [k for k, _ in history(g)]
            assert kinds.count("rollout_started") == 1 and kinds.count("rolled_back") == 1, kinds
        # no Redis: the follower says so at once and changes nothing
        redis.stop(signal.SIGKILL)
        wait_for("redis down", lambda: not cluster_of(follower)["redis_up"], 3)
        r = request(follower.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": 50})
        assert r.status == 503 and "nothing was changed" in r.body.decode(), (r.status, r.body)
        assert weight(follower) == 0


def fledge_cli(g, *args):
    """`fledge ARGS -a` g's admin listener, with the admin token; the finished process."""
    import os
    import subprocess
    from harness import FLEDGE
    return subprocess.run([FLEDGE, *args, "-a", "127.0.0.1:%d" % g.admin], capture_output=True, text=True,
                          timeout=20, env=dict(os.environ, FLEDGE_ADMIN_TOKEN=TOKEN))


def test_the_cli_pointed_at_a_follower_changes_the_whole_fleet_through_the_leader():
    spec = '{"steps": [10, 30, 60, 100], "interval": "1h"}'
    with RedisServer() as redis, mock() as v1, mock() as v2, Fleet(v1, redis, canary=v2, **WITH_TOKEN) as gs:
        leader = one_leader(gs)
        f1, f2 = [g for g in gs if g is not leader]
        out = fledge_cli(f1, "rollout", "weight", "chat", "42")
        assert out.returncode == 0 and "chat: canary weight 42.00%" in out.stdout, (out.stdout, out.stderr)
        wait_for("42% everywhere", lambda: all(weight(g) == 42 for g in gs), 1)
        out = fledge_cli(f2, "rollout", "start", "chat", "--spec", spec)
        assert out.returncode == 0 and "chat: rollout progressing, canary weight 10.00%" in out.stdout, out
        wait_for("the rollout everywhere", lambda: all(rollout(g)["state"] == "progressing" for g in gs), 1)
        out = fledge_cli(f1, "rollout", "pause", "chat")
        assert out.returncode == 0 and "chat: rollout paused" in out.stdout, out
        wait_for("paused everywhere", lambda: all(rollout(g)["state"] == "paused" for g in gs), 1)
        out = fledge_cli(f2, "rollout", "abort", "chat")
        assert out.returncode == 0 and "chat: rollout rolled_back, canary weight 0.00%" in out.stdout, out
        wait_for("0% everywhere", lambda: all(weight(g) == 0 for g in gs), 1)
        out = fledge_cli(f1, "rollout", "resume", "chat")      # the leader's refusal, as the leader said it
        assert out.returncode == 1 and "409 cannot resume: no rollout in a state that allows it" in out.stderr, out
        for g in gs:
            h = [e for e in request(g.admin, "GET", "/api/v1/events?route=chat", AUTH).json()["events"]]
            assert [(e["kind"], e["actor"]) for e in h if e["kind"] in ("weight", "rollout_started", "paused",
                                                                       "rolled_back")] == [
                ("weight", "cli"), ("rollout_started", "api"), ("paused", "api"), ("rolled_back", "api")], h
        # nobody leads (the lease held by a replica that is gone): the follower's own 503, not a timeout
        redis.command("SET", "t%d:leader" % redis.port, "gone:%d" % (cluster_of(leader)["epoch"] + 1), "PX", 60000,
                      db=3)
        wait_for("no leader", lambda: not any(cluster_of(g)["leading"] for g in gs), LEASE_S + 1)
        out = fledge_cli(f1, "rollout", "weight", "chat", "50")
        assert out.returncode == 1 and "503" in out.stderr and "did not answer within 5 s" in out.stderr, out
        assert all(weight(g) == 0 for g in gs)


def test_status_shows_each_replica_s_config_hash_and_history_the_replica_that_made_each_decision():
    with RedisServer() as redis, mock() as v1, mock() as v2, \
            Fleet(v1, redis, extras=("", "", "timeouts: { connect: 3s }\n"), canary=v2, **WITH_TOKEN) as gs:
        first = one_leader(gs)
        first_name = cluster_of(first)["replica"]
        hashes = {cluster_of(g)["replica"]: cluster_of(g)["config_hash"] for g in gs}
        assert hashes["r3"] != hashes["r1"] == hashes["r2"] and all(len(h) == 16 for h in hashes.values())
        wait_for("every heartbeat", lambda: len(cluster_of(gs[0])["replicas"]) == 3, 3)
        # REPLICA ROLE HEARTBEAT ("0.4s ago") LOG CONFIG-HASH CONFIG WEIGHTS
        def status_rows():         # gs[1] lists each replica once it has had that one's heartbeat
            rows = {ln.split()[0]: ln.split() for ln in fledge_cli(gs[1], "status").stdout.splitlines()
                    if ln.split() and ln.split()[0] in hashes}
            return rows if len(rows) == 3 else None
        rows = wait_for("every replica in gs[1]'s status", status_rows, 3, every=0.2)
        assert {n: r[5] for n, r in rows.items()} == hashes, rows
        odd = ["r3"] if first_name != "r3" else ["r1", "r2"]    # flagged: whose hash is not the leader's
        assert sorted(n for n, r in rows.items() if r[6] == "DIFFERS") == odd, rows
        assert all(r[6] == "same" for n, r in rows.items() if n not in odd), rows
        # one weight from each of two leaders in turn
        assert request(first.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": 41}).status == 200
        first.stop()                                    # a clean stop hands the lease on
        rest = [g for g in gs if g is not first]
        second = one_leader(rest)
        second_name = cluster_of(second)["replica"]
        assert request(second.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": 42}).status == 200
        wait_for("42% on the survivors", lambda: all(weight(g) == 42 for g in rest), 1)
        for g in rest:
            out = fledge_cli(g, "history").stdout.splitlines()
            assert out[0].split()[:6] == ["TIME", "(UTC)", "ROUTE", "REPLICA", "ACTOR", "EVENT"], out[0]
            # DATE TIME ROUTE REPLICA ACTOR EVENT FROM -> TO WHY...
            made = [ln.split() for ln in out[1:] if ln.split()[5:6] == ["weight"]]
            assert [(m[3], m[8]) for m in made] == [(first_name, "41.00"), (second_name, "42.00")], out
            events = request(g.admin, "GET", "/api/v1/events?route=chat", AUTH).json()["events"]
            assert [e["detail"]["replica"] for e in events if e["kind"] == "weight"] == [first_name, second_name]


def test_a_promql_check_gates_on_the_fleet_s_own_metrics_and_a_query_with_no_sample_never_passes():
    from harness import free_port
    from prom import Prometheus
    prom_port = free_port()
    extra = "analysis: { prometheus: \"http://127.0.0.1:%d\" }\n" % prom_port
    with RedisServer() as redis, mock() as v1, mock("--error-rate", 0.3, "--seed", 3) as v2, \
            Fleet(v1, redis, extras=(extra,) * 3, canary=v2, weight=0, **WITH_TOKEN) as gs, \
            Prometheus(["127.0.0.1:%d" % g.admin for g in gs], port=prom_port) as prom, Traffic(gs):
        prom.wait_targets_up()
        leader = one_leader(gs)
        # a metric nobody exports: every window is inconclusive, saying why, and nothing moves
        nothing = {"steps": [50, 100], "interval": "1s", "min_requests": 5, "checks": [
            {"metric": "business_errors", "query": 'sum(rate(no_such_total{version="{{canary}}"}[10s]))', "max": 0.01}]}
        assert request(leader.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, nothing).status == 200
        # a window with too little new traffic does not look at its checks: wait for one that did
        def looked_three_windows():
            ro = rollout(leader)
            last = ro.get("last_analysis") or {}
            return ro if last.get("evidence", {}).get("windows", 0) >= 3 and last.get("checks") else None
        ro = wait_for("three windows, the last one looked", looked_three_windows, 10, every=0.2)
        check = ro["last_analysis"]["checks"][0]
        assert ro["state"] == "progressing" and ro["step"] == 0, ro
        assert check["verdict"] == "inconclusive" and "no sample" in check["query_error"], check
        assert request(leader.admin, "POST", "/api/v1/routes/chat/rollout/abort", AUTH).status == 200
        # the canary's share of 5xx answers over the three replicas, against stable's
        share = ('(sum(rate(fledge_requests_total{route="chat",version="{{version}}",code=~"5.."}[5s])) or vector(0))'
                 ' / sum(rate(fledge_requests_total{route="chat",version="{{version}}"}[5s]))')
        spec = {"steps": [50, 100], "interval": "1s", "min_requests": 5, "max_failures": 2,
                "checks": [{"metric": "business_error_share", "query": share, "max_increase": 0.05}]}
        assert request(leader.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, spec).status == 200
        wait_for("rolled back", lambda: rollout(leader)["state"] == "rolled_back", 25, every=0.2)
        last = [e for e in request(leader.admin, "GET", "/api/v1/events?route=chat", AUTH).json()["events"]
                if e["kind"] == "rolled_back"][-1]
        check = last["detail"]["analysis"]["checks"][0]
        assert "business_error_share" in last["detail"]["reason"], last
        assert check["canary"] > 0.1 and check["stable"] < 0.05, check
        assert check["query"] == share


def test_a_leader_killed_during_the_acceptance_set_never_lets_the_canary_skip_it():
    import os
    from test_rollout import acceptance_file, chat_case
    path = acceptance_file([chat_case({"status": 200})] * 8)
    try:
        with RedisServer() as redis, mock() as v1, mock("--latency-ms", 700) as v2, \
                Fleet(v1, redis, canary=v2, weight=0, **WITH_TOKEN) as gs:
            leader = one_leader(gs)
            spec = dict(SPEC, acceptance=path)
            assert request(leader.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, spec).status == 200
            wait_for("the gate everywhere", lambda: all(rollout(g)["state"] == "acceptance" for g in gs), 2)
            leader.stop(signal.SIGKILL)
            rest = [g for g in gs if g is not leader]
            wait_for("rolled back", lambda: all(rollout(g)["state"] == "rolled_back" for g in rest), LEASE_S + 3)
            for g in rest:
                kinds = [k for k, _ in history(g)]
                assert kinds[-2:] == ["acceptance_started", "acceptance_failed"], kinds
                assert "acceptance_passed" not in kinds and "rollout_started" not in kinds, kinds
                assert weight(g) == 0
    finally:
        os.unlink(path)


def test_a_healthy_canary_on_spread_traffic_is_promoted_with_every_replica_following_each_decision_within_a_second():
    spec = {"steps": [20, 50, 100], "interval": "1s", "min_requests": 20,
            "checks": [{"metric": "error_rate", "max_increase": 0.05}]}
    with RedisServer() as redis, mock() as v1, mock() as v2, \
            Fleet(v1, redis, canary=v2, weight=0, **WITH_TOKEN) as gs, Traffic(gs):
        leader = one_leader(gs)
        assert request(leader.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, spec).status == 200
        seen, deadline = [], time.time() + 40
        while time.time() < deadline:
            ws = tuple(weight(g) for g in gs)
            seen.append((time.time(), ws))
            if ws == (100, 100, 100):
                break
            time.sleep(0.03)
        assert seen[-1][1] == (100, 100, 100), seen[-1]
        for w in (20, 50, 100):                        # from the first replica serving it to all three
            first = min(t for t, ws in seen if w in ws)
            together = min(t for t, ws in seen if ws == (w, w, w))
            print("    %d%%: every replica %.2fs after the first" % (w, together - first))
            assert together - first <= 1.0, (w, together - first)
        for g in gs:
            h = history(g)
            assert [k for k in h if k[0] in ("rollout_started", "step", "promoted")] == [
                ("rollout_started", 20), ("step", 50), ("promoted", 100)], h
        decided = [e for e in request(leader.admin, "GET", "/api/v1/events?route=chat", AUTH).json()["events"]
                   if e["kind"] in ("step", "promoted")]
        assert all(e["detail"]["analysis"]["replicas"] == 3 for e in decided), decided


def test_drift_is_judged_on_every_replica_s_values_even_by_a_leader_that_served_nothing():
    from harness import Load
    data = "data: { sample: 1, refresh: 1s }\n"
    spec = {"steps": [50, 100], "interval": "1s", "min_requests": 20, "max_failures": 1,
            "checks": [{"metric": "output_tokens_psi", "max": 0.2}]}
    knobs = ("--output-tokens-mean", 20, "--output-tokens-sd", 4)
    with RedisServer() as redis, mock(*knobs, "--seed", 1) as v1, \
            mock("--output-tokens-mean", 40, "--output-tokens-sd", 8, "--seed", 3) as longer, \
            Fleet(v1, redis, extras=(data,) * 3, canary=longer, weight=0, **WITH_TOKEN) as gs:
        leader = one_leader(gs)
        followers = [g for g in gs if g is not leader]
        loads = [Load(g.port, threads=2, rate=40) for g in followers]   # the leader serves nobody
        try:
            assert request(leader.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, spec).status == 200
            wait_for("rolled back", lambda: rollout(leader)["state"] == "rolled_back", 30, every=0.2)
        finally:
            for l in loads:
                l.__exit__(None, None, None)
        last = [e for e in request(leader.admin, "GET", "/api/v1/events?route=chat", AUTH).json()["events"]
                if e["kind"] == "rolled_back"][-1]
        drift = last["detail"]["analysis"]["drift"]["output_tokens"]
        assert "output_tokens_psi" in last["detail"]["reason"], last
        assert drift["n"] >= 100 and drift["n_reference"] >= 100 and drift["psi"] > 0.2, drift   # all from others
        served = request(leader.admin, "GET", "/metrics").body.decode()
        assert 'fledge_requests_total{route="chat"' not in served or all(
            ln.endswith(" 0") for ln in served.splitlines() if ln.startswith('fledge_requests_total{route="chat"')), \
            "the leader served requests itself"


def test_a_commit_whose_answer_is_lost_is_told_as_unknown_and_the_log_decides_for_every_replica():
    import threading
    with RedisServer() as redis, mock() as v1, mock() as v2, Fleet(v1, redis, canary=v2, **WITH_TOKEN) as gs:
        leader = one_leader(gs)
        wait_for("20% everywhere", lambda: all(weight(g) == 20 for g in gs), 3)
        stall = threading.Thread(target=lambda: redis.command("DEBUG", "SLEEP", "1.5"))
        stall.start()                                  # Redis takes the commit, but answers after the wait
        time.sleep(0.2)
        r = request(leader.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": 65})
        stall.join()
        assert r.status == 503 and "may still have been recorded" in r.body.decode(), (r.status, r.body)
        # whether Redis ran it or dropped it, the log decides, and every replica follows the log
        one_leader(gs)
        import json as _json
        logged = lambda: _json.loads(redis.command("HGET", "t%d:state" % redis.port, "chat", db=3))["weight_bp"] / 100
        wait_for("every replica on the log's weight", lambda: all(weight(g) == logged() for g in gs), 4, every=0.1)
        for g in gs:
            assert history(g).count(("weight", 65)) == (1 if logged() == 65 else 0), (logged(), history(g))


def test_a_canary_version_deployed_by_restarting_every_replica_is_taken_up_by_the_next_leader():
    with RedisServer() as redis, mock() as v1, mock() as v2:
        fleet = Fleet(v1, redis, extras=("", ""), canary=v2, **WITH_TOKEN)
        gs = fleet.gs
        try:
            leader = one_leader(gs)
            assert request(leader.admin, "PUT", "/api/v1/routes/chat/weight", AUTH, {"weight": 55}).status == 200
            wait_for("55% everywhere", lambda: all(weight(g) == 55 for g in gs), 2)
            names = [cluster_of(g)["replica"] for g in gs]
            dirs = [g.state_dir for g in gs]
            for g in gs:
                g.stop()
            new = fleet_yaml(v1, redis, "X", canary=v2).replace("version: v2", "version: v3")
            gs[:] = [Gateway(new.replace("replica: X", "replica: " + n), state_dir=d, **WITH_TOKEN)
                     for n, d in zip(names, dirs)]
            one_leader(gs)
            wait_for("the file's weight for v3 everywhere", lambda: all(weight(g) == 20 for g in gs), 4, every=0.1)
            for g in gs:
                kinds = [k for k, _ in history(g)]
                assert kinds.count("superseded") == 1, kinds
        finally:
            fleet.__exit__(None, None, None)
