/* The identity function as a WASI command: stdin to stdout, unchanged.
 * Used by the tests (byte-for-byte outputs) and bench/runtimes_compare.sh. */
#include <stdio.h>

static char buffer[64 * 1024];

int main(void) {
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, stdin)) > 0)
    fwrite(buffer, 1, n, stdout);
  return 0;
}
