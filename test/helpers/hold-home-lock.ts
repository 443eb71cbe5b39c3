/** Takes the lock of the home in argv[2], says "locked", and holds it until it is signalled. */
import { HomeStore } from "../../src/authority/store.js";

const store = new HomeStore(process.argv[2] as string);
await store.withLock(async () => {
  process.stdout.write("locked\n");
  await new Promise(() => setInterval(() => undefined, 1 << 30));
});
