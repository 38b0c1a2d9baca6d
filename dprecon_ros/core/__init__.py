"""ROS-free core: frames, keyframes, objects, fusion, meshing, scene graph, export, metrics.

Nothing under this package imports rclpy; it runs offline, in tests and behind the node.
"""
