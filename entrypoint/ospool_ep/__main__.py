import sys

from ospool_ep.cli import main

sys.exit(main())
