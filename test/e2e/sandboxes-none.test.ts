// The sandbox lifecycle suite (create, delete, expiry, an agent dying, graceful
// stop, adoption after a crash, PostgreSQL) once more with
// CROWNEST_SANDBOX_ISOLATION=none: the default is bwrap where it works, and
// plain agents must keep the same lifecycle.
process.env.CROWNEST_TEST_SANDBOX_ISOLATION = "none";
await import("./sandboxes.test.js");
