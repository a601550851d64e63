// The console: sign-in, then hash routes (#/, #/sandboxes/ID[/commands],
// #/artifacts/ID[?entry=PATH]). Everything a sandbox chose (names, paths,
// command lines) is rendered as text by Preact, never as HTML.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { forgetKey, onSignedOut, signIn, storedKey, ApiError } from "./api.js";
import { ArtifactPage } from "./pages/artifact.js";
import { SandboxPage } from "./pages/sandbox.js";
import { SandboxesPage } from "./pages/sandboxes.js";

type Route =
  | { page: "sandboxes" }
  | { page: "sandbox"; id: string; tab: "artifacts" | "commands" }
  | { page: "artifact"; id: string; entry: string | undefined };

export function parseRoute(hash: string): Route {
  const [path = "", query = ""] = hash.replace(/^#/, "").split("?", 2);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "sandboxes" && parts[1]) return { page: "sandbox", id: parts[1], tab: parts[2] === "commands" ? "commands" : "artifacts" };
  if (parts[0] === "artifacts" && parts[1]) {
    const entry = new URLSearchParams(query).get("entry") ?? undefined;
    return { page: "artifact", id: parts[1], entry };
  }
  return { page: "sandboxes" };
}

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const update = () => setRoute(parseRoute(location.hash));
    addEventListener("hashchange", update);
    return () => removeEventListener("hashchange", update);
  }, []);
  return route;
}

function SignIn({ notice }: { notice: string | undefined }) {
  const [error, setError] = useState<string | undefined>(notice);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const input = (e.currentTarget as HTMLFormElement).elements.namedItem("key") as HTMLInputElement;
    setBusy(true);
    setError(undefined);
    try {
      await signIn(input.value);
      input.value = "";
      dispatchEvent(new Event("crownest-signed-in"));
    } catch (err) {
      forgetKey();
      setError(err instanceof ApiError ? err.message : "The API could not be reached.");
      input.focus();
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <h1>CrowNest console</h1>
      <form onSubmit={submit} aria-describedby="signin-help">
        <label for="key">API key</label>
        <input id="key" name="key" type="password" autocomplete="off" spellcheck={false} required autoFocus />
        <button type="submit" disabled={busy}>{busy ? "Checking…" : "Sign in"}</button>
        {error && (
          <p class="error" role="alert" id="signin-error">
            {error}
          </p>
        )}
        <p id="signin-help" class="muted">
          The key stays in this tab only (sessionStorage) and is sent in the Authorization header of API calls; closing the tab forgets it.
        </p>
      </form>
    </main>
  );
}

function App() {
  const [signedIn, setSignedIn] = useState(() => storedKey() !== null);
  const [notice, setNotice] = useState<string | undefined>();
  const route = useRoute();
  useEffect(() => {
    onSignedOut((reason) => {
      setNotice(reason);
      setSignedIn(false);
    });
    const onIn = () => {
      setNotice(undefined);
      setSignedIn(true);
    };
    addEventListener("crownest-signed-in", onIn);
    return () => removeEventListener("crownest-signed-in", onIn);
  }, []);
  if (!signedIn) return <SignIn notice={notice} />;
  const signOut = () => {
    forgetKey();
    setNotice("Signed out.");
    setSignedIn(false);
  };
  return (
    <>
      <header class="top">
        <a href="#/" class="brand">
          CrowNest
        </a>
        <nav aria-label="Main">
          <a href="#/" aria-current={route.page === "sandboxes" ? "page" : undefined}>
            Sandboxes
          </a>
        </nav>
        <button type="button" class="link" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main id="main">
        {route.page === "sandboxes" && <SandboxesPage />}
        {route.page === "sandbox" && <SandboxPage key={route.id} id={route.id} tab={route.tab} />}
        {route.page === "artifact" && <ArtifactPage key={route.id} id={route.id} entry={route.entry} />}
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
