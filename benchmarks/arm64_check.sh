#!/usr/bin/env bash
# aarch64 under emulation, end to end: a Debian arm64 root (debootstrap + qemu-user-static),
# Python and the aarch64 wheels of onnxruntime, openvino, numpy and opencv-python-headless,
# the project's core install (no torch) from this working tree, then runtime.load(), describe,
# compute and check of the shipped FP32 graph and of the CPU INT8 graphs built for ARM
# (--for-isa neon and neon-dotprod, exported on this x86 host). Writes
# benchmarks/results/arm64-emulated.{json,md}: accuracy only, emulated time means nothing.
#
#   sudo benchmarks/arm64_check.sh            # ARM64_ROOT=/work/arm64root by default
#
# Needs root (debootstrap, chroot, binfmt_misc), apt-get and the package registry (pip). The
# root, the wheels and the graphs stay outside the repository. Each stage is skipped when its
# result is already there (delete ARM64_ROOT to start over). Not in CI: see the timing in the
# results file. check's held-out pairs are cut from photos that ship inside scikit-image and
# scikit-learn, so those two (aarch64 wheels, no torch) are installed beside the core.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
ROOT=${ARM64_ROOT:-/work/arm64root}
WHEELS=${ARM64_WHEELS:-/work/arm64wheels}
PAIRS=${ARM64_PAIRS:-2000}
SUITE=bookworm  # Debian 12: Python 3.11, glibc 2.36 (manylinux_2_36)
PY=${PYTHON:-python}
START=$(date +%s)
stage() { echo "== $* ($(( $(date +%s) - START )) s)"; }

stage "qemu-user-static, debootstrap, binfmt_misc"
if ! command -v debootstrap >/dev/null || [ ! -x /usr/bin/qemu-aarch64-static ]; then
    apt-get update -qq && apt-get install -y -qq qemu-user-static debootstrap binfmt-support
fi
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 2>/dev/null || true
grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64

stage "Debian $SUITE arm64 root at $ROOT"
if [ ! -x "$ROOT/usr/bin/python3" ]; then
    mkdir -p "$ROOT"
    debootstrap --arch=arm64 --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates \
        "$SUITE" "$ROOT" http://deb.debian.org/debian
fi
FAKESYS=$(mktemp -d)
cleanup() {
    for m in proc sys; do mountpoint -q "$ROOT/$m" && umount "$ROOT/$m"; done
    rm -rf "$FAKESYS"
}
trap cleanup EXIT
mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
# The x86 host's /sys describes no ARM CPU: OpenVINO's CPU plugin (oneDNN's xbyak_aarch64,
# hwloc) reads the CPU topology and MIDR_EL1 from sysfs and crashes in compile_model without
# them under qemu-user 7.2. A minimal sysfs of a 2-core Neoverse N1 (MIDR 0x410fd0c1) stands
# in; the instructions that run are qemu's emulated CPU's either way.
cpus=$FAKESYS/devices/system/cpu
for c in 0 1; do
    d=$cpus/cpu$c
    mkdir -p "$d/regs/identification" "$d/topology"
    echo 0x00000000410fd0c1 > "$d/regs/identification/midr_el1"
    echo 0 > "$d/topology/physical_package_id"
    echo "$c" > "$d/topology/core_id"
    echo "$c" > "$d/topology/core_cpus_list"
    echo "$c" > "$d/topology/thread_siblings_list"
    echo $((1 << c)) > "$d/topology/core_cpus"
    echo $((1 << c)) > "$d/topology/thread_siblings"
    echo 3 > "$d/topology/package_cpus"
    echo 0-1 > "$d/topology/package_cpus_list"
    echo 1 > "$d/online"
done
for f in possible present online; do echo 0-1 > "$cpus/$f"; done
mkdir -p "$ROOT/sys"
mountpoint -q "$ROOT/sys" || mount --bind "$FAKESYS" "$ROOT/sys"
# A clean environment: the host's PIP_* settings name host paths.
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

stage "aarch64 wheels (cp311, manylinux <= 2.36), downloaded on the host"
# The registry is reached with the host's pip and its configuration (/etc/pip.conf,
# ~/.config/pip, PIP_INDEX_URL); the root installs from the folder without network.
platforms=(--platform manylinux2014_aarch64)
for v in 17 27 28 31 34 35 36; do platforms+=(--platform "manylinux_2_${v}_aarch64"); done
mkdir -p "$WHEELS"
$PY -m pip download -q "${platforms[@]}" --only-binary=:all: --python-version 311 \
    --implementation cp -d "$WHEELS" numpy onnxruntime openvino opencv-python-headless \
    typer rich setuptools wheel scikit-image scikit-learn
rm -rf "$ROOT/opt/wheels" && mkdir -p "$ROOT/opt/wheels" && cp "$WHEELS"/*.whl "$ROOT/opt/wheels/"

stage "the project's core install (no torch) in $ROOT/venv"
rm -rf "$ROOT/opt/src" && mkdir -p "$ROOT/opt/src"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$ROOT/opt/src"
[ -x "$ROOT/venv/bin/python" ] || in_root python3 -m venv /venv
in_root /venv/bin/pip install -q --no-index --find-links /opt/wheels \
    "/opt/src[cpu,openvino]" scikit-image scikit-learn
in_root /venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"

stage "ARM INT8 graphs (neon, neon-dotprod) and the x86 reference, on the host"
WORK=$ROOT/opt/arm64-work
rm -rf "$WORK" && mkdir -p "$WORK"
cp hardnet_export/weights/hardnet_builtin.fp32.onnx "$WORK/"
for isa in neon neon-dotprod; do
    PYTHONPATH=$REPO $PY -m hardnet_export onnx -o "$WORK/hardnet.int8-cpu-$isa.onnx" \
        --precision int8 --int8-target cpu --for-isa "$isa"
done
PYTHONPATH=$REPO $PY - "$WORK" <<'EOF'
import json, sys
from pathlib import Path
import cv2, numpy as np
from hardnet_export import runtime
from hardnet_export.data.builtin import load_photo, split_photos, validation_pairs

work = Path(sys.argv[1])
graphs = [
    {"name": "fp32", "file": "hardnet_builtin.fp32.onnx"},
    {"name": "int8-cpu-neon", "file": "hardnet.int8-cpu-neon.onnx"},
    {"name": "int8-cpu-neon-dotprod", "file": "hardnet.int8-cpu-neon-dotprod.onnx"},
]
patches = validation_pairs(256, seed=1).anchors
image = np.ascontiguousarray(load_photo(split_photos("val")[0])[:240, :320])
found = cv2.SIFT_create(nfeatures=300).detect(image, None)
kps = np.array([[k.pt[0], k.pt[1], k.size, k.angle] for k in found], np.float32)
ref = {"patches": patches, "image": image, "keypoints": kps}
for g in graphs:
    d = runtime.load(work / g["file"], backend="onnxruntime", device="cpu")
    ref[g["name"] + ".describe"] = d.describe(patches)
    kept, desc = d.compute(image, kps)
    assert len(kept) == len(kps), "the reference keypoints must all be kept"
    ref[g["name"] + ".compute"] = desc
np.savez(work / "host-reference.npz", **ref)
(work / "graphs.json").write_text(json.dumps(graphs))
EOF
cp benchmarks/arm64_inside.py "$WORK/"

stage "load, describe, compute and check on aarch64 (emulated), $PAIRS pairs"
# Each graph on an emulated CPU of the kind it was made for: the neon graph on a Cortex-A72
# (ARMv8.0, no dot product), the others on a Neoverse N1 (dot product, no bf16), as robots'
# CPUs are (Raspberry Pi 4 / Jetson Orin class); the neon graph also on ONNX Runtime by name.
RUNS="fp32:neoverse-n1: int8-cpu-neon:cortex-a72: int8-cpu-neon:cortex-a72:onnxruntime"
RUNS="$RUNS int8-cpu-neon-dotprod:neoverse-n1:"
failures=0
for spec in $RUNS; do
    IFS=: read -r name cpu backend <<< "$spec"
    echo "-- $name on an emulated $cpu, backend ${backend:-by the runtime rules}"
    in_root QEMU_CPU="$cpu" /venv/bin/python /opt/arm64-work/arm64_inside.py /opt/arm64-work \
        "$PAIRS" "$name" $backend || failures=$((failures + 1))
done
SECONDS_TOTAL=$(( $(date +%s) - START ))

stage "results"
PYTHONPATH=$REPO $PY - "$WORK" "$SECONDS_TOTAL" "$failures" <<'EOF'
import json, platform, subprocess, sys
from pathlib import Path
runs = [("fp32", "neoverse-n1", ""), ("int8-cpu-neon", "cortex-a72", ""),
        ("int8-cpu-neon", "cortex-a72", "onnxruntime"), ("int8-cpu-neon-dotprod", "neoverse-n1", "")]
parts = []
for name, cpu, backend in runs:
    path = Path(sys.argv[1]) / f"arm64-result-{name}{'-' + backend if backend else ''}.json"
    if path.is_file():
        part = json.loads(path.read_text())
        for g in part["graphs"]:
            g.update(emulated_cpu=cpu, int8_isa=part["int8_isa"], cpu_features=part["cpu_features"])
        parts.append(part)
    else:
        parts.append({"graphs": [{"name": name, "file": name, "steps": {}, "ok": False,
                                  "backend_asked": backend or "the runtime's choice",
                                  "emulated_cpu": cpu, "error": "the emulated process crashed "
                                  "(see the script's log: qemu's signal)"}]})
first = next(p for p in parts if "python" in p)
result = {k: v for k, v in first.items() if k not in ("graphs", "int8_isa", "cpu_features")}
result["graphs"] = [g for part in parts for g in part["graphs"]]
qemu = subprocess.run(["/usr/bin/qemu-aarch64-static", "--version"], capture_output=True, text=True)
result["emulator"] = qemu.stdout.splitlines()[0] if qemu.stdout else None
result["x86_host"] = {"machine": platform.machine(), "python": platform.python_version()}
result["script_seconds"] = int(sys.argv[2])
result["failed_graphs"] = int(sys.argv[3])
out = Path("benchmarks/results")
(out / "arm64-emulated.json").write_text(json.dumps(result, indent=2) + "\n")
lines = [
    "# aarch64 under emulation: the core install, load, describe, compute, check",
    "",
    f"`benchmarks/arm64_check.sh`: Debian 12 arm64 root under {result['emulator']}, Python "
    f"{result['python']}, {', '.join(f'{k} {v}' for k, v in result['libraries'].items())}; "
    f"hardnet-export {result['hardnet_export']} installed from the working tree with "
    f"`[cpu,openvino]` (torch installed: {result.get('torch_installed')}). The whole script took "
    f"{result['script_seconds']} s (root, wheels and venv already there; emulated time says "
    "nothing about ARM speed).",
    "",
    "Accuracy only. *to x86*: the same graph's descriptors of the same input on the x86 host "
    "(ONNX Runtime); *check*: `hardnet-export check` on the emulated ARM CPU, the artifact "
    f"against its FP32 reference on {result['pairs']} held-out built-in pairs.",
    "",
    "| graph | emulated CPU (int8 kind seen) | backend asked | load: backend, precision | describe: cosine to x86 (min / mean) | compute: "
    "cosine to x86 (min / mean) | check: worst / mean cosine | NN acc FP32 -> artifact | "
    "result |",
    "|---|---|---|---|---|---|---|---|---|",
]
for g in result["graphs"]:
    s = g["steps"]
    def cell(step, a, b):
        return f"{s[step][a]:.4f} / {s[step][b]:.5f}" if step in s else "-"
    load = f"{s['load']['backend']}, {s['load']['precision']}" if "load" in s else "-"
    nn = (f"{s['check']['nn_accuracy_reference']:.2f} -> {s['check']['nn_accuracy_candidate']:.2f}"
          if "check" in s else "-")
    verdict = "passed" if g["ok"] else f"FAILED {g.get('error', '')}"
    lines.append(
        f"| {g['file']} | {g['emulated_cpu']} ({g.get('int8_isa', '?')}) | {g['backend_asked']} "
        f"| {load} | {cell('describe', 'cosine_to_x86_min', 'cosine_to_x86_mean')} "
        f"| {cell('compute', 'cosine_to_x86_min', 'cosine_to_x86_mean')} | "
        f"{cell('check', 'min_cosine', 'mean_cosine')} | {nn} | {verdict} |"
    )
lines.append("")
(out / "arm64-emulated.md").write_text("\n".join(lines))
print("\n".join(lines))
EOF
echo "arm64_check: $failures graph(s) failed, ${SECONDS_TOTAL} s"
exit "$failures"
