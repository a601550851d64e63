// The account's sandboxes, newest first, a page at a time.
import { useEffect, useState } from "preact/hooks";
import { call, type Sandbox } from "../api.js";
import { Badge, Failure, Loading, Name, Scroll, Time } from "./common.js";

interface Page {
  sandboxes: Sandbox[];
  nextCursor: string | null;
}

export function SandboxesPage() {
  const [rows, setRows] = useState<Sandbox[] | undefined>();
  const [cursor, setCursor] = useState<string | null>(null);
  const [status, setStatus] = useState("");
  const [error, setError] = useState<unknown>();
  const load = async (after: string | null, filter: string) => {
    try {
      const q = new URLSearchParams({ limit: "50", ...(after ? { cursor: after } : {}), ...(filter ? { status: filter } : {}) });
      const page = await call<Page>("GET", `/v1/sandboxes?${q}`);
      setRows((prev) => [...(after ? (prev ?? []) : []), ...page.sandboxes]);
      setCursor(page.nextCursor);
    } catch (err) {
      setError(err);
    }
  };
  useEffect(() => {
    setRows(undefined);
    void load(null, status);
  }, [status]);
  return (
    <section aria-labelledby="sandboxes-title">
      <div class="title-row">
        <h1 id="sandboxes-title">Sandboxes</h1>
        <label class="filter">
          Status{" "}
          <select value={status} onChange={(e) => setStatus((e.currentTarget as HTMLSelectElement).value)}>
            <option value="">all</option>
            <option value="running">running</option>
            <option value="destroyed">destroyed</option>
          </select>
        </label>
      </div>
      {error !== undefined && <Failure error={error} />}
      {rows === undefined && error === undefined && <Loading what="sandboxes" />}
      {rows && rows.length === 0 && <p class="muted">No sandboxes yet.</p>}
      {rows && rows.length > 0 && (
        <Scroll label="Sandboxes">
          <table>
            <thead>
              <tr>
                <th scope="col">Sandbox</th>
                <th scope="col">Status</th>
                <th scope="col">Image</th>
                <th scope="col">Created</th>
                <th scope="col">Expires</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((s) => (
                <tr key={s.id}>
                  <td>
                    <a href={`#/sandboxes/${encodeURIComponent(s.id)}`} class="mono">
                      {s.id}
                    </a>
                  </td>
                  <td>
                    <Badge value={s.status} />
                  </td>
                  <td>{s.image ? <Name text={s.image} class="mono" /> : <span class="muted">–</span>}</td>
                  <td>
                    <Time iso={s.createdAt} />
                  </td>
                  <td>
                    <Time iso={s.expiresAt} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </Scroll>
      )}
      {cursor && (
        <button type="button" onClick={() => void load(cursor, status)}>
          Load more
        </button>
      )}
    </section>
  );
}
