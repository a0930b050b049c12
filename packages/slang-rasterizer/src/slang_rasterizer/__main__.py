"""``python -m slang_rasterizer precompile | check | clear-cache | info``.

See ``slang_rasterizer.compilation``.
"""

import sys

from .compilation import main

if __name__ == "__main__":
    sys.exit(main())
