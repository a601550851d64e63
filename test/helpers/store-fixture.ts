// A fresh, migrated metadata store for every test of a suite, with one
// account's running sandbox in it: the setup the store tests share. Call it
// in a describe block; read `store` and `sb` inside the tests (they change
// from test to test).
import { afterEach, beforeEach } from "vitest";
import { openMetadataStore } from "../../controller/db/factory.js";
import type { MetadataStore, SandboxRow } from "../../controller/db/types.js";
import type { databases, TestDatabase } from "./databases.js";
import { seedSandbox } from "./rows.js";

export function freshStoreEachTest(impl: (typeof databases)[number], at: Date): { readonly store: MetadataStore; readonly sb: SandboxRow } {
  let env: TestDatabase | undefined;
  let store: MetadataStore | undefined;
  let sb: SandboxRow | undefined;
  beforeEach(async () => {
    env = await impl.create();
    store = openMetadataStore(env.config, {});
    await store.migrate();
    sb = await seedSandbox(store, at);
  });
  afterEach(async () => {
    await store?.close();
    await env?.cleanup();
    store = sb = env = undefined;
  });
  return {
    get store() {
      if (!store) throw new Error("freshStoreEachTest: read inside a test");
      return store;
    },
    get sb() {
      if (!sb) throw new Error("freshStoreEachTest: read inside a test");
      return sb;
    },
  };
}
