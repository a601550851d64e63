// How a host goes into a URL: an IPv6 address in brackets (RFC 3986), any
// other host as it is. The one place that formats hosts for the agent's and
// the controller's listeners and download URLs.

/** `::1` → `[::1]`; `127.0.0.1` and names unchanged. */
export function urlHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}
