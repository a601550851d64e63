// Small pieces every page uses: loading and error states, status badges,
// and a name shown as text with its control characters made visible.
import type { ComponentChildren } from "preact";
import { ApiError } from "../api.js";
import { visible, when } from "../format.js";

export function Name({ text, class: cls }: { text: string; class?: string }) {
  return (
    <span class={cls} title={visible(text)}>
      {visible(text)}
    </span>
  );
}

export function Time({ iso }: { iso: string | null | undefined }) {
  return <time dateTime={iso ?? undefined} title={iso ?? undefined}>{when(iso)}</time>;
}

export function Badge({ value }: { value: string }) {
  return <span class={`badge badge-${value.replace(/[^a-z_]/g, "")}`}>{value.replace(/_/g, " ")}</span>;
}

export function Failure({ error }: { error: unknown }) {
  const message = error instanceof ApiError ? `${error.code}: ${error.message}` : error instanceof Error ? error.message : String(error);
  return (
    <p class="error" role="alert">
      {message}
    </p>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted" aria-live="polite">
      Loading {what}…
    </p>
  );
}

export function Scroll({ children, label }: { children: ComponentChildren; label: string }) {
  return (
    <div class="scroll" role="region" aria-label={label} tabIndex={0}>
      {children}
    </div>
  );
}
