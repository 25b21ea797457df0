"""`python -m imgsearch`: the same command as `imgsearch`."""

from imgsearch.cli import main

main()
