"""Training the diffusion models: the toy world's from nothing on a CPU, and the same
text-to-image recipe for real SD 1.5 fine-tuning with `accelerate` (docs/toy-world.md)."""
