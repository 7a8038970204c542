"""``python -m services.mllm``: serve the local engine (settings from ``LLMGA_MLLM_*``)."""

from services.mllm.app import main

if __name__ == "__main__":
    main()
