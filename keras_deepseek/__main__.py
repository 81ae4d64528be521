"""`python -m keras_deepseek ...`: see keras_deepseek/cli.py."""

import sys

from keras_deepseek.cli import main

sys.exit(main())
