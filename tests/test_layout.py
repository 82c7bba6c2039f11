"""The shape of the package, checked from its source (ast, nothing imported): imports only run down the layers,
no import cycle, no private name imported across modules, no side-effect import swallowing its own failure, and
every op module registers its kernels the one way (custom op, CPU and CUDA bodies, KERNELS)."""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyfast")

# Lower layers never import higher ones. A module's layer is that of its longest listed prefix.
LAYERS = {
    "pyfast._native": 0, "pyfast._io": 0, "pyfast.rng": 1, "pyfast._info": 1,
    "pyfast.ops": 2, "pyfast.reference": 2,
    "pyfast.data": 3, "pyfast.nn": 3, "pyfast.keyedvectors": 3, "pyfast.word2vec_distributed": 3,
    "pyfast.word2vec_cuda": 3,
    "pyfast.word2vec": 4, "pyfast.models": 4,
    "pyfast.demo": 5, "pyfast.integrations": 5, "pyfast.bench": 5, "pyfast.cli": 5, "pyfast.__main__": 5, "pyfast": 6,
}


def _modules() -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, f), os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(dirpath, f)
    return out


MODULES = _modules()
NATIVE = ("pyfast._C", "pyfast._C_cuda")  # the compiled modules, imported only by pyfast._native


def _is_package(name: str) -> bool:
    return MODULES[name].endswith("__init__.py")


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str):
    """(target module, imported name or None, lineno) for every pyfast import in `module`, at any depth."""
    tree = ast.parse(open(MODULES[module]).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pyfast"):
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            if target.startswith("pyfast"):
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in MODULES or sub in NATIVE:  # `from . import attention`: the submodule itself
                        yield sub, None, node.lineno
                    else:
                        yield target, alias.name, node.lineno


def _layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def test_every_module_has_a_layer():
    assert all(_layer(m) >= 0 for m in MODULES)


def test_imports_run_down_the_layers():
    bad = []
    for m in MODULES:
        for target, _name, line in _imports(m):
            if target in NATIVE:
                assert m == "pyfast._native", f"{m}:{line} imports {target}: only pyfast._native loads the modules"
                continue
            if _layer(target) > _layer(m):
                bad.append(f"{m}:{line} imports {target}")
    assert not bad, "imports running back up the layers:\n" + "\n".join(bad)


def test_no_import_cycle():
    graph = {m: {t for t, _n, _l in _imports(m) if t in MODULES and t != m} for m in MODULES}
    # A package's __init__ re-exporting its children is not a cycle of logic: drop child -> parent-package edges
    # only where the parent is the child's own package (relative `from . import x` inside a package is fine).
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if m.startswith(t + "."):  # a module importing its own package's __init__ (the package re-exports)
                continue
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m)


def test_no_private_names_imported_across_modules():
    bad = [f"{m}:{line} imports {name} from {target}" for m in MODULES for target, name, line in _imports(m)
           if name is not None and name.startswith("_") and not name.startswith("__") and target != m]
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


def test_no_import_swallows_its_failure():
    bad = []
    for m, path in MODULES.items():
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Try) and any(isinstance(s, (ast.Import, ast.ImportFrom)) for s in node.body):
                for h in node.handlers:
                    broad = h.type is None or (isinstance(h.type, ast.Name) and h.type.id in ("Exception",
                                                                                            "BaseException"))
                    if broad and all(isinstance(s, ast.Pass) for s in h.body):
                        bad.append(f"{m}:{node.lineno}")
    assert not bad, "imports whose failure is silently dropped: " + ", ".join(bad)


OP_MODULES = sorted(m for m in MODULES if m.startswith("pyfast.ops.") and m.split(".")[-1] in
                    ("attention", "masking", "patch_masking", "sgns", "sgns_step"))


@pytest.mark.parametrize("module", OP_MODULES)
def test_op_module_registers_its_kernels_the_one_way(module):
    import importlib

    import torch

    mod = importlib.import_module(module)
    assert mod.KERNELS, f"{module}: KERNELS lists no op"
    for op, cpu_body, cuda_body in mod.KERNELS:
        assert isinstance(op, torch.library.CustomOpDef), f"{module}: {op!r} is not a custom op"
        assert op._qualname.startswith("pyfast::"), op._qualname
        assert callable(cpu_body) and callable(cuda_body) and cpu_body is not cuda_body
    assert not any(m.endswith("_cuda") and m.startswith("pyfast.ops.") for m in MODULES), \
        "CUDA bodies belong beside the CPU ones in ops/<op>.py"
