import sys

from pocketpack.cli import main

sys.exit(main())
