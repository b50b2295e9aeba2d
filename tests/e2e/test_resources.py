"""Resources end to end: the host and watched processes as /proc reports them, in
/api/v1/resources and /metrics, and a rollout check on the canary's process memory."""
import os
import subprocess
import sys
import tempfile
import time

from harness import Gateway, Load, mock, request, route_yaml

TOKEN = "resources-test-token-0123456789"
AUTH = {"authorization": "Bearer " + TOKEN}
WITH_TOKEN = dict(env={"FLEDGE_TOKEN": TOKEN}, admin_extra="  token_env: FLEDGE_TOKEN\n")


def resources(gw):
    return request(gw.admin, "GET", "/api/v1/resources").json()


def process(gw, name):
    return [p for p in resources(gw)["processes"] if p["name"] == name][0]


def vmrss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        return [int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:")][0]


def metric(gw, name, label):
    for line in request(gw.admin, "GET", "/metrics").body.decode().splitlines():
        if line.startswith(name + "{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no %s with %s" % (name, label))


def wait_for(fn, timeout=5):
    deadline = time.time() + timeout
    while True:
        value = fn()
        if value or time.time() > deadline:
            return value
        time.sleep(0.1)


def test_a_watched_process_shows_its_memory_as_proc_does_and_goes_down_when_killed():
    sleeper = subprocess.Popen(["sleep", "987.654"])
    other = subprocess.Popen(["sleep", "876.5"])
    pid_file = tempfile.NamedTemporaryFile("w", suffix=".pid", delete=False)
    pid_file.write("%d\n" % other.pid)
    pid_file.close()
    conf = ("resources: { interval: 1s }\nprocesses:\n"
            "  - { name: sleeper, cmdline: \"^sleep 987\\\\.654$\" }\n"
            "  - { name: by-file, pid_file: %s, route: chat, variant: canary }\n" % pid_file.name)
    try:
        with mock() as m, Gateway(conf + route_yaml(m, m)) as gw:
            p = wait_for(lambda: process(gw, "sleeper")["running"] and process(gw, "sleeper"))
            assert p and p["pid"] == sleeper.pid, resources(gw)
            assert p["resident_bytes"] == vmrss_bytes(sleeper.pid), (p, vmrss_bytes(sleeper.pid))
            assert p["threads"] == 1 and p["open_fds"] >= 3 and 0 <= p["uptime_seconds"] < 60, p
            assert p["route"] is None and p["variant"] is None
            f = process(gw, "by-file")
            assert f["running"] and f["pid"] == other.pid and f["variant"] == "canary" and f["route"] == "chat", f
            label = 'process="sleeper"'
            assert metric(gw, "fledge_process_up", label) == 1
            assert metric(gw, "fledge_process_resident_bytes", label) == vmrss_bytes(sleeper.pid)

            sleeper.kill()
            sleeper.wait()
            assert wait_for(lambda: not process(gw, "sleeper")["running"]), process(gw, "sleeper")
            assert metric(gw, "fledge_process_up", label) == 0
            assert process(gw, "by-file")["running"]
    finally:
        for p in (sleeper, other):
            p.kill()
            p.wait()
        os.unlink(pid_file.name)


def meminfo():
    with open("/proc/meminfo") as f:
        return {l.split(":")[0]: int(l.split()[1]) * 1024 for l in f}


def test_a_reload_keeps_what_was_known_of_a_watched_process_until_the_next_sample():
    sleeper = subprocess.Popen(["sleep", "543.21"])
    conf = "resources: { interval: 30s }\nprocesses:\n  - { name: sleeper, cmdline: \"^sleep 543\\\\.21$\" }\n"
    try:
        with mock() as m, Gateway(conf + route_yaml(m)) as gw:
            before = wait_for(lambda: process(gw, "sleeper")["running"] and process(gw, "sleeper"))
            assert before, resources(gw)
            gw.reload(conf + route_yaml(m))              # the next sample is up to 30 s away
            after = process(gw, "sleeper")
            assert after["running"] and after["pid"] == sleeper.pid, after
            assert after["resident_bytes"] == before["resident_bytes"], (before, after)
            assert metric(gw, "fledge_process_up", 'process="sleeper"') == 1
    finally:
        sleeper.kill()
        sleeper.wait()


def test_host_numbers_match_proc():
    with mock() as m, Gateway("resources: { interval: 1s }\n" + route_yaml(m)) as gw:
        time.sleep(1.2)                                  # two samples: CPU usage is a difference
        host = resources(gw)["host"]
        want = meminfo()
        assert host["memory"]["total"] == want["MemTotal"], host["memory"]
        assert abs(host["memory"]["available"] - want["MemAvailable"]) <= 0.01 * want["MemTotal"], host["memory"]
        assert host["swap"]["total"] == want["SwapTotal"]
        assert len(host["cpu"]["cores"]) == os.cpu_count() and 0 <= host["cpu"]["usage"] <= 1, host["cpu"]
        assert host["filesystems"] and all(fs["size"] >= fs["free"] >= 0 for fs in host["filesystems"].values())
        assert "lo" in host["network"] and host["network"]["lo"]["receive_bytes"] > 0, host["network"]
        assert metric(gw, "fledge_host_memory_bytes", 'kind="total"') == want["MemTotal"]


HOLD = "import sys, time; block = b'x' * (int(sys.argv[1]) << 20); time.sleep(120)"


def test_a_canary_whose_process_uses_far_more_memory_is_rolled_back_by_process_rss():
    stable = subprocess.Popen([sys.executable, "-c", HOLD, "20", "fledge-test-stable"])
    canary = subprocess.Popen([sys.executable, "-c", HOLD, "120", "fledge-test-canary"])
    conf = ("resources: { interval: 1s }\nprocesses:\n"
            "  - { name: model-v1, cmdline: \"fledge-test-stable$\", variant: stable }\n"
            "  - { name: model-v2, cmdline: \"fledge-test-canary$\", variant: canary }\n")
    spec = {"steps": [50, 100], "interval": "2s", "min_requests": 10, "max_failures": 2,
            "checks": [{"metric": "process_rss", "max_ratio": 1.5}]}
    try:
        with mock(model="m-v1") as v1, mock(model="m-v2") as v2, \
                Gateway(conf + route_yaml(v1, v2, weight=0), **WITH_TOKEN) as gw, Load(gw.port):
            assert wait_for(lambda: process(gw, "model-v2").get("resident_bytes", 0) > 100 << 20, 10), resources(gw)
            assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, spec).status == 200
            r = wait_for(lambda: (lambda x: x if x["rollout"]["state"] != "progressing" else None)(
                request(gw.admin, "GET", "/api/v1/routes/chat").json()), 12)
            assert r and r["rollout"]["state"] == "rolled_back" and r["canary_weight"] == 0, r
            last = request(gw.admin, "GET", "/api/v1/events?route=chat").json()["events"][-1]
            assert last["detail"]["reason"] == "process_rss", last["detail"]
            check = last["detail"]["analysis"]["checks"][0]
            assert check["canary"] > 3 * check["stable"], check      # 120 MiB against 20 (plus the interpreter)
    finally:
        for p in (stable, canary):
            p.kill()
            p.wait()


FAKE_NVML = os.path.join(os.path.dirname(os.environ.get("FLEDGE", "build/fledge")), "tests", "libfake-nvml.so")


def test_gpus_and_each_watched_process_s_gpu_memory_come_from_nvml():
    sleeper = subprocess.Popen(["sleep", "765.43"])
    conf = ("resources: { interval: 1s, nvml_library: %s }\nprocesses:\n"
            "  - { name: gpu-user, cmdline: \"^sleep 765\\\\.43$\", variant: canary }\n" % os.path.abspath(FAKE_NVML))
    try:
        with mock() as m, Gateway(conf + route_yaml(m, m), env={"FAKE_NVML_PIDS": "%d:536870912" % sleeper.pid}) as gw:
            r = wait_for(lambda: (lambda x: x if x["processes"][0]["running"] else None)(resources(gw)))
            assert r["gpu_available"] is True and [g["name"] for g in r["gpus"]] == ["Fake GPU 0", "Fake GPU 1"], r
            g0, g1 = r["gpus"]
            assert g0["memory_used_bytes"] == 1 << 30 and g0["memory_total_bytes"] == 80 << 30 and g0["utilization"] == 0.37
            assert g0["temperature_celsius"] == 55 and "temperature_celsius" not in g1 and g0["power_watts"] == 123.456
            assert "utilization" not in g1 and g1["memory_used_bytes"] == 2 << 30       # GPU 1 is in MIG mode
            assert 'fledge_gpu_utilization_ratio{gpu="1"' not in request(gw.admin, "GET", "/metrics").body.decode()
            assert r["processes"][0]["gpu_memory_bytes"] == 536870912, r["processes"]
            assert metric(gw, "fledge_gpu_memory_used_bytes", 'gpu="1"') == 2 << 30
            assert metric(gw, "fledge_process_gpu_memory_bytes", 'process="gpu-user"') == 536870912
            assert "fledge_gpu_available 1" in request(gw.admin, "GET", "/metrics").body.decode()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_without_nvml_the_gateway_says_so_once_and_reports_no_gpu():
    with mock() as m, Gateway("resources: { interval: 1s, nvml_library: /nonexistent/libnvidia-ml.so.1 }\n"
                              + route_yaml(m)) as gw:
        time.sleep(2.5)                                  # several samples
        text = request(gw.admin, "GET", "/metrics").body.decode()
        assert "fledge_gpu_available 0" in text and "fledge_gpu_memory_used_bytes" not in text
        assert resources(gw)["gpu_available"] is False and resources(gw)["gpus"] == []
        assert gw.output().count("no GPU monitoring") == 1, gw.output()


def test_the_model_servers_own_metrics_are_scraped_and_relabelled():
    from harness import free_port
    from prom import promtool_check
    with mock(model="m-v1") as v1, mock("--kv-cache-usage", 0.9, "--ttft-ms", 30, model="m-v2") as v2:
        dead = free_port()
        conf = ("scrape: { interval: 1s, timeout: 500ms }\nroutes:\n  - name: chat\n    user_key: [header:x-user-id]\n"
                "    stable: { version: v1, backends: [127.0.0.1:%d], metrics_url: http://127.0.0.1:%d/metrics }\n"
                "    canary: { version: v2, backends: [127.0.0.1:%d], weight: 100,\n"
                "              metrics_url: [http://127.0.0.1:%d/metrics, http://127.0.0.1:%d/metrics] }\n"
                % (v1.port, v1.port, v2.port, v2.port, dead))
        with Gateway(conf) as gw:
            for i in range(3):
                r = request(gw.port, "POST", "/v1/chat/completions", {"x-user-id": "u%d" % i},
                            {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
                assert r.status == 200
            time.sleep(2.2)                                  # two scrapes
            text = request(gw.admin, "GET", "/metrics").body.decode()
            b2 = 'backend="127.0.0.1:%d"' % v2.port
            lines = [l for l in text.splitlines() if l.startswith("fledge_backend_vllm_kv_cache_usage_perc{")]
            assert 'fledge_backend_vllm_kv_cache_usage_perc{route="chat",variant="canary",%s,model_name="m-v2"} 0.9' % b2 \
                in lines, lines
            assert any('variant="stable"' in l and l.endswith(" 0.25") for l in lines), lines
            count = [l for l in text.splitlines()
                     if l.startswith("fledge_backend_vllm_time_to_first_token_seconds_count{") and b2 in l]
            assert count and count[0].endswith(" 3"), count          # the three streams the mock served
            assert 'fledge_backend_scrape_up{route="chat",variant="canary",backend="127.0.0.1:%d"} 0' % dead in text
            assert 'fledge_backend_scrape_up{route="chat",variant="canary",%s} 1' % b2 in text
            ok, out = promtool_check(text)
            assert ok, out
            targets = resources(gw)["backend_metrics"]
            assert [t["up"] for t in targets] == [True, True, False] and targets[2]["error"], targets


def test_samples_a_scrape_cannot_keep_are_counted_as_dropped():
    from harness import CaptureBackend
    text = "vllm:num_requests_waiting{%s} 1\n" % ",".join('n%d="%s"' % (i, "y" * 250) for i in range(5))  # > 1 KiB
    text += "".join('vllm:num_requests_running{slot="%d"} %d\n' % (i, i) for i in range(5000))
    text += "llamacpp:" + "x" * 200 + " 1\n"               # a name over 127 bytes: malformed
    text += "some_family_not_wanted 1\n"
    with mock() as v1, CaptureBackend(text.encode(), "text/plain; version=0.0.4") as server:
        conf = ("scrape: { interval: 1s }\nroutes:\n  - name: chat\n"
                "    stable: { version: v1, backends: [127.0.0.1:%d], metrics_url: http://127.0.0.1:%d/metrics }\n"
                % (v1.port, server.port))
        with Gateway(conf) as gw:
            target = wait_for(lambda: [t for t in resources(gw)["backend_metrics"] if t["up"]])
            assert target, resources(gw)
            assert target[0]["samples"] == 4096 and target[0]["samples_dropped"] == 5000 - 4096 + 1, target
            assert target[0]["malformed_lines"] == 1, target
            assert metric(gw, "fledge_backend_scrape_samples_dropped", 'route="chat"') == 905
            assert metric(gw, "fledge_backend_vllm_num_requests_running", 'slot="4095"') == 4095
    with mock() as v1, CaptureBackend(b"x" * ((64 << 20) + 1), "text/plain") as huge:   # read, but not all of it
        conf = ("scrape: { interval: 1s }\nroutes:\n  - name: chat\n"
                "    stable: { version: v1, backends: [127.0.0.1:%d], metrics_url: http://127.0.0.1:%d/metrics }\n"
                % (v1.port, huge.port))
        with Gateway(conf) as gw:
            target = wait_for(lambda: [t for t in resources(gw)["backend_metrics"] if t["error"]])
            assert target and "answer over 64 MiB" in target[0]["error"], resources(gw)["backend_metrics"]


def test_a_canary_whose_server_reports_a_full_kv_cache_is_rolled_back_by_a_backend_check():
    spec = {"steps": [50, 100], "interval": "2s", "min_requests": 10, "max_failures": 2,
            "checks": [{"metric": "backend:vllm:kv_cache_usage_perc", "max": 0.95}]}
    with mock(model="m-v1") as v1, mock("--kv-cache-usage", 0.97, model="m-v2") as v2:
        conf = ("scrape: { interval: 1s }\n" + route_yaml(v1, v2, weight=0)
                .replace("backends: [127.0.0.1:%d] }" % v1.port,
                         "backends: [127.0.0.1:%d], metrics_url: http://127.0.0.1:%d/metrics }" % (v1.port, v1.port))
                .replace("backends: [127.0.0.1:%d], weight" % v2.port,
                         "backends: [127.0.0.1:%d], metrics_url: http://127.0.0.1:%d/metrics, weight" % (v2.port, v2.port)))
        with Gateway(conf, **WITH_TOKEN) as gw, Load(gw.port):
            assert request(gw.admin, "POST", "/api/v1/routes/chat/rollout", AUTH, spec).status == 200
            r = wait_for(lambda: (lambda x: x if x["rollout"]["state"] != "progressing" else None)(
                request(gw.admin, "GET", "/api/v1/routes/chat").json()), 12)
            assert r and r["rollout"]["state"] == "rolled_back", r
            last = request(gw.admin, "GET", "/api/v1/events?route=chat").json()["events"][-1]
            assert last["detail"]["reason"] == "backend:vllm:kv_cache_usage_perc", last["detail"]
            check = last["detail"]["analysis"]["checks"][0]
            assert check["canary"] == 0.97 and check["stable"] == 0.25, check
