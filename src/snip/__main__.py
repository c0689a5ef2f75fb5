"""`python -m snip` runs the command-line interface."""

from snip.entrypoints.cli import main

main()
