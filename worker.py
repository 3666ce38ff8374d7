"""The Temporal worker for agreement workflows.

Not built yet: the durable lifecycle (workflows, activities, this worker) is the next
issue. Until then this entry point says so instead of pretending to run.
"""

from __future__ import annotations

import sys


def main() -> int:
    print(
        "The worker is not built yet: agreement workflows arrive with the lifecycle issue. "
        "Use `agreements preview FILE` to see what an agreement will do.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
