"""Structure figures of the package: the longest functions and the import cycles between its modules.

    python tools/codestats.py            # sibp_np/
    python tools/codestats.py --top 10
    python tools/codestats.py OTHER/sibp_np   # e.g. an older checkout, for before and after

A function's length is its line count from ``def`` to its last line; the second figure leaves out its
docstring. An import
edge A -> B is any ``import`` of B in A, at module level or inside a function (a cycle through a
function-level import is still a cycle in the design).
"""
import argparse
import ast
from pathlib import Path


def functions(root):
    """``(lines, code_lines, "module:qualname")`` for every function and method under ``root``;
    ``code_lines`` leaves out the docstring."""
    out = []
    for path in sorted(Path(root).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(Path(root).parent).with_suffix("").as_posix().replace("/", ".")

        def visit(node, prefix, rel=rel):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = f"{prefix}{child.name}"
                    n = child.end_lineno - child.lineno + 1
                    first = child.body[0]
                    doc = (first.end_lineno - first.lineno + 1 if isinstance(first, ast.Expr)
                           and isinstance(getattr(first, "value", None), ast.Constant)
                           and isinstance(first.value.value, str) else 0)
                    out.append((n, n - doc, f"{rel}:{name}"))
                    visit(child, f"{name}.", rel)
                elif isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.", rel)
        visit(tree, "")
    return sorted(out, reverse=True)


def classes(root):
    """``(lines, methods, "module:qualname")`` for every class under ``root``."""
    out = []
    for path in sorted(Path(root).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(Path(root).parent).with_suffix("").as_posix().replace("/", ".")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                methods = sum(isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef)) for c in node.body)
                out.append((node.end_lineno - node.lineno + 1, methods, f"{rel}:{node.name}"))
    return sorted(out, reverse=True)


#: the figures a design review watches: the network class and SIBP's step (the step and Algorithm 1)
WATCHED = ("sibp_np.model:MLP", "sibp_np.sibp:SIBP.step", "sibp_np.sibp:SIBP._algorithm1")


def import_graph(root):
    """``{module: {imported package modules}}`` with dotted names (``sibp_np.train``).

    ``from pkg import mod`` is an edge to ``pkg.mod``; ``from pkg import name`` (a name defined in the
    package's ``__init__``) is an edge to the package only when nothing else is, and edges into a package's
    ``__init__`` are dropped: re-exporting its submodules there is not a cycle of the design.
    """
    root = Path(root)
    pkg = root.name
    modules = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        parts = list(rel.parts)
        is_init = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_init else parts)
        modules[name] = (path, is_init)
    graph = {}
    for name, (path, is_init) in modules.items():
        here = name.split(".") if is_init else name.split(".")[:-1]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here[:len(here) - node.level + 1] if node.level else []
                mod = ".".join(base + ([node.module] if node.module else []))
                subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules]
                targets = subs or [mod]
            for t in targets:
                if t in modules and t != name and t.split(".")[0] == pkg:
                    edges.add(t)
        graph[name] = edges
    packages = {m for m, (_, is_init) in modules.items() if is_init}
    return {m: {t for t in e if t not in packages} for m, e in graph.items()}


def cycles(graph):
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sorted(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parents[1] / "sibp_np"))
    p.add_argument("--top", type=int, default=5)
    a = p.parse_args(argv)
    print(f"longest functions in {Path(a.root).name}/:")
    for n, code, name in functions(a.root)[:a.top]:
        print(f"  {n:4d} lines ({code:3d} without the docstring)  {name}")
    print(f"largest classes in {Path(a.root).name}/:")
    for n, methods, name in classes(a.root)[:a.top]:
        print(f"  {n:4d} lines, {methods:2d} methods  {name}")
    sizes = {name: (n, code) for n, code, name in functions(a.root)}
    sizes.update({name: (n, None) for n, _, name in classes(a.root)})
    print("watched:")
    for name in WATCHED:
        n, code = sizes.get(name, (None, None))
        what = "absent" if n is None else f"{n} lines"
        what += "" if code is None else f" ({code} without the docstring)"
        print(f"  {name}: {what}")
    found = cycles(import_graph(a.root))
    print(f"import cycles between modules: {len(found)}")
    for comp in found:
        print("  " + " <-> ".join(comp))


if __name__ == "__main__":
    main()
