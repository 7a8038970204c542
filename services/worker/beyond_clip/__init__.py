"""Beyond CLIP (Zhang, Ye, Hu, AAAI 2024): a large language model as Stable Diffusion's text
encoder. The LLM's last hidden states go through a small mapping network to the UNet's
cross-attention width; RepAdapters on the LLM's linear layers are trained for it and merged
into the weights before serving (docs/beyond-clip.md)."""
