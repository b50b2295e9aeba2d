"""On a machine with an NVIDIA GPU: fledge's GPU numbers (/api/v1/resources, through NVML) against
nvidia-smi's, read right after each other. Memory total must match exactly; memory used, power and
temperature within a small tolerance (they move between the two reads). Prints each comparison
and ends with "N passed, N failed". Not part of make test (CI machines have no GPU)."""
import csv
import io
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e"))
from harness import Gateway, mock, report, request, route_yaml  # noqa: E402

FIELDS = "index,uuid,memory.total,memory.used,temperature.gpu,power.draw,utilization.gpu"


def smi():
    out = subprocess.run(["nvidia-smi", "--query-gpu=" + FIELDS, "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout
    return {row[1].strip(): [c.strip() for c in row] for row in csv.reader(io.StringIO(out))}


def main():
    checks = []
    with mock() as m, Gateway("resources: { interval: 1s }\n" + route_yaml(m)) as gw:
        time.sleep(2.5)
        ours = request(gw.admin, "GET", "/api/v1/resources").json()
        theirs = smi()
        checks.append(("NVML loaded", ours["gpu_available"]))
        checks.append(("same GPUs", sorted(g["uuid"] for g in ours["gpus"]) == sorted(theirs)))
        for g in ours["gpus"]:
            t = theirs.get(g["uuid"])
            if not t:
                continue
            mib = 1 << 20
            print("gpu %s: ours %s, nvidia-smi %s" % (g["index"], g, t))
            checks.append(("gpu %s memory total" % g["index"], g["memory_total_bytes"] // mib == int(t[2])))
            checks.append(("gpu %s memory used within 256 MiB" % g["index"],
                           abs(g["memory_used_bytes"] / mib - int(t[3])) <= 256))
            if "temperature_celsius" in g:
                checks.append(("gpu %s temperature within 3 C" % g["index"], abs(g["temperature_celsius"] - int(t[4])) <= 3))
            if "power_watts" in g and t[5] not in ("[N/A]", "N/A"):
                checks.append(("gpu %s power within 25%%" % g["index"],
                               abs(g["power_watts"] - float(t[5])) <= 0.25 * max(float(t[5]), 1)))
    return report(checks)


if __name__ == "__main__":
    sys.exit(main())
