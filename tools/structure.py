"""Structure measures the package is held to (issue 15): module sizes, import cycles, private access.

Run: python tools/structure.py [--max-lines 500] [package_dir]
Exits 1 when a module is over the limit, modules import each other in a cycle (imports under
`if TYPE_CHECKING:` do not count: they never run), or code reaches another module's private name
(`from m import _x`, `obj._x` where `_x` is not defined in the same module). Dunder names,
`self`/`cls` attributes and namedtuple's `_replace`/`_asdict` are fine.

`Any` is for data that really is untyped (JSON): it may appear in an annotation only as the value
type of a mapping (`dict[str, Any]`, a JSON object) or through `lookalike.types.JSONValue` (one
decoded JSON value). Anywhere else an annotation needs a real type, or, where none can be written
(a callable forwarding any arguments), a comment on the same line starting `# Any:` with the reason.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def defined_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


# namedtuple's public API is spelled with a leading underscore
PUBLIC = {"_replace", "_asdict", "_fields", "_make"}


def private(name: str) -> bool:
    dunder = name.startswith("__") and name.endswith("__")
    return name.startswith("_") and not dunder and name not in PUBLIC


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("package", nargs="?", default="lookalike")
    parser.add_argument("--max-lines", type=int, default=500)
    parser.add_argument(
        "--clients",
        nargs="*",
        default=[],
        help="folders of scripts held to the public API only (e.g. bench): private names are checked, "
        "not sizes or cycles",
    )
    parser.add_argument(
        "--any", action="store_true", help="also list every `Any` that is not JSON data"
    )
    args = parser.parse_args()
    root = Path(args.package).resolve()
    files = sorted(root.rglob("*.py"))
    mods = {module_name(root, p): p for p in files}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    problems: list[str] = []
    total = 0
    for mod, path in mods.items():
        text = path.read_text()
        lines = text.count("\n")
        total += lines
        if lines > args.max_lines:
            problems.append(f"size: {path.relative_to(root.parent)} has {lines} lines")
        tree = ast.parse(text)
        if args.any:
            problems += [f"any: {path.relative_to(root.parent)}:{n}" for n in loose_any(tree, text)]
        own = defined_names(tree)
        is_pkg = path.name == "__init__.py"
        typing_only = {
            id(n)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for stmt in block.body
            for n in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = resolve(mod, is_pkg, node)
                targets = [base]
                for alias in node.names:
                    if f"{base}.{alias.name}" in mods:
                        targets.append(f"{base}.{alias.name}")
                    elif private(alias.name):
                        problems.append(f"private: {mod}:{node.lineno} imports {base}.{alias.name}")
            elif isinstance(node, ast.Attribute) and private(node.attr):
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                    continue
                if node.attr not in own:
                    problems.append(f"private: {mod}:{node.lineno} reads .{node.attr}")
            if id(node) in typing_only:
                # annotations only: no import at run time, so no cycle
                targets = []
            for target in targets:
                if target in mods and target != mod and not mod.startswith(target + "."):
                    graph[mod].add(target)
    problems += [f"cycle: {' -> '.join(c)}" for c in cycles(graph)]
    for folder in args.clients:
        for path in sorted(Path(folder).rglob("*.py")):
            problems += client_problems(path)
    for line in problems:
        print(line)
    print(f"{len(mods)} modules, {total} lines, {len(problems)} problems")
    return 1 if problems else 0


MAPPINGS = {"dict", "Mapping", "MutableMapping"}


def loose_any(tree: ast.AST, text: str) -> list[int]:
    """Lines whose annotations (or casts) use `Any` outside a mapping's value type, unexplained."""
    lines = text.splitlines()
    annotations: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            every = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
            annotations += [arg.annotation for arg in every if arg is not None and arg.annotation]
            annotations += [node.returns] if node.returns else []
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        elif isinstance(node, ast.Assign) and isinstance(node.value, (ast.Subscript, ast.BinOp)):
            annotations.append(node.value)  # a type alias
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("cast", "typing.cast"):
            annotations += node.args[:1]
    out: list[int] = []
    for annotation in annotations:
        parents = {id(c): p for p in ast.walk(annotation) for c in ast.iter_child_nodes(p)}
        for node in ast.walk(annotation):
            if not (isinstance(node, ast.Name) and node.id == "Any"):
                continue
            up = parents.get(id(node))
            top = parents.get(id(up)) if isinstance(up, ast.Tuple) else None
            mapping_value = (
                isinstance(top, ast.Subscript)
                and ast.unparse(top.value).split(".")[-1] in MAPPINGS
                and isinstance(up, ast.Tuple)
                and up.elts[-1] is node
            )
            explained = "# Any:" in lines[node.lineno - 1]
            if not mapping_value and not explained:
                out.append(node.lineno)
    return out


def client_problems(path: Path) -> list[str]:
    """A script outside the package may use the package's public names only."""
    tree = ast.parse(path.read_text())
    own = defined_names(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lookalike"):
            out += [
                f"private: {path}:{node.lineno} imports {node.module}.{a.name}"
                for a in node.names
                if private(a.name)
            ]
        elif (
            isinstance(node, ast.Attribute)
            and private(node.attr)
            and node.attr not in own
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            out.append(f"private: {path}:{node.lineno} reads .{node.attr}")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as one cycle path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
