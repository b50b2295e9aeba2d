"""fleet.py — helpers for the cluster tests: replicas of one config sharing a real redis-server,
their view of the cluster, and waiting for one leader."""
from harness import Gateway, request, route_yaml, wait_for  # noqa: F401 (wait_for: for the tests)

LEASE_S = 2.0


def fleet_yaml(backend, redis, replica, extra="", canary=None, weight=20):
    return route_yaml(backend, canary, weight=weight) + extra + (
        "cluster: { redis: \"redis://127.0.0.1:%d/3\", name: t%d, replica: %s, lease: %dms }\n"
        % (redis.port, redis.port, replica, int(LEASE_S * 1000)))


def cluster_of(g):
    r = request(g.admin, "GET", "/api/v1/cluster")
    assert r.status == 200, (r.status, r.body)
    return r.json()


def leaders(gs):
    return [g for g in gs if cluster_of(g)["leading"]]


def one_leader(gs, timeout=LEASE_S + 3):
    found = wait_for("exactly one leader", lambda: (lambda ls: ls if len(ls) == 1 else None)(leaders(gs)), timeout)
    return found[0]


class Fleet:
    """Replicas r1..rN of one config (the i-th gets extras[i] added), each with its own state."""

    def __init__(self, backend, redis, extras=("", "", ""), canary=None, weight=20, **gateway_args):
        self.gs = []
        for i, extra in enumerate(extras):
            self.gs.append(Gateway(fleet_yaml(backend, redis, "r%d" % (i + 1), extra, canary, weight), **gateway_args))

    def __enter__(self):
        return self.gs

    def __exit__(self, *exc):
        for g in self.gs:
            g.__exit__(*exc)
