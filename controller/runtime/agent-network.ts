// Where an external agent may live (CROWNEST_AGENT_NETWORKS). An agentUrl is
// a request to connect somewhere on a caller's behalf: without this check a
// caller could make the controller talk to its own loopback, the cloud
// metadata service (169.254.169.254) or any public host, and time the answers
// to map open ports. The host is resolved, every address it resolves to must
// lie inside the listed networks, and the connection goes to the address that
// was checked (a second DNS answer cannot rebind it elsewhere).
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import net from "node:net";
import tls from "node:tls";
import type { Duplex } from "node:stream";
import { CrowNestError } from "../../common/errors.js";

export const DEFAULT_AGENT_NETWORKS = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7";

/** Which addresses a URL given by a caller may lead to (agents: CROWNEST_AGENT_NETWORKS; webhooks: CROWNEST_WEBHOOK_NETWORKS). */
export interface AddressRule {
  allows(address: string): boolean;
}

/** A set of CIDRs; an address is allowed when it lies inside one (IPv4-mapped IPv6 counts as its IPv4 address). */
export class AgentNetworks implements AddressRule {
  private readonly list = new net.BlockList();

  /** Throws an Error naming the first entry that is not a CIDR (or a bare address). */
  constructor(readonly cidrs: readonly string[]) {
    for (const cidr of cidrs) {
      const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(cidr);
      const family = m ? net.isIP(m[1]!) : 0;
      if (!m || family === 0) throw new Error(`not a CIDR: ${JSON.stringify(cidr)}`);
      const bits = family === 4 ? 32 : 128;
      const prefix = m[2] === undefined ? bits : Number(m[2]);
      if (prefix > bits) throw new Error(`prefix /${prefix} is too long for ${m[1]}`);
      this.list.addSubnet(m[1]!, prefix, family === 4 ? "ipv4" : "ipv6");
    }
  }

  /** Parses "a/n,b/m" (spaces allowed around entries); an empty list allows nothing. */
  static parse(raw: string): AgentNetworks {
    const cidrs = raw
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    return new AgentNetworks(cidrs);
  }

  allows(address: string): boolean {
    const family = net.isIP(address);
    if (family === 0) return false;
    return this.list.check(address, family === 4 ? "ipv4" : "ipv6");
  }
}

/** The address an agent URL's host was checked against, and the name to present for TLS. */
export interface CheckedAddress {
  address: string;
  family: 4 | 6;
  /** The URL's host name (no brackets), for SNI and certificate checks. */
  hostname: string;
}

type Lookup = (hostname: string, options: { all: true }, callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void;

function hostnameOf(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, "");
}

/** Which field a checked URL came from and which variable lists its networks (for the error). */
export interface UrlCheckSubject {
  field: string;
  variable: string;
  /** What may live there, in the error's words ("agents", "webhook receivers"). */
  what: string;
}

const AGENT_SUBJECT: UrlCheckSubject = { field: "agentUrl", variable: "CROWNEST_AGENT_NETWORKS", what: "agents" };

function refused(s: UrlCheckSubject): CrowNestError {
  return new CrowNestError(
    "invalid_request",
    `${s.field}: its host resolves to an address outside the networks ${s.what} may use (${s.variable})`,
    { field: s.field },
  );
}

/**
 * Resolves the URL's host and checks every address it has against the
 * networks: invalid_request when any lies outside (or the name does not
 * exist), agent_unavailable when DNS itself fails. No connection is made.
 */
export function checkAgentAddress(rawUrl: string, networks: AddressRule, lookup: Lookup = dnsLookup as Lookup): Promise<CheckedAddress> {
  return checkUrlAddress(rawUrl, networks, AGENT_SUBJECT, lookup);
}

/** The one resolve-and-check rule for every URL a caller names (agents, webhooks): see checkAgentAddress. */
export async function checkUrlAddress(rawUrl: string, networks: AddressRule, subject: UrlCheckSubject, lookup: Lookup = dnsLookup as Lookup): Promise<CheckedAddress> {
  const url = new URL(rawUrl);
  const hostname = hostnameOf(url);
  let addresses: LookupAddress[];
  if (net.isIP(hostname) !== 0) {
    addresses = [{ address: hostname, family: net.isIP(hostname) }];
  } else {
    try {
      addresses = await new Promise<LookupAddress[]>((resolve, reject) =>
        lookup(hostname, { all: true }, (err, found) => (err ? reject(err) : resolve(found))),
      );
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOTFOUND" || code === "ENODATA") {
        throw new CrowNestError("invalid_request", `${subject.field}: its host name does not resolve`, { field: subject.field }, { cause: err });
      }
      throw new CrowNestError("agent_unavailable", `${subject.field}: its host name could not be resolved now`, {}, { cause: err });
    }
  }
  if (addresses.length === 0 || !addresses.every((a) => networks.allows(a.address))) throw refused(subject);
  const first = addresses[0]!;
  return { address: first.address, family: first.family === 6 ? 6 : 4, hostname };
}

/** How a session's socket is opened: http2.connect's `createConnection`. */
export type CreateConnection = (authority: URL, options: object) => Duplex;

function portOf(url: URL): number {
  if (url.port !== "") return Number(url.port);
  return url.protocol === "https:" ? 443 : 80;
}

/** A socket to exactly `address` (TLS with the URL's host name when the URL is https). */
function socketTo(url: URL, address: string, family: number, lookup?: net.LookupFunction, ca?: tls.ConnectionOptions["ca"]): Duplex {
  const port = portOf(url);
  if (url.protocol === "https:") {
    const hostname = hostnameOf(url);
    // tls.connect hands host, port, family and lookup to net.connect; its typings omit family.
    return tls.connect({
      host: address,
      port,
      ...({ family } as object),
      ALPNProtocols: ["h2"],
      ...(net.isIP(hostname) === 0 ? { servername: hostname } : {}),
      ...(lookup ? { lookup } : {}),
      // The session's trusted CAs (CROWNEST_AGENT_CA_FILE), which http2.connect hands to createConnection.
      ...(ca !== undefined ? { ca } : {}),
    });
  }
  return net.connect({ host: address, port, family, ...(lookup ? { lookup } : {}) });
}

function caOf(options: object): tls.ConnectionOptions["ca"] {
  return (options as tls.ConnectionOptions).ca;
}

function outsideNetworks(): NodeJS.ErrnoException {
  return Object.assign(new Error("agent address outside CROWNEST_AGENT_NETWORKS"), { code: "EHOSTUNREACH" });
}

/** Connects to an address checked beforehand (the registration probe). */
export function pinnedConnection(checked: CheckedAddress): CreateConnection {
  return (authority, options) => socketTo(authority, checked.address, checked.family, undefined, caOf(options));
}

/**
 * Connects after checking the address again, on every new session: DNS is
 * resolved once per connection, checked, and that very address is used.
 * An address outside the networks fails the connection (agent_unavailable
 * for the call), and nothing is sent to it.
 */
export function checkedConnection(networks: AgentNetworks): CreateConnection {
  return (authority, options) => {
    const ca = caOf(options);
    const hostname = hostnameOf(authority);
    if (net.isIP(hostname) !== 0) {
      if (networks.allows(hostname)) return socketTo(authority, hostname, net.isIP(hostname), undefined, ca);
      // Refused: a connection attempt that fails in its lookup, so the session sees an ordinary connect error.
      return net.connect({ host: "refused.invalid", port: portOf(authority), lookup: (_n, _o, callback) => callback(outsideNetworks(), "", 0) });
    }
    // net.connect resolves through this function and connects to what it returns.
    const lookup: net.LookupFunction = (name, options, callback) => {
      dnsLookup(name, { all: true, family: options.family ?? 0 }, (err, found) => {
        if (err) return callback(err, "", 0);
        const allowed = found.length > 0 && found.every((a) => networks.allows(a.address));
        if (!allowed) return callback(outsideNetworks(), "", 0);
        const first = found[0]!;
        if ((options as { all?: boolean }).all) {
          (callback as unknown as (e: null, addresses: LookupAddress[]) => void)(null, [first]);
        } else {
          callback(null, first.address, first.family);
        }
      });
    };
    return socketTo(authority, hostname, 0, lookup, ca);
  };
}
