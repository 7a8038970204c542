"""`python -m services.gateway.routing`: the `llmga-router` command."""

from services.gateway.routing.cli import main

main()
