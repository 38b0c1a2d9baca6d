"""TSDF fusion of depth into dense volumes (torch, CPU or CUDA). Owns volumes and how keyframes fill them;
does not mesh them or decide which objects need fusing."""
