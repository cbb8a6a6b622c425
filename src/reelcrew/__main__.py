"""`python -m reelcrew` is the `reelcrew` command (useful where the script is not on PATH)."""

from reelcrew.cli import main

main()
