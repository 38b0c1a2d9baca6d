"""Input side: image decoding, undistortion, the transform buffer and frame synchronisation. Owns turning
messages into validated `Frame`s; does not select keyframes or know about objects."""
