// The agent an isolated sandbox runs, and what it needs to run in any
// image: the executable (`crownest-agent`, or until it is built `node` and
// the bundled `agent.mjs`) plus the host's loader and the few libraries it
// links (glibc, libstdc++, libgcc_s), copied once at start into a directory
// bound read-only beside it. The agent is started through that loader, so
// an image needs no glibc and no node: a busybox image, a musl image and a
// CUDA image all work alike. Commands use the image's own libraries.
import { execFileSync } from "node:child_process";
import { copyFile, mkdir, rm } from "node:fs/promises";
import { basename, join } from "node:path";

/** What the agent is on the host. */
export interface AgentProgram {
  executable: string;
  /** The bundled agent when the executable is node. */
  script?: string;
}

export interface AgentRuntime extends AgentProgram {
  /** Host directory holding the loader and libraries. */
  libDir: string;
  /** The loader's file name in libDir (ld-linux-x86-64.so.2). */
  loader: string;
}

/** Shared objects of an ELF executable, from ldd: [path], the loader among them. */
export function linkedLibraries(executable: string): { loader: string; libraries: string[] } {
  const out = execFileSync("ldd", [executable], { encoding: "utf8", timeout: 10_000 });
  let loader: string | undefined;
  const libraries: string[] = [];
  for (const line of out.split("\n")) {
    const arrow = /=>\s*(\/\S+)\s*\(/.exec(line);
    if (arrow) libraries.push(arrow[1]!);
    else {
      const bare = /^\s*(\/\S+)\s*\(/.exec(line);
      if (bare) loader = bare[1]!;
    }
  }
  if (!loader) throw new Error(`ldd ${executable}: no program interpreter (a static executable needs no loader, but is not supported here)`);
  return { loader, libraries };
}

export async function prepareAgentRuntime(stateDir: string, program: AgentProgram): Promise<AgentRuntime> {
  const libDir = join(stateDir, "agent-lib");
  await rm(libDir, { recursive: true, force: true });
  await mkdir(libDir, { recursive: true, mode: 0o755 });
  const { loader, libraries } = linkedLibraries(program.executable);
  for (const lib of [loader, ...libraries]) await copyFile(lib, join(libDir, basename(lib)));
  return { ...program, libDir, loader: basename(loader) };
}
