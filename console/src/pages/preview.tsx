// Looking at one file: text (the first 1 MiB by a Range request, with line
// numbers), images as <img>, HTML in an <iframe sandbox=""> (no scripts, an
// opaque origin: it cannot reach this page, its storage or the API), the
// rest as a download. Both links of <img> and <iframe> are authMode "url"
// links (no key); the text is read with the key in the header.
import { useEffect, useState } from "preact/hooks";
import { downloadLink, readHead } from "../api.js";
import { bytes, looksBinary, previewKind } from "../format.js";
import { Failure, Loading } from "./common.js";

const TEXT_MAX = 1024 * 1024;

interface Props {
  artifactId: string;
  entry?: string;
  name: string;
  sizeBytes: number;
  contentType: string | undefined;
  sha256: string | undefined;
}

export function Preview(props: Props) {
  const kind = previewKind(props.name, props.contentType);
  return (
    <div class="preview">
      <div class="preview-bar">
        <span class="muted">
          {kind === "download" ? "No preview for this type" : `${kind} preview`} · {bytes(props.sizeBytes)}
        </span>
        <DownloadButton {...props} />
      </div>
      {kind === "text" && <TextPreview {...props} />}
      {(kind === "image" || kind === "html") && <InlinePreview {...props} kind={kind} />}
    </div>
  );
}

function DownloadButton({ artifactId, entry, name }: Props) {
  const [error, setError] = useState<unknown>();
  const download = async () => {
    try {
      setError(undefined);
      const link = await downloadLink(artifactId, { ...(entry !== undefined ? { entry } : {}), disposition: "attachment", authMode: "url" });
      const a = document.createElement("a");
      a.href = link.url;
      a.download = name;
      a.rel = "noopener noreferrer";
      document.body.append(a);
      a.click();
      a.remove();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <>
      <button type="button" onClick={() => void download()}>
        Download
      </button>
      {error !== undefined && <Failure error={error} />}
    </>
  );
}

function TextPreview({ artifactId, entry, sizeBytes }: Props) {
  const [state, setState] = useState<{ text: string; lines: number; binary: boolean } | { error: unknown } | undefined>();
  useEffect(() => {
    const abort = new AbortController();
    readHead(artifactId, entry, TEXT_MAX, abort.signal).then(
      (data) => {
        if (looksBinary(data)) return setState({ text: "", lines: 0, binary: true });
        const text = new TextDecoder("utf-8", { fatal: false }).decode(data);
        let lines = 1;
        for (let i = text.indexOf("\n"); i >= 0 && i < text.length - 1; i = text.indexOf("\n", i + 1)) lines++;
        setState({ text, lines, binary: false });
      },
      (error) => !abort.signal.aborted && setState({ error }),
    );
    return () => abort.abort();
  }, [artifactId, entry]);
  if (!state) return <Loading what="the text" />;
  if ("error" in state) return <Failure error={state.error} />;
  if (state.binary) return <p class="notice">This file holds binary data, not text; download it instead.</p>;
  const gutter = Array.from({ length: state.lines }, (_, i) => i + 1).join("\n");
  return (
    <>
      {sizeBytes > TEXT_MAX && <p class="notice">Showing the first 1 MiB of {bytes(sizeBytes)}.</p>}
      <div class="text-preview" role="region" aria-label="File contents" tabIndex={0}>
        <pre class="gutter" aria-hidden="true">
          {gutter}
        </pre>
        <pre class="code">{state.text}</pre>
      </div>
    </>
  );
}

function InlinePreview({ artifactId, entry, name, kind }: Props & { kind: "image" | "html" }) {
  const [url, setUrl] = useState<string | undefined>();
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    downloadLink(artifactId, { ...(entry !== undefined ? { entry } : {}), disposition: "inline", authMode: "url" }).then((l) => setUrl(l.url), setError);
  }, [artifactId, entry]);
  if (error !== undefined) return <Failure error={error} />;
  if (!url) return <Loading what="the preview" />;
  if (kind === "image") return <img class="image-preview" src={url} alt={`Preview of ${name}`} referrerpolicy="no-referrer" />;
  return (
    <iframe
      class="html-preview"
      title={`Preview of ${name} (scripts disabled)`}
      src={url}
      sandbox=""
      referrerpolicy="no-referrer"
      // Never "allow-same-origin" or "allow-scripts": the page gets an opaque origin and runs nothing.
    />
  );
}
