"""The toy world: seeded procedural scenes of coloured shapes, their captions, a judge
that reads them back from an image, and small diffusion models trained on them
(docs/toy-world.md)."""
