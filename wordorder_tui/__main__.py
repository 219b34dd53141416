import sys

from wordorder_tui.cli import main

# The guard matters: the model process is started with "spawn", which imports this module again.
if __name__ == "__main__":
    sys.exit(main())
