// One sandbox: its artifacts and its commands, kept current by the event
// stream (artifact.created, artifact.deleted, command.finished), or by
// polling when the controller has no stream.
import { useEffect, useRef, useState } from "preact/hooks";
import { call, enc, type Artifact, type CommandView, type Sandbox } from "../api.js";
import { watchEvents, type StreamState } from "../events.js";
import { bytes, shortSha } from "../format.js";
import { Badge, Failure, Loading, Name, Scroll, Time } from "./common.js";

const POLL_MS = 4000;

function merge<T extends { id: string }>(fresh: T[], old: T[] | undefined, newestFirst: (a: T, b: T) => number): T[] {
  const byId = new Map((old ?? []).map((x) => [x.id, x]));
  for (const x of fresh) byId.set(x.id, x);
  return [...byId.values()].sort(newestFirst);
}

const byCreated = (a: Artifact, b: Artifact) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id);
const byStarted = (a: CommandView, b: CommandView) => b.startedAt.localeCompare(a.startedAt) || b.id.localeCompare(a.id);

export function SandboxPage({ id, tab }: { id: string; tab: "artifacts" | "commands" }) {
  const [sandbox, setSandbox] = useState<Sandbox | undefined>();
  const [artifacts, setArtifacts] = useState<Artifact[] | undefined>();
  const [commands, setCommands] = useState<CommandView[] | undefined>();
  const [more, setMore] = useState<{ artifacts: string | null; commands: string | null }>({ artifacts: null, commands: null });
  const [error, setError] = useState<unknown>();
  const [live, setLive] = useState<StreamState>("connecting");
  const alive = useRef(true);

  const refresh = async () => {
    try {
      const [a, c] = await Promise.all([
        call<{ artifacts: Artifact[]; nextCursor: string | null }>("GET", `/v1/sandboxes/${enc(id)}/artifacts?limit=100`),
        call<{ commands: CommandView[]; nextCursor: string | null }>("GET", `/v1/sandboxes/${enc(id)}/commands?limit=50`),
      ]);
      if (!alive.current) return;
      setArtifacts((old) => merge(a.artifacts, old, byCreated));
      setCommands((old) => merge(c.commands, old, byStarted));
      setMore((m) => ({ artifacts: m.artifacts ?? a.nextCursor, commands: m.commands ?? c.nextCursor }));
    } catch (err) {
      if (alive.current) setError(err);
    }
  };

  useEffect(() => {
    alive.current = true;
    call<Sandbox>("GET", `/v1/sandboxes/${enc(id)}`).then(setSandbox, setError);
    void refresh();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let pending: ReturnType<typeof setTimeout> | undefined;
    const stop = watchEvents(
      ["artifact.created", "artifact.deleted", "command.finished", "sandbox.destroyed"],
      (e) => {
        const data = (e.data ?? {}) as Record<string, unknown>;
        const artifact = (data.artifact ?? data) as Partial<Artifact>;
        const command = (data.command ?? data) as Partial<CommandView>;
        if (e.type === "artifact.created" && artifact.sandboxId === id && typeof artifact.id === "string") {
          setArtifacts((old) => merge([artifact as Artifact], old, byCreated));
        } else if (e.type === "artifact.deleted") {
          const gone = typeof data.id === "string" ? data.id : artifact.id;
          setArtifacts((old) => old?.filter((a) => a.id !== gone));
        } else if (e.type === "command.finished" && command.sandboxId === id && typeof command.id === "string") {
          setCommands((old) => merge([command as CommandView], old, byStarted));
        } else if (e.type === "sandbox.destroyed") {
          call<Sandbox>("GET", `/v1/sandboxes/${enc(id)}`).then(setSandbox, () => {});
        }
        // Running commands and their artifact counts: one refresh shortly after a burst of events.
        clearTimeout(pending);
        pending = setTimeout(() => void refresh(), 300);
      },
      (state) => {
        setLive(state);
        clearTimeout(timer);
        if (state === "polling") {
          const tick = () => {
            void refresh();
            timer = setTimeout(tick, POLL_MS);
          };
          timer = setTimeout(tick, POLL_MS);
        } else if (state === "live") void refresh();
      },
    );
    return () => {
      alive.current = false;
      stop();
      clearTimeout(timer);
      clearTimeout(pending);
    };
  }, [id]);

  const loadMore = async (what: "artifacts" | "commands") => {
    const cursor = more[what];
    if (!cursor) return;
    try {
      const page = await call<{ artifacts?: Artifact[]; commands?: CommandView[]; nextCursor: string | null }>(
        "GET",
        `/v1/sandboxes/${enc(id)}/${what}?limit=100&cursor=${enc(cursor)}`,
      );
      if (what === "artifacts") setArtifacts((old) => merge(page.artifacts ?? [], old, byCreated));
      else setCommands((old) => merge(page.commands ?? [], old, byStarted));
      setMore((m) => ({ ...m, [what]: page.nextCursor }));
    } catch (err) {
      setError(err);
    }
  };

  return (
    <section aria-labelledby="sandbox-title">
      <p class="crumbs">
        <a href="#/">Sandboxes</a> /
      </p>
      <div class="title-row">
        <h1 id="sandbox-title" class="mono">
          {id}
        </h1>
        {sandbox && <Badge value={sandbox.status} />}
        <span class={`live live-${live}`} aria-live="polite">
          {live === "live" ? "● live" : live === "polling" ? `refreshing every ${POLL_MS / 1000} s` : live === "connecting" ? "connecting…" : ""}
        </span>
      </div>
      {sandbox && (
        <p class="meta">
          {sandbox.image && (
            <>
              image <Name text={sandbox.image} class="mono" /> ·{" "}
            </>
          )}
          created <Time iso={sandbox.createdAt} /> · expires <Time iso={sandbox.expiresAt} />
        </p>
      )}
      <nav class="tabs" aria-label="Sandbox views">
        <a href={`#/sandboxes/${enc(id)}`} aria-current={tab === "artifacts" ? "page" : undefined}>
          Artifacts{artifacts ? ` (${artifacts.length}${more.artifacts ? "+" : ""})` : ""}
        </a>
        <a href={`#/sandboxes/${enc(id)}/commands`} aria-current={tab === "commands" ? "page" : undefined}>
          Commands{commands ? ` (${commands.length}${more.commands ? "+" : ""})` : ""}
        </a>
      </nav>
      {error !== undefined && <Failure error={error} />}
      {tab === "artifacts" && <ArtifactTable rows={artifacts} />}
      {tab === "commands" && <CommandTable rows={commands} />}
      {more[tab] && (
        <button type="button" onClick={() => void loadMore(tab)}>
          Load more
        </button>
      )}
    </section>
  );
}

export function Labels({ labels }: { labels: Record<string, string> | undefined }) {
  const pairs = Object.entries(labels ?? {});
  if (pairs.length === 0) return <span class="muted">–</span>;
  return (
    <span class="labels">
      {pairs.map(([k, v]) => (
        <span class="label" key={k}>
          <Name text={`${k}=${v}`} />
        </span>
      ))}
    </span>
  );
}

function ArtifactTable({ rows }: { rows: Artifact[] | undefined }) {
  if (!rows) return <Loading what="artifacts" />;
  if (rows.length === 0) return <p class="muted">No artifacts in this sandbox yet.</p>;
  return (
    <Scroll label="Artifacts">
      <table class="artifacts">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col" class="num">Size</th>
            <th scope="col">Created</th>
            <th scope="col">Expires</th>
            <th scope="col">Labels</th>
            <th scope="col">sha256</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((a) => (
            <tr key={a.id} data-artifact={a.id}>
              <td class="name">
                <a href={`#/artifacts/${enc(a.id)}`}>
                  <Name text={a.name} />
                </a>
              </td>
              <td class="num">{bytes(a.sizeBytes)}</td>
              <td>
                <Time iso={a.createdAt} />
              </td>
              <td>
                <Time iso={a.expiresAt} />
              </td>
              <td>
                <Labels labels={a.labels} />
              </td>
              <td class="mono" title={a.sha256}>
                {shortSha(a.sha256)}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </Scroll>
  );
}

function CommandTable({ rows }: { rows: CommandView[] | undefined }) {
  if (!rows) return <Loading what="commands" />;
  if (rows.length === 0) return <p class="muted">No commands have run in this sandbox.</p>;
  return (
    <Scroll label="Commands">
      <table class="commands">
        <thead>
          <tr>
            <th scope="col">Command</th>
            <th scope="col">Status</th>
            <th scope="col" class="num">Exit</th>
            <th scope="col">Collection</th>
            <th scope="col">Started</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((c) => (
            <tr key={c.id} data-command={c.id}>
              <td class="cmdline">
                <code>
                  <Name text={c.command} />
                </code>
              </td>
              <td>
                <Badge value={c.status} />
              </td>
              <td class="num">{c.exitCode ?? "–"}</td>
              <td>
                <Badge value={c.collectStatus} />
                {c.artifacts.length > 0 && <span class="muted"> {c.artifacts.length} artifacts</span>}
                {c.collectErrors.length > 0 && (
                  <ul class="collect-errors">
                    {c.collectErrors.map((e, i) => (
                      <li key={i}>
                        <span class="mono">{e.code}</span> <Name text={e.path ?? e.name ?? ""} class="mono" />: <Name text={e.message} />
                      </li>
                    ))}
                  </ul>
                )}
              </td>
              <td>
                <Time iso={c.startedAt} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </Scroll>
  );
}
