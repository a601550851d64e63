// "public": every unicast address on the public internet, and nothing else.
// Loopback, private, shared (CGNAT), link-local (cloud metadata at
// 169.254.169.254 and fd00:ec2::254), documentation, benchmarking, multicast
// and reserved ranges are refused. CROWNEST_WEBHOOK_NETWORKS is a list of
// CIDRs and this keyword: "public" alone is the default.
import net from "node:net";
import { AgentNetworks, type AddressRule } from "./agent-network.js";

const NOT_PUBLIC = new AgentNetworks([
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.0.0.0/24",
  "192.0.2.0/24",
  "192.88.99.0/24",
  "192.168.0.0/16",
  "198.18.0.0/15",
  "198.51.100.0/24",
  "203.0.113.0/24",
  "224.0.0.0/4",
  "240.0.0.0/4",
  "::/128",
  "::1/128",
  "64:ff9b::/96",
  "64:ff9b:1::/48",
  "100::/64",
  "2001::/23",
  "2001:db8::/32",
  "2002::/16",
  "fc00::/7",
  "fe80::/10",
  "ff00::/8",
]);

/** An IPv4-mapped IPv6 address (::ffff:a.b.c.d) judged as its IPv4 address. */
function unmapped(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}

export const PUBLIC_UNICAST: AddressRule = {
  allows(address: string): boolean {
    const a = unmapped(address);
    const family = net.isIP(a);
    if (family === 0) return false;
    // Only the global unicast block is public in IPv6.
    if (family === 6 && !/^[23]/i.test(a.replace(/^0+/, ""))) return false;
    return !NOT_PUBLIC.allows(a);
  },
};

/** "public" and/or CIDRs, comma-separated; an address passes when any entry allows it. */
export function parseWebhookNetworks(raw: string): AddressRule {
  const entries = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  const withPublic = entries.includes("public");
  const cidrs = new AgentNetworks(entries.filter((e) => e !== "public"));
  return {
    allows: (address: string) => (withPublic && PUBLIC_UNICAST.allows(address)) || cidrs.allows(unmapped(address)) || cidrs.allows(address),
  };
}
