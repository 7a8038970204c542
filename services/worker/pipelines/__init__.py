"""One module per diffusion task, each a function that runs one request on an already-loaded
pipeline: text_to_image, inpainting, outpainting (on the inpainting pipeline), with the
steps they share in common.py, and editing (its parts in services/worker/editing/)."""
