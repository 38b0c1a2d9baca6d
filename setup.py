from glob import glob

from setuptools import find_packages, setup

package_name = "dprecon_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["dprecon_ros", "dprecon_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.xml")),
        ("share/" + package_name + "/msg", glob("msg/*.msg") + glob("msg/*.srv") + glob("msg/*.action")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="dprecon_ros developers",
    maintainer_email="dev@dprecon-ros.invalid",
    description="Object-level 3D mapping from sparse views (DP-Recon) as a ROS 2 node",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "dprecon_node = dprecon_ros.ros.node:main",
            "dprecon_sim = dprecon_ros.ros.sim_node:main",
            "dprecon_record = dprecon_ros.ros.recorder_node:main",
            "dprecon_replay = dprecon_ros.ros.replay_node:main",
            "dprecon-reconstruct = dprecon_ros.tools.reconstruct:main",
            "dprecon-demo = dprecon_ros.tools.demo:main",
            "dprecon-sim-bag = dprecon_ros.tools.sim_bag:main",
        ],
    },
)
