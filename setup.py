"""ament_python package `vlm_node` (also installable with pip for development and bag tools)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "vlm_node"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["py.typed", "assets/**/*", "schema/*.json"]},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        # The Fast DDS profile lives in the Python package (vlm-node run applies it) and is
        # installed beside the configs too, for launch files and users' own processes.
        (f"share/{PACKAGE}/config", ["vlm_node/assets/fastdds_large_images.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="vlm_node maintainers",
    maintainer_email="vlm-node-maintainers@example.com",
    description="Anonymize camera frames, read traffic signs and describe scenes with a VLM.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            # `ros2 run vlm_node vlm_node` and the one CLI with subcommands.
            "vlm_node = vlm_node.ros.node_main:main",
            "vlm-node = vlm_node.cli.main:main",
        ],
    },
)
