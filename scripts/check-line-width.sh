#!/bin/bash
# Fails, naming each line, when a line of product code (proxy/, stack/, fuzz/ sources
# and every CMakeLists.txt) is wider than 100 columns. Run as the `line_width` test.
# Columns are characters, so the ladder's box-drawing glyphs count one each.
set -u
root=${1:-$(dirname "$0")/..}
cd "$root" || exit 2
find proxy stack fuzz -name '*.cc' -o -name '*.h' -o -name 'CMakeLists.txt' -o -name '*.cmake' |
  sort | LC_ALL=C.UTF-8 xargs awk '
    length($0) > 100 { printf "%s:%d: %d columns\n", FILENAME, FNR, length($0); wide = 1 }
    END { exit wide }'
