"""Helpers for tests and the demo: a graph client of the node, process start/stop, a private ROS environment.
Nothing here is used by the node itself."""
