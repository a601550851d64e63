// The one place that turns configuration into a MetadataStore.
import type { DatabaseConfig } from "../config.js";
import { KyselyMetadataStore } from "./store.js";
import type { StoreOptions } from "./store.js";
import type { MetadataStore } from "./types.js";

/** Opens the store named by the configuration; call migrate() before use. */
export function openMetadataStore(config: DatabaseConfig, opts: StoreOptions = {}): MetadataStore {
  return new KyselyMetadataStore(config, opts);
}
