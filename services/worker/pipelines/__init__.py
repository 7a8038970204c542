"""One module per task, each a function that runs one request on what the worker loaded:
text_to_image, inpainting, outpainting (on the inpainting pipeline), controlnet (text-to-
image steered by a control image), with the steps they share in common.py; editing (its
parts in services/worker/editing/); and restoring (a DiffRIR or colour pass alone, no
diffusion pipeline)."""
