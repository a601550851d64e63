// crownest.v1.EventService: a thin adapter over services/events/read.ts
// (the same reads as GET /v1/events and the SSE stream).
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { EventService, type EventSchema } from "../../gen/crownest/v1/event_pb.js";
import type { Deps } from "../deps.js";
import { listEvents, watchEvents, type EventView } from "../services/events/read.js";
import { callerOf } from "./interceptors.js";

function eventToProto(e: EventView): MessageInitShape<typeof EventSchema> {
  return {
    id: e.id,
    type: e.type,
    accountId: e.accountId,
    sequence: e.sequence,
    createdAt: timestampFromDate(new Date(e.createdAt)),
    dataJson: JSON.stringify(e.data),
  };
}

export function eventService(deps: Deps): ServiceImpl<typeof EventService> {
  return {
    async *watchEvents(req, ctx) {
      // proto3's "" is "not given": only events from now on.
      const events = await watchEvents(deps, callerOf(ctx), { after: req.after === "" ? undefined : req.after, types: req.types, signal: ctx.signal });
      for await (const event of events) yield { event: eventToProto(event) };
    },

    async listEvents(req, ctx) {
      const page = await listEvents(deps, callerOf(ctx), { after: req.after, types: req.types, limit: req.limit, signal: ctx.signal });
      return { events: page.events.map(eventToProto), nextAfter: page.nextAfter };
    },
  };
}
