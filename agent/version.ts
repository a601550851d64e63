// The agent's version: package.json's, put in by the build (esbuild `define`);
// "dev" when the sources run through tsx.
declare const __CROWNEST_AGENT_VERSION__: string | undefined;

export const AGENT_VERSION: string = typeof __CROWNEST_AGENT_VERSION__ === "string" ? __CROWNEST_AGENT_VERSION__ : "dev";
