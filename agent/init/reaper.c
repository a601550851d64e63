/*
 * crownest-agent's one native function, for when it runs as PID 1: collect
 * the exit status of one given child (an orphan reparented to the agent), so
 * it does not stay a zombie. libuv only waits for the children it spawned
 * itself; the caller never passes one of those. Node-API only: the compiled
 * file loads into any Node 20 and needs nothing but libc.
 */
#include <errno.h>
#include <node_api.h>
#include <sys/types.h>
#include <sys/wait.h>

/* reap(pid) -> pid when collected, 0 when it has not exited, -errno on failure. */
static napi_value Reap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t pid = 0;
  napi_value out;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &pid) != napi_ok || pid <= 0) {
    napi_throw_type_error(env, NULL, "reap(pid): a positive pid");
    return NULL;
  }
  int status = 0;
  pid_t r;
  do r = waitpid((pid_t)pid, &status, WNOHANG);
  while (r == -1 && errno == EINTR);
  napi_create_int32(env, r == -1 ? -errno : (int32_t)r, &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "reap", NAPI_AUTO_LENGTH, Reap, NULL, &fn);
  napi_set_named_property(env, exports, "reap", fn);
  return exports;
}
