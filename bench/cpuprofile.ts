// Reads a V8 .cpuprofile (what `node --cpu-prof` writes) and sums self time
// per function and per origin (project code, a dependency, Node internals,
// GC, idle), which is what the profile findings in BENCHMARKS.md quote.
import { readFile } from "node:fs/promises";
import { REPO_ROOT } from "./options.js";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  label: string;
  ms: number;
  percent: number;
}

export interface ProfileSummary {
  totalMs: number;
  /** Time not idle: what the process actually spent on the CPU. */
  busyMs: number;
  topFunctions: SelfTime[];
  byOrigin: SelfTime[];
}

/** Where a frame's code lives: "project agent/…", "dep @connectrpc/connect", "node:internal…", or V8's own pseudo-frames. */
export function originOf(frame: CallFrame): string {
  const url = frame.url;
  if (url === "") return frame.functionName.startsWith("(") ? frame.functionName : "(native)";
  if (url.startsWith("node:")) {
    // node:internal/crypto/hash → "node crypto", node:internal/streams/… → "node streams", node:buffer → "node buffer".
    const parts = url.slice("node:".length).split("/");
    return `node ${parts[0] === "internal" && parts.length > 2 ? parts[1] : parts[parts.length > 1 ? 1 : 0]}`;
  }
  const path = url.replace(/^file:\/\//, "");
  const nm = path.lastIndexOf("/node_modules/");
  if (nm >= 0) {
    const rest = path.slice(nm + "/node_modules/".length).split("/");
    return `dep ${rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  if (path.startsWith(REPO_ROOT)) return `project ${path.slice(REPO_ROOT.length + 1).split("/")[0]}`;
  return "other";
}

function shortUrl(url: string): string {
  const path = url.replace(/^file:\/\//, "");
  const nm = path.lastIndexOf("/node_modules/");
  if (nm >= 0) return path.slice(nm + "/node_modules/".length);
  if (path.startsWith(REPO_ROOT)) return path.slice(REPO_ROOT.length + 1);
  return path;
}

function ranked(map: Map<string, number>, totalMs: number, limit: number): SelfTime[] {
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([label, ms]) => ({ label, ms, percent: (ms / totalMs) * 100 }));
}

export function summarizeProfile(profile: CpuProfile, limit = 15): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const fn = new Map<string, number>();
  const origin = new Map<string, number>();
  let totalMs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]!);
    // timeDeltas[i] is the time before sample i; attribute it to that sample (V8's convention is close enough at 1 ms resolution).
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    if (!node || ms <= 0) continue;
    totalMs += ms;
    const f = node.callFrame;
    const label = f.url ? `${f.functionName || "(anonymous)"} ${shortUrl(f.url)}:${f.lineNumber + 1}` : f.functionName;
    fn.set(label, (fn.get(label) ?? 0) + ms);
    const o = originOf(f);
    origin.set(o, (origin.get(o) ?? 0) + ms);
  }
  const idle = origin.get("(idle)") ?? 0;
  return { totalMs, busyMs: totalMs - idle, topFunctions: ranked(fn, totalMs, limit), byOrigin: ranked(origin, totalMs, limit) };
}

export async function summarizeProfileFile(path: string, limit = 15): Promise<ProfileSummary> {
  // A profile is the bench's own output, not user data; it is parsed whole.
  return summarizeProfile(JSON.parse(await readFile(path, "utf8")) as CpuProfile, limit);
}

export function formatSummary(title: string, s: ProfileSummary): string {
  const lines = [`${title}: ${s.totalMs.toFixed(0)} ms sampled, ${s.busyMs.toFixed(0)} ms busy`, "  by origin (self time):"];
  for (const o of s.byOrigin) lines.push(`    ${o.percent.toFixed(1).padStart(5)} %  ${o.ms.toFixed(0).padStart(6)} ms  ${o.label}`);
  lines.push("  top functions (self time):");
  for (const f of s.topFunctions) lines.push(`    ${f.percent.toFixed(1).padStart(5)} %  ${f.ms.toFixed(0).padStart(6)} ms  ${f.label}`);
  return lines.join("\n");
}
