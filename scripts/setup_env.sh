#!/usr/bin/env bash
# Build the development environment in .venv: ROS 2 Kilted wheels, ML stack, the message package
# (compiled with colcon into the venv, so nothing needs sourcing) and vlm_node in editable mode.
#
# Idempotent: each step leaves a stamp holding a hash of its inputs and is skipped while the hash is
# unchanged, so a second run takes a few seconds. `make setup` runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
STAMPS="$VENV/.vlm_node_stamps"
ROS2_VENDOR="$ROOT/vendor/ros2"
PIP=("$PY" -m pip --disable-pip-version-check --no-input -q)

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
# step NAME HASH -> true when the step must run
needs() { [ "$(cat "$STAMPS/$1" 2>/dev/null)" != "$2" ]; }
done_step() { echo "$2" >"$STAMPS/$1"; }

if [ "$(uname -sm)" != "Linux x86_64" ]; then
  echo "The ROS 2 PyPI wheels exist for Linux x86_64 only. On $(uname -sm), build ros2_ws with" \
       "colcon against a system ROS 2 install (see README, 'Build in a colcon workspace')." >&2
  exit 1
fi
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || { echo "$PYTHON not found (the ROS 2 wheels need CPython 3.10-3.13)" >&2; exit 1; }

if [ ! -x "$PY" ]; then
  log "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
mkdir -p "$STAMPS"

h=$(hash_of requirements/ros.txt requirements/runtime.txt requirements/dev.txt)
if needs pip "$h"; then
  log "installing pinned ROS 2 wheels, torch (CPU), transformers, OpenCV 4, onnxruntime, rosbags ..."
  "${PIP[@]}" install --upgrade pip
  "${PIP[@]}" install -r requirements/ros.txt -r requirements/runtime.txt -r requirements/dev.txt
  # --no-deps: its opencv-python requirement would shadow the pinned headless OpenCV 4.x.
  "${PIP[@]}" install --no-deps rapidocr-onnxruntime==1.4.4
  # Some dependency may still have pulled OpenCV 5 in; keep exactly one cv2.
  "${PIP[@]}" uninstall -y opencv-python opencv-contrib-python 2>/dev/null || true
  "${PIP[@]}" install --force-reinstall --no-deps "$(grep '^opencv-python-headless==' requirements/runtime.txt)"
  done_step pip "$h"
fi

# The wheels' exported CMake files hard-code the wheel builder's Python paths; point them at ours.
h=$(hash_of "$STAMPS/pip" scripts/setup_env.sh)
if needs cmake_paths "$h"; then
  log "rewriting wheel-builder paths in $VENV/share/*/cmake"
  py_inc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  np_inc=$("$PY" -c 'import numpy; print(numpy.get_include())')
  { grep -rl '/opt/python/cp3' "$VENV"/share/*/cmake 2>/dev/null || true; } | while read -r f; do
    sed -i -e "s#/opt/python/cp3[0-9]*-cp3[0-9]*/lib/python3\.[0-9]*/site-packages/numpy/_core/include#$np_inc#g" \
           -e "s#/opt/python/cp3[0-9]*-cp3[0-9]*/include/python3\.[0-9]*#$py_inc#g" "$f"
  done
  done_step cmake_paths "$h"
fi

# colcon_build NAME SRC: build the ROS package in SRC with colcon, merged into $VENV (nothing to source).
colcon_build() {
  log "building $1 with colcon into $VENV"
  (
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
    mkdir -p "$ROOT/build"
    "$VENV/bin/colcon" --log-base "$ROOT/build/colcon/log" build \
      --base-paths "$2" \
      --build-base "$ROOT/build/colcon/build" \
      --merge-install --install-base "$VENV" \
      --event-handlers console_cohesion- summary- \
      --cmake-args -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF >"$ROOT/build/colcon_$1.log" 2>&1 \
      || { tail -40 "$ROOT/build/colcon_$1.log" >&2; echo "colcon build failed; full log: build/colcon_$1.log" >&2; exit 1; }
  )
}

h=$(hash_of "$STAMPS/pip" ros2_ws/src/vlm_node_interfaces/package.xml ros2_ws/src/vlm_node_interfaces/CMakeLists.txt ros2_ws/src/vlm_node_interfaces/msg/*.msg)
if needs interfaces "$h" || ! "$PY" -c 'from vlm_node_interfaces.msg import SceneUnderstanding' 2>/dev/null; then
  colcon_build vlm_node_interfaces "$ROOT/ros2_ws/src/vlm_node_interfaces"
  done_step interfaces "$h"
fi

# launch_ros imports composition_interfaces, a compiled message package that is not on the registry:
# build it from its Kilted definitions in vendor/ros2/src (see vendor/ros2/README.md).
COMP_SRC="$ROS2_VENDOR/src/composition_interfaces"
h=$(hash_of "$STAMPS/pip" "$COMP_SRC"/package.xml "$COMP_SRC"/CMakeLists.txt "$COMP_SRC"/srv/*.srv)
if needs composition_interfaces "$h" || ! "$PY" -c 'from composition_interfaces.srv import LoadNode' 2>/dev/null; then
  # venvs set up before the vendored build carry a pip-installed copy; colcon's replaces it
  "${PIP[@]}" uninstall -y ros-composition-interfaces 2>/dev/null || true
  colcon_build composition_interfaces "$COMP_SRC"
  done_step composition_interfaces "$h"
fi

h=$(hash_of "$STAMPS/pip" setup.py setup.cfg package.xml)
if needs vlm_node "$h" || ! "$PY" -c 'import vlm_node' 2>/dev/null; then
  log "installing vlm_node (editable)"
  "${PIP[@]}" install --no-deps --no-build-isolation -e .
  done_step vlm_node "$h"
fi

# An editable install skips setup.py's data_files, so register vlm_node in the venv's ament index
# the way a colcon install would: package marker, share/vlm_node (package.xml, launch/, config/ as
# links into the checkout, so edits apply at once) and the node executable in lib/vlm_node. Then
# launch_ros finds `package=vlm_node executable=vlm_node` with AMENT_PREFIX_PATH=$VENV.
SHARE="$VENV/share/vlm_node"
mkdir -p "$VENV/share/ament_index/resource_index/packages" "$SHARE/config" "$VENV/lib/vlm_node"
: >"$VENV/share/ament_index/resource_index/packages/vlm_node"
ln -sfn "$ROOT/package.xml" "$SHARE/package.xml"
# launch/ as a directory of links, not one link: `ros2 launch` finds files with os.walk, which does
# not enter a linked directory.
if [ -L "$SHARE/launch" ]; then rm "$SHARE/launch"; fi
mkdir -p "$SHARE/launch"
find "$SHARE/config" "$SHARE/launch" -type l -delete
for f in "$ROOT"/config/*.yaml "$ROOT/vlm_node/assets/fastdds_large_images.xml"; do
  ln -sfn "$f" "$SHARE/config/$(basename "$f")"
done
for f in "$ROOT"/launch/*.launch.*; do
  ln -sfn "$f" "$SHARE/launch/$(basename "$f")"
done
# The main-module guard matters: the analysis process (`analysis_process`, multiprocessing's spawn)
# imports this script again in the child, which must not start a second node there.
printf '#!%s\nimport sys\nfrom vlm_node.ros.node_main import main\nif __name__ == "__main__":\n    sys.exit(main())\n' "$PY" \
  >"$VENV/lib/vlm_node/vlm_node"
chmod +x "$VENV/lib/vlm_node/vlm_node"

# The ROS 2 command-line tools (ros2cli and its topic, node, param, service, lifecycle, run, pkg,
# interface and launch commands) and launch/launch_ros are pure Python but not on the registry:
# install the wheels vendored in vendor/ros2/wheels, built from the Kilted release sources.
h=$(hash_of "$STAMPS/pip" "$ROS2_VENDOR"/wheels/*.whl)
if needs ros2_tools "$h" || ! "$PY" -c 'import ros2cli, ros2topic, launch_ros' 2>/dev/null; then
  log "installing the ROS 2 command-line tools and launch from vendor/ros2/wheels"
  "${PIP[@]}" install "$ROS2_VENDOR"/wheels/*.whl
  done_step ros2_tools "$h"
fi
# `ros2` with this venv on AMENT_PREFIX_PATH, as sourcing an install's setup.bash would do: `ros2 launch
# vlm_node ...`, `ros2 run` and `ros2 interface` find packages through the ament index in $VENV/share.
# Rewritten on every run because reinstalling ros2cli regenerates the plain entry-point script.
cat >"$VENV/bin/ros2" <<EOF
#!$PY
"""ros2 (vendored ros2cli) with the venv first on AMENT_PREFIX_PATH; from scripts/setup_env.sh."""
import os
import sys

prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
if sys.prefix not in prefixes:
    os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join([sys.prefix, *prefixes])
from ros2cli.cli import main
sys.exit(main())
EOF
chmod +x "$VENV/bin/ros2"

# A headless browser for the test that renders the demo/eval pages (tests/test_html_browser.py):
# Debian's chromium, installed when missing and this user may install system packages. Not a
# run-time need of the node, so elsewhere only a note; that test then fails and says what to do.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's chromium (headless page test)"; mkdir -p "$ROOT/build"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
      >"$ROOT/build/apt_chromium.log" 2>&1 || log "chromium could not be installed (see build/apt_chromium.log)"
  else
    log "note: no chromium; install it (apt-get install chromium) for the page test"
  fi
fi

"$PY" -c 'import rclpy, vlm_node, ros2cli, launch_ros; from vlm_node_interfaces.msg import SceneUnderstanding' \
  || { echo "set-up finished but the import check failed" >&2; exit 1; }
log "ready: $VENV"
