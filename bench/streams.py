#!/usr/bin/env python3
"""bench/streams.py: streaming clients for bench/run.sh (stdlib only, raw HTTP/1.1).

Two modes, each printing one JSON object on stdout:

  streams  N concurrent `POST /v1/chat/completions` with "stream": true against one port, all held
           open at once (asyncio, one process). Samples the resident memory (VmRSS, summed over
           the given pids) before the first connection, once all N streams have received their
           first SSE event ("during"), every 0.5 s for the peak, and once all have ended. A stream
           is complete when the answer is 200, fully framed (the last chunk, or Content-Length /
           close as the server said) and its body ends with `data: [DONE]`; anything else counts
           as incomplete, by reason.

  ttft     Time to first token: REQUESTS streamed requests per target, one at a time, the targets
           interleaved (request i goes to every target in turn, the order rotated each time) so
           that the machine's noise hits all of them alike. Blocking sockets, one keep-alive
           connection per target (re-opened if the server closes it). TTFT is measured from just
           before the request is written to the moment the first `data:` event whose delta
           carries a non-empty "content" has been read. Quantiles are nearest-rank.
"""
import argparse
import asyncio
import gc
import json
import math
import resource
import socket
import sys
import time


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_kib(pids):
    """Sum of VmRSS over pids (KiB); pids gone count 0."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def request_bytes(port, max_tokens, user):
    body = json.dumps({"model": "model", "stream": True, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "Tell me a story."}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            f"x-user-id: {user}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def parse_head(raw):
    """(status, {lower-name: value}) of a response head (bytes without the final CRLFCRLF)."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def ends_with_done(body):
    return body.rstrip().endswith(b"data: [DONE]")


# --- streams ---------------------------------------------------------------------------------

class Round:
    def __init__(self, n):
        self.n = n
        self.opened = 0          # streams that got their first SSE event
        self.unopened_over = 0   # streams over before their first event (failed to open)
        self.active = 0          # opened and not yet over
        self.complete = 0
        self.reasons = {}        # incomplete streams by reason
        self.first_errors = []
        self.all_open = asyncio.Event()

    def check_all_open(self):
        if self.opened + self.unopened_over >= self.n:
            self.all_open.set()


async def one_stream(rnd, port, max_tokens, idx, connect_sem, timeout):
    opened = False
    reason = None
    writer = None
    try:
        async with connect_sem:   # bounds the connects in flight, not the open streams
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
            writer.write(request_bytes(port, max_tokens, f"stream-{idx}"))
            await writer.drain()

        async def body():
            nonlocal opened
            head = await reader.readuntil(b"\r\n\r\n")
            status, headers = parse_head(head[:-4])
            if status != 200:
                return f"status_{status}"
            data = bytearray()

            def got(piece):
                nonlocal opened
                data.extend(piece)
                if not opened and b"data: " in data:
                    opened = True
                    rnd.opened += 1
                    rnd.active += 1
                    rnd.check_all_open()

            if "chunked" in headers.get("transfer-encoding", "").lower():
                while True:
                    line = await reader.readuntil(b"\r\n")
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while (await reader.readuntil(b"\r\n")) != b"\r\n":
                            pass
                        break
                    piece = await reader.readexactly(size + 2)
                    got(piece[:-2])
            elif "content-length" in headers:
                got(await reader.readexactly(int(headers["content-length"])))
            else:
                while True:
                    piece = await reader.read(65536)
                    if not piece:
                        break
                    got(piece)
            return None if ends_with_done(data) else "no_done"

        reason = await asyncio.wait_for(body(), timeout)
    except asyncio.IncompleteReadError:
        reason = "cut"
    except asyncio.TimeoutError:
        reason = "timeout"
    except (ConnectionError, OSError) as e:
        reason = type(e).__name__
        if len(rnd.first_errors) < 5:
            rnd.first_errors.append(f"{type(e).__name__}: {e}")
    except (ValueError, asyncio.LimitOverrunError):
        reason = "bad_framing"
    finally:
        if writer is not None:
            writer.close()
    if opened:
        rnd.active -= 1
    else:
        rnd.unopened_over += 1
        rnd.check_all_open()
    if reason is None:
        rnd.complete += 1
    else:
        rnd.reasons[reason] = rnd.reasons.get(reason, 0) + 1


async def streams_main(a):
    pids = [int(p) for p in a.pids.split(",") if p]
    rnd = Round(a.n)
    before = rss_kib(pids)
    t0 = time.monotonic()
    sem = asyncio.Semaphore(a.connect_concurrency)
    tasks = [asyncio.ensure_future(one_stream(rnd, a.port, a.max_tokens, i, sem, a.timeout))
             for i in range(a.n)]
    done_all = asyncio.ensure_future(asyncio.gather(*tasks))
    try:
        await asyncio.wait_for(asyncio.shield(rnd.all_open.wait()), a.open_deadline)
    except asyncio.TimeoutError:
        pass
    during = rss_kib(pids)
    open_at_sample = rnd.active
    ramp_s = time.monotonic() - t0
    peak = during
    while not done_all.done():
        await asyncio.wait({done_all}, timeout=0.5)
        peak = max(peak, rss_kib(pids))
    elapsed = time.monotonic() - t0
    after_end = rss_kib(pids)
    per_stream = (during - before) * 1024 / open_at_sample if open_at_sample else None
    out = {
        "streams": a.n, "complete": rnd.complete, "incomplete": a.n - rnd.complete,
        "incomplete_reasons": rnd.reasons, "errors": rnd.first_errors,
        "open_at_sample": open_at_sample, "ramp_s": round(ramp_s, 2), "seconds": round(elapsed, 2),
        "rss_before_kib": before, "rss_during_kib": during, "rss_peak_kib": peak,
        "rss_after_end_kib": after_end,
        "rss_per_stream_bytes": round(per_stream) if per_stream is not None else None,
    }
    print(json.dumps(out))


# --- ttft ------------------------------------------------------------------------------------

class Conn:
    def __init__(self, port):
        self.port = port
        self.sock = None
        self.buf = b""

    def open(self):
        self.close()
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def fill(self):
        piece = self.sock.recv(65536)
        if not piece:
            raise EOFError("connection closed by the server")
        self.buf += piece

    def read_until(self, sep):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + len(sep):]
                return out
            self.fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def has_token(events):
    """True when one of the complete SSE events in `events` carries a non-empty delta content."""
    for ev in events:
        for line in ev.split(b"\n"):
            if line.startswith(b"data: ") and line[6:].strip() != b"[DONE]":
                try:
                    choices = json.loads(line[6:]).get("choices") or []
                except ValueError:
                    continue
                for ch in choices:
                    if (ch.get("delta") or {}).get("content") or ch.get("text"):
                        return True
    return False


def ttft_once(conn, req):
    """One streamed request on conn: (ttft seconds or None, complete, keep_alive)."""
    if conn.sock is None:
        conn.open()
    t0 = time.perf_counter()
    conn.sock.sendall(req)
    status, headers = parse_head(conn.read_until(b"\r\n\r\n"))
    ttft = None
    body = b""
    pending = b""      # SSE text not yet split into events

    def feed(piece):
        nonlocal ttft, body, pending
        body += piece
        if ttft is None:
            pending += piece
            *events, pending = pending.split(b"\n\n")
            if events and has_token(events):
                ttft = time.perf_counter() - t0

    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int(conn.read_until(b"\r\n").split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while conn.read_until(b"\r\n") != b"":
                    pass
                break
            feed(conn.read_exact(size + 2)[:-2])
        keep = headers.get("connection", "").lower() != "close"
    elif "content-length" in headers:
        feed(conn.read_exact(int(headers["content-length"])))
        keep = headers.get("connection", "").lower() != "close"
    else:
        try:
            while True:
                conn.fill()
                feed(conn.buf)
                conn.buf = b""
        except EOFError:
            pass
        keep = False
    return ttft, status == 200 and ends_with_done(body), keep


def quantile(sorted_vals, q):
    if not sorted_vals:
        return None
    return sorted_vals[max(0, math.ceil(q * len(sorted_vals)) - 1)]


def ttft_main(a):
    targets = []
    for t in a.target:
        name, _, port = t.partition("=")
        targets.append((name, Conn(int(port)), request_bytes(int(port), a.max_tokens, "ttft")))
    samples = {name: [] for name, _, _ in targets}
    errors = {name: 0 for name, _, _ in targets}
    first_err = {}
    gc.disable()   # a collection in the middle of a request would add client-side noise to it
    for i in range(a.warmup + a.requests):
        k = i % len(targets)
        for name, conn, req in targets[k:] + targets[:k]:
            try:
                ttft, ok, keep = ttft_once(conn, req)
            except (OSError, EOFError, ValueError) as e:
                ttft, ok, keep = None, False, False
                first_err.setdefault(name, f"{type(e).__name__}: {e}")
            if not keep:
                conn.close()
            if i < a.warmup:
                continue
            if ok and ttft is not None:
                samples[name].append(ttft * 1000)
            else:
                errors[name] += 1
        if i % 50 == 0:
            gc.collect()
    out = {"requests": a.requests, "targets": {}}
    for name, _, _ in targets:
        v = sorted(samples[name])
        out["targets"][name] = {
            "n": len(v), "incomplete": errors[name], "error": first_err.get(name),
            "p50_ms": round(quantile(v, 0.50), 3) if v else None,
            "p90_ms": round(quantile(v, 0.90), 3) if v else None,
            "p99_ms": round(quantile(v, 0.99), 3) if v else None,
            "max_ms": round(v[-1], 3) if v else None,
            "mean_ms": round(sum(v) / len(v), 3) if v else None,
        }
    if a.raw:
        with open(a.raw, "w") as f:
            json.dump(samples, f)
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("streams", help="N concurrent SSE streams held open; RSS of the pids")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--n", type=int, default=5000)
    s.add_argument("--max-tokens", type=int, default=16)
    s.add_argument("--pids", default="", help="comma-separated pids whose VmRSS is summed")
    s.add_argument("--connect-concurrency", type=int, default=200)
    s.add_argument("--open-deadline", type=float, default=10,
                   help="sample 'during' after this many seconds even if not all streams are open")
    s.add_argument("--timeout", type=float, default=120, help="longest a stream may take")
    t = sub.add_parser("ttft", help="time to first token, targets interleaved")
    t.add_argument("--target", action="append", required=True, help="NAME=PORT (repeatable)")
    t.add_argument("--requests", type=int, default=400)
    t.add_argument("--warmup", type=int, default=20)
    t.add_argument("--max-tokens", type=int, default=4)
    t.add_argument("--raw", help="write every sample (ms) per target to this JSON file")
    a = ap.parse_args()
    hard = raise_nofile()
    if a.mode == "streams":
        if a.n + 64 > hard:
            sys.exit(f"streams.py: {a.n} streams need more descriptors than RLIMIT_NOFILE allows ({hard})")
        asyncio.run(streams_main(a))
    else:
        ttft_main(a)


if __name__ == "__main__":
    main()
