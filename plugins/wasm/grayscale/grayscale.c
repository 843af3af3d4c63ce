/* grayscale: a WASI command that reads an image (PNG, JPEG or BMP) on stdin
 * and writes its grayscale version as PNG on stdout.
 *
 * hubflow's `runtime: wasm` runs it once per message: the payload is stdin,
 * what it writes to stdout is published. A message that is not an image
 * makes it exit with status 1 after a line on stderr, which hubflow turns
 * into an error report (errorType WasmExit, errorMessage that line).
 *
 * Build (the hubflow build does this, into build/plugins/grayscale.wasm):
 *   clang --target=wasm32-wasi -O2 -I/usr/include/stb -o grayscale.wasm grayscale.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO /* images come from memory, not files */
#include "stb_image.h"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include "stb_image_write.h"

/* Reads all of stdin; NULL when memory runs out (instance.memory). */
static unsigned char* read_stdin(size_t* size) {
  size_t capacity = 64 * 1024;
  unsigned char* data = malloc(capacity);
  *size = 0;
  while (data) {
    size_t n = fread(data + *size, 1, capacity - *size, stdin);
    *size += n;
    if (n == 0)
      return data;
    if (*size == capacity) {
      unsigned char* bigger = realloc(data, capacity *= 2);
      if (!bigger)
        free(data);
      data = bigger;
    }
  }
  return NULL;
}

static void write_stdout(void* context, void* data, int size) {
  (void)context;
  fwrite(data, 1, (size_t)size, stdout);
}

int main(void) {
  size_t size = 0;
  unsigned char* input = read_stdin(&size);
  if (!input) {
    fprintf(stderr, "grayscale: out of memory reading the image\n");
    return 1;
  }
  if (size == 0 || size > 0x7fffffff) {
    fprintf(stderr, "grayscale: expected an image on stdin, got %zu bytes\n", size);
    return 1;
  }
  int width = 0, height = 0, channels = 0;
  /* Asking for 1 channel makes stb_image convert to luminance. */
  unsigned char* gray = stbi_load_from_memory(input, (int)size, &width, &height,
                                              &channels, 1);
  free(input);
  if (!gray) {
    fprintf(stderr, "grayscale: not an image I can read (%s)\n",
            stbi_failure_reason());
    return 1;
  }
  if (!stbi_write_png_to_func(write_stdout, NULL, width, height, 1, gray, width)) {
    fprintf(stderr, "grayscale: could not encode the PNG\n");
    return 1;
  }
  stbi_image_free(gray);
  return 0;
}
