"""`python -m tests.playground` is `rollout-bot playground`."""

import sys

from tests.playground import main

sys.exit(main())
