import sys

from cplvad.cli import main

sys.exit(main())
