#!/usr/bin/env node
// The package's `crownest` bin: loads the TypeScript client through tsx (as
// `npm start` runs the controller), in this process, from any directory.
import { register } from "tsx/esm/api";

register();
await import("./main.ts");
