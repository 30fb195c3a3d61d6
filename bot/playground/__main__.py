"""`python -m bot.playground` is `rollout-bot playground`."""

import sys

from bot.playground import main

sys.exit(main())
