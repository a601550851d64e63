// The agent's version: package.json's. The executable's build also puts it
// in as a constant (esbuild `define`), so the one file needs nothing beside it.
import pkg from "../package.json" with { type: "json" };

declare const __CROWNEST_AGENT_VERSION__: string | undefined;

export const AGENT_VERSION: string = typeof __CROWNEST_AGENT_VERSION__ === "string" ? __CROWNEST_AGENT_VERSION__ : pkg.version;
