// An archive's entries as folders, built incrementally as pages arrive.
// Directories that the archive does not list are made from the paths.
import type { Entry } from "./api.js";

export interface DirNode {
  path: string;
  name: string;
  dirs: Map<string, DirNode>;
  files: Entry[];
  /** Bytes of every file below. */
  size: number;
  /** Files below. */
  count: number;
  sorted?: { at: number; dirs: DirNode[]; files: Entry[] };
}

function dir(path: string, name: string): DirNode {
  return { path, name, dirs: new Map(), files: [], size: 0, count: 0 };
}

export class EntryTree {
  readonly root = dir("", "");
  entries = 0;

  add(entries: Entry[]): void {
    for (const e of entries) {
      this.entries++;
      const parts = e.path.split("/").filter((p) => p !== "" && p !== ".");
      if (parts.length === 0) continue;
      if (e.type === "dir") {
        this.ensure(parts);
        continue;
      }
      const parent = this.ensure(parts.slice(0, -1));
      parent.files.push(e);
      // Sizes and counts add up along the way to the root.
      let node: DirNode | undefined = this.root;
      node.size += e.sizeBytes;
      node.count++;
      for (const p of parts.slice(0, -1)) {
        node = node.dirs.get(p)!;
        node.size += e.sizeBytes;
        node.count++;
      }
    }
  }

  private ensure(parts: string[]): DirNode {
    let node = this.root;
    for (const p of parts) {
      let next = node.dirs.get(p);
      if (!next) {
        next = dir(node.path ? `${node.path}/${p}` : p, p);
        node.dirs.set(p, next);
      }
      node = next;
    }
    return node;
  }
}

const collator = new Intl.Collator(undefined, { numeric: true });

/** Children by name, folders first; sorted once per change of the folder. */
export function childrenOf(node: DirNode): { dirs: DirNode[]; files: Entry[] } {
  const at = node.dirs.size * 1_000_003 + node.files.length;
  if (node.sorted?.at !== at) {
    node.sorted = {
      at,
      dirs: [...node.dirs.values()].sort((a, b) => collator.compare(a.name, b.name)),
      files: [...node.files].sort((a, b) => collator.compare(a.path, b.path)),
    };
  }
  return node.sorted;
}
