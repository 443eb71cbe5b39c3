/**
 * How a long-running command (`aztp audit view`, `aztp workload-api`) waits to be stopped: until
 * SIGTERM or SIGINT, after which it cleans up and exits 0; a second signal ends it at once.
 */

/** Resolves once SIGTERM or SIGINT arrives (a second one ends the process at once, exit 1). */
export function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    let signalled = false;
    const onSignal = (): void => {
      if (signalled) process.exit(1);
      signalled = true;
      resolve();
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}
