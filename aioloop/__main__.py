"""``python -m aioloop run|serve``: see aioloop._cli."""
import sys

from aioloop._cli import main

if __name__ == "__main__":
    sys.exit(main())
