"""`python -m reelcrew.cli` is the `reelcrew` command too."""

from reelcrew.cli import main

main()
