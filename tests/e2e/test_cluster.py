"""A fleet of three `fledge serve` replicas sharing one real redis-server (issue 16, first step):
exactly one leads, under a lease with a fencing epoch; a leader killed with -9 is replaced within
the lease; without Redis every replica serves on, says `degraded` and the old leader steps down at
its local deadline; with Redis back one leads again; /api/v1/cluster lists the replicas and flags
the one whose config differs."""
import signal
import subprocess
import time

from fleet import LEASE_S, Fleet, cluster_of, leaders, one_leader, wait_for
from harness import FLEDGE, Gateway, RedisServer, mock, request, route_yaml

def test_three_replicas_elect_exactly_one_leader_and_list_each_other():
    with RedisServer() as redis, mock() as backend, Fleet(backend, redis, extras=("", "", "timeouts: { connect: 3s }\n")) as gs:
        leader = one_leader(gs)
        time.sleep(LEASE_S)                                # and it stays one over a whole lease
        assert leaders(gs) == [leader]
        value = redis.command("GET", "t%d:leader" % redis.port, db=3)
        replica, epoch = value.rsplit(":", 1)
        assert int(epoch) == int(redis.command("GET", "t%d:epoch" % redis.port, db=3)) >= 1
        view = wait_for("three heartbeats", lambda: (lambda v: v if len(v["replicas"]) == 3 else None)(
            cluster_of(gs[0])), 3)
        assert view["leader"] == {"replica": replica, "epoch": int(epoch)}, view
        by_name = {r["replica"]: r for r in view["replicas"]}
        assert sorted(by_name) == ["r1", "r2", "r3"]
        assert all(r["heartbeat_age_ms"] < 2500 for r in by_name.values()), view
        assert by_name[replica]["leader"] and by_name["r1"]["admin"] == "127.0.0.1:%d" % gs[0].admin
        # r3's file has another connect timeout: flagged, unless r3 leads (then r1 and r2 are)
        differs = sorted(n for n, r in by_name.items() if r["config_differs"])
        assert differs == (["r3"] if replica != "r3" else ["r1", "r2"]), view
        metrics = "".join(request(g.admin, "GET", "/metrics").body.decode() for g in gs)
        assert metrics.count('fledge_cluster_leader{replica="%s"} 1' % replica) == 1, metrics
        assert metrics.count("\nfledge_cluster_redis_up 1\n") == 3
        for g in gs:
            assert request(g.admin, "GET", "/health").json()["status"] == "ok"
        out = subprocess.run([FLEDGE, "status", "-a", "127.0.0.1:%d" % gs[0].admin], capture_output=True, text=True,
                             timeout=10).stdout
        line = [ln for ln in out.splitlines() if ln.startswith("cluster ")]
        assert line and "replica r1 (%s), leader %s epoch %s, redis up, 3 replicas" % (
            "leader" if replica == "r1" else "follower", replica, epoch) in line[0], out
        assert "config differs from the leader's on: " in line[0], out


def test_a_leader_killed_with_sigkill_is_replaced_within_the_lease_by_a_higher_epoch():
    with RedisServer() as redis, mock() as backend, Fleet(backend, redis) as gs:
        leader = one_leader(gs)
        epoch = cluster_of(leader)["epoch"]
        leader.stop(signal.SIGKILL)
        killed = time.time()
        rest = [g for g in gs if g is not leader]
        second = one_leader(rest, timeout=LEASE_S + 1)
        took = time.time() - killed
        print("    takeover after kill -9: %.2fs (lease %.1fs)" % (took, LEASE_S))
        assert took <= LEASE_S + 0.15, took            # the lease, and the test's own polling
        assert cluster_of(second)["epoch"] > epoch


def test_without_redis_every_replica_serves_says_degraded_and_the_leader_steps_down_then_one_leads_again():
    with RedisServer() as redis, mock() as backend, Fleet(backend, redis) as gs:
        leader = one_leader(gs)
        epoch = cluster_of(leader)["epoch"]
        wait_for("the epoch seen by all", lambda: all(
            r["epoch_seen"] == epoch for r in cluster_of(leader)["replicas"]) and len(cluster_of(leader)["replicas"]) == 3, 3)
        redis.stop(signal.SIGKILL)
        gone = time.time()
        wait_for("every replica degraded", lambda: all(
            request(g.admin, "GET", "/health").json()["status"] == "degraded" for g in gs), 3)
        for g in gs:
            for _ in range(20):
                assert request(g.port, "GET", "/v1/models").status == 200
        wait_for("no leader", lambda: not leaders(gs), LEASE_S + 1)
        print("    leader stepped down %.2fs after redis went (lease %.1fs)" % (time.time() - gone, LEASE_S))
        assert time.time() - gone <= LEASE_S + 0.5
        metrics = request(leader.admin, "GET", "/metrics").body.decode()
        assert "fledge_cluster_redis_up 0" in metrics
        assert int(metrics.split("\nfledge_cluster_redis_errors_total ")[1].split()[0]) >= 1
        redis.restart()                                    # empty: it kept nothing
        again = one_leader(gs, timeout=LEASE_S + 4)
        assert cluster_of(again)["epoch"] > epoch          # the replicas remember past epochs
        wait_for("healthy again", lambda: all(
            request(g.admin, "GET", "/health").json()["status"] == "ok" for g in gs), 4)


def test_a_lone_gateway_has_no_cluster():
    with mock() as backend, Gateway(route_yaml(backend)) as alone:
        assert request(alone.admin, "GET", "/api/v1/cluster").status == 404
        assert "cluster" not in request(alone.admin, "GET", "/health").json()
