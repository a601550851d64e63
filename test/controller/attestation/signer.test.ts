// The signing thread: requests made in one turn go to the thread in one
// message and each gets its own signature back (verified with the public
// key, against its own data, not a neighbour's); a key that cannot sign
// fails every request of the batch with its own rejection, and later turns
// still work.
import { generateKeyPairSync, verify } from "node:crypto";
import { describe, expect, it } from "vitest";
import { Signer } from "../../../controller/attestation/signer.js";

describe("Signer", () => {
  it("signs hundreds of requests made in one turn, each over its own data", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const signer = new Signer(privateKey);
    const data = Array.from({ length: 300 }, (_, i) => Buffer.from(`payload ${i}`));
    const sigs = await Promise.all(data.map((d) => signer.sign(d)));
    expect(sigs).toHaveLength(300);
    sigs.forEach((sig, i) => {
      expect(verify("sha256", data[i]!, { key: publicKey, dsaEncoding: "der" }, sig)).toBe(true);
      // Not the signature of the next payload.
      expect(verify("sha256", data[(i + 1) % data.length]!, { key: publicKey, dsaEncoding: "der" }, sig)).toBe(false);
    });
    // A later turn, alone and then mixed with another batch in flight.
    const lone = await signer.sign(Buffer.from("later"));
    expect(verify("sha256", Buffer.from("later"), { key: publicKey, dsaEncoding: "der" }, lone)).toBe(true);
    const first = signer.sign(Buffer.from("a"));
    await new Promise((r) => setImmediate(r));
    const second = signer.sign(Buffer.from("b"));
    const [sa, sb] = await Promise.all([first, second]);
    expect(verify("sha256", Buffer.from("a"), { key: publicKey, dsaEncoding: "der" }, sa)).toBe(true);
    expect(verify("sha256", Buffer.from("b"), { key: publicKey, dsaEncoding: "der" }, sb)).toBe(true);
  });

  it("rejects each request when the key cannot sign, and goes on answering", async () => {
    // An X25519 key is for key agreement: sign() refuses it.
    const { privateKey } = generateKeyPairSync("x25519");
    const signer = new Signer(privateKey);
    const results = await Promise.allSettled([signer.sign(Buffer.from("x")), signer.sign(Buffer.from("y"))]);
    for (const r of results) {
      expect(r.status).toBe("rejected");
      expect(String((r as PromiseRejectedResult).reason)).toMatch(/signing failed/);
    }
    await expect(signer.sign(Buffer.from("z"))).rejects.toThrow(/signing failed/);
  });
});
