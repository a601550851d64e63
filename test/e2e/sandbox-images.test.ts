// Sandbox images on the local runtime: a busybox image built here (no glibc
// programs, no node) as the sandbox's read-only root, under bwrap and
// gvisor. The agent is the crownest-agent executable with its own loader and
// libraries, so the image needs nothing of ours. Then the bad input: an
// image directory that is missing, a file, or has no /bin/sh.
import { readFile, readdir, rm, mkdtemp, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileEventType, SandboxService } from "../../gen/crownest/v1/sandbox_pb.js";
import { bwrapUnusable } from "../../controller/runtime/isolation/bwrap.js";
import { runscUnusable } from "../../controller/runtime/isolation/gvisor.js";
import { api, eventually, runControllerToExit, startControllerProcess, type ControllerProcess } from "../helpers/controller.js";
import { fetchDownload, sha256Of, type Call } from "../helpers/artifacts.js";
import { buildBusyboxImage, busyboxAvailable } from "../helpers/busybox-image.js";
import { PlainGrpcClient, bearer, errorDetailOf, grpcError } from "../controller/grpc/plain-grpc.js";

const MODES = busyboxAvailable() ? [...(bwrapUnusable() === undefined ? ["bwrap"] : []), ...((await runscUnusable()) === undefined ? ["gvisor"] : [])] : [];
const S = SandboxService.method;

let imageRoot: string;
let image: string;
beforeAll(async () => {
  imageRoot = await mkdtemp(join(tmpdir(), "crownest-images-"));
  image = await buildBusyboxImage(join(imageRoot, "busybox"));
});
afterAll(async () => {
  await rm(imageRoot, { recursive: true, force: true });
});

/** Every file of a directory tree with its content, to see that nothing changed. */
async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) out.push(join(e.parentPath, e.name));
  return out.sort();
}

describe.runIf(MODES.length > 0).each(MODES)("sandbox images under %s: a busybox image", (mode) => {
  let ctl: ControllerProcess;
  let call: Call;
  let sandboxId: string;
  let before: string[];

  beforeAll(async () => {
    before = await snapshot(image);
    ctl = await startControllerProcess({ env: { CROWNEST_SANDBOX_ISOLATION: mode, CROWNEST_SANDBOX_IMAGES: `busybox=${image}` } });
    call = api(ctl.httpUrl, ctl.apiKey);
    const res = await call("POST", "/v1/sandboxes", { image: "busybox" });
    expect(res.status, res.text).toBe(201);
    expect(res.json.image).toBe("busybox");
    sandboxId = res.json.id;
  }, 180_000);

  afterAll(async () => {
    await ctl?.dispose();
  });

  async function run(command: string, extra: Record<string, unknown> = {}) {
    const res = await call("POST", `/v1/sandboxes/${sandboxId}/commands/run`, { command, ...extra });
    expect(res.status, res.text).toBe(200);
    return res.json as { exitCode: number | null; stdout: string; stderr: string; collectStatus: string; artifacts: Array<{ id: string; sha256: string; name: string }> };
  }

  it("lists the images, the built-in host layout as the default; a sandbox without image gets it", async () => {
    const res = await call("GET", "/v1/sandbox-images");
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ images: [{ name: "host", default: true }, { name: "busybox", default: false }] });
    const plain = await call("POST", "/v1/sandboxes", {});
    expect(plain.json.image).toBe("host");
    expect((await call("GET", `/v1/sandboxes/${plain.json.id}`)).json.image).toBe("host");
    await call("DELETE", `/v1/sandboxes/${plain.json.id}`);
  });

  it("an unknown image is 400 invalid_request naming the known ones, over REST and gRPC", async () => {
    const res = await call("POST", "/v1/sandboxes", { image: "ubuntu" });
    expect(res.status).toBe(400);
    expect(res.json.error.code).toBe("invalid_request");
    expect(res.json.error.message).toContain("busybox");
    expect(res.json.error.message).toContain("host");
    const grpc = new PlainGrpcClient(new URL(ctl.grpcUrl).host);
    try {
      const err = await grpcError(grpc.unary(S.createSandbox, { image: "ubuntu" }, bearer(ctl.apiKey)));
      expect(err.code).toBe(GrpcStatus.INVALID_ARGUMENT);
      expect(errorDetailOf(err)?.code).toBe("invalid_request");
      const listed = await grpc.unary(S.listSandboxImages, {}, bearer(ctl.apiKey));
      expect(listed.message.images.map((i: { name: string; isDefault: boolean }) => [i.name, i.isDefault])).toEqual([["host", true], ["busybox", false]]);
    } finally {
      grpc.close();
    }
  });

  it("has no node; commands run as uid 1000 named sandbox in /workspace; the image's /etc is there with its uid 1000 renamed", async () => {
    const cmd = await run("command -v node || echo NO-NODE; id; pwd; cat /etc/image-release; grep -c someone /etc/passwd; ls /usr/local /opt /home 2>&1 | grep -c 'No such file'");
    const lines = cmd.stdout.trim().split("\n");
    expect(lines[0]).toBe("NO-NODE");
    expect(lines[1]).toMatch(/^uid=1000\(sandbox\) gid=1000\(sandbox\)/);
    expect(lines.slice(2)).toEqual(["/workspace", "busybox test image", "0", "3"]);
  });

  it("cannot write into its image (read-only root), and the image directory is unchanged", async () => {
    const cmd = await run(
      "for f in /bin/x /x /etc/passwd /usr/bin/y /bin/busybox; do if (echo bad > $f) 2>/dev/null; then echo \"WROTE $f\"; fi; done; if rm /bin/sh 2>/dev/null; then echo REMOVED; fi; echo done",
    );
    expect(cmd.stdout.trim()).toBe("done");
    expect(await snapshot(image)).toEqual(before);
    expect(await readFile(join(image, "etc", "passwd"), "utf8")).toContain("someone");
  });

  it("files a command writes export with the right sha256; a collecting command collects, by path and by glob", async () => {
    const expected = Array.from({ length: 3000 }, (_, i) => `busybox line ${i + 1}\n`).join("");
    const cmd = await run("mkdir -p out && seq 1 3000 | sed 's/^/busybox line /' > /workspace/out.txt && echo a > out/a.log && echo b > out/b.log", {
      collect: [{ path: "out.txt" }, { glob: "out/*.log" }],
    });
    expect(cmd.exitCode, cmd.stderr).toBe(0);
    expect(cmd.collectStatus).toBe("succeeded");
    expect(cmd.artifacts.map((a) => a.sha256).sort()).toEqual([sha256Of(expected), sha256Of("a\n"), sha256Of("b\n")].sort());
    const art = await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "/workspace/out.txt" });
    expect(art.status, art.text).toBe(201);
    expect(art.json.sha256).toBe(sha256Of(expected));
    const link = await call("POST", `/v1/artifacts/${art.json.id}/download-url`);
    expect(sha256Of((await fetchDownload(link.json.url, ctl.apiKey)).body)).toBe(sha256Of(expected));
    const inSandbox = await run("sha256sum /workspace/out.txt");
    expect(inSandbox.stdout.split(" ")[0]).toBe(sha256Of(expected));
  });

  it("WatchWorkspace sees a file a command writes", async () => {
    await run("mkdir -p watched");
    const grpc = new PlainGrpcClient(new URL(ctl.grpcUrl).host);
    try {
      const stream = grpc.serverStream(S.watchWorkspace, { sandboxId, path: "watched" }, bearer(ctl.apiKey));
      const seen: Array<{ case: string | undefined; value?: any }> = [];
      stream.on("error", () => {});
      stream.on("data", (res: { event: { case: string | undefined; value?: unknown } }) => seen.push(res.event));
      await eventually("the watch is ready", () => seen.some((e) => e.case === "ready"));
      await run("echo seen > watched/new.txt");
      await eventually("the add event arrives", () =>
        seen.find((e) => e.case === "fsEvent" && e.value.path === "/workspace/watched/new.txt" && e.value.type === FileEventType.ADD),
      );
      stream.cancel();
    } finally {
      grpc.close();
    }
  });

  it("the §11 attacks still fail in the image", async () => {
    const cmd = await run(
      [
        "if unshare -Ur id 2>/dev/null; then echo USERNS-MADE; fi",
        "for f in /proc/sys/kernel/hostname /proc/sys/user/max_user_namespaces; do if (echo 1 > $f) 2>/dev/null; then echo \"WROTE $f\"; fi; done",
        "if ls /run/crownest 2>/dev/null; then echo AGENT-DIR; fi",
        "if cat /run/crownest/token 2>/dev/null; then echo TOKEN; fi",
        "if kill -0 1 2>/dev/null && [ \"$(cat /proc/1/status | awk '/^Uid:/{print $2}')\" = 0 ]; then echo SIGNALLED; fi",
        `if cat ${ctl.dataDir}/api-key 2>/dev/null; then echo DATA-DIR; fi`,
        "echo end",
      ].join("\n"),
    );
    expect(cmd.stdout.trim()).toBe("end");
  });
});

describe.runIf(MODES.includes("bwrap"))("bad images stop the start, one line naming the variable or the image", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "crownest-badimg-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function startFails(images: string, extra: Record<string, string> = {}) {
    const result = await runControllerToExit({ CROWNEST_SANDBOX_ISOLATION: "bwrap", CROWNEST_SANDBOX_IMAGES: images, ...extra }, join(dir, `data-${Math.random()}`));
    expect(result.code).toBe(2);
    const lines = result.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    return lines[0]!;
  }

  it("a missing directory", async () => {
    expect(await startFails(`py=${join(dir, "nowhere")}`)).toMatch(/^crownest: CROWNEST_SANDBOX_IMAGES: image py: .*nowhere does not exist/);
  });

  it("a file, not a directory", async () => {
    await writeFile(join(dir, "a-file"), "x");
    expect(await startFails(`py=${join(dir, "a-file")}`)).toMatch(/^crownest: CROWNEST_SANDBOX_IMAGES: image py: .*a-file is not a directory/);
  });

  it("an image without /bin/sh", async () => {
    await mkdir(join(dir, "no-shell", "bin"), { recursive: true });
    expect(await startFails(`bare=${join(dir, "no-shell")}`)).toMatch(/^crownest: CROWNEST_SANDBOX_IMAGES: image bare \(.*\) has no \/bin\/sh/);
  });

  it("a default image that is not one of them, and a malformed list", async () => {
    expect(await startFails(`busybox=${image}`, { CROWNEST_SANDBOX_DEFAULT_IMAGE: "alpine" })).toMatch(/^crownest: CROWNEST_SANDBOX_DEFAULT_IMAGE: "alpine" is not an image \(known: host, busybox\)/);
    expect(await startFails(`just-a-name`)).toMatch(/^crownest: CROWNEST_SANDBOX_IMAGES: expected name=DIR/);
  });
});
