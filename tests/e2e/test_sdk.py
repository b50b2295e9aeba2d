"""Official SDKs against the gateway, as applications call it: the OpenAI Node SDK asks for
base64 embeddings by default, and both the answer it decodes and the data monitor's view of it
must be the real vectors."""
import json
import os
import subprocess

from harness import Gateway, mock, request
from test_data import DATA, data_of

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_MODULES = os.environ.get("FLEDGE_NODE_MODULES", os.path.join(HERE, "..", "..", "build", "node", "node_modules"))


def sdk_embed(port, text, header=None):
    args = ["node", os.path.join(HERE, "node", "embed.js"), "http://127.0.0.1:%d/v1" % port, text]
    out = subprocess.run(args + ([header] if header else []), capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, NODE_PATH=NODE_MODULES))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_node_sdks_default_embeddings_call_gets_the_real_dimension_and_the_monitor_reads_it():
    with mock("--embedding-dim", 12, "--seed", 3, model="m") as v1, mock("--embedding-dim", 12, "--seed", 3, model="m") as v2:
        routes = ("routes:\n  - name: embed\n    match: { path_prefix: /v1/ }\n"
                  "    stable: { version: v1, backends: [127.0.0.1:%d] }\n"
                  "    canary: { version: v2, backends: [127.0.0.1:%d], weight: 0 }\n"
                  "    rules:\n      - match: { header: { x-sdk: \"1\" } }\n        variant: canary\n") % (v1.port, v2.port)
        with Gateway(DATA + routes) as gw:
            texts = ["hello there", "a second sentence", "and a third one"]
            for t in texts:
                got = sdk_embed(gw.port, t, "x-sdk=1")              # base64, the SDK's default, on the canary
                assert got["dim"] == 12, got
                assert abs(got["norm"] - 1) < 1e-5, got
                r = request(gw.port, "POST", "/v1/embeddings", None, {"model": "m", "input": t})   # floats, stable
                assert r.status == 200 and len(r.json()["data"][0]["embedding"]) == 12
            d = data_of(gw, 2 * len(texts))
            s, c = d["stable"]["features"]["embedding_norm"], d["canary"]["features"]["embedding_norm"]
            assert d["canary"]["counts"]["values"] == d["stable"]["counts"]["values"] == 12 * len(texts), d
            assert abs(c["mean"] - s["mean"]) < 1e-5 and abs(c["mean"] - 1) < 1e-5, (s, c)
