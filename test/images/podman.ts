// podman as this machine needs it: runc (crun fails here on hybrid cgroups),
// explicit ulimits (runc cannot set them otherwise), host network.
import { execFileSync, spawnSync } from "node:child_process";

/** A limit at most this process's own hard limit (runc may not raise it): `ulimit -H` of the shell. */
function limit(flag: "-n" | "-u", want: number): number {
  const hard = spawnSync("sh", ["-c", `ulimit -H ${flag}`], { encoding: "utf8" }).stdout.trim();
  return hard === "unlimited" || !/^\d+$/.test(hard) ? want : Math.min(want, Number(hard));
}
const NOFILE = limit("-n", 16384);
const NPROC = limit("-u", 4096);

export const RUN_FLAGS = ["--runtime", "runc", "--network", "host", "--ulimit", `nofile=${NOFILE}:${NOFILE}`, "--ulimit", `nproc=${NPROC}:${NPROC}`];

export function podman(args: string[], timeoutMs = 600_000): string {
  const r = spawnSync("podman", args, { encoding: "utf8", timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`podman ${args.join(" ")} failed (${r.status ?? r.signal}): ${(r.stderr || r.error?.message || "").trim().slice(-4000)}`);
  return r.stdout;
}

/** A container's output: podman logs writes the container's stdout to its stdout and stderr to its stderr. */
export function podmanLogs(name: string): { stdout: string; stderr: string } {
  const r = spawnSync("podman", ["logs", name], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  return { stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

/** Why the images test cannot run here, or undefined. It installs nothing itself. */
export function missingTools(): string | undefined {
  for (const tool of ["podman", "runc"]) {
    try {
      execFileSync(tool, ["--version"], { stdio: "ignore" });
    } catch {
      return `${tool} is not installed (Debian: apt-get install -y podman runc)`;
    }
  }
  return undefined;
}

/** The host's view of every process in a container's PID namespace: pid, command and real/effective uids. */
export function containerProcesses(name: string): { pid: number; comm: string; uids: number[] }[] {
  const pid = Number(podman(["inspect", "--format", "{{.State.Pid}}", name]).trim());
  const ns = spawnSync("readlink", [`/proc/${pid}/ns/pid`], { encoding: "utf8" }).stdout.trim();
  const out = [];
  const r = spawnSync("sh", ["-c", `for p in /proc/[0-9]*; do [ "$(readlink $p/ns/pid 2>/dev/null)" = "${ns}" ] && echo "\${p#/proc/} $(cat $p/comm) $(grep ^Uid: $p/status)"; done`], { encoding: "utf8" });
  for (const line of r.stdout.split("\n").filter(Boolean)) {
    const [p, comm, , ...uids] = line.split(/\s+/);
    out.push({ pid: Number(p), comm: comm!, uids: uids.map(Number) });
  }
  return out;
}
