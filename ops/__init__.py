"""bpy-free pipeline operations: decode, landmarks, pose, the take file, the command line."""
