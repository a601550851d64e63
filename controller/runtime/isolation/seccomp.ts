// The seccomp filter of bwrap sandboxes: a classic BPF program built here
// from the x86-64 syscall table (linux arch/x86/entry/syscalls/syscall_64.tbl)
// and handed to bwrap with `--seccomp FD`. It refuses the kernel surface a
// sandbox never needs and that turns kernel bugs into escapes: new
// namespaces (a nested user namespace makes its code root again), keyrings,
// eBPF, userfaultfd, perf, file handles (open_by_handle_at read a host file
// by inode before round three), kexec, mounts and ptrace. clone3 answers
// ENOSYS, so libc falls back to clone, whose flags the filter can inspect
// (clone3 passes them in memory, out of a filter's reach).
import { arch } from "node:os";

const AUDIT_ARCH_X86_64 = 0xc000003e;
const X32_SYSCALL_BIT = 0x40000000;
const EPERM = 1;
const ENOSYS = 38;

const RET_ALLOW = 0x7fff0000;
const RET_KILL_PROCESS = 0x80000000;
const RET_ERRNO = 0x00050000;

// struct seccomp_data: nr (u32) at 0, arch (u32) at 4, ip at 8, args[6] (u64) from 16.
const NR_OFFSET = 0;
const ARCH_OFFSET = 4;
const ARG0_LOW_OFFSET = 16; // little-endian: the low 32 bits of args[0]

// Namespace flags: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET; unshare(2) also CLONE_NEWTIME
// (0x80, which in clone(2)'s flags is part of the exit signal, not a namespace).
export const CLONE_NAMESPACE_FLAGS = 0x20000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000;
export const UNSHARE_NAMESPACE_FLAGS = CLONE_NAMESPACE_FLAGS | 0x80;

/** Refused outright with EPERM (name → x86-64 number). */
export const REFUSED_SYSCALLS: Readonly<Record<string, number>> = {
  ptrace: 101,
  pivot_root: 155,
  mount: 165,
  umount2: 166,
  kexec_load: 246,
  add_key: 248,
  request_key: 249,
  keyctl: 250,
  perf_event_open: 298,
  open_by_handle_at: 304,
  setns: 308,
  kexec_file_load: 320,
  bpf: 321,
  userfaultfd: 323,
  // The new mount API: a mount by other means.
  open_tree: 428,
  move_mount: 429,
  fsopen: 430,
  fsconfig: 431,
  fsmount: 432,
  fspick: 433,
  mount_setattr: 442,
};
/** Refused when the flags ask for a new namespace (other flags pass): number and the flags that count. */
export const NAMESPACE_CHECKED_SYSCALLS: Readonly<Record<string, { nr: number; flags: number }>> = {
  clone: { nr: 56, flags: CLONE_NAMESPACE_FLAGS },
  unshare: { nr: 272, flags: UNSHARE_NAMESPACE_FLAGS },
};
/** Answered ENOSYS so that libc falls back to clone. */
export const ENOSYS_SYSCALLS: Readonly<Record<string, number>> = { clone3: 435 };

const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JSET_K = 0x45;
const RET_K = 0x06;

type Insn = { code: number; jt: number | string; jf: number | string; k: number; label?: string };

/** What the start log says the filter does. */
export function seccompSummary(): string {
  return (
    `refuses ${Object.keys(REFUSED_SYSCALLS).join(", ")}; ` +
    `${Object.keys(NAMESPACE_CHECKED_SYSCALLS).join(" and ")} with namespace flags; ` +
    `${Object.keys(ENOSYS_SYSCALLS).join(", ")} answers ENOSYS; other architectures are killed`
  );
}

/** True where the filter is meaningful (the table above is x86-64's). */
export function seccompSupported(): boolean {
  return arch() === "x64";
}

/** The filter as bwrap reads it: an array of struct sock_filter (u16 code, u8 jt, u8 jf, u32 k), little-endian. */
export function buildSeccompFilter(): Buffer {
  const p: Insn[] = [];
  const stmt = (code: number, k: number, label?: string) => p.push({ code, jt: 0, jf: 0, k, ...(label ? { label } : {}) });
  const jump = (code: number, k: number, jt: number | string, jf: number | string) => p.push({ code, jt, jf, k });

  stmt(LD_W_ABS, ARCH_OFFSET);
  jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0);
  stmt(RET_K, RET_KILL_PROCESS);
  stmt(LD_W_ABS, NR_OFFSET);
  // x32 syscalls (the same numbers with bit 30 set) would slip past the table.
  jump(JSET_K, X32_SYSCALL_BIT, "eperm", 0);
  for (const nr of Object.values(REFUSED_SYSCALLS)) jump(JEQ_K, nr, "eperm", 0);
  for (const nr of Object.values(ENOSYS_SYSCALLS)) jump(JEQ_K, nr, "enosys", 0);
  for (const [name, { nr }] of Object.entries(NAMESPACE_CHECKED_SYSCALLS)) jump(JEQ_K, nr, `flags-${name}`, 0);
  stmt(RET_K, RET_ALLOW);
  for (const [name, { flags }] of Object.entries(NAMESPACE_CHECKED_SYSCALLS)) {
    stmt(LD_W_ABS, ARG0_LOW_OFFSET, `flags-${name}`);
    jump(JSET_K, flags, "eperm", "allow");
  }
  stmt(RET_K, RET_ERRNO | EPERM, "eperm");
  stmt(RET_K, RET_ERRNO | ENOSYS, "enosys");
  stmt(RET_K, RET_ALLOW, "allow");

  const at = new Map<string, number>();
  p.forEach((insn, i) => insn.label && at.set(insn.label, i));
  const offset = (from: number, to: number | string): number => {
    if (typeof to === "number") return to;
    const rel = at.get(to)! - from - 1;
    if (rel < 0 || rel > 255) throw new Error(`seccomp jump to ${to} out of range (${rel})`);
    return rel;
  };
  const out = Buffer.alloc(p.length * 8);
  p.forEach((insn, i) => {
    out.writeUInt16LE(insn.code, i * 8);
    out.writeUInt8(offset(i, insn.jt), i * 8 + 2);
    out.writeUInt8(offset(i, insn.jf), i * 8 + 3);
    out.writeUInt32LE(insn.k >>> 0, i * 8 + 4);
  });
  return out;
}

/** Linux's CLONE_NEWPID. */
export const CLONE_NEWPID = 0x20000000;

/**
 * The same refusals as an OCI `linux.seccomp` section (gVisor enforces it in
 * its own kernel with `--oci-seccomp`). clone3 is left to gVisor, which
 * answers ENOSYS itself. With `agentMakesCommandsNamespace` the agent (and
 * crownest-nsinit, its helper) may still call mount and unshare(CLONE_NEWPID):
 * that is how the commands' PID namespace and its /proc are made, and every
 * command then runs under the full filter of buildSeccompFilter() as well,
 * installed by the helper before exec, so commands meet the same refusals.
 */
export function ociSeccomp(opts: { agentMakesCommandsNamespace?: boolean } = {}): Record<string, unknown> {
  const bits = (mask: number) => Array.from({ length: 31 }, (_, i) => 1 << i).filter((b) => (mask & b) !== 0);
  const allowed = opts.agentMakesCommandsNamespace ? { syscalls: new Set(["mount"]), unshareFlags: CLONE_NEWPID } : { syscalls: new Set<string>(), unshareFlags: 0 };
  return {
    defaultAction: "SCMP_ACT_ALLOW",
    architectures: ["SCMP_ARCH_X86_64"],
    syscalls: [
      { names: Object.keys(REFUSED_SYSCALLS).filter((n) => !allowed.syscalls.has(n)), action: "SCMP_ACT_ERRNO", errnoRet: EPERM },
      // One rule per namespace flag: any one of them set refuses the call.
      ...Object.entries(NAMESPACE_CHECKED_SYSCALLS).flatMap(([name, { flags }]) =>
        bits(name === "unshare" ? flags & ~allowed.unshareFlags : flags).map((flag) => ({
          names: [name],
          action: "SCMP_ACT_ERRNO",
          errnoRet: EPERM,
          args: [{ index: 0, value: flag, valueTwo: flag, op: "SCMP_CMP_MASKED_EQ" }],
        })),
      ),
    ],
  };
}
