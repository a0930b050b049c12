"""``python -m slang_marching_cubes precompile | check | clear-cache | info``.

See ``slang_marching_cubes.compilation``.
"""

import sys

from .compilation import main

if __name__ == "__main__":
    sys.exit(main())
