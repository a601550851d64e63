// The deliverer of one replica: claims due deliveries (a lease per delivery,
// so one replica attempts it at a time and a replica that dies leaves it to
// another when the lease runs out), attempts at most
// CROWNEST_WEBHOOK_CONCURRENCY at once, and records each outcome: succeeded,
// pending again after the next wait of the retry schedule, or failed after
// the last. It runs beside requests, never inside them: a slow or dead
// receiver delays nothing but its own deliveries.
import type { ClaimedDelivery, DeliveryOutcome } from "../../db/event-types.js";
import type { Deps } from "../../deps.js";
import { eventView } from "../events/read.js";
import { sendDelivery } from "./send.js";

const IDLE_POLL_MS = 1000;
const PENDING_GAUGE_MS = 5000;
/** Beyond the attempt's timeout, how long a claim stays with its replica. */
const LEASE_MARGIN_MS = 5000;

export interface Deliverer {
  stop(): Promise<void>;
}

export function startDeliverer(deps: Deps): Deliverer {
  const cfg = deps.config.webhooks;
  let stopped = false;
  const inFlight = new Set<Promise<void>>();
  let wake: (() => void) | undefined;
  const poke = () => wake?.();
  const off = deps.db.onEvents(poke);
  let lastGauge = 0;

  const attempt = async ({ delivery, webhook, event }: ClaimedDelivery) => {
    const started = Date.now();
    if (delivery.attempts === 0) deps.metrics.eventLag.observe({ reader: "webhook" }, Math.max(0, started - event.createdAt.getTime()) / 1000);
    const result = await sendDelivery(cfg, webhook, event.id, JSON.stringify(eventView(event)), deps.clock.now());
    deps.metrics.webhookDeliverySeconds.observe((Date.now() - started) / 1000);
    const tries = delivery.attempts + 1;
    let outcome: DeliveryOutcome;
    if (result.ok) outcome = { status: "succeeded", statusCode: result.statusCode, error: null, nextAttemptAt: null };
    else if (tries <= cfg.retryScheduleMs.length) {
      outcome = { status: "pending", statusCode: result.statusCode, error: result.error, nextAttemptAt: new Date(deps.clock.now().getTime() + cfg.retryScheduleMs[tries - 1]!) };
    } else outcome = { status: "failed", statusCode: result.statusCode, error: result.error, nextAttemptAt: null };
    deps.metrics.webhookDeliveries.inc({ outcome: outcome.status === "pending" ? "retry" : outcome.status });
    await deps.db.finishDeliveryAttempt(delivery.id, outcome);
    if (outcome.status === "failed") deps.log.warn({ deliveryId: delivery.id, webhookId: webhook.id, error: result.error }, "webhook delivery failed after its last attempt");
  };

  const loop = async () => {
    while (!stopped) {
      let claimed: ClaimedDelivery[] = [];
      const room = cfg.concurrency - inFlight.size;
      if (room > 0) {
        try {
          claimed = await deps.db.claimDueDeliveries(deps.clock.now(), room, cfg.timeoutMs + LEASE_MARGIN_MS);
        } catch (err) {
          deps.log.warn({ err }, "claiming webhook deliveries failed; trying again");
        }
      }
      for (const c of claimed) {
        const p = attempt(c)
          .catch((err: unknown) => deps.log.error({ err, deliveryId: c.delivery.id }, "recording a webhook attempt failed; its lease runs out and it is tried again"))
          .finally(() => {
            inFlight.delete(p);
            // Claims go in batches: once half the slots are free, not one query per finished attempt.
            if (cfg.concurrency - inFlight.size >= Math.ceil(cfg.concurrency / 2)) poke();
          });
        inFlight.add(p);
      }
      if (Date.now() - lastGauge > PENDING_GAUGE_MS) {
        lastGauge = Date.now();
        deps.db.countPendingDeliveries().then((n) => deps.metrics.webhookPending.set(n), () => {});
      }
      // Full: wait for a slot. Claimed some: look again at once. Nothing due: sleep until an event or the poll.
      if (stopped) break;
      if (claimed.length > 0 && inFlight.size < cfg.concurrency) continue;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, IDLE_POLL_MS);
        wake = () => {
          clearTimeout(t);
          wake = undefined;
          resolve();
        };
      });
    }
  };
  const running = loop();

  return {
    async stop() {
      stopped = true;
      off();
      wake?.();
      await running;
      // Attempts under way finish (each is bounded by the timeout); unfinished ones keep their lease and are retried.
      await Promise.all([...inFlight]);
    },
  };
}
