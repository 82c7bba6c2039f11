"""Counts the instructions that matter in the attention kernels' SASS (issue #17): the pipelined forward
(attention_fwd_flash_kernel) and the single-kernel backward (attention_bwd_flash_kernel) must load shared-memory
fragments with LDSM (ldmatrix) and copy tiles with LDGSTS (cp.async), for every architecture the binary holds; the
backward must add dQ with fp32 atomics (RED on sm_80, REDG on sm_90, or ATOM) and the deterministic two-kernel
backward (attention_bwd_{dq,dkdv}_mma_kernel) must have none. Needs cuobjdump (and nvdisasm, which it calls) on PATH
or in $CUOBJDUMP; costs no GPU.

Usage (repo root):
  python benchmarks/check_sass.py [BINARY]   # BINARY: a built _C_cuda*.so or an object file; without it,
                                             # csrc/attention/attention_cuda.cu is compiled with nvcc (sm_80, sm_90)
Prints one row per (arch, kernel) and exits 1 when a flash kernel lacks one of those (2 when no tool)."""
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile

OPS = ("LDSM", "LDGSTS", "HMMA", "MUFU.EX2", "LDS", "STS", "STG", "BAR.SYNC", "RED", "REDG", "ATOM")
FLASH = ("fwd_flash", "bwd_flash_kernel")  # the kernels that must show LDSM and LDGSTS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cuobjdump() -> str:
    return os.environ.get("CUOBJDUMP") or shutil.which("cuobjdump") or ""


def compile_attention(out_dir: str) -> str:
    obj = os.path.join(out_dir, "attention_cuda.o")
    subprocess.run(["nvcc", "-std=c++17", "-O3", "--use_fast_math", "-lineinfo", "-I" + os.path.join(ROOT, "csrc"),
                    "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90", "-c",
                    os.path.join(ROOT, "csrc", "attention", "attention_cuda.cu"), "-o", obj], check=True)
    return obj


def count(binary: str) -> dict:
    """{(arch, mangled kernel name): Counter of OPS} over every attention kernel in binary's SASS."""
    sass = subprocess.run([cuobjdump(), "--dump-sass", binary], check=True, capture_output=True, text=True).stdout
    counts, arch, fn = collections.defaultdict(collections.Counter), None, None
    for line in sass.splitlines():
        m = re.search(r"arch = (sm_\d+)", line)
        if m:
            arch = m.group(1)
        m = re.search(r"Function : (\S+)", line)
        if m:
            fn = m.group(1)
        if fn is None or "attention" not in fn:
            continue
        for op in OPS:
            if re.search(r"\b" + re.escape(op) + r"[.\s]", line):
                counts[(arch, fn)][op] += 1
    return counts


def short(fn: str) -> str:
    m = re.search(r"(attention_\w+?_kernel)I\d*(\w+?)(Li(\d+)E)?E", fn)
    return f"{m.group(1)}<{m.group(2)}{', ' + m.group(4) if m.group(4) else ''}>" if m else fn[:60]


def main(argv) -> int:
    if not cuobjdump():
        print("cuobjdump not found (PATH or $CUOBJDUMP)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        binary = argv[1] if len(argv) > 1 else compile_attention(tmp)
        counts = count(binary)
    ok, found = True, collections.Counter()
    print(f"{'arch':6} {'kernel':48} " + " ".join(f"{op:>8}" for op in OPS))
    for (arch, fn), c in sorted(counts.items()):
        if not any(k in fn for k in ("fwd_flash", "fwd_mma", "bwd_flash_kernel", "bwd_dq_mma", "bwd_dkdv_mma")):
            continue
        print(f"{arch:6} {short(fn):48} " + " ".join(f"{c[op]:8d}" for op in OPS))
        for kind in FLASH:
            if kind in fn:
                found[kind] += 1
                if c["LDSM"] == 0 or c["LDGSTS"] == 0:
                    print(f"FAIL: {short(fn)} ({arch}) lacks LDSM or LDGSTS")
                    ok = False
        if "bwd_flash_kernel" in fn and c["RED"] + c["REDG"] + c["ATOM"] == 0:
            print(f"FAIL: {short(fn)} ({arch}) adds dQ without RED / REDG / ATOM")
            ok = False
        if ("bwd_dq_mma" in fn or "bwd_dkdv_mma" in fn) and c["RED"] + c["REDG"] + c["ATOM"] > 0:
            print(f"FAIL: {short(fn)} ({arch}), the deterministic backward, has atomics")
            ok = False
    for kind in FLASH:
        if found[kind] == 0:
            print(f"no attention_{kind} in the binary")
            ok = False
    print("OK: every flash forward / backward kernel has LDSM and LDGSTS (the backward RED for dQ, the deterministic "
          "one no atomics)" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
