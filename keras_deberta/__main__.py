"""`python -m keras_deberta ...`: see keras_deberta/cli.py."""

import sys

from keras_deberta.cli import main

sys.exit(main())
