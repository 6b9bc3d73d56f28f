"""`python -m toy [--quick] [--out DIR] [--seed N]`: run the lab's validations."""

import sys

from toy.validation import main

if __name__ == "__main__":
    sys.exit(main())
