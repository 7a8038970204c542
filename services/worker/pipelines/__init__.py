"""One module per diffusion task, each a function that runs one request on an already-loaded
pipeline: text_to_image so far; inpainting, outpainting, editing and restoration later."""
