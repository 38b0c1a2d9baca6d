"""dprecon_ros: object-level 3D mapping from sparse views (DP-Recon) as a ROS 2 package."""

__version__ = "0.1.0"
