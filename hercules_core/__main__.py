import sys

from hercules_core.cli import main

sys.exit(main())
