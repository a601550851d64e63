// connect-node writes the grpc-message trailer with encodeURIComponent, which
// also escapes ":" and "/". The gRPC spec escapes only bytes outside
// 0x20-0x7E and "%", and @grpc/grpc-js decodes with decodeURI, which leaves
// "%3A" in place: its users would read "not_found%3A …" instead of the code
// name our contract puts first. Re-encoding the trailer the spec's way reads
// correctly in both kinds of client.
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { OutgoingHttpHeaders } from "node:http";

/** Percent-encoding of the gRPC spec (PROTOCOL-HTTP2.md, Status-Message). */
export function encodeGrpcMessage(message: string): string {
  let out = "";
  for (const byte of Buffer.from(message, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

function respec(headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const raw = headers["grpc-message"];
  if (typeof raw !== "string") return headers;
  try {
    return { ...headers, "grpc-message": encodeGrpcMessage(decodeURIComponent(raw)) };
  } catch {
    // Not something encodeURIComponent produced: leave it as it is.
    return headers;
  }
}

type NodeHandler = (req: Http2ServerRequest, res: Http2ServerResponse) => void;

/** Wraps the h2c handler so gRPC (not gRPC-Web, whose trailers travel in the body) answers carry spec-encoded messages. */
export function grpcMessagePerSpec(handler: NodeHandler): NodeHandler {
  return (req, res) => {
    const contentType = req.headers["content-type"];
    if (typeof contentType === "string" && /^application\/grpc(?:$|[+;])/i.test(contentType)) {
      const addTrailers = res.addTrailers.bind(res);
      res.addTrailers = (headers: OutgoingHttpHeaders) => addTrailers(respec(headers));
    }
    handler(req, res);
  };
}
