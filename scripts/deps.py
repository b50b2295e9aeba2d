#!/usr/bin/env python3
"""deps.py — `make modules`: the module graph of src/ from its #include "..." lines; fails on a cycle.

A module is a .c/.h pair with the same base name (metrics.c + metrics.h = metrics). Files that
are parts of another module belong to it:
  - X_SUFFIX.c / X_SUFFIX.h where X is a module's base name: conf_int.h, conf_yaml.c -> conf;
    mock_int.h, mock_opts.c -> mock; proxy_int.h -> proxy; store_sqlite.c -> store;
  - a .c without a header of its own that includes some X_int.h implements part of X:
    exchange.c, account.c (they include proxy_int.h) -> proxy.
Every other file is its own module (main.c -> main, jsonutil.h -> jsonutil, worker.h -> worker),
so a types-only header (HAProxy's -t.h habit) is a module of its own that anyone may include.

Module A depends on B when a file of A includes a file of B. A cycle (A -> B -> A, or longer)
means neither can be built, tested or understood without the other; lower layers register
callbacks with higher ones instead. Prints each cycle as a path with the include lines behind its
edges and exits 1; with none, prints one summary line and exits 0.
  --graph   also prints each module with what it includes, lowest layers first.
  --src DIR another source folder (default: src/ beside this script's folder).
"""
import os
import re
import sys
from collections import deque

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def read_includes(src):
    """{file name: [(line number, included name)]} for every .c and .h directly in src."""
    files = {}
    for name in sorted(os.listdir(src)):
        if not name.endswith((".c", ".h")):
            continue
        with open(os.path.join(src, name), encoding="utf-8", errors="replace") as f:
            files[name] = [(n, m.group(1)) for n, line in enumerate(f, 1) if (m := INCLUDE.match(line))]
    return files


def module_of(files):
    """{file name: module name} by the rules in the docstring."""
    bases = {os.path.splitext(n)[0] for n in files}
    owner = {}
    for name in files:
        base = os.path.splitext(name)[0]
        prefix = base.rsplit("_", 1)[0] if "_" in base else None
        owner[name] = prefix if prefix in bases else base
    for name, includes in files.items():
        base = os.path.splitext(name)[0]
        if name.endswith(".c") and base + ".h" not in files and owner[name] == base:
            parts = [inc[: -len("_int.h")] for _, inc in includes if inc.endswith("_int.h") and inc in files]
            if parts:
                owner[name] = owner[parts[0] + "_int.h"]
    return owner


def build_graph(files, owner):
    """{module: {dependency: (file, line, included name)}}, the first include line behind each edge."""
    graph = {m: {} for m in owner.values()}
    for name, includes in files.items():
        for line, inc in includes:
            if inc not in files:
                continue                  # generated or outside src/: not a module of this graph
            a, b = owner[name], owner[inc]
            if a != b and b not in graph[a]:
                graph[a][b] = (name, line, inc)
    return graph


def components(graph):
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def shortest_path(graph, comp, start, goal):
    """Breadth-first path start .. goal inside comp, as a list of modules."""
    prev, queue = {start: None}, deque([start])
    while queue:
        v = queue.popleft()
        if v == goal:
            path = []
            while v is not None:
                path.append(v)
                v = prev[v]
            return path[::-1]
        for w in sorted(graph[v]):
            if w in comp and w not in prev:
                prev[w] = v
                queue.append(w)
    return None


def cycles(graph, comp):
    """For every edge inside comp, the shortest cycle through it; each cycle once, shortest first."""
    members, seen, out = set(comp), set(), []
    for a in comp:
        for b in sorted(graph[a]):
            if b not in members:
                continue
            loop = [a] + shortest_path(graph, members, b, a)   # a -> b -> ... -> a
            ring = loop[:-1]
            k = ring.index(min(ring))
            key = tuple(ring[k:] + ring[:k])
            if key not in seen:
                seen.add(key)
                out.append(list(key) + [key[0]])
    return sorted(out, key=lambda c: (len(c), c))


def layers(graph):
    """Modules by depth: 0 includes nothing of src/, n includes only modules below n."""
    depth = {}

    def level(v, trail):
        if v in depth:
            return depth[v]
        if v in trail:
            return 0                      # a cycle: reported elsewhere
        trail.add(v)
        depth[v] = 1 + max((level(w, trail) for w in graph[v]), default=-1)
        trail.discard(v)
        return depth[v]

    for v in sorted(graph):
        level(v, set())
    return depth


def main(argv):
    src = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    if "--src" in argv:
        src = argv[argv.index("--src") + 1]
    files = read_includes(src)
    owner = module_of(files)
    graph = build_graph(files, owner)
    n_edges = sum(len(d) for d in graph.values())
    if "--graph" in argv:
        depth = layers(graph)
        for v in sorted(graph, key=lambda m: (depth[m], m)):
            print(f"{depth[v]:2} {v}: {' '.join(sorted(graph[v]))}")
    comps = components(graph)
    found = [c for comp in comps for c in cycles(graph, comp)]
    for c in found:
        print("cycle: " + " -> ".join(c))
        for a, b in zip(c, c[1:]):
            name, line, inc = graph[a][b]
            print(f"  {a} -> {b}: {os.path.relpath(os.path.join(src, name))}:{line} #include \"{inc}\"")
    if found:
        print(f"modules: {len(found)} include cycle(s) through {sum(map(len, comps))} of {len(graph)} modules; "
              "point each dependency one way (a registered callback, a types-only header)")
        return 1
    print(f"modules: {len(graph)} modules, {n_edges} include edges, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
