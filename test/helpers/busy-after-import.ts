/**
 * Loads the CLI, and with it the authority and its lock library, says "busy", then blocks
 * its main thread in a synchronous loop: a stand-in for any hang in synchronous code (Node's
 * recursive mkdir on /proc spun like this). SIGTERM and SIGINT must still end it.
 */
import "../../src/cli/main.js";

process.stdout.write("busy\n");
for (;;) {
  // spin: the event loop never turns again
}
