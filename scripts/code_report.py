#!/usr/bin/env python3
"""A map of src/ for reviews: lines per top-level module, the longest functions, and the
import graph with its circles.

Usage: scripts/code_report.py [SRC_DIR]   (default: src)

A file's module path comes from its place in the tree (foo/mod.rs and foo.rs are `foo`).
Every `crate::a::b::…`, `super::…` and `self::…` path in a file (in `use` lines and inline)
is resolved to the deepest module file that exists; a path into the file's own module, or
into one of its parents only through `mod.rs` re-exports, counts as an edge to that file.
Prints the strongly connected components with more than one file (the import circles), and
the number of edges. Test-only submodules (`tests.rs`, `*/tests/*`) are left out.
"""
import os
import re
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "src"
files = {}
for root, _, names in os.walk(src):
    for n in names:
        if not n.endswith(".rs"):
            continue
        p = os.path.join(root, n)
        rel = os.path.relpath(p, src)
        parts = rel[:-3].split(os.sep)
        if parts[-1] in ("mod", "lib"):
            parts = parts[:-1]
        if "tests" in parts:
            continue
        files[tuple(parts)] = rel

path_re = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
group_re = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*?)\}", re.S)


def resolve(mod, kind, segs):
    if kind == "crate":
        base = []
    elif kind == "self":
        base = list(mod)
    else:
        base = list(mod)
        while segs and segs[0] == "super":
            segs = segs[1:]
            base = base[:-1]
        base = base[:-1] if kind == "super" else base
    full = base + segs
    for k in range(len(full), 0, -1):
        if tuple(full[:k]) in files:
            return tuple(full[:k])
    return None


edges = {m: set() for m in files}
for mod, rel in files.items():
    text = open(os.path.join(src, rel)).read()
    text = re.sub(r"#\[cfg\(test\)\]\s*mod tests\s*\{.*", "", text, flags=re.S)
    # Comments (doc links included) are not imports.
    text = re.sub(r"//[^\n]*", "", text)
    found = []
    for m in group_re.finditer(text):
        prefix = [s for s in m.group(2).split("::") if s]
        for item in re.split(r",", m.group(3)):
            segs = [s.strip() for s in item.split("::") if s.strip() and s.strip() != "self"]
            segs = [re.sub(r"\s+as\s+\w+", "", s) for s in segs]
            segs = [s for s in segs if re.match(r"^[A-Za-z_]\w*$", s)]
            found.append((m.group(1), prefix + segs))
    for m in path_re.finditer(text):
        found.append((m.group(1), [s for s in m.group(2).split("::") if s]))
    for kind, segs in found:
        target = resolve(list(mod), kind, segs)
        if target is None or target == mod:
            continue
        # A folder's mod.rs and the files under it import each other by design (it declares
        # them, they use what it defines): only edges between non-nested modules count.
        nested = target[: len(mod)] == mod or mod[: len(target)] == target
        if not nested:
            edges[mod].add(target)

# Tarjan's strongly connected components.
index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]


def strong(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges[v]:
        if w not in index:
            strong(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        comps.append(comp)


sys.setrecursionlimit(10000)
for v in files:
    if v not in index:
        strong(v)
circles = [sorted("/".join(c) for c in comp) for comp in comps if len(comp) > 1]
print(f"{len(files)} files, {sum(len(e) for e in edges.values())} import edges")
print(f"{len(circles)} import circles")
for c in sorted(circles):
    print("  " + " <-> ".join(c))


# Lines per top-level module (a folder and its files, or one file).
sizes = {}
for mod, rel in files.items():
    top = rel.split(os.sep)[0].removesuffix(".rs")
    sizes[top] = sizes.get(top, 0) + sum(1 for _ in open(os.path.join(src, rel)))
print("lines per module: " + ", ".join(f"{k} {v}" for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])))

# The longest functions: from a `fn` line to its closing brace, test modules left out.
fn_re = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)")
lengths = []
for mod, rel in files.items():
    lines = open(os.path.join(src, rel)).read().split("\n")
    i = 0
    while i < len(lines):
        if re.match(r"^\s*#\[cfg\(test\)\]", lines[i]):
            break
        m = fn_re.match(lines[i])
        if m:
            depth, opened, j = 0, False, i
            while j < len(lines):
                code = re.sub(r"//.*", "", lines[j])
                code = re.sub(r"'(?:\\.|[^'\\])'", "", code)
                code = re.sub(r'"(?:\\.|[^"\\])*"', "", code)
                if not opened and ";" in code and "{" not in code:
                    break
                depth += code.count("{") - code.count("}")
                opened = opened or "{" in code
                if opened and depth <= 0:
                    break
                j += 1
            if opened:
                lengths.append((j - i + 1, f"{rel}::{m.group(1)}"))
            i = j + 1 if opened else i + 1
        else:
            i += 1
print("longest functions: " + ", ".join(f"{name} {n}" for n, name in sorted(lengths, reverse=True)[:8]))
