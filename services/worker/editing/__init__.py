"""The parts of instruction editing (pipelines/editing.py runs them): caption encoding,
DDIM inversion with Direct Inversion, prompt-to-prompt attention control and DiffEdit's
mask."""
