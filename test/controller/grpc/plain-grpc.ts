// A plain @grpc/grpc-js client for the public API, with no Connect code on
// the client side: methods are called by path with the generated schemas as
// (de)serializers, exactly as any other gRPC stack would call them.
import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary, type DescMessage, type DescMethodServerStreaming, type DescMethodUnary, type MessageInitShape, type MessageShape, create } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { ErrorDetailSchema, type ErrorDetail } from "../../../gen/crownest/v1/types_pb.js";

export interface UnaryResult<O> {
  message: O;
  /** Response headers (initial metadata). */
  header: grpc.Metadata;
}

export class PlainGrpcClient {
  readonly client: grpc.Client;

  constructor(address: string) {
    // address: host:port of the h2c listener (no scheme).
    this.client = new grpc.Client(address, grpc.credentials.createInsecure());
  }

  close(): void {
    this.client.close();
  }

  unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    input: MessageInitShape<I>,
    metadata: Record<string, string> = {},
  ): Promise<UnaryResult<MessageShape<O>>> {
    return new Promise((resolve, reject) => {
      let header = new grpc.Metadata();
      const call = this.client.makeUnaryRequest(
        `/${method.parent.typeName}/${method.name}`,
        (m: MessageShape<I>) => Buffer.from(toBinary(method.input, m)),
        (b: Buffer) => fromBinary(method.output, b),
        create(method.input, input),
        toMetadata(metadata),
        (err, message) => {
          if (err) reject(err);
          else resolve({ message: message!, header });
        },
      );
      call.on("metadata", (m: grpc.Metadata) => (header = m));
    });
  }

  /** Starts a server stream; iterate `call` (grpc-js streams are async iterable) and `call.cancel()` to stop. */
  serverStream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodServerStreaming<I, O>,
    input: MessageInitShape<I>,
    metadata: Record<string, string> = {},
  ): grpc.ClientReadableStream<MessageShape<O>> {
    return this.client.makeServerStreamRequest(
      `/${method.parent.typeName}/${method.name}`,
      (m: MessageShape<I>) => Buffer.from(toBinary(method.input, m)),
      (b: Buffer) => fromBinary(method.output, b),
      create(method.input, input),
      toMetadata(metadata),
    );
  }
}

function toMetadata(values: Record<string, string>): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(values)) md.set(k, v);
  return md;
}

export function bearer(key: string): Record<string, string> {
  return { authorization: `Bearer ${key}` };
}

export function isServiceError(err: unknown): err is grpc.ServiceError {
  return err instanceof Error && typeof (err as grpc.ServiceError).code === "number" && "metadata" in err;
}

/** Awaits a rejected call and returns its gRPC error. */
export async function grpcError(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    if (isServiceError(err)) return err;
    throw err;
  }
  throw new Error("expected the call to fail");
}

/**
 * The crownest.v1.ErrorDetail inside grpc-status-details-bin (a
 * google.rpc.Status: code = 1, message = 2, repeated Any details = 3, and
 * Any: type_url = 1, value = 2), decoded by hand as any gRPC client could.
 */
export function errorDetailOf(err: grpc.ServiceError): ErrorDetail | undefined {
  const raw = err.metadata.get("grpc-status-details-bin")[0];
  if (!raw) return undefined;
  const status = new BinaryReader(typeof raw === "string" ? Buffer.from(raw, "base64") : raw);
  while (status.pos < status.len) {
    const [field, wire] = status.tag();
    if (field !== 3) {
      status.skip(wire);
      continue;
    }
    const any = new BinaryReader(status.bytes());
    let typeUrl = "";
    let value: Uint8Array | undefined;
    while (any.pos < any.len) {
      const [f, w] = any.tag();
      if (f === 1) typeUrl = any.string();
      else if (f === 2) value = any.bytes();
      else any.skip(w);
    }
    if (typeUrl.endsWith(`/${ErrorDetailSchema.typeName}`) && value) return fromBinary(ErrorDetailSchema, value);
  }
  return undefined;
}
