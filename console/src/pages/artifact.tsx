// One artifact: its facts, and for an archive its entries as a folder tree
// (the first page painted at once, the rest loaded behind it); a chosen
// file (or a single-file artifact) is previewed below.
import { useEffect, useMemo, useState } from "preact/hooks";
import { call, enc, type Artifact, type Entry } from "../api.js";
import { baseName, bytes, shortSha, visible } from "../format.js";
import { EntryTree, childrenOf, type DirNode } from "../tree.js";
import { Failure, Loading, Name, Time } from "./common.js";
import { Preview } from "./preview.js";
import { Labels } from "./sandbox.js";

const PAGE = 1000;
const SHOWN_PER_FOLDER = 200;

function isArchive(a: Artifact): boolean {
  return a.contentType === "application/x-tar" || /\.(tar|tar\.gz|tgz)$/i.test(a.name);
}

const entryHref = (id: string, path: string) => `#/artifacts/${enc(id)}?entry=${enc(path)}`;

export function ArtifactPage({ id, entry }: { id: string; entry: string | undefined }) {
  const [artifact, setArtifact] = useState<Artifact | undefined>();
  const [error, setError] = useState<unknown>();
  const tree = useMemo(() => new EntryTree(), [id]);
  const [version, setVersion] = useState(0);
  const [archive, setArchive] = useState<"unknown" | "yes" | "no">("unknown");
  const [complete, setComplete] = useState(false);

  useEffect(() => {
    let alive = true;
    performance.clearMarks("crownest-tree-first-paint");
    performance.mark("crownest-artifact-open");
    (async () => {
      const a = await call<Artifact>("GET", `/v1/artifacts/${enc(id)}`);
      if (!alive) return;
      setArtifact(a);
      if (!isArchive(a)) return setArchive("no");
      let cursor: string | null = null;
      let first = true;
      do {
        const q: string = `limit=${PAGE}${cursor ? `&cursor=${enc(cursor)}` : ""}`;
        let page: { entries: Entry[]; nextCursor: string | null };
        try {
          page = await call("GET", `/v1/artifacts/${enc(id)}/entries?${q}`);
        } catch (err) {
          // A .tar that was stored as a plain file: preview it as one.
          if (first && (err as { code?: string }).code === "not_an_archive") return setArchive("no");
          throw err;
        }
        if (!alive) return;
        tree.add(page.entries);
        if (first) setArchive("yes");
        first = false;
        setVersion((v) => v + 1);
        cursor = page.nextCursor;
        // Let the page paint between pages.
        await new Promise((r) => setTimeout(r, 0));
      } while (cursor && alive);
      if (alive) setComplete(true);
    })().catch((err) => alive && setError(err));
    return () => {
      alive = false;
    };
  }, [id]);

  useEffect(() => {
    if (archive === "yes" && version === 1) performance.mark("crownest-tree-first-paint");
  }, [archive, version]);

  const chosen = entry !== undefined ? findEntry(tree, entry) : undefined;
  return (
    <section aria-labelledby="artifact-title">
      <p class="crumbs">
        <a href="#/">Sandboxes</a> /{" "}
        {artifact && (
          <>
            <a href={`#/sandboxes/${enc(artifact.sandboxId)}`} class="mono">
              {artifact.sandboxId}
            </a>{" "}
            /
          </>
        )}
      </p>
      <h1 id="artifact-title">{artifact ? <Name text={artifact.name} /> : <span class="mono">{id}</span>}</h1>
      {error !== undefined && <Failure error={error} />}
      {!artifact && error === undefined && <Loading what="the artifact" />}
      {artifact && (
        <dl class="facts">
          <dt>Size</dt>
          <dd>{bytes(artifact.sizeBytes)}</dd>
          <dt>Type</dt>
          <dd class="mono">{artifact.contentType}</dd>
          <dt>From</dt>
          <dd>
            <Name text={artifact.sourcePath} class="mono" />
          </dd>
          <dt>Created</dt>
          <dd>
            <Time iso={artifact.createdAt} />
          </dd>
          <dt>Expires</dt>
          <dd>
            <Time iso={artifact.expiresAt} />
          </dd>
          <dt>Labels</dt>
          <dd>
            <Labels labels={artifact.labels} />
          </dd>
          <dt>sha256</dt>
          <dd class="mono" title={artifact.sha256}>
            {shortSha(artifact.sha256)}…
          </dd>
        </dl>
      )}
      {artifact && archive === "no" && <Preview key={id} artifactId={id} name={artifact.name} sizeBytes={artifact.sizeBytes} contentType={artifact.contentType} sha256={artifact.sha256} />}
      {artifact && archive === "yes" && (
        <div class="split">
          <div class="tree-pane">
            <h2>
              Entries <span class="muted">{tree.entries.toLocaleString()}{complete ? "" : " so far…"}</span>
            </h2>
            <Tree id={id} tree={tree} version={version} selected={entry} />
          </div>
          <div class="preview-pane">
            {entry === undefined && <p class="muted">Choose a file to preview it.</p>}
            {entry !== undefined && chosen === undefined && (complete ? <p class="error">No entry {visible(entry)} in this archive.</p> : <Loading what="the entry" />)}
            {chosen && chosen.type !== "file" && <p class="muted">{visible(chosen.path)} is a {chosen.type}{chosen.linkTarget ? ` → ${visible(chosen.linkTarget)}` : ""}.</p>}
            {chosen && chosen.type === "file" && (
              <Preview key={chosen.path} artifactId={id} entry={chosen.path} name={baseName(chosen.path)} sizeBytes={chosen.sizeBytes} contentType={undefined} sha256={undefined} />
            )}
          </div>
        </div>
      )}
    </section>
  );
}

function findEntry(tree: EntryTree, path: string): Entry | undefined {
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  let node: DirNode | undefined = tree.root;
  for (const p of parts.slice(0, -1)) node = node?.dirs.get(p);
  return node?.files.find((f) => f.path === path || f.path.replace(/^\.\//, "") === path);
}

function Tree({ id, tree, version, selected }: { id: string; tree: EntryTree; version: number; selected: string | undefined }) {
  const [open, setOpen] = useState<Set<string>>(() => new Set(ancestors(selected)));
  const [shown, setShown] = useState<Map<string, number>>(new Map());
  const toggle = (path: string) =>
    setOpen((prev) => {
      const next = new Set(prev);
      if (next.has(path)) next.delete(path);
      else next.add(path);
      return next;
    });
  const more = (path: string) => setShown((prev) => new Map(prev).set(path, (prev.get(path) ?? SHOWN_PER_FOLDER) + SHOWN_PER_FOLDER * 5));
  const folder = (node: DirNode, depth: number): preact.JSX.Element => {
    const { dirs, files } = childrenOf(node);
    const limit = shown.get(node.path) ?? SHOWN_PER_FOLDER;
    const rest = dirs.length + files.length - limit;
    return (
      <ul class="tree" role={depth === 0 ? "list" : undefined} data-version={version}>
        {dirs.slice(0, limit).map((d) => (
          <li key={`d:${d.path}`}>
            <button type="button" class="folder" aria-expanded={open.has(d.path)} onClick={() => toggle(d.path)}>
              <span aria-hidden="true">{open.has(d.path) ? "▾" : "▸"} </span>
              <Name text={d.name} />
              <span class="size">{d.count.toLocaleString()} files · {bytes(d.size)}</span>
            </button>
            {open.has(d.path) && folder(d, depth + 1)}
          </li>
        ))}
        {files.slice(0, Math.max(0, limit - dirs.length)).map((f) => (
          <li key={`f:${f.path}`}>
            <a href={entryHref(id, f.path)} class="file" aria-current={f.path === selected ? "true" : undefined}>
              <Name text={baseName(f.path)} />
              <span class="size">{f.type === "symlink" ? `→ ${visible(f.linkTarget ?? "")}` : bytes(f.sizeBytes)}</span>
            </a>
          </li>
        ))}
        {rest > 0 && (
          <li>
            <button type="button" class="link" onClick={() => more(node.path)}>
              Show more ({rest.toLocaleString()} not shown)
            </button>
          </li>
        )}
      </ul>
    );
  };
  return <nav aria-label="Archive entries">{folder(tree.root, 0)}</nav>;
}

function ancestors(path: string | undefined): string[] {
  if (!path) return [];
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join("/"));
}
