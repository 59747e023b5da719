import sys

from engine.doors.cli import main

sys.exit(main())
