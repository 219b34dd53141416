import sys

from wordorder_tui.cli import main

sys.exit(main())
