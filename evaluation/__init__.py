"""The evaluation harness: the papers' protocols run against a backend (the gateway's
public HTTP API, or pipelines in process), scored by pluggable metrics, written up as a
Markdown + JSON report with plots (docs/toy-world.md)."""
