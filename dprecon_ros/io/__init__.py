"""Bags and message building without ROS (rosbags): frames -> ROS messages, bags -> frames."""
