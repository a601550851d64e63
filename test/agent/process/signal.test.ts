// ProcessService.Signal: reaches the process group of a command this agent
// started; anything else is not_found.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProcessSignal } from "../../../gen/crownest/agent/v1/process_pb.js";
import { agentTestClients, startAgent, type AgentTestClients, type StartedAgent } from "../../helpers/agent.js";
import { expectRefused, outcomeOf } from "../support.js";

let agent: StartedAgent;
let c: AgentTestClients;

beforeAll(async () => {
  agent = await startAgent();
  c = agentTestClients(agent);
});
afterAll(async () => {
  await agent?.stop();
});

/** Starts `command`, sends `signal` once it is running, and returns how it ended. */
async function runAndSignal(command: string, signal: ProcessSignal) {
  let exit: { code?: number; signal: string; timedOut: boolean } | undefined;
  for await (const m of c.process.run({ command })) {
    if (m.event.case === "started") await c.process.signal({ pid: m.event.value.pid, signal });
    if (m.event.case === "exit") exit = { code: m.event.value.code, signal: m.event.value.signal, timedOut: m.event.value.timedOut };
  }
  return exit;
}

describe("Signal", () => {
  const cases: [ProcessSignal, string][] = [
    [ProcessSignal.SIGTERM, "SIGTERM"],
    [ProcessSignal.SIGKILL, "SIGKILL"],
    [ProcessSignal.SIGINT, "SIGINT"],
    [ProcessSignal.SIGHUP, "SIGHUP"],
  ];
  for (const [signal, name] of cases) {
    it(`${name} ends a running command, reported as that signal`, async () => {
      // The sleep is in the same group: the signal reaches it too, so `wait` returns at once.
      expect(await runAndSignal("sleep 300 & wait", signal)).toEqual({ code: undefined, signal: name, timedOut: false });
    });
  }

  it("a pid this agent did not start is not_found", async () => {
    expectRefused(await outcomeOf(() => c.process.signal({ pid: process.pid, signal: ProcessSignal.SIGTERM })), "not_found");
    expectRefused(await outcomeOf(() => c.process.signal({ pid: 1, signal: ProcessSignal.SIGKILL })), "not_found");
  });

  it("a command that has finished is not_found", async () => {
    let pid = 0;
    for await (const m of c.process.run({ command: "true" })) if (m.event.case === "started") pid = m.event.value.pid;
    expectRefused(await outcomeOf(() => c.process.signal({ pid, signal: ProcessSignal.SIGTERM })), "not_found");
  });

  it("an unspecified signal is invalid_request", async () => {
    expectRefused(await outcomeOf(() => c.process.signal({ pid: 1, signal: ProcessSignal.UNSPECIFIED })), "invalid_request");
  });
});
