"""`python -m reasonscale.cli`."""

from reasonscale.cli import main

main()
