// Packs: the small files one request stores (a collection's batch) go into
// shared pack blobs, one blob write (one fsync, one S3 PUT) per pack instead
// of one per file. Each member is checked on its own first (limits, the
// agent's trailer and sha256) exactly as a file of its own would be; only its
// verified bytes join a pack. A pack is written when it is full or when every
// file of the request has joined or gone its own way; its members are then
// marked ready together with the pack's row, in one transaction. Until then
// they are pending: a crash leaves no ready member, and a pack blob no
// record holds is the orphan sweeper's. A file stored on its own (a big one)
// seals the pack gathered before it, so the members never wait for its bytes.
import { CrowNestError, toCrowNestError } from "../../../common/errors.js";
import type { EventDraft } from "../../db/event-types.js";
import type { PackPlace, ReadyFigures } from "../../db/types.js";
import type { Deps } from "../../deps.js";
import { newId } from "../../ids.js";

interface Member {
  id: string;
  ready: ReadyFigures;
  place: PackPlace;
  event: EventDraft | undefined;
  resolve: (marked: boolean) => void;
  reject: (err: unknown) => void;
}

interface OpenPack {
  key: string;
  parts: Uint8Array[];
  size: number;
  members: Member[];
}

/** One file's say in its request's packs: it joins with its verified bytes, or leaves (too big, a directory, failed). */
export interface PackSeat {
  /** Largest member. */
  readonly maxMemberBytes: number;
  /**
   * Adds the member's bytes to a pack; resolves once the pack is stored and
   * the member marked ready with its place (false: its record was gone).
   * Rejects (storage_unavailable) when the pack could not be stored.
   */
  join(id: string, ready: ReadyFigures, parts: Uint8Array[], size: number, event?: EventDraft): Promise<boolean>;
  /** Not joining (failed, or nothing to store); harmless after join. */
  leave(): void;
  /**
   * Not joining because this file is stored on its own (too big, a
   * directory): the pack gathered so far is written now rather than after
   * this file's bytes, which may take long, while its members wait pending.
   * Resolves once that pack is stored (never rejects: its members get its
   * outcome), so the big file's writes do not slow the pack's fsync down.
   */
  bypass(): Promise<void>;
}

/** Bytes handed to the store per write: a file's many small chunks joined into a few large ones. */
const WRITE_BYTES = 4 * 1024 * 1024;

async function* coalesced(parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
  let group: Uint8Array[] = [];
  let bytes = 0;
  for (const part of parts) {
    group.push(part);
    bytes += part.byteLength;
    if (bytes >= WRITE_BYTES) {
      yield Buffer.concat(group, bytes);
      group = [];
      bytes = 0;
    }
  }
  if (bytes > 0) yield Buffer.concat(group, bytes);
}

export class PackWriter {
  private open: OpenPack | undefined;
  private undecided = 0;
  /** The latest pack's write and commit (settled, never rejected). */
  private lastStore: Promise<void> = Promise.resolve();
  /** Pack blobs written (the bench's store-write count reads the blob metrics instead). */
  written = 0;

  /**
   * `maxMembers`: a pack is written once this many members wait in it. Set
   * for exports that count against the account's exports in flight (no
   * command): a member is pending until its pack is written, so it keeps
   * its slot while it waits, and a pack of at most `concurrency` members
   * keeps the request within its slots instead of holding every file of the
   * request pending at once (which the in-flight cap refuses).
   */
  constructor(
    private readonly deps: Deps,
    private readonly accountId: string,
    private readonly sandboxId: string,
    private readonly maxMembers?: number,
  ) {}

  get maxMemberBytes(): number {
    return this.deps.config.packMaxMemberBytes;
  }

  /** A seat for one file of the request; every seat must join or leave before the last pack is written. */
  seat(onJoin?: () => void): PackSeat {
    this.undecided++;
    let decided = false;
    const decide = (): void => {
      if (decided) return;
      decided = true;
      this.undecided--;
      // The last file decided: whatever is gathered goes now.
      if (this.undecided === 0) this.seal();
    };
    return {
      maxMemberBytes: this.maxMemberBytes,
      join: (id, ready, parts, size, event) => {
        if (decided) return Promise.reject(new CrowNestError("internal", "a file joined a pack twice"));
        const joined = this.add(id, ready, parts, size, event);
        onJoin?.();
        decide();
        return joined;
      },
      leave: decide,
      bypass: () => {
        if (!decided) {
          decide();
          this.seal();
        }
        return this.lastStore;
      },
    };
  }

  private add(id: string, ready: ReadyFigures, parts: Uint8Array[], size: number, event: EventDraft | undefined): Promise<boolean> {
    if (this.open && this.open.size + size > this.deps.config.packMaxBytes) this.seal();
    const pack = (this.open ??= { key: `${this.accountId}/${this.sandboxId}/${newId("pack")}`, parts: [], size: 0, members: [] });
    const place = { key: pack.key, offset: pack.size, length: size };
    pack.parts.push(...parts);
    pack.size += size;
    const joined = new Promise<boolean>((resolve, reject) => pack.members.push({ id, ready, place, event, resolve, reject }));
    if (this.maxMembers !== undefined && pack.members.length >= this.maxMembers) this.seal();
    return joined;
  }

  private seal(): void {
    const pack = this.open;
    this.open = undefined;
    if (pack === undefined || pack.members.length === 0) return;
    this.lastStore = this.store(pack).catch(() => undefined);
  }

  private async store(pack: OpenPack): Promise<void> {
    const { deps } = this;
    try {
      const result = await deps.blobs.write(pack.key, coalesced(pack.parts), { contentType: "application/octet-stream", sizeHint: pack.size });
      this.written++;
      if (result.size !== pack.size) throw new CrowNestError("integrity_error", "the pack stored differs from its members' bytes");
    } catch (err) {
      const failure = err instanceof CrowNestError ? err : new CrowNestError("storage_unavailable", "the blob store failed", {}, { cause: err });
      await deps.blobs.delete(pack.key).catch(() => undefined);
      for (const m of pack.members) m.reject(failure);
      return;
    }
    let marked: boolean[];
    try {
      marked = await deps.db.commitPack(
        { key: pack.key, accountId: this.accountId, sizeBytes: pack.size, createdAt: deps.clock.now() },
        pack.members.map(({ id, ready, place, event }) => ({ id, ready, place, ...(event ? { event } : {}) })),
      );
    } catch (err) {
      // Rolled back: nothing holds the pack.
      await deps.blobs.delete(pack.key).catch(() => undefined);
      for (const m of pack.members) m.reject(err);
      return;
    }
    if (!marked.some(Boolean)) {
      await deps.blobs.delete(pack.key).catch((err: unknown) => {
        deps.log.warn({ pack: pack.key, err: toCrowNestError(err).message }, "could not delete a pack no member holds; left to the orphan sweeper");
      });
    }
    pack.members.forEach((m, i) => m.resolve(marked[i]!));
  }
}
