// A pending artifact's last sign of life: its heartbeat, or its creation for
// rows written before heartbeats existed. Shared by the reaper's queries
// (artifacts.ts) and the in-flight export count (reservations.ts).
import { sql } from "kysely";

export const lastBeat = sql<number>`coalesce(heartbeat_at, created_at)`;
