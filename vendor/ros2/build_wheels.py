#!/usr/bin/env python3
"""Rebuild the vendored ROS 2 command-line and launch wheels from their Kilted release sources.

Why this exists: ros2cli, launch and launch_ros are pure Python but are not published on the
package registry that carries the ROS 2 Kilted wheels (ros-rclpy, ros-std-msgs, ...). `make setup`
installs the wheels this script writes to vendor/ros2/wheels/, so a fresh clone gets `ros2 topic`,
`ros2 param`, `ros2 lifecycle` and `ros2 launch` without a system ROS 2 install.

Sources: the ros2-gbp release repositories (bloom's import of each upstream release, one tag per
package and version), at the Kilted tags recorded in PACKAGES together with the commit each tag
must resolve to. The one change to upstream: `install_requires` is replaced by the package's
package.xml <exec_depend>s under their registry names (rclpy -> ros-rclpy, python3-yaml ->
PyYAML, ...), so pip knows what each wheel needs. Nothing else in the sources is touched.

    vendor/ros2/build_wheels.py                        # clones from github.com/ros2-gbp
    vendor/ros2/build_wheels.py --git-url '/mirror/ros2-gbp+{repo}/repo'   # local mirrors

Also exports composition_interfaces (message definitions only; `make setup` builds it with colcon,
since it is compiled code) to vendor/ros2/src/.
"""
from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Package:
    name: str
    repo: str  # ros2-gbp release repository
    version: str  # upstream version; the tag is release/kilted/<name>/<version>-<release>
    release: str
    commit: str  # what the tag must resolve to
    requires: tuple[str, ...] = ()  # registry names of package.xml's <exec_depend>s

    @property
    def tag(self) -> str:
        return f"release/kilted/{self.name}/{self.version}-{self.release}"


CLI = "0.38.4"
LAUNCH = "3.8.8"
LAUNCH_ROS = "0.28.6"
RCLPY = "ros-rclpy"
YAML = "PyYAML"

PACKAGES = [
    Package("rosidl_runtime_py", "rosidl_runtime_py-release", "0.14.2", "1",
            "83c36b39f5f667ea38767c3e25a8bfd900bc0d36", ("numpy", YAML, "ros-rosidl-parser")),
    Package("ros2cli", "ros2cli-release", CLI, "1", "e1f030c8b5dac4c5097bdb7ac96cc75c711a3fb6",
            ("argcomplete", "packaging", "psutil", RCLPY)),
    Package("ros2node", "ros2cli-release", CLI, "1", "70adb1ed040b9e0b4862ef54e75384ce4f219a5a",
            (f"ros2cli=={CLI}", RCLPY)),
    Package("ros2topic", "ros2cli-release", CLI, "1", "5712c6a434037f613af69833d703b911dbb2e1a3",
            (f"ros2cli=={CLI}", "numpy", YAML, RCLPY, "rosidl_runtime_py==0.14.2")),
    Package("ros2service", "ros2cli-release", CLI, "1",
            "fe1b46c862a28a89040659ccf2fd35f68d6b3b2b",
            (f"ros2cli=={CLI}", f"ros2topic=={CLI}", YAML, RCLPY, "rosidl_runtime_py==0.14.2")),
    Package("ros2param", "ros2cli-release", CLI, "1", "a11056727c497f4ec6c9d874f1b3af518f4a66f0",
            (f"ros2cli=={CLI}", f"ros2node=={CLI}", f"ros2service=={CLI}", RCLPY,
             "ros-rcl-interfaces")),
    Package("ros2lifecycle", "ros2cli-release", CLI, "1",
            "f7774a9fad5f4bece0c230681f80559b2a659aa4",
            (f"ros2cli=={CLI}", f"ros2node=={CLI}", f"ros2service=={CLI}", RCLPY,
             "ros-lifecycle-msgs")),
    # `ros2 pkg create` takes its licence texts from ament_copyright (ament_lint).
    Package("ament_copyright", "ament_lint-release", "0.19.3", "2",
            "7a824b23922892bf2ef032312b79f992eb261907", ("ros-ament-lint",)),
    Package("ros2pkg", "ros2cli-release", CLI, "1", "6aece89e3f58f5acb2db3ca25365e5597b473d8b",
            (f"ros2cli=={CLI}", "ros-ament-index-python", "catkin-pkg", "empy",
             "ament_copyright==0.19.3")),
    Package("ros2run", "ros2cli-release", CLI, "1", "3c05ce9743136c7a8d7e9b3a4852d0d6f0c3020c",
            (f"ros2cli=={CLI}", f"ros2pkg=={CLI}")),
    Package("ros2interface", "ros2cli-release", CLI, "1",
            "2e843258f4af5cab82d188ee964031338d151323",
            (f"ros2cli=={CLI}", "ros-ament-index-python", "ros-rosidl-adapter",
             "rosidl_runtime_py==0.14.2")),
    Package("launch", "launch-release", LAUNCH, "1", "b2743d30cf88e35edfb28f2c7035042dbded78d2",
            ("ros-ament-index-python", "osrf-pycommon", "lark-parser", YAML)),
    Package("launch_xml", "launch-release", LAUNCH, "1",
            "a211e9ef66e186271c060047dda399b62406ce7d", (f"launch=={LAUNCH}",)),
    Package("launch_yaml", "launch-release", LAUNCH, "1",
            "a0050533863516b45817029b9c7c270ff89297f7", (f"launch=={LAUNCH}",)),
    # composition_interfaces (also an <exec_depend>) is compiled; make setup builds it from
    # vendor/ros2/src with colcon, so it is no pip requirement here.
    Package("launch_ros", "launch_ros-release", LAUNCH_ROS, "1",
            "524cbcc266cf4c429bf61523545a01481ba80d7b",
            ("ros-ament-index-python", f"launch=={LAUNCH}", "osrf-pycommon", YAML, RCLPY,
             "ros-lifecycle-msgs")),
    Package("ros2launch", "launch_ros-release", LAUNCH_ROS, "1",
            "9784eaa17932f4364cb91a7470e7e0c66fd70b31",
            (f"ros2cli=={CLI}", f"ros2pkg=={CLI}", "ros-ament-index-python", f"launch=={LAUNCH}",
             f"launch_ros=={LAUNCH_ROS}", f"launch_xml=={LAUNCH}", f"launch_yaml=={LAUNCH}")),
]

# Message package: exported as source (package.xml, CMakeLists.txt, srv/), built by make setup.
INTERFACES = Package("composition_interfaces", "rcl_interfaces-release", "2.3.0", "2",
                     "007245793d509bf6d98de49082ba1ec5e5ae90a5")
INTERFACE_FILES = ("package.xml", "CMakeLists.txt", "srv")


def checkout(pkg: Package, url_template: str, dest: Path) -> Path:
    """Clone `pkg`'s tag into dest/<name> and check it is the recorded commit."""
    target = dest / pkg.name
    subprocess.run(["git", "-c", "advice.detachedHead=false", "clone", "-q", "--depth", "1",
                    "--branch", pkg.tag,
                    url_template.format(repo=pkg.repo), str(target)], check=True)
    head = subprocess.run(["git", "-C", str(target), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    if head != pkg.commit:
        sys.exit(f"{pkg.tag}: expected commit {pkg.commit}, got {head}")
    return target


def set_install_requires(setup_py: Path, requires: tuple[str, ...]) -> None:
    """Replace the `install_requires` keyword of the setup() call (adding it where missing)."""
    tree = ast.parse(setup_py.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, "id", None) == "setup"]
    if len(calls) != 1:
        sys.exit(f"{setup_py}: expected one setup() call, found {len(calls)}")
    call = calls[0]
    call.keywords = [k for k in call.keywords if k.arg != "install_requires"]
    call.keywords.append(ast.keyword(arg="install_requires", value=ast.List(
        elts=[ast.Constant(r) for r in requires], ctx=ast.Load())))
    setup_py.write_text(ast.unparse(tree) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--git-url", default="https://github.com/ros2-gbp/{repo}.git",
                        help="clone URL template; {repo} is the release repository's name")
    parser.add_argument("--out", type=Path, default=HERE / "wheels")
    args = parser.parse_args()
    # Fixed timestamps inside the wheels: rebuilding the same sources gives the same bytes.
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1735689600"}
    with tempfile.TemporaryDirectory(prefix="ros2_wheels_") as tmp:
        work = Path(tmp)
        for old in args.out.glob("*.whl"):
            old.unlink()
        args.out.mkdir(parents=True, exist_ok=True)
        for pkg in PACKAGES:
            src = checkout(pkg, args.git_url, work)
            set_install_requires(src / "setup.py", pkg.requires)
            subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "--no-build-isolation", "-w", str(args.out), str(src)],
                           check=True, env=env)
            print(f"{pkg.name} {pkg.version}: {pkg.tag} @ {pkg.commit}")
        src = checkout(INTERFACES, args.git_url, work)
        dest = HERE / "src" / INTERFACES.name
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for name in INTERFACE_FILES:
            copy = shutil.copytree if (src / name).is_dir() else shutil.copy2
            copy(src / name, dest / name)
        print(f"{INTERFACES.name} {INTERFACES.version}: {INTERFACES.tag} @ {INTERFACES.commit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
