"""DiffRIR: reference-based restoration of inpainted and outpainted images (docs/worker.md).

network.py (the model, with the released checkpoints' names), checkpoint.py (reading and
writing them), tiling.py (large images), restorer.py (the worker's restorer), synthesis.py
and train.py (training pairs and the training entry point).
"""
