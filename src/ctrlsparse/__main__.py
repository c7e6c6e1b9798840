import sys

from ctrlsparse.cli import main

sys.exit(main())
