#!/usr/bin/env python3
"""Print the files an entry point imports from its own packages; fail on any third-party import.

The RPM's host launcher and the CVMFS cron probe run on a bare ``python3``
(EL9: 3.9, standard library only). This walks their imports, so that what the
RPM ships is computed rather than listed by hand:

    scripts/import_closure.py rpm/ospool-ep
        entrypoint/ospool_ep/__init__.py, entrypoint/ospool_ep/host/launch.py, ...
    scripts/import_closure.py ospool_ep.cvmfs.probe

An ENTRY is a dotted module name found under ``--path`` (default: the repo's
``entrypoint/``) or a file: a module of those packages by its path, or a
script such as ``rpm/ospool-ep``, which is followed but not printed. The output is one
file per line, sorted, relative to ``--relative-to`` (default: the repo):
every module reached, and the ``__init__.py`` of every package above each one,
which Python runs before the module.

The files are read with :mod:`ast`, never imported. Counted: ``import a.b``,
``from a.b import c`` (``c`` too when it is a module), relative imports, and
imports anywhere in a file, inside functions and ``try`` too, since they may
run. Not counted: the body of ``if TYPE_CHECKING:`` (``typing.TYPE_CHECKING``
is false when the program runs; its ``else:`` is counted), and imports by
computed name (``importlib.import_module(x)``, ``__import__``), which no reading
of the text can follow. A package is one with an ``__init__.py``; namespace
packages are not followed.

Exit status 1, with one ``file:line: why`` line per problem on stderr, when a
reached file imports a module that is neither the standard library nor under
``--path``, or imports a module of its own packages that does not exist. Runs
on Python 3.9 (``make rpm`` on EL9), where ``sys.stdlib_module_names`` is
missing and the interpreter's own library directory decides instead.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DESCRIPTION = "The files an entry point imports from its own packages (stdlib otherwise)."


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool
    is_script: bool = False

    @property
    def package(self) -> str:
        """The package relative imports start from (PEP 328: ``__package__``)."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


@dataclass
class Closure:
    files: set[Path] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def find_module(root: Path, name: str) -> Module | None:
    """``name`` under ``root`` as Python finds it: ``a/b.py`` or ``a/b/__init__.py``,
    every package above it a directory with an ``__init__.py``."""
    parts = name.split(".")
    for depth in range(1, len(parts)):
        if not (root.joinpath(*parts[:depth]) / "__init__.py").is_file():
            return None
    package = root.joinpath(*parts) / "__init__.py"
    if package.is_file():
        return Module(name, package, is_package=True)
    module = root.joinpath(*parts[:-1]) / f"{parts[-1]}.py"
    return Module(name, module, is_package=False) if module.is_file() else None


def is_stdlib(name: str) -> bool:
    """Whether the top-level module ``name`` is the standard library's."""
    names = getattr(sys, "stdlib_module_names", None)  # Python 3.10+
    if names is not None:
        return name in names
    if name in sys.builtin_module_names:
        return True
    spec = importlib.util.find_spec(name)  # a top-level name: found, not imported
    if spec is None or spec.origin is None:
        return False
    if spec.origin in ("built-in", "frozen"):
        return True
    origin = Path(spec.origin).resolve()
    if {"site-packages", "dist-packages"} & set(origin.parts):
        return False
    paths = sysconfig.get_paths()
    return any(Path(paths[key]).resolve() in origin.parents for key in ("stdlib", "platstdlib"))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    """(line, absolute module name, names imported from it) for each import that may run."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.found: list[tuple[int, str, tuple[str, ...]]] = []
        self.errors: list[tuple[int, str]] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for statement in node.orelse:
                self.visit(statement)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.extend((node.lineno, alias.name, ()) for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        names = tuple(alias.name for alias in node.names if alias.name != "*")
        if not node.level:
            self.found.append((node.lineno, node.module or "", names))
            return
        base = self.package.split(".") if self.package else []
        if node.level - 1 >= len(base):
            self.errors.append((node.lineno, "a relative import beyond the top-level package"))
            return
        parts = base[: len(base) - (node.level - 1)]
        self.found.append((node.lineno, ".".join([*parts, *filter(None, [node.module])]), names))


def closure(entries: Sequence[str], root: Path) -> Closure:
    """The files under ``root`` that ``entries`` reach, and every problem on the way."""
    result = Closure()
    pending: list[Module] = []
    for entry in entries:
        module = _entry(entry, root)
        if module is None:
            result.problems.append(f"{entry}: no such file, nor a module under {root}")
        else:
            pending.append(module)
    seen: set[Path] = set()
    while pending:
        module = pending.pop()
        if module.path in seen:
            continue
        seen.add(module.path)
        if not module.is_script:
            result.files.add(module.path)
        modules, problems = _imported_by(module, root)
        pending.extend(modules)
        result.problems.extend(problems)
    return result


def _entry(entry: str, root: Path) -> Module | None:
    """A file (a module of ``root`` by its path, or a script), or else a module name."""
    path = Path(entry)
    if path.is_file():
        return _module_of_file(path, root)
    return find_module(root, entry)


def _imported_by(module: Module, root: Path) -> tuple[list[Module], list[str]]:
    """The modules of ``root`` that running ``module`` imports first-hand (the packages
    above it included), and the problems with the rest of its imports."""
    parts = module.name.split(".")
    modules = [find_module(root, ".".join(parts[:depth])) for depth in range(1, len(parts))]
    try:
        tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
    except SyntaxError as error:  # e.g. a construct newer than EL9's Python 3.9
        version = ".".join(map(str, sys.version_info[:2]))
        return [], [f"{module.path}:{error.lineno}: {error.msg} (for Python {version})"]
    visitor = _Imports(module.package)
    visitor.visit(tree)
    problems = list(visitor.errors)
    for line, name, names in visitor.found:
        chain, problem = _reach(name, root)
        if problem:
            problems.append((line, f"imports {name}, {problem}"))
        modules.extend(chain)
        if chain and chain[-1].is_package:  # `from package import x`: a module or a name
            modules.extend(find_module(root, f"{chain[-1].name}.{x}") for x in names)
    found = [module for module in modules if module is not None]
    return found, [f"{module.path}:{line}: {why}" for line, why in sorted(problems)]


def _reach(name: str, root: Path) -> tuple[list[Module], str | None]:
    """The modules ``import name`` runs under ``root`` (``a``, ``a.b``, ``a.b.c``),
    or why it is a problem: not the standard library, or no such module."""
    parts = name.split(".")
    if find_module(root, parts[0]) is None:
        if is_stdlib(parts[0]):
            return [], None
        return [], (
            f"which is neither the standard library (all a bare python3 has) nor under {root}"
        )
    chain: list[Module] = []
    for depth in range(1, len(parts) + 1):
        found = find_module(root, ".".join(parts[:depth]))
        if found is None:
            return chain, f"which is not under {root}"
        chain.append(found)
    return chain, None


def _module_of_file(path: Path, root: Path) -> Module:
    """A file given by its path: the module of ``root`` it is, or else a script."""
    resolved, base = path.resolve(), root.resolve()
    if base in resolved.parents:
        parts = list(resolved.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        module = find_module(root, ".".join(parts)) if parts else None
        if module is not None and module.path.resolve() == resolved:
            return module
    return Module("__main__", path, is_package=False, is_script=True)


def _shown(path: Path, relative_to: Path) -> str:
    resolved = path.resolve()
    base = relative_to.resolve()
    return str(resolved.relative_to(base)) if base in resolved.parents else str(resolved)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("entries", nargs="+", metavar="ENTRY", help="module name or file")
    parser.add_argument("--path", type=Path, default=REPO / "entrypoint", help="package root")
    parser.add_argument("--relative-to", type=Path, default=REPO, help="print paths from here")
    args = parser.parse_args(argv)
    found = closure(args.entries, args.path)
    for problem in found.problems:
        print(f"import_closure: {problem}", file=sys.stderr)
    if found.problems:
        return 1
    for line in sorted(_shown(path, args.relative_to) for path in found.files):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
