#!/usr/bin/env python
"""Run the 2-D lab's validations: same entry point and options as `python -m toy`."""

import sys

from toy.validation import main

if __name__ == "__main__":
    sys.exit(main())
