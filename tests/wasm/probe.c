/* A WASI command for the wasm runtime's tests: what it does is chosen by the
 * first word of stdin.
 *
 *   echo            copies the rest of stdin to stdout
 *   nothing         writes nothing
 *   context         prints argv, the Baetyl variables and GREETING, one a line
 *   count           prints how often this instance's static counter was
 *                   incremented (always 1 when every call starts afresh)
 *   exit N          writes three lines to stderr, exits with status N
 *   trap            writes a line to stderr, then executes `unreachable`
 *   spin            loops forever
 *   sleep MS        sleeps MS milliseconds, then prints "slept"
 *   grow            allocates 1 MiB blocks until malloc fails, prints MiB got
 *   open PATH       tries to read PATH, prints "opened" or "denied"
 *   state           prints where malloc put a block, whether it holds what
 *                   the previous call left in it and where the stack is
 *                   (the same every time when every call starts
 *                   afresh), then leaves
 *                   both changed: marks the block and exits from deep in
 *                   a recursion (the stack pointer, a wasm global, stays
 *                   where that recursion took it)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char input[4 * 1024 * 1024];
static int counter;
void* blocks[4096];

static const char mark[] = "left by the previous call";

/* Exits `depth` frames of 1 KiB deep, leaving the stack pointer there. */
static void exit_deep(int depth) {
  volatile char frame[1024];
  frame[0] = (char)depth;
  if (depth == 0) {
    fflush(stdout);
    exit(frame[0]);
  }
  exit_deep(depth - 1);
}

int main(int argc, char** argv) {
  size_t size = fread(input, 1, sizeof input - 1, stdin);
  input[size] = '\0';
  char* rest = strchr(input, ' ');
  rest = rest ? rest + 1 : input + size;
  if (strncmp(input, "echo", 4) == 0) {
    fwrite(rest, 1, size - (size_t)(rest - input), stdout);
  } else if (strncmp(input, "nothing", 7) == 0) {
  } else if (strncmp(input, "context", 7) == 0) {
    for (int i = 0; i < argc; ++i)
      printf("argv[%d]=%s\n", i, argv[i]);
    const char* names[] = {"MESSAGE_TOPIC", "MESSAGE_QOS", "MESSAGE_TIMESTAMP",
                           "FUNCTION_NAME", "FUNCTION_INVOKE_ID", "GREETING"};
    for (size_t i = 0; i < sizeof names / sizeof *names; ++i) {
      const char* value = getenv(names[i]);
      printf("%s=%s\n", names[i], value ? value : "(unset)");
    }
  } else if (strncmp(input, "count", 5) == 0) {
    printf("%d\n", ++counter);
  } else if (strncmp(input, "exit", 4) == 0) {
    fprintf(stderr, "probe: first line\nprobe: second line\nprobe: giving up\n");
    return atoi(rest);
  } else if (strncmp(input, "trap", 4) == 0) {
    fprintf(stderr, "probe: about to trap\n");
    __builtin_trap();
  } else if (strncmp(input, "spin", 4) == 0) {
    for (volatile unsigned long i = 0;; ++i) {
    }
  } else if (strncmp(input, "sleep", 5) == 0) {
    long ms = atol(rest);
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
    puts("slept");
  } else if (strncmp(input, "grow", 4) == 0) {
    int mib = 0;
    /* Keeping every block reachable keeps the compiler from eliding the
     * allocations (and with them the end of the loop). */
    while ((blocks[mib] = malloc(1024 * 1024)) != NULL && mib < 4095)
      ++mib;
    printf("%d\n", mib);
  } else if (strncmp(input, "state", 5) == 0) {
    char* block = malloc(sizeof mark);
    int here;
    printf("heap block at %p %s, stack at %p\n", (void*)block,
           block && memcmp(block, mark, sizeof mark) == 0 ? "stale" : "fresh",
           (void*)&here);
    if (block)
      memcpy(block, mark, sizeof mark);
    exit_deep(16);
  } else if (strncmp(input, "open", 4) == 0) {
    FILE* f = fopen(rest, "r");
    puts(f ? "opened" : "denied");
  } else {
    fprintf(stderr, "probe: unknown command\n");
    return 2;
  }
  return 0;
}
