"""`python -m recsemble ...`: the same command line as `recsemble ...`."""

from recsemble.cli import main

main()
