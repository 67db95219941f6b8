"""`mesh-node bench`: the backend comparison harness (llama.cpp, MLX, any URL, the mesh)."""
