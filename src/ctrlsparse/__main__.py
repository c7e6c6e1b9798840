from ctrlsparse.cli import main
import sys
sys.exit(main())
