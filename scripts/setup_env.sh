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
LAUNCH_WHEELS="${VLM_NODE_LAUNCH_WHEELS:-$ROOT/../shared/wheels/ros2-launch}"
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

h=$(hash_of "$STAMPS/pip" ros2_ws/src/vlm_node_interfaces/package.xml ros2_ws/src/vlm_node_interfaces/CMakeLists.txt ros2_ws/src/vlm_node_interfaces/msg/*.msg)
if needs interfaces "$h" || ! "$PY" -c 'from vlm_node_interfaces.msg import SceneUnderstanding' 2>/dev/null; then
  log "building vlm_node_interfaces with colcon into $VENV"
  (
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
    mkdir -p "$ROOT/build"
    cd ros2_ws
    "$VENV/bin/colcon" --log-base "$ROOT/build/colcon/log" build \
      --base-paths src/vlm_node_interfaces \
      --build-base "$ROOT/build/colcon/build" \
      --merge-install --install-base "$VENV" \
      --event-handlers console_cohesion- summary- \
      --cmake-args -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF >"$ROOT/build/colcon.log" 2>&1 \
      || { tail -40 "$ROOT/build/colcon.log" >&2; echo "colcon build failed; full log: build/colcon.log" >&2; exit 1; }
  )
  done_step interfaces "$h"
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
ln -sfn "$ROOT/launch" "$SHARE/launch"
find "$SHARE/config" -type l -delete
for f in "$ROOT"/config/*.yaml "$ROOT/vlm_node/assets/fastdds_large_images.xml"; do
  ln -sfn "$f" "$SHARE/config/$(basename "$f")"
done
printf '#!%s\nimport sys\nfrom vlm_node.ros.node_main import main\nsys.exit(main())\n' "$PY" \
  >"$VENV/lib/vlm_node/vlm_node"
chmod +x "$VENV/lib/vlm_node/vlm_node"

# ROS 2 launch/launch_ros are not on PyPI; the launch tests use wheels built from their sources
# where they are available beside the checkout (optional: the launch tests skip without them).
if [ -d "$LAUNCH_WHEELS" ]; then
  h=$(hash_of "$STAMPS/pip" "$LAUNCH_WHEELS"/*.whl)
  if needs launch "$h"; then
    log "installing ROS 2 launch + launch_ros wheels from $LAUNCH_WHEELS"
    "${PIP[@]}" install --find-links "$LAUNCH_WHEELS" \
      "$LAUNCH_WHEELS"/ros_composition_interfaces-*.whl "$LAUNCH_WHEELS"/launch-*.whl \
      "$LAUNCH_WHEELS"/launch_xml-*.whl "$LAUNCH_WHEELS"/launch_yaml-*.whl "$LAUNCH_WHEELS"/launch_ros-*.whl
    done_step launch "$h"
  fi
fi

"$PY" -c 'import rclpy, vlm_node; from vlm_node_interfaces.msg import SceneUnderstanding' \
  || { echo "set-up finished but the import check failed" >&2; exit 1; }
log "ready: $VENV"
