/*
 * crownest-nsinit: a gVisor sandbox's commands in a PID namespace of their
 * own, so that nothing a command runs can see the agent's process (its
 * /proc/PID/environ, maps, fd links: gVisor's /proc serves those to any uid
 * and ignores non-dumpability). Static, libc only.
 *
 *   crownest-nsinit serve SOCKET ROOT SECCOMP UID GID
 *     Started once by the agent. SOCKET's directory gets a tmpfs of its own. Makes a PID namespace; its init (PID 1,
 *     this program) builds ROOT: a bind of every mount of the sandbox
 *     except /proc and the agent's directory, with a /proc of the new
 *     namespace (gVisor 20221219 has no mount namespaces: a /proc mounted on
 *     /proc would replace the agent's own), chroots into it and serves
 *     SOCKET: each connection is one command, forked by the init, so it is
 *     born in the namespace. Before exec the command's child sets uid/gid
 *     UID:GID (no groups), no_new_privs and the seccomp filter in SECCOMP
 *     (struct sock_filter[], the same filter bwrap loads): the agent may
 *     mount and make this namespace, commands may not. Prints "ready" once
 *     serving. Orphans of the namespace are reaped by the init.
 *   crownest-nsinit run SOCKET -- FILE ARGS...
 *     What the agent spawns per command instead of FILE: hands its stdio,
 *     cwd, argv and environment to the init, forwards SIGTERM, SIGINT,
 *     SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the command's process group,
 *     and ends as the command did (its exit code, or killed by its signal).
 *     When it dies (SIGKILL on a timeout) the init kills the command's group.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_REQUEST (8u << 20)
#define MAX_FILTER (64u << 10)
#define MAX_COMMANDS 4096

extern char **environ;

static void die(const char *what, const char *arg) {
  fprintf(stderr, "crownest-nsinit: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(errno));
  exit(125);
}

static int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int read_all(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

struct header {
  uint32_t length; /* bytes of strings that follow: cwd, argv[argc], env[envc], each NUL-terminated */
  uint32_t argc;
  uint32_t envc;
};

/* ---- serve ---- */

/* /proc/self/mounts escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s) {
  char *out = s;
  for (char *p = s; *p; p++) {
    if (p[0] == '\\' && p[1] >= '0' && p[1] <= '7' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' && p[3] <= '7') {
      *out++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
      p += 3;
    } else
      *out++ = *p;
  }
  *out = 0;
}

static int has_option(const char *opts, const char *name) {
  size_t n = strlen(name);
  for (const char *p = opts; p && *p;) {
    if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == 0)) return 1;
    p = strchr(p, ',');
    if (p) p++;
  }
  return 0;
}

/* True when `path` (a directory or file) can be written through this mount. */
static int writable(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return 0;
  if (S_ISDIR(st.st_mode)) {
    char probe[8300];
    snprintf(probe, sizeof probe, "%s/.crownest-ro-probe-%d", path, (int)getpid());
    if (mkdir(probe, 0700) != 0) return errno != EROFS && errno != EEXIST ? -1 : 0;
    rmdir(probe);
    return 1;
  }
  int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return errno != EROFS ? -1 : 0;
  close(fd);
  return 1;
}

/*
 * Binds `source` at `target`, read-only again when it was. Linux starts a
 * bind read-write and needs a remount; gVisor 20221219 refuses the remount
 * (EINVAL) but keeps a bind of a read-only mount read-only in its gofer, so
 * there the bind is checked instead: never a writable copy of a read-only mount.
 */
static void bind_like(const char *source, const char *target, const char *opts) {
  unsigned long flags = 0;
  if (has_option(opts, "ro")) flags |= MS_RDONLY;
  if (has_option(opts, "nosuid")) flags |= MS_NOSUID;
  if (has_option(opts, "nodev")) flags |= MS_NODEV;
  if (has_option(opts, "noexec")) flags |= MS_NOEXEC;
  if (mount(source, target, NULL, MS_BIND | flags, NULL) != 0) die("bind", target);
  if (flags == 0 || mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | flags, NULL) == 0) return;
  if (errno != EINVAL) die("remount", target);
  if ((flags & MS_RDONLY) && writable(target) != 0) {
    errno = EROFS;
    die("a read-only mount would be writable here:", target);
  }
}

static int under(const char *path, const char *dir) {
  size_t n = strlen(dir);
  return strncmp(path, dir, n) == 0 && (path[n] == 0 || path[n] == '/');
}

/* ROOT: the sandbox's mounts again, in the order they were made, without /proc and without ROOT's parent (the agent's directory). */
static void build_root(const char *root) {
  char hidden[4096];
  snprintf(hidden, sizeof hidden, "%s", root);
  char *slash = strrchr(hidden, '/');
  if (!slash || slash == hidden) {
    errno = EINVAL;
    die("ROOT must be inside a directory other than /:", root);
  }
  *slash = 0;
  if (mkdir(root, 0700) != 0 && errno != EEXIST) die("mkdir", root);
  FILE *f = fopen("/proc/self/mounts", "re");
  if (!f) die("open", "/proc/self/mounts");
  char line[8192];
  int rooted = 0;
  while (fgets(line, sizeof line, f)) {
    char *save = NULL;
    char *dev = strtok_r(line, " ", &save);
    char *mnt = strtok_r(NULL, " ", &save);
    char *type = strtok_r(NULL, " ", &save);
    char *opts = strtok_r(NULL, " ", &save);
    if (!dev || !mnt || !type || !opts) continue;
    unescape(mnt);
    if (under(mnt, "/proc") || under(mnt, hidden)) continue;
    char target[8192];
    if (strcmp(mnt, "/") == 0) {
      bind_like("/", root, opts);
      rooted = 1;
      continue;
    }
    if (!rooted) continue;
    snprintf(target, sizeof target, "%s%s", root, mnt);
    bind_like(mnt, target, opts);
  }
  fclose(f);
  if (!rooted) {
    errno = ENOENT;
    die("no / in", "/proc/self/mounts");
  }
  char proc[4200];
  snprintf(proc, sizeof proc, "%s/proc", root);
  if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) die("mount proc on", proc);
}

static struct sock_fprog filter;

static void read_filter(const char *path) {
  if (strcmp(path, "-") == 0) return;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open", path);
  static unsigned char buf[MAX_FILTER];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fd, buf + len, sizeof buf - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("read", path);
    if (n == 0) break;
    len += (size_t)n;
    if (len == sizeof buf) break;
  }
  close(fd);
  if (len == 0 || len % sizeof(struct sock_filter) != 0 || len == sizeof buf) {
    errno = EINVAL;
    die("not a seccomp filter:", path);
  }
  filter.len = (unsigned short)(len / sizeof(struct sock_filter));
  filter.filter = (struct sock_filter *)buf;
}

struct command {
  pid_t pid;
  int conn; /* -1 once the run side is gone */
};
static struct command commands[MAX_COMMANDS];
static int ncommands;
static int chld_pipe[2];

static void on_sigchld(int sig) {
  (void)sig;
  int saved = errno;
  (void)!write(chld_pipe[1], "c", 1);
  errno = saved;
}

static void child_fail(const char *what, const char *arg) {
  dprintf(2, "crownest-nsinit: %s %s: %s\n", what, arg, strerror(errno));
  _exit(errno == ENOENT ? 127 : 126);
}

/* In the forked child: become the command. Never returns. */
static void become(int fds[3], const char *cwd, char **argv, char **envp, uid_t uid, gid_t gid) {
  sigset_t none;
  sigemptyset(&none);
  signal(SIGCHLD, SIG_DFL);
  signal(SIGPIPE, SIG_DFL);
  sigprocmask(SIG_SETMASK, &none, NULL);
  setsid();
  for (int i = 0; i < 3; i++)
    if (dup2(fds[i], i) < 0) _exit(125);
  if (chdir(cwd) != 0) child_fail("chdir", cwd);
  if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) child_fail("dropping to", "uid");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail("no_new_privs", "");
  if (filter.len > 0 && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter, 0, 0) != 0) child_fail("seccomp", "");
  execve(argv[0], argv, envp);
  child_fail("cannot run", argv[0]);
}

/* One request: the header with the run side's stdio, then the strings. */
static void start_command(int conn, uid_t uid, gid_t gid) {
  struct header h;
  int fds[3] = {-1, -1, -1};
  char control[CMSG_SPACE(sizeof fds)];
  struct iovec iov = {&h, sizeof h};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
  ssize_t n;
  do n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  while (n < 0 && errno == EINTR);
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof fds)) memcpy(fds, CMSG_DATA(c), sizeof fds);
  char *strings = NULL;
  char **argv = NULL, **envp = NULL;
  if (n != (ssize_t)sizeof h || fds[2] < 0 || h.length > MAX_REQUEST || h.argc == 0 || h.argc > h.length || h.envc > h.length) goto fail;
  strings = malloc(h.length + 1);
  argv = calloc(h.argc + 1, sizeof *argv);
  envp = calloc(h.envc + 1, sizeof *envp);
  if (!strings || !argv || !envp || read_all(conn, strings, h.length) != 0) goto fail;
  strings[h.length] = 0;
  char *p = strings, *end = strings + h.length;
  char *cwd = p;
  p += strlen(p) + 1;
  for (uint32_t i = 0; i < h.argc; i++) {
    if (p >= end) goto fail;
    argv[i] = p;
    p += strlen(p) + 1;
  }
  for (uint32_t i = 0; i < h.envc; i++) {
    if (p >= end) goto fail;
    envp[i] = p;
    p += strlen(p) + 1;
  }
  if (ncommands == MAX_COMMANDS) goto fail;
  pid_t pid = fork();
  if (pid == 0) become(fds, cwd, argv, envp, uid, gid);
  if (pid < 0) goto fail;
  commands[ncommands++] = (struct command){pid, conn};
  conn = -1;
fail:
  for (int i = 0; i < 3; i++)
    if (fds[i] >= 0) close(fds[i]);
  if (conn >= 0) close(conn);
  free(strings);
  free(argv);
  free(envp);
}

static void signal_command(struct command *cmd, int sig) {
  if (kill(-cmd->pid, sig) != 0) kill(cmd->pid, sig);
}

static void reap(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    for (int i = 0; i < ncommands; i++) {
      if (commands[i].pid != pid) continue;
      if (commands[i].conn >= 0) {
        int32_t s = status;
        (void)write_all(commands[i].conn, &s, sizeof s);
        close(commands[i].conn);
      }
      commands[i] = commands[--ncommands];
      break;
    }
  }
}

static void serve_loop(int listener, uid_t uid, gid_t gid) {
  static struct pollfd fds[MAX_COMMANDS + 2];
  static int which[MAX_COMMANDS + 2];
  for (;;) {
    int n = 0;
    fds[n++] = (struct pollfd){listener, POLLIN, 0};
    fds[n++] = (struct pollfd){chld_pipe[0], POLLIN, 0};
    for (int i = 0; i < ncommands; i++)
      if (commands[i].conn >= 0) {
        which[n] = i;
        fds[n++] = (struct pollfd){commands[i].conn, POLLIN, 0};
      }
    if (poll(fds, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll", NULL);
    }
    if (fds[1].revents) {
      char drain[64];
      while (read(chld_pipe[0], drain, sizeof drain) > 0) {
      }
      reap();
      continue; /* the table changed: indexes in `which` are stale */
    }
    for (int k = 2; k < n; k++) {
      if (!fds[k].revents) continue;
      struct command *cmd = &commands[which[k]];
      unsigned char sig;
      ssize_t r = read(cmd->conn, &sig, 1);
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r == 1) {
        if (sig >= 1 && sig < 65) signal_command(cmd, sig);
        continue;
      }
      /* The run side is gone (killed on a timeout, or the agent went): so is the command. */
      signal_command(cmd, SIGKILL);
      close(cmd->conn);
      cmd->conn = -1;
    }
    if (fds[0].revents & POLLIN) {
      int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
      struct ucred peer;
      socklen_t peer_len = sizeof peer;
      /* Only the agent's side (root) hands commands over; nothing a command runs is root. */
      if (conn >= 0 && (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &peer, &peer_len) != 0 || peer.uid != 0)) {
        close(conn);
        conn = -1;
      }
      if (conn >= 0) {
        struct timeval tv = {5, 0};
        setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        start_command(conn, uid, gid);
      }
    }
  }
}

static int serve(const char *socket_path, const char *root, const char *filter_path, uid_t uid, gid_t gid) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  read_filter(filter_path);
  int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) die("socket", NULL);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(socket_path) >= sizeof addr.sun_path) {
    errno = ENAMETOOLONG;
    die("socket path", socket_path);
  }
  strcpy(addr.sun_path, socket_path);
  /*
   * The socket's directory gets a tmpfs of its own: a socket on a gofer mount
   * is a host socket under runsc --host-uds=create, which the sandbox cannot
   * connect to; on a tmpfs it is gVisor's own.
   */
  char dir[sizeof addr.sun_path];
  strcpy(dir, socket_path);
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir) {
    errno = EINVAL;
    die("socket path", socket_path);
  }
  *slash = 0;
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) die("mkdir", dir);
  if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700,size=64k") != 0) die("mount tmpfs on", dir);
  if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0) die("bind", socket_path);
  /* No chmod (a host-backed socket refuses it): the directory is the agent's, closed to everyone else, and not in the commands' root. */
  if (listen(listener, 64) != 0) die("listen", socket_path);
  if (unshare(CLONE_NEWPID) != 0) die("unshare(CLONE_NEWPID)", NULL);
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) die("pipe", NULL);
  pid_t init = fork();
  if (init < 0) die("fork", NULL);
  if (init > 0) {
    /* Outside the namespace: report readiness, then live as long as the init does. */
    close(listener);
    close(ready[1]);
    char c;
    ssize_t n;
    do n = read(ready[0], &c, 1);
    while (n < 0 && errno == EINTR);
    if (n == 1) {
      printf("ready\n");
      fflush(stdout);
    }
    int status;
    while (waitpid(init, &status, 0) < 0 && errno == EINTR) {
    }
    if (n != 1) return 125;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  /* PID 1 of the commands' namespace. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  close(ready[0]);
  build_root(root);
  if (chroot(root) != 0 || chdir("/") != 0) die("chroot", root);
  if (pipe2(chld_pipe, O_CLOEXEC | O_NONBLOCK) != 0) die("pipe", NULL);
  struct sigaction sa = {.sa_handler = on_sigchld, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGCHLD, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (write_all(ready[1], "r", 1) != 0) die("ready", NULL);
  close(ready[1]);
  serve_loop(listener, uid, gid);
  return 0;
}

/* ---- run ---- */

static int conn_fd = -1;

static void forward(int sig) {
  unsigned char b = (unsigned char)sig;
  int saved = errno;
  (void)!write(conn_fd, &b, 1);
  errno = saved;
}

static void append(char **buf, size_t *len, size_t *cap, const char *s) {
  size_t n = strlen(s) + 1;
  while (*len + n > *cap) {
    *cap = *cap ? *cap * 2 : 4096;
    *buf = realloc(*buf, *cap);
    if (!*buf) die("out of memory", NULL);
  }
  memcpy(*buf + *len, s, n);
  *len += n;
}

static int run(const char *socket_path, char **argv) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  conn_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (conn_fd < 0 || strlen(socket_path) >= sizeof addr.sun_path) die("socket", socket_path);
  strcpy(addr.sun_path, socket_path);
  if (connect(conn_fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("the commands' namespace is not serving at", socket_path);
  char cwd[4096];
  if (!getcwd(cwd, sizeof cwd)) die("getcwd", NULL);
  char *buf = NULL;
  size_t len = 0, cap = 0;
  append(&buf, &len, &cap, cwd);
  uint32_t argc = 0, envc = 0;
  for (; argv[argc]; argc++) append(&buf, &len, &cap, argv[argc]);
  for (; environ[envc]; envc++) append(&buf, &len, &cap, environ[envc]);
  if (len > MAX_REQUEST) {
    errno = E2BIG;
    die("command and environment", NULL);
  }
  struct header h = {(uint32_t)len, argc, envc};
  int fds[3] = {0, 1, 2};
  char control[CMSG_SPACE(sizeof fds)];
  memset(control, 0, sizeof control);
  struct iovec iov = {&h, sizeof h};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof fds);
  memcpy(CMSG_DATA(c), fds, sizeof fds);
  ssize_t sent;
  do sent = sendmsg(conn_fd, &msg, MSG_NOSIGNAL);
  while (sent < 0 && errno == EINTR);
  if (sent != (ssize_t)sizeof h || write_all(conn_fd, buf, len) != 0) die("handing the command over", NULL);
  free(buf);
  /* The command holds the output pipes now; this process must not keep them open. */
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0)
    for (int i = 0; i < 3; i++) dup2(null, i);
  int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  struct sigaction sa = {.sa_handler = forward, .sa_flags = SA_RESTART};
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++) sigaction(forwarded[i], &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  int32_t status;
  if (read_all(conn_fd, &status, sizeof status) != 0) return 125;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  int sig = WTERMSIG(status);
  signal(sig, SIG_DFL);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  sigprocmask(SIG_UNBLOCK, &one, NULL);
  raise(sig);
  return 128 + sig;
}

static uid_t parse_id(const char *s) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || *s == 0 || *end != 0 || v > 0xfffffffeUL) {
    errno = EINVAL;
    die("not an id:", s);
  }
  return (uid_t)v;
}

int main(int argc, char **argv) {
  if (argc == 7 && strcmp(argv[1], "serve") == 0) return serve(argv[2], argv[3], argv[4], parse_id(argv[5]), (gid_t)parse_id(argv[6]));
  if (argc >= 5 && strcmp(argv[1], "run") == 0 && strcmp(argv[3], "--") == 0) return run(argv[2], argv + 4);
  fprintf(stderr, "usage: crownest-nsinit serve SOCKET ROOT SECCOMP UID GID | run SOCKET -- FILE ARGS...\n");
  return 2;
}
